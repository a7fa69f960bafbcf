//! Request bodies: JSON objects, and `multipart/form-data` as the
//! PocketBase SDKs send records (text fields and file uploads), with
//! PocketBase's errors.

use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::files::upload::Upload;
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

/// Why a `multipart/form-data` body was refused (a 400; nothing is stored).
#[derive(Debug, thiserror::Error)]
pub enum MultipartError {
    #[error("Failed to load the submitted data due to invalid formatting.")]
    Malformed,
}

/// A record body: its fields, and the files it uploads.
#[derive(Debug, Default)]
pub struct RecordBody {
    pub fields: Map<String, Value>,
    pub uploads: Vec<Upload>,
}

/// A record body: JSON, or `multipart/form-data` whose text parts are
/// fields (a key sent more than once becomes an array, as in PocketBase),
/// whose `@jsonPayload` part is merged in (as the PocketBase SDKs send it)
/// and whose file parts (those with a `filename`) are uploads.
pub fn record_body(
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<RecordBody> {
    let ct = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.to_ascii_lowercase().starts_with("multipart/form-data") {
        return Ok(RecordBody {
            fields: body_json(body)?,
            uploads: vec![],
        });
    }
    let boundary = multer::parse_boundary(ct).map_err(|_| MultipartError::Malformed)?;
    Ok(multipart_fields(boundary, body_bytes(body)?)?)
}

/// The fields and files of a whole multipart body, with [multer]. The body
/// is in memory, so its futures never wait: polled once, or it is
/// malformed.
pub fn multipart_fields(
    boundary: String,
    bytes: axum::body::Bytes,
) -> Result<RecordBody, MultipartError> {
    use futures_util::FutureExt;
    let stream =
        futures_util::stream::once(std::future::ready(Ok::<_, std::convert::Infallible>(bytes)));
    let read = async move {
        let mut parts = multer::Multipart::new(stream, boundary);
        let mut out = Map::new();
        let mut uploads = Vec::new();
        let mut any = false;
        while let Some(field) = parts
            .next_field()
            .await
            .map_err(|_| MultipartError::Malformed)?
        {
            any = true;
            let name = field
                .name()
                .filter(|n| !n.is_empty())
                .ok_or(MultipartError::Malformed)?
                .to_string();
            let file_name = field.file_name().map(str::to_string);
            let data = field.bytes().await.map_err(|_| MultipartError::Malformed)?;
            if let Some(original) = file_name {
                // An empty file input (no file chosen) sends no file.
                if !(original.is_empty() && data.is_empty()) {
                    uploads.push(Upload {
                        key: name,
                        original,
                        data,
                    });
                }
                continue;
            }
            let text = String::from_utf8(data.to_vec()).map_err(|_| MultipartError::Malformed)?;
            if name == "@jsonPayload" {
                match serde_json::from_str::<Value>(&text) {
                    Ok(Value::Object(m)) => out.extend(m),
                    _ => return Err(MultipartError::Malformed),
                }
                continue;
            }
            match out.get_mut(&name) {
                Some(Value::Array(a)) => a.push(Value::String(text)),
                Some(v) => *v = Value::Array(vec![v.take(), Value::String(text)]),
                None => {
                    out.insert(name, Value::String(text));
                }
            }
        }
        if any {
            Ok(RecordBody {
                fields: out,
                uploads,
            })
        } else {
            Err(MultipartError::Malformed)
        }
    };
    read.now_or_never()
        .unwrap_or(Err(MultipartError::Malformed))
}

pub fn body_bytes(body: Result<axum::body::Bytes, BytesRejection>) -> ApiResult<axum::body::Bytes> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "Request entity too large.")
        } else {
            ApiError::bad_request("Failed to read the request body.")
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(body: &str) -> Result<Map<String, Value>, MultipartError> {
        parse_all(body).map(|b| b.fields)
    }

    fn parse_all(body: &str) -> Result<RecordBody, MultipartError> {
        multipart_fields(
            "XB".into(),
            axum::body::Bytes::from(body.replace('\n', "\r\n")),
        )
    }

    fn part(name: &str, value: &str) -> String {
        format!("--XB\nContent-Disposition: form-data; name=\"{name}\"\n\n{value}\n")
    }

    #[test]
    fn text_parts_are_fields_and_repeated_keys_arrays() {
        let body = format!(
            "{}{}{}{}--XB--\n",
            part("title", "hello\nworld"),
            part("tags", "a"),
            part("tags", "b"),
            part("tags", "c"),
        );
        let m = parse(&body).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"title": "hello\r\nworld", "tags": ["a", "b", "c"]})
        );
    }

    #[test]
    fn json_payload_is_merged() {
        let body = format!(
            "{}{}--XB--\n",
            part("title", "x"),
            part("@jsonPayload", r#"{"n": 3, "ok": true}"#)
        );
        assert_eq!(
            Value::Object(parse(&body).unwrap()),
            json!({"title": "x", "n": 3, "ok": true})
        );
        let bad = format!("{}--XB--\n", part("@jsonPayload", "[1]"));
        assert!(matches!(parse(&bad), Err(MultipartError::Malformed)));
    }

    #[test]
    fn malformed_bodies_are_refused() {
        for body in [
            String::new(),
            "--XB--\n".into(),
            "garbage".into(),
            // No closing boundary.
            part("title", "x"),
            format!("{}--XB", part("title", "x")).replace("--XB\nContent", "--XB\nContent"),
            // Another boundary.
            format!("{}--YB--\n", part("title", "x").replace("XB", "YB")),
            // No name.
            "--XB\nContent-Disposition: form-data\n\nx\n--XB--\n".into(),
            // Not UTF-8 is checked below.
        ] {
            assert!(parse(&body).is_err(), "{body:?} accepted");
        }
        let mut raw = b"--XB\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\n".to_vec();
        raw.extend([0xff, 0xfe]);
        raw.extend(b"\r\n--XB--\r\n");
        assert!(multipart_fields("XB".into(), raw.into()).is_err());
    }

    #[test]
    fn file_parts_are_uploads() {
        let body = format!(
            "{}--XB\nContent-Disposition: form-data; name=\"docs+\"; filename=\"a b.txt\"\nContent-Type: text/plain\n\nhello\n\
             --XB\nContent-Disposition: form-data; name=\"avatar\"; filename=\"\"\n\n\n--XB--\n",
            part("title", "x")
        );
        let b = parse_all(&body).unwrap();
        assert_eq!(Value::Object(b.fields), json!({"title": "x"}));
        assert_eq!(b.uploads.len(), 1, "an empty file input is no upload");
        let u = &b.uploads[0];
        assert_eq!((u.key.as_str(), u.original.as_str()), ("docs+", "a b.txt"));
        assert_eq!(&u.data[..], b"hello");
    }
}
