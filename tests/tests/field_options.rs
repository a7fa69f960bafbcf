//! Autodate fields (only where declared, `onCreate`/`onUpdate`), text
//! `autogeneratePattern`, geoPoint fields and paths into json fields, text and number field options (`min`, `max`, `pattern`, `onlyInt`, and
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

/// Since PocketBase 0.23 a collection has `created`/`updated` only if it
/// declares autodate fields: a record of one without them has no such
/// keys (and cannot be sorted by them); declared ones, under any name,
/// take the time of a create and/or of an update and ignore what a client
/// sends; one with neither option is refused; the default `users` has
/// both.
fn autodate(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut steps = Vec::new();
    let shape = |fields: &Value| -> Value {
        fields
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["type"] == "autodate")
            .map(|f| {
                json!([
                    f["name"],
                    f["onCreate"],
                    f["onUpdate"],
                    f["system"],
                    f["hidden"]
                ])
            })
            .collect()
    };
    let users = side.api("GET", "/api/collections/users", Some(&su), None)?;
    steps.push((
        "users' autodate fields".into(),
        shape(&users.body["fields"]),
    ));

    let plain = side.create_collection(json!({"name": "plain", "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [{"name": "t", "type": "text"}]}))?;
    steps.push(("plain: autodate fields".into(), shape(&plain["fields"])));
    let r = side.api(
        "POST",
        "/api/collections/plain/records",
        None,
        Some(json!({"t": "a", "created": "2020-01-01 00:00:00.000Z"})),
    )?;
    let mut keys: Vec<&String> = r
        .body
        .as_object()
        .map(|o| o.keys().collect())
        .unwrap_or_default();
    keys.sort();
    steps.push(("plain: a record's keys".into(), json!([r.status, keys])));
    let id = r.body["id"].as_str().unwrap_or_default().to_string();
    let r = side.api(
        "PATCH",
        &format!("/api/collections/plain/records/{id}"),
        None,
        Some(json!({})),
    )?;
    steps.push((
        "plain: an empty update".into(),
        json!([r.status, r.body["t"]]),
    ));
    let r = side.api(
        "GET",
        "/api/collections/plain/records?sort=-created",
        None,
        None,
    )?;
    steps.push(("plain: sort=-created".into(), json!(r.status)));

    let stamped = side.create_collection(json!({"name": "stamped", "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [{"name": "t", "type": "text"},
                   {"name": "made", "type": "autodate", "onCreate": true},
                   {"name": "touched", "type": "autodate", "onUpdate": true},
                   {"name": "both", "type": "autodate", "onCreate": true, "onUpdate": true}]}))?;
    steps.push(("stamped: autodate fields".into(), shape(&stamped["fields"])));
    let sent = "2020-01-01 00:00:00.000Z";
    let r = side.api(
        "POST",
        "/api/collections/stamped/records",
        None,
        Some(json!({"t": "a", "made": sent, "touched": sent, "both": sent})),
    )?;
    let a = r.body.clone();
    let is_time = |v: &Value| {
        v.as_str()
            .is_some_and(|s| s.len() == 24 && s.ends_with('Z') && s != sent)
    };
    steps.push((
        "stamped: create".into(),
        json!([
            r.status,
            is_time(&a["made"]),
            a["touched"],
            is_time(&a["both"])
        ]),
    ));
    std::thread::sleep(std::time::Duration::from_millis(20));
    let id = a["id"].as_str().unwrap_or_default().to_string();
    let r = side.api(
        "PATCH",
        &format!("/api/collections/stamped/records/{id}"),
        None,
        Some(json!({"t": "b", "made": sent})),
    )?;
    let b = r.body.clone();
    steps.push((
        "stamped: update".into(),
        json!([
            r.status,
            b["made"] == a["made"],
            is_time(&b["touched"]),
            is_time(&b["both"]) && b["both"] != a["both"]
        ]),
    ));
    let r = side.api(
        "GET",
        "/api/collections/stamped/records?sort=-both,made",
        None,
        None,
    )?;
    steps.push((
        "stamped: sort by them".into(),
        json!([r.status, r.body["totalItems"]]),
    ));

    let bad = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "bad", "type": "base",
        "fields": [{"name": "t", "type": "text"}, {"name": "when", "type": "autodate"}]})),
    )?;
    steps.push((
        "neither option".into(),
        json!([bad.status, bad.body["data"]]),
    ));
    let taken = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "named", "type": "base",
        "fields": [{"name": "created", "type": "text"}, {"name": "updated", "type": "number"}]})),
    )?;
    steps.push((
        "created/updated as plain fields".into(),
        json!([taken.status, shape(&taken.body["fields"])]),
    ));

    // Left out of a PATCH's fields list, an autodate field goes too.
    let fields: Vec<Value> = stamped["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["name"] != "touched")
        .cloned()
        .collect();
    let r = side.api(
        "PATCH",
        "/api/collections/stamped",
        Some(&su),
        Some(json!({"fields": fields})),
    )?;
    steps.push((
        "PATCH without `touched`".into(),
        json!([r.status, shape(&r.body["fields"])]),
    ));
    let r = side.api(
        "GET",
        &format!("/api/collections/stamped/records/{id}"),
        None,
        None,
    )?;
    steps.push((
        "after: `touched` gone".into(),
        json!([r.status, r.body.get("touched").is_none()]),
    ));
    Ok(steps)
}

