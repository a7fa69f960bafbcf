//! Forwarding a request to the node that holds its tenant: one hop,
//! streamed both ways (an SSE stream stays a stream), `Host` kept, the
//! client's address passed on in a header that the receiving node trusts
//! only with the cluster's key.
//!
//! A small body (most API calls) is read first, so that a node found dead
//! at connect time can be retried elsewhere; a large one (an upload) is
//! streamed and a failure is the client's to retry.

use crate::serve::errors::ApiError;
use axum::body::Body;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use std::net::IpAddr;
use std::time::Duration;

/// Set on a forwarded request: the node that forwarded it. The receiver
/// serves it itself, whatever its own view says (one hop at most).
pub const FORWARDED_BY: HeaderName = HeaderName::from_static("strata-forwarded-by");
/// The original client's address.
pub const CLIENT_IP: HeaderName = HeaderName::from_static("strata-client-ip");
/// The cluster's key (`_strata/cluster.json`): proof that the two headers
/// above come from a node, not from a client.
pub const FORWARD_KEY: HeaderName = HeaderName::from_static("strata-forward-key");

/// On a 421 from a node: it does not hold the tenant (any more); route
/// again and send the request elsewhere.
pub const NOT_HERE: HeaderName = HeaderName::from_static("strata-not-here");

/// Bodies up to this size are read before forwarding (retryable).
pub const RETRYABLE_BODY: usize = 1 << 20;

pub struct Forwarder {
    client: Client<HttpConnector, Body>,
    key: HeaderValue,
    /// This node's id, as [`FORWARDED_BY`] says it.
    me: HeaderValue,
}

/// Why a forward did not get a response.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Nothing reached the peer (refused, unreachable): the request may be
    /// sent elsewhere; its body, if it had one, is handed back.
    #[error("cannot reach {peer}: {reason}")]
    Unreachable {
        peer: String,
        reason: String,
        retry: Option<Box<Request>>,
    },
    /// The peer does not hold the tenant (421 with [`NOT_HERE`]); the
    /// request is handed back if it can be sent again.
    #[error("{peer} does not hold the tenant")]
    NotThere {
        peer: String,
        retry: Option<Box<Request>>,
    },
    /// The peer took the request but the exchange failed.
    #[error("forward to {peer} failed: {reason}")]
    Failed { peer: String, reason: String },
}

impl Forwarder {
    pub fn new(key: &str, me: &str) -> Forwarder {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(Duration::from_secs(1)));
        http.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(http);
        Forwarder {
            client,
            key: HeaderValue::from_str(key).unwrap_or(HeaderValue::from_static("invalid")),
            // Node ids are validated to header-safe characters.
            me: HeaderValue::from_str(me).unwrap_or(HeaderValue::from_static("node")),
        }
    }

    /// Is `headers` a forward from a node of this cluster?
    pub fn from_peer(&self, headers: &HeaderMap) -> bool {
        headers.get(&FORWARD_KEY).is_some_and(|k| k == self.key)
    }

    /// Send `req` to `advertise` (`http://host:port`) on behalf of `client`.
    /// `req`'s body must already be buffered if it is to be retried
    /// ([`buffer`]).
    pub async fn send(
        &self,
        advertise: &str,
        client: Option<IpAddr>,
        req: Request,
    ) -> Result<Response, ForwardError> {
        let (parts, body) = req.into_parts();
        let retry_body = parts.extensions.get::<Buffered>().map(|b| b.0.clone());
        // The URI as the client sent it (a nested router strips `/t/<id>`).
        let original = parts
            .extensions
            .get::<axum::extract::OriginalUri>()
            .map(|o| o.0.clone());
        let pq = original
            .as_ref()
            .unwrap_or(&parts.uri)
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let uri: Uri = format!("{}{pq}", advertise.trim_end_matches('/'))
            .parse()
            .map_err(|e| ForwardError::Failed {
                peer: advertise.to_string(),
                reason: format!("bad address: {e}"),
            })?;
        let mut out = axum::http::Request::new(body);
        *out.method_mut() = parts.method.clone();
        *out.uri_mut() = uri;
        let h = out.headers_mut();
        *h = parts.headers.clone();
        strip_hop_by_hop(h);
        h.insert(FORWARDED_BY, self.me.clone());
        if let Some(ip) = client.and_then(|ip| HeaderValue::from_str(&ip.to_string()).ok()) {
            h.insert(CLIENT_IP, ip);
        }
        h.insert(FORWARD_KEY, self.key.clone());
        match self.client.request(out).await {
            Ok(resp)
                if resp.status() == StatusCode::MISDIRECTED_REQUEST
                    && resp.headers().contains_key(&NOT_HERE)
                    && retry_body.is_some() =>
            {
                Err(ForwardError::NotThere {
                    peer: advertise.to_string(),
                    retry: retry_body.map(|b| Box::new(Request::from_parts(parts, Body::from(b)))),
                })
            }
            Ok(resp) => {
                let (mut rp, incoming) = resp.into_parts();
                strip_hop_by_hop(&mut rp.headers);
                Ok(Response::from_parts(rp, Body::new(incoming)))
            }
            Err(e) if e.is_connect() => Err(ForwardError::Unreachable {
                peer: advertise.to_string(),
                reason: source_chain(&e),
                retry: retry_body.map(|b| Box::new(Request::from_parts(parts, Body::from(b)))),
            }),
            Err(e) => Err(ForwardError::Failed {
                peer: advertise.to_string(),
                reason: source_chain(&e),
            }),
        }
    }
}

