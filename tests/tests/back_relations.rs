//! Back-relations (`<collection>_via_<field>`) in `expand`, run against the
//! real PocketBase and strata and compared step by step: single and
//! multiple relation fields, nested expands through them, the view rule of
//! the back-related collection, and names that are no back-relation; and
//! the same paths in filters.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use strata_tests::side::{Side, on_both};

/// The ids of a record's expanded values, in order (recursively), so that
/// what is compared is which records came back where.
fn shape(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            if let Some(id) = m.get("id") {
                out.insert("id".into(), id.clone());
            }
            if let Some(Value::Object(e)) = m.get("expand") {
                out.insert(
                    "expand".into(),
                    Value::Object(e.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
                );
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(shape).collect()),
        other => other.clone(),
    }
}

fn scenario(side: &Side) -> Result<Vec<(String, Value)>> {
    let su = side.superuser()?;
    let mut ids = std::collections::HashMap::new();
    let coll = |body: Value| -> Result<String> {
        let r = side.api("POST", "/api/collections", Some(&su), Some(body))?;
        ensure!(r.status == 200, "{}: collection: {}", side.name(), r.text);
        Ok(r.body["id"].as_str().context("id")?.to_string())
    };
    let posts = coll(
        json!({"name": "posts", "type": "base", "listRule": "", "viewRule": "",
        "fields": [{"name": "title", "type": "text"}]}),
    )?;
    let tags = coll(
        json!({"name": "tags", "type": "base", "listRule": "", "viewRule": "",
        "fields": [{"name": "name", "type": "text"}]}),
    )?;
    coll(
        json!({"name": "comments", "type": "base", "listRule": "", "viewRule": "",
        "fields": [{"name": "body", "type": "text"},
                   {"name": "post", "type": "relation", "collectionId": posts, "maxSelect": 1},
                   {"name": "tags", "type": "relation", "collectionId": tags, "maxSelect": 5}]}),
    )?;
    coll(
        json!({"name": "hidden", "type": "base", "listRule": "", "viewRule": "body = 'shown'",
        "fields": [{"name": "body", "type": "text"},
                   {"name": "post", "type": "relation", "collectionId": posts, "maxSelect": 1}]}),
    )?;
    coll(
        json!({"name": "profiles", "type": "base", "listRule": "", "viewRule": "",
        "fields": [{"name": "bio", "type": "text"},
                   {"name": "post", "type": "relation", "collectionId": posts, "maxSelect": 1}],
        "indexes": ["CREATE UNIQUE INDEX idx_profile_post ON profiles (post)"]}),
    )?;
    let mut add = |c: &str, key: &str, body: Value| -> Result<()> {
        let r = side.api(
            "POST",
            &format!("/api/collections/{c}/records"),
            Some(&su),
            Some(body),
        )?;
        ensure!(r.status == 200, "{}: {c}: {}", side.name(), r.text);
        ids.insert(
            key.to_string(),
            r.body["id"].as_str().unwrap_or("").to_string(),
        );
        Ok(())
    };
    for (k, id) in [
        ("p1", "p1aaaaaaaaaaaaa"),
        ("p2", "p2aaaaaaaaaaaaa"),
        ("p3", "p3aaaaaaaaaaaaa"),
    ] {
        add("posts", k, json!({"id": id, "title": k}))?;
    }
    for (k, id) in [("t1", "t1aaaaaaaaaaaaa"), ("t2", "t2aaaaaaaaaaaaa")] {
        add("tags", k, json!({"id": id, "name": k}))?;
    }
    for (id, post, tags) in [
        (
            "c3aaaaaaaaaaaaa",
            "p1aaaaaaaaaaaaa",
            json!(["t1aaaaaaaaaaaaa"]),
        ),
        (
            "c1aaaaaaaaaaaaa",
            "p1aaaaaaaaaaaaa",
            json!(["t1aaaaaaaaaaaaa", "t2aaaaaaaaaaaaa"]),
        ),
        ("c2aaaaaaaaaaaaa", "p2aaaaaaaaaaaaa", json!([])),
    ] {
        add(
            "comments",
            id,
            json!({"id": id, "body": id, "post": post, "tags": tags}),
        )?;
    }
    for (id, body) in [("h1aaaaaaaaaaaaa", "shown"), ("h2aaaaaaaaaaaaa", "secret")] {
        add(
            "hidden",
            id,
            json!({"id": id, "body": body, "post": "p1aaaaaaaaaaaaa"}),
        )?;
    }
    add(
        "profiles",
        "pr1",
        json!({"id": "pr1aaaaaaaaaaaa", "bio": "x", "post": "p1aaaaaaaaaaaaa"}),
    )?;
    let mut steps = Vec::new();
    for expand in [
        "profiles_via_post",
        "comments_via_post",
        "comments_via_post.tags",
        "comments_via_tags",
        "comments_via_tags.post",
        "hidden_via_post",
        "comments_via_body",
        "nope_via_post",
        "comments_via_post,hidden_via_post",
    ] {
        let base = if expand.contains("via_tags") {
            "tags"
        } else {
            "posts"
        };
        for who in [Some(su.as_str()), None] {
            let r = side.api(
                "GET",
                &format!("/api/collections/{base}/records?sort=id&expand={expand}"),
                who,
                None,
            )?;
            steps.push((
                format!(
                    "{base} expand={expand} as {}",
                    if who.is_some() { "superuser" } else { "guest" }
                ),
                json!({"status": r.status, "items": shape(&r.body["items"])}),
            ));
        }
    }
    for (base, filter) in [
        ("posts", "comments_via_post.body ?= 'c1aaaaaaaaaaaaa'"),
        ("posts", "comments_via_post.body = 'c2aaaaaaaaaaaaa'"),
        ("posts", "comments_via_post.body ?!= 'c3aaaaaaaaaaaaa'"),
        ("posts", "comments_via_post.tags.name ?= 't2'"),
        ("posts", "hidden_via_post.body ?= 'secret'"),
        ("tags", "comments_via_tags.post.title ?= 'p1'"),
        ("tags", "comments_via_tags.body ?~ 'c1'"),
        ("posts", "nope_via_post.body ?= 'x'"),
        ("posts", "comments_via_title.body ?= 'x'"),
    ] {
        for who in [Some(su.as_str()), None] {
            let r = side.api(
                "GET",
                &format!(
                    "/api/collections/{base}/records?sort=id&filter={}",
                    strata_tests::http::encode(filter)
                ),
                who,
                None,
            )?;
            let ids: Vec<Value> = r.body["items"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| i["id"].clone())
                .collect();
            steps.push((
                format!(
                    "{base} filter {filter} as {}",
                    if who.is_some() { "superuser" } else { "guest" }
                ),
                json!({"status": r.status, "ids": ids}),
            ));
        }
    }
    Ok(steps)
}

#[test]
fn back_relations_expand_as_in_pocketbase() -> Result<()> {
    on_both(scenario)
}
