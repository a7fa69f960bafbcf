//! `/api/realtime` as the real PocketBase 0.40 speaks it, and `strata
//! serve` next to it: each scenario runs the same requests and reads the
//! same raw event streams on a fresh PocketBase and a fresh strata tenant,
//! checks what it expects on each, and the two logs must match (record
//! ids, times and collection ids left out).
//!
//! Absence is proved by order, not by waiting: a client that must not see
//! an event is later sent one it must see, and that must be its next one.
//! Every read has a deadline.
//!
//! Strata only: eviction, idle eviction and SIGTERM with clients
//! connected; the official JS SDK (`tests/sdk/realtime.mjs`) against both;
//! and, `#[ignore]`d, the memory of idle clients (docs/benchmarks.md).

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use strata_tests::Backend;
use strata_tests::http::{Response, encode};
use strata_tests::pocketbase::PocketBase;
use strata_tests::sdk;
use strata_tests::serve::{ADMIN, Server};
use strata_tests::side::{Side, TENANT, same_steps};
use strata_tests::sse::{Event, Stream};

/// How long any one expected event may take.
const WAIT: Duration = Duration::from_secs(10);

/// A side whose default `users` is readable by anyone (for `expand`), with
/// the scenarios' collections.
fn with_collections(side: Side) -> Result<Side> {
    let su = side.superuser()?;
    let r = side.api(
        "PATCH",
        "/api/collections/users",
        Some(&su),
        Some(json!({"listRule": "", "viewRule": ""})),
    )?;
    ensure!(r.status == 200, "{}: users rules: {r:?}", side.name());
    side.collections(&su)?;
    Ok(side)
}

/// The real PocketBase, set up as [`with_collections`].
fn pocketbase() -> Result<Side> {
    with_collections(Side::pocketbase()?)
}

/// A strata tenant set up the same way.
fn strata(extra: &[&str]) -> Result<Side> {
    strata_with(extra, &[])
}

/// The same, with extra environment for the server.
fn strata_with(extra: &[&str], env: &[(&str, &str)]) -> Result<Side> {
    with_collections(Side::strata_with(extra, env)?)
}

/// What the scenarios do on either side.
trait Ops {
    /// `posts` (anyone may do anything), `notes` (each user sees its own;
    /// superusers write), `secrets` (seen with the header `X-Key: yes`) and
    /// `comments` (deleted with their post).
    fn collections(&self, su: &str) -> Result<()>;
    /// The strata server (strata-only tests).
    fn server(&self) -> &Server;
    /// A user signed up and signed in: its id and token.
    fn user(&self, email: &str, name: &str) -> Result<(String, String)>;
    /// A new record; its id.
    fn create(&self, coll: &str, token: Option<&str>, body: Value) -> Result<String>;
    fn patch(&self, coll: &str, id: &str, token: Option<&str>, body: Value) -> Result<()>;
    fn delete(&self, coll: &str, id: &str, token: Option<&str>) -> Result<()>;
    /// A new event stream, its `PB_CONNECT` read and checked: its client id.
    fn connect(&self) -> Result<(Stream, String)>;
    /// `POST /api/realtime`.
    fn subscribe(&self, client: &str, subs: &[&str], token: Option<&str>) -> Result<Response>;
    /// `POST /api/realtime`, which must answer 204.
    fn subscribed(&self, client: &str, subs: &[&str], token: Option<&str>) -> Result<()>;
}

