// The official PocketBase JavaScript SDK's realtime, unmodified, against one
// PocketBase or strata tenant: `node realtime.mjs <base url>` with
// STRATA_SU_EMAIL and STRATA_SU_PASSWORD set (driven by
// tests/tests/realtime.rs). With STRATA_EVICT_URL and STRATA_ADMIN_TOKEN
// (strata), the tenant is evicted (or, with STRATA_EVICT_BODY, moved to
// another node) midway and the SDK must reconnect and resubscribe by itself. Exits non-zero on the first broken expectation.
import PocketBase from "pocketbase";
import { EventSource } from "eventsource";
import assert from "node:assert/strict";
import { args, check, checks } from "./harness.mjs";

// Node has no EventSource of its own; the SDK takes the global one.
globalThis.EventSource = EventSource;

const { base, email, password } = args("realtime.mjs");
const WAIT_MS = 10000;

/// Events pushed by a subscription callback, taken one at a time with a
/// deadline.
class Inbox {
  constructor() {
    this.events = [];
    this.waiting = null;
  }
  push = (e) => {
    this.events.push(e);
    if (this.waiting) {
      const w = this.waiting;
      this.waiting = null;
      w();
    }
  };
  async next(what) {
    const deadline = Date.now() + WAIT_MS;
    while (!this.events.length) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no event: ${what}`);
      await new Promise((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiting = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.events.shift();
  }
}

const admin = new PocketBase(base);
admin.autoCancellation(false);
await admin.collection("_superusers").authWithPassword(email, password);

let users;
await check("collections", async () => {
  // The default `users` of a new app, on both servers.
  users = await admin.collections.getOne("users");
  await admin.collections.create({
    name: "posts",
    type: "base",
    fields: [{ name: "title", type: "text" }],
    listRule: "",
    viewRule: "",
    createRule: "",
    updateRule: "",
    deleteRule: "",
  });
  await admin.collections.create({
    name: "notes",
    type: "base",
    fields: [
      { name: "title", type: "text" },
      { name: "owner", type: "relation", collectionId: users.id, maxSelect: 1 },
    ],
    listRule: "owner = @request.auth.id",
    viewRule: "owner = @request.auth.id",
  });
});

// A guest subscribes to every post; another client writes.
const guest = new PocketBase(base);
const posts = new Inbox();
let unsubscribe;
await check("subscribe('*') sees another client's create, update, delete", async () => {
  unsubscribe = await guest.collection("posts").subscribe("*", posts.push);
  assert.ok(guest.realtime.isConnected);
  assert.equal(guest.realtime.clientId.length, 40);
  const writer = new PocketBase(base);
  const r = await writer.collection("posts").create({ title: "hello" });
  let e = await posts.next("create");
  assert.equal(e.action, "create");
  assert.equal(e.record.id, r.id);
  assert.equal(e.record.title, "hello");
  assert.equal(e.record.collectionName, "posts");
  await writer.collection("posts").update(r.id, { title: "hello again" });
  e = await posts.next("update");
  assert.equal(e.action, "update");
  assert.equal(e.record.title, "hello again");
  await writer.collection("posts").delete(r.id);
  e = await posts.next("delete");
  assert.equal(e.action, "delete");
  assert.equal(e.record.id, r.id);
});

await check("subscribe(id) and options", async () => {
  const writer = new PocketBase(base);
  const r = await writer.collection("posts").create({ title: "one" });
  await posts.next("create of one");
  const single = new Inbox();
  await guest.collection("posts").subscribe(r.id, single.push, { fields: "id,title" });
  await writer.collection("posts").update(r.id, { title: "one!" });
  const e = await single.next("update of one");
  assert.deepEqual(e.record, { id: r.id, title: "one!" });
  assert.equal((await posts.next("update of one, '*'")).record.title, "one!");
});

await check("a signed-in subscriber sees only its own notes", async () => {
  const user = new PocketBase(base);
  await user.collection("users").create({
    email: "ann@example.com",
    password: "s3cret-pass",
    passwordConfirm: "s3cret-pass",
    name: "Ann",
  });
  const auth = await user.collection("users").authWithPassword("ann@example.com", "s3cret-pass");
  const mine = new Inbox();
  await user.collection("notes").subscribe("*", mine.push);
  await admin.collection("notes").create({ title: "someone else's" });
  const n = await admin.collection("notes").create({ title: "ann's", owner: auth.record.id });
  const e = await mine.next("ann's note");
  assert.equal(e.record.id, n.id);
  assert.equal(e.record.title, "ann's");
  await user.realtime.unsubscribe();
});

await check("unsubscribe", async () => {
  await unsubscribe();
  await guest.realtime.unsubscribe();
  assert.equal(guest.realtime.isConnected, false);
});

const evict = process.env.STRATA_EVICT_URL;
if (evict) {
  await check("the SDK reconnects and resubscribes after an eviction", async () => {
    const sub = new PocketBase(base);
    const inbox = new Inbox();
    await sub.collection("posts").subscribe("*", inbox.push);
    const first = sub.realtime.clientId;
    // The SDK calls PB_CONNECT listeners once its subscriptions are sent.
    const reconnected = new Inbox();
    await sub.realtime.subscribe("PB_CONNECT", reconnected.push);
    // STRATA_EVICT_BODY: a JSON body for the call (a move to another node
    // of a cluster, which evicts the tenant here and loads it there).
    const body = process.env.STRATA_EVICT_BODY;
    const res = await fetch(evict, {
      method: "POST",
      headers: {
        Authorization: `Bearer ${process.env.STRATA_ADMIN_TOKEN}`,
        ...(body ? { "Content-Type": "application/json" } : {}),
      },
      body,
    });
    const answer = await res.json();
    assert.equal(res.status, 200, JSON.stringify(answer));
    assert.ok(answer.evicted === true || typeof answer.pauseMs === "number", JSON.stringify(answer));
    await reconnected.next("a new PB_CONNECT");
    assert.notEqual(sub.realtime.clientId, first);
    const r = await new PocketBase(base).collection("posts").create({ title: "after" });
    const e = await inbox.next("the create after the eviction");
    assert.equal(e.record.id, r.id);
    await sub.realtime.unsubscribe();
  });
}

console.log(`sdk: ${checks()} realtime checks passed`);
process.exit(0);
