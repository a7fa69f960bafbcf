//! `POST /api/batch`: several record writes (create, update, upsert,
//! delete) in one transaction of the tenant's writer, all or nothing, as
//! PocketBase 0.40 runs them. Enabled and bounded by the tenant's `batch`
//! settings. Each request may carry its own headers over the batch's own
//! (not `Authorization`: all run as the batch's caller); rules are checked
//! per request, the
//! realtime messages are sent once the whole batch has committed.
//!
//! Parsing and checking the batch body is here; the writes themselves are
//! the records API's (`records::create_in` and the others).

use super::TenantReq;
use super::records::{self, Cleanup, Prepared, WriteReq};
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::realtime::Change;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{Map, Value, json};
use std::collections::HashMap;

/// What one request of a batch does.
#[derive(Debug, Clone, PartialEq)]
enum Op {
    Create,
    Update(String),
    Upsert,
    Delete(String),
}

/// One request of a batch, parsed.
struct Sub {
    op: Op,
    collection: String,
    query: HashMap<String, String>,
    headers: HeaderMap,
    body: Map<String, Value>,
}

fn invalid(data: Value) -> ApiError {
    ApiError::validation("Invalid batch request data.", data)
}

/// The failure of request `i`, as PocketBase nests it.
fn failed(i: usize, e: &ApiError) -> ApiError {
    ApiError::validation(
        "Batch transaction failed.",
        json!({"requests": {i.to_string(): {
            "code": "batch_request_failed",
            "message": "Batch request failed.",
            "response": e.client_body(),
        }}}),
    )
}

/// `(method, url)` of a records write route: the op and the collection.
fn route(method: &str, url: &str) -> ApiResult<(Op, String, HashMap<String, String>)> {
    let bad = || ApiError::bad_request("Something went wrong while processing your request.");
    let uri: axum::http::Uri = url.parse().map_err(|_| bad())?;
    if uri.scheme().is_some() || uri.authority().is_some() {
        return Err(bad());
    }
    let path = uri.path();
    let query = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&uri)
        .map_err(|_| bad())?
        .0;
    let rest = path.strip_prefix("/api/collections/").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split('/').collect();
    let op = match (method.to_ascii_uppercase().as_str(), parts.as_slice()) {
        ("POST", [_, "records"]) => Op::Create,
        ("PUT", [_, "records"]) => Op::Upsert,
        ("PATCH", [_, "records", id]) if !id.is_empty() => Op::Update(id.to_string()),
        ("DELETE", [_, "records", id]) if !id.is_empty() => Op::Delete(id.to_string()),
        _ => return Err(bad()),
    };
    let collection = parts[0].to_string();
    if collection.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "Missing collection context.",
        ));
    }
    Ok((op, collection, query))
}

/// The batch's own headers with a request's over them, but for
/// `Authorization`: every request of a batch runs as the batch's caller, as
/// in PocketBase (a request's own token is ignored).
fn headers_for(base: &HeaderMap, own: Option<&Value>) -> ApiResult<HeaderMap> {
    let mut h = base.clone();
    // A request's body is JSON whatever the batch's was.
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.remove(header::CONTENT_LENGTH);
    for (k, v) in own.and_then(Value::as_object).into_iter().flatten() {
        if k.eq_ignore_ascii_case("authorization") {
            continue;
        }
        let name = HeaderName::from_bytes(k.as_bytes())
            .map_err(|_| ApiError::bad_request(format!("Invalid header name {k:?}.")))?;
        let value = v
            .as_str()
            .and_then(|v| HeaderValue::from_str(v).ok())
            .ok_or_else(|| ApiError::bad_request(format!("Invalid value of header {k:?}.")))?;
        h.insert(name, value);
    }
    Ok(h)
}

/// The batch body: its requests, checked against the settings' limits.
fn parse(raw: &[u8], max: i64, base: &HeaderMap) -> ApiResult<Vec<Result<Sub, ApiError>>> {
    let v: Value = serde_json::from_slice(raw)
        .map_err(|_| ApiError::bad_request("Failed to read the submitted batch data."))?;
    let reqs = match v.get("requests") {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) | Some(Value::Null) | None => {
            return Err(invalid(
                json!({"requests": {"code": "validation_required", "message": "Cannot be blank."}}),
            ));
        }
        Some(_) => {
            return Err(ApiError::bad_request(
                "Failed to read the submitted batch data.",
            ));
        }
    };
    if reqs.len() as i64 > max {
        return Err(invalid(json!({"requests": {
            "code": "validation_length_too_long",
            "message": format!("The length must be no more than {max}."),
            "params": {"max": max, "min": 0},
        }})));
    }
    // Shape errors of every request at once, as PocketBase lists them.
    let mut shape = Map::new();
    for (i, r) in reqs.iter().enumerate() {
        let mut e = Map::new();
        for k in ["method", "url"] {
            if r.get(k).and_then(Value::as_str).is_none_or(str::is_empty) {
                e.insert(
                    k.into(),
                    json!({"code": "validation_required", "message": "Cannot be blank."}),
                );
            }
        }
        if !e.is_empty() {
            shape.insert(i.to_string(), Value::Object(e));
        }
    }
    if !shape.is_empty() {
        return Err(invalid(json!({ "requests": shape })));
    }
    Ok(reqs
        .iter()
        .map(|r| {
            let method = r["method"].as_str().unwrap_or("");
            let (op, collection, query) = route(method, r["url"].as_str().unwrap_or(""))?;
            let body = match r.get("body") {
                None | Some(Value::Null) => Map::new(),
                Some(Value::Object(m)) => m.clone(),
                Some(_) => {
                    return Err(ApiError::bad_request(
                        "Something went wrong while processing your request.",
                    ));
                }
            };
            Ok(Sub {
                op,
                collection,
                query,
                headers: headers_for(base, r.get("headers"))?,
                body,
            })
        })
        .collect())
}