impl Ops for Side {
    fn collections(&self, su: &str) -> Result<()> {
        let users = self.api("GET", "/api/collections/users", Some(su), None)?;
        let users = users.body["id"].as_str().context("users id")?.to_string();
        let owner =
            json!({"name": "owner", "type": "relation", "collectionId": users, "maxSelect": 1});
        for c in [
            json!({
                "name": "posts", "type": "base",
                "fields": [{"name": "title", "type": "text"}, owner],
                "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            }),
            json!({
                "name": "notes", "type": "base",
                "fields": [{"name": "title", "type": "text"}, owner],
                "listRule": "owner = @request.auth.id", "viewRule": "owner = @request.auth.id",
                "createRule": null, "updateRule": null, "deleteRule": null,
            }),
            json!({
                "name": "secrets", "type": "base",
                "fields": [{"name": "title", "type": "text"}],
                "listRule": "@request.headers.x_key = 'yes'", "viewRule": "@request.headers.x_key = 'yes'",
                "createRule": "", "updateRule": null, "deleteRule": null,
            }),
        ] {
            let r = self.api("POST", "/api/collections", Some(su), Some(c))?;
            ensure!(r.status == 200, "{}: create collection: {r:?}", self.name());
        }
        let posts = self.api("GET", "/api/collections/posts", Some(su), None)?;
        let posts = posts.body["id"].as_str().context("posts id")?.to_string();
        let r = self.api(
            "POST",
            "/api/collections",
            Some(su),
            Some(json!({
                "name": "comments", "type": "base",
                "fields": [
                    {"name": "title", "type": "text"},
                    {"name": "post", "type": "relation", "collectionId": posts, "maxSelect": 1, "cascadeDelete": true},
                ],
                "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
            })),
        )?;
        ensure!(r.status == 200, "{}: create comments: {r:?}", self.name());
        Ok(())
    }

    fn server(&self) -> &Server {
        match self {
            Side::Strata { s, .. } => s,
            Side::PocketBase(_) => panic!("strata only"),
        }
    }

    fn user(&self, email: &str, name: &str) -> Result<(String, String)> {
        let r = self.api(
            "POST",
            "/api/collections/users/records",
            None,
            Some(json!({"email": email, "password": "password123", "passwordConfirm": "password123", "name": name})),
        )?;
        ensure!(r.status == 200, "{}: sign up {email}: {r:?}", self.name());
        let r = self.api(
            "POST",
            "/api/collections/users/auth-with-password",
            None,
            Some(json!({"identity": email, "password": "password123"})),
        )?;
        ensure!(r.status == 200, "{}: sign in {email}: {r:?}", self.name());
        Ok((
            r.body["record"]["id"].as_str().context("id")?.to_string(),
            r.body["token"].as_str().context("token")?.to_string(),
        ))
    }

    fn create(&self, coll: &str, token: Option<&str>, body: Value) -> Result<String> {
        let r = self.api(
            "POST",
            &format!("/api/collections/{coll}/records"),
            token,
            Some(body),
        )?;
        ensure!(r.status == 200, "{}: create in {coll}: {r:?}", self.name());
        Ok(r.body["id"].as_str().context("id")?.to_string())
    }

    fn patch(&self, coll: &str, id: &str, token: Option<&str>, body: Value) -> Result<()> {
        let r = self.api(
            "PATCH",
            &format!("/api/collections/{coll}/records/{id}"),
            token,
            Some(body),
        )?;
        ensure!(
            r.status == 200,
            "{}: update {coll}/{id}: {r:?}",
            self.name()
        );
        Ok(())
    }

    fn delete(&self, coll: &str, id: &str, token: Option<&str>) -> Result<()> {
        let r = self.api(
            "DELETE",
            &format!("/api/collections/{coll}/records/{id}"),
            token,
            None,
        )?;
        ensure!(
            r.status == 204,
            "{}: delete {coll}/{id}: {r:?}",
            self.name()
        );
        Ok(())
    }

    fn connect(&self) -> Result<(Stream, String)> {
        let mut sse = Stream::open(self.addr(), &format!("{}/api/realtime", self.prefix()), &[])?;
        ensure!(
            sse.status == 200,
            "{}: realtime status {}",
            self.name(),
            sse.status
        );
        ensure!(
            sse.header("content-type")
                .is_some_and(|v| v.starts_with("text/event-stream")),
            "{}: {:?}",
            self.name(),
            sse.headers
        );
        let ev = sse.next(WAIT)?.context("stream ended before PB_CONNECT")?;
        let id = ev.json()["clientId"].as_str().unwrap_or("").to_string();
        ensure!(
            ev.name == "PB_CONNECT"
                && ev.id == id
                && id.len() == 40
                && id.chars().all(|c| c.is_ascii_alphanumeric()),
            "{}: first event {ev:?}",
            self.name()
        );
        Ok((sse, id))
    }

    fn subscribe(&self, client: &str, subs: &[&str], token: Option<&str>) -> Result<Response> {
        self.api(
            "POST",
            "/api/realtime",
            token,
            Some(json!({"clientId": client, "subscriptions": subs})),
        )
    }

    fn subscribed(&self, client: &str, subs: &[&str], token: Option<&str>) -> Result<()> {
        let r = self.subscribe(client, subs, token)?;
        ensure!(
            r.status == 204 && r.text.is_empty(),
            "{}: subscribe {subs:?}: {r:?}",
            self.name()
        );
        Ok(())
    }
}

/// A topic with per-subscription options, as the SDK writes it.
fn with_options(topic: &str, options: Value) -> String {
    format!("{topic}?options={}", encode(&options.to_string()))
}

/// What a run saw, comparable across sides: record ids replaced by the
/// labels the scenario gave them, times and collection ids left out.
#[derive(Default)]
struct Log {
    steps: Vec<(String, Value)>,
    ids: HashMap<String, String>,
}

impl Log {
    fn label(&mut self, id: &str, label: &str) {
        self.ids.insert(id.to_string(), label.to_string());
    }

    fn norm(&self, v: &Value) -> Value {
        match v {
            Value::String(s) => {
                let mut s = s.clone();
                for (id, label) in &self.ids {
                    s = s.replace(id.as_str(), label);
                }
                Value::String(s)
            }
            Value::Array(a) => Value::Array(a.iter().map(|v| self.norm(v)).collect()),
            Value::Object(o) => Value::Object(
                o.iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "created" | "updated" | "collectionId"))
                    .map(|(k, v)| (k.clone(), self.norm(v)))
                    .collect(),
            ),
            other => other.clone(),
        }
    }

