//! Rate limits, as PocketBase counts them: fixed windows per rule and client
//! key. A window holds `maxRequests` tokens; a request takes one; once
//! `duration` seconds have passed since the last request taken, it is full
//! again. A refused request gets 429 with `Retry-After` (which PocketBase
//! leaves out).
//!
//! Which rule applies ([`find_rule`]) is PocketBase's lookup: the labels of a
//! request, most specific first (`posts:create`, `*:create`, `POST
//! /api/...`, `/api/...`), each tried against every rule's label for an
//! exact match, then (for the path labels) against the rules that are path
//! prefixes (ending in `/`); the first hit wins, if its audience fits.
//!
//! The same windows count failed logins per identity for the node's own
//! guard (`--auth-failures`), which no tenant setting turns off.

use crate::serve::settings::RateLimitRule;
use parking_lot::Mutex;
use std::collections::HashMap;

/// Clients tracked per limiter before expired windows are swept; past it
/// even live windows go (a flood of new keys cannot grow memory).
const MAX_WINDOWS: usize = 50_000;

#[derive(Debug, Clone, Copy)]
struct Window {
    available: i64,
    /// Unix seconds of the last request taken.
    last: u64,
    interval: u64,
}

/// Unix seconds now (windows count whole seconds, as PocketBase's).
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The windows of one tenant's rules (or of one guard).
#[derive(Debug, Default)]
pub struct Limiter {
    windows: Mutex<HashMap<String, Window>>,
}

/// The seconds until a refused client may try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub u64);

impl Limiter {
    /// Take one request of `key` (rule id + client) from a window of `max`
    /// per `interval` seconds, at unix time `now`.
    pub fn take(&self, key: &str, max: i64, interval: u64, now: u64) -> Result<(), RetryAfter> {
        let mut w = self.windows.lock();
        if w.len() >= MAX_WINDOWS && !w.contains_key(key) {
            w.retain(|_, v| now.saturating_sub(v.last) < v.interval);
            if w.len() >= MAX_WINDOWS {
                w.clear();
            }
        }
        let win = w.entry(key.to_string()).or_insert(Window {
            available: max,
            last: now,
            interval,
        });
        if now.saturating_sub(win.last) >= win.interval {
            win.available = max;
        }
        if win.available > 0 {
            win.available -= 1;
            win.last = now;
            Ok(())
        } else {
            Err(RetryAfter(
                (win.last + win.interval).saturating_sub(now).max(1),
            ))
        }
    }

    /// Whether `key` has no request left in its window (without taking one).
    pub fn exhausted(&self, key: &str, now: u64) -> Option<RetryAfter> {
        let w = self.windows.lock();
        let win = w.get(key)?;
        let open = now.saturating_sub(win.last) < win.interval;
        (open && win.available <= 0)
            .then(|| RetryAfter((win.last + win.interval).saturating_sub(now).max(1)))
    }

    pub fn clear(&self) {
        self.windows.lock().clear();
    }

