//! Issue 13's operator surface and input shapes, one test per class: what
//! an attacker or a careless client sends, and what it must get. Where the
//! real PocketBase defines the answer (names, multipart), the same requests
//! go to both and the answers are compared.

use anyhow::{Result, ensure};
use serde_json::{Value, json};
use strata_tests::Backend;
use strata_tests::http::{self, Response, error_codes};
use strata_tests::serve::{ADMIN, SU_EMAIL, SU_PASSWORD, Server, count_posts, posts_collection};
use strata_tests::side::Pair;

fn bearer() -> String {
    format!("Authorization: Bearer {ADMIN}")
}

fn host(h: &str) -> String {
    format!("Host: {h}")
}

fn free_addr() -> Result<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.to_string())
}

#[test]
fn metrics_need_the_admin_token_and_never_answer_through_a_tenant_domain() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bucket lives as long as the server (a dropped Backend deletes it).
    let bucket = Backend::local()?;
    let s = Server::start(&bucket, &dir.path().join("node"), &[])?;
    s.create_tenant("acme", Some("acme.example"))?;

    let r = s.req("GET", "/metrics", &[], None)?;
    ensure!(r.status == 401, "/metrics without a token: {r:?}");
    let r = s.req(
        "GET",
        "/metrics",
        &["Authorization: Bearer wrong".into()],
        None,
    )?;
    ensure!(r.status == 401, "/metrics with a wrong token: {r:?}");
    let r = s.req("GET", "/metrics", &[bearer()], None)?;
    ensure!(
        r.status == 200 && r.text.contains("strata_serve_"),
        "/metrics with the token: {r:?}"
    );

    // Through the tenant's domain the operator's paths are the tenant's own
    // unknown paths, even with the admin token.
    for path in ["/metrics", "/_strata/api/tenants", "/_strata/", "/_strata"] {
        let r = s.req("GET", path, &[bearer(), host("ACME.example.:8090")], None)?;
        ensure!(r.status == 404, "{path} through the tenant's domain: {r:?}");
    }
    // The tenant itself still answers there.
    let r = s.req("GET", "/api/health", &[host("acme.example")], None)?;
    ensure!(r.status == 200, "the tenant's own health: {r:?}");
    Ok(())
}

#[test]
fn metrics_listen_moves_the_operator_surface_off_the_public_port() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let op = free_addr()?;
    let bucket = Backend::local()?;
    let s = Server::start(
        &bucket,
        &dir.path().join("node"),
        &["--metrics-listen", &op],
    )?;
    for path in ["/metrics", "/_strata/api/tenants", "/_strata/"] {
        let r = s.req("GET", path, &[bearer()], None)?;
        ensure!(r.status == 404, "{path} on the public port: {r:?}");
    }
    // On the operator's address: metrics open, the admin API behind its token.
    let r = http::request(&op, "GET", "/metrics", &[], None)?;
    ensure!(
        r.status == 200 && r.text.contains("strata_serve_"),
        "/metrics on --metrics-listen: {r:?}"
    );
    let r = http::request(&op, "GET", "/_strata/api/tenants", &[], None)?;
    ensure!(r.status == 401, "admin API without a token: {r:?}");
    let body = json!({"id": "acme", "superuser": {"email": SU_EMAIL, "password": SU_PASSWORD}})
        .to_string();
    let r = http::request(
        &op,
        "POST",
        "/_strata/api/tenants",
        &[bearer()],
        Some(&body),
    )?;
    ensure!(r.status == 201, "create through the operator's port: {r:?}");
    // Tenants are served on the public port only.
    let r = s.req("GET", "/t/acme/api/health", &[], None)?;
    ensure!(r.status == 200, "tenant on the public port: {r:?}");
    let r = http::request(&op, "GET", "/t/acme/api/health", &[], None)?;
    ensure!(r.status == 404, "tenant on the operator's port: {r:?}");
    Ok(())
}

fn create(s: &Server, id: &str, domain: &str) -> Result<Response> {
    s.admin(
        "POST",
        "/_strata/api/tenants",
        Some(json!({"id": id, "domain": domain, "superuser": {"email": SU_EMAIL, "password": SU_PASSWORD}})),
    )
}

