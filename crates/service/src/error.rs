//! Every failure as a status and a JSON body: no handler answers with plain
//! text, and none with a 500 for bad input.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use utoipa::{IntoResponses, ToSchema};

use crate::shed::RETRY_AFTER_SECS;

/// The body of most failures: what went wrong, for a person to read.
#[derive(Serialize, ToSchema)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

/// The body of a `401`: `{}`, as the original answered.
#[derive(Serialize, ToSchema)]
pub struct EmptyObject {}

/// The refusals every write shares, for the OpenAPI document: who may
/// write, how its body arrives, whether the database takes it.
#[derive(IntoResponses)]
#[expect(
    dead_code,
    reason = "the responses' description: built by the derive, never as a value"
)]
pub(crate) enum WriteRefusals {
    /// No valid token.
    #[response(status = 401, description = "No valid token")]
    Unauthorized(EmptyObject),
    /// The token names no Cruddur user.
    #[response(status = 403, description = "The token names no Cruddur user")]
    Forbidden(ErrorBody),
    /// The body did not arrive in time.
    #[response(status = 408, description = "The body did not arrive in time")]
    BodyTimeout(ErrorBody),
    /// The body is over 64 KiB.
    #[response(status = 413, description = "The body is over 64 KiB")]
    PayloadTooLarge(ErrorBody),
    /// The body is not declared JSON.
    #[response(status = 415, description = "The body is not declared JSON")]
    UnsupportedMediaType(ErrorBody),
    /// The database is unavailable or busy.
    #[response(status = 503, description = "The database is unavailable or busy")]
    Unavailable(ErrorBody),
}

/// A request that failed, and how to answer it.
#[derive(Debug)]
pub enum ApiError {
    /// 400 `{"error": …}`: a malformed body, query or header.
    BadRequest(String),
    /// 401 `{}`: a post without a valid token (as the original answered).
    Unauthorized,
    /// 403 `{"error": …}`: a valid token whose user is not in the database.
    Forbidden(String),
    /// 404 `{"error": "not found"}`: no route has this path.
    NotFound,
    /// 404 `{"error": …}`: the user or activity a request names does not
    /// exist (or, for a reply, has expired).
    Missing(String),
    /// 409 `{"error": …}`: an idempotency key already used for another
    /// post.
    Conflict(String),
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
            // The author of a write: the route names no user.
            E::UserNotFound { .. } => ApiError::Invalid(vec!["user_not_found"]),
            E::ActivityNotFound { .. } => ApiError::Missing(e.to_string()),
            E::IdempotencyKeyReused { .. } => ApiError::Conflict(e.to_string()),
            E::InvalidPageSize { .. }
            | E::InvalidCursor { .. }
            | E::InvalidToken { .. }
            | E::InvalidIdempotencyKey { .. } => ApiError::BadRequest(e.to_string()),
            other => ApiError::Unavailable(other),
        }
    }
}

impl ApiError {
    /// `e` for a route whose path names the user: an unknown handle is
    /// `404`, not the `422` a write by an unknown author is.
    pub(crate) fn named_in_path(e: cruddur_db::Error) -> Self {
        match e {
            cruddur_db::Error::UserNotFound { .. } => ApiError::Missing(e.to_string()),
            other => other.into(),
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
        let mut retry_after = false;
        let (status, body) = match self {
            ApiError::BadRequest(message) => (StatusCode::BAD_REQUEST, error(message)),
            ApiError::Unauthorized => (StatusCode::UNAUTHORIZED, json!(EmptyObject {})),
            ApiError::Forbidden(message) => (StatusCode::FORBIDDEN, error(message)),
            ApiError::NotFound => (StatusCode::NOT_FOUND, error("not found")),
            ApiError::Missing(message) => (StatusCode::NOT_FOUND, error(message)),
            ApiError::Conflict(message) => (StatusCode::CONFLICT, error(message)),
            ApiError::MethodNotAllowed => {
                (StatusCode::METHOD_NOT_ALLOWED, error("method not allowed"))
            }
            ApiError::BodyTimeout => (
                StatusCode::REQUEST_TIMEOUT,
                error("the request body did not arrive in time"),
            ),
            ApiError::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                error(format!(
                    "the body is over {} bytes",
                    crate::api::MAX_BODY_BYTES
                )),
            ),
            ApiError::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                error("expected a JSON body (Content-Type: application/json)"),
            ),
            ApiError::Invalid(codes) => (StatusCode::UNPROCESSABLE_ENTITY, json!(codes)),
            ApiError::Unavailable(cause) => {
                tracing::error!("database unavailable: {}", chain(&cause));
                // A failover's gap, a server restarting: worth trying again
                // in a moment.
                retry_after = cause.is_retryable() || is_outcome_unknown(&cause);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    error(unavailable_message(&cause)),
                )
            }
            ApiError::Busy => {
                tracing::warn!("no database connection freed up within the checkout timeout");
                // The call never ran.
                retry_after = true;
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    error("the database is busy"),
                )
            }
            ApiError::Internal(cause) => {
                tracing::error!("internal error: {cause}");
                (StatusCode::INTERNAL_SERVER_ERROR, error("internal error"))
            }
        };
        let mut response = (status, Json(body)).into_response();
        if retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if let Some(failed) = failed {
            response.extensions_mut().insert(failed);
        }
        response
    }
}