    fn note(&mut self, step: &str, v: Value) {
        let v = self.norm(&v);
        self.steps.push((step.to_string(), v));
    }

    /// The next `n` events of `sse` (in any order: PocketBase sends one
    /// write's messages to one client in no set order), noted sorted; each
    /// must be `action` on the record labelled `label`.
    fn expect(
        &mut self,
        step: &str,
        sse: &mut Stream,
        n: usize,
        action: &str,
        label: &str,
    ) -> Result<Vec<Event>> {
        let evs = sse.take(n, WAIT).with_context(|| step.to_string())?;
        let mut seen = Vec::new();
        for ev in &evs {
            let d = ev.json();
            let id = d["record"]["id"].as_str().unwrap_or("");
            ensure!(
                d["action"] == action && self.ids.get(id).map(String::as_str) == Some(label),
                "{step}: expected {action} of {label}, got {ev:?}"
            );
            seen.push(json!({"event": ev.name, "data": d}));
        }
        let mut seen: Vec<Value> = seen.iter().map(|v| self.norm(v)).collect();
        seen.sort_by_key(|v| v.to_string());
        self.steps.push((step.to_string(), Value::Array(seen)));
        Ok(evs)
    }
}

/// Run `scenario` on the real PocketBase and on strata: each must pass
/// its own checks, and the logs must match step by step.
fn compare(scenario: impl Fn(&Side, &mut Log) -> Result<()>) -> Result<()> {
    let sides = [pocketbase()?, strata(&[])?];
    let mut logs = Vec::new();
    for side in &sides {
        let mut log = Log::default();
        let r = scenario(side, &mut log);
        if let (Err(_), Side::Strata { s, .. }) = (&r, side) {
            eprintln!("strata log:\n{}", s.log_text());
        }
        r.with_context(|| format!("on {}", side.name()))?;
        logs.push(log);
    }
    same_steps(&logs[0].steps, &logs[1].steps)
}