#[test]
fn every_spelling_of_a_dns_name_reaches_one_tenant() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bucket lives as long as the server (a dropped Backend deletes it).
    let bucket = Backend::local()?;
    let s = Server::start(&bucket, &dir.path().join("node"), &[])?;
    let r = create(&s, "shop", "Shop.Example.COM.")?;
    ensure!(r.status == 201, "claim: {r:?}");
    let shown = s.admin("GET", "/_strata/api/tenants/shop", None)?;
    ensure!(
        shown.body["domain"] == "shop.example.com",
        "stored in one spelling: {shown:?}"
    );
    for h in [
        "shop.example.com",
        "SHOP.EXAMPLE.COM",
        "shop.example.com.",
        "Shop.Example.Com.:8443",
    ] {
        let r = s.req("GET", "/api/health", &[host(h)], None)?;
        ensure!(r.status == 200, "Host {h:?}: {r:?}");
    }
    // Another spelling of the same name cannot be claimed again.
    for d in [
        "shop.example.com",
        "SHOP.example.com.",
        "shop.example.com:80",
    ] {
        let r = create(&s, "copy", d)?;
        ensure!(r.status == 409, "second claim of {d:?}: {r:?}");
    }
    // IDNA: the Unicode and the ASCII spelling are one name.
    let r = create(&s, "books", "Bücher.Example")?;
    ensure!(r.status == 201, "unicode claim: {r:?}");
    let r = create(&s, "copy", "xn--bcher-kva.example")?;
    ensure!(r.status == 409, "punycode of a claimed name: {r:?}");
    let r = s.req("GET", "/api/health", &[host("XN--BCHER-KVA.example")], None)?;
    ensure!(r.status == 200, "punycode Host: {r:?}");
    // Not DNS names a tenant can own: a clear 400, nothing created.
    for d in [
        "127.0.0.1",
        "[::1]",
        "10.0.0.1:80",
        "a_b.example",
        "-a.example",
        "a..example",
        "exa mple.com",
        "",
    ] {
        let r = create(&s, "bad", d)?;
        ensure!(
            r.status == 400 && r.body["message"].is_string(),
            "domain {d:?}: {r:?}"
        );
    }
    let r = s.admin("GET", "/_strata/api/tenants/bad", None)?;
    ensure!(r.status == 404, "a refused claim created a tenant: {r:?}");
    let r = s.admin("GET", "/_strata/api/tenants/copy", None)?;
    ensure!(r.status == 404, "a refused claim created a tenant: {r:?}");
    Ok(())
}

#[test]
fn a_restore_without_a_point_is_refused() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bucket lives as long as the server (a dropped Backend deletes it).
    let bucket = Backend::local()?;
    let s = Server::start(&bucket, &dir.path().join("node"), &[])?;
    s.create_tenant("acme", None)?;
    let su = s.superuser_token("acme")?;
    posts_collection(&s, "acme", &su)?;
    for i in 0..3 {
        strata_tests::serve::add_post(&s, "acme", i)?;
    }
    for body in [json!({}), json!({"txid": null}), json!({"time": null})] {
        let r = s.admin(
            "POST",
            "/_strata/api/tenants/acme/restore",
            Some(body.clone()),
        )?;
        ensure!(
            r.status == 400 && r.body["data"]["txid"]["code"] == "validation_required",
            "restore {body}: {r:?}"
        );
    }
    let r = s.req(
        "POST",
        "/_strata/api/tenants/acme/restore",
        &[bearer()],
        None,
    )?;
    ensure!(r.status == 400, "restore without a body: {r:?}");
    ensure!(
        count_posts(&s, "acme")? == 3,
        "a refused restore changed data"
    );
    Ok(())
}