/// Whether `cause` is a write whose outcome is unknown.
fn is_outcome_unknown(cause: &cruddur_db::Error) -> bool {
    matches!(cause, cruddur_db::Error::OutcomeUnknown { .. })
}

/// What a `503` says about retrying: safe when nothing was written, with
/// the same `Idempotency-Key` when the write's outcome is unknown. The
/// cause itself is logged, not sent: it names hosts.
fn unavailable_message(cause: &cruddur_db::Error) -> &'static str {
    if matches!(cause, cruddur_db::Error::DiskFull(_)) {
        "the database server's disk is full: nothing was written; the request can be retried once \
         space is freed on the server (retrying at once fails the same way)"
    } else if is_outcome_unknown(cause) {
        "the connection to the database was lost after the write was sent: it may or may not have been made; \
         retry with the same Idempotency-Key to make it exactly once"
    } else if cause.is_retryable() {
        "the database is unavailable; nothing was written, so the request can be retried"
    } else {
        "the database is unavailable"
    }
}

/// An [`ErrorBody`] as JSON.
fn error(message: impl Into<String>) -> serde_json::Value {
    json!(ErrorBody {
        error: message.into()
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    fn lost() -> diesel::result::Error {
        diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::ClosedConnection,
            Box::new("server closed the connection unexpectedly".to_owned()),
        )
    }

    /// The status, the `Retry-After` header and the body's message.
    fn answer(cause: cruddur_db::Error) -> (u16, Option<String>, String) {
        let response = ApiError::from(cause).into_response();
        let retry = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let status = response.status().as_u16();
        let body = body_error(response);
        (status, retry, body)
    }

    fn body_error(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 16))
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
        value["error"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_503_says_whether_and_how_the_request_can_be_retried() {
        let (status, retry, body) = answer(cruddur_db::Error::ConnectionLost {
            url: "postgres://db/cruddur".into(),
            source: lost(),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(
            body.contains("nothing was written, so the request can be retried"),
            "{body}"
        );

        let (status, retry, body) = answer(cruddur_db::Error::Unreachable {
            url: "postgres://db/cruddur".into(),
            message: "connection refused".into(),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(
            !body.contains("db/cruddur"),
            "the cause names hosts: {body}"
        );

        let (status, retry, body) = answer(cruddur_db::Error::OutcomeUnknown {
            url: "postgres://db/cruddur".into(),
            source: lost(),
        });
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(body.contains("same Idempotency-Key"), "{body}");
        assert!(!body.contains("nothing was written"), "{body}");

        let busy = ApiError::Busy.into_response();
        assert_eq!(busy.status().as_u16(), 503);
        assert_eq!(
            busy.headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.as_bytes()),
            Some(&b"1"[..]),
            "the call never ran"
        );

        let (status, retry, body) = answer(cruddur_db::Error::DiskFull(
            diesel::result::Error::DatabaseError(
                diesel::result::DatabaseErrorKind::Unknown,
                Box::new("could not extend file \"base/1/2\": No space left on device".to_owned()),
            ),
        ));
        assert_eq!((status, retry.as_deref()), (503, Some("1")));
        assert!(body.contains("disk is full"), "{body}");
        assert!(body.contains("once space is freed"), "{body}");

        let (status, retry, body) = answer(cruddur_db::Error::Migration("broken".into()));
        assert_eq!((status, retry), (503, None));
        assert_eq!(body, "the database is unavailable");
    }
}