impl Forwarder {
    /// A node-to-node admin call (`POST path` at `advertise`, with the
    /// cluster key as credentials); the answer must be a success.
    pub async fn admin_post(&self, advertise: &str, path: &str) -> Result<(), ApiError> {
        let uri: Uri = format!("{}{path}", advertise.trim_end_matches('/'))
            .parse()
            .map_err(|e| ApiError::internal(format!("bad address {advertise}: {e}")))?;
        let mut req = axum::http::Request::new(Body::empty());
        *req.method_mut() = axum::http::Method::POST;
        *req.uri_mut() = uri;
        req.headers_mut().insert(FORWARD_KEY, self.key.clone());
        let resp = self.client.request(req).await.map_err(|e| {
            ApiError::new(
                StatusCode::BAD_GATEWAY,
                format!("{advertise}{path}: {}", source_chain(&e)),
            )
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body = axum::body::to_bytes(Body::new(resp.into_body()), 64 << 10)
            .await
            .unwrap_or_default();
        Err(ApiError::new(
            StatusCode::BAD_GATEWAY,
            format!(
                "{advertise}{path}: {status}: {}",
                String::from_utf8_lossy(&body)
            ),
        ))
    }
}

/// Read a small body into memory so the request can be sent twice; a
/// large or unsized one stays a stream. An unreadable body is a 400.
pub async fn buffer(req: Request) -> Result<Request, Response> {
    let small = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n <= RETRYABLE_BODY);
    let empty = !req.headers().contains_key(header::CONTENT_LENGTH)
        && !req.headers().contains_key(header::TRANSFER_ENCODING);
    if !small && !empty {
        return Ok(req);
    }
    let (mut parts, body) = req.into_parts();
    match axum::body::to_bytes(body, RETRYABLE_BODY).await {
        Ok(b) => {
            parts.extensions.insert(Buffered(b.clone()));
            Ok(Request::from_parts(parts, Body::from(b)))
        }
        Err(e) => Err(
            ApiError::bad_request(format!("Failed to read the request body: {e}")).into_response(),
        ),
    }
}

/// The body read by [`buffer`], kept for a retry.
#[derive(Clone)]
struct Buffered(bytes::Bytes);

/// Headers of one connection, never forwarded (RFC 9110 §7.6.1).
fn strip_hop_by_hop(h: &mut HeaderMap) {
    let named: Vec<HeaderName> = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        h.remove(n);
    }
    for n in [
        header::CONNECTION,
        HeaderName::from_static("keep-alive"),
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
        header::TE,
        header::TRAILER,
        header::TRANSFER_ENCODING,
        header::UPGRADE,
    ] {
        h.remove(n);
    }
}

fn source_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
