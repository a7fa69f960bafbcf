//! A tenant's own domain: requests whose `Host` is that domain reach it.
//! The claim is `_strata/domains/<domain>` in the bucket (holding the
//! tenant id), made with a conditional put so two tenants cannot take one
//! domain; lookups are cached on this node.

use super::{Registry, blocking};
use crate::serve::errors::{ApiError, ApiResult};

pub const DOMAINS_PREFIX: &str = "_strata/domains/";

/// A domain as it may appear in a Host header: lowercase, no port.
pub fn normalize_host(host: &str) -> Option<String> {
    let h = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    let h = h.to_ascii_lowercase();
    let ok = (1..=253).contains(&h.len())
        && h.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'.' || b == b'-')
        && !h.starts_with('.')
        && !h.contains("..");
    ok.then_some(h)
}

impl Registry {
    /// The tenant serving `host`, from the domain claims in the bucket.
    pub async fn tenant_for_host(&self, host: &str) -> ApiResult<String> {
        let host = normalize_host(host).ok_or_else(ApiError::not_found)?;
        if let Some(id) = self.domains.lock().get(&host) {
            return Ok(id.clone());
        }
        let store = self.store.clone();
        let key = format!("{DOMAINS_PREFIX}{host}");
        let id = blocking(move || match store.get(&key) {
            Ok(o) => Ok(String::from_utf8_lossy(&o.data).trim().to_string()),
            Err(e) if e.is_not_found() => Err(ApiError::not_found()),
            Err(e) => Err(e.into()),
        })
        .await?;
        self.domains.lock().insert(host, id.clone());
        Ok(id)
    }
}
