// The official PocketBase JavaScript SDK's file calls, unmodified, against
// one PocketBase or strata tenant: `node files.mjs <base url>` with
// STRATA_SU_EMAIL and STRATA_SU_PASSWORD set (driven by
// tests/tests/files.rs). Uploads with FormData, thumbs and downloads through
// `pb.files.getURL`, protected files with `pb.files.getToken`, the `+` and
// `-` modifiers, and files going with their record. Exits non-zero on the
// first broken expectation.
import PocketBase from "pocketbase";
import assert from "node:assert/strict";
import { args, check, checks } from "./harness.mjs";

const { base, email, password } = args("files.mjs");
const pb = new PocketBase(base);

// An 8x6 PNG.
const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAgAAAAGCAIAAABxZ0isAAAAY0lEQVR4nA3JIQEAQQhFQZKgCbEh0Jvky5cCTYgNgSbR3dgxM9w4xjVklPGMNcwCD05wAwUVvGDjj8STk9xESSUv2fxDuDjiCokST6z+aLw5zW3UVPOa7T8GH85wBw01vGGHD8x/PnFB5PEWAAAAAElFTkSuQmCC",
  "base64",
);

/// The width and height in a PNG's header.
function pngSize(buf) {
  assert.equal(buf.subarray(1, 4).toString(), "PNG", "not a PNG");
  return [buf.readUInt32BE(16), buf.readUInt32BE(20)];
}

async function get(url) {
  const r = await fetch(url);
  return { status: r.status, type: r.headers.get("content-type"), body: Buffer.from(await r.arrayBuffer()) };
}

await check("superuser sign-in", () =>
  pb.collection("_superusers").authWithPassword(email, password),
);

let albums;
await check("a collection with file fields", async () => {
  albums = await pb.collections.create({
    name: "albums",
    type: "base",
    listRule: "",
    viewRule: "",
    createRule: "",
    updateRule: "",
    deleteRule: "",
    fields: [
      { name: "title", type: "text" },
      { name: "cover", type: "file", maxSelect: 1, thumbs: ["4x0"] },
      { name: "docs", type: "file", maxSelect: 5 },
      { name: "secret", type: "file", protected: true },
    ],
  });
});

let rec;
await check("create with FormData uploads", async () => {
  const form = new FormData();
  form.append("title", "holiday");
  form.append("cover", new Blob([PNG], { type: "image/png" }), "Beach Day.png");
  form.append("docs", new Blob(["first"]), "a.txt");
  form.append("docs", new Blob(["second"]), "b.txt");
  form.append("secret", new Blob(["hidden"]), "key.txt");
  rec = await pb.collection("albums").create(form);
  assert.match(rec.cover, /^beach_day_[a-z0-9]{10}\.png$/);
  assert.equal(rec.docs.length, 2);
  assert.match(rec.docs[0], /^a[a-z0-9]{10}_[a-z0-9]{10}\.txt$/);
});

await check("download and thumbs through pb.files.getURL", async () => {
  const full = await get(pb.files.getURL(rec, rec.cover));
  assert.equal(full.status, 200);
  assert.equal(full.type, "image/png");
  assert.deepEqual(full.body, PNG);
  const thumb = await get(pb.files.getURL(rec, rec.cover, { thumb: "100x100" }));
  assert.deepEqual(pngSize(thumb.body), [100, 100]);
  const listed = await get(pb.files.getURL(rec, rec.cover, { thumb: "4x0" }));
  assert.deepEqual(pngSize(listed.body), [4, 3]);
  const text = await get(pb.files.getURL(rec, rec.docs[1], { download: true }));
  assert.equal(text.body.toString(), "second");
});

await check("protected files need a file token", async () => {
  await pb.collections.update(albums.id, { viewRule: "@request.auth.id != ''" });
  const without = await get(pb.files.getURL(rec, rec.secret));
  assert.equal(without.status, 404);
  const token = await pb.files.getToken();
  const withToken = await get(pb.files.getURL(rec, rec.secret, { token }));
  assert.equal(withToken.status, 200);
  assert.equal(withToken.body.toString(), "hidden");
});

await check("append with docs+ and remove with docs-", async () => {
  const form = new FormData();
  form.append("docs+", new Blob(["third"]), "c.txt");
  let r = await pb.collection("albums").update(rec.id, form);
  assert.equal(r.docs.length, 3);
  const gone = r.docs[0];
  r = await pb.collection("albums").update(rec.id, { "docs-": [gone] });
  assert.deepEqual(r.docs, [rec.docs[1], r.docs[1]]);
  assert.equal((await get(pb.files.getURL(r, gone))).status, 404);
});

await check("an oversized or mistyped upload is a validation error", async () => {
  await pb.collections.update(albums.id, {
    fields: [...(await pb.collections.getOne(albums.id)).fields.map((f) =>
      f.name === "cover" ? { ...f, mimeTypes: ["image/png"], maxSize: 1000 } : f)],
  });
  const form = new FormData();
  form.append("cover", new Blob(["not an image"]), "fake.png");
  await assert.rejects(pb.collection("albums").update(rec.id, form), (e) => {
    assert.equal(e.status, 400);
    assert.equal(e.response.data.cover.code, "validation_invalid_mime_type");
    return true;
  });
});

await check("files go with their record", async () => {
  await pb.collection("albums").delete(rec.id);
  assert.equal((await get(pb.files.getURL(rec, rec.cover))).status, 404);
});

console.log(`sdk files: ${checks()} checks passed`);
