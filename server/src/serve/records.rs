//! Records CRUD: `/api/collections/{c}/records[/{id}]`, with the
//! collection's API rules applied as SQL conditions, PocketBase's list shape
//! and field types.

use super::TenantReq;
use super::auth::{self, Auth};
use super::errors::{ApiError, ApiResult};
use super::filter::{self, Ctx, Resolved, Sql, quote_ident};
use super::names::{RecordNames, Scope};
use super::relations;
use super::schema::{self, Collection, Field, FieldType};
use super::tenants::on_data;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::types::Value as SqlValue;
use rusqlite::{Connection, OptionalExtension};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

pub const DEFAULT_PER_PAGE: i64 = 30;
pub const MAX_PER_PAGE: i64 = 1000;

/// A request body as a JSON object, with PocketBase's errors.
pub fn body_json(body: Result<axum::body::Bytes, BytesRejection>) -> ApiResult<Map<String, Value>> {
    let bytes = body_bytes(body)?;
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(ApiError::bad_request(
            "Failed to load the submitted data due to invalid formatting.",
        )),
    }
}

/// A record body: JSON, or `multipart/form-data` whose text parts are
/// fields and whose `@jsonPayload` part is merged in (as the PocketBase SDKs
/// send it). File parts are refused until file fields exist.
pub fn record_body(
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Map<String, Value>> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return body_json(body);
    }
    let bad =
        || ApiError::bad_request("Failed to load the submitted data due to invalid formatting.");
    let boundary = ct
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty())
        .ok_or_else(bad)?;
    let bytes = body_bytes(body)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad())?;
    let mut out = Map::new();
    for part in text.split(&format!("--{boundary}")).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let part = part.strip_prefix("\r\n").ok_or_else(bad)?;
        let (head, value) = part.split_once("\r\n\r\n").ok_or_else(bad)?;
        let value = value.strip_suffix("\r\n").unwrap_or(value);
        let disposition = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition:"))
            .ok_or_else(bad)?;
        if disposition.contains("filename=") {
            return Err(ApiError::bad_request("File fields are not supported yet."));
        }
        let name = disposition
            .split(';')
            .find_map(|p| p.trim().strip_prefix("name="))
            .map(|n| n.trim_matches('"'))
            .ok_or_else(bad)?;
        if name == "@jsonPayload" {
            match serde_json::from_str::<Value>(value) {
                Ok(Value::Object(m)) => out.extend(m),
                _ => return Err(bad()),
            }
        } else {
            out.insert(name.to_string(), Value::String(value.to_string()));
        }
    }
    Ok(out)
}

fn body_bytes(body: Result<axum::body::Bytes, BytesRejection>) -> ApiResult<axum::body::Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
        } else {
            ApiError::bad_request("Failed to read the request body.")
        }
    })
}

/// The columns a record is read with, in field order.
fn select_cols(c: &Collection) -> String {
    c.fields
        .iter()
        .map(|f| quote_ident(&f.name))
        .collect::<Vec<_>>()
        .join(", ")
}

fn read_value(f: &Field, v: SqlValue) -> Value {
    let kind = f.kind;
    if f.multiple() {
        // A json array of strings; anything else reads as no values.
        return match v {
            SqlValue::Text(t) => {
                serde_json::from_str::<Vec<String>>(&t).map_or(json!([]), |v| json!(v))
            }
            _ => json!([]),
        };
    }
    match (kind, v) {
        (FieldType::Bool, SqlValue::Integer(i)) => Value::Bool(i != 0),
        (FieldType::Bool, SqlValue::Text(t)) => Value::Bool(t == "true" || t == "1"),
        (FieldType::Number, SqlValue::Integer(i)) => json!(i),
        (FieldType::Number, SqlValue::Real(f)) => json!(f),
        (FieldType::Number, SqlValue::Text(t)) => t.parse::<f64>().map_or(json!(0), |f| json!(f)),
        (FieldType::Json, SqlValue::Text(t)) => {
            serde_json::from_str(&t).unwrap_or(Value::String(t))
        }
        (_, SqlValue::Null) => match kind {
            FieldType::Json => Value::Null,
            FieldType::Bool => Value::Bool(false),
            FieldType::Number => json!(0),
            _ => Value::String(String::new()),
        },
        (_, SqlValue::Text(t)) => Value::String(t),
        (_, SqlValue::Integer(i)) => Value::String(i.to_string()),
        (_, SqlValue::Real(f)) => Value::String(f.to_string()),
        (_, SqlValue::Blob(_)) => Value::Null,
    }
}

