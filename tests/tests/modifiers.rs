//! PocketBase's body modifiers (`f+`, `+f`, `f-`) on number, select and
//! relation fields, single and multiple, run as one scenario against the
//! real PocketBase and strata and compared step by step: each applied on
//! the value the body sets or the record's current one, casts, duplicates,
//! and the errors of a bad value.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use strata_tests::http::error_codes;
use strata_tests::side::{Side, on_both};

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let r = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(
            json!({"name": "tags", "type": "base", "listRule": "", "viewRule": "",
            "createRule": "", "fields": [{"name": "name", "type": "text"}]}),
        ),
    )?;
    ensure!(r.status == 200, "{}: tags: {}", side.name(), r.text);
    let tags_id = r.body["id"].as_str().context("tags id")?.to_string();
    let tags: Vec<String> = (0..4).map(|i| format!("tag{i}aaaaaaaaaaa")).collect();
    for t in &tags {
        let r = side.api(
            "POST",
            "/api/collections/tags/records",
            None,
            Some(json!({"id": t})),
        )?;
        ensure!(r.status == 200, "{}: tag: {}", side.name(), r.text);
    }
    let sel = |name: &str, max: u32| json!({"name": name, "type": "select", "values": ["a", "b", "c"], "maxSelect": max});
    let rel = |name: &str, max: u32| json!({"name": name, "type": "relation", "collectionId": tags_id, "maxSelect": max});
    let r = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(json!({"name": "m", "type": "base", "listRule": "", "viewRule": "",
            "createRule": "", "updateRule": "",
            "fields": [{"name": "n", "type": "number"}, sel("s1", 1), sel("sm", 3), rel("r1", 1), rel("rm", 3)]})),
    )?;
    ensure!(r.status == 200, "{}: m: {}", side.name(), r.text);
    let mut steps = Vec::new();
    let seen = |r: &strata_tests::http::Response| {
        if r.status == 200 {
            json!({"status": 200, "n": r.body["n"], "s1": r.body["s1"], "sm": r.body["sm"],
                   "r1": r.body["r1"], "rm": r.body["rm"]})
        } else {
            json!({"status": r.status, "codes": error_codes(&r.body), "data": r.body["data"]})
        }
    };
    let r = side.api(
        "POST",
        "/api/collections/m/records",
        None,
        Some(json!({"n+": 5, "sm+": ["a"], "rm+": tags[0], "s1+": "b", "r1+": tags[1]})),
    )?;
    steps.push(("create with +".to_string(), seen(&r)));
    let id = r.body["id"].as_str().context("id")?.to_string();
    let path = format!("/api/collections/m/records/{id}");
    let nope = "nopenopenopenop";
    for (label, body) in [
        ("n+ 2.5", json!({"n+": 2.5})),
        ("n- 10", json!({"n-": 10})),
        ("n+ text", json!({"n+": "3"})),
        ("n+ not a number", json!({"n+": "x"})),
        ("n and n+", json!({"n": 100, "n+": 1})),
        ("n+ null, n+ true", json!({"n+": true, "n-": null})),
        ("sm+ two", json!({"sm+": ["b", "c"]})),
        ("sm- one", json!({"sm-": "a"})),
        ("+sm", json!({"+sm": "a"})),
        ("sm+ a duplicate", json!({"sm+": "a"})),
        ("sm- and sm+", json!({"sm-": ["b"], "sm+": "c"})),
        ("sm+ unknown", json!({"sm+": "zz"})),
        ("sm+ a number", json!({"sm+": 5})),
        ("sm+ null", json!({"sm+": null})),
        ("s1+", json!({"s1+": "c"})),
        ("s1- its value", json!({"s1-": "c"})),
        ("s1+ again", json!({"s1+": "a"})),
        ("s1- another", json!({"s1-": "b"})),
        ("rm+ two", json!({"rm+": [tags[1], tags[2]]})),
        ("rm- and +rm", json!({"rm-": [tags[0]], "+rm": tags[3]})),
        ("rm+ missing", json!({"rm-": [tags[3]], "rm+": nope})),
        ("rm+ too many", json!({"rm+": tags[0]})),
        ("r1-", json!({"r1-": tags[1]})),
        ("r1+", json!({"r1+": tags[2]})),
        ("unknown field+", json!({"zz+": 1})),
    ] {
        let r = side.api("PATCH", &path, None, Some(body))?;
        steps.push((label.to_string(), seen(&r)));
    }
    Ok(steps)
}

#[test]
fn body_modifiers_behave_as_in_pocketbase() -> Result<()> {
    on_both(scenario)
}
