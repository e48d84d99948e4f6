//! Load shedding: when too many calls wait for the primary's database
//! threads, new requests are refused at once with `503` and `Retry-After`
//! rather than queued behind them, reads first.
//!
//! As crates.io's `BalanceCapacity` middleware does, the decision is made
//! before the handler runs, from a number read without a lock (here the
//! calls waiting in the queue of the primary's database threads), and the requests that
//! matter most are refused last: reads (`GET`, `HEAD`) at
//! [`Shedding::reads_at`] waiting calls, writes (`POST`) only at the
//! higher [`Shedding::writes_at`]. A refused request costs no database
//! call, so the calls admitted keep a bounded wait instead of every
//! request waiting out the checkout timeout and failing together.
//!
//! The probes and the metrics are never refused (a liveness probe that
//! fails under load gets a busy task restarted, which makes the overload
//! worse), nor are CORS preflights.

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::workers::Workers;

/// The default [`Shedding::reads_at`]: 128 waiting calls. Above what a
/// busy but healthy service queues (64 clients on the default pool of 10
/// leave 54 waiting), below what the checkout timeout would fail anyway.
pub const DEFAULT_SHED_READS_AT: usize = 128;
/// The default [`Shedding::writes_at`]: 256 waiting calls.
pub const DEFAULT_SHED_WRITES_AT: usize = 256;
/// The `Retry-After` of a refused request, and of a `503` worth retrying, in seconds: 1.
pub const RETRY_AFTER_SECS: u32 = 1;

/// The paths never refused: the probes and the metrics.
const NEVER_SHED: &[&str] = &["/api/health-check", "/api/ready", "/metrics"];

/// When requests are refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shedding {
    /// Reads (`GET`, `HEAD`) are refused while at least this many calls
    /// wait for a database thread (`CRUDDUR_SHED_READS_AT`, default
    /// [`DEFAULT_SHED_READS_AT`]).
    pub reads_at: usize,
    /// Writes (`POST`) are refused while at least this many wait
    /// (`CRUDDUR_SHED_WRITES_AT`, default [`DEFAULT_SHED_WRITES_AT`]; at
    /// least `reads_at`, so that reads always go first).
    pub writes_at: usize,
}

impl Default for Shedding {
    fn default() -> Self {
        Self {
            reads_at: DEFAULT_SHED_READS_AT,
            writes_at: DEFAULT_SHED_WRITES_AT,
        }
    }
}

impl Shedding {
    /// Whether a request of `method` is refused while `waiting` calls wait.
    fn refuses(&self, method: &Method, waiting: usize) -> bool {
        match *method {
            Method::GET | Method::HEAD => waiting >= self.reads_at,
            Method::POST => waiting >= self.writes_at,
            _ => false,
        }
    }
}

/// What the middleware reads: the thresholds and the queue.
#[derive(Clone)]
pub(crate) struct Shedder {
    pub(crate) shedding: Shedding,
    pub(crate) workers: Workers,
}

/// The middleware (added with `Router::layer`, so that the matched route
/// is known).
pub(crate) async fn shed(State(shedder): State<Shedder>, request: Request, next: Next) -> Response {
    let waiting = shedder.workers.waiting();
    if shedder.shedding.refuses(request.method(), waiting)
        && !request
            .extensions()
            .get::<MatchedPath>()
            .is_some_and(|path| NEVER_SHED.contains(&path.as_str()))
    {
        tracing::debug!(waiting, "refused: the database threads' queue is full");
        let mut response = (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "error": "the service is overloaded; retry later" })),
        )
            .into_response();
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        return response;
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_are_refused_first_and_other_methods_never() {
        let shedding = Shedding {
            reads_at: 2,
            writes_at: 4,
        };
        let cases = [
            (Method::GET, 1, false),
            (Method::GET, 2, true),
            (Method::HEAD, 2, true),
            (Method::POST, 2, false),
            (Method::POST, 3, false),
            (Method::POST, 4, true),
            (Method::OPTIONS, 100, false),
        ];
        for (method, waiting, refused) in cases {
            assert_eq!(
                shedding.refuses(&method, waiting),
                refused,
                "{method} with {waiting} waiting"
            );
        }
    }
}
