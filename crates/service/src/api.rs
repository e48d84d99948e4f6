//! The routes of the original backend's activity API, and the layers
//! around them (CORS, request logs: [`crate::access`]).

use std::future::Future;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::routing::get;
use cruddur_db::nonblocking::AsyncPrimary;
use cruddur_db::{Consistency, Repository};
use diesel::PgConnection;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tracing::Span;

use crate::access::{AccessLayer, AccessLog};
use crate::auth::Auth;
use crate::cors::OriginCorsLayer;
use crate::error::ApiError;
use crate::metrics::{Metrics, TrackLayer};
use crate::shed::{ShedLayer, Shedding};
use crate::workers::{CallError, Workers};

/// The response header that carries a post's write token, and the request
/// header that brings it back: a feed read with it sees that post, from a
/// replica that has replayed it or else the primary.
pub const WRITE_TOKEN_HEADER: &str = "x-write-token";
/// The cookie that carries the same token for same-origin clients.
pub const WRITE_TOKEN_COOKIE: &str = "cruddur_write_token";

/// The largest request body read: 64 KiB. A post's JSON is at most a few
/// kilobytes (280 characters, each at most a 12-byte escape); a larger
/// body is `413` before it is buffered.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler shares: the repository (with its pool and any
/// replicas), how authors are found, and the primary's database threads.
#[derive(Clone)]
pub struct AppState {
    repo: Repository,
    auth: Arc<Auth>,
    /// The calls bound for the primary: one thread per connection of the
    /// primary's pool, taking calls first come, first served from one
    /// queue, rather than r2d2's checkout, whose waiters are woken in no
    /// particular order (a request could lose to later ones again and
    /// again; at 16 connections on a pool of 10 that made the 99th
    /// percentile hundreds of times the median). Reads the router sends
    /// to a replica do not queue here: each replica bounds its own reads
    /// ([`cruddur_db::ReplicaOptions::max_reads_per_replica`]), so a
    /// replica that stops answering holds that many requests, never the
    /// threads of writes and health checks.
    workers: Workers,
    /// How long a call may wait in the queue: the pool's checkout timeout.
    wait: Duration,
    /// The primary's reads on async connections, when they are on
    /// ([`AppState::with_async_primary`]): the reads the router sends to
    /// the primary skip the threads' queue.
    nonblocking: Arc<OnceLock<AsyncPrimary>>,
    /// How long a request body may take to arrive once its handler reads
    /// it (the transport's header-read timeout).
    body_timeout: Duration,
    /// What `GET /metrics` serves, or `None` when metrics are off.
    metrics: Option<Arc<Metrics>>,
    /// When requests are refused because too many calls wait.
    shedding: Shedding,
    /// Where each request's line goes, or `None` for no request lines.
    access_log: Option<Arc<AccessLog>>,
}

impl AppState {
    /// The state for `repo` and `auth`, with one database thread per
    /// connection of the primary's pool, metrics on and the default
    /// [`Shedding`].
    ///
    /// # Errors
    /// When the threads cannot be started.
    pub fn new(repo: Repository, auth: Auth) -> std::io::Result<Self> {
        let pool = repo.pool();
        let threads = usize::try_from(pool.max_size()).unwrap_or(usize::MAX);
        let wait = pool.connection_timeout();
        let queue_wait = crate::metrics::latency_histogram();
        let workers = Workers::start(threads, Some(queue_wait.clone()))?;
        let nonblocking = Arc::new(OnceLock::new());
        let waiting = Waiting {
            workers: workers.clone(),
            nonblocking: Arc::clone(&nonblocking),
        };
        let metrics = Metrics::new(repo.clone(), waiting, queue_wait);
        Ok(Self {
            repo,
            auth: Arc::new(auth),
            workers,
            wait,
            nonblocking,
            body_timeout: crate::transport::DEFAULT_HEADER_READ_TIMEOUT,
            metrics: Some(Arc::new(metrics)),
            shedding: Shedding::default(),
            access_log: None,
        })
    }

    /// This state with `GET /metrics` and the request counters on or off
    /// (default on).
    #[must_use]
    pub fn with_metrics(mut self, on: bool) -> Self {
        if !on {
            self.metrics = None;
        }
        self
    }

    /// This state writing a line per request to `log` (default none).
    #[must_use]
    pub fn with_access_log(mut self, log: Option<AccessLog>) -> Self {
        self.access_log = log.map(Arc::new);
        self
    }

