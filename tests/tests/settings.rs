//! `/api/settings` and the rate limits it configures, run against the real
//! PocketBase and strata side by side; then the node's own guard on failed
//! logins (strata only).

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use strata_tests::Backend;
use strata_tests::http::error_codes;
use strata_tests::serve::{ADMIN, SU_EMAIL, SU_PASSWORD, Server};
use strata_tests::side::Pair;

/// Every key path of a JSON object (lists as one level).
fn shape(v: &Value) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Some(m) = v.as_object() {
            for (k, v) in m {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push(p.clone());
                walk(&p, v, out);
            }
        }
    }
    let mut out = Vec::new();
    walk("", v, &mut out);
    out.sort();
    out
}

#[test]
fn settings_read_and_change_as_in_pocketbase() -> Result<()> {
    let both = Pair::start(&[])?;
    let (pb, st) = both.call("GET", "/api/settings", false, None)?;
    ensure!(
        pb.status == 401 && st.status == 401,
        "guest: {pb:?} / {st:?}"
    );
    let (pb, st) = both.call("GET", "/api/settings", true, None)?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    ensure!(
        shape(&pb.body) == shape(&st.body),
        "the keys differ:\nPocketBase {:?}\nstrata     {:?}",
        shape(&pb.body),
        shape(&st.body)
    );
    for p in [
        "/rateLimits",
        "/batch",
        "/logs",
        "/meta",
        "/trustedProxy",
        "/smtp",
    ] {
        ensure!(
            pb.body.pointer(p) == st.body.pointer(p),
            "{p}: PocketBase {:?}, strata {:?}",
            pb.body.pointer(p),
            st.body.pointer(p)
        );
    }

    // Refused changes: the same field errors, nothing stored.
    let bad = [
        json!({"meta": {"appName": "", "appURL": "x", "senderAddress": "@"}}),
        json!({"logs": {"maxDays": -1}}),
        json!({"batch": {"enabled": true, "maxRequests": 0, "timeout": 0}}),
        json!({"rateLimits": {"enabled": true, "rules": [
            {"label": "a b c", "duration": 0, "maxRequests": 1},
            {"label": "/api/", "duration": 1, "maxRequests": 1, "audience": "@nobody"}]}}),
        json!({"rateLimits": {"rules": [
            {"label": "*:auth", "duration": 1, "maxRequests": 1},
            {"label": "*:auth", "duration": 2, "maxRequests": 1}]}}),
    ];
    for body in bad {
        let (pb, st) = both.call("PATCH", "/api/settings", true, Some(body.clone()))?;
        ensure!(
            pb.status == 400 && st.status == 400,
            "{body}: {pb:?} / {st:?}"
        );
        ensure!(
            error_codes(&pb.body) == error_codes(&st.body)
                && pb.body["message"] == st.body["message"],
            "{body}: PocketBase {:?} {}, strata {:?} {}",
            error_codes(&pb.body),
            pb.body["message"],
            error_codes(&st.body),
            st.body["message"]
        );
    }
    let (pb, st) = both.call(
        "PATCH",
        "/api/settings",
        true,
        Some(json!({"batch": {"maxRequests": "many"}})),
    )?;
    ensure!(
        pb.status == 400 && st.status == 400 && pb.body["message"] == st.body["message"],
        "wrong type: {pb:?} / {st:?}"
    );
    // What does not apply to a strata tenant is refused with the reason.
    let (_, st) = both.call(
        "PATCH",
        "/api/settings",
        true,
        Some(json!({"s3": {"enabled": true}})),
    )?;
    ensure!(
        st.status == 400 && st.body["data"]["s3"]["enabled"]["code"] == "validation_not_applicable",
        "s3: {st:?}"
    );
    let (_, st) = both.call("GET", "/api/settings", true, None)?;
    ensure!(
        st.body["meta"]["appName"] == "Acme",
        "a refused PATCH stored: {st:?}"
    );

    // A change: merged into the rest, secrets never shown, kept across an
    // eviction (it is in data.db).
    let change = json!({"meta": {"appName": "Chat", "senderName": "Chat team"},
                        "smtp": {"password": "hunter2", "username": "mailer"},
                        "logs": {"maxDays": 9}});
    let (pb, st) = both.call("PATCH", "/api/settings", true, Some(change))?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    for p in ["/meta", "/smtp", "/logs"] {
        ensure!(
            pb.body.pointer(p) == st.body.pointer(p),
            "{p} after PATCH: PocketBase {:?}, strata {:?}",
            pb.body.pointer(p),
            st.body.pointer(p)
        );
    }
    ensure!(
        !st.text.contains("hunter2"),
        "the SMTP password is shown: {st:?}"
    );
    let r = both
        .server()
        .admin("POST", "/_strata/api/tenants/acme/evict", None)?;
    ensure!(r.status == 200, "evict: {r:?}");
    let (_, st) = both.call("GET", "/api/settings", true, None)?;
    ensure!(
        st.body["meta"]["appName"] == "Chat"
            && st.body["meta"]["senderAddress"] == "support@example.com"
            && st.body["logs"]["maxDays"] == 9
            && st.body["smtp"]["username"] == "mailer",
        "after a reload: {st:?}"
    );
    // Tokens still verify: the JWT secret in the same row survived.
    let r = both
        .st
        .api("GET", "/api/collections", Some(both.strata_token()), None)?;
    ensure!(
        r.status == 200,
        "the old token after a settings change: {r:?}"
    );
    Ok(())
}