#[test]
fn autodate_fields_only_where_declared_as_in_pocketbase() -> Result<()> {
    on_both(autodate)
}

/// A text field's `autogeneratePattern` fills it on create when the client
/// leaves it empty (missing, "" or null), never on update; a pattern that
/// is no regular expression is refused.
fn autogenerate(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut steps = Vec::new();
    let c = side.create_collection(json!({"name": "codes", "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [{"name": "code", "type": "text", "autogeneratePattern": "[A-Z]{3}-[0-9]{4}"},
                   {"name": "t", "type": "text"}]}))?;
    let field = c["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|f| f["name"] == "code")
        .cloned();
    steps.push((
        "the field".into(),
        json!(field.map(|f| f["autogeneratePattern"].clone())),
    ));
    let shaped = |v: &Value| {
        v.as_str().is_some_and(|s| {
            let b = s.as_bytes();
            b.len() == 8
                && b[..3].iter().all(u8::is_ascii_uppercase)
                && b[3] == b'-'
                && b[4..].iter().all(u8::is_ascii_digit)
        })
    };
    let mut ids = Vec::new();
    for (label, body) in [
        ("missing", json!({"t": "a"})),
        ("empty", json!({"t": "b", "code": ""})),
        ("null", json!({"t": "c", "code": null})),
        ("given", json!({"t": "d", "code": "given"})),
    ] {
        let r = side.api("POST", "/api/collections/codes/records", None, Some(body))?;
        ids.push(r.body["id"].as_str().unwrap_or_default().to_string());
        steps.push((
            format!("create, code {label}"),
            json!([
                r.status,
                shaped(&r.body["code"]),
                if label == "given" {
                    r.body["code"].clone()
                } else {
                    Value::Null
                }
            ]),
        ));
    }
    let r = side.api(
        "PATCH",
        &format!("/api/collections/codes/records/{}", ids[0]),
        None,
        Some(json!({"code": ""})),
    )?;
    steps.push(("update to empty".into(), json!([r.status, r.body["code"]])));
    let bad = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "bad", "type": "base",
        "fields": [{"name": "code", "type": "text", "autogeneratePattern": "[a-z"}]})),
    )?;
    steps.push((
        "a broken pattern".into(),
        json!([
            bad.status,
            bad.body["data"]["fields"]["1"]["autogeneratePattern"]["code"]
        ]),
    ));
    Ok(steps)
}

#[test]
fn text_autogenerate_as_in_pocketbase() -> Result<()> {
    on_both(autogenerate)
}

/// geoPoint fields: what is stored for each shape a client may send (only
/// an object's numeric `lon`/`lat` count), the range errors, a required
/// point at (0, 0) as blank; filters on `at.lon`/`at.lat` and on a path
/// into a json field.
fn geo_points(side: &Side) -> Result<Vec<(String, Value)>> {
    let mut steps = Vec::new();
    side.create_collection(json!({"name": "places", "type": "base",
        "listRule": "", "viewRule": "", "createRule": "", "updateRule": "",
        "fields": [{"name": "name", "type": "text"}, {"name": "at", "type": "geoPoint"},
                   {"name": "req", "type": "geoPoint", "required": true},
                   {"name": "data", "type": "json"}]}))?;
    let one = json!({"lon": 1, "lat": 1});
    for body in [
        json!({"name": "paris", "at": {"lon": 2.35, "lat": 48.85}, "req": one, "data": {"a": {"b": 1}, "tag": "x"}}),
        json!({"name": "london", "at": {"lon": -0.12, "lat": 51.5}, "req": one, "data": {"a": {"b": 2}}}),
        json!({"name": "zero", "req": {"lon": 0, "lat": 0}}),
        json!({"name": "none"}),
        json!({"name": "lon200", "at": {"lon": 200, "lat": 0}, "req": one}),
        json!({"name": "lat-91", "at": {"lon": 0, "lat": -91}, "req": one}),
        json!({"name": "string", "at": "2,3", "req": one}),
        json!({"name": "strings", "at": {"lon": "2", "lat": "3"}, "req": one}),
        json!({"name": "partial", "at": {"lon": 5}, "req": one}),
        json!({"name": "extra", "at": {"lon": 5, "lat": 6, "x": 1}, "req": one}),
        json!({"name": "array", "at": [1, 2], "req": one}),
    ] {
        let r = side.api(
            "POST",
            "/api/collections/places/records",
            None,
            Some(body.clone()),
        )?;
        steps.push((
            format!("create {}", body["name"]),
            json!([r.status, r.body["at"], r.body["req"], error_codes(&r.body)]),
        ));
    }
    for filter in [
        "at.lat > 50",
        "at.lon < 0",
        "at.lon = 5 && at.lat = 6",
        "data.a.b = 1",
        "data.a.b >= 1",
        "data.tag = 'x'",
        "at.nope = 1",
    ] {
        steps.push((format!("filter {filter}"), side.filtered("places", filter)?));
    }
    Ok(steps)
}

#[test]
fn geo_points_and_json_paths_as_in_pocketbase() -> Result<()> {
    on_both(geo_points)
}
