//! The health check, as the original's: `{"success": true, "ver": 1}`.

use axum::Json;
use axum::extract::State;
use cruddur_db::Repository;
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::error::{ApiError, ErrorBody};

/// The health check's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Health {
    /// Always `true`.
    success: bool,
    /// Always `1`.
    ver: u32,
}

/// 200 once the database answers.
#[utoipa::path(
    get,
    path = "/api/health-check",
    tag = "health",
    responses(
        (status = 200, description = "The service is up and its database answers", body = Health),
        (status = 503, description = "The database does not answer", body = ErrorBody),
    )
)]
pub(crate) async fn health(State(state): State<AppState>) -> Result<Json<Health>, ApiError> {
    state.blocking(Repository::ping).await?;
    Ok(Json(Health {
        success: true,
        ver: 1,
    }))
}
