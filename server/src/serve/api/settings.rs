//! `/api/settings` (superusers): the tenant's settings as PocketBase shows
//! them (without secrets), and PATCH, which merges a partial body, checks
//! the result and stores it in the same transaction.

use super::TenantReq;
use super::body::body_json;
use crate::serve::auth::require_superuser;
use crate::serve::errors::{ApiError, ApiResult};
use crate::serve::settings::{self, validate};
use axum::extract::rejection::BytesRejection;
use axum::http::HeaderMap;
use axum::{Extension, Json};
use serde_json::Value;

pub async fn view(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
) -> ApiResult<Json<Value>> {
    req.read(move |t, conn| {
        require_superuser(t, conn, &headers)?;
        Ok(Json(t.settings().public()))
    })
    .await
}

pub async fn update(
    Extension(req): Extension<TenantReq>,
    headers: HeaderMap,
    body: Result<axum::body::Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let patch = body_json(body).map_err(|_| {
        ApiError::bad_request("An error occurred while loading the submitted data.")
    })?;
    let (new, _) = req
        .write(move |t, conn| {
            require_superuser(t, conn, &headers)?;
            // From the row, not the loaded copy: two PATCHes in a row merge.
            let (_, current) = settings::load(conn)?;
            let new = current.merged(&patch)?;
            validate::check(&new).map_err(|data| {
                ApiError::validation("An error occurred while saving the new settings.", data)
            })?;
            settings::store(conn, &new)?;
            Ok(new)
        })
        .await?;
    let shown = new.public();
    req.set_settings(new);
    Ok(Json(shown))
}