#[test]
fn rate_limit_rules_refuse_as_pocketbase_does() -> Result<()> {
    let both = Pair::start(&[])?;
    let posts = json!({"name": "posts", "type": "base", "listRule": "", "createRule": "",
                       "fields": [{"name": "title", "type": "text"}]});
    let (pb, st) = both.call("POST", "/api/collections", true, Some(posts))?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    let limits = json!({"rateLimits": {"enabled": true, "rules": [
        {"label": "*:list", "duration": 60, "maxRequests": 3},
        {"label": "GET /api/health", "audience": "@guest", "duration": 60, "maxRequests": 1},
        {"label": "_superusers:auth", "duration": 60, "maxRequests": 2},
    ]}});
    let (pb, st) = both.call("PATCH", "/api/settings", true, Some(limits))?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");

    let list = "/api/collections/posts/records";
    for i in 0..3 {
        let (pb, st) = both.call("GET", list, false, None)?;
        ensure!(
            pb.status == 200 && st.status == 200,
            "list {i}: {pb:?} / {st:?}"
        );
    }
    let (pb, st) = both.call("GET", list, false, None)?;
    ensure!(
        pb.status == 429 && st.status == 429,
        "4th list: {pb:?} / {st:?}"
    );
    ensure!(pb.body == st.body, "429 body: {} / {}", pb.body, st.body);
    let retry: u64 = st.header("retry-after").context("Retry-After")?.parse()?;
    ensure!((1..=60).contains(&retry), "Retry-After {retry}");
    // Superusers are never limited.
    let (pb, st) = both.call("GET", list, true, None)?;
    ensure!(
        pb.status == 200 && st.status == 200,
        "superuser: {pb:?} / {st:?}"
    );
    // Another route of the collection is another window (no rule: free).
    let (pb, st) = both.call("POST", list, false, Some(json!({"title": "x"})))?;
    ensure!(
        pb.status == 200 && st.status == 200,
        "create: {pb:?} / {st:?}"
    );

    // A method + path rule for guests only.
    let (pb, st) = both.call("GET", "/api/health", false, None)?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    let (pb, st) = both.call("GET", "/api/health", false, None)?;
    ensure!(
        pb.status == 429 && st.status == 429,
        "2nd health: {pb:?} / {st:?}"
    );

    // A tag rule on logins: wrong and right passwords alike count.
    let login = "/api/collections/_superusers/auth-with-password";
    let wrong = json!({"identity": SU_EMAIL, "password": "wrong"});
    let right = json!({"identity": SU_EMAIL, "password": SU_PASSWORD});
    let (pb, st) = both.call("POST", login, false, Some(wrong))?;
    ensure!(pb.status == 400 && st.status == 400, "{pb:?} / {st:?}");
    let (pb, st) = both.call("POST", login, false, Some(right.clone()))?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    let (pb, st) = both.call("POST", login, false, Some(right))?;
    ensure!(
        pb.status == 429 && st.status == 429,
        "3rd login: {pb:?} / {st:?}"
    );

    // Turning them off lifts every limit at once.
    let (pb, st) = both.call(
        "PATCH",
        "/api/settings",
        true,
        Some(json!({"rateLimits": {"enabled": false}})),
    )?;
    ensure!(pb.status == 200 && st.status == 200, "{pb:?} / {st:?}");
    let (pb, st) = both.call("GET", list, false, None)?;
    ensure!(
        pb.status == 200 && st.status == 200,
        "after disabling: {pb:?} / {st:?}"
    );
    Ok(())
}

#[test]
fn the_node_guards_logins_of_an_identity_after_repeated_failures() -> Result<()> {
    let dir = tempfile::tempdir()?;
    // The bucket lives as long as the server (a dropped Backend deletes it).
    let bucket = Backend::local()?;
    let s = Server::start(
        &bucket,
        &dir.path().join("node"),
        &["--auth-failures", "3/1m"],
    )?;
    s.create_tenant("acme", None)?;
    s.create_tenant("other", None)?;
    let login = "/api/collections/_superusers/auth-with-password";
    let try_login = |tenant: &str, identity: &str, password: &str| {
        s.api(
            tenant,
            "POST",
            login,
            None,
            Some(json!({"identity": identity, "password": password})),
        )
    };
    for i in 0..3 {
        let r = try_login("acme", SU_EMAIL, "wrong")?;
        ensure!(r.status == 400, "failure {i}: {r:?}");
        let r = try_login("acme", "nobody@acme.test", "wrong")?;
        ensure!(r.status == 400, "unknown identity, failure {i}: {r:?}");
    }
    // Known and unknown identities alike are held now, even with the right
    // password; the answer says for how long.
    for identity in [SU_EMAIL, "NOBODY@acme.test"] {
        let r = try_login("acme", identity, SU_PASSWORD)?;
        ensure!(r.status == 429, "{identity} after 3 failures: {r:?}");
        let retry: u64 = r.header("retry-after").context("Retry-After")?.parse()?;
        ensure!((1..=60).contains(&retry), "Retry-After {retry}");
    }
    // The same identity in another tenant is not held.
    let r = try_login("other", SU_EMAIL, SU_PASSWORD)?;
    ensure!(r.status == 200, "another tenant: {r:?}");
    // Correct logins never count.
    for _ in 0..5 {
        ensure!(try_login("other", SU_EMAIL, SU_PASSWORD)?.status == 200);
    }
    // The admin API is untouched by any of it.
    let r = s.req(
        "GET",
        "/_strata/api/tenants",
        &[format!("Authorization: Bearer {ADMIN}")],
        None,
    )?;
    ensure!(r.status == 200, "{r:?}");
    Ok(())
}
