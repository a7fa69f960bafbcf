//! `/api/logs` run as one scenario against the real PocketBase and strata,
//! step by step: what a request leaves in the log, filters and sorts over
//! `data.*`, one entry, the hourly stats, and the errors.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use strata_tests::http::{Response, encode};
use strata_tests::side::{Side, on_both};

/// The parts of an entry both servers must agree on.
fn entry(e: &Value) -> Value {
    json!({
        "message": e["message"], "level": e["level"],
        "status": e["data"]["status"], "method": e["data"]["method"],
        "url": e["data"]["url"], "auth": e["data"]["auth"], "type": e["data"]["type"],
        "userAgent": e["data"]["userAgent"],
    })
}

fn entries(r: &Response) -> Vec<Value> {
    r.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .map(entry)
        .collect()
}

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut steps: Vec<(String, Value)> = Vec::new();
    let guest = |path: &str| side.api("GET", path, None, None);
    for path in [
        // (`probe`: the harness's own health checks are in PocketBase's log)
        "/api/health?probe=0",
        "/api/health?probe=1",
        "/api/collections/nosuch/records",
        "/api/logs",
    ] {
        let r = guest(path)?;
        steps.push((format!("guest {path}"), json!(r.status)));
    }
    // Two callers with tokens: the log names their collections.
    let r = side.api(
        "POST",
        "/api/collections/users/records",
        Some(&su),
        Some(json!({"email": "logged@example.com", "password": "12345678", "passwordConfirm": "12345678"})),
    )?;
    steps.push(("a user".into(), json!(r.status)));
    let r = side.api(
        "POST",
        "/api/collections/users/auth-with-password",
        None,
        Some(json!({"identity": "logged@example.com", "password": "12345678"})),
    )?;
    let user = r.body["token"].as_str().unwrap_or_default().to_string();
    for (who, token) in [("superuser", &su), ("user", &user)] {
        let path = format!("/api/collections/users/records?probe={who}");
        let r = side.api("GET", &path, Some(token), None)?;
        steps.push((format!("{who} {path}"), json!(r.status)));
    }
    let logs = |query: &str| side.api("GET", &format!("/api/logs?{query}"), Some(&su), None);
    // PocketBase writes its log in batches: wait until the six are there.
    // (The log's own requests carry these words in their URLs: left out.)
    let mine = format!(
        "filter={}&sort=created",
        encode(
            "(data.url ~ 'probe' && data.url !~ 'logs') || data.url = '/api/collections/nosuch/records' || (data.url = '/api/logs' && data.status = 401)"
        )
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    let r = loop {
        let r = logs(&mine)?;
        if r.body["totalItems"].as_i64() >= Some(6) {
            break r;
        }
        if Instant::now() > deadline {
            bail!("{}: the requests never reached the log: {r:?}", side.name());
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    // Requests made within one millisecond tie on `created`: by URL.
    let mut mine_entries = entries(&r);
    mine_entries.sort_by_key(|e| e["url"].to_string());
    steps.push(("the requests' entries".into(), json!(mine_entries)));
    let r = logs(&format!(
        "filter={}&sort=-data.status,created&perPage=2",
        encode("data.status >= 400 && data.url !~ 'logs?'")
    ))?;
    steps.push((
        "errors first, two a page".into(),
        json!({"status": r.status, "page": r.body["perPage"], "items": entries(&r)}),
    ));
    let r = logs(&format!(
        "filter={}&skipTotal=1",
        encode("data.url ~ 'probe' && data.url !~ 'logs'")
    ))?;
    steps.push((
        "skipTotal".into(),
        json!([
            r.body["totalItems"],
            r.body["totalPages"],
            entries(&r).len()
        ]),
    ));
    // One entry, by id.
    let id = logs(&mine)?.body["items"][0]["id"]
        .as_str()
        .context("an id")?
        .to_string();
    let r = side.api("GET", &format!("/api/logs/{id}"), Some(&su), None)?;
    steps.push((
        "by id".into(),
        json!({"status": r.status, "entry": entry(&r.body)}),
    ));
    let r = side.api("GET", "/api/logs/nosuchlogentry1", Some(&su), None)?;
    steps.push(("unknown id".into(), json!([r.status, r.body["message"]])));
    // The hourly counts.
    let r = side.api(
        "GET",
        &format!(
            "/api/logs/stats?filter={}",
            encode("data.url = '/api/collections/nosuch/records'")
        ),
        Some(&su),
        None,
    )?;
    let total: i64 = r
        .body
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| b["total"].as_i64())
        .sum();
    let dates_ok = r.body.as_array().into_iter().flatten().all(|b| {
        b["date"]
            .as_str()
            .is_some_and(|d| d.len() == 24 && d.ends_with(":00:00.000Z"))
    });
    steps.push(("stats".into(), json!([r.status, total, dates_ok])));
    // Mistakes.
    for (label, q) in [
        ("bad filter", format!("filter={}", encode("((("))),
        ("unknown sort", "sort=nosuch".to_string()),
        ("bad page", "page=abc".to_string()),
    ] {
        let r = logs(&q)?;
        steps.push((label.into(), json!(r.status)));
    }
    let r = side.api("GET", "/api/logs/stats", None, None)?;
    steps.push(("stats as a guest".into(), json!(r.status)));
    Ok(steps)
}

#[test]
fn the_request_log_reads_as_in_pocketbase() -> Result<()> {
    on_both(scenario)
}
