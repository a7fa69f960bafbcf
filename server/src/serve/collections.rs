//! Collections CRUD for superusers: `/api/collections[/{idOrName}]`.
//! Base and auth collections with text, number, bool, json, date and email
//! fields; the five API rules. Adding fields and changing rules is supported
//! by PATCH; renaming or removing fields is not yet.

use super::TenantReq;
use super::auth::{self, Auth};
use super::errors::{ApiError, ApiResult};
use super::filter::{self, Ctx, Sql};
use super::records::body_json;
use super::schema::{self, Collection, Field, FieldType, Rules};
use super::tenants::on_data;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::Connection;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

const RESERVED: &[&str] = &[
    "id",
    "created",
    "updated",
    "collectionId",
    "collectionName",
    "expand",
    "password",
    "passwordConfirm",
    "tokenKey",
    "email",
    "emailVisibility",
    "verified",
];

fn valid_name(s: &str) -> bool {
    (1..=100).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && s.bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
}

/// Superusers only: 401 for guests, 403 for other auth records.
fn require_superuser(
    t: &super::tenants::Tenant,
    conn: &Connection,
    headers: &HeaderMap,
) -> ApiResult<Auth> {
    match auth::resolve(t, conn, headers)? {
        Some(a) if a.is_superuser() => Ok(a),
        Some(_) => Err(ApiError::forbidden()),
        None => Err(ApiError::unauthorized(
            "The request requires valid record authorization token.",
        )),
    }
}

fn field_err(name: &str, msg: impl Into<String>) -> ApiError {
    ApiError::validation(
        "Failed to create or update the collection.",
        json!({name: {"code": "validation_invalid_value", "message": msg.into()}}),
    )
}

fn parse_fields(v: Option<&Value>, existing: &[Field]) -> ApiResult<Vec<Field>> {
    let Some(v) = v else {
        return Ok(vec![]);
    };
    let arr = v
        .as_array()
        .ok_or_else(|| field_err("fields", "Must be an array."))?;
    let mut out: Vec<Field> = Vec::new();
    for f in arr {
        let name = f["name"].as_str().unwrap_or("");
        // Fields already in the collection (PocketBase clients send the whole
        // list back on update) are kept as they are.
        if existing.iter().any(|e| e.name == name) {
            continue;
        }
        if !valid_name(name) || RESERVED.contains(&name) || out.iter().any(|o| o.name == name) {
            return Err(field_err(
                "fields",
                format!("Invalid or duplicate field name {name:?}."),
            ));
        }
        let kind = match f["type"].as_str().unwrap_or("") {
            "text" => FieldType::Text,
            "number" => FieldType::Number,
            "bool" => FieldType::Bool,
            "json" => FieldType::Json,
            "date" => FieldType::Date,
            "email" => FieldType::Email,
            other => {
                return Err(field_err(
                    "fields",
                    format!(
                        "Field type {other:?} is not supported yet (text, number, bool, json, date, email)."
                    ),
                ));
            }
        };
        out.push(Field {
            id: format!("f{}", &schema::new_id()[..9]),
            name: name.into(),
            kind,
            required: f["required"].as_bool().unwrap_or(false),
            system: false,
            hidden: f["hidden"].as_bool().unwrap_or(false),
            primary_key: false,
        });
    }
    Ok(out)
}

/// Rules from a body: absent keys keep `current`, `null` means superusers only.
fn parse_rules(body: &Map<String, Value>, current: Rules) -> ApiResult<Rules> {
    let get = |key: &str, cur: Option<String>| -> ApiResult<Option<String>> {
        match body.get(key) {
            None => Ok(cur),
            Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(field_err(key, "Must be a string or null.")),
        }
    };
    Ok(Rules {
        list: get("listRule", current.list)?,
        view: get("viewRule", current.view)?,
        create: get("createRule", current.create)?,
        update: get("updateRule", current.update)?,
        delete: get("deleteRule", current.delete)?,
    })
}