fn row_to_record(c: &Collection, r: &rusqlite::Row) -> rusqlite::Result<Map<String, Value>> {
    let mut m = Map::new();
    m.insert("collectionId".into(), c.id.clone().into());
    m.insert("collectionName".into(), c.name.clone().into());
    for (i, f) in c.fields.iter().enumerate() {
        m.insert(f.name.clone(), read_value(f, r.get::<_, SqlValue>(i)?));
    }
    Ok(m)
}

/// One record with all fields (hidden ones included), or None.
pub fn fetch(conn: &Connection, c: &Collection, id: &str) -> ApiResult<Option<Map<String, Value>>> {
    Ok(conn
        .query_row(
            &format!(
                "SELECT {} FROM {} WHERE id = ?1",
                select_cols(c),
                quote_ident(&c.name)
            ),
            [id],
            |r| row_to_record(c, r),
        )
        .optional()?)
}

/// What a client may see: no hidden fields; an auth record's email only for
/// itself, superusers, or when `emailVisibility` is on.
pub fn public(
    c: &Collection,
    mut rec: Map<String, Value>,
    who: Option<&Auth>,
    owner: bool,
) -> Value {
    for f in &c.fields {
        if f.hidden {
            rec.remove(&f.name);
        }
    }
    if c.is_auth() {
        let visible = owner
            || rec.get("emailVisibility") == Some(&Value::Bool(true))
            || who.is_some_and(|a| {
                a.is_superuser()
                    || (a.collection_id == c.id
                        && rec.get("id").and_then(Value::as_str) == Some(a.id()))
            });
        if !visible {
            rec.remove("email");
        }
    }
    Value::Object(rec)
}

/// `@request.*` as rules and filters see it. Header names are lower-case
/// with `-` as `_`, as in PocketBase.
pub fn request_info(
    method: &str,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    body: &Map<String, Value>,
    who: Option<&Auth>,
) -> Value {
    let headers: Map<String, Value> = headers
        .iter()
        .filter_map(|(k, v)| {
            let v = v.to_str().ok()?;
            Some((k.as_str().to_ascii_lowercase().replace('-', "_"), v.into()))
        })
        .collect();
    json!({
        "auth": who.map(|a| Value::Object(a.record.clone())),
        "body": body,
        "query": query,
        "headers": headers,
        "method": method,
        "context": "default",
    })
}

/// Compile `filter` for records of `c` into `out` (appended with AND).
fn and_filter(
    conn: &Connection,
    c: &Collection,
    filter: &str,
    scope: Scope,
    request: &Value,
    out: &mut Sql,
) -> ApiResult<()> {
    let Some(expr) = filter::parse(filter)? else {
        return Ok(());
    };
    let names = RecordNames::new(conn, c, scope);
    let (today_start, today_end) = schema::today_bounds();
    let ctx = Ctx {
        names: &names,
        request,
        now: schema::now(),
        today_start,
        today_end,
    };
    out.text.push_str(" AND ");
    filter::compile(&expr, &ctx, out)?;
    Ok(())
}

/// The SQL condition a rule adds for this caller (appended with AND).
/// `null` rules are for superusers only (403 for anyone else).
fn rule_sql(
    conn: &Connection,
    c: &Collection,
    rule: &Option<String>,
    who: Option<&Auth>,
    request: &Value,
    out: &mut Sql,
) -> ApiResult<()> {
    if who.is_some_and(Auth::is_superuser) {
        return Ok(());
    }
    let Some(rule) = rule else {
        return Err(ApiError::forbidden());
    };
    and_filter(conn, c, rule, Scope::Trusted, request, out)
}

/// Check that a rule compiles against the collection (on collection save).
pub fn check_rule(conn: &Connection, c: &Collection, rule: &str) -> ApiResult<()> {
    let request = request_info("GET", &HeaderMap::new(), &HashMap::new(), &Map::new(), None);
    and_filter(conn, c, rule, Scope::Trusted, &request, &mut Sql::default())
}

/// How far a caller's own filter and sort may reach (see `names`).
fn client_scope(who: Option<&Auth>) -> Scope {
    if who.is_some_and(Auth::is_superuser) {
        Scope::Trusted
    } else {
        Scope::Client
    }
}

