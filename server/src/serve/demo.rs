//! `strata serve --demo`: a ready tenant on first run, made through the
//! server's own APIs as any client would make it (admin API, then the
//! tenant's PocketBase API), and a short guide printed with its URLs.

use super::admin::client::request;
use super::tenants::Config;
use anyhow::{Result, bail};
use serde_json::{Value, json};
use std::net::SocketAddr;

pub const TENANT: &str = "demo";
pub const EMAIL: &str = "demo@example.com";
/// A local demo's superuser password; the guide says to change it.
pub const PASSWORD: &str = "demo-password";

fn ok(what: &str, (status, body): (u16, Value)) -> Result<Value> {
    if !(200..300).contains(&status) {
        bail!("demo setup: {what}: {status} {body}");
    }
    Ok(body)
}

/// Create the demo tenant, its superuser and a `posts` collection with a
/// few records, unless they exist. Blocking (run it off the runtime).
pub fn setup(base: &str, admin_token: &str) -> Result<()> {
    let admin = Some(admin_token);
    let (status, _) = request(
        base,
        "GET",
        &format!("/_strata/api/tenants/{TENANT}"),
        admin,
        None,
    )?;
    if status == 404 {
        ok(
            "create the tenant",
            request(
                base,
                "POST",
                "/_strata/api/tenants",
                admin,
                Some(&json!({"id": TENANT, "superuser": {"email": EMAIL, "password": PASSWORD}})),
            )?,
        )?;
    }
    let api = format!("/t/{TENANT}/api");
    let auth = ok(
        "sign in as the superuser",
        request(
            base,
            "POST",
            &format!("{api}/collections/_superusers/auth-with-password"),
            None,
            Some(&json!({"identity": EMAIL, "password": PASSWORD})),
        )?,
    )?;
    let token = auth["token"].as_str().unwrap_or_default().to_string();
    let (status, _) = request(
        base,
        "GET",
        &format!("{api}/collections/posts"),
        Some(&token),
        None,
    )?;
    if status == 404 {
        ok(
            "create the posts collection",
            request(
                base,
                "POST",
                &format!("{api}/collections"),
                Some(&token),
                Some(&json!({
                    "name": "posts",
                    "type": "base",
                    "fields": [
                        {"name": "title", "type": "text", "required": true},
                        {"name": "done", "type": "bool"},
                        {"name": "created", "type": "autodate", "onCreate": true},
                        {"name": "updated", "type": "autodate", "onCreate": true, "onUpdate": true},
                    ],
                    "listRule": "", "viewRule": "", "createRule": "", "updateRule": "", "deleteRule": "",
                })),
            )?,
        )?;
        for (title, done) in [
            ("Read the README", true),
            ("Open the dashboard", false),
            ("Point the PocketBase SDK at this server", false),
        ] {
            ok(
                "add a record",
                request(
                    base,
                    "POST",
                    &format!("{api}/collections/posts/records"),
                    None,
                    Some(&json!({"title": title, "done": done})),
                )?,
            )?;
        }
    }
    Ok(())
}

/// What the operator needs to start: URLs, credentials, a first request.
pub fn guide(addr: SocketAddr, admin_token: &str, generated: bool, cfg: &Config) -> String {
    let base = format!("http://{addr}");
    let token_note = if generated {
        format!("{admin_token}  (generated for this run; set STRATA_ADMIN_TOKEN to choose one)")
    } else {
        "the value of STRATA_ADMIN_TOKEN".to_string()
    };
    format!(
        "\nstrata serve --demo: tenant `{TENANT}` is ready\n  \
         API (PocketBase):  {base}/t/{TENANT}/api/\n  \
         Dashboard:         {base}/_strata/   admin token: {token_note}\n  \
         Superuser:         {EMAIL} / {PASSWORD}   (a local demo: change it before exposing the port)\n  \
         Try:               curl {base}/t/{TENANT}/api/collections/posts/records\n  \
         JS SDK:            new PocketBase(\"{base}/t/{TENANT}\").collection(\"posts\").getFullList()\n  \
         Bucket:            {}   (the source of truth)\n  \
         Node cache:        {}   (disposable; Ctrl-C stops and flushes every commit)\n",
        cfg.bucket,
        cfg.data_dir.display()
    )
}
