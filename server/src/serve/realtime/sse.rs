//! `GET /api/realtime`: the event stream (`PB_CONNECT` with the client id
//! first, then one message per event, each with `id:<clientId>`), ended
//! after [`idle_timeout`] without a message, as PocketBase does (the SDK
//! reconnects). `POST /api/realtime`: a client's subscriptions, replacing
//! the previous ones, and its auth bound from the request's
//! `Authorization` (a guest may become a user; a user may not change).

use super::Hub;
use super::topics::{MAX_LEN, MAX_SUBSCRIPTIONS, Subscription};
use crate::serve::api::TenantReq;
use crate::serve::auth;
use crate::serve::errors::{ApiError, ApiResult};
use axum::Extension;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use futures_util::stream;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::LazyLock;
use std::time::Duration;

/// A stream with no message for this long ends (PocketBase's 5 minutes).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// [`IDLE_TIMEOUT`], or `STRATA_REALTIME_IDLE` (a duration such as `2s`,
/// for tests of the timeout), read once.
pub fn idle_timeout() -> Duration {
    static IDLE: LazyLock<Duration> = LazyLock::new(|| {
        std::env::var("STRATA_REALTIME_IDLE")
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok())
            .unwrap_or(IDLE_TIMEOUT)
    });
    *IDLE
}

pub async fn connect(Extension(req): Extension<TenantReq>) -> Response {
    let conn = Hub::connect(req);
    let id = conn.client.id.clone();
    let first = Event::default()
        .id(&id)
        .event("PB_CONNECT")
        .data(json!({ "clientId": id }).to_string());
    let idle = idle_timeout();
    let rest = stream::unfold(conn, move |mut c| async move {
        match tokio::time::timeout(idle, c.rx.recv()).await {
            Ok(Some(m)) => {
                let ev = Event::default().id(&c.client.id).event(m.name).data(m.data);
                Some((Ok::<_, Infallible>(ev), c))
            }
            // Idle, or dropped by the hub (slow, or the tenant evicted).
            _ => None,
        }
    });
    let events = stream::once(async move { Ok(first) }).chain(rest);
    let mut resp = Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response();
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    resp
}

fn too_long(max: usize) -> Value {
    json!({
        "code": "validation_length_too_long",
        "message": format!("The length must be no more than {max}."),
        "params": {"max": max, "min": 0},
    })
}

pub async fn subscribe(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<StatusCode> {
    // PocketBase's answer to a body it cannot bind (not an object, or a
    // field of the wrong type).
    let unbound = || ApiError::bad_request("Something went wrong while processing your request.");
    let body = body.map_err(|_| unbound())?;
    let form: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        serde_json::from_slice(&body).map_err(|_| unbound())?
    };
    let client_id = match form.get("clientId") {
        None | Some(Value::Null) => "",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(unbound()),
    };
    let subs: Vec<&str> = match form.get("subscriptions") {
        None | Some(Value::Null) => vec![],
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| v.as_str().ok_or_else(unbound))
            .collect::<ApiResult<_>>()?,
        Some(_) => return Err(unbound()),
    };
    let mut errors = Map::new();
    if client_id.is_empty() {
        errors.insert(
            "clientId".into(),
            json!({"code": "validation_required", "message": "Cannot be blank."}),
        );
    } else if client_id.len() > 255 {
        errors.insert("clientId".into(), too_long(255));
    }
    if subs.len() > MAX_SUBSCRIPTIONS {
        errors.insert("subscriptions".into(), too_long(MAX_SUBSCRIPTIONS));
    } else {
        let long: Map<String, Value> = subs
            .iter()
            .enumerate()
            .filter(|(_, s)| s.chars().count() > MAX_LEN)
            .map(|(i, _)| (i.to_string(), too_long(MAX_LEN)))
            .collect();
        if !long.is_empty() {
            errors.insert("subscriptions".into(), Value::Object(long));
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::validation(
            "Something went wrong while processing your request.",
            Value::Object(errors),
        ));
    }
    let client = req
        .realtime
        .client(client_id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "Missing or invalid client id."))?;
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let who = req
        .read(move |t, conn| auth::resolve(t, conn, &headers))
        .await?;
    let key = who.map(|a| format!("{}/{}", a.collection_id, a.id()));
    let mut seen = HashSet::new();
    let parsed: Vec<Subscription> = subs
        .into_iter()
        .filter(|s| !s.is_empty() && seen.insert(*s))
        .map(Subscription::parse)
        .collect();
    let mut st = client.state.lock();
    if st.auth_key.is_some() && st.auth_key != key {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "The current and the previous request authorization don't match.",
        ));
    }
    st.token = token.filter(|_| key.is_some());
    st.auth_key = key;
    st.subs = parsed;
    Ok(StatusCode::NO_CONTENT)
}
