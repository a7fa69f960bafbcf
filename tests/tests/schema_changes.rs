//! A collection PATCH as PocketBase takes it, run against the real
//! PocketBase and strata and compared step by step: the `fields` list is
//! the whole list, so a field left out is removed (its values and its
//! indexes with it), a field sent with its `id` and a new name is renamed
//! (values kept, indexes following), new options apply, and bad names or
//! clashes are refused with nothing changed.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use strata_tests::http::error_codes;
use strata_tests::side::{Side, on_both};

/// A collection as compared: its user fields' names and types, and the
/// columns its indexes name.
fn schema(c: &Value) -> Value {
    let fields: Vec<Value> = c["fields"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|f| f["system"] != true && f["type"] != "autodate")
        .map(|f| json!([f["name"], f["type"], f["required"]]))
        .collect();
    let indexes: Vec<Value> = c["indexes"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|i| {
            let s = i.as_str().unwrap_or("");
            let cols = s
                .rsplit_once('(')
                .map_or("", |(_, c)| c)
                .trim_end_matches(')');
            json!(cols.replace(['`', '"', ' '], ""))
        })
        .collect();
    json!({"fields": fields, "indexes": indexes})
}

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let r = side.api(
        "POST",
        "/api/collections",
        Some(&su),
        Some(
            json!({"name": "notes", "type": "base", "listRule": "", "viewRule": "",
            "createRule": "",
            "fields": [{"name": "title", "type": "text"}, {"name": "body", "type": "text"},
                       {"name": "n", "type": "number"}],
            "indexes": ["CREATE INDEX idx_body ON notes (body)"]}),
        ),
    )?;
    ensure!(r.status == 200, "{}: create: {}", side.name(), r.text);
    let id = r.body["id"].as_str().context("id")?.to_string();
    let records = "/api/collections/notes/records";
    for (t, b, n) in [("a", "x", 1), ("b", "y", 2)] {
        let r = side.api(
            "POST",
            records,
            None,
            Some(json!({"title": t, "body": b, "n": n})),
        )?;
        ensure!(r.status == 200, "{}: record: {}", side.name(), r.text);
    }
    let mut steps = Vec::new();
    let current = || -> Result<Value> {
        Ok(side
            .api("GET", &format!("/api/collections/{id}"), Some(&su), None)?
            .body)
    };
    let rows = || -> Result<Value> {
        let r = side.api("GET", &format!("{records}?sort=title"), None, None)?;
        Ok(Value::Array(
            r.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| {
                    let mut m = i.as_object().cloned().unwrap_or_default();
                    for k in ["id", "collectionId", "collectionName", "created", "updated"] {
                        m.remove(k);
                    }
                    Value::Object(m)
                })
                .collect(),
        ))
    };
    // The fields as the server gives them, changed by `edit`.
    let patch = |edit: &dyn Fn(&mut Vec<Value>)| -> Result<strata_tests::http::Response> {
        let mut fields: Vec<Value> = current()?["fields"].as_array().cloned().unwrap_or_default();
        edit(&mut fields);
        side.api(
            "PATCH",
            &format!("/api/collections/{id}"),
            Some(&su),
            Some(json!({"fields": fields})),
        )
    };
    let named = |fields: &mut Vec<Value>, name: &str| -> Option<usize> {
        fields.iter().position(|f| f["name"] == name)
    };
    let mut step = |label: &str, r: strata_tests::http::Response| -> Result<()> {
        let seen = if r.status == 200 {
            json!({"status": 200, "schema": schema(&r.body), "rows": rows()?})
        } else {
            json!({"status": r.status, "codes": error_codes(&r.body), "schema": schema(&current()?)})
        };
        steps.push((label.to_string(), seen));
        Ok(())
    };
    step(
        "rename body to text",
        patch(&|f| {
            if let Some(i) = named(f, "body") {
                f[i]["name"] = json!("text");
            }
        })?,
    )?;
    step(
        "remove n",
        patch(&|f| {
            if let Some(i) = named(f, "n") {
                f.remove(i);
            }
        })?,
    )?;
    step(
        "remove the indexed field",
        patch(&|f| {
            if let Some(i) = named(f, "text") {
                f.remove(i);
            }
        })?,
    )?;
    step(
        "new options: title required",
        patch(&|f| {
            if let Some(i) = named(f, "title") {
                f[i]["required"] = json!(true);
            }
        })?,
    )?;
    step(
        "add a field",
        patch(&|f| f.push(json!({"name": "tag", "type": "text"})))?,
    )?;
    step(
        "rename onto another field",
        patch(&|f| {
            if let Some(i) = named(f, "tag") {
                f[i]["name"] = json!("title");
            }
        })?,
    )?;
    step(
        "rename to a bad name",
        patch(&|f| {
            if let Some(i) = named(f, "tag") {
                f[i]["name"] = json!("no spaces");
            }
        })?,
    )?;
    step("an update without fields changes none", {
        side.api(
            "PATCH",
            &format!("/api/collections/{id}"),
            Some(&su),
            Some(json!({"listRule": ""})),
        )?
    })?;
    Ok(steps)
}

#[test]
fn collection_patches_migrate_fields_as_pocketbase_does() -> Result<()> {
    on_both(scenario)
}
