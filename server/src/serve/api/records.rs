//! Records CRUD: `/api/collections/{c}/records[/{id}]`, with the
//! collection's API rules applied as SQL conditions, PocketBase's list shape
//! and field types. Reads run on a reader connection, writes in the
//! writer's shared transaction; a password is hashed before the write.

use super::TenantReq;
use super::body::{RecordBody, record_body};
use crate::serve::auth::password;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::TenantFiles;
use crate::serve::files::upload::{self, FileWrite, Upload};
use crate::serve::query::filter::{Sql, quote_ident};
use crate::serve::query::relations;
use crate::serve::query::rules::{
    Caller, and_filter, client_scope, find_allowed, rule_sql, select, sort_sql,
};
use crate::serve::realtime::{self, Action, Change};
use crate::serve::records::auth_fields::{self, OldPassword};
use crate::serve::records::fields::Fields;
use crate::serve::records::output::{fetch, public};
use crate::serve::records::values::{Write, not_unique, password_to_hash, write_values};
use crate::serve::schema::{self, Collection};
use crate::serve::tenants::{Commit, Tenant};
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use rusqlite::Connection;
use rusqlite::types::Value as SqlValue;
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::sync::Arc;

pub const DEFAULT_PER_PAGE: i64 = 30;
pub const MAX_PER_PAGE: i64 = 1000;

fn int_param(q: &HashMap<String, String>, name: &str, default: i64) -> ApiResult<i64> {
    match q.get(name).map(|s| s.trim()).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => s
            .parse()
            .map_err(|_| ApiError::bad_request(format!("Invalid `{name}` parameter."))),
    }
}

fn collection_name(p: &HashMap<String, String>) -> String {
    p.get("collection").cloned().unwrap_or_default()
}