    /// This state refusing requests as `shedding` says (default
    /// [`Shedding::default`]).
    #[must_use]
    pub fn with_shedding(mut self, shedding: Shedding) -> Self {
        self.shedding = shedding;
        self
    }

    /// This state reading what the router sends to the primary on
    /// `primary`'s async connections (default: on the primary's threads,
    /// like every other call). Set once; a second call is ignored.
    #[must_use]
    pub fn with_async_primary(self, primary: AsyncPrimary) -> Self {
        if self.nonblocking.set(primary).is_err() {
            tracing::warn!("the async primary was set already; the first one is kept");
        }
        self
    }

    /// The database calls waiting for the primary now.
    pub(crate) fn waiting(&self) -> Waiting {
        Waiting {
            workers: self.workers.clone(),
            nonblocking: Arc::clone(&self.nonblocking),
        }
    }

    /// This state with request bodies allowed `timeout` to arrive (default
    /// [`crate::transport::DEFAULT_HEADER_READ_TIMEOUT`]): a body sent
    /// slowly or not at all after its head is answered `408`, so that it
    /// does not hold its connection for as long as the client likes.
    #[must_use]
    pub fn with_body_timeout(mut self, timeout: Duration) -> Self {
        self.body_timeout = timeout;
        self
    }

    /// How authors are found.
    pub(crate) fn auth(&self) -> &Auth {
        &self.auth
    }

    /// How long a request body may take to arrive.
    pub(crate) fn body_timeout(&self) -> Duration {
        self.body_timeout
    }

    /// Runs `f` (a call into the synchronous repository that uses the
    /// primary) on a database thread once the calls queued before it have
    /// been taken, so that the runtime's worker threads never wait on the
    /// database; `503` when no thread takes it within the checkout timeout
    /// (it then never runs).
    pub(crate) async fn blocking<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
        &self,
        f: impl FnOnce(&Repository) -> Result<T, E> + Send + 'static,
    ) -> Result<T, ApiError> {
        let repo = self.repo.clone();
        match self.workers.call(self.wait, move || f(&repo)).await {
            Ok(result) => result.map_err(Into::into),
            Err(CallError::Busy) => Err(ApiError::Busy),
            Err(CallError::Failed(why)) => Err(ApiError::Internal(why.into())),
        }
    }

    /// Like [`AppState::blocking`] for a read with `consistency`: queued
    /// for the primary's threads when the router would send it there, on
    /// Tokio's blocking pool when it goes to a replica (which may still hand it to the primary:
    /// a token wait that ran out, a recovery conflict, a failure; such
    /// reads are bounded by the replicas' own bounds). A read sent to a
    /// replica that has not answered within the router's
    /// [`replica_read_bound`](cruddur_db::Router::replica_read_bound) is
    /// read on the primary (the stuck one keeps its thread, not the
    /// request).
    pub(crate) async fn blocking_read<T: Send + 'static, E: Into<ApiError> + Send + 'static>(
        &self,
        consistency: Consistency,
        f: impl Fn(&Repository, Consistency) -> Result<T, E> + Send + Sync + 'static,
    ) -> Result<T, ApiError> {
        let router = self.repo.router();
        if router.would_read_on_primary(consistency) {
            return self.blocking(move |repo| f(repo, consistency)).await;
        }
        let f = Arc::new(f);
        let call = Arc::clone(&f);
        let repo = self.repo.clone();
        // With tracing on, the read runs in the request's span, its
        // statements' parent.
        let span = crate::telemetry::current_span();
        let task = tokio::task::spawn_blocking(move || {
            let _in_request = span.as_ref().map(Span::enter);
            call(&repo, consistency)
        });
        let bound = router.replica_read_bound();
        match tokio::time::timeout(bound, task).await {
            Ok(result) => joined(result),
            Err(_) => {
                tracing::warn!(
                    "a read sent to a replica did not answer within {bound:?}; read on the primary"
                );
                self.blocking(move |repo| f(repo, Consistency::Primary))
                    .await
            }
        }
    }

    /// A read with `consistency` that has a call on the async primary: there
    /// when it is on and the router sends the read to the primary
    /// (`on_async`), else `on_conn` through [`AppState::blocking_read`]. A
    /// call the async primary declines
    /// ([`cruddur_db::Error::AsyncPrimaryOff`]) is read on the primary's
    /// threads; a checkout that timed out is `503` busy, as the threads'
    /// queue's is.
    pub(crate) async fn read_async_first<T, Fut>(
        &self,
        consistency: Consistency,
        on_async: impl FnOnce(AsyncPrimary) -> Fut,
        on_conn: impl Fn(&mut PgConnection) -> cruddur_db::Result<T> + Send + Sync + 'static,
    ) -> Result<T, ApiError>
    where
        T: Send + 'static,
        Fut: Future<Output = cruddur_db::Result<T>>,
    {
        let on_primary = self
            .nonblocking
            .get()
            .filter(|_| self.repo.router().claim_primary_read(consistency));
        let Some(primary) = on_primary else {
            return self
                .blocking_read(consistency, move |repo, consistency| {
                    repo.read(consistency, &on_conn)
                })
                .await;
        };
        match on_async(primary.clone()).await {
            Err(cruddur_db::Error::AsyncPrimaryOff { .. }) => {
                self.blocking(move |repo| repo.router().read_claimed(&on_conn))
                    .await
            }
            Err(cruddur_db::Error::PoolTimeout {
                last_error: None, ..
            }) => Err(ApiError::Busy),
            other => other.map_err(Into::into),
        }
    }
}

