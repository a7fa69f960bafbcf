//! Request bodies: JSON objects, and `multipart/form-data` as the
//! PocketBase SDKs send records, with PocketBase's errors.

use crate::serve::errors::{ApiError, ApiResult};
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Map, Value};

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
