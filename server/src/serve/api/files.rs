//! `GET /api/files/{collection}/{record}/{filename}` (with `thumb`,
//! `download`, `token`, ranges) and `POST /api/files/token`, as PocketBase
//! answers them.
//!
//! A file is found through its record: the name must be in one of the
//! record's file fields (a stray object in the record's folder is not
//! served). Files of unprotected fields are public, as in PocketBase (the
//! collection's view rule does not apply); a protected field's files are
//! served where the view rule lets the holder of the request's file token
//! (`?token=`; an `Authorization` header does not count) see the record. Stored names are never
//! reused, so a name is its own validator: the answer carries it as an
//! `ETag` and `If-None-Match` gets 304.

use super::TenantReq;
use crate::serve::auth::{self, Kind};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::thumbs::{self, Thumb};
use crate::serve::files::upload::{SNIFF, detect};
use crate::serve::files::{CACHE_LARGEST, TenantFiles};
use crate::serve::query::rules::{Caller, find_allowed, request_info};
use crate::serve::records::output::fetch;
use crate::serve::schema::{self, FieldType};
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use bytes::Bytes;
use serde_json::{Map, json};
use std::collections::HashMap;

/// Types a browser may show in place; everything else is an attachment.
const INLINE: &[&str] = &[
    "image/png",
    "image/jpg",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/x-icon",
    "image/bmp",
    "video/webm",
    "video/mp4",
    "video/3gpp",
    "video/quicktime",
    "video/x-ms-wmv",
    "audio/basic",
    "audio/aiff",
    "audio/mpeg",
    "audio/midi",
    "audio/mp3",
    "audio/wave",
    "audio/wav",
    "audio/x-wav",
    "audio/x-mpeg",
    "audio/x-m4a",
    "audio/aac",
    "application/pdf",
    "application/x-pdf",
];

/// What the record says about one of its files.
struct Found {
    collection_id: String,
    thumbs: Vec<String>,
}

pub async fn serve(
    Extension(req): Extension<TenantReq>,
    Path(p): Path<HashMap<String, String>>,
    Query(q): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    let (collection, record, name) = (get("collection"), get("record"), get("filename"));
    let token = q.get("token").cloned().unwrap_or_default();
    let found = {
        let (record, name) = (record.clone(), name.clone());
        req.read(move |t, conn| {
            let c = schema::find_collection(conn, &collection).map_err(|_| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "Missing or invalid collection context.",
                )
            })?;
            let rec = fetch(conn, &c, &record)?.ok_or_else(ApiError::not_found)?;
            let field = c
                .fields
                .iter()
                .filter(|f| f.kind == FieldType::File)
                .find(|f| schema::strings_of(rec.get(&f.name)).contains(&name))
                .ok_or_else(ApiError::not_found)?;
            if field.protected {
                // The view rule decides, for the holder of a file token
                // (only `?token=` counts; without one, a guest).
                let who = auth::resolve_token(t, conn, &token, Kind::File)?;
                let request = request_info(
                    "GET",
                    &HeaderMap::new(),
                    &HashMap::new(),
                    &Map::new(),
                    who.as_ref(),
                );
                let call = Caller { who, request };
                find_allowed(conn, &c, &c.rules.view, &call, &record)
                    .map_err(|_| ApiError::not_found())?;
            }
            Ok(Found {
                collection_id: c.id.clone(),
                thumbs: field.thumbs.clone(),
            })
        })
        .await?
    };
    let files = &req.files;
    let key = files.key(&found.collection_id, &record, &name);
    // A thumb the field allows (`100x100` always), or the file itself.
    let thumb = q
        .get("thumb")
        .filter(|s| s.as_str() == thumbs::DEFAULT || found.thumbs.contains(s))
        .and_then(|s| Thumb::parse(s).map(|t| (s.clone(), t)));
    let original = || async {
        files
            .get(key.clone())
            .await?
            .ok_or_else(ApiError::not_found)
    };
    let (served_name, data) = match thumb {
        None => (name.clone(), content(files, key.clone()).await?),
        Some((size, spec)) => {
            let thumb_key = files.thumb_key(&found.collection_id, &record, &name, &size);
            match files.get(thumb_key.clone()).await? {
                Some(d) => (format!("{size}_{name}"), Content::Whole(d)),
                None => {
                    let src = original().await?;
                    let made = {
                        let src = src.clone();
                        crate::serve::tenants::blocking(move || Ok(spec.render(&src))).await?
                    };
                    match made {
                        Some(d) => {
                            let d = Bytes::from(d);
                            // Kept for next time; a failed put still serves it.
                            if let Err(e) = files.put(thumb_key, d.clone()).await {
                                tracing::warn!(error = %e, "thumb not kept");
                            }
                            (format!("{size}_{name}"), Content::Whole(d))
                        }
                        // Not an image it can read: the file itself.
                        None => (name.clone(), Content::Whole(src)),
                    }
                }
            }
        }
    };
    let download = matches!(
        q.get("download").map(String::as_str),
        Some("1" | "t" | "T" | "true" | "TRUE" | "True")
    );
    Ok(respond(&served_name, data, download, &headers, files))
}

/// A file to answer with: whole in memory, or one too large for the cache,
/// streamed from the bucket (its first bytes read to learn its type).
enum Content {
    Whole(Bytes),
    Large { key: String, size: u64, head: Bytes },
}