fn sort_sql(conn: &Connection, c: &Collection, sort: &str, scope: Scope) -> ApiResult<String> {
    let names = RecordNames::new(conn, c, scope);
    let mut parts = Vec::new();
    for s in sort.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        if s == "@random" {
            parts.push("RANDOM()".to_string());
            continue;
        }
        let (name, dir) = match s.strip_prefix('-') {
            Some(n) => (n, "DESC"),
            None => (s.strip_prefix('+').unwrap_or(s), "ASC"),
        };
        match filter::Names::field(&names, name) {
            Some(Resolved::One(sql) | Resolved::Json(sql)) => parts.push(format!("{sql} {dir}")),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid sort parameter: unknown or multi-valued field `{name}`."
                )));
            }
        }
    }
    // rowid keeps pages stable when sort keys tie.
    parts.push("rowid ASC".into());
    Ok(parts.join(", "))
}

fn collection_name(p: &HashMap<String, String>) -> String {
    p.get("collection").cloned().unwrap_or_default()
}

/// Keep only the `fields` a client asked for (top-level names; `*` = all).
fn pick_fields(v: Value, fields: Option<&str>) -> Value {
    let (Some(fields), Value::Object(m)) = (fields, &v) else {
        return v;
    };
    let want: Vec<&str> = fields
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .collect();
    if want.is_empty() || want.contains(&"*") {
        return v;
    }
    // `expand.author.name` keeps the whole `expand` object.
    let keep = |k: &str| {
        want.contains(&k) || (k == "expand" && want.iter().any(|w| w.starts_with("expand.")))
    };
    Value::Object(
        m.iter()
            .filter(|(k, _)| keep(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    )
}

fn int_param(q: &HashMap<String, String>, name: &str, default: i64) -> ApiResult<i64> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid `{name}` parameter."))),
    }
}

/// What a handler knows of its call: the caller and `@request.*`.
struct Call {
    who: Option<Auth>,
    request: Value,
}

impl Call {
    fn new(
        t: &super::tenants::Tenant,
        conn: &Connection,
        method: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        body: &Map<String, Value>,
    ) -> ApiResult<Call> {
        let who = auth::resolve(t, conn, headers)?;
        let request = request_info(method, headers, query, body, who.as_ref());
        Ok(Call { who, request })
    }
}

/// Records as a client sees them: expanded as `expand` asks, then without
/// hidden fields, then cut to `fields`.
fn respond(
    conn: &Connection,
    c: &Collection,
    mut recs: Vec<Map<String, Value>>,
    call: &Call,
    q: &HashMap<String, String>,
) -> ApiResult<Vec<Value>> {
    if let Some(spec) = q.get("expand").filter(|s| !s.trim().is_empty()) {
        let fetch = |conn: &Connection, c: &Collection, ids: &[String]| {
            let mut w = Sql {
                text: format!("id IN ({})", vec!["?"; ids.len()].join(", ")),
                params: ids.iter().map(|i| SqlValue::Text(i.clone())).collect(),
            };
            // Related records show only where their view rule lets the caller.
            match rule_sql(
                conn,
                c,
                &c.rules.view,
                call.who.as_ref(),
                &call.request,
                &mut w,
            ) {
                Ok(()) => select(conn, c, &w, ""),
                Err(e) if e.status() == StatusCode::FORBIDDEN => Ok(vec![]),
                Err(e) => Err(e),
            }
        };
        let show = |c: &Collection, r| public(c, r, call.who.as_ref(), false);
        relations::expand(conn, c, &mut recs, spec, &fetch, &show)?;
    }
    Ok(recs
        .into_iter()
        .map(|r| {
            pick_fields(
                public(c, r, call.who.as_ref(), false),
                q.get("fields").map(String::as_str),
            )
        })
        .collect())
}

