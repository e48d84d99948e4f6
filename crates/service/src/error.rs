//! Every failure as a status and a JSON body: no handler answers with plain
//! text, and none with a 500 for bad input.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A request that failed, and how to answer it.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `{"error": …}`: a malformed body, query or header.
    BadRequest(String),
    /// 401 `{}`: a post without a valid token (as the original answered).
    Unauthorized,
    /// 403 `{"error": …}`: a valid token whose user is not in the database.
    Forbidden(String),
    /// 404 `{"error": "not found"}`.
    NotFound,
    /// 405 `{"error": "method not allowed"}`.
    MethodNotAllowed,
    /// 408 `{"error": …}`: a body that did not arrive within the body
    /// timeout.
    BodyTimeout,
    /// 413 `{"error": …}`: a body over [`crate::api::MAX_BODY_BYTES`].
    PayloadTooLarge,
    /// 415 `{"error": …}`: a body that is not `application/json`.
    UnsupportedMediaType,
    /// 422 `["code", …]`: every failing validation code.
    Invalid(Vec<&'static str>),
    /// 503 `{"error": "the database is unavailable"}`; the cause is logged,
    /// not sent (it names hosts).
    Unavailable(cruddur_db::Error),
    /// 503 `{"error": "the database is busy"}`: no connection freed up
    /// within the pool's checkout timeout.
    Busy,
    /// 500 `{"error": "internal error"}`; the cause is logged.
    Internal(String),
}

impl From<cruddur_db::Error> for ApiError {
    fn from(e: cruddur_db::Error) -> Self {
        use cruddur_db::Error as E;
        match e {
            E::Validation(_) => ApiError::Invalid(e.validation_codes()),
            E::UserNotFound { .. } => ApiError::Invalid(vec!["user_not_found"]),
            E::InvalidPageSize { .. } | E::InvalidCursor { .. } | E::InvalidToken { .. } => {
                ApiError::BadRequest(e.to_string())
            }
            other => ApiError::Unavailable(other),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        // Set where the error is answered, so that every route's failures
        // are counted by `/metrics` without each handler reporting them.
        let failed = match &self {
            ApiError::Unavailable(cause) => crate::metrics::FailedStatement::of(cause),
            _ => None,
        };
        let (status, body) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, json!({ "error": message })),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, json!({})),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, json!({ "error": message })),
            ApiError::NotFound => (StatusCode::NOT_FOUND, json!({ "error": "not found" })),
            ApiError::MethodNotAllowed => (
                StatusCode::METHOD_NOT_ALLOWED,
                json!({ "error": "method not allowed" }),
            ),
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": "the request body did not arrive in time" }),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({
                    "error": format!("the body is over {} bytes", crate::api::MAX_BODY_BYTES)
                }),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                json!({ "error": "expected a JSON body (Content-Type: application/json)" }),
            ),
            ApiError::Invalid(codes) => (StatusCode::UNPROCESSABLE_ENTITY, json!(codes)),
            ApiError::Unavailable(cause) => {
                tracing::error!("database unavailable: {}", chain(&cause));
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "the database is unavailable" }),
                )
            }
            ApiError::Busy => {
                tracing::warn!("no database connection freed up within the checkout timeout");
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "the database is busy" }),
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!("internal error: {cause}");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({ "error": "internal error" }),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(failed) = failed {
            response.extensions_mut().insert(failed);
        }
        response
    }
}

/// The error and its causes, on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}
