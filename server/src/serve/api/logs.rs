//! `/api/logs` (superusers): the request log in `auxiliary.db` as
//! PocketBase serves it: a paged list with `filter` and `sort` over the
//! log's columns and `data.*`, one entry by id, and `/api/logs/stats`,
//! the count per hour. Rows waiting in memory are written first, so a
//! request shows up in the log of the next one.

use super::TenantReq;
use crate::serve::auth::require_superuser;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::query::filter::Sql;
use crate::serve::query::logs::LogNames;
use crate::serve::query::rules::{and_filter_with, sort_with};
use axum::extract::{Path, Query};
use axum::http::HeaderMap;
use axum::{Extension, Json};
use rusqlite::{Connection, Row};
use serde_json::{Value, json};
use std::collections::HashMap;

const DEFAULT_PER_PAGE: i64 = 30;
const MAX_PER_PAGE: i64 = 500;

async fn superuser(req: &TenantReq, headers: HeaderMap) -> ApiResult<()> {
    req.read(move |t, conn| require_superuser(t, conn, &headers).map(drop))
        .await
}

fn param(q: &HashMap<String, String>, name: &str, default: i64) -> ApiResult<i64> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid `{name}` parameter."))),
    }
}

/// The `WHERE` of a request's `filter` (`1` for none).
fn condition(q: &HashMap<String, String>) -> ApiResult<Sql> {
    let mut w = Sql {
        text: "1".into(),
        params: vec![],
    };
    if let Some(f) = q.get("filter") {
        and_filter_with(&LogNames, f, &Value::Null, &mut w)?;
    }
    Ok(w)
}

fn entry(r: &Row) -> rusqlite::Result<Value> {
    let data: String = r.get(3)?;
    Ok(json!({
        "id": r.get::<_, String>(0)?,
        "created": r.get::<_, String>(1)?,
        "level": r.get::<_, i64>(2)?,
        "data": serde_json::from_str::<Value>(&data).unwrap_or(Value::Null),
        "message": r.get::<_, String>(4)?,
    }))
}

const COLS: &str = "id, created, level, data, message";

fn list_in(conn: &Connection, q: &HashMap<String, String>) -> ApiResult<Value> {
    let page = param(q, "page", 1)?.max(1);
    let per_page = param(q, "perPage", DEFAULT_PER_PAGE)?.clamp(1, MAX_PER_PAGE);
    let skip_total = matches!(q.get("skipTotal").map(String::as_str), Some("1" | "true"));
    let w = condition(q)?;
    let sort = q
        .get("sort")
        .map(String::as_str)
        .filter(|s| !s.trim().is_empty())
        .unwrap_or("-created");
    let order = sort_with(&LogNames, sort)?;
    let mut params = w.params.clone();
    params.push(per_page.into());
    params.push(((page - 1).saturating_mul(per_page)).into());
    let items = conn
        .prepare(&format!(
            "SELECT {COLS} FROM _logs WHERE {} ORDER BY {order} LIMIT ? OFFSET ?",
            w.text
        ))?
        .query_map(rusqlite::params_from_iter(params.iter()), entry)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let (total, pages) = if skip_total {
        (-1, -1)
    } else {
        let n: i64 = conn.query_row(
            &format!("SELECT count(*) FROM _logs WHERE {}", w.text),
            rusqlite::params_from_iter(w.params.iter()),
            |r| r.get(0),
        )?;
        (n, (n + per_page - 1) / per_page)
    };
    Ok(
        json!({"page": page, "perPage": per_page, "totalItems": total, "totalPages": pages, "items": items}),
    )
}

pub async fn list(
    Extension(req): Extension<TenantReq>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    superuser(&req, headers).await?;
    req.read_logs(move |conn| list_in(conn, &q)).await.map(Json)
}

pub async fn view(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    superuser(&req, headers).await?;
    let id = p.get("id").cloned().unwrap_or_default();
    req.read_logs(move |conn| {
        use rusqlite::OptionalExtension;
        conn.query_row(
            &format!("SELECT {COLS} FROM _logs WHERE id = ?1"),
            [&id],
            entry,
        )
        .optional()?
        .ok_or_else(ApiError::not_found)
    })
    .await
    .map(Json)
}

pub async fn stats(
    Extension(req): Extension<TenantReq>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    superuser(&req, headers).await?;
    req.read_logs(move |conn| {
        let w = condition(&q)?;
        // `created` is `YYYY-MM-DD HH:MM:SS.mmmZ`: its hour is its first 13.
        let rows = conn
            .prepare(&format!(
                "SELECT substr(created, 1, 13) || ':00:00.000Z' AS date, count(*) FROM _logs \
                 WHERE {} GROUP BY date ORDER BY date",
                w.text
            ))?
            .query_map(rusqlite::params_from_iter(w.params.iter()), |r| {
                Ok(json!({"date": r.get::<_, String>(0)?, "total": r.get::<_, i64>(1)?}))
            })?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(Value::Array(rows))
    })
    .await
    .map(Json)
}