/// Records as a client sees them: expanded as `expand` asks, then without
/// hidden fields, then cut to `fields`.
pub(crate) fn respond(
    conn: &Connection,
    c: &Collection,
    mut recs: Vec<Map<String, Value>>,
    call: &Caller,
    q: &HashMap<String, String>,
) -> ApiResult<Vec<Value>> {
    let fields = q
        .get("fields")
        .map(|f| Fields::parse(f))
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("Invalid `fields` parameter: {e}.")))?;
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
            let mut v = public(c, r, call.who.as_ref(), false);
            if let Some(f) = &fields {
                f.pick(&mut v);
            }
            v
        })
        .collect())
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
    req.read(move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Caller::new(t, conn, "GET", &headers, &q, &Map::new())?;
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

/// One record as the response body.
fn respond_one(
    conn: &Connection,
    c: &Collection,
    rec: Map<String, Value>,
    call: &Caller,
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
    req.read(move |t, conn| {
        let c = schema::find_collection(conn, &name)?;
        let call = Caller::new(t, conn, "GET", &headers, &q, &Map::new())?;
        let rec = find_allowed(conn, &c, &c.rules.view, &call, &id)?;
        respond_one(conn, &c, rec, &call, &q)
    })
    .await
}

/// A write's answer, with where it stands in `data.db`'s history:
/// `Strata-Txid` is the transaction it committed as (shared with the writes
/// committed with it), `Strata-Replicated` the replicated watermark when it
/// returned. Everything up to the watermark is in the bucket and survives
/// the loss of this node.
fn with_watermark(mut resp: Response, commit: Commit) -> Response {
    for (header, v) in [
        (TXID_HEADER, commit.txid),
        (REPLICATED_HEADER, commit.replicated),
    ] {
        resp.headers_mut().insert(header, HeaderValue::from(v));
    }
    resp
}

pub const TXID_HEADER: &str = "strata-txid";
pub const REPLICATED_HEADER: &str = "strata-replicated";

/// The bcrypt hash of the body's password, if it is one to store: made
/// before the write job, so no connection waits for it.
async fn hash_password(body: &Map<String, Value>) -> ApiResult<Option<String>> {
    match password_to_hash(body) {
        Some(p) => Ok(Some(password::hash(p).await?)),
        None => Ok(None),
    }
}

/// The body's `oldPassword` checked against record `id`'s stored hash,
/// before the write job (see [`OldPassword`]).
async fn check_old_password(
    req: &TenantReq,
    name: &str,
    id: &str,
    body: &Map<String, Value>,
) -> ApiResult<Option<OldPassword>> {
    let Some(given) = auth_fields::old_password(body) else {
        return Ok(None);
    };
    let (name, id) = (name.to_string(), id.to_string());
    let stored = req
        .read(move |_, conn| {
            let c = schema::find_collection(conn, &name)?;
            auth_fields::stored_hash(conn, &c, &id)
        })
        .await?;
    let Some(hash) = stored else {
        return Ok(None);
    };
    let matches = password::verify(given, Some(hash.clone())).await?;
    Ok(Some(OldPassword { hash, matches }))
}

/// What a write needs that is not the request itself, made before the
/// write job so that no connection waits for it: the new password's hash,
/// the old password's check, and the uploads already put in the bucket
/// (with the id of the record they were put for, on a create).
#[derive(Default)]
pub(crate) struct Prepared {
    pub hash: Option<String>,
    pub old: Option<OldPassword>,
    pub files: FileWrite,
    pub id: Option<String>,
}

impl Prepared {
    /// bcrypt work for a create (`id` `None`) or an update of record `id`.
    pub(crate) async fn for_write(
        req: &TenantReq,
        name: &str,
        id: Option<&str>,
        body: &Map<String, Value>,
    ) -> ApiResult<Prepared> {
        let hash = hash_password(body).await?;
        let old = match id {
            Some(id) => check_old_password(req, name, id, body).await?,
            None => None,
        };
        Ok(Prepared {
            hash,
            old,
            ..Prepared::default()
        })
    }

    /// Put a body's uploads in the bucket, under record `id` (a create
    /// without an id in its body gets its id here).
    pub(crate) async fn with_uploads(
        mut self,
        req: &TenantReq,
        name: &str,
        id: Option<&str>,
        body: &Map<String, Value>,
        uploads: Vec<Upload>,
    ) -> ApiResult<Prepared> {
        if uploads.is_empty() {
            return Ok(self);
        }
        let name = name.to_string();
        let c = req
            .read(move |_, conn| schema::find_collection(conn, &name))
            .await?;
        let create = id.is_none();
        let id = match (id, body.get("id")) {
            (Some(id), _) => id.to_string(),
            (None, Some(Value::String(s))) if schema::valid_id(s) => s.clone(),
            // An invalid id is refused by the write; nothing is put for it.
            (None, Some(_)) => return Ok(self),
            (None, None) => schema::new_id(),
        };
        self.files = upload::stage(&req.files, &c, &id, uploads, create).await?;
        self.id = Some(id);
        Ok(self)
    }
}

/// One record write as the records API and the batch API make it.
pub(crate) struct WriteReq<'a> {
    /// The collection's id or name.
    pub collection: &'a str,
    pub query: &'a HashMap<String, String>,
    pub headers: &'a HeaderMap,
    pub body: &'a Map<String, Value>,
    pub prep: &'a Prepared,
}

/// A committed write's answer and what follows it: realtime messages, and
/// the files it leaves behind, to delete.
pub(crate) struct Outcome {
    pub body: Value,
    pub change: Change,
    pub cleanup: Cleanup,
}

/// Files to delete once a write commits.
#[derive(Default)]
pub(crate) struct Cleanup {
    /// (collection id, record id, names) of files a record no longer holds.
    files: Vec<(String, String, Vec<String>)>,
    /// (collection id, record id) of deleted records with file fields.
    records: Vec<(String, String)>,
}

impl Cleanup {
    pub(crate) fn extend(&mut self, other: Cleanup) {
        self.files.extend(other.files);
        self.records.extend(other.records);
    }

    /// Delete the files (in the background).
    pub(crate) fn run(self, files: &TenantFiles) {
        for (c, r, names) in self.files {
            files.delete_later(&c, &r, names);
        }
        for (c, r) in self.records {
            files.delete_record_later(&c, &r);
        }
    }
}

