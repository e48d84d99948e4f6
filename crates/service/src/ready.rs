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

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use cruddur_db::{Consistency, pending_migrations};
use serde::Serialize;
use utoipa::ToSchema;

use crate::api::AppState;
use crate::error::ApiError;

/// The readiness check's answer.
#[derive(Serialize, ToSchema)]
pub(crate) struct Readiness {
    /// Whether this instance should be sent traffic.
    ready: bool,
    /// Why not, when it is not.
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// 200 when the database answers and no migration is pending.
#[utoipa::path(
    get,
    path = "/api/ready",
    tag = "health",
    responses(
        (status = 200, description = "Ready: the database answers and every migration is applied", body = Readiness),
        (status = 503, description = "Not ready: the database does not answer, or migrations are pending", body = Readiness),
    )
)]
pub(crate) async fn ready(State(state): State<AppState>) -> Response {
    let pending = state
        .blocking(|repo| repo.read(Consistency::Primary, pending_migrations))
        .await;
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Readiness {
                ready: false,
                reason: Some(reason),
            }),
        )
    };
    match pending {
        Ok(pending) if pending.is_empty() => Json(Readiness {
            ready: true,
            reason: None,
        })
        .into_response(),
        Ok(pending) => not_ready(format!(
            "{} migration(s) pending: {}",
            pending.len(),
            pending.join(", ")
        ))
        .into_response(),
        Err(error) => {
            let reason = match &error {
                ApiError::Busy => "the database is busy",
                _ => "the database is unavailable",
            };
            // Answered as the error would be (its cause logged, not sent:
            // it names hosts; a failed statement counted), with the
            // readiness body.
            let answered = error.into_response();
            let mut response = not_ready(reason.to_owned()).into_response();
            response
                .extensions_mut()
                .extend(answered.extensions().clone());
            response
        }
    }
}