/// `PB_CONNECT`, then `posts/*` and `posts/ID`: create, update and delete
/// reach the topics that name the record, subscriptions replace the
/// previous ones, and an empty list unsubscribes.
#[test]
fn events_for_create_update_delete() -> Result<()> {
    compare(|side, log| {
        let (mut sse, cid) = side.connect()?;
        side.subscribed(&cid, &["posts/*"], None)?;
        let p1 = side.create("posts", None, json!({"title": "one"}))?;
        log.label(&p1, "p1");
        let ev = log.expect("create", &mut sse, 1, "create", "p1")?;
        ensure!(
            ev[0].name == "posts/*"
                && ev[0].id == cid
                && ev[0].json()["record"]["title"] == "one"
                && ev[0].json()["record"]["collectionName"] == "posts",
            "create: {ev:?}"
        );

        let one = format!("posts/{p1}");
        side.subscribed(&cid, &["posts/*", &one], None)?;
        side.patch("posts", &p1, None, json!({"title": "two"}))?;
        let evs = log.expect("update, two topics", &mut sse, 2, "update", "p1")?;
        let mut names: Vec<&str> = evs.iter().map(|e| e.name.as_str()).collect();
        names.sort();
        ensure!(names == ["posts/*", one.as_str()], "{evs:?}");
        ensure!(
            evs.iter().all(|e| e.json()["record"]["title"] == "two"),
            "{evs:?}"
        );

        // Another record: `posts/*` only.
        let p2 = side.create("posts", None, json!({"title": "three"}))?;
        log.label(&p2, "p2");
        log.expect("create, one topic", &mut sse, 1, "create", "p2")?;

        // The delete carries the record as it was.
        side.delete("posts", &p1, None)?;
        let evs = log.expect("delete", &mut sse, 2, "delete", "p1")?;
        ensure!(
            evs.iter().all(|e| e.json()["record"]["title"] == "two"),
            "{evs:?}"
        );

        // Unsubscribed: p3 sends nothing, so p4 is the next event.
        side.subscribed(&cid, &[], None)?;
        let p3 = side.create("posts", None, json!({"title": "unseen"}))?;
        log.label(&p3, "p3");
        side.subscribed(&cid, &["posts/*"], None)?;
        let p4 = side.create("posts", None, json!({"title": "four"}))?;
        log.label(&p4, "p4");
        log.expect("after unsubscribing", &mut sse, 1, "create", "p4")?;
        Ok(())
    })
}

/// The list rule `owner = @request.auth.id`, run for each subscriber with
/// the auth its subscribe request bound: each user gets its own notes'
/// events, a superuser all of them, a guest none; the view rule guards
/// `notes/ID` the same way; a client's auth cannot be swapped.
#[test]
fn each_subscriber_gets_what_its_rule_allows() -> Result<()> {
    compare(|side, log| {
        let su = side.superuser()?;
        let (alice, ta) = side.user("alice@example.com", "Alice")?;
        let (bob, tb) = side.user("bob@example.com", "Bob")?;
        log.label(&alice, "alice");
        log.label(&bob, "bob");
        let (mut sa, ca) = side.connect()?;
        let (mut sb, cb) = side.connect()?;
        let (mut sg, cg) = side.connect()?;
        let (mut ss, cs) = side.connect()?;
        side.subscribed(&ca, &["notes/*"], Some(&ta))?;
        side.subscribed(&cb, &["notes/*"], Some(&tb))?;
        side.subscribed(&cg, &["notes/*", "posts/*"], None)?;
        side.subscribed(&cs, &["notes/*"], Some(&su))?;

        let note = |title: &str, owner: &str, label: &str, log: &mut Log| -> Result<String> {
            let id = side.create("notes", Some(&su), json!({"title": title, "owner": owner}))?;
            log.label(&id, label);
            Ok(id)
        };
        let n1 = note("a1", &alice, "n1", log)?;
        log.expect("alice: n1", &mut sa, 1, "create", "n1")?;
        log.expect("superuser: n1", &mut ss, 1, "create", "n1")?;
        note("b1", &bob, "n2", log)?;
        log.expect("bob: n2", &mut sb, 1, "create", "n2")?;
        log.expect("superuser: n2", &mut ss, 1, "create", "n2")?;
        // Alice's next event is n3: she never got n2.
        note("a2", &alice, "n3", log)?;
        log.expect("alice: n3, not n2", &mut sa, 1, "create", "n3")?;
        log.expect("superuser: n3", &mut ss, 1, "create", "n3")?;

        // Bob asks for Alice's note by id: its view rule says no.
        let one = format!("notes/{n1}");
        side.subscribed(&cb, &["notes/*", &one], Some(&tb))?;
        side.patch("notes", &n1, Some(&su), json!({"title": "a1 edited"}))?;
        log.expect("alice: n1 updated", &mut sa, 1, "update", "n1")?;
        note("b2", &bob, "n4", log)?;
        log.expect("bob: n4, nothing of alice's", &mut sb, 1, "create", "n4")?;

        // The guest saw no note: its next event is a post.
        let p = side.create("posts", None, json!({"title": "for everyone"}))?;
        log.label(&p, "p");
        log.expect("guest: the post, no note", &mut sg, 1, "create", "p")?;

        // A client bound to Alice stays Alice's: not Bob's, not a guest's.
        for (what, token) in [("bob", Some(tb.as_str())), ("guest", None)] {
            let r = side.subscribe(&ca, &["notes/*"], token)?;
            ensure!(r.status == 403, "rebind to {what}: {r:?}");
            log.note(&format!("rebind to {what}"), json!([r.status, r.body]));
        }
        // A guest client may sign in once.
        side.subscribed(&cg, &["notes/*"], Some(&tb))?;
        note("b3", &bob, "n5", log)?;
        log.expect("guest now bob: n5", &mut sg, 1, "create", "n5")?;
        Ok(())
    })
}

