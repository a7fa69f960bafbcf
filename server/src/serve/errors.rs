//! The one mapping from failures to HTTP: engine error kinds, SQLite errors
//! and the server's own errors become a status and PocketBase's error shape
//! `{"status": 400, "message": "...", "data": {}}`. Nothing else in the
//! server picks a status for an engine error.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use strata_vfs::ErrorKind;

/// How long a client should wait before retrying a 503.
const RETRY_AFTER_SECS: &str = "5";

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// A client-facing error with PocketBase's message and field details.
    #[error("{status}: {message}")]
    Http {
        status: StatusCode,
        message: String,
        data: Value,
    },
    #[error(transparent)]
    Engine(#[from] strata_vfs::Error),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error(transparent)]
    Filter(#[from] crate::serve::query::filter::FilterError),
    /// A domain that cannot be claimed (400).
    #[error(transparent)]
    Host(#[from] crate::serve::tenants::HostError),
    /// A body that claims multipart but is not (400).
    #[error(transparent)]
    Multipart(#[from] crate::serve::api::body::MultipartError),
    /// A rate limit's window is used up (429), for this many seconds.
    #[error("rate limited for {0} s")]
    RateLimited(u64),
    /// The tenant's database is held by another node or writer (503: the
    /// cluster routes there, a client retries).
    #[error("held elsewhere: {0}")]
    Held(String),
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Http {
            status,
            message: message.into(),
            data: json!({}),
        }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 400 with per-field validation errors, as PocketBase reports them.
    pub fn validation(message: impl Into<String>, data: Value) -> Self {
        ApiError::Http {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            data,
        }
    }
    pub fn not_found() -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "The requested resource wasn't found.",
        )
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }
    pub fn forbidden() -> Self {
        Self::new(
            StatusCode::FORBIDDEN,
            "Only superusers can perform this action.",
        )
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Http { status, .. } => *status,
            ApiError::Engine(e) => engine_status(e.kind()),
            ApiError::Sqlite(e) => sqlite_status(e),
            ApiError::Filter(_) | ApiError::Host(_) | ApiError::Multipart(_) => {
                StatusCode::BAD_REQUEST
            }
            ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Held(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

fn engine_status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Corrupt => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
    }
}

/// SQLite codes carry the engine's kinds back (`sqlite_code` in the VFS):
/// Unavailable is SQLITE_BUSY (refused before its commit point), SQLITE_IOERR
/// or SQLITE_CANTOPEN; Conflict is SQLITE_READONLY; Full is SQLITE_FULL.
fn sqlite_status(e: &rusqlite::Error) -> StatusCode {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DatabaseBusy | C::DatabaseLocked | C::SystemIoFailure | C::CannotOpen) => {
            StatusCode::SERVICE_UNAVAILABLE
        }
        Some(C::ReadOnly) => StatusCode::CONFLICT,
        Some(C::ConstraintViolation) => StatusCode::BAD_REQUEST,
        Some(C::DiskFull) => StatusCode::INSUFFICIENT_STORAGE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ApiError {
    /// The message and data a client sees. Internal details (an engine or
    /// SQLite error's text) are not among them.
    fn client_view(&self) -> (String, Value) {
        match self {
            ApiError::Http { message, data, .. } => (message.clone(), data.clone()),
            ApiError::Filter(e) => (
                format!("Invalid filter or sort parameters: {e}."),
                json!({}),
            ),
            ApiError::Multipart(e) => (e.to_string(), json!({})),
            ApiError::RateLimited(_) => ("Too Many Requests.".into(), json!({})),
            ApiError::Held(_) => (
                "The tenant is being moved between nodes, retry.".into(),
                json!({}),
            ),
            ApiError::Host(e) => (
                format!("{e}."),
                json!({"domain": {"code": "validation_invalid_domain", "message": e.to_string()}}),
            ),
            _ => {
                let msg = match self.status() {
                    StatusCode::SERVICE_UNAVAILABLE => {
                        "The storage is temporarily unavailable, retry later."
                    }
                    StatusCode::NOT_FOUND => "The requested resource wasn't found.",
                    StatusCode::CONFLICT => "The resource is held or was changed elsewhere.",
                    _ => "Something went wrong while processing your request.",
                };
                (msg.to_string(), json!({}))
            }
        }
    }

    /// The client's own mistake (told to it, not logged as a failure).
    fn is_clients(&self) -> bool {
        matches!(
            self,
            ApiError::Http { .. }
                | ApiError::Filter(_)
                | ApiError::Host(_)
                | ApiError::Multipart(_)
                | ApiError::RateLimited(_)
        )
    }

    /// The body a client gets for this error (`{status, message, data}`),
    /// for answers nested in another (a batch's failed request); internal
    /// causes are logged here, as [`IntoResponse`] does.
    pub fn client_body(&self) -> Value {
        if !self.is_clients() {
            tracing::warn!(error = %self, status = %self.status(), "request failed");
        }
        let (message, data) = self.client_view();
        json!({"status": self.status().as_u16(), "message": message, "data": data})
    }

    /// The same answer for another request (one error failing several
    /// requests, as a shared commit does). The cause is logged once, here.
    pub fn again(&self) -> ApiError {
        if let ApiError::RateLimited(secs) = self {
            return ApiError::RateLimited(*secs);
        }
        if !self.is_clients() {
            tracing::warn!(error = %self, status = %self.status(), "request failed");
        }
        let (message, data) = self.client_view();
        ApiError::Http {
            status: self.status(),
            message,
            data,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if !self.is_clients() {
            // Internal details go to the log, not to the client.
            tracing::warn!(error = %self, %status, "request failed");
        }
        let (message, data) = self.client_view();
        let body = json!({"status": status.as_u16(), "message": message, "data": data});
        let mut resp = (status, axum::Json(body)).into_response();
        if let ApiError::RateLimited(secs) = self {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        } else if status == StatusCode::SERVICE_UNAVAILABLE {
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        resp
    }
}