    pub fn len(&self) -> usize {
        self.windows.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What a request is, for the rules: its labels, most specific first, and
/// whether its caller is authenticated.
pub struct Request<'a> {
    /// `posts:create`-style tags of a collection route, the collection's
    /// name first and then `*`.
    pub tags: &'a [String],
    pub method: &'a str,
    /// The path as the tenant sees it (`/api/...`, without `/t/<id>`).
    pub path: &'a str,
    pub authenticated: bool,
}

/// The rule for `req`, as PocketBase picks it.
pub fn find_rule<'r>(rules: &'r [RateLimitRule], req: &Request) -> Option<&'r RateLimitRule> {
    let audience_ok = |r: &RateLimitRule| match r.audience.as_str() {
        "" => true,
        "@auth" => req.authenticated,
        "@guest" => !req.authenticated,
        _ => false,
    };
    let method_path = format!("{} {}", req.method, req.path);
    let labels = req
        .tags
        .iter()
        .map(String::as_str)
        .chain([method_path.as_str(), req.path]);
    for label in labels {
        if let Some(r) = rules.iter().find(|r| r.label == label && audience_ok(r)) {
            return Some(r);
        }
        let is_path = label.starts_with('/') || label.contains(" /");
        if is_path
            && let Some(r) = rules.iter().find(|r| {
                r.label.ends_with('/')
                    && format!("{label}/").starts_with(&r.label)
                    && audience_ok(r)
            })
        {
            return Some(r);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(label: &str, audience: &str, duration: i64, max: i64) -> RateLimitRule {
        RateLimitRule {
            label: label.into(),
            audience: audience.into(),
            duration,
            max_requests: max,
        }
    }

    #[test]
    fn a_window_refills_a_duration_after_its_last_request() {
        let l = Limiter::default();
        assert_eq!(l.take("k", 2, 3, 100), Ok(()));
        assert_eq!(l.take("k", 2, 3, 101), Ok(()));
        assert_eq!(l.take("k", 2, 3, 102), Err(RetryAfter(2)));
        assert_eq!(l.exhausted("k", 102), Some(RetryAfter(2)));
        // Refused requests do not move the window.
        assert_eq!(l.take("k", 2, 3, 103), Err(RetryAfter(1)));
        assert_eq!(l.take("k", 2, 3, 104), Ok(()));
        // Other keys are apart.
        assert_eq!(l.take("other", 1, 3, 104), Ok(()));
        assert_eq!(l.take("other", 1, 3, 104), Err(RetryAfter(3)));
        assert_eq!(l.exhausted("nobody", 104), None);
    }

    #[test]
    fn a_flood_of_keys_stays_bounded() {
        let l = Limiter::default();
        for i in 0..(MAX_WINDOWS + 10) {
            let _ = l.take(&format!("ip{i}"), 1, 1, i as u64 / 1000);
        }
        assert!(l.len() <= MAX_WINDOWS);
    }

    #[test]
    fn the_most_specific_label_wins_then_path_prefixes() {
        let rules = vec![
            rule("*:auth", "", 3, 2),
            rule("users:auth", "", 60, 5),
            rule("*:create", "@guest", 5, 20),
            rule("GET /api/health", "", 1, 1),
            // Prefixes are tried in the rules' order (the first that fits).
            rule("/api/collections/", "@auth", 10, 100),
            rule("/api/", "", 10, 300),
        ];
        let tags = |c: &str, t: &str| vec![format!("{c}:{t}"), format!("*:{t}")];
        let req = |tags: &[String], m: &'static str, p: &'static str, a: bool| -> Option<String> {
            let r = Request {
                tags,
                method: m,
                path: p,
                authenticated: a,
            };
            find_rule(&rules, &r).map(|r| r.label.clone())
        };
        let auth = "/api/collections/users/auth-with-password";
        assert_eq!(
            req(&tags("users", "auth"), "POST", auth, false).as_deref(),
            Some("users:auth")
        );
        assert_eq!(
            req(&tags("admins", "auth"), "POST", auth, false).as_deref(),
            Some("*:auth")
        );
        let recs = "/api/collections/posts/records";
        assert_eq!(
            req(&tags("posts", "create"), "POST", recs, false).as_deref(),
            Some("*:create")
        );
        // The guest-only rule does not apply to a user: the prefixes then.
        assert_eq!(
            req(&tags("posts", "create"), "POST", recs, true).as_deref(),
            Some("/api/collections/")
        );
        assert_eq!(
            req(&tags("posts", "list"), "GET", recs, false).as_deref(),
            Some("/api/")
        );
        assert_eq!(
            req(&[], "GET", "/api/health", false).as_deref(),
            Some("GET /api/health")
        );
        assert_eq!(
            req(&[], "POST", "/api/health", false).as_deref(),
            Some("/api/")
        );
        assert_eq!(req(&[], "GET", "/other", false), None);
        // A prefix matches the path itself without its slash.
        assert_eq!(req(&[], "GET", "/api", false).as_deref(), Some("/api/"));
    }
}