pub async fn run(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let batch = req.settings().batch.clone();
    if !batch.enabled {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "Batch requests are not allowed.",
        ));
    }
    let raw = super::body::body_bytes(body)?;
    if batch.max_body_size > 0 && raw.len() as i64 > batch.max_body_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "Request entity too large",
        ));
    }
    let subs = parse(&raw, batch.max_requests, &headers)?;
    // bcrypt work before the transaction, so no connection waits for it.
    let mut ready = Vec::with_capacity(subs.len());
    for (i, sub) in subs.into_iter().enumerate() {
        let sub = sub.map_err(|e| failed(i, &e))?;
        let id = match &sub.op {
            Op::Update(id) => Some(id.clone()),
            Op::Upsert => sub
                .body
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string),
            _ => None,
        };
        let prep = match sub.op {
            Op::Delete(_) => Prepared::default(),
            _ => Prepared::for_write(&req, &sub.collection, id.as_deref(), &sub.body)
                .await
                .map_err(|e| failed(i, &e))?,
        };
        ready.push((sub, prep));
    }
    let ((answers, change, cleanup), _commit) = req
        .write(move |t, conn| {
            let mut change = Change::default();
            let mut cleanup = Cleanup::default();
            let mut answers = Vec::with_capacity(ready.len());
            for (i, (sub, prep)) in ready.iter().enumerate() {
                let w = WriteReq {
                    collection: &sub.collection,
                    query: &sub.query,
                    headers: &sub.headers,
                    body: &sub.body,
                    prep,
                };
                let done = match &sub.op {
                    Op::Create => records::create_in(t, conn, &w),
                    Op::Update(id) => records::update_in(t, conn, id, &w),
                    Op::Upsert => {
                        let id = sub.body.get("id").and_then(Value::as_str).unwrap_or("");
                        match records::exists(conn, &sub.collection, id) {
                            Ok(true) => records::update_in(t, conn, id, &w),
                            Ok(false) => records::create_in(t, conn, &w),
                            Err(e) => Err(e),
                        }
                    }
                    Op::Delete(id) => records::delete_in(t, conn, id, &w),
                };
                let out = done.map_err(|e| failed(i, &e))?;
                let status = if matches!(sub.op, Op::Delete(_)) {
                    204
                } else {
                    200
                };
                change.extend(out.change);
                cleanup.extend(out.cleanup);
                answers.push(json!({"status": status, "body": out.body}));
            }
            Ok((answers, change, cleanup))
        })
        .await?;
    req.realtime.publish(change);
    cleanup.run(&req.files);
    Ok(Json(Value::Array(answers)).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_routes_only() {
        let op = |m: &str, u: &str| route(m, u).map(|(op, c, q)| (op, c, q.get("fields").cloned()));
        assert_eq!(
            op("POST", "/api/collections/posts/records").unwrap(),
            (Op::Create, "posts".into(), None)
        );
        assert_eq!(
            op("put", "/api/collections/posts/records?fields=id").unwrap(),
            (Op::Upsert, "posts".into(), Some("id".into()))
        );
        assert_eq!(
            op("PATCH", "/api/collections/p/records/abc").unwrap().0,
            Op::Update("abc".into())
        );
        assert_eq!(
            op("DELETE", "/api/collections/p/records/abc").unwrap().0,
            Op::Delete("abc".into())
        );
        for (m, u) in [
            ("GET", "/api/collections/posts/records"),
            ("POST", "https://evil/api/collections/posts/records"),
            ("PATCH", "/api/collections/posts/records"),
            ("DELETE", "/api/collections/posts/records/"),
            ("POST", "/api/collections/posts"),
            ("POST", "/api/batch"),
        ] {
            assert!(route(m, u).is_err(), "{m} {u}");
        }
    }

    #[test]
    fn shapes_and_limits() {
        let h = HeaderMap::new();
        let e = |raw: &str| parse(raw.as_bytes(), 3, &h).err().map(|e| e.client_body());
        assert_eq!(
            e("nope").unwrap()["message"],
            "Failed to read the submitted batch data."
        );
        assert_eq!(
            e(r#"{"requests": []}"#).unwrap()["data"]["requests"]["code"],
            "validation_required"
        );
        let four = r#"{"requests": [{"method":"POST","url":"/"},{"method":"POST","url":"/"},{"method":"POST","url":"/"},{"method":"POST","url":"/"}]}"#;
        assert_eq!(
            e(four).unwrap()["data"]["requests"]["code"],
            "validation_length_too_long"
        );
        let shape = r#"{"requests": [{"url": "/api/collections/p/records"}, {"method": "POST"}]}"#;
        let v = e(shape).unwrap();
        assert_eq!(
            v["data"]["requests"]["0"]["method"]["code"],
            "validation_required"
        );
        assert_eq!(
            v["data"]["requests"]["1"]["url"]["code"],
            "validation_required"
        );
        let ok = r#"{"requests": [{"method": "POST", "url": "/api/collections/p/records", "headers": {"Authorization": "x", "X-Extra": "y"}, "body": {"a": 1}}]}"#;
        let subs = parse(ok.as_bytes(), 3, &h).unwrap();
        let sub = subs[0].as_ref().ok().unwrap();
        assert!(sub.headers.get("authorization").is_none());
        assert_eq!(sub.headers.get("x-extra").unwrap(), "y");
        assert_eq!(sub.body["a"], 1);
    }
}
