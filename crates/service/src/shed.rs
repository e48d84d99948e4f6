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

use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::MatchedPath;
use axum::http::{HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Response};
use pin_project_lite::pin_project;
use serde_json::json;
use tower_layer::Layer;
use tower_service::Service;

use crate::api::Waiting;

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

/// The layer that refuses requests as [`Shedding`] says, from the calls
/// waiting for the primary (`waiting`). It is added with `Router::layer`, so that
/// the matched route is known. (A tower layer rather than axum's
/// `from_fn`, which clones the service below it and boxes its future on
/// every request.)
#[derive(Clone)]
pub(crate) struct ShedLayer {
    pub(crate) shedding: Shedding,
    pub(crate) waiting: Waiting,
}

impl<S> Layer<S> for ShedLayer {
    type Service = Shed<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Shed {
            inner,
            layer: self.clone(),
        }
    }
}

/// [`ShedLayer`]'s service.
#[derive(Clone)]
pub(crate) struct Shed<S> {
    inner: S,
    layer: ShedLayer,
}

impl<S, B> Service<Request<B>> for Shed<S>
where
    S: Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = ShedFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let waiting = self.layer.waiting.now();
        if self.layer.shedding.refuses(request.method(), waiting)
            && !request
                .extensions()
                .get::<MatchedPath>()
                .is_some_and(|path| NEVER_SHED.contains(&path.as_str()))
        {
            tracing::debug!(waiting, "refused: the database threads' queue is full");
            return ShedFuture::Refused {
                response: Some(refused()),
            };
        }
        ShedFuture::Admitted {
            future: self.inner.call(request),
        }
    }
}

/// The answer of a refused request: `503`, `Retry-After`, and why.
fn refused() -> Response {
    let mut response = (
        StatusCode::SERVICE_UNAVAILABLE,
        axum::Json(json!({ "error": "the service is overloaded; retry later" })),
    )
        .into_response();
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

pin_project! {
    /// The response of [`Shed`]: the refusal, or the admitted request's.
    #[project = Projected]
    pub(crate) enum ShedFuture<F> {
        Refused { response: Option<Response> },
        Admitted { #[pin] future: F },
    }
}

impl<F, E> Future for ShedFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = Result<Response, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match self.project() {
            Projected::Refused { response } => match response.take() {
                Some(response) => Poll::Ready(Ok(response)),
                // Polled again after it was ready.
                None => Poll::Pending,
            },
            Projected::Admitted { future } => future.poll(cx),
        }
    }
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
