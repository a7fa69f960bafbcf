//! Text and number field options (`min`, `max`, `pattern`, `onlyInt`, and
//! text's 5000-character default) against the real PocketBase and strata,
//! compared step by step: what each stores and every error it gives, with
//! nothing stored from a refused record.

use anyhow::Result;
use serde_json::{Value, json};
use strata_tests::http::error_codes;
use strata_tests::side::{Side, on_both};

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    side.create_collection(
        json!({"name": "opts", "type": "base", "listRule": "", "createRule": "",
        "fields": [
            {"name": "t", "type": "text", "min": 2, "max": 5, "pattern": "^[a-z]+$"},
            {"name": "n", "type": "number", "min": 1, "max": 10, "onlyInt": true},
            {"name": "f", "type": "number", "min": -1.5, "max": 2.5},
            {"name": "plain", "type": "text"},
            {"name": "num", "type": "number"},
        ]}),
    )?;
    let mut steps = Vec::new();
    let long = "x".repeat(5001);
    let ok5000 = "y".repeat(5000);
    for body in [
        json!({"t": "a"}),
        json!({"t": "abcdef"}),
        json!({"t": "AB"}),
        json!({"t": "abc"}),
        json!({"t": "é✓"}),
        json!({"t": ""}),
        json!({"n": 0}),
        json!({"n": 11}),
        json!({"n": 2.5}),
        json!({"n": 0.5}),
        json!({"n": 5}),
        json!({"n": -3}),
        json!({"f": -2}),
        json!({"f": 2.5}),
        json!({"f": 2.75}),
        json!({"plain": long}),
        json!({"plain": ok5000}),
        json!({"num": -1e300}),
    ] {
        let label = body.to_string().chars().take(40).collect::<String>();
        let r = side.api("POST", "/api/collections/opts/records", None, Some(body))?;
        steps.push((
            label,
            if r.status == 200 {
                json!({"status": 200, "t": r.body["t"], "n": r.body["n"], "f": r.body["f"]})
            } else {
                json!({"status": r.status, "codes": error_codes(&r.body), "data": r.body["data"]})
            },
        ));
    }
    let r = side.api("GET", "/api/collections/opts/records?perPage=1", None, None)?;
    steps.push(("stored".into(), r.body["totalItems"].clone()));
    Ok(steps)
}

#[test]
fn text_and_number_options_validate_as_in_pocketbase() -> Result<()> {
    on_both(scenario)
}

/// url (domains), editor and JSON `maxSize`, date `min`/`max`, and dates
/// in the forms clients send, stored as PocketBase stores them.
fn more_types(side: &Side) -> Result<Vec<(String, Value)>> {
    side.create_collection(json!({"name": "more", "type": "base", "listRule": "", "createRule": "",
        "fields": [
            {"name": "u", "type": "url"},
            {"name": "u2", "type": "url", "onlyDomains": ["example.com"]},
            {"name": "u3", "type": "url", "exceptDomains": ["bad.com"]},
            {"name": "m", "type": "email", "onlyDomains": ["example.com"]},
            {"name": "e", "type": "editor", "maxSize": 20},
            {"name": "j", "type": "json", "maxSize": 10},
            {"name": "d", "type": "date", "min": "2024-01-01 00:00:00.000Z", "max": "2025-01-01 00:00:00.000Z"},
            {"name": "any", "type": "date"},
        ]}))?;
    let mut steps = Vec::new();
    for body in [
        json!({"u": "https://x.org/a?b=1"}),
        json!({"u": "not a url"}),
        json!({"u": "ftp://x.org"}),
        json!({"u": "x.org"}),
        json!({"u2": "https://a.example.com"}),
        json!({"u2": "https://example.com/p"}),
        json!({"u2": "https://other.com"}),
        json!({"u3": "http://bad.com"}),
        json!({"u3": "http://sub.bad.com"}),
        json!({"m": "a@example.com"}),
        json!({"m": "a@other.com"}),
        json!({"e": "<p>hello</p>"}),
        json!({"e": format!("<p>{}</p>", "x".repeat(30))}),
        json!({"j": {"a": 1}}),
        json!({"j": {"abc": "defghijk"}}),
        json!({"d": "2024-06-01 10:00:00.000Z"}),
        json!({"d": "2023-06-01"}),
        json!({"d": "2026-01-01 00:00:00Z"}),
        json!({"any": "garbage"}),
        json!({"any": "2024-06-01T10:00:00Z"}),
        json!({"any": "2024-06-01T12:30:00.250+02:00"}),
        json!({"any": "2024-06-01"}),
    ] {
        let label = body.to_string().chars().take(50).collect::<String>();
        let r = side.api(
            "POST",
            "/api/collections/more/records",
            None,
            Some(body.clone()),
        )?;
        let seen = if r.status == 200 {
            let keys: Vec<&String> = body
                .as_object()
                .map(|m| m.keys().collect())
                .unwrap_or_default();
            json!({"status": 200, "stored": keys.iter().map(|k| r.body[k.as_str()].clone()).collect::<Vec<_>>()})
        } else {
            json!({"status": r.status, "codes": error_codes(&r.body), "data": r.body["data"]})
        };
        steps.push((label, seen));
    }
    Ok(steps)
}

#[test]
fn url_editor_json_and_date_options_as_in_pocketbase() -> Result<()> {
    on_both(more_types)
}
