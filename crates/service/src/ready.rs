//! `GET /api/ready`: whether this instance should be sent traffic.
//!
//! `200` `{"ready": true}` when the primary answers and every embedded
//! migration is applied; `503` `{"ready": false, "reason": …}` while the
//! database cannot be reached (or no database thread took the check within
//! the checkout timeout) or migrations are pending (a new version started
//! before its migrations ran). `/api/health-check` is the liveness check:
//! it says the process is up, whatever the migrations.
//!
//! The check runs on the primary's database threads like any request, so
//! an instance whose queue is stuck is not ready either; load shedding
//! never refuses it.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cruddur_db::{Consistency, pending_migrations};
use serde_json::json;

use crate::api::AppState;
use crate::error::ApiError;

/// The readiness check.
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let pending = state
        .blocking(|repo| repo.read(Consistency::Primary, pending_migrations))
        .await;
    match pending {
        Ok(pending) if pending.is_empty() => axum::Json(json!({ "ready": true })).into_response(),
        Ok(pending) => (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({
                "ready": false,
                "reason": format!(
                    "{} migration(s) pending: {}",
                    pending.len(),
                    pending.join(", ")
                ),
            })),
        )
            .into_response(),
        Err(error) => {
            let reason = match &error {
                ApiError::Busy => "the database is busy",
                _ => "the database is unavailable",
            };
            // The cause is logged, not sent (it names hosts), as for any
            // request that fails for the database.
            let mut response = error.into_response();
            *response.status_mut() = StatusCode::SERVICE_UNAVAILABLE;
            *response.body_mut() =
                axum::body::Body::from(json!({ "ready": false, "reason": reason }).to_string());
            response
        }
    }
}
