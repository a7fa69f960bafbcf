//! `/api/batch` run as one scenario against the real PocketBase and strata,
//! step by step: disabled by default, all-or-nothing, upserts, per-request
//! headers, PocketBase's errors for every kind of bad batch.

use anyhow::Result;
use serde_json::{Value, json};
use strata_tests::http::{Response, error_codes};
use strata_tests::side::{Side, on_both};

/// What is compared of an answer: the status, and of records only the keys
/// both servers give (strata adds `created`/`updated`; ids are fixed here).
fn seen(r: &Response) -> Value {
    fn record(v: &Value) -> Value {
        match v {
            Value::Object(m) => {
                let keep = ["id", "title", "n"];
                Value::Object(
                    m.iter()
                        .filter(|(k, _)| keep.contains(&k.as_str()))
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                )
            }
            other => other.clone(),
        }
    }
    let body = match &r.body {
        Value::Array(items) => Value::Array(
            items
                .iter()
                .map(|i| json!({"status": i["status"], "body": record(&i["body"])}))
                .collect(),
        ),
        v if v.get("items").is_some() => Value::Array(
            v["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(record)
                .collect(),
        ),
        v if r.status >= 400 => {
            let nested: Vec<Value> = v["data"]["requests"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(i, e)| json!([i, e["code"], e["response"]["status"]]))
                .collect();
            json!({"message": v["message"], "codes": error_codes(v), "failed": nested})
        }
        v => record(v),
    };
    json!({"status": r.status, "body": body})
}

const A: &str = "aaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbb";
const C: &str = "ccccccccccccccc";
const D: &str = "ddddddddddddddd";

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut steps: Vec<(String, Value)> = Vec::new();
    let text = |n: &str| json!({"name": n, "type": "text"});
    for (name, create) in [("notes", json!("")), ("locked", Value::Null)] {
        let r = side.api(
            "POST",
            "/api/collections",
            Some(&su),
            Some(
                json!({"name": name, "type": "base", "listRule": "", "viewRule": "",
                        "createRule": create, "updateRule": "", "deleteRule": "",
                        "fields": [text("title"), {"name": "n", "type": "number"}]}),
            ),
        )?;
        steps.push((format!("create collection {name}"), json!(r.status)));
    }
    let mut step = |label: &str, r: Response| steps.push((label.to_string(), seen(&r)));
    let batch = |body: Value| side.api("POST", "/api/batch", None, Some(body));
    let post = |id: &str, title: &str| json!({"method": "POST", "url": "/api/collections/notes/records", "body": {"id": id, "title": title}});
    step("disabled", batch(json!({"requests": [post(A, "a")]}))?);
    let r = side.api(
        "PATCH",
        "/api/settings",
        Some(&su),
        Some(json!({"batch": {"enabled": true, "maxRequests": 5}})),
    )?;
    step(
        "enable",
        Response {
            body: json!(r.body["batch"]),
            ..r
        },
    );

    step(
        "writes",
        batch(json!({"requests": [
            post(A, "a"),
            post(B, "b"),
            {"method": "PATCH", "url": format!("/api/collections/notes/records/{A}"), "body": {"title": "a2", "n": 2}},
            {"method": "PUT", "url": "/api/collections/notes/records", "body": {"id": C, "title": "c"}},
            {"method": "PUT", "url": "/api/collections/notes/records?fields=id", "body": {"id": A, "title": "a3"}},
        ]}))?,
    );
    let list = || side.api("GET", "/api/collections/notes/records?sort=id", None, None);
    step("after writes", list()?);
    step(
        "delete",
        batch(json!({"requests": [
            {"method": "DELETE", "url": format!("/api/collections/notes/records/{B}")},
        ]}))?,
    );
    // One refused request undoes the batch.
    step(
        "all or nothing",
        batch(json!({"requests": [
            post(D, "d"),
            {"method": "PATCH", "url": format!("/api/collections/notes/records/{C}"), "body": {"title": "c2"}},
            {"method": "POST", "url": "/api/collections/locked/records", "body": {"title": "x"}},
        ]}))?,
    );
    step("after the refused batch", list()?);
    // A request's own token is not its auth: it runs as the batch's caller.
    step(
        "own headers",
        batch(json!({"requests": [
            {"method": "POST", "url": "/api/collections/locked/records", "headers": {"Authorization": su},
             "body": {"id": D, "title": "x"}},
        ]}))?,
    );
    let six: Vec<Value> = (0..6)
        .map(|i| post(&format!("{i}{}", &A[1..]), "x"))
        .collect();
    let r = side.api(
        "POST",
        "/api/batch",
        Some(&su),
        Some(json!({"requests": [
            {"method": "POST", "url": "/api/collections/locked/records", "body": {"id": D, "title": "x"}},
        ]})),
    )?;
    step("as the superuser", r);
    step("too many", batch(json!({ "requests": six }))?);
    step("empty", batch(json!({"requests": []}))?);
    step(
        "no method, no url",
        batch(
            json!({"requests": [{"url": "/api/collections/notes/records"}, {"method": "POST"}]}),
        )?,
    );
    step(
        "a read",
        batch(json!({"requests": [{"method": "GET", "url": "/api/collections/notes/records"}]}))?,
    );
    step(
        "another origin",
        batch(
            json!({"requests": [{"method": "POST", "url": "https://evil.example/api/collections/notes/records"}]}),
        )?,
    );
    step(
        "unknown collection",
        batch(
            json!({"requests": [{"method": "POST", "url": "/api/collections/nosuch/records", "body": {}}]}),
        )?,
    );
    step(
        "a duplicate id",
        batch(json!({"requests": [post(C, "dup")]}))?,
    );
    let r = strata_tests::http::request(
        side.addr(),
        "POST",
        &format!("{}/api/batch", side.prefix()),
        &[],
        Some("not json"),
    )?;
    step("not json", r);
    step("at the end", list()?);
    Ok(steps)
}

#[test]
fn batches_behave_as_in_pocketbase() -> Result<()> {
    on_both(scenario)
}