/// Per-topic `options`: `expand` and `fields` shape the record as the
/// records API would, `filter` narrows the events, `headers` reach the
/// rule as `@request.headers.*` (but an `Authorization` there is not the
/// client's auth).
#[test]
fn options_expand_fields_filter() -> Result<()> {
    compare(|side, log| {
        let (alice, _) = side.user("alice@example.com", "Alice")?;
        log.label(&alice, "alice");
        let (mut sse, cid) = side.connect()?;
        let shaped = with_options(
            "posts/*",
            json!({"query": {"expand": "owner", "fields": "id,title,expand.owner.name"}}),
        );
        let filtered = with_options("posts/*", json!({"query": {"filter": "title = 'b'"}}));
        side.subscribed(&cid, &[&shaped, &filtered], None)?;

        let a = side.create("posts", None, json!({"title": "a", "owner": alice}))?;
        log.label(&a, "a");
        let ev = log.expect("a: shaped only", &mut sse, 1, "create", "a")?;
        ensure!(ev[0].name == shaped, "{ev:?}");
        let rec = &ev[0].json()["record"];
        ensure!(
            rec.as_object().map(|o| o.len()) == Some(3)
                && rec["title"] == "a"
                && rec["expand"]["owner"] == json!({"name": "Alice"}),
            "fields and expand: {rec}"
        );
        let b = side.create("posts", None, json!({"title": "b"}))?;
        log.label(&b, "b");
        let evs = log.expect("b: both", &mut sse, 2, "create", "b")?;
        let plain = evs
            .iter()
            .find(|e| e.name == filtered)
            .context("the filtered topic")?;
        ensure!(
            plain.json()["record"]["owner"] == ""
                && plain.json()["record"]["collectionName"] == "posts",
            "no options: the whole record: {plain:?}"
        );
        let c = side.create("posts", None, json!({"title": "c"}))?;
        log.label(&c, "c");
        log.expect("c: shaped only", &mut sse, 1, "create", "c")?;

        // Headers for the rule; an `Authorization` among them binds nothing.
        let su = side.superuser()?;
        let (mut sh, ch) = side.connect()?;
        let keyed = with_options("secrets/*", json!({"headers": {"X-Key": "yes"}}));
        let as_su = with_options("notes/*", json!({"headers": {"Authorization": su}}));
        side.subscribed(&ch, &[&keyed, "secrets/*", &as_su, "posts/*"], None)?;
        let n = side.create(
            "notes",
            Some(&su),
            json!({"title": "private", "owner": alice}),
        )?;
        log.label(&n, "note");
        let x = side.create("secrets", None, json!({"title": "x"}))?;
        log.label(&x, "secret");
        let ev = log.expect(
            "secret: with the header only",
            &mut sh,
            1,
            "create",
            "secret",
        )?;
        ensure!(ev[0].name == keyed, "{ev:?}");
        let p = side.create("posts", None, json!({"title": "p"}))?;
        log.label(&p, "p");
        log.expect("post next: no note", &mut sh, 1, "create", "p")?;
        Ok(())
    })
}

/// A cascaded delete sends the delete of every record it removes.
#[test]
fn cascaded_deletes_send_events() -> Result<()> {
    compare(|side, log| {
        let (mut sse, cid) = side.connect()?;
        let p = side.create("posts", None, json!({"title": "parent"}))?;
        log.label(&p, "post");
        let c = side.create("comments", None, json!({"title": "child", "post": p}))?;
        log.label(&c, "comment");
        side.subscribed(&cid, &["comments/*"], None)?;
        side.delete("posts", &p, None)?;
        let ev = log.expect("cascade", &mut sse, 1, "delete", "comment")?;
        ensure!(ev[0].json()["record"]["post"] == p.as_str(), "{ev:?}");
        Ok(())
    })
}