/// The database calls waiting for the primary: in its threads' queue and,
/// with the async primary, for one of its connections. Load shedding reads
/// it on every request; `/metrics` exports it.
#[derive(Clone)]
pub(crate) struct Waiting {
    workers: Workers,
    nonblocking: Arc<OnceLock<AsyncPrimary>>,
}

impl Waiting {
    /// How many wait now.
    pub(crate) fn now(&self) -> usize {
        self.workers.waiting() + self.nonblocking.get().map_or(0, AsyncPrimary::waiting)
    }

    /// The async primary, when it is on.
    pub(crate) fn nonblocking(&self) -> Option<&AsyncPrimary> {
        self.nonblocking.get()
    }
}

/// The result of a blocking task, its panic an internal error.
fn joined<T, E: Into<ApiError>>(
    result: Result<Result<T, E>, tokio::task::JoinError>,
) -> Result<T, ApiError> {
    result
        .map_err(|e| ApiError::Internal(format!("a database call panicked: {e}")))?
        .map_err(Into::into)
}

/// The service: the routes of `crate::routes`, their OpenAPI document at
/// `GET /api/openapi.json`, with CORS for `allowed_origins` (headers
/// `Content-Type`, `Authorization` and the write token; methods `OPTIONS`,
/// `GET`, `HEAD`, `POST`) and one log line per request.
pub fn app(state: AppState, allowed_origins: &[String]) -> Router {
    let origins: Vec<HeaderValue> = allowed_origins
        .iter()
        .filter_map(|origin| HeaderValue::from_str(origin).ok())
        .collect();
    let token_header = HeaderName::from_static(WRITE_TOKEN_HEADER);
    let cors = CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_headers([
            header::CONTENT_TYPE,
            header::AUTHORIZATION,
            token_header.clone(),
        ])
        .allow_methods([Method::OPTIONS, Method::GET, Method::HEAD, Method::POST]);
    let cors = OriginCorsLayer::new(cors, &[token_header]);
    let access = AccessLayer::new(state.access_log.clone());
    let shed = ShedLayer {
        shedding: state.shedding,
        waiting: state.waiting(),
    };
    let metrics = state.metrics.clone();
    let (routes, document) = crate::routes::api_routes().split_for_parts();
    let document = Bytes::from(crate::openapi::to_json(&document));
    let router = routes
        .route(
            "/api/openapi.json",
            get(move || {
                std::future::ready((
                    [(header::CONTENT_TYPE, "application/json")],
                    document.clone(),
                ))
            }),
        )
        .fallback(|| async { ApiError::NotFound })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .with_state(state)
        // One call, outermost first: each `Router::layer` boxes every route
        // once more, and a request clones each box below it.
        .layer((
            access.clone(),
            TrackLayer::new(metrics.clone()),
            cors,
            DefaultBodyLimit::max(MAX_BODY_BYTES),
            shed,
        ));
    // `/metrics` is logged and counted too, but neither shed nor behind
    // CORS.
    match metrics {
        Some(metrics) => router.route(
            "/metrics",
            get(crate::metrics::scrape)
                .with_state(Arc::clone(&metrics))
                .layer((access, TrackLayer::new(Some(metrics)))),
        ),
        None => router,
    }
}