/// `SELECT` the records of `c` matching `w`, with `tail` (ORDER/LIMIT) after.
fn select(
    conn: &Connection,
    c: &Collection,
    w: &Sql,
    tail: &str,
) -> ApiResult<Vec<Map<String, Value>>> {
    // Cached: the same few shapes serve every request of a collection.
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {} FROM {} WHERE {}{tail}",
        select_cols(c),
        quote_ident(&c.name),
        w.text
    ))?;
    let rows = stmt.query_map(rusqlite::params_from_iter(w.params.iter()), |r| {
        row_to_record(c, r)
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub async fn list(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let name = collection_name(&p);
    let page = int_param(&q, "page", 1)?.max(1);
    let per_page = int_param(&q, "perPage", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    let skip_total = matches!(q.get("skipTotal").map(String::as_str), Some("1" | "true"));
    on_data(req, move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Call::new(t, conn, "GET", &headers, &q, &Map::new())?;
        let mut w = Sql {
            text: "1".into(),
            params: vec![],
        };
        rule_sql(
            conn,
            &c,
            &c.rules.list,
            call.who.as_ref(),
            &call.request,
            &mut w,
        )?;
        let scope = client_scope(call.who.as_ref());
        and_filter(
            conn,
            &c,
            q.get("filter").map_or("", String::as_str),
            scope,
            &call.request,
            &mut w,
        )?;
        let order = sort_sql(conn, &c, q.get("sort").map_or("", String::as_str), scope)?;
        let (total, pages) = if skip_total {
            (-1, -1)
        } else {
            let n: i64 = conn
                .prepare_cached(&format!(
                    "SELECT COUNT(*) FROM {} WHERE {}",
                    quote_ident(&c.name),
                    w.text
                ))?
                .query_row(rusqlite::params_from_iter(w.params.iter()), |r| r.get(0))?;
            (n, (n + per_page - 1) / per_page)
        };
        w.params.push(SqlValue::Integer(per_page));
        w.params
            .push(SqlValue::Integer((page - 1).saturating_mul(per_page)));
        let recs = select(conn, &c, &w, &format!(" ORDER BY {order} LIMIT ? OFFSET ?"))?;
        let items = respond(conn, &c, recs, &call, &q)?;
        Ok(Json(json!({
            "page": page,
            "perPage": per_page,
            "totalItems": total,
            "totalPages": pages,
            "items": items,
        })))
    })
    .await
}

/// The record `id` if the rule lets the caller at it; 404 otherwise.
fn find_allowed(
    conn: &Connection,
    c: &Collection,
    rule: &Option<String>,
    call: &Call,
    id: &str,
) -> ApiResult<Map<String, Value>> {
    let mut w = Sql {
        text: "id = ?".into(),
        params: vec![SqlValue::Text(id.into())],
    };
    rule_sql(conn, c, rule, call.who.as_ref(), &call.request, &mut w)?;
    select(conn, c, &w, "")?
        .pop()
        .ok_or_else(ApiError::not_found)
}

/// One record as the response body.
fn respond_one(
    conn: &Connection,
    c: &Collection,
    rec: Map<String, Value>,
    call: &Call,
    q: &HashMap<String, String>,
) -> ApiResult<Json<Value>> {
    let mut v = respond(conn, c, vec![rec], call, q)?;
    Ok(Json(v.pop().unwrap_or(Value::Null)))
}

pub async fn view(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    let name = collection_name(&p);
    let id = p.get("id").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Call::new(t, conn, "GET", &headers, &q, &Map::new())?;
        let rec = find_allowed(conn, &c, &c.rules.view, &call, &id)?;
        respond_one(conn, &c, rec, &call, &q)
    })
    .await
}

fn invalid(msg: &str) -> Value {
    json!({"code": "validation_invalid_value", "message": msg})
}

