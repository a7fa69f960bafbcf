// The official PocketBase JavaScript SDK, unmodified, against one strata
// tenant: `node client.mjs <base url>` with STRATA_SU_EMAIL and
// STRATA_SU_PASSWORD set. Exits non-zero on the first broken expectation.
import PocketBase from "pocketbase";
import assert from "node:assert/strict";
import { args, check, checks } from "./harness.mjs";

const { base, email, password } = args("client.mjs");

/// The SDK's error for a call expected to fail, with its status.
async function failure(f) {
  try {
    await f();
  } catch (e) {
    return e;
  }
  throw new Error("expected the call to fail");
}

const pb = new PocketBase(base);
pb.autoCancellation(false);

await check("health", async () => {
  const h = await pb.health.check();
  assert.equal(h.code, 200);
});

await check("superuser auth", async () => {
  const auth = await pb.collection("_superusers").authWithPassword(email, password);
  assert.ok(pb.authStore.isValid);
  assert.equal(auth.record.email, email);
  assert.equal(pb.authStore.record.id, auth.record.id);
  const refreshed = await pb.collection("_superusers").authRefresh();
  assert.ok(refreshed.token);
});

await check("wrong password", async () => {
  const other = new PocketBase(base);
  const e = await failure(() => other.collection("_superusers").authWithPassword(email, "nope-nope"));
  assert.equal(e.status, 400);
});

let users, tasks;
await check("collections", async () => {
  // The default `users` of a new app (name, avatar), opened up.
  users = await pb.collections.update("users", {
    listRule: "",
    viewRule: "",
    createRule: "",
  });
  tasks = await pb.collections.create({
    name: "tasks",
    type: "base",
    fields: [
      { name: "title", type: "text", required: true },
      { name: "n", type: "number" },
      { name: "state", type: "select", values: ["todo", "done"], maxSelect: 1 },
      { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1 },
    ],
    indexes: ["CREATE INDEX `idx_tasks_n` ON `tasks` (`n`)"],
    listRule: "owner = @request.auth.id",
    viewRule: "owner = @request.auth.id",
    createRule: "@request.auth.id != '' && @request.body.owner = @request.auth.id",
    updateRule: "owner = @request.auth.id",
    deleteRule: "owner = @request.auth.id",
  });
  const list = await pb.collections.getFullList();
  assert.ok(list.some((c) => c.name === "tasks"));
  const one = await pb.collections.getOne("tasks");
  assert.equal(one.indexes.length, 1);
});

// A user of the app signs up and signs in, as a browser app would.
const app = new PocketBase(base);
app.autoCancellation(false);
let me;
await check("sign up and sign in", async () => {
  await app.collection("users").create({
    email: "ann@example.com",
    password: "s3cret-pass",
    passwordConfirm: "s3cret-pass",
    name: "Ann",
  });
  const auth = await app.collection("users").authWithPassword("ann@example.com", "s3cret-pass");
  me = auth.record;
  assert.equal(me.name, "Ann");
});

const N = 1100; // more than two of getFullList's 500-record batches
await check("create", async () => {
  for (let i = 0; i < N; i++) {
    const r = await app.collection("tasks").create({
      title: `task ${i}`,
      n: i,
      state: i % 3 === 0 ? "done" : "todo",
      owner: me.id,
    });
    assert.equal(r.n, i);
  }
});

await check("getFullList pages until a short page", async () => {
  const all = await app.collection("tasks").getFullList({ sort: "n" });
  assert.equal(all.length, N);
  assert.deepEqual(all.slice(0, 3).map((r) => r.n), [0, 1, 2]);
});

await check("getList shape and filter", async () => {
  const page = await app.collection("tasks").getList(2, 20, {
    filter: app.filter("state = {:s} && n >= {:min}", { s: "done", min: 300 }),
    sort: "-n",
  });
  assert.equal(page.page, 2);
  assert.equal(page.perPage, 20);
  assert.equal(page.totalItems, Math.floor((N - 1) / 3) + 1 - 100);
  assert.equal(page.items.length, 20);
  assert.ok(page.items.every((r) => r.state === "done" && r.n >= 300));
});

await check("getFirstListItem, getOne with expand", async () => {
  const first = await app.collection("tasks").getFirstListItem(app.filter("title = {:t}", { t: "task 7" }));
  assert.equal(first.n, 7);
  const one = await app.collection("tasks").getOne(first.id, { expand: "owner" });
  assert.equal(one.expand.owner.name, "Ann");
  const e = await failure(() => app.collection("tasks").getFirstListItem(app.filter("title = {:t}", { t: "nope" })));
  assert.equal(e.status, 404);
});

await check("update and delete", async () => {
  const first = await app.collection("tasks").getFirstListItem("n = 1");
  const up = await app.collection("tasks").update(first.id, { state: "done" });
  assert.equal(up.state, "done");
  assert.equal(await app.collection("tasks").delete(first.id), true);
  const e = await failure(() => app.collection("tasks").getOne(first.id));
  assert.equal(e.status, 404);
});

await check("rules hide other users' records; validation errors", async () => {
  const guest = new PocketBase(base);
  const page = await guest.collection("tasks").getList(1, 10);
  assert.equal(page.totalItems, 0);
  let e = await failure(() => guest.collection("tasks").create({ title: "x", owner: me.id }));
  assert.equal(e.status, 400);
  e = await failure(() => app.collection("tasks").create({ title: "x", owner: me.id, state: "later" }));
  assert.equal(e.status, 400);
  assert.equal(e.response.data.state.code, "validation_invalid_value");
  e = await failure(() => app.collection("tasks").getList(1, 10, { filter: "nope = 1" }));
  assert.equal(e.status, 400);
});

console.log(`sdk: ${checks()} checks passed`);
