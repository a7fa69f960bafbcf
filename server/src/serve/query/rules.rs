//! A request's rules and its own filter and sort, as SQL: the caller and
//! `@request.*` ([`Caller`]), the collection's API rules as conditions,
//! and the `SELECT` of the records they allow.

use super::filter::{self, Ctx, Resolved, Sql, quote_ident};
use super::names::{RecordNames, Scope};
use crate::serve::auth::{self, Auth};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::records::output::{row_to_record, select_cols};
use crate::serve::schema::{self, Collection};
use crate::serve::tenants::Tenant;
use axum::http::HeaderMap;
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// Who makes a request, and `@request.*` as its rules see it.
pub struct Caller {
    pub who: Option<Auth>,
    pub request: Value,
}

impl Caller {
    pub fn new(
        t: &Tenant,
        conn: &Connection,
        method: &str,
        headers: &HeaderMap,
        query: &HashMap<String, String>,
        body: &Map<String, Value>,
    ) -> ApiResult<Caller> {
        let who = auth::resolve(t, conn, headers)?;
        let request = request_info(method, headers, query, body, who.as_ref());
        Ok(Caller { who, request })
    }
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
pub fn and_filter(
    conn: &Connection,
    c: &Collection,
    filter: &str,
    scope: Scope,
    request: &Value,
    out: &mut Sql,
) -> ApiResult<()> {
    and_filter_with(&RecordNames::new(conn, c, scope), filter, request, out)
}

/// `AND <filter>` over any [`filter::Names`] (records, or the request log).
pub fn and_filter_with(
    names: &dyn filter::Names,
    filter: &str,
    request: &Value,
    out: &mut Sql,
) -> ApiResult<()> {
    let Some(expr) = filter::parse(filter)? else {
        return Ok(());
    };
    let (today_start, today_end) = schema::today_bounds();
    let ctx = Ctx {
        names,
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
pub fn rule_sql(
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
pub fn client_scope(who: Option<&Auth>) -> Scope {
    if who.is_some_and(Auth::is_superuser) {
        Scope::Trusted
    } else {
        Scope::Client
    }
}

pub fn sort_sql(conn: &Connection, c: &Collection, sort: &str, scope: Scope) -> ApiResult<String> {
    sort_with(&RecordNames::new(conn, c, scope), sort)
}

/// `ORDER BY` terms of a `sort` over any [`filter::Names`], ending in the
/// row's key.
pub fn sort_with(names: &dyn filter::Names, sort: &str) -> ApiResult<String> {
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
        match names.field(name) {
            Some(Resolved::One(sql) | Resolved::Json(sql)) => parts.push(format!("{sql} {dir}")),
            _ => {
                return Err(ApiError::bad_request(format!(
                    "Invalid sort parameter: unknown or multi-valued field `{name}`."
                )));
            }
        }
    }
    // The row's key keeps pages stable when sort keys tie (`_rowid_`: a
    // field may be named `rowid`, never `_rowid_`).
    parts.push("_rowid_ ASC".into());
    Ok(parts.join(", "))
}

/// `SELECT` the records of `c` matching `w`, with `tail` (ORDER/LIMIT) after.
pub fn select(
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

/// The record `id` if the rule lets the caller at it; 404 otherwise.
pub fn find_allowed(
    conn: &Connection,
    c: &Collection,
    rule: &Option<String>,
    call: &Caller,
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
