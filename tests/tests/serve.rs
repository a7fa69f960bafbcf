//! `strata serve` driven over HTTP as a client would: the real binary as a
//! child process, against a local bucket and the loopback S3 server.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use std::path::Path;
use std::time::{Duration, Instant};
use strata_tests::http::{self, Response, encode};
use strata_tests::serve::{
    ADMIN, SU_EMAIL, SU_PASSWORD, Server, add_post, count_posts, posts_around_a_restore_point,
    posts_collection,
};
use strata_tests::{Backend, workspace_bin};

fn strata_cli(b: &Backend, server: &Server, args: &[&str]) -> Result<std::process::Output> {
    Ok(b.command(&workspace_bin("strata")?)
        .args(["tenant", "--server", &format!("http://{}", server.addr)])
        .args(args)
        .env("STRATA_ADMIN_TOKEN", ADMIN)
        .output()?)
}

/// Run `body` against a fresh server on each backend (local, then S3).
fn on_each_backend(
    extra: &[&str],
    body: impl Fn(&Backend, &Server, &Path, &str) -> Result<()>,
) -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let s = Server::start(&b, &dir.path().join("node"), extra)?;
        body(&b, &s, dir.path(), b.name())?;
    }
    Ok(())
}

#[test]
fn admin_lifecycle_and_bad_tenant_ids() -> Result<()> {
    on_each_backend(&[], |b, s, _dir, name| {
        // The admin API needs the token.
        let r = s.req("GET", "/_strata/api/tenants", &[], None)?;
        ensure!(r.status == 401, "{name}: no token: {r:?}");
        ensure!(
            r.body["status"] == 401 && r.body["message"].is_string(),
            "{name}: error shape {r:?}"
        );
        let r = s.req(
            "GET",
            "/_strata/api/tenants",
            &["Authorization: Bearer wrong".into()],
            None,
        )?;
        ensure!(r.status == 401, "{name}: wrong token: {r:?}");

        s.create_tenant("acme", Some("acme.example"))?;
        let again = s.admin(
            "POST",
            "/_strata/api/tenants",
            Some(json!({"id": "acme", "superuser": {"email": SU_EMAIL, "password": SU_PASSWORD}})),
        )?;
        ensure!(again.status == 409, "{name}: duplicate: {again:?}");
        // Ids that would escape the tenant's prefix, in the body and in the path.
        for bad in ["../x", "a/b", "", "A", ".."] {
            let r = s.admin(
                "POST",
                "/_strata/api/tenants",
                Some(json!({"id": bad, "superuser": {"email": SU_EMAIL, "password": SU_PASSWORD}})),
            )?;
            ensure!(r.status == 400, "{name}: create {bad:?}: {r:?}");
        }
        for bad in ["..%2Fx", "a%2Fb", "%2E%2E"] {
            let r = s.req("GET", &format!("/t/{bad}/api/health"), &[], None)?;
            ensure!(r.status == 400, "{name}: /t/{bad}: {r:?}");
            let r = s.admin("GET", &format!("/_strata/api/tenants/{bad}"), None)?;
            ensure!(r.status == 400, "{name}: show {bad}: {r:?}");
        }
        let r = s.req("GET", "/t/nosuch/api/health", &[], None)?;
        ensure!(r.status == 404, "{name}: unknown tenant: {r:?}");

        // The metadata object is in the bucket, with the domain.
        let meta = b.store()?.get("tenants/acme/metadata.json")?;
        let meta: Value = serde_json::from_slice(&meta.data)?;
        ensure!(meta["domain"] == "acme.example", "{name}: {meta}");

        // The CLI talks to the same API.
        let out = strata_cli(b, s, &["list"])?;
        let text = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success() && text.contains("acme\tevicted\tacme.example"),
            "{name}: list: {out:?}"
        );
        let r = s.req(
            "GET",
            "/api/health",
            &["Host: acme.example:8090".into()],
            None,
        )?;
        ensure!(
            r.status == 200 && r.body["code"] == 200,
            "{name}: by host: {r:?}"
        );
        let r = s.req("GET", "/api/health", &["Host: other.example".into()], None)?;
        ensure!(r.status == 404, "{name}: unknown host: {r:?}");
        let out = strata_cli(b, s, &["show", "acme"])?;
        let shown: Value =
            serde_json::from_slice(&out.stdout).with_context(|| format!("{out:?}"))?;
        ensure!(
            shown["state"] == "loaded" && shown["replication"]["data.db"].is_object(),
            "{name}: show: {shown}"
        );
        let out = strata_cli(b, s, &["evict", "acme"])?;
        ensure!(
            out.status.success()
                && String::from_utf8_lossy(&out.stdout).contains("\"evicted\": true"),
            "{name}: {out:?}"
        );
        let r = s.admin("GET", "/_strata/api/tenants/acme", None)?;
        ensure!(r.body["state"] == "evicted", "{name}: after evict: {r:?}");
        let out = strata_cli(b, s, &["show", "nosuch"])?;
        ensure!(
            out.status.code() == Some(3),
            "{name}: show unknown exits 3: {out:?}"
        );

        // Soft delete: gone from the API and from its domain, kept in the bucket.
        let out = strata_cli(b, s, &["delete", "acme"])?;
        ensure!(out.status.success(), "{name}: delete: {out:?}");
        let r = s.req("GET", "/t/acme/api/health", &[], None)?;
        ensure!(r.status == 404, "{name}: deleted tenant: {r:?}");
        let r = s.req("GET", "/api/health", &["Host: acme.example".into()], None)?;
        ensure!(r.status == 404, "{name}: deleted tenant's domain: {r:?}");
        let r = s.admin("GET", "/_strata/api/tenants/acme", None)?;
        ensure!(
            r.body["deleted"].is_string() && r.body["purgeAfter"].is_string(),
            "{name}: {r:?}"
        );
        ensure!(
            b.store()?
                .get("tenants/acme/db/data.db/manifest.json")
                .is_ok(),
            "{name}: data kept"
        );
        Ok(())
    })
}