/// Validate and convert submitted values to columns. `create` also checks
/// required fields and fills defaults.
fn write_values(
    conn: &Connection,
    c: &Collection,
    body: &Map<String, Value>,
    create: bool,
) -> ApiResult<Vec<(String, SqlValue)>> {
    let mut out = Vec::new();
    let mut errors = Map::new();
    let err = |code: &str, msg: &str| json!({"code": code, "message": msg});
    for f in &c.fields {
        if matches!(f.name.as_str(), "id" | "tokenKey") || f.kind == FieldType::Autodate {
            continue;
        }
        let Some(v) = body.get(&f.name) else {
            if create && f.required && f.kind != FieldType::Password {
                errors.insert(
                    f.name.clone(),
                    err("validation_required", "Cannot be blank."),
                );
            }
            continue;
        };
        let value = match (f.kind, v) {
            (FieldType::Select | FieldType::Relation, v) => match relations::choices(conn, f, v) {
                Ok(value) => value,
                Err(e) => {
                    errors.insert(f.name.clone(), e);
                    continue;
                }
            },
            (FieldType::Text | FieldType::Date, Value::String(s)) => SqlValue::Text(s.clone()),
            (FieldType::Text, Value::Number(n)) => SqlValue::Text(n.to_string()),
            (FieldType::Text | FieldType::Date | FieldType::Email, Value::Null) => {
                SqlValue::Text(String::new())
            }
            (FieldType::Email, Value::String(s))
                if s.is_empty() || (s.contains('@') && !s.contains(char::is_whitespace)) =>
            {
                SqlValue::Text(s.clone())
            }
            (FieldType::Number, Value::Number(n)) => filter::json_to_sql(&Value::Number(n.clone())),
            (FieldType::Number, Value::String(s)) if s.trim().parse::<f64>().is_ok() => {
                filter::json_to_sql(&json!(s.trim().parse::<f64>().unwrap_or(0.0)))
            }
            (FieldType::Number, Value::Null) => SqlValue::Integer(0),
            (FieldType::Bool, Value::Bool(b)) => SqlValue::Integer(*b as i64),
            (FieldType::Bool, Value::String(s))
                if matches!(s.as_str(), "true" | "false" | "1" | "0") =>
            {
                SqlValue::Integer(matches!(s.as_str(), "true" | "1") as i64)
            }
            (FieldType::Bool, Value::Null) => SqlValue::Integer(0),
            (FieldType::Json, Value::Null) => SqlValue::Null,
            (FieldType::Json, v) => SqlValue::Text(v.to_string()),
            (FieldType::Password, Value::String(s)) if s.chars().count() >= 8 => {
                if body.get("passwordConfirm").and_then(Value::as_str) != Some(s.as_str()) {
                    errors.insert(
                        "passwordConfirm".into(),
                        err("validation_values_mismatch", "Values don't match."),
                    );
                    continue;
                }
                let h = bcrypt::hash(s, bcrypt::DEFAULT_COST)
                    .map_err(|e| ApiError::internal(format!("bcrypt: {e}")))?;
                SqlValue::Text(h)
            }
            (FieldType::Password, _) => {
                errors.insert(
                    f.name.clone(),
                    err(
                        "validation_length_out_of_range",
                        "Must be at least 8 characters.",
                    ),
                );
                continue;
            }
            _ => {
                errors.insert(f.name.clone(), invalid("Invalid value."));
                continue;
            }
        };
        let blank = match &value {
            SqlValue::Null => true,
            SqlValue::Text(s) => s.is_empty() || (f.multiple() && s == "[]"),
            SqlValue::Integer(i) => *i == 0,
            SqlValue::Real(r) => *r == 0.0,
            SqlValue::Blob(b) => b.is_empty(),
        };
        if f.required && blank {
            errors.insert(
                f.name.clone(),
                err("validation_required", "Cannot be blank."),
            );
            continue;
        }
        out.push((f.name.clone(), value));
    }
    if create && c.is_auth() && !body.contains_key("password") {
        errors.insert(
            "password".into(),
            err("validation_required", "Cannot be blank."),
        );
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(failed(create), Value::Object(errors)));
    }
    Ok(out)
}

fn failed(create: bool) -> &'static str {
    if create {
        "Failed to create record."
    } else {
        "Failed to update record."
    }
}

/// A write that broke a unique index: which fields, in PocketBase's shape.
fn not_unique(e: rusqlite::Error, create: bool) -> ApiError {
    if e.sqlite_error_code() != Some(rusqlite::ErrorCode::ConstraintViolation) {
        return e.into();
    }
    // SQLite names the columns: "UNIQUE constraint failed: posts.slug, posts.x".
    let msg = e.to_string();
    let cols = msg.split_once("failed: ").map_or("", |(_, c)| c);
    let mut errors = Map::new();
    for col in cols.split(',').filter_map(|c| c.trim().rsplit('.').next()) {
        errors.insert(
            col.to_string(),
            json!({"code": "validation_not_unique", "message": "Value must be unique."}),
        );
    }
    if errors.is_empty() {
        errors.insert(
            "id".into(),
            json!({"code": "validation_not_unique", "message": "Value must be unique."}),
        );
    }
    ApiError::validation(failed(create), Value::Object(errors))
}

/// A write's answer, with where it stands in `data.db`'s history:
/// `Strata-Txid` is the transaction it committed as, `Strata-Replicated` the
/// replicated watermark when it returned. Everything up to the watermark is
/// in the bucket and survives the loss of this node.
/// The write has committed by now, so failing to read the watermark only
/// leaves the headers out.
fn with_watermark(conn: &Connection, body: Json<Value>) -> ApiResult<Response> {
    let mut resp = body.into_response();
    for (header, pragma) in [
        (TXID_HEADER, "strata_committed"),
        (REPLICATED_HEADER, "strata_replicated"),
    ] {
        match conn.query_row(&format!("PRAGMA {pragma}"), [], |r| r.get::<_, String>(0)) {
            Ok(v) => {
                if let Ok(v) = axum::http::HeaderValue::from_str(&v) {
                    resp.headers_mut().insert(header, v);
                }
            }
            Err(e) => tracing::warn!(error = %e, pragma, "watermark not readable"),
        }
    }
    Ok(resp)
}