#[test]
fn collection_and_field_names_compare_as_pocketbase_does() -> Result<()> {
    let both = Pair::start(&[])?;
    let text = |n: &str| json!({"name": n, "type": "text"});
    let coll =
        |name: &str, fields: Vec<Value>| json!({"name": name, "type": "base", "fields": fields});
    let (pb, st) = api(
        &both,
        "POST",
        "/api/collections",
        coll("Posts", vec![text("title")]),
    )?;
    ensure!(
        pb.status == 200 && st.status == 200,
        "create Posts: {pb:?} / {st:?}"
    );
    // (body, whether PocketBase's error codes are compared too)
    let cases = [
        (coll("posts", vec![]), true),
        (coll("POSTS", vec![]), true),
        // PocketBase passes SQLite's own refusal through with no codes.
        (coll("sqlite_x", vec![]), false),
        (coll("SQLITE_master", vec![]), false),
        (coll("f1", vec![text("Title"), text("title")]), true),
        (coll("f2", vec![text("ID")]), true),
        (coll("f3", vec![text("expand")]), true),
        (coll("f4", vec![text("collectionId")]), true),
        (coll("f5", vec![text("_rowid_")]), true),
    ];
    for (body, compare_codes) in cases {
        let (pb, st) = api(&both, "POST", "/api/collections", body.clone())?;
        ensure!(pb.status == 400, "PocketBase took {body}: {pb:?}");
        ensure!(st.status == 400, "strata: {body}: {st:?}");
        ensure!(
            st.body["message"].is_string(),
            "strata's error shape: {st:?}"
        );
        if compare_codes {
            ensure!(
                error_codes(&pb.body) == error_codes(&st.body),
                "{body}: PocketBase {:?}, strata {:?}",
                error_codes(&pb.body),
                error_codes(&st.body)
            );
        }
    }
    // PocketBase compares `_rowid_` case-sensitively and takes `_ROWID_`,
    // a column SQLite then resolves `_rowid_` to; strata refuses it.
    let (_, st) = api(
        &both,
        "POST",
        "/api/collections",
        coll("f6", vec![text("_ROWID_")]),
    )?;
    ensure!(
        st.status == 400
            && st.body["data"]["fields"]["1"]["name"]["code"] == "validation_not_in_invalid",
        "strata: _ROWID_: {st:?}"
    );
    // `rowid` and `oid` are ordinary columns in both, and lists still page
    // in a stable order with them.
    let (pb, st) = api(
        &both,
        "POST",
        "/api/collections",
        json!({"name": "keys", "type": "base", "listRule": "", "createRule": "",
               "fields": [text("rowid"), text("oid")]}),
    )?;
    ensure!(
        pb.status == 200 && st.status == 200,
        "rowid/oid fields: {pb:?} / {st:?}"
    );
    for i in 0..3 {
        let (pb, st) = api(
            &both,
            "POST",
            "/api/collections/keys/records",
            json!({"rowid": format!("r{}", 3 - i), "oid": "same"}),
        )?;
        ensure!(
            pb.status == 200 && st.status == 200,
            "record {i}: {pb:?} / {st:?}"
        );
    }
    let (pb, st) = api(
        &both,
        "GET",
        "/api/collections/keys/records?sort=oid",
        json!(null),
    )?;
    let rowids = |r: &Response| -> Vec<Value> {
        r.body["items"]
            .as_array()
            .map(|a| a.iter().map(|i| i["rowid"].clone()).collect())
            .unwrap_or_default()
    };
    ensure!(
        st.status == 200 && rowids(&st) == rowids(&pb) && rowids(&st).len() == 3,
        "list: PocketBase {:?}, strata {st:?}",
        rowids(&pb)
    );
    // No refused collection exists afterwards.
    for name in ["f1", "f5", "sqlite_x"] {
        let r = both.st.api(
            "GET",
            &format!("/api/collections/{name}"),
            Some(both.strata_token()),
            None,
        )?;
        ensure!(r.status == 404, "refused collection {name} exists: {r:?}");
    }
    Ok(())
}

#[test]
fn a_body_that_is_not_multipart_is_a_400_and_stores_nothing() -> Result<()> {
    let both = Pair::start(&[])?;
    let (pb, st) = api(
        &both,
        "POST",
        "/api/collections",
        json!({"name": "notes", "type": "base", "listRule": "", "createRule": "",
               "fields": [{"name": "title", "type": "text"}]}),
    )?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    let path = "/api/collections/notes/records";
    let part = "--XX\r\nContent-Disposition: form-data; name=\"title\"\r\n\r\nhello";
    // (content type, body) pairs PocketBase refuses.
    let broken: [(&str, String); 2] = [
        // No closing boundary.
        ("multipart/form-data; boundary=XX", part.to_string()),
        // No boundary parameter.
        ("multipart/form-data", "garbage".to_string()),
    ];
    for (ctype, body) in &broken {
        let (pb, st) = raw(&both, path, ctype, body.as_bytes())?;
        ensure!(pb.status == 400, "PocketBase took {ctype} {body:?}: {pb:?}");
        ensure!(
            st.status == 400 && st.body["message"].is_string(),
            "strata: {ctype} {body:?}: {st:?}"
        );
    }
    // strata is stricter than PocketBase here (which creates an empty
    // record): a multipart body with no part at all, or with a part whose
    // headers never end, is not a form.
    for body in [
        "",
        "--XX--\r\n",
        "--XX\r\nContent-Disposition: form-data; name=\"title\"",
    ] {
        let (_, st) = raw(
            &both,
            path,
            "multipart/form-data; boundary=XX",
            body.as_bytes(),
        )?;
        ensure!(st.status == 400, "strata: empty multipart {body:?}: {st:?}");
    }
    let r = both.st.api("GET", path, None, None)?;
    ensure!(
        r.status == 200 && r.body["totalItems"] == 0,
        "a refused body stored a record: {r:?}"
    );
    // A well-formed one, with a repeated key, is taken.
    let ok = format!("{part}\r\n--XX--\r\n");
    let (pb, st) = raw(
        &both,
        path,
        "multipart/form-data; boundary=XX",
        ok.as_bytes(),
    )?;
    ensure!(
        pb.status == 200 && st.status == 200 && st.body["title"] == pb.body["title"],
        "valid multipart: {pb:?} / {st:?}"
    );
    let r = both.st.api("GET", path, None, None)?;
    ensure!(r.body["totalItems"] == 1, "{r:?}");
    Ok(())
}