/// After the delete grace period the tenant's objects leave the bucket and
/// its local files go; its id can then be created again.
#[test]
fn a_deleted_tenant_is_purged_after_its_grace_period() -> Result<()> {
    on_each_backend(&["--delete-grace", "1s"], |b, s, dir, name| {
        s.create_tenant("gone", Some("gone.example"))?;
        s.create_tenant("kept", None)?;
        let r = s.req("GET", "/t/gone/api/health", &[], None)?;
        ensure!(r.status == 200, "{name}: {r:?}");
        let store = b.store()?;
        ensure!(
            !store.list("tenants/gone/")?.is_empty(),
            "{name}: nothing was created"
        );
        let r = s.admin("DELETE", "/_strata/api/tenants/gone", None)?;
        ensure!(r.status == 200, "{name}: delete: {r:?}");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !store.list("tenants/gone/")?.is_empty() {
            ensure!(
                Instant::now() < deadline,
                "{name}: not purged: {:?}",
                store.list("tenants/gone/")?
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        ensure!(
            !dir.join("node").join("gone").exists(),
            "{name}: local files of the purged tenant remain"
        );
        ensure!(
            store.get("tenants/kept/metadata.json").is_ok(),
            "{name}: another tenant was purged"
        );
        // The id (and the domain) can be used again.
        s.create_tenant("gone", Some("gone.example"))?;
        Ok(())
    })
}

#[test]
fn records_filters_auth_and_bad_input() -> Result<()> {
    on_each_backend(&["--max-body", "65536"], |_b, s, _dir, name| {
        s.create_tenant("acme", None)?;
        s.create_tenant("other", None)?;

        // Superuser auth: the right password, then a wrong one.
        let bad = s.api(
            "acme",
            "POST",
            "/api/collections/_superusers/auth-with-password",
            None,
            Some(json!({"identity": SU_EMAIL, "password": "wrong password"})),
        )?;
        ensure!(
            bad.status == 400 && bad.body["status"] == 400,
            "{name}: wrong password: {bad:?}"
        );
        let token = s.superuser_token("acme")?;
        let bearer = format!("Bearer {token}");
        let r = s.api(
            "acme",
            "POST",
            "/api/collections/_superusers/auth-refresh",
            Some(&bearer),
            None,
        )?;
        ensure!(
            r.status == 200 && r.body["token"].is_string(),
            "{name}: refresh: {r:?}"
        );
        ensure!(
            r.body["record"]["email"] == SU_EMAIL && r.body["record"].get("password").is_none(),
            "{name}: {r:?}"
        );

        // Collections are for superusers: guests 401.
        let r = s.api("acme", "GET", "/api/collections", None, None)?;
        ensure!(r.status == 401, "{name}: guest collections: {r:?}");
        posts_collection(s, "acme", &token)?;
        // A token of acme is nobody on other.
        let r = s.api("other", "GET", "/api/collections", Some(&token), None)?;
        ensure!(
            r.status == 401 || r.status == 403,
            "{name}: foreign token: {r:?}"
        );
        let r = s.api(
            "other",
            "GET",
            "/api/collections/posts/records",
            Some(&token),
            None,
        )?;
        ensure!(r.status == 404, "{name}: other has no posts: {r:?}");

        // Create as a guest (createRule ""), five records.
        let mut ids = Vec::new();
        for (i, (title, n, tags)) in [
            ("alpha", 1, json!(["a"])),
            ("beta", 2, json!(["b", "c"])),
            ("gamma", 3, json!([])),
            ("x\" OR 1=1 --", 4, json!(["a", "c"])),
            ("delta", 5, json!(null)),
        ]
        .into_iter()
        .enumerate()
        {
            let r = s.api(
                "acme",
                "POST",
                "/api/collections/posts/records",
                None,
                Some(json!({"title": title, "n": n, "done": i % 2 == 0, "tags": tags})),
            )?;
            ensure!(r.status == 200, "{name}: create {title}: {r:?}");
            let id = r.body["id"].as_str().context("id")?.to_string();
            ensure!(
                id.len() == 15
                    && id
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()),
                "{name}: id {id}"
            );
            let created = r.body["created"].as_str().context("created")?;
            ensure!(
                created.len() == 24 && created.ends_with('Z') && &created[10..11] == " ",
                "{name}: created {created}"
            );
            ensure!(
                r.body["n"] == n && r.body["tags"] == tags && r.body["collectionName"] == "posts",
                "{name}: {r:?}"
            );
            ids.push(id);
        }

        // List: exactly PocketBase's shape; paging until a short page, as getFullList does.
        let r = s.api(
            "acme",
            "GET",
            "/api/collections/posts/records?perPage=2&sort=n",
            None,
            None,
        )?;
        let keys: Vec<&String> = r.body.as_object().context("object")?.keys().collect();
        ensure!(
            keys == ["items", "page", "perPage", "totalItems", "totalPages"],
            "{name}: keys {keys:?}"
        );
        ensure!(
            r.body["totalItems"] == 5 && r.body["totalPages"] == 3 && r.body["perPage"] == 2,
            "{name}: {r:?}"
        );
        let mut all = Vec::new();
        for page in 1.. {
            let r = s.api(
                "acme",
                "GET",
                &format!(
                    "/api/collections/posts/records?page={page}&perPage=2&skipTotal=1&sort=-n"
                ),
                None,
                None,
            )?;
            ensure!(
                r.body["totalItems"] == -1 && r.body["totalPages"] == -1,
                "{name}: skipTotal: {r:?}"
            );
            let items = r.body["items"].as_array().context("items")?.clone();
            let short = items.len() < 2;
            all.extend(items);
            if short {
                break;
            }
            ensure!(page < 10, "{name}: paging does not end");
        }
        let ns: Vec<i64> = all.iter().filter_map(|i| i["n"].as_i64()).collect();
        ensure!(ns == [5, 4, 3, 2, 1], "{name}: full list by -n: {ns:?}");

        let list = |filter: &str| -> Result<Vec<i64>> {
            let r = s.api(
                "acme",
                "GET",
                &format!(
                    "/api/collections/posts/records?sort=n&filter={}",
                    encode(filter)
                ),
                None,
                None,
            )?;
            ensure!(r.status == 200, "{name}: filter {filter}: {r:?}");
            Ok(r.body["items"]
                .as_array()
                .context("items")?
                .iter()
                .filter_map(|i| i["n"].as_i64())
                .collect())
        };
        ensure!(list("n >= 2 && n < 4")? == [2, 3], "{name}");
        ensure!(list("(n = 1 || n = 5) && done = true")? == [1, 5], "{name}");
        ensure!(
            list("title ~ 'lph' || (n > 4 && title != 'x')")? == [1, 5],
            "{name}"
        );
        ensure!(list("title !~ 'a'")? == [4], "{name}");
        ensure!(list("tags ?= 'c'")? == [2, 4], "{name}");
        ensure!(
            list("n <= 3 && (done = false || title = 'gamma')")? == [2, 3],
            "{name}"
        );
        // The injection attempt is a value, matching only its own row.
        ensure!(list(r#"title = "x\" OR 1=1 --""#)? == [4], "{name}");
        for bad in [
            "title = 'x' OR 1=1 --'",
            "title = 'a",
            "nosuch = 1",
            "n = 1; DROP TABLE posts",
            &format!("{}n = 1{}", "(".repeat(20), ")".repeat(20)),
        ] {
            let r = s.api(
                "acme",
                "GET",
                &format!("/api/collections/posts/records?filter={}", encode(bad)),
                None,
                None,
            )?;
            ensure!(
                r.status == 400 && r.body["status"] == 400,
                "{name}: bad filter {bad}: {r:?}"
            );
        }
        ensure!(list("n > 0")?.len() == 5, "{name}: table intact");
        // Hidden fields of the caller are not reachable from a filter.
        for f in [
            "@request.auth.password != ''",
            "@request.auth.tokenKey != ''",
        ] {
            let r = s.api(
                "acme",
                "GET",
                &format!("/api/collections/posts/records?filter={}", encode(f)),
                Some(&token),
                None,
            )?;
            ensure!(
                r.status == 200 && r.body["totalItems"] == 0,
                "{name}: {f}: {r:?}"
            );
        }
        let r = s.api(
            "acme",
            "GET",
            "/api/collections/posts/records?fields=id,title&perPage=1",
            None,
            None,
        )?;
        let item = r.body["items"][0].as_object().context("item")?;
        ensure!(
            item.len() == 2 && item.contains_key("title"),
            "{name}: fields: {r:?}"
        );

        // View, update (rule: owner = @request.auth.id), delete (superusers only).
        let path = format!("/api/collections/posts/records/{}", ids[0]);
        let one = |method: &str, token: Option<&str>, body: Option<Value>| {
            s.api("acme", method, &path, token, body)
        };
        let r = one("GET", None, None)?;
        ensure!(
            r.status == 200 && r.body["title"] == "alpha",
            "{name}: view: {r:?}"
        );
        let r = one("PATCH", None, Some(json!({"title": "hacked"})))?;
        ensure!(r.status == 404, "{name}: guest update: {r:?}");
        let r = one(
            "PATCH",
            Some(&token),
            Some(json!({"title": "ALPHA", "n": 10})),
        )?;
        ensure!(
            r.status == 200 && r.body["title"] == "ALPHA" && r.body["n"] == 10,
            "{name}: update: {r:?}"
        );
        let r = one("DELETE", None, None)?;
        ensure!(r.status == 403, "{name}: guest delete: {r:?}");
        let r = one("DELETE", Some(&token), None)?;
        ensure!(r.status == 204, "{name}: delete: {r:?}");
        let r = one("GET", None, None)?;
        ensure!(
            r.status == 404 && r.body["status"] == 404,
            "{name}: deleted record: {r:?}"
        );

        // Bad input: unknown collection, malformed JSON, missing required, too large.
        let r = s.api("acme", "GET", "/api/collections/nope/records", None, None)?;
        ensure!(
            r.status == 404 && r.body["message"].is_string(),
            "{name}: unknown collection: {r:?}"
        );
        let r = s.req(
            "POST",
            "/t/acme/api/collections/posts/records",
            &[],
            Some("{\"title\": "),
        )?;
        ensure!(
            r.status == 400 && r.body["status"] == 400,
            "{name}: malformed JSON: {r:?}"
        );
        let r = s.api(
            "acme",
            "POST",
            "/api/collections/posts/records",
            None,
            Some(json!({"n": 1})),
        )?;
        ensure!(
            r.status == 400 && r.body["data"]["title"]["code"] == "validation_required",
            "{name}: required: {r:?}"
        );
        let big = format!("{{\"title\": \"{}\"}}", "a".repeat(100_000));
        let r = http::raw(
            &s.addr,
            "POST /t/acme/api/collections/posts/records HTTP/1.1\r\nContent-Type: application/json",
            big.len(),
            big.as_bytes(),
        )?;
        ensure!(r.status == 413, "{name}: oversized: {r:?}");

        // Multipart, as the SDKs send FormData: text parts and @jsonPayload.
        let multipart = |parts: &[(&str, &str)]| -> Result<Response> {
            let mut body = String::new();
            for (disposition, value) in parts {
                body.push_str(&format!(
                    "--XyZ\r\nContent-Disposition: form-data; {disposition}\r\n\r\n{value}\r\n"
                ));
            }
            body.push_str("--XyZ--\r\n");
            http::raw(
                &s.addr,
                "POST /t/acme/api/collections/posts/records HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ",
                body.len(),
                body.as_bytes(),
            )
        };
        let r = multipart(&[
            ("name=\"title\"", "from a form"),
            ("name=\"@jsonPayload\"", r#"{"n": 42, "tags": ["m"]}"#),
        ])?;
        ensure!(
            r.status == 200
                && r.body["title"] == "from a form"
                && r.body["n"] == 42
                && r.body["tags"] == json!(["m"]),
            "{name}: multipart: {r:?}"
        );
        let r = multipart(&[
            ("name=\"title\"", "x"),
            ("name=\"file\"; filename=\"a.txt\"", "data"),
        ])?;
        // A file part for no file field is ignored, as in PocketBase.
        ensure!(
            r.status == 200 && r.body.get("file").is_none() && r.body["title"] == "x",
            "{name}: multipart file for no file field: {r:?}"
        );

        // CORS preflight.
        let r = s.req(
            "OPTIONS",
            "/t/acme/api/collections/posts/records",
            &[
                "Origin: http://app.test".into(),
                "Access-Control-Request-Method: POST".into(),
            ],
            None,
        )?;
        ensure!(
            r.status == 204 && r.header("access-control-allow-origin") == Some("*"),
            "{name}: preflight: {r:?}"
        );

        // Request logs are in auxiliary.db; metrics count requests.
        let m = s.admin("GET", "/metrics", None)?;
        ensure!(
            m.text
                .contains("strata_serve_request_duration_seconds_count")
                && m.text.contains("strata_serve_tenant_loads_total 2"),
            "{name}: metrics: {}",
            m.text
        );
        Ok(())
    })
}

/// Select and relation fields, `expand`, relation paths in filters, unique
/// indexes, and rules that use `@request.body` and `@collection`, the way a
/// PocketBase app models users, teams and posts.
#[test]
fn relations_expand_indexes_and_request_rules() -> Result<()> {
    on_each_backend(&[], |_b, s, _dir, name| {
        s.create_tenant("shop", None)?;
        let su = s.superuser_token("shop")?;
        let coll = |body: Value| -> Result<Response> {
            s.api("shop", "POST", "/api/collections", Some(&su), Some(body))
        };
        let id_of = |r: &Response| r.body["id"].as_str().unwrap_or("").to_string();
        // The default `users` (name, avatar), readable by anyone.
        let r = s.api(
            "shop",
            "PATCH",
            "/api/collections/users",
            Some(&su),
            Some(json!({"listRule": "", "viewRule": "", "createRule": ""})),
        )?;
        ensure!(r.status == 200, "{name}: users: {r:?}");
        let users = id_of(&r);
        let r = coll(
            json!({"name": "teams", "fields": [{"name": "name", "type": "text"}],
            "listRule": "", "viewRule": ""}),
        )?;
        let teams = id_of(&r);
        let r = coll(json!({"name": "members", "fields": [
                {"name": "user", "type": "relation", "collectionId": users, "required": true},
                {"name": "team", "type": "relation", "collectionId": "teams", "required": true}]}))?;
        ensure!(r.status == 200, "{name}: members: {r:?}");
        let r = coll(json!({"name": "posts", "fields": [
                {"name": "title", "type": "text", "required": true},
                {"name": "status", "type": "select", "values": ["draft", "published"], "maxSelect": 1},
                {"name": "labels", "type": "select", "values": ["a", "b", "c"], "maxSelect": 3},
                {"name": "author", "type": "relation", "collectionId": users, "required": true},
                {"name": "team", "type": "relation", "collectionId": teams}],
            "indexes": ["CREATE UNIQUE INDEX `idx_posts_title` ON `posts` (`title`)"],
            "listRule": "status = 'published' || author = @request.auth.id",
            "viewRule": "status = 'published' || author = @request.auth.id",
            "createRule": "@request.auth.id != '' && @request.body.author = @request.auth.id",
            "updateRule": "author = @request.auth.id && @request.body.author:isset = false",
            "deleteRule": "@collection.members.user = @request.auth.id && @collection.members.team = team"}))?;
        ensure!(
            r.status == 200
                && r.body["indexes"][0]
                    == "CREATE UNIQUE INDEX `idx_posts_title` ON `posts` (`title`)",
            "{name}: posts: {r:?}"
        );
        let posts = id_of(&r);
        let r = coll(json!({"name": "comments", "fields": [
                {"name": "post", "type": "relation", "collectionId": posts, "cascadeDelete": true},
                {"name": "text", "type": "text"}], "listRule": "", "viewRule": "", "createRule": ""}))?;
        ensure!(r.status == 200, "{name}: comments: {r:?}");
        // Bad definitions are refused with the field named.
        for (bad, key) in [
            (
                json!({"name": "x1", "fields": [{"name": "r", "type": "relation", "collectionId": "nope"}]}),
                "fields",
            ),
            (
                json!({"name": "x2", "fields": [{"name": "s", "type": "select"}]}),
                "fields",
            ),
            (
                json!({"name": "x3", "indexes": ["CREATE INDEX i ON x3 (nope)"]}),
                "indexes",
            ),
            (
                json!({"name": "x4", "indexes": ["DROP TABLE posts"]}),
                "indexes",
            ),
            (
                json!({"name": "x5", "listRule": "@collection.nope.x = 1"}),
                "listRule",
            ),
        ] {
            let r = coll(bad.clone())?;
            ensure!(
                r.status == 400 && r.body["data"][key].is_object(),
                "{name}: {bad}: {r:?}"
            );
        }

        // Two users, a team, bob a member of it.
        let mut tokens = Vec::new();
        let mut uids = Vec::new();
        for who in ["alice", "bob"] {
            let r = s.api(
                "shop",
                "POST",
                "/api/collections/users/records",
                None,
                Some(json!({
                "email": format!("{who}@shop.test"), "password": "password123",
                "passwordConfirm": "password123", "name": who.to_uppercase()})),
            )?;
            ensure!(r.status == 200, "{name}: user {who}: {r:?}");
            uids.push(id_of(&r));
            let r = s.api(
                "shop",
                "POST",
                "/api/collections/users/auth-with-password",
                None,
                Some(json!({"identity": format!("{who}@shop.test"), "password": "password123"})),
            )?;
            ensure!(r.status == 200, "{name}: auth {who}: {r:?}");
            tokens.push(r.body["token"].as_str().unwrap_or("").to_string());
        }
        let (alice, bob) = (uids[0].clone(), uids[1].clone());
        let (ta, tb) = (tokens[0].clone(), tokens[1].clone());
        let r = s.api(
            "shop",
            "POST",
            "/api/collections/teams/records",
            Some(&su),
            Some(json!({"name": "red"})),
        )?;
        let red = id_of(&r);
        let r = s.api(
            "shop",
            "POST",
            "/api/collections/members/records",
            Some(&su),
            Some(json!({"user": bob, "team": red})),
        )?;
        ensure!(r.status == 200, "{name}: member: {r:?}");

        let post = |tok: Option<&str>, body: Value| -> Result<Response> {
            s.api(
                "shop",
                "POST",
                "/api/collections/posts/records",
                tok,
                Some(body),
            )
        };
        // The create rule checks the submitted body.
        let r = post(Some(&ta), json!({"title": "not mine", "author": bob}))?;
        ensure!(r.status == 400, "{name}: author must be the caller: {r:?}");
        let r = post(None, json!({"title": "guest", "author": alice}))?;
        ensure!(r.status == 400, "{name}: guests cannot post: {r:?}");
        // Field validation, by field.
        for (body, field, code) in [
            (
                json!({"title": "s", "author": alice, "status": "secret"}),
                "status",
                "validation_invalid_value",
            ),
            (
                json!({"title": "l", "author": alice, "labels": ["a", "z"]}),
                "labels",
                "validation_invalid_value",
            ),
            (
                json!({"title": "m", "author": alice, "status": ["draft", "published"]}),
                "status",
                "validation_too_many_values",
            ),
            (
                json!({"title": "r", "author": alice, "team": "nosuchteam12345"}),
                "team",
                "validation_missing_rel_records",
            ),
            (json!({"title": "q"}), "author", "validation_required"),
        ] {
            let r = post(Some(&ta), body.clone())?;
            ensure!(
                r.status == 400 && r.body["data"][field]["code"] == code,
                "{name}: {body}: {r:?}"
            );
        }
        let r = post(
            Some(&ta),
            json!({"title": "hello", "author": alice, "status": "published",
            "labels": ["b", "a", "b"], "team": red}),
        )?;
        ensure!(
            r.status == 200 && r.body["labels"] == json!(["b", "a"]),
            "{name}: create: {r:?}"
        );
        let hello = id_of(&r);
        let r = post(
            Some(&ta),
            json!({"title": "draft", "author": alice, "status": "draft"}),
        )?;
        ensure!(r.status == 200, "{name}: draft: {r:?}");
        let draft = id_of(&r);
        // The unique index names the field.
        let r = post(Some(&ta), json!({"title": "hello", "author": alice}))?;
        ensure!(
            r.status == 400 && r.body["data"]["title"]["code"] == "validation_not_unique",
            "{name}: unique title: {r:?}"
        );

        // Rules: a guest sees the published post; alice also her draft.
        let list = |tok: Option<&str>, q: &str| -> Result<Value> {
            let r = s.api(
                "shop",
                "GET",
                &format!("/api/collections/posts/records?{q}"),
                tok,
                None,
            )?;
            ensure!(r.status == 200, "{name}: list {q}: {r:?}");
            Ok(r.body)
        };
        ensure!(list(None, "")?["totalItems"] == 1, "{name}: guest list");
        ensure!(
            list(Some(&ta), "")?["totalItems"] == 2,
            "{name}: alice list"
        );
        // Relation paths and any-of in filters; sort by a relation path.
        let f = encode("author.name = 'ALICE' && labels ?= 'b'");
        ensure!(
            list(None, &format!("filter={f}"))?["items"][0]["id"] == hello.as_str(),
            "{name}: path filter"
        );
        let f = encode("author.name = 'BOB'");
        ensure!(
            list(None, &format!("filter={f}"))?["totalItems"] == 0,
            "{name}: path filter, no match"
        );
        ensure!(
            list(None, "sort=-author.name")?["totalItems"] == 1,
            "{name}: sort by path"
        );
        // A client's filter cannot probe what the API hides: emails of auth
        // records, or collections it may not list (members: superusers only).
        for probe in ["author.email ~ 'alice'", "@collection.members.user != ''"] {
            let f = encode(probe);
            let path = format!("/api/collections/posts/records?filter={f}");
            let r = s.api("shop", "GET", &path, Some(&ta), None)?;
            ensure!(r.status == 400, "{name}: {probe}: {r:?}");
            let r = s.api("shop", "GET", &path, Some(&su), None)?;
            ensure!(r.status == 200, "{name}: superuser {probe}: {r:?}");
        }
        let f = encode("email = 'alice@shop.test'");
        let r = s.api(
            "shop",
            "GET",
            &format!("/api/collections/users/records?filter={f}"),
            None,
            None,
        )?;
        ensure!(
            r.status == 400,
            "{name}: guest filters users by email: {r:?}"
        );

        // Expand: the related records, without what their viewer may not see.
        let r = s.api(
            "shop",
            "GET",
            &format!("/api/collections/posts/records/{hello}?expand=author,team"),
            None,
            None,
        )?;
        let e = &r.body["expand"];
        ensure!(
            r.status == 200
                && e["author"]["name"] == "ALICE"
                && e["team"]["name"] == "red"
                && e["author"].get("email").is_none()
                && e["author"].get("password").is_none(),
            "{name}: expand: {r:?}"
        );
        let r = s.api(
            "shop",
            "GET",
            "/api/collections/members/records?expand=user,team.nope&fields=id,expand",
            Some(&su),
            None,
        )?;
        ensure!(
            r.body["items"][0]["expand"]["user"]["name"] == "BOB"
                && r.body["items"][0].get("user").is_none(),
            "{name}: expand in a list: {r:?}"
        );

        // Update rule: the author may edit, but not hand the post over.
        let patch = |tok: &str, id: &str, body: Value| -> Result<Response> {
            s.api(
                "shop",
                "PATCH",
                &format!("/api/collections/posts/records/{id}"),
                Some(tok),
                Some(body),
            )
        };
        ensure!(
            patch(&ta, &hello, json!({"title": "hello!"}))?.status == 200,
            "{name}: edit"
        );
        ensure!(
            patch(&ta, &hello, json!({"author": bob}))?.status == 404,
            "{name}: hand over"
        );
        ensure!(
            patch(&tb, &hello, json!({"title": "bob's"}))?.status == 404,
            "{name}: not bob's"
        );

        // Delete rule via @collection: bob is in the post's team, alice is not.
        for text in ["one", "two"] {
            let r = s.api(
                "shop",
                "POST",
                "/api/collections/comments/records",
                None,
                Some(json!({"post": hello, "text": text})),
            )?;
            ensure!(r.status == 200, "{name}: comment: {r:?}");
        }
        let del = |tok: &str, coll: &str, id: &str| -> Result<Response> {
            s.api(
                "shop",
                "DELETE",
                &format!("/api/collections/{coll}/records/{id}"),
                Some(tok),
                None,
            )
        };
        ensure!(
            del(&ta, "posts", &hello)?.status == 404,
            "{name}: alice not in red"
        );
        // A required relation keeps its target: alice still authors posts.
        let r = del(&su, "users", &alice)?;
        ensure!(
            r.status == 400
                && r.body["message"]
                    .as_str()
                    .unwrap_or("")
                    .contains("posts.author"),
            "{name}: {r:?}"
        );
        ensure!(
            del(&tb, "posts", &hello)?.status == 204,
            "{name}: bob deletes"
        );
        // The comments went with it (cascadeDelete); the team is kept.
        let r = s.api(
            "shop",
            "GET",
            "/api/collections/comments/records",
            None,
            None,
        )?;
        ensure!(r.body["totalItems"] == 0, "{name}: cascade: {r:?}");
        ensure!(
            del(&ta, "posts", &draft)?.status == 404,
            "{name}: draft has no team"
        );
        // A collection others point at cannot go.
        let r = s.api("shop", "DELETE", "/api/collections/teams", Some(&su), None)?;
        ensure!(r.status == 400, "{name}: referenced collection: {r:?}");
        // Removing the index through PATCH frees the title.
        let r = s.api(
            "shop",
            "PATCH",
            "/api/collections/posts",
            Some(&su),
            Some(json!({"indexes": []})),
        )?;
        ensure!(
            r.status == 200 && r.body["indexes"] == json!([]),
            "{name}: drop index: {r:?}"
        );
        let r = post(Some(&ta), json!({"title": "draft", "author": alice}))?;
        ensure!(r.status == 200, "{name}: duplicate title allowed: {r:?}");
        Ok(())
    })
}

/// The official PocketBase JavaScript SDK, unmodified (`tests/sdk`), signs
/// in, defines collections, signs a user up, writes and pages through
/// records (`getFullList`), filters, expands, updates and deletes.
#[test]
fn the_pocketbase_js_sdk_works_unmodified() -> Result<()> {
    on_each_backend(&[], |_b, s, _dir, name| {
        s.create_tenant("sdk", None)?;
        strata_tests::sdk::run(
            "client.mjs",
            &format!("http://{}/t/sdk", s.addr),
            &[],
            "checks passed",
        )
        .with_context(|| format!("{name}:\n{}", s.log_text()))
    })
}

#[test]
fn evict_reload_sigterm_and_a_fresh_node() -> Result<()> {
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let name = b.name();
        let mut s = Server::start(&b, &dir.path().join("node1"), &["--max-tenants", "2"])?;
        for t in ["t1", "t2", "t3"] {
            s.create_tenant(t, None)?;
        }
        let token = s.superuser_token("t1")?;
        posts_collection(&s, "t1", &token)?;
        for i in 0..20 {
            add_post(&s, "t1", i).context(name.to_string())?;
        }
        // Per-tenant replication series while loaded (after the first upload)...
        let series = r#"strata_replicated_txid{db="t1/data.db"}"#;
        let deadline = Instant::now() + Duration::from_secs(20);
        while !s.admin("GET", "/metrics", None)?.text.contains(series) {
            ensure!(Instant::now() < deadline, "{name}: no {series} in /metrics");
            std::thread::sleep(Duration::from_millis(50));
        }
        // Explicit eviction, then the next request loads the tenant again.
        let r = s.admin("POST", "/_strata/api/tenants/t1/evict", None)?;
        ensure!(r.body["evicted"] == true, "{name}: {r:?}");
        // ...and none once it is closed.
        let m = s.admin("GET", "/metrics", None)?.text;
        ensure!(
            !m.contains(series) && m.contains("strata_serve_tenant_evictions_total 1"),
            "{name}: /metrics after evict: {m}"
        );
        let r = s.api(
            "t1",
            "GET",
            "/api/collections/posts/records?perPage=100",
            None,
            None,
        )?;
        ensure!(
            r.status == 200 && r.body["totalItems"] == 20,
            "{name}: after reload: {r:?}"
        );
        // The token still verifies: the secret came back from data.db.
        let r = s.api("t1", "GET", "/api/collections", Some(&token), None)?;
        ensure!(r.status == 200, "{name}: token after reload: {r:?}");

        // LRU: touching t2 and t3 leaves at most two loaded (t1 least recent).
        s.api("t2", "GET", "/api/health", None, None)?;
        s.api("t3", "GET", "/api/health", None, None)?;
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = s.admin("GET", "/_strata/api/tenants", None)?;
            if r.body["loaded"] == 2 {
                let t1 = r.body["items"]
                    .as_array()
                    .context("items")?
                    .iter()
                    .find(|t| t["id"] == "t1")
                    .cloned();
                ensure!(
                    t1.is_some_and(|t| t["state"] == "evicted"),
                    "{name}: LRU victim: {r:?}"
                );
                break;
            }
            ensure!(
                Instant::now() < deadline,
                "{name}: LRU did not evict: {r:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }

        // Write more, then SIGTERM: exit 0 and everything in the bucket.
        for i in 20..25 {
            add_post(&s, "t1", i).context(name.to_string())?;
        }
        let status = s.terminate()?;
        ensure!(
            status.code() == Some(0),
            "{name}: exit {status:?}: {}",
            s.log_text()
        );
        // Both databases from the bucket alone.
        let count = |db: &str, sql: &str| -> Result<i64> {
            let out = dir.path().join(format!("restored-{db}"));
            strata_tests::restore(
                &b.store()?,
                "t1",
                db,
                strata_vfs::engine::Target::Latest,
                &out,
            )?;
            let c = rusqlite::Connection::open(&out)?;
            Ok(c.query_row(sql, [], |r| r.get(0))?)
        };
        let n = count("data.db", "SELECT count(*) FROM posts")?;
        ensure!(n == 25, "{name}: restored {n} posts");
        let n = count(
            "auxiliary.db",
            "SELECT count(*) FROM _logs WHERE data LIKE '%\"method\":\"POST\"%'",
        )?;
        ensure!(n >= 25, "{name}: {n} POSTs logged");

        // A fresh node with an empty data dir serves the same data from the bucket.
        let s2 = Server::start(&b, &dir.path().join("node2"), &[])?;
        let r = s2.api(
            "t1",
            "GET",
            "/api/collections/posts/records?filter=n%20%3E%3D%2020",
            None,
            None,
        )?;
        ensure!(
            r.status == 200 && r.body["totalItems"] == 5,
            "{name}: fresh node: {r:?}"
        );
        drop(s2);
        drop(s);
    }
    Ok(())
}

#[test]
fn restore_is_undoable_and_fork_is_separate() -> Result<()> {
    on_each_backend(&[], |b, s, dir, name| {
        s.create_tenant("t1", None)?;
        let token = s.superuser_token("t1")?;
        posts_collection(s, "t1", &token)?;
        let point = posts_around_a_restore_point(s, "t1").context(name.to_string())?;
        ensure!(count_posts(s, "t1")? == 5, "{name}");

        let out = strata_cli(b, s, &["restore", "t1", "--txid", &point.to_string()])?;
        ensure!(out.status.success(), "{name}: restore: {out:?}");
        let r: Value = serde_json::from_slice(&out.stdout)?;
        ensure!(r["restoredTo"]["txid"] == point, "{name}: {r}");
        let undo = r["undo"]["txid"].as_u64().context("undo txid")?;
        ensure!(undo > point, "{name}: undo {undo} after {point}");
        ensure!(count_posts(s, "t1")? == 3, "{name}: after restore");
        // The token still works: the restored data.db has the same secret.
        let r = s.api("t1", "GET", "/api/collections", Some(&token), None)?;
        ensure!(r.status == 200, "{name}: token after restore: {r:?}");
        let r = s.admin(
            "POST",
            "/_strata/api/tenants/t1/restore",
            Some(json!({"txid": undo})),
        )?;
        ensure!(r.status == 200, "{name}: undo: {r:?}");
        ensure!(count_posts(s, "t1")? == 5, "{name}: after undo");
        let r = s.admin(
            "POST",
            "/_strata/api/tenants/t1/restore",
            Some(json!({"txid": "x"})),
        )?;
        ensure!(r.status == 400, "{name}: bad txid: {r:?}");

        // Fork at the restore point: a separate tenant with its own secret.
        let out = strata_cli(
            b,
            s,
            &["fork", "t1", "t1-copy", "--txid", &point.to_string()],
        )?;
        ensure!(out.status.success(), "{name}: fork: {out:?}");
        ensure!(count_posts(s, "t1-copy")? == 3, "{name}: fork content");
        let r = s.api("t1-copy", "GET", "/api/collections", Some(&token), None)?;
        ensure!(r.status == 401, "{name}: t1's token on the fork: {r:?}");
        let copy_token = s.superuser_token("t1-copy")?;
        let r = s.api(
            "t1-copy",
            "POST",
            "/api/collections/posts/records",
            Some(&copy_token),
            Some(json!({"title": "only in the copy"})),
        )?;
        ensure!(r.status == 200, "{name}: write to fork: {r:?}");
        ensure!(
            count_posts(s, "t1-copy")? == 4 && count_posts(s, "t1")? == 5,
            "{name}: separate"
        );
        // Export: a zip of both databases in the bucket, readable by any unzip.
        let out = strata_cli(b, s, &["export", "t1"])?;
        ensure!(out.status.success(), "{name}: export: {out:?}");
        let r: Value = serde_json::from_slice(&out.stdout)?;
        let key = r["key"].as_str().context("key")?;
        ensure!(
            key.starts_with("backups/t1/backup-") && key.ends_with(".zip"),
            "{name}: {key}"
        );
        let zip = dir.join("backup.zip");
        std::fs::write(&zip, &b.store()?.get(key)?.data)?;
        let unzipped = dir.join("unzipped");
        let py = std::process::Command::new("/usr/bin/python3")
            .args(["-m", "zipfile", "-e"])
            .arg(&zip)
            .arg(&unzipped)
            .output()?;
        ensure!(py.status.success(), "{name}: unzip: {py:?}");
        let c = rusqlite::Connection::open(unzipped.join("data.db"))?;
        let n: i64 = c.query_row("SELECT count(*) FROM posts", [], |r| r.get(0))?;
        ensure!(n == 5, "{name}: {n} posts in the backup");
        ensure!(
            strata_tests::integrity(&unzipped.join("auxiliary.db"))? == "ok",
            "{name}"
        );
        // Fork at the latest state right after a write: the write is in it
        // (the loaded source is flushed first).
        add_post(s, "t1", 5)?;
        let out = strata_cli(b, s, &["fork", "t1", "t1-now"])?;
        ensure!(out.status.success(), "{name}: fork latest: {out:?}");
        ensure!(
            count_posts(s, "t1-now")? == 6,
            "{name}: fork of the latest state"
        );
        let out = strata_cli(b, s, &["fork", "t1", "t1-copy"])?;
        ensure!(
            out.status.code() == Some(5),
            "{name}: fork onto an existing tenant: {out:?}"
        );
        Ok(())
    })
}

/// Bucket outage: a loaded tenant keeps serving (async commits wait in the
/// spool); a tenant that is not loaded gets 503 with `Retry-After`.
#[test]
fn bucket_outage_only_blocks_unloaded_tenants() -> Result<()> {
    let mut b = Backend::s3()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(&b, &dir.path().join("node"), &[])?;
    s.create_tenant("up", None)?;
    s.create_tenant("cold", None)?;
    let token = s.superuser_token("up")?;
    posts_collection(&s, "up", &token)?;
    let r = s.admin("GET", "/_strata/api/tenants", None)?;
    ensure!(r.body["loaded"] == 1, "only `up` is loaded: {r:?}");
    if let Backend::S3(server, _) = &mut b {
        server.stop();
    }
    let r = s.api(
        "up",
        "POST",
        "/api/collections/posts/records",
        None,
        Some(json!({"title": "during the outage"})),
    )?;
    ensure!(
        r.status == 200,
        "write to a loaded tenant during the outage: {r:?}"
    );
    ensure!(count_posts(&s, "up")? == 1, "read during the outage");
    let r = s.api("cold", "GET", "/api/health", None, None)?;
    ensure!(
        r.status == 503 && r.header("retry-after").is_some(),
        "unloaded tenant: {r:?}"
    );
    ensure!(r.body["status"] == 503, "error shape: {r:?}");
    Ok(())
}

#[test]
fn idle_tenants_are_evicted_and_come_back() -> Result<()> {
    let b = Backend::local()?;
    let dir = tempfile::tempdir()?;
    let s = Server::start(&b, &dir.path().join("node"), &["--idle-ttl", "300ms"])?;
    s.create_tenant("sleepy", None)?;
    let token = s.superuser_token("sleepy")?;
    posts_collection(&s, "sleepy", &token)?;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let r = s.admin("GET", "/_strata/api/tenants/sleepy", None)?;
        if r.body["state"] == "evicted" {
            break;
        }
        ensure!(Instant::now() < deadline, "not evicted when idle: {r:?}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // At least this one (with a 300 ms TTL on a busy machine the tenant may
    // also have gone idle between the set-up requests).
    let m = s.admin("GET", "/metrics", None)?;
    let evictions: u64 = m
        .text
        .lines()
        .find_map(|l| l.strip_prefix("strata_serve_tenant_evictions_total "))
        .and_then(|n| n.trim().parse().ok())
        .with_context(|| m.text.clone())?;
    ensure!(evictions >= 1, "{}", m.text);
    ensure!(
        count_posts(&s, "sleepy")? == 0,
        "reloads after idle eviction"
    );
    Ok(())
}

/// `--drop-local-on-evict`: an evicted tenant whose commits are all in the
/// bucket leaves no files on the node, and comes back lazily from the bucket.
#[test]
fn evict_can_drop_the_local_copy() -> Result<()> {
    on_each_backend(
        &["--drop-local-on-evict", "--log-format", "json"],
        |_b, s, dir, name| {
            s.create_tenant("thin", None)?;
            let token = s.superuser_token("thin")?;
            posts_collection(s, "thin", &token)?;
            for i in 0..10 {
                let r = s.api(
                    "thin",
                    "POST",
                    "/api/collections/posts/records",
                    None,
                    Some(json!({"title": format!("p{i}"), "n": i})),
                )?;
                ensure!(r.status == 200, "{name}: {r:?}");
            }
            let local = dir.join("node").join("thin");
            ensure!(
                local.join("data.db").exists(),
                "{name}: no local copy while loaded"
            );
            let r = s.admin("POST", "/_strata/api/tenants/thin/evict", None)?;
            ensure!(r.body["evicted"] == true, "{name}: {r:?}");
            ensure!(
                !local.exists(),
                "{name}: local files kept: {:?}",
                std::fs::read_dir(&local).map(|d| d.count())
            );
            ensure!(
                count_posts(s, "thin")? == 10,
                "{name}: reload from the bucket"
            );
            // Structured logs: one JSON object per line, with the tenant as a field.
            let log = s.log_text();
            let lines: Vec<Value> = log
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(serde_json::from_str)
                .collect::<Result<_, _>>()
                .with_context(|| format!("{name}: a log line is not JSON: {log}"))?;
            ensure!(
                lines
                    .iter()
                    .any(|l| l["fields"]["message"] == "local copy dropped"
                        && l["fields"]["tenant"] == "thin"),
                "{name}: {log}"
            );
            Ok(())
        },
    )
}

/// Writers hammer a tenant, the server is killed with `kill -9`, and a fresh
/// node with an empty data dir serves the tenant from the bucket. In `sync`
/// mode every acknowledged write is there; in `async` mode every write up to
/// the replicated watermark the server reported (`Strata-Replicated`).
#[test]
fn kill_9_loses_no_acknowledged_sync_write() -> Result<()> {
    kill_9_then_a_fresh_node("sync")
}

#[test]
fn kill_9_keeps_every_write_up_to_the_reported_async_watermark() -> Result<()> {
    kill_9_then_a_fresh_node("async")
}

/// One acknowledged write: its record id and the txid it committed as.
struct Ack {
    id: String,
    txid: u64,
}

fn kill_9_then_a_fresh_node(mode: &str) -> Result<()> {
    let sync = mode == "sync";
    for b in Backend::all()? {
        let dir = tempfile::tempdir()?;
        let name = format!("{} {mode}", b.name());
        let env = [("STRATA_DURABILITY", mode), ("STRATA_LEASE_TTL", "2s")];
        let mut s = Server::start_with(&b, &dir.path().join("node1"), &[], &env)?;
        s.create_tenant("t1", None)?;
        let token = s.superuser_token("t1")?;
        posts_collection(&s, "t1", &token)?;
        let acked = std::sync::Mutex::new(Vec::<Ack>::new());
        // The highest watermark any answer reported.
        let watermark = std::sync::atomic::AtomicU64::new(0);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let header = |r: &Response, h: &str| -> Result<u64> {
            r.header(h)
                .with_context(|| format!("no {h} header: {r:?}"))?
                .parse::<u64>()
                .with_context(|| format!("{h}: {r:?}"))
        };
        std::thread::scope(|scope| -> Result<()> {
            let mut writers = Vec::new();
            for w in 0..3 {
                let (acked, stop, watermark, addr) = (&acked, &stop, &watermark, s.addr.clone());
                writers.push(scope.spawn(move || -> Result<()> {
                    for i in 0.. {
                        if stop.load(std::sync::atomic::Ordering::Relaxed) {
                            break;
                        }
                        let body = json!({"title": format!("w{w}-{i}"), "n": i}).to_string();
                        let Ok(r) = http::request(
                            &addr,
                            "POST",
                            "/t/t1/api/collections/posts/records",
                            &[],
                            Some(&body),
                        ) else {
                            break; // the server is gone
                        };
                        if r.status != 200 {
                            continue;
                        }
                        let (txid, replicated) = (header(&r, "Strata-Txid")?, header(&r, "Strata-Replicated")?);
                        ensure!(
                            !sync || replicated >= txid,
                            "sync write acknowledged at txid {txid} before the bucket had it ({replicated})"
                        );
                        watermark.fetch_max(replicated, std::sync::atomic::Ordering::SeqCst);
                        let id = r.body["id"].as_str().context("id")?.to_string();
                        acked
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .push(Ack { id, txid });
                    }
                    Ok(())
                }));
            }
            // Kill once the watermark covers a good number of writes (polled).
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let covered = {
                    let w = watermark.load(std::sync::atomic::Ordering::SeqCst);
                    let acked = acked.lock().unwrap_or_else(|e| e.into_inner());
                    acked.iter().filter(|a| a.txid <= w).count()
                };
                // A writer that stopped early has an error to report.
                if covered >= 30 || writers.iter().any(|w| w.is_finished()) {
                    break;
                }
                ensure!(
                    Instant::now() < deadline,
                    "{name}: writes do not progress: {}",
                    s.log_text()
                );
                std::thread::sleep(Duration::from_millis(10));
            }
            s.child.kill()?;
            s.child.wait()?;
            stop.store(true, std::sync::atomic::Ordering::Relaxed);
            for w in writers {
                w.join().map_err(|_| anyhow::anyhow!("writer panicked"))??;
            }
            Ok(())
        })?;
        let acked = acked.into_inner().unwrap_or_else(|e| e.into_inner());
        let watermark = watermark.into_inner();

        // A fresh node; the dead node's lease expires after 2 s (503 until then).
        let s2 = Server::start_with(&b, &dir.path().join("node2"), &[], &env)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut found = std::collections::HashSet::new();
        loop {
            let r = s2.api(
                "t1",
                "GET",
                &format!(
                    "/api/collections/posts/records?perPage=1000&page={}&skipTotal=1",
                    1 + found.len() / 1000
                ),
                None,
                None,
            )?;
            if r.status == 503 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            ensure!(
                r.status == 200,
                "{name}: fresh node: {r:?}: {}",
                s2.log_text()
            );
            let items = r.body["items"].as_array().context("items")?;
            found.extend(
                items
                    .iter()
                    .filter_map(|i| i["id"].as_str().map(str::to_string)),
            );
            if items.len() < 1000 {
                break;
            }
        }
        // sync: every acknowledged write; async: every one the watermark covers.
        let promised: Vec<&Ack> = acked
            .iter()
            .filter(|a| sync || a.txid <= watermark)
            .collect();
        let missing: Vec<&str> = promised
            .iter()
            .filter(|a| !found.contains(&a.id))
            .map(|a| a.id.as_str())
            .collect();
        ensure!(
            missing.is_empty(),
            "{name}: {} of {} promised writes lost (watermark {watermark}): {missing:?}",
            missing.len(),
            promised.len()
        );
        ensure!(
            promised.len() >= 30,
            "{name}: only {} writes checked",
            promised.len()
        );
    }
    Ok(())
}
