//! A tenant's own domain: requests whose `Host` is that domain reach it.
//! The claim is `_strata/domains/<domain>` in the bucket (holding the
//! tenant id), made with a conditional put so two tenants cannot take one
//! domain; lookups are cached on this node.

use super::{Registry, blocking};
use crate::serve::errors::{ApiError, ApiResult};

pub const DOMAINS_PREFIX: &str = "_strata/domains/";

/// Why a host name is not one a tenant may claim or be reached by.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    #[error("host {0:?} is not a valid DNS name")]
    Invalid(String),
    #[error("host {0:?} is an IP address, not a domain")]
    Address(String),
}

/// A host name as DNS compares it, the one spelling both a domain claim and
/// a request's `Host` are turned into: without a port and a trailing dot,
/// IDNA to ASCII (`Bücher.Example` → `xn--bcher-kva.example`), lowercase.
/// IP literals come back as they are (lowercase, bracketless); callers
/// tell them apart with [`is_address`].
pub fn normalize_host(host: &str) -> Result<String, HostError> {
    let bad = || HostError::Invalid(host.chars().take(300).collect());
    let host = host.trim();
    // `[v6]` or `[v6]:port`.
    if let Some(rest) = host.strip_prefix('[') {
        let (v6, tail) = rest.split_once(']').ok_or_else(bad)?;
        let port_ok = tail.is_empty()
            || tail
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        let ip: std::net::Ipv6Addr = v6.parse().map_err(|_| bad())?;
        return if port_ok {
            Ok(ip.to_string())
        } else {
            Err(bad())
        };
    }
    let name = match host.rsplit_once(':') {
        Some((h, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => h,
        Some(_) => return Err(bad()),
        None => host,
    };
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() || name.len() > 253 * 4 {
        return Err(bad());
    }
    let ascii = idna::domain_to_ascii(name).map_err(|_| bad())?;
    let ok = (1..=253).contains(&ascii.len())
        && ascii.split('.').all(|label| {
            (1..=63).contains(&label.len())
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        });
    if ok { Ok(ascii) } else { Err(bad()) }
}

/// An IPv4 or IPv6 literal (as [`normalize_host`] returns them).
pub fn is_address(host: &str) -> bool {
    host.parse::<std::net::IpAddr>().is_ok()
}

/// A domain a tenant may claim, normalized; an address or a name that is not
/// DNS's is refused.
pub fn claimable_domain(domain: &str) -> Result<String, HostError> {
    let d = normalize_host(domain)?;
    if is_address(&d)
        || d.split('.')
            .next_back()
            .is_some_and(|tld| tld.bytes().all(|b| b.is_ascii_digit()))
    {
        return Err(HostError::Address(domain.chars().take(300).collect()));
    }
    Ok(d)
}

impl Registry {
    /// The tenant serving `host`, from the domain claims in the bucket.
    pub async fn tenant_for_host(&self, host: &str) -> ApiResult<String> {
        let host = normalize_host(host).map_err(|_| ApiError::not_found())?;
        if is_address(&host) {
            return Err(ApiError::not_found());
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_of_one_name_is_one_key() {
        for h in [
            "shop.example.com",
            "Shop.Example.COM",
            "shop.example.com.",
            "SHOP.example.com.:8080",
            "shop.example.com:443",
            " shop.example.com ",
        ] {
            assert_eq!(normalize_host(h).as_deref(), Ok("shop.example.com"), "{h}");
        }
        for h in [
            "bücher.example",
            "BÜCHER.example.",
            "xn--bcher-kva.example",
            "XN--BCHER-KVA.example:80",
        ] {
            assert_eq!(
                normalize_host(h).as_deref(),
                Ok("xn--bcher-kva.example"),
                "{h}"
            );
        }
        assert_eq!(normalize_host("[::1]:8090").as_deref(), Ok("::1"));
        assert_eq!(normalize_host("127.0.0.1:8090").as_deref(), Ok("127.0.0.1"));
    }

    #[test]
    fn what_is_not_a_dns_name_is_refused() {
        for h in [
            "",
            ".",
            "a..b",
            ".a.com",
            "a.com..",
            "exa mple.com",
            "a_b.com",
            "-a.com",
            "a-.com",
            "a.com:port",
            "a.com:",
            "[::1",
            "[zz]:80",
            "a/b.com",
            "a\0.com",
            "a.com:80:80",
            &"a".repeat(64),
            &format!("{}.com", "a.".repeat(130)),
        ] {
            assert!(normalize_host(h).is_err(), "{h:?} accepted");
        }
        for d in ["127.0.0.1", "[::1]", "10.0.0.1:80", "1.2.3.4."] {
            assert!(
                matches!(claimable_domain(d), Err(HostError::Address(_))),
                "{d}"
            );
        }
        assert_eq!(
            claimable_domain("Shop.Example.com.").as_deref(),
            Ok("shop.example.com")
        );
    }
}