/// The file at `key`: cached, read whole (and cached), or large.
async fn content(files: &TenantFiles, key: String) -> ApiResult<Content> {
    if let Some(b) = files.cached(&key) {
        return Ok(Content::Whole(b));
    }
    let size = files
        .size(key.clone())
        .await?
        .ok_or_else(ApiError::not_found)?;
    if size <= CACHE_LARGEST as u64 {
        let b = files.get(key).await?.ok_or_else(ApiError::not_found)?;
        return Ok(Content::Whole(b));
    }
    let head = files.get_range(key.clone(), 0..SNIFF as u64).await?;
    Ok(Content::Large { key, size, head })
}

impl Content {
    fn len(&self) -> u64 {
        match self {
            Content::Whole(b) => b.len() as u64,
            Content::Large { size, .. } => *size,
        }
    }
    /// The bytes its type is sniffed from.
    fn head(&self) -> &[u8] {
        match self {
            Content::Whole(b) => b,
            Content::Large { head, .. } => head,
        }
    }
    /// A body of bytes `start..=end`.
    fn body(self, start: u64, end: u64, files: &TenantFiles) -> Body {
        match self {
            Content::Whole(b) => Body::from(b.slice(start as usize..end as usize + 1)),
            Content::Large { key, .. } => Body::from_stream(files.stream(key, start..end + 1)),
        }
    }
}

/// The type a browser gets: the sniffed one, with PocketBase's overrides by
/// extension.
fn content_type(name: &str, data: &[u8]) -> &'static str {
    let ext = name.rsplit_once('.').map_or("", |(_, e)| e);
    match ext.to_ascii_lowercase().as_str() {
        "svg" => "image/svg+xml",
        "css" => "text/css",
        "js" | "mjs" => "text/javascript",
        _ => detect(data).0,
    }
}

fn respond(
    name: &str,
    data: Content,
    download: bool,
    req: &HeaderMap,
    files: &TenantFiles,
) -> Response {
    let ct = content_type(name, data.head());
    let inline = !download && INLINE.contains(&ct.split(';').next().unwrap_or(""));
    let etag = format!("\"{name}\"");
    let mut h = HeaderMap::new();
    let set = |h: &mut HeaderMap, k: header::HeaderName, v: String| {
        if let Ok(v) = HeaderValue::from_str(&v) {
            h.insert(k, v);
        }
    };
    set(
        &mut h,
        header::CONTENT_DISPOSITION,
        format!(
            "{}; filename={etag}",
            if inline { "inline" } else { "attachment" }
        ),
    );
    set(
        &mut h,
        header::CACHE_CONTROL,
        "max-age=2592000, stale-while-revalidate=86400".into(),
    );
    set(
        &mut h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; media-src 'self'; style-src 'unsafe-inline'; sandbox".into(),
    );
    set(&mut h, header::X_CONTENT_TYPE_OPTIONS, "nosniff".into());
    set(&mut h, header::ACCEPT_RANGES, "bytes".into());
    set(&mut h, header::ETAG, etag.clone());
    let matches_etag = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| matches!(t.trim(), "*") || t.trim() == etag)
        });
    if matches_etag {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    set(&mut h, header::CONTENT_TYPE, ct.into());
    let len = data.len();
    let if_range_ok = req
        .get(header::IF_RANGE)
        .and_then(|v| v.to_str().ok())
        .is_none_or(|v| v == etag);
    let range = req
        .get(header::RANGE)
        .and_then(|v| v.to_str().ok())
        .filter(|_| if_range_ok);
    if let Some(r) = range {
        match http_range_header::parse_range_header(r).map(|p| p.validate(len)) {
            Ok(Ok(ranges)) if ranges.len() == 1 => {
                let (start, end) = (*ranges[0].start(), *ranges[0].end());
                set(
                    &mut h,
                    header::CONTENT_RANGE,
                    format!("bytes {start}-{end}/{len}"),
                );
                set(
                    &mut h,
                    header::CONTENT_LENGTH,
                    (end - start + 1).to_string(),
                );
                let part = data.body(start, end, files);
                return (StatusCode::PARTIAL_CONTENT, h, part).into_response();
            }
            Ok(Err(_)) => {
                // As Go's error answer: no caching, nothing about ranges.
                h.remove(header::CACHE_CONTROL);
                h.remove(header::ACCEPT_RANGES);
                set(&mut h, header::CONTENT_RANGE, format!("bytes */{len}"));
                set(
                    &mut h,
                    header::CONTENT_TYPE,
                    "text/plain; charset=utf-8".into(),
                );
                return (
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    h,
                    "invalid range: failed to overlap\n",
                )
                    .into_response();
            }
            // Several ranges, or a header that is no byte range: the whole
            // file (a server may ignore Range).
            _ => {}
        }
    }
    let body = if len == 0 {
        Body::empty()
    } else {
        data.body(0, len - 1, files)
    };
    set(&mut h, header::CONTENT_LENGTH, len.to_string());
    (StatusCode::OK, h, body).into_response()
}

/// `POST /api/files/token`: a three-minute token for the caller's protected
/// file reads.
pub async fn token(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
) -> ApiResult<Json<serde_json::Value>> {
    req.read(move |t, conn| {
        let who = auth::resolve(t, conn, &headers)?.ok_or_else(|| {
            ApiError::unauthorized("The request requires valid record authorization token.")
        })?;
        Ok(Json(json!({"token": auth::file_token(t, conn, &who)?})))
    })
    .await
}