pub const TXID_HEADER: &str = "strata-txid";
pub const REPLICATED_HEADER: &str = "strata-replicated";

pub async fn create(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let name = collection_name(&p);
    let body = record_body(&headers, body)?;
    on_data(req, move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Call::new(t, conn, "POST", &headers, &q, &body)?;
        if call.who.as_ref().is_none_or(|a| !a.is_superuser()) && c.rules.create.is_none() {
            return Err(ApiError::forbidden());
        }
        let id = match body.get("id") {
            None => schema::new_id(),
            Some(Value::String(s)) if schema::valid_id(s) => s.clone(),
            Some(_) => {
                return Err(ApiError::validation(
                    "Failed to create record.",
                    json!({"id": {"code": "validation_invalid_id", "message": "Must be 15 characters of a-z and 0-9."}}),
                ));
            }
        };
        let mut cols = write_values(conn, &c, &body, true)?;
        let t = schema::now();
        cols.push(("id".into(), SqlValue::Text(id.clone())));
        cols.push(("created".into(), SqlValue::Text(t.clone())));
        cols.push(("updated".into(), SqlValue::Text(t)));
        if c.is_auth() {
            cols.push(("tokenKey".into(), SqlValue::Text(schema::new_secret())));
        }
        let tx = conn.transaction()?;
        let names: Vec<String> = cols.iter().map(|(n, _)| quote_ident(n)).collect();
        let marks = vec!["?"; cols.len()].join(", ");
        tx.prepare_cached(&format!(
            "INSERT INTO {} ({}) VALUES ({marks})",
            quote_ident(&c.name),
            names.join(", ")
        ))?
        .execute(rusqlite::params_from_iter(cols.iter().map(|(_, v)| v)))
        .map_err(|e| not_unique(e, true))?;
        // The create rule is checked against the new row inside the
        // transaction; a row the rule rejects is rolled back.
        let rec = match find_allowed(&tx, &c, &c.rules.create, &call, &id) {
            Ok(r) => r,
            Err(e) if e.status() == StatusCode::NOT_FOUND => {
                return Err(ApiError::bad_request("Failed to create record."));
            }
            Err(e) => return Err(e),
        };
        let out = respond_one(&tx, &c, rec, &call, &q)?;
        tx.commit()?;
        with_watermark(conn, out)
    })
    .await
}

pub async fn update(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let name = collection_name(&p);
    let id = p.get("id").cloned().unwrap_or_default();
    let body = record_body(&headers, body)?;
    on_data(req, move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Call::new(t, conn, "PATCH", &headers, &q, &body)?;
        find_allowed(conn, &c, &c.rules.update, &call, &id)?;
        let mut cols = write_values(conn, &c, &body, false)?;
        cols.push(("updated".into(), SqlValue::Text(schema::now())));
        let sets: Vec<String> = cols
            .iter()
            .map(|(n, _)| format!("{} = ?", quote_ident(n)))
            .collect();
        let mut params: Vec<SqlValue> = cols.into_iter().map(|(_, v)| v).collect();
        params.push(SqlValue::Text(id.clone()));
        conn.execute(
            &format!(
                "UPDATE {} SET {} WHERE id = ?",
                quote_ident(&c.name),
                sets.join(", ")
            ),
            rusqlite::params_from_iter(params.iter()),
        )
        .map_err(|e| not_unique(e, false))?;
        let rec = fetch(conn, &c, &id)?.ok_or_else(ApiError::not_found)?;
        let out = respond_one(conn, &c, rec, &call, &q)?;
        with_watermark(conn, out)
    })
    .await
}

pub async fn delete(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let name = collection_name(&p);
    let id = p.get("id").cloned().unwrap_or_default();
    on_data(req, move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Call::new(t, conn, "DELETE", &headers, &q, &Map::new())?;
        find_allowed(conn, &c, &c.rules.delete, &call, &id)?;
        // References to the record go in the same transaction: cascaded,
        // cleared, or the delete is refused.
        let tx = conn.transaction()?;
        relations::delete_with_references(&tx, &c, &id)?;
        tx.commit()?;
        let mut resp = with_watermark(conn, Json(Value::Null))?;
        *resp.status_mut() = StatusCode::NO_CONTENT;
        *resp.body_mut() = axum::body::Body::empty();
        resp.headers_mut().remove(axum::http::header::CONTENT_TYPE);
        Ok(resp)
    })
    .await
}
