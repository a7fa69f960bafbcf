//! HS256 JSON Web Tokens with `exp`: signed and verified here, with the
//! key the caller gives (the tenant's secret plus the record's `tokenKey`).

use crate::serve::errors::{ApiError, ApiResult};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{KeyInit, Mac};
use serde_json::Value;
use std::time::{SystemTime, UNIX_EPOCH};

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn mac(key: &str, msg: &str) -> Option<HmacSha256> {
    let mut m = HmacSha256::new_from_slice(key.as_bytes()).ok()?;
    m.update(msg.as_bytes());
    Some(m)
}

pub fn sign(claims: &Value, key: &str) -> ApiResult<String> {
    let head = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let body = B64.encode(claims.to_string());
    let msg = format!("{head}.{body}");
    let sig = mac(key, &msg)
        .ok_or_else(|| ApiError::internal("bad signing key"))?
        .finalize()
        .into_bytes();
    Ok(format!("{msg}.{}", B64.encode(sig)))
}

/// The claims of a token, unverified (to find the key that verifies it).
pub fn peek(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, body) = (parts.next()?, parts.next()?);
    serde_json::from_slice(&B64.decode(body).ok()?).ok()
}

/// The claims if the signature is valid (HS256 only) and `exp` is in the future.
pub fn verify(token: &str, key: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (head, body, sig) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() {
        return None;
    }
    let header: Value = serde_json::from_slice(&B64.decode(head).ok()?).ok()?;
    if header["alg"] != "HS256" {
        return None;
    }
    let sig = B64.decode(sig).ok()?;
    mac(key, &format!("{head}.{body}"))?
        .verify_slice(&sig)
        .ok()?;
    let claims: Value = serde_json::from_slice(&B64.decode(body).ok()?).ok()?;
    (claims["exp"].as_u64()? > unix_now()).then_some(claims)
}