/// `/api/batch`: the events of its writes come once it commits, all of
/// them; a batch that fails sends none.
#[test]
fn batch_writes_send_events() -> Result<()> {
    compare(|side, log| {
        let su = side.superuser()?;
        let r = side.api(
            "PATCH",
            "/api/settings",
            Some(&su),
            Some(json!({"batch": {"enabled": true, "maxRequests": 50}})),
        )?;
        ensure!(r.status == 200, "enable batch: {r:?}");
        let (mut sse, cid) = side.connect()?;
        side.subscribed(&cid, &["posts/*"], None)?;
        let p = side.create("posts", None, json!({"title": "old"}))?;
        log.label(&p, "p");
        log.expect("create", &mut sse, 1, "create", "p")?;
        let url = |id: &str| format!("/api/collections/posts/records{id}");
        let r = side.api(
            "POST",
            "/api/batch",
            None,
            Some(json!({"requests": [
                {"method": "POST", "url": url(""), "body": {"title": "rolled back"}},
                {"method": "PATCH", "url": url("/missing"), "body": {"title": "x"}},
            ]})),
        )?;
        ensure!(r.status >= 400, "a failing batch: {r:?}");
        log.note("failed batch", json!(r.status));
        let b = "bbbbbbbbbbbbbbb";
        log.label(b, "b");
        let r = side.api(
            "POST",
            "/api/batch",
            None,
            Some(json!({"requests": [
                {"method": "POST", "url": url(""), "body": {"id": b, "title": "b"}},
                {"method": "PATCH", "url": url(&format!("/{p}")), "body": {"title": "new"}},
                {"method": "DELETE", "url": url(&format!("/{p}"))},
            ]})),
        )?;
        ensure!(r.status == 200, "batch: {r:?}");
        // The next three events are the batch's (none of the failed one).
        let evs = sse.take(3, WAIT)?;
        let mut seen: Vec<Value> = evs
            .iter()
            .map(|e| {
                let d = e.json();
                log.norm(&json!([
                    d["action"],
                    d["record"]["id"],
                    d["record"]["title"]
                ]))
            })
            .collect();
        seen.sort_by_key(|v| v.to_string());
        let want = vec![
            json!(["create", "b", "b"]),
            json!(["delete", "p", "new"]),
            json!(["update", "p", "new"]),
        ];
        ensure!(seen == want, "batch events: {seen:?}");
        log.note("batch events", Value::Array(seen));
        Ok(())
    })
}

/// Bad subscribe requests: the same status and error body on both sides.
#[test]
fn subscribe_errors() -> Result<()> {
    compare(|side, log| {
        let (_sse, cid) = side.connect()?;
        let too_many: Vec<String> = (0..1001).map(|i| format!("posts/{i}")).collect();
        let long = format!("posts/{}", "x".repeat(2501));
        let cases: Vec<(&str, String, u16)> = vec![
            (
                "unknown client",
                json!({"clientId": "nope", "subscriptions": ["posts/*"]}).to_string(),
                404,
            ),
            ("bad json", "{bad".into(), 400),
            ("not an object", "[]".into(), 400),
            (
                "no client id",
                json!({"subscriptions": ["posts/*"]}).to_string(),
                400,
            ),
            (
                "a number for a topic",
                json!({"clientId": cid, "subscriptions": [1]}).to_string(),
                400,
            ),
            (
                "topics not a list",
                json!({"clientId": cid, "subscriptions": "posts/*"}).to_string(),
                400,
            ),
            (
                "over 1000 topics",
                json!({"clientId": cid, "subscriptions": too_many}).to_string(),
                400,
            ),
            (
                "a topic over 2500 characters",
                json!({"clientId": cid, "subscriptions": [long]}).to_string(),
                400,
            ),
        ];
        for (what, body, status) in cases {
            let r = strata_tests::http::request(
                side.addr(),
                "POST",
                &format!("{}/api/realtime", side.prefix()),
                &[],
                Some(&body),
            )?;
            ensure!(r.status == status, "{what}: {r:?}");
            log.note(what, json!([r.status, r.body]));
        }
        // A bad token is a guest, as on every route.
        side.subscribed(&cid, &["posts/*"], Some("not-a-token"))?;
        Ok(())
    })
}

