//! What a settings PATCH may set, with PocketBase's field errors
//! (`{"meta": {"appURL": {"code": "validation_is_url", ...}}}`), plus what
//! does not apply to a strata tenant (`s3`, `backups`): its files and its
//! history are in the node's bucket already.

use super::{RateLimitRule, S3, Settings};
use crate::serve::records::values;
use serde_json::{Map, Value, json};

fn err(code: &str, message: impl Into<String>) -> Value {
    json!({"code": code, "message": message.into()})
}

fn required() -> Value {
    err("validation_required", "Cannot be blank.")
}

/// Errors of one object, keyed by field (nested objects for nested fields).
#[derive(Default)]
struct Errors(Map<String, Value>);

impl Errors {
    fn set(&mut self, key: &str, e: Value) {
        self.0.entry(key).or_insert(e);
    }
    fn nest(&mut self, key: &str, inner: Errors) {
        if !inner.0.is_empty() {
            self.0.insert(key.into(), Value::Object(inner.0));
        }
    }
}

/// Whether `s` is an absolute http(s) URL with a host.
fn is_url(s: &str) -> bool {
    let Some((scheme, rest)) = s.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https")
        && !host.is_empty()
        && !s.chars().any(char::is_whitespace)
}

fn is_host(s: &str) -> bool {
    s.is_empty() || crate::serve::tenants::normalize_host(s).is_ok()
}

fn length(e: &mut Errors, key: &str, v: &str, max: usize) {
    if v.trim().is_empty() {
        e.set(key, required());
    } else if v.chars().count() > max {
        e.set(
            key,
            err(
                "validation_length_out_of_range",
                format!("The length must be between 1 and {max}."),
            ),
        );
    }
}

fn min(e: &mut Errors, key: &str, v: i64, least: i64) {
    if v < least {
        e.set(
            key,
            err(
                "validation_min_greater_equal_than_required",
                format!("Must be no less than {least}."),
            ),
        );
    }
}

fn not_applicable(e: &mut Errors, s3: &S3, what: &str) {
    if s3.enabled {
        e.set(
            "enabled",
            err(
                "validation_not_applicable",
                format!(
                    "strata keeps a tenant's {what} in the node's bucket; S3 settings do not apply."
                ),
            ),
        );
    }
}

/// PocketBase's label syntax: a tag (`name`, `coll:action`, `*:action`), a
/// path (`/api/x`) or a method and a path (`GET /api/x`).
pub fn valid_label(l: &str) -> bool {
    let word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
    let path = |s: &str| {
        s.starts_with('/')
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-'))
    };
    if let Some((m, p)) = l.split_once(' ') {
        return word(m) && path(p);
    }
    if let Some((a, b)) = l.split_once(':') {
        return (a == "*" || word(a)) && word(b);
    }
    path(l) || word(l)
}

fn rules(rules: &[RateLimitRule], enabled: bool) -> Errors {
    let mut e = Errors::default();
    if enabled && rules.is_empty() {
        e.set("rules", required());
        return e;
    }
    let mut each = Errors::default();
    let mut seen: Vec<String> = Vec::new();
    for (i, r) in rules.iter().enumerate() {
        let mut re = Errors::default();
        if r.label.is_empty() {
            re.set("label", required());
        } else if !valid_label(&r.label) {
            re.set(
                "label",
                err("validation_match_invalid", "Must be in a valid format."),
            );
        }
        if r.max_requests == 0 {
            re.set("maxRequests", required());
        }
        min(&mut re, "maxRequests", r.max_requests, 1);
        if r.duration == 0 {
            re.set("duration", required());
        }
        min(&mut re, "duration", r.duration, 1);
        if !matches!(r.audience.as_str(), "" | "@guest" | "@auth") {
            re.set(
                "audience",
                err("validation_in_invalid", "Must be a valid value."),
            );
        }
        // One rule per label and audience (PocketBase compares prefixes of
        // `label@@audience`, so `/api/` and `/api/x` may both exist).
        let key = format!("{}@@{}", r.label, r.audience);
        if seen
            .iter()
            .any(|k| k.starts_with(&key) || key.starts_with(k.as_str()))
        {
            re.set(
                "label",
                json!({"code": "validation_conflicting_rate_limit_rule",
                       "message": format!("Rate limit rule configuration with label {} already exists or conflicts with another rule.", r.label),
                       "params": {"label": r.label}}),
            );
        } else {
            seen.push(key);
        }
        each.nest(&i.to_string(), re);
    }
    e.nest("rules", each);
    e
}

