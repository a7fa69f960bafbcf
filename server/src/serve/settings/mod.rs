//! A tenant's settings, as PocketBase 0.40 keeps them: one JSON object in
//! `_params` (row `settings`), read once when the tenant loads and held by
//! the loaded tenant, changed through `PATCH /api/settings`.
//!
//! - this file: the model with PocketBase's defaults, its storage, the
//!   secrets a `GET` leaves out, and PATCH's merge;
//! - [`validate`]: what a PATCH may set (PocketBase's field errors).
//!
//! The row also holds strata's own keys under `strata` (the JWT secret),
//! which no client ever sees or sets. `s3` and `backups` are kept for the
//! SDK's sake but cannot be enabled: a strata tenant's files and backups are
//! its bucket already (validate says so).

pub mod validate;

use crate::serve::errors::{ApiError, ApiResult};
use rusqlite::{Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Settings {
    pub meta: Meta,
    pub logs: Logs,
    pub smtp: Smtp,
    pub s3: S3,
    pub backups: Backups,
    pub batch: Batch,
    pub rate_limits: RateLimits,
    pub trusted_proxy: TrustedProxy,
    #[serde(rename = "superuserIPs")]
    pub superuser_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Meta {
    pub app_name: String,
    #[serde(rename = "appURL")]
    pub app_url: String,
    pub sender_name: String,
    pub sender_address: String,
    pub hide_controls: bool,
    pub accent_color: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Logs {
    pub max_days: i64,
    pub min_level: i64,
    #[serde(rename = "logIP")]
    pub log_ip: bool,
    pub log_auth_id: bool,
    pub max_data_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Smtp {
    pub enabled: bool,
    pub host: String,
    pub port: i64,
    pub username: String,
    /// Write-only: never in a `GET`.
    pub password: String,
    pub auth_method: String,
    pub tls: bool,
    pub local_name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct S3 {
    pub enabled: bool,
    pub bucket: String,
    pub region: String,
    pub endpoint: String,
    pub access_key: String,
    /// Write-only: never in a `GET`.
    pub secret: String,
    pub force_path_style: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Backups {
    pub cron: String,
    pub cron_max_keep: i64,
    pub s3: S3,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Batch {
    pub enabled: bool,
    pub max_requests: i64,
    pub timeout: i64,
    pub max_body_size: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimits {
    pub enabled: bool,
    pub rules: Vec<RateLimitRule>,
    #[serde(rename = "excludedIPs")]
    pub excluded_ips: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct RateLimitRule {
    /// A tag (`users:auth`, `*:create`), a path (`/api/health`, with a
    /// method: `GET /api/health`) or a path prefix (ending in `/`).
    pub label: String,
    /// `""` (everyone), `@guest` or `@auth`.
    pub audience: String,
    /// Seconds per window.
    pub duration: i64,
    pub max_requests: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct TrustedProxy {
    pub headers: Vec<String>,
    #[serde(rename = "useLeftmostIP")]
    pub use_leftmost_ip: bool,
}

impl Default for Meta {
    fn default() -> Self {
        Meta {
            app_name: "Acme".into(),
            app_url: "http://localhost:8090".into(),
            sender_name: "Support".into(),
            sender_address: "support@example.com".into(),
            hide_controls: false,
            accent_color: "#1055c9".into(),
        }
    }
}

impl Default for Logs {
    fn default() -> Self {
        Logs {
            max_days: 5,
            min_level: 0,
            log_ip: true,
            log_auth_id: false,
            max_data_size: 0,
        }
    }
}

impl Default for Smtp {
    fn default() -> Self {
        Smtp {
            enabled: false,
            host: "smtp.example.com".into(),
            port: 587,
            username: String::new(),
            password: String::new(),
            auth_method: String::new(),
            tls: false,
            local_name: String::new(),
        }
    }
}

impl Default for Backups {
    fn default() -> Self {
        Backups {
            cron: String::new(),
            cron_max_keep: 3,
            s3: S3::default(),
        }
    }
}

impl Default for Batch {
    fn default() -> Self {
        Batch {
            enabled: false,
            max_requests: 50,
            timeout: 3,
            max_body_size: 0,
        }
    }
}

impl Default for RateLimits {
    /// PocketBase's rules, disabled as PocketBase ships them (the node's
    /// own `--auth-rate-limit` guards logins either way).
    fn default() -> Self {
        let rule = |label: &str, duration, max_requests| RateLimitRule {
            label: label.into(),
            audience: String::new(),
            duration,
            max_requests,
        };
        RateLimits {
            enabled: false,
            rules: vec![
                rule("*:auth", 3, 2),
                rule("*:create", 5, 20),
                rule("/api/batch", 1, 3),
                rule("/api/", 10, 300),
            ],
            excluded_ips: vec![],
        }
    }
}

/// Where strata's own keys live in the row.
const STRATA_KEY: &str = "strata";

/// The row as stored: the settings' keys plus `strata`.
fn read_row(conn: &Connection) -> ApiResult<Map<String, Value>> {
    let v: Option<String> = conn
        .query_row("SELECT value FROM _params WHERE id = 'settings'", [], |r| {
            r.get(0)
        })
        .optional()?;
    match v.map(|s| serde_json::from_str::<Value>(&s)) {
        Some(Ok(Value::Object(m))) => Ok(m),
        Some(_) => Err(ApiError::internal("_params settings is not a JSON object")),
        None => Err(ApiError::internal("tenant has no settings row in _params")),
    }
}

/// The tenant's JWT secret and settings, read once at load.
pub fn load(conn: &Connection) -> ApiResult<(String, Settings)> {
    let mut row = read_row(conn)?;
    let secret = row
        .get(STRATA_KEY)
        .and_then(|s| s.get("jwtSecret"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| ApiError::internal("tenant has no JWT secret in _params"))?;
    row.remove(STRATA_KEY);
    // Rows written before settings existed hold only `strata`: defaults.
    let settings = serde_json::from_value(Value::Object(row))
        .map_err(|e| ApiError::internal(format!("_params settings: {e}")))?;
    Ok((secret, settings))
}

/// Store `s`, keeping the row's `strata` keys.
pub fn store(conn: &Connection, s: &Settings) -> ApiResult<()> {
    let row = read_row(conn)?;
    let mut v = match serde_json::to_value(s) {
        Ok(Value::Object(m)) => m,
        _ => return Err(ApiError::internal("settings do not serialize to an object")),
    };
    if let Some(strata) = row.get(STRATA_KEY) {
        v.insert(STRATA_KEY.into(), strata.clone());
    }
    conn.execute(
        "UPDATE _params SET value = ?1, updated = ?2 WHERE id = 'settings'",
        rusqlite::params![Value::Object(v).to_string(), crate::serve::schema::now()],
    )?;
    Ok(())
}

impl Settings {
    /// As a `GET` shows them: without the write-only secrets.
    pub fn public(&self) -> Value {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        for p in ["/smtp", "/s3", "/backups/s3"] {
            if let Some(Value::Object(m)) = v.pointer_mut(p) {
                m.remove("password");
                m.remove("secret");
            }
        }
        v
    }

    /// `self` with a PATCH body merged in (objects key by key, anything else
    /// replaced, as PocketBase reads a body onto its settings); a value of
    /// the wrong type is the client's error.
    pub fn merged(&self, patch: &Map<String, Value>) -> ApiResult<Settings> {
        let mut v = serde_json::to_value(self).unwrap_or(Value::Null);
        merge(&mut v, &Value::Object(patch.clone()));
        serde_json::from_value(v).map_err(|e| {
            tracing::debug!(error = %e, "settings patch refused");
            ApiError::bad_request("An error occurred while loading the submitted data.")
        })
    }
}

fn merge(into: &mut Value, patch: &Value) {
    match (into, patch) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in b {
                // Only known keys: anything else is ignored, as in PocketBase.
                if let Some(slot) = a.get_mut(k) {
                    merge(slot, v);
                }
            }
        }
        (slot, v) => *slot = v.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn defaults_are_pocketbases_and_secrets_stay_out_of_a_get() {
        let s = Settings::default();
        let v = s.public();
        assert_eq!(v["rateLimits"]["rules"][0]["label"], "*:auth");
        assert_eq!(v["batch"]["maxRequests"], 50);
        assert_eq!(v["meta"]["appURL"], "http://localhost:8090");
        assert_eq!(v["logs"]["logIP"], true);
        assert!(v["superuserIPs"].is_array());
        let s = s
            .merged(
                json!({"smtp": {"password": "hunter2"}})
                    .as_object()
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(s.smtp.password, "hunter2");
        assert!(s.public()["smtp"].get("password").is_none());
        assert_eq!(s.public()["smtp"]["port"], 587);
    }

    #[test]
    fn a_patch_merges_objects_and_replaces_lists() {
        let s = Settings::default();
        let p = json!({"meta": {"appName": "Chat"}, "rateLimits": {"rules": [], "enabled": true}, "nosuch": 1});
        let m = s.merged(p.as_object().unwrap()).unwrap();
        assert_eq!(m.meta.app_name, "Chat");
        assert_eq!(m.meta.sender_name, "Support");
        assert!(m.rate_limits.enabled && m.rate_limits.rules.is_empty());
        let bad = json!({"batch": {"maxRequests": "many"}});
        assert!(s.merged(bad.as_object().unwrap()).is_err());
    }
}