/// Polled until it holds (a server's background work), within `WAIT`.
fn eventually(what: &str, mut f: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    while !f()? {
        ensure!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn state(s: &Server) -> Result<String> {
    let r = s.admin("GET", &format!("/_strata/api/tenants/{TENANT}"), None)?;
    ensure!(r.status == 200, "{r:?}");
    Ok(r.body["state"].as_str().unwrap_or("").to_string())
}

/// Evicting a tenant ends its streams (the SDK then reconnects); the old
/// client id is gone and a new stream loads the tenant again.
#[test]
fn eviction_closes_streams_and_clients_reconnect() -> Result<()> {
    let side = strata(&[])?;
    let s = side.server();
    let (mut sse, cid) = side.connect()?;
    side.subscribed(&cid, &["posts/*"], None)?;
    let r = s.admin(
        "POST",
        &format!("/_strata/api/tenants/{TENANT}/evict"),
        None,
    )?;
    ensure!(r.status == 200 && r.body["evicted"] == true, "evict: {r:?}");
    ensure!(sse.next(WAIT)?.is_none(), "the stream must end on eviction");
    ensure!(state(s)? == "evicted", "still loaded");
    let (mut again, cid2) = side.connect()?;
    let r = side.subscribe(&cid, &["posts/*"], None)?;
    ensure!(r.status == 404, "the old client id: {r:?}");
    side.subscribed(&cid2, &["posts/*"], None)?;
    let id = side.create("posts", None, json!({"title": "after"}))?;
    let ev = again.next(WAIT)?.context("ended")?;
    ensure!(ev.json()["record"]["id"] == id.as_str(), "{ev:?}");
    Ok(())
}

/// A connected client keeps its tenant loaded past `--idle-ttl`; once it
/// goes, the tenant is idle-evicted as usual.
#[test]
fn a_connected_client_keeps_its_tenant_loaded() -> Result<()> {
    let side = strata(&["--idle-ttl", "300ms"])?;
    let s = side.server();
    let (mut sse, cid) = side.connect()?;
    side.subscribed(&cid, &["posts/*"], None)?;
    // Several sweeps (every 100 ms at this TTL) run meanwhile.
    let until = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < until {
        ensure!(state(s)? == "loaded", "evicted with a client connected");
        std::thread::sleep(Duration::from_millis(100));
    }
    let id = side.create("posts", None, json!({"title": "still here"}))?;
    let ev = sse.next(WAIT)?.context("ended")?;
    ensure!(ev.json()["record"]["id"] == id.as_str(), "{ev:?}");
    drop(sse);
    eventually("the tenant is idle-evicted once the client left", || {
        Ok(state(s)? == "evicted")
    })
}

/// A stream with no message for the idle timeout ends, as PocketBase's
/// does after 5 minutes (here 1.5 s, by `STRATA_REALTIME_IDLE`); each
/// message starts the wait again.
#[test]
fn idle_streams_end() -> Result<()> {
    let side = strata_with(&[], &[("STRATA_REALTIME_IDLE", "1500ms")])?;
    let (mut busy, cid) = side.connect()?;
    let (mut idle, _) = side.connect()?;
    side.subscribed(&cid, &["posts/*"], None)?;
    // 3 s of messages 500 ms apart: twice the timeout, and the stream lives.
    for i in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        let id = side.create("posts", None, json!({"title": format!("tick {i}")}))?;
        let ev = busy.next(WAIT)?.context("a busy stream ended")?;
        ensure!(ev.json()["record"]["id"] == id.as_str(), "{ev:?}");
    }
    ensure!(idle.next(WAIT)?.is_none(), "the idle stream must end");
    let last = Instant::now();
    ensure!(busy.next(WAIT)?.is_none(), "the busy stream, once idle");
    ensure!(
        last.elapsed() >= Duration::from_millis(1000),
        "ended {:?} after its last message",
        last.elapsed()
    );
    Ok(())
}

/// SIGTERM with clients connected: their streams end and the server exits
/// promptly, instead of draining until the clients' idle timeout.
#[test]
fn sigterm_ends_streams() -> Result<()> {
    let mut side = strata(&[])?;
    let (mut sse, cid) = side.connect()?;
    side.subscribed(&cid, &["posts/*"], None)?;
    let started = Instant::now();
    let Side::Strata { s, .. } = &mut side else {
        unreachable!()
    };
    let status = s.terminate()?;
    ensure!(status.success(), "exit: {status:?}");
    ensure!(
        started.elapsed() < Duration::from_secs(20),
        "exit took {:?}",
        started.elapsed()
    );
    ensure!(sse.next(WAIT)?.is_none(), "the stream must end");
    Ok(())
}

/// The official JS SDK, unmodified: `subscribe('*')` sees another
/// client's create, update and delete; a user's subscription sees only its
/// own notes; on strata, after an eviction the SDK reconnects and
/// resubscribes by itself.
#[test]
fn the_js_sdk_subscribes() -> Result<()> {
    let expect = "realtime checks passed";
    let pb = PocketBase::start()?;
    sdk::run("realtime.mjs", &format!("http://{}", pb.addr), &[], expect)
        .context("on pocketbase")?;
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(&b, &dir.path().join("node"), &[])?;
    s.create_tenant("sdk", None)?;
    let evict = format!("http://{}/_strata/api/tenants/sdk/evict", s.addr);
    let env = [
        ("STRATA_EVICT_URL", evict.as_str()),
        ("STRATA_ADMIN_TOKEN", ADMIN),
    ];
    sdk::run(
        "realtime.mjs",
        &format!("http://{}/t/sdk", s.addr),
        &env,
        expect,
    )
    .with_context(|| format!("on strata:\n{}", s.log_text()))
}

/// Resident memory of `strata serve`, in KiB (Linux).
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("VmRSS")
}

