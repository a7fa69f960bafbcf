//! A tenant's `rateLimits` applied to a request, before its handler runs:
//! what PocketBase calls the request's labels (its collection route's tags,
//! then method and path), the client's address (the peer, or the first
//! trusted proxy header the settings name), and the 429 when a window is
//! used up. Superusers and `excludedIPs` are not limited, as in PocketBase.

use super::TenantReq;
use crate::serve::auth;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::ratelimit::{self, Request, RetryAfter, find_rule};
use crate::serve::schema;
use crate::serve::settings::TrustedProxy;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method};
use std::net::SocketAddr;

/// PocketBase's tag of a collection route, and the collection as the path
/// names it (by name or id).
fn collection_route<'p>(method: &Method, path: &'p str) -> Option<(&'p str, &'static str)> {
    let rest = path.strip_prefix("/api/collections/")?;
    let mut parts = rest.split('/');
    let c = parts.next().filter(|c| !c.is_empty())?;
    let tag = match (method.as_str(), parts.next(), parts.next(), parts.next()) {
        ("GET", Some("records"), None, _) => "list",
        ("POST", Some("records"), None, _) => "create",
        ("GET", Some("records"), Some(_), None) => "view",
        ("PATCH", Some("records"), Some(_), None) => "update",
        ("DELETE", Some("records"), Some(_), None) => "delete",
        ("POST", Some("auth-with-password"), None, _) => "auth",
        ("POST", Some("auth-refresh"), None, _) => "authRefresh",
        _ => return None,
    };
    Some((c, tag))
}

/// The client's address: the peer's, unless the settings trust a proxy
/// header (`X-Forwarded-For` style lists: the rightmost entry, or the
/// leftmost with `useLeftmostIP`).
pub fn client_ip(proxy: &TrustedProxy, headers: &HeaderMap, peer: Option<SocketAddr>) -> String {
    for h in &proxy.headers {
        let Some(v) = headers.get(h.as_str()).and_then(|v| v.to_str().ok()) else {
            continue;
        };
        let mut ips = v.split(',').map(str::trim).filter(|s| !s.is_empty());
        let ip = if proxy.use_leftmost_ip {
            ips.next()
        } else {
            ips.next_back()
        };
        if let Some(ip) = ip {
            return ip.to_string();
        }
    }
    peer.map(|p| p.ip().to_string()).unwrap_or_default()
}

/// Take one request from the window of the rule that applies, or refuse
/// with 429. Costs nothing while the tenant's rate limits are off.
pub async fn check(
    req: &TenantReq,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    peer: Option<ConnectInfo<SocketAddr>>,
) -> ApiResult<()> {
    let s = req.settings();
    let limits = &s.rate_limits;
    if !limits.enabled || limits.rules.is_empty() {
        return Ok(());
    }
    let ip = client_ip(&s.trusted_proxy, headers, peer.map(|c| c.0));
    if limits.excluded_ips.contains(&ip) {
        return Ok(());
    }
    // Who is asking, and which collection: one read.
    let route = collection_route(method, path).map(|(c, tag)| (c.to_string(), tag));
    let h = headers.clone();
    let (who, coll) = req
        .read(move |t, conn| {
            let who = auth::resolve(t, conn, &h)?;
            let coll = match &route {
                Some((c, tag)) => schema::find_collection(conn, c)
                    .ok()
                    .map(|c| (c.id, c.name, *tag)),
                None => None,
            };
            Ok((who, coll))
        })
        .await?;
    if who.as_ref().is_some_and(auth::Auth::is_superuser) {
        return Ok(());
    }
    let tags: Vec<String> = coll
        .iter()
        .flat_map(|(_, name, tag)| [format!("{name}:{tag}"), format!("*:{tag}")])
        .collect();
    let r = Request {
        tags: &tags,
        method: method.as_str(),
        path,
        authenticated: who.is_some(),
    };
    let Some(rule) = find_rule(&limits.rules, &r) else {
        return Ok(());
    };
    // Collection routes count per collection and route (PocketBase's
    // rule id); other paths per rule.
    let id = match &coll {
        Some((cid, _, tag)) => format!("{cid}\0{tag}\0{}", rule.audience),
        None => format!("{}\0{}", rule.label, rule.audience),
    };
    let key = format!("{id}\0{ip}");
    req.limits
        .take(
            &key,
            rule.max_requests,
            rule.duration.max(1) as u64,
            ratelimit::now(),
        )
        .map_err(|RetryAfter(secs)| ApiError::RateLimited(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn collection_routes_and_their_tags() {
        let r = |m: Method, p| collection_route(&m, p);
        assert_eq!(
            r(Method::GET, "/api/collections/posts/records"),
            Some(("posts", "list"))
        );
        assert_eq!(
            r(Method::POST, "/api/collections/posts/records"),
            Some(("posts", "create"))
        );
        assert_eq!(
            r(Method::GET, "/api/collections/posts/records/abc"),
            Some(("posts", "view"))
        );
        assert_eq!(
            r(Method::DELETE, "/api/collections/p/records/abc"),
            Some(("p", "delete"))
        );
        assert_eq!(
            r(Method::POST, "/api/collections/users/auth-with-password"),
            Some(("users", "auth"))
        );
        assert_eq!(r(Method::GET, "/api/collections/posts"), None);
        assert_eq!(r(Method::GET, "/api/health"), None);
    }

    #[test]
    fn the_client_is_the_peer_unless_a_proxy_header_is_trusted() {
        let peer: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "1.1.1.1, 2.2.2.2".parse().unwrap());
        let none = TrustedProxy::default();
        assert_eq!(client_ip(&none, &h, Some(peer)), "10.0.0.9");
        let xff = TrustedProxy {
            headers: vec!["X-Forwarded-For".into()],
            use_leftmost_ip: false,
        };
        assert_eq!(client_ip(&xff, &h, Some(peer)), "2.2.2.2");
        let left = TrustedProxy {
            use_leftmost_ip: true,
            ..xff.clone()
        };
        assert_eq!(client_ip(&left, &h, Some(peer)), "1.1.1.1");
        assert_eq!(client_ip(&xff, &HeaderMap::new(), Some(peer)), "10.0.0.9");
    }
}