/// Create a record inside the caller's write transaction.
pub(crate) fn create_in(t: &Tenant, conn: &Connection, w: &WriteReq<'_>) -> ApiResult<Outcome> {
    let (body, q) = (w.body, w.query);
    let c = schema::find_collection(conn, w.collection)?;
    let call = Caller::new(t, conn, "POST", w.headers, q, body)?;
    if call.who.as_ref().is_none_or(|a| !a.is_superuser()) && c.rules.create.is_none() {
        return Err(ApiError::forbidden());
    }
    auth_fields::check_create(&c, &call, body)?;
    let id = match (body.get("id"), &w.prep.id) {
        (None, Some(id)) => id.clone(),
        (None, None) => schema::new_id(),
        (Some(Value::String(s)), _) if schema::valid_id(s) => s.clone(),
        (Some(_), _) => {
            return Err(ApiError::validation(
                "Failed to create record.",
                json!({"id": {"code": "validation_invalid_id", "message": "Must be 15 characters of a-z and 0-9."}}),
            ));
        }
    };
    let mut cols = write_values(
        conn,
        &c,
        &Write {
            body,
            create: true,
            hash: w.prep.hash.as_deref(),
            files: &w.prep.files,
            current: None,
        },
    )?
    .cols;
    let now = schema::now();
    cols.push(("id".into(), SqlValue::Text(id.clone())));
    for f in c.fields.iter().filter(|f| f.stamps(false)) {
        cols.push((f.name.clone(), SqlValue::Text(now.clone())));
    }
    if c.is_auth() {
        cols.push(("tokenKey".into(), SqlValue::Text(schema::new_secret())));
    }
    let names: Vec<String> = cols.iter().map(|(n, _)| quote_ident(n)).collect();
    let marks = vec!["?"; cols.len()].join(", ");
    conn.prepare_cached(&format!(
        "INSERT INTO {} ({}) VALUES ({marks})",
        quote_ident(&c.name),
        names.join(", ")
    ))?
    .execute(rusqlite::params_from_iter(cols.iter().map(|(_, v)| v)))
    .map_err(|e| not_unique(e, true))?;
    // The create rule is checked against the new row inside the
    // transaction; a row the rule rejects is rolled back.
    let rec = match find_allowed(conn, &c, &c.rules.create, &call, &id) {
        Ok(r) => r,
        Err(e) if e.status() == StatusCode::NOT_FOUND => {
            return Err(ApiError::bad_request("Failed to create record."));
        }
        Err(e) => return Err(e),
    };
    let change = realtime::prepare(t, conn, &c, Action::Create, &id);
    Ok(Outcome {
        body: respond_one(conn, &c, rec, &call, q)?.0,
        change,
        cleanup: Cleanup::default(),
    })
}

/// Update record `id` inside the caller's write transaction.
pub(crate) fn update_in(
    t: &Tenant,
    conn: &Connection,
    id: &str,
    w: &WriteReq<'_>,
) -> ApiResult<Outcome> {
    let (body, q) = (w.body, w.query);
    let c = schema::find_collection(conn, w.collection)?;
    let call = Caller::new(t, conn, "PATCH", w.headers, q, body)?;
    let current = find_allowed(conn, &c, &c.rules.update, &call, id)?;
    let rotate = auth_fields::check_update(conn, &c, &call, id, body, w.prep.old.as_ref())?;
    let written = write_values(
        conn,
        &c,
        &Write {
            body,
            create: false,
            hash: w.prep.hash.as_deref(),
            files: &w.prep.files,
            current: Some(&current),
        },
    )?;
    let mut cols = written.cols;
    if rotate {
        cols.push(("tokenKey".into(), SqlValue::Text(schema::new_secret())));
    }
    let now = schema::now();
    for f in c.fields.iter().filter(|f| f.stamps(true)) {
        cols.push((f.name.clone(), SqlValue::Text(now.clone())));
    }
    // Nothing to set (no field sent, no autodate to stamp): a no-op that
    // SQL still needs one assignment for.
    if cols.is_empty() {
        cols.push(("id".into(), SqlValue::Text(id.to_string())));
    }
    let sets: Vec<String> = cols
        .iter()
        .map(|(n, _)| format!("{} = ?", quote_ident(n)))
        .collect();
    let mut params: Vec<SqlValue> = cols.into_iter().map(|(_, v)| v).collect();
    params.push(SqlValue::Text(id.to_string()));
    conn.execute(
        &format!(
            "UPDATE {} SET {} WHERE id = ?",
            quote_ident(&c.name),
            sets.join(", ")
        ),
        rusqlite::params_from_iter(params.iter()),
    )
    .map_err(|e| not_unique(e, false))?;
    let rec = fetch(conn, &c, id)?.ok_or_else(ApiError::not_found)?;
    let change = realtime::prepare(t, conn, &c, Action::Update, id);
    let mut cleanup = Cleanup::default();
    if !written.removed_files.is_empty() {
        cleanup
            .files
            .push((c.id.clone(), id.to_string(), written.removed_files));
    }
    Ok(Outcome {
        body: respond_one(conn, &c, rec, &call, q)?.0,
        change,
        cleanup,
    })
}

