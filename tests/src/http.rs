//! A minimal HTTP/1.1 client for driving `strata serve` in tests: one
//! request per connection (`Connection: close`), JSON bodies.

use anyhow::{Context, Result};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// A response: status, lowercase header names, body (JSON or `Null`).
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Value,
    pub text: String,
    /// The body as sent (a file's bytes).
    pub bytes: Vec<u8>,
}

impl Response {
    /// A header by name, ignoring case as HTTP does.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Send `head` (request line and headers, without the final blank line)
/// plus `Content-Length`, then `body`; read the whole answer.
pub fn raw(addr: &str, head: &str, content_length: usize, body: &[u8]) -> Result<Response> {
    let mut s = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
    s.set_read_timeout(Some(Duration::from_secs(60)))?;
    // The caller's own `Host` (a tenant's domain) replaces the address.
    let has_host = head
        .lines()
        .skip(1)
        .any(|l| l.to_ascii_lowercase().starts_with("host:"));
    let host = if has_host {
        String::new()
    } else {
        format!("\r\nHost: {addr}")
    };
    let head =
        format!("{head}{host}\r\nConnection: close\r\nContent-Length: {content_length}\r\n\r\n");
    s.write_all(head.as_bytes())?;
    // A server that refuses the body early may close before it is all sent.
    let _ = s.write_all(body);
    let raw = read_response(&mut s)?;
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .with_context(|| format!("malformed response: {:?}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..end]).into_owned();
    let mut body = raw[end + 4..].to_vec();
    if head
        .to_ascii_lowercase()
        .contains("\ntransfer-encoding: chunked")
    {
        body = dechunk(&body)?;
    }
    let bytes = body;
    let body = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line in {head:?}"))?;
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Ok(Response {
        status,
        headers,
        body: serde_json::from_str(&body).unwrap_or(Value::Null),
        text: body,
        bytes,
    })
}

/// A `Transfer-Encoding: chunked` body's content (as PocketBase sends
/// larger answers).
fn dechunk(mut b: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = b
            .windows(2)
            .position(|w| w == b"\r\n")
            .context("chunk size line")?;
        let size = std::str::from_utf8(&b[..eol])?;
        let size = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16)
            .with_context(|| format!("chunk size {size:?}"))?;
        b = &b[eol + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(b.get(..size).context("short chunk")?);
        b = b.get(size + 2..).context("chunk end")?;
    }
}

/// Until the server closes, or until `Content-Length` bytes of body have
/// arrived: some servers (chromedriver) keep the connection open anyway.
fn read_response(s: &mut TcpStream) -> Result<Vec<u8>> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse::<usize>().ok());
            if len.is_some_and(|n| raw.len() >= end + 4 + n) {
                return Ok(raw);
            }
        }
        match s.read(&mut buf).context("read response")? {
            0 => return Ok(raw),
            n => raw.extend_from_slice(&buf[..n]),
        }
    }
}

/// A request with optional extra headers (`"Name: value"`) and a body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    headers: &[String],
    body: Option<&str>,
) -> Result<Response> {
    let mut head = format!("{method} {path} HTTP/1.1");
    for h in headers {
        head.push_str("\r\n");
        head.push_str(h);
    }
    if body.is_some() {
        head.push_str("\r\nContent-Type: application/json");
    }
    let body = body.unwrap_or("");
    raw(addr, &head, body.len(), body.as_bytes())
}

/// A JSON API call with an optional `Authorization` token.
pub fn api(
    addr: &str,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> Result<Response> {
    let h: Vec<String> = token
        .map(|t| format!("Authorization: {t}"))
        .into_iter()
        .collect();
    let b = body.map(Value::to_string);
    request(addr, method, path, &h, b.as_deref())
}

/// `%`-encode a query value.
pub fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// The codes of a PocketBase validation error, flattened and sorted
/// (`fields.2.name: validation_duplicated_field_name`): what two servers'
/// answers to one bad request are compared by.
pub fn error_codes(v: &Value) -> Vec<String> {
    fn walk(prefix: &str, v: &Value, out: &mut Vec<String>) {
        if let Some(c) = v.get("code").and_then(Value::as_str) {
            out.push(format!("{prefix}: {c}"));
            return;
        }
        for (k, v) in v.as_object().into_iter().flatten() {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            walk(&p, v, out);
        }
    }
    let mut out = Vec::new();
    walk("", &v["data"], &mut out);
    out.sort();
    out
}