/// `n` idle clients on `side`, each subscribed to `posts/*`: its server's
/// RSS before and after (KiB), the time to connect them all, and the time
/// one create takes to reach every one of them; the clients, still
/// connected.
type Measured = (u64, u64, Duration, Duration, Vec<Stream>);

fn idle_clients(side: &Side, pid: u32, n: usize) -> Result<Measured> {
    // Warm: one client through its whole life (the tenant loaded).
    {
        let (_sse, cid) = side.connect()?;
        side.subscribed(&cid, &["posts/*"], None)?;
    }
    std::thread::sleep(Duration::from_millis(500));
    let before = rss_kib(pid)?;
    let mut clients = Vec::with_capacity(n);
    let started = Instant::now();
    for _ in 0..n {
        let (sse, cid) = side.connect()?;
        side.subscribed(&cid, &["posts/*"], None)?;
        clients.push(sse);
    }
    let took = started.elapsed();
    std::thread::sleep(Duration::from_millis(500));
    let after = rss_kib(pid)?;
    // Every client still gets an event.
    let id = side.create("posts", None, json!({"title": "to all"}))?;
    let t = Instant::now();
    for c in &mut clients {
        let ev = c.next(WAIT)?.context("ended")?;
        ensure!(ev.json()["record"]["id"] == id.as_str(), "{ev:?}");
    }
    Ok((before, after, took, t.elapsed(), clients))
}

/// The benchmark of docs/benchmarks.md: `STRATA_RT_CLIENTS` (2000) idle
/// clients on one strata tenant, then on the real PocketBase; each
/// server's RSS before and after, and per client. Run with
/// `cargo test -p strata-tests --test realtime -- --ignored --nocapture idle_clients_memory`.
#[test]
#[ignore]
fn idle_clients_memory() -> Result<()> {
    let n: usize = std::env::var("STRATA_RT_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let strata = strata(&[])?;
    let s = strata.server();
    let st = idle_clients(&strata, s.child.id(), n)?;
    let r = s.req(
        "GET",
        "/metrics",
        &[format!("Authorization: Bearer {ADMIN}")],
        None,
    )?;
    let gauge = r
        .text
        .lines()
        .find(|l| l.starts_with("strata_serve_realtime_clients "))
        .unwrap_or("")
        .to_string();
    ensure!(
        gauge == format!("strata_serve_realtime_clients {n}"),
        "{gauge:?}"
    );
    drop(st.4);
    drop(strata);
    let pb = pocketbase()?;
    let Side::PocketBase(p) = &pb else {
        unreachable!()
    };
    let pbm = idle_clients(&pb, p.pid(), n)?;
    for (name, (before, after, took, fanout)) in [
        ("strata", (st.0, st.1, st.2, st.3)),
        ("pocketbase", (pbm.0, pbm.1, pbm.2, pbm.3)),
    ] {
        let per = after.saturating_sub(before) * 1024 / n as u64;
        println!(
            "{name}: {n} idle clients: RSS {before} KiB -> {after} KiB, {per} bytes per client; \
             connected in {took:?}; one create reached all in {fanout:?}"
        );
    }
    Ok(())
}