#[test]
fn odd_requests_get_client_errors_not_500s() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bucket lives as long as the server (a dropped Backend deletes it).
    let bucket = Backend::local()?;
    let s = Server::start(&bucket, &dir.path().join("node"), &[])?;
    s.create_tenant("acme", None)?;
    let su = s.superuser_token("acme")?;
    posts_collection(&s, "acme", &su)?;
    let before = s
        .api("acme", "GET", "/api/collections/posts", Some(&su), None)?
        .body["fields"]
        .clone();
    let auth = format!("Authorization: {su}");
    let bad: Vec<(&str, String, Option<String>)> = vec![
        ("GET", "/t/acme/api/collections/posts/records?filter=%28%28%28".into(), None),
        ("GET", "/t/acme/api/collections/posts/records?filter=title%20~%20%27%5C%27".into(), None),
        ("GET", "/t/acme/api/collections/posts/records?sort=%2B%2B%2B".into(), None),
        ("GET", "/t/acme/api/collections/posts/records?page=-1&perPage=abc".into(), None),
        ("GET", "/t/acme/api/collections/posts/records?fields=%2A%3Aexcerpt%28x%29".into(), None),
        ("GET", format!("/t/acme/api/collections/{}/records", "x".repeat(5000)), None),
        ("POST", "/t/acme/api/collections/posts/records".into(), Some("{\"title\":".into())),
        ("POST", "/t/acme/api/collections/posts/records".into(), Some("[1,2,3]".into())),
        ("POST", "/t/acme/api/collections/posts/records".into(), Some("{\"title\": {\"a\": 1}, \"n\": \"NaN\"}".into())),
        ("PATCH", "/t/acme/api/collections/posts/records/%00%00".into(), Some("{}".into())),
        ("POST", "/t/acme/api/collections".into(), Some("{\"name\": \"x\", \"type\": \"view\"}".into())),
        ("POST", "/t/acme/api/collections".into(), Some("{\"name\": \"y\", \"fields\": [{\"name\": \"r\", \"type\": \"relation\", \"collectionId\": \"nope\"}]}".into())),
        ("POST", "/t/acme/api/collections/users/auth-with-password".into(), Some("{\"identity\": 5}".into())),
        ("GET", "/t/acme/api/collections/posts/records/..%2F..%2Fetc".into(), None),
    ];
    for (method, path, body) in bad {
        let r = s.req(method, &path, std::slice::from_ref(&auth), body.as_deref())?;
        ensure!(
            (400..500).contains(&r.status) && r.body["message"].is_string(),
            "{method} {path} {body:?}: {r:?}"
        );
    }
    let log = s.log_text();
    ensure!(!log.contains("panicked"), "the server panicked: {log}");
    ensure!(
        count_posts(&s, "acme")? == 0,
        "a refused request stored a record"
    );
    let r = s.api("acme", "GET", "/api/collections/posts", Some(&su), None)?;
    ensure!(
        r.body["fields"].as_array().is_some_and(|f| f.len() == 8) && r.body["fields"] == before,
        "the collection changed: {r:?}"
    );
    Ok(())
}

/// A JSON call to both as the superuser.
fn api(both: &Pair, method: &str, path: &str, body: Value) -> Result<(Response, Response)> {
    both.call(method, path, true, Some(body))
}

/// A raw POST (a multipart body) of content type `ctype` to both, as the
/// superuser.
fn raw(both: &Pair, path: &str, ctype: &str, body: &[u8]) -> Result<(Response, Response)> {
    both.raw_su("POST", path, &[format!("Content-Type: {ctype}")], body)
}