/// `Ok` or PocketBase's nested field errors.
pub fn check(s: &Settings) -> Result<(), Value> {
    let mut all = Errors::default();

    let mut meta = Errors::default();
    length(&mut meta, "appName", &s.meta.app_name, 255);
    if s.meta.app_url.trim().is_empty() {
        meta.set("appURL", required());
    } else if !is_url(&s.meta.app_url) {
        meta.set("appURL", err("validation_is_url", "Must be a valid URL."));
    }
    length(&mut meta, "senderName", &s.meta.sender_name, 255);
    if s.meta.sender_address.trim().is_empty() {
        meta.set("senderAddress", required());
    } else if !values::is_email(&s.meta.sender_address) {
        meta.set(
            "senderAddress",
            err("validation_is_email", "Must be a valid email address."),
        );
    }
    all.nest("meta", meta);

    let mut logs = Errors::default();
    min(&mut logs, "maxDays", s.logs.max_days, 0);
    min(&mut logs, "maxDataSize", s.logs.max_data_size, 0);
    all.nest("logs", logs);

    let mut smtp = Errors::default();
    if s.smtp.enabled && s.smtp.host.trim().is_empty() {
        smtp.set("host", required());
    } else if !is_host(&s.smtp.host) {
        smtp.set(
            "host",
            err("validation_is_host", "Must be a valid hostname."),
        );
    }
    if s.smtp.enabled && s.smtp.port == 0 {
        smtp.set("port", required());
    }
    min(&mut smtp, "port", s.smtp.port, 0);
    if !matches!(s.smtp.auth_method.as_str(), "" | "PLAIN" | "LOGIN") {
        smtp.set(
            "authMethod",
            err("validation_in_invalid", "Must be a valid value."),
        );
    }
    if !is_host(&s.smtp.local_name) {
        smtp.set(
            "localName",
            err("validation_is_host", "Must be a valid hostname."),
        );
    }
    all.nest("smtp", smtp);

    let mut s3 = Errors::default();
    not_applicable(&mut s3, &s.s3, "files");
    all.nest("s3", s3);

    let mut backups = Errors::default();
    if !s.backups.cron.trim().is_empty() {
        backups.set(
            "cron",
            err(
                "validation_not_applicable",
                "strata keeps every transaction of a tenant in the bucket (any point in time can be restored); scheduled backups do not apply.",
            ),
        );
    }
    min(&mut backups, "cronMaxKeep", s.backups.cron_max_keep, 1);
    let mut bs3 = Errors::default();
    not_applicable(&mut bs3, &s.backups.s3, "backups");
    backups.nest("s3", bs3);
    all.nest("backups", backups);

    let mut batch = Errors::default();
    if s.batch.enabled && s.batch.max_requests == 0 {
        batch.set("maxRequests", required());
    }
    min(&mut batch, "maxRequests", s.batch.max_requests, 0);
    if s.batch.enabled && s.batch.timeout == 0 {
        batch.set("timeout", required());
    }
    min(&mut batch, "timeout", s.batch.timeout, 0);
    min(&mut batch, "maxBodySize", s.batch.max_body_size, 0);
    all.nest("batch", batch);

    all.nest(
        "rateLimits",
        rules(&s.rate_limits.rules, s.rate_limits.enabled),
    );

    if all.0.is_empty() {
        Ok(())
    } else {
        Err(Value::Object(all.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn errors(patch: Value) -> Value {
        let s = Settings::default()
            .merged(patch.as_object().unwrap())
            .unwrap();
        check(&s).err().unwrap_or(Value::Null)
    }

    #[test]
    fn the_defaults_pass_and_mistakes_are_named_per_field() {
        assert_eq!(check(&Settings::default()), Ok(()));
        let e =
            errors(json!({"meta": {"appName": "", "appURL": "not a url", "senderAddress": "@"}}));
        assert_eq!(e["meta"]["appName"]["code"], "validation_required");
        assert_eq!(e["meta"]["appURL"]["code"], "validation_is_url");
        assert_eq!(e["meta"]["senderAddress"]["code"], "validation_is_email");
        let e =
            errors(json!({"logs": {"maxDays": -1}, "batch": {"enabled": true, "maxRequests": 0}}));
        assert_eq!(
            e["logs"]["maxDays"]["code"],
            "validation_min_greater_equal_than_required"
        );
        assert_eq!(e["batch"]["maxRequests"]["code"], "validation_required");
        let e = errors(json!({"s3": {"enabled": true}, "backups": {"cron": "0 0 * * *"}}));
        assert_eq!(e["s3"]["enabled"]["code"], "validation_not_applicable");
        assert_eq!(e["backups"]["cron"]["code"], "validation_not_applicable");
    }

    #[test]
    fn rate_limit_rules_as_pocketbase_checks_them() {
        for l in [
            "*:auth",
            "users:create",
            "/api/",
            "/",
            "GET /api/health",
            "tag_1",
            "POST /api/collections/",
        ] {
            assert!(valid_label(l), "{l}");
        }
        for l in [
            "", "a b c", "GET api", "*:", ":x", "/api/?x", "x:y:z", "**:auth",
        ] {
            assert!(!valid_label(l), "{l}");
        }
        let e = errors(json!({"rateLimits": {"enabled": true, "rules": [
            {"label": "/api/", "duration": 1, "maxRequests": 1},
            {"label": "/api/", "duration": 1, "maxRequests": 1},
            {"label": "x y", "duration": 0, "maxRequests": -1, "audience": "@nobody"},
        ]}}));
        let r = &e["rateLimits"]["rules"];
        assert!(r.get("0").is_none());
        assert_eq!(
            r["1"]["label"]["code"],
            "validation_conflicting_rate_limit_rule"
        );
        assert_eq!(r["2"]["label"]["code"], "validation_match_invalid");
        assert_eq!(r["2"]["duration"]["code"], "validation_required");
        assert_eq!(
            r["2"]["maxRequests"]["code"],
            "validation_min_greater_equal_than_required"
        );
        assert_eq!(r["2"]["audience"]["code"], "validation_in_invalid");
        let e = errors(json!({"rateLimits": {"enabled": true, "rules": []}}));
        assert_eq!(e["rateLimits"]["rules"]["code"], "validation_required");
    }
}
