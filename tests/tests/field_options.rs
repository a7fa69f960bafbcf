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