/// A rule must parse and name only fields of the collection.
fn check_rules(c: &Collection) -> ApiResult<()> {
    let field = |n: &str| c.filter_kind(n);
    let ctx = Ctx {
        field: &field,
        auth: None,
        now: String::new(),
        today_start: String::new(),
        today_end: String::new(),
    };
    for (key, rule) in [
        ("listRule", &c.rules.list),
        ("viewRule", &c.rules.view),
        ("createRule", &c.rules.create),
        ("updateRule", &c.rules.update),
        ("deleteRule", &c.rules.delete),
    ] {
        if let Some(r) = rule
            && let Some(e) = filter::parse(r).map_err(|e| field_err(key, e.to_string()))?
        {
            filter::compile(&e, &ctx, &mut Sql::default())
                .map_err(|e| field_err(key, e.to_string()))?;
        }
    }
    Ok(())
}

pub async fn list(
    Extension(req): Extension<TenantReq>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    on_data(req, move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let all = schema::all_collections(conn)?;
        let per_page = q
            .get("perPage")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(30)
            .clamp(1, 1000);
        let page = q
            .get("page")
            .and_then(|s| s.parse::<usize>().ok())
            .unwrap_or(1)
            .max(1);
        let total = all.len();
        let items: Vec<Value> = all
            .iter()
            .skip((page - 1).saturating_mul(per_page))
            .take(per_page)
            .map(Collection::to_json)
            .collect();
        Ok(Json(json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": total.div_ceil(per_page),
            "items": items,
        })))
    })
    .await
}

pub async fn view(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let name = p.get("collection").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        require_superuser(t, conn, &headers)?;
        Ok(Json(schema::find_collection(conn, &name)?.to_json()))
    })
    .await
}

pub async fn create(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let body = body_json(body)?;
    on_data(req, move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let name = body.get("name").and_then(Value::as_str).unwrap_or("");
        if !valid_name(name) || name.starts_with('_') {
            return Err(field_err(
                "name",
                "Must be letters, digits and '_', not starting with '_'.",
            ));
        }
        let kind = body.get("type").and_then(Value::as_str).unwrap_or("base");
        if !matches!(kind, "base" | "auth") {
            return Err(field_err(
                "type",
                "Only base and auth collections are supported yet.",
            ));
        }
        let fields = parse_fields(body.get("fields"), &[])?;
        let rules = parse_rules(&body, Rules::default())?;
        let c = Collection::build(name, kind, fields, rules);
        check_rules(&c)?;
        let tx = conn.transaction()?;
        if schema::find_collection(&tx, name).is_ok() {
            return Err(field_err("name", "The collection name must be unique."));
        }
        c.create_table(&tx)?;
        c.insert_meta(&tx)?;
        tx.commit()?;
        Ok(Json(c.to_json()))
    })
    .await
}

pub async fn update(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let name = p.get("collection").cloned().unwrap_or_default();
    let body = body_json(body)?;
    on_data(req, move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let mut c = schema::find_collection(conn, &name)?;
        if body
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| n != c.name)
        {
            return Err(field_err(
                "name",
                "Renaming collections is not supported yet.",
            ));
        }
        let added = parse_fields(body.get("fields"), &c.fields)?;
        c.rules = parse_rules(&body, c.rules.clone())?;
        let tx = conn.transaction()?;
        for f in &added {
            tx.execute_batch(&format!(
                "ALTER TABLE {} ADD COLUMN {}",
                filter::quote_ident(&c.name),
                f.column()
            ))?;
        }
        // Keep created/updated last, as PocketBase lists them.
        let tail: Vec<Field> = c
            .fields
            .iter()
            .filter(|f| f.kind == FieldType::Autodate)
            .cloned()
            .collect();
        c.fields.retain(|f| f.kind != FieldType::Autodate);
        c.fields.extend(added);
        c.fields.extend(tail);
        c.updated = schema::now();
        check_rules(&c)?;
        c.update_meta(&tx)?;
        tx.commit()?;
        Ok(Json(c.to_json()))
    })
    .await
}

pub async fn delete(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = p.get("collection").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        require_superuser(t, conn, &headers)?;
        let c = schema::find_collection(conn, &name)?;
        if c.system {
            return Err(ApiError::bad_request(
                "System collections cannot be deleted.",
            ));
        }
        let tx = conn.transaction()?;
        tx.execute_batch(&format!("DROP TABLE {}", filter::quote_ident(&c.name)))?;
        tx.execute("DELETE FROM _collections WHERE id = ?1", [&c.id])?;
        tx.commit()?;
        Ok(StatusCode::NO_CONTENT.into_response())
    })
    .await
}