/// Delete record `id` (with what refers to it) inside the caller's write
/// transaction.
pub(crate) fn delete_in(
    t: &Tenant,
    conn: &Connection,
    id: &str,
    w: &WriteReq<'_>,
) -> ApiResult<Outcome> {
    let c = schema::find_collection(conn, w.collection)?;
    let call = Caller::new(t, conn, "DELETE", w.headers, w.query, &Map::new())?;
    find_allowed(conn, &c, &c.rules.delete, &call, id)?;
    // References to the record go in the same transaction: cascaded,
    // cleared, or the delete is refused; each record deleted or changed on
    // the way has its realtime messages.
    let (change, deleted) = relations::delete_with_references(t, conn, &c, id)?;
    Ok(Outcome {
        body: Value::Null,
        change,
        cleanup: Cleanup {
            files: vec![],
            records: deleted,
        },
    })
}

/// Whether record `id` of collection `name` exists (a batch upsert's
/// choice between update and create).
pub(crate) fn exists(conn: &Connection, name: &str, id: &str) -> ApiResult<bool> {
    let c = schema::find_collection(conn, name)?;
    Ok(fetch(conn, &c, id)?.is_some())
}

/// A record write's request, owned, to move into its write job.
struct Request {
    collection: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Map<String, Value>,
}

/// Run a record write job on `r`: once it commits, its realtime messages
/// go out and the files it left behind are deleted; if it fails, the
/// uploads put for it are deleted instead.
async fn write_with_files(
    req: &TenantReq,
    r: Request,
    prep: Prepared,
    job: impl FnOnce(&Tenant, &Connection, &WriteReq<'_>) -> ApiResult<Outcome> + Send + 'static,
) -> ApiResult<(Value, Commit)> {
    let prep = Arc::new(prep);
    let p = prep.clone();
    let done = req
        .write(move |t, conn| {
            let w = WriteReq {
                collection: &r.collection,
                query: &r.query,
                headers: &r.headers,
                body: &r.body,
                prep: &p,
            };
            job(t, conn, &w)
        })
        .await;
    match done {
        Ok((out, commit)) => {
            req.realtime.publish(out.change);
            out.cleanup.run(&req.files);
            Ok((out.body, commit))
        }
        Err(e) => {
            req.files.discard_later(prep.files.put.clone());
            Err(e)
        }
    }
}

pub async fn create(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let collection = collection_name(&p);
    let RecordBody { fields, uploads } = record_body(&headers, body)?;
    let prep = Prepared::for_write(&req, &collection, None, &fields)
        .await?
        .with_uploads(&req, &collection, None, &fields, uploads)
        .await?;
    let r = Request {
        collection,
        query,
        headers,
        body: fields,
    };
    let (out, commit) = write_with_files(&req, r, prep, create_in).await?;
    Ok(with_watermark(Json(out).into_response(), commit))
}

pub async fn update(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let collection = collection_name(&p);
    let id = p.get("id").cloned().unwrap_or_default();
    let RecordBody { fields, uploads } = record_body(&headers, body)?;
    if !uploads.is_empty() && !schema::valid_id(&id) {
        return Err(ApiError::not_found());
    }
    let prep = Prepared::for_write(&req, &collection, Some(&id), &fields)
        .await?
        .with_uploads(&req, &collection, Some(&id), &fields, uploads)
        .await?;
    let r = Request {
        collection,
        query,
        headers,
        body: fields,
    };
    let (out, commit) =
        write_with_files(&req, r, prep, move |t, conn, w| update_in(t, conn, &id, w)).await?;
    Ok(with_watermark(Json(out).into_response(), commit))
}

pub async fn delete(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let collection = collection_name(&p);
    let id = p.get("id").cloned().unwrap_or_default();
    let r = Request {
        collection,
        query,
        headers,
        body: Map::new(),
    };
    let (_, commit) = write_with_files(&req, r, Prepared::default(), move |t, conn, w| {
        delete_in(t, conn, &id, w)
    })
    .await?;
    Ok(with_watermark(
        StatusCode::NO_CONTENT.into_response(),
        commit,
    ))
}
