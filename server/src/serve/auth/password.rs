//! Password hashing with bcrypt, off the database connections and on a
//! bounded pool: at most one hash or check per core runs at once, so a
//! burst of logins cannot take every blocking thread, and a request waiting
//! for a hash holds no connection, so the tenant's reads go on meanwhile.

use crate::serve::errors::{ApiError, ApiResult};
use std::sync::LazyLock;
use tokio::sync::Semaphore;

/// PocketBase's default cost (Go's `bcrypt.DefaultCost`; a password field's
/// `cost` option of 0). Existing hashes are checked with their own cost.
pub const COST: u32 = 10;

/// bcrypt's input limit: a longer password would be cut silently.
pub const MAX_BYTES: usize = 72;

static SLOTS: LazyLock<Semaphore> =
    LazyLock::new(|| Semaphore::new(std::thread::available_parallelism().map_or(2, |n| n.get())));

/// A stand-in hash of cost [`COST`] to check a password against when the
/// identity is unknown, so that a failed login takes as long either way.
static DUMMY: LazyLock<String> =
    LazyLock::new(|| bcrypt::hash("strata-no-such-identity", COST).unwrap_or_default());

async fn on_pool<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> ApiResult<R> {
    let _slot = SLOTS
        .acquire()
        .await
        .map_err(|_| ApiError::internal("password pool closed"))?;
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::internal(format!("password worker failed: {e}")))
}

/// Hash a new password (blocking: tenant creation runs off the runtime).
pub fn hash_blocking(password: &str) -> ApiResult<String> {
    bcrypt::hash(password, COST).map_err(|e| ApiError::internal(format!("bcrypt: {e}")))
}

/// Hash a new password on the pool.
pub async fn hash(password: String) -> ApiResult<String> {
    on_pool(move || hash_blocking(&password)).await?
}

/// Whether `password` matches `hash`; `None` checks against a stand-in
/// hash and is always false. An unreadable hash never matches.
pub async fn verify(password: String, hash: Option<String>) -> ApiResult<bool> {
    on_pool(move || match hash {
        Some(h) => bcrypt::verify(&password, &h).unwrap_or(false),
        None => {
            let _ = bcrypt::verify(&password, &DUMMY);
            false
        }
    })
    .await
}
