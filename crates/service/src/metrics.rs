//! `GET /metrics`: the service's numbers in the Prometheus text format
//! (version 0.0.4), with `prometheus-client`.
//!
//! Two kinds of numbers. What only the service sees is counted as it
//! happens: requests by route and status, their latency, each call's wait
//! in the database threads' queue, and failed statements by SQLSTATE class.
//! What the pool and the replica router keep already (r2d2's `state()`,
//! [`cruddur_db::RoutingCounters`], each replica's health and lag) is read
//! at each scrape by a collector, never counted a second time.
//!
//! | metric | type | labels | meaning |
//! |---|---|---|---|
//! | `cruddur_http_requests_total` | counter | `method`, `route`, `status` | requests answered; `route` is the matched path (`/api/activities/home`), `unmatched` for any path no route has |
//! | `cruddur_http_request_duration_seconds` | histogram | `method`, `route`, `status` | from the request's arrival to its response head |
//! | `cruddur_db_pool_connections` | gauge | | connections the primary's pool holds open |
//! | `cruddur_db_pool_idle_connections` | gauge | | of those, idle |
//! | `cruddur_db_pool_in_use_connections` | gauge | | of those, checked out |
//! | `cruddur_db_pool_max_connections` | gauge | | the pool's size |
//! | `cruddur_db_queue_waiting` | gauge | | calls waiting for one of the primary's database threads |
//! | `cruddur_db_queue_wait_seconds` | histogram | | each call's wait for a thread (a call that timed out waited the checkout timeout) |
//! | `cruddur_db_failed_statements_total` | counter | `sqlstate_class` | statements that failed, by the first two characters of their SQLSTATE (`23` integrity, `40` rollback, `53` the server's disk is full, `57` a statement timeout, ...), `unknown` when the driver does not say |
//! | `cruddur_db_router_<field>_total` | counter | | each field of the router's [`cruddur_db::RoutingCounters`] (`replica_reads`, `writes`, ...) |
//! | `cruddur_db_replica_up` | gauge | `replica` | 1 while the router sends reads to it |
//! | `cruddur_db_replica_status` | gauge | `replica`, `status` | 1 for its status as the prober last saw it (`up`, `lagging`, `down`, ...) |
//! | `cruddur_db_replica_lag_bytes` | gauge | `replica` | WAL bytes it has not replayed, at the last probe |
//! | `cruddur_db_replica_lag_seconds` | gauge | `replica` | time since the last transaction it replayed committed on the primary |
//! | `cruddur_db_replica_reads_in_flight` | gauge | `replica` | reads it holds now |
//! | `cruddur_db_replica_outages_total` | counter | `replica` | times it went down |
//!
//! `replica` is the server's `host:port` (never its credentials).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, State};
use axum::http::{Method, Request, header};
use axum::response::{IntoResponse, Response};
use cruddur_db::{DatabaseUrl, Repository};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{
    DescriptorEncoder, EncodeLabelSet, EncodeLabelValue, EncodeMetric, LabelValueEncoder,
};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::api::Waiting;

/// The request latency buckets, in seconds: 100 µs to about 13 s, doubling
/// (the feed takes a few hundred µs; a call may wait up to the checkout
/// timeout, 5 s by default).
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

/// A new latency histogram.
pub(crate) fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The labels of a request's numbers.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: MethodLabel,
    route: Route,
    status: u16,
}

/// A request's method, from a fixed set, so that a client inventing
/// methods cannot grow the label set.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[expect(clippy::upper_case_acronyms, reason = "HTTP spells methods so")]
enum MethodLabel {
    GET,
    HEAD,
    POST,
    OPTIONS,
    OTHER,
}

impl From<&Method> for MethodLabel {
    fn from(method: &Method) -> Self {
        match *method {
            Method::GET => Self::GET,
            Method::HEAD => Self::HEAD,
            Method::POST => Self::POST,
            Method::OPTIONS => Self::OPTIONS,
            _ => Self::OTHER,
        }
    }
}

/// The route a request matched (its pattern, not its path: one label per
/// route, whatever the handles and uuids in the paths), or none.
#[derive(Clone, Debug)]
struct Route(Option<MatchedPath>);

impl Route {
    fn as_str(&self) -> &str {
        self.0.as_ref().map_or("unmatched", MatchedPath::as_str)
    }
}

impl PartialEq for Route {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Route {}

impl std::hash::Hash for Route {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl EncodeLabelValue for Route {
    fn encode(&self, encoder: &mut LabelValueEncoder) -> Result<(), std::fmt::Error> {
        EncodeLabelValue::encode(&self.as_str(), encoder)
    }
}

/// The labels of a failed statement.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct SqlStateLabels {
    sqlstate_class: &'static str,
}

/// A response extension set by [`crate::error::ApiError`] when a database
/// call failed: the SQLSTATE class of the statement that failed, when the
/// failure was a statement's (not a connection that could not be made).
#[derive(Clone, Copy, Debug)]
pub(crate) struct FailedStatement {
    /// The SQLSTATE's first two characters, or `unknown`.
    pub(crate) sqlstate_class: &'static str,
}

impl FailedStatement {
    /// The failed statement `error` reports, if it reports one.
    ///
    /// Diesel keeps a statement's SQLSTATE to itself and says only its
    /// kind, for the states it knows (each of one class); a statement
    /// timeout is SQLSTATE 57014, which the library names.
    pub(crate) fn of(error: &cruddur_db::Error) -> Option<Self> {
        use diesel::result::{DatabaseErrorKind as K, Error as D};
        let class = match error {
            cruddur_db::Error::StatementTimeout(_) => "57",
            cruddur_db::Error::DiskFull(_) => "53",
            cruddur_db::Error::Query(D::DatabaseError(kind, _))
            | cruddur_db::Error::WriteOnReplica {
                source: D::DatabaseError(kind, _),
                ..
            } => match kind {
                K::UniqueViolation
                | K::ForeignKeyViolation
                | K::NotNullViolation
                | K::CheckViolation
                | K::RestrictViolation
                | K::ExclusionViolation => "23",
                K::ReadOnlyTransaction => "25",
                K::SerializationFailure => "40",
                K::ClosedConnection | K::UnableToSendCommand => "08",
                _ => "unknown",
            },
            cruddur_db::Error::Query(_) => "unknown",
            _ => return None,
        };
        Some(Self {
            sqlstate_class: class,
        })
    }
}

/// The service's registry and the numbers it counts itself.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RequestLabels, Histogram, fn() -> Histogram>,
    failed_statements: Family<SqlStateLabels, Counter>,
}

impl Metrics {
    /// The registry, with the pool and router of `repo` and the calls
    /// `waiting` read at each scrape, and `queue_wait` (observed by the
    /// database threads) registered.
    pub(crate) fn new(repo: Repository, waiting: Waiting, queue_wait: Histogram) -> Self {
        let mut registry = Registry::with_prefix("cruddur");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "Requests answered, by method, matched route and status",
            requests.clone(),
        );
        let latency: Family<RequestLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response head, in seconds",
            latency.clone(),
        );
        registry.register(
            "db_queue_wait_seconds",
            "Each database call's wait for one of the primary's database threads, in seconds",
            queue_wait,
        );
        let failed_statements = Family::<SqlStateLabels, Counter>::default();
        registry.register(
            "db_failed_statements",
            "Statements that failed, by SQLSTATE class (unknown: the driver does not say)",
            failed_statements.clone(),
        );
        registry.register_collector(Box::new(Database { repo, waiting }));
        Self {
            registry,
            requests,
            latency,
            failed_statements,
        }
    }

    /// Every metric, in the Prometheus text format.
    fn render(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }

    fn failed(&self, failed: FailedStatement) {
        self.failed_statements
            .get_or_create(&SqlStateLabels {
                sqlstate_class: failed.sqlstate_class,
            })
            .inc();
    }
}

/// The layer that counts and times every request, with `Router::layer`
/// (so that the matched route is known) in the same call as the API's other
/// layers: each `Router::layer` call boxes every route once more, and each
/// request clones the boxes below it, so a layer of its own would cost more
/// than counting does. Without metrics it adds nothing but a branch.
#[derive(Clone, Debug)]
pub(crate) struct TrackLayer {
    metrics: Option<Arc<Metrics>>,
}

impl TrackLayer {
    /// Counting into `metrics`, or nothing when `None`.
    pub(crate) fn new(metrics: Option<Arc<Metrics>>) -> Self {
        Self { metrics }
    }
}

impl<S> tower_layer::Layer<S> for TrackLayer {
    type Service = Track<S>;

    /// Called once per route (and per method of a route): each gets its own
    /// cache of series, so that a request finds its counter and histogram
    /// among the few its route has answered with, without hashing its
    /// labels.
    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            series: self.metrics.as_ref().map(|metrics| {
                Arc::new(RouteSeries {
                    metrics: Arc::clone(metrics),
                    known: RwLock::new(Vec::new()),
                })
            }),
        }
    }
}

/// The series one route has answered with: handles to the families'
/// counters and histograms (they share their values with the families,
/// which `/metrics` encodes), found by comparing labels.
#[derive(Debug)]
struct RouteSeries {
    metrics: Arc<Metrics>,
    known: RwLock<Vec<Series>>,
}

/// One `(method, route, status)`'s counter and histogram.
#[derive(Debug)]
struct Series {
    labels: RequestLabels,
    requests: Counter,
    latency: Histogram,
}

impl RouteSeries {
    fn record(&self, labels: RequestLabels, seconds: f64, failed: Option<FailedStatement>) {
        let found = |known: &[Series]| {
            known.iter().find(|s| s.labels == labels).map(|s| {
                s.requests.inc();
                s.latency.observe(seconds);
            })
        };
        // A poisoned lock holds a whole vector still: counting goes on.
        let known = self.known.read().unwrap_or_else(PoisonError::into_inner);
        if found(&known).is_none() {
            drop(known);
            let mut known = self.known.write().unwrap_or_else(PoisonError::into_inner);
            if found(&known).is_none() {
                let series = Series {
                    requests: self.metrics.requests.get_or_create_owned(&labels),
                    latency: self.metrics.latency.get_or_create_owned(&labels),
                    labels,
                };
                series.requests.inc();
                series.latency.observe(seconds);
                known.push(series);
            }
        }
        if let Some(failed) = failed {
            self.metrics.failed(failed);
        }
    }
}

/// The service [`TrackLayer`] makes.
#[derive(Clone, Debug)]
pub(crate) struct Track<S> {
    inner: S,
    series: Option<Arc<RouteSeries>>,
}

impl<S, B> tower_service::Service<Request<B>> for Track<S>
where
    S: tower_service::Service<Request<B>, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future = TrackFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let pending = self.series.as_ref().map(|series| Pending {
            started: Instant::now(),
            method: MethodLabel::from(request.method()),
            route: Route(request.extensions().get::<MatchedPath>().cloned()),
            series: Arc::clone(series),
        });
        TrackFuture {
            inner: self.inner.call(request),
            pending,
        }
    }
}

/// What a request's numbers need once its response head is there.
#[derive(Debug)]
struct Pending {
    started: Instant,
    method: MethodLabel,
    route: Route,
    series: Arc<RouteSeries>,
}

pin_project_lite::pin_project! {
    /// The response future of [`Track`]: the inner one's, counted when it
    /// is ready.
    #[derive(Debug)]
    pub(crate) struct TrackFuture<F> {
        #[pin]
        inner: F,
        pending: Option<Pending>,
    }
}

impl<F, E> Future for TrackFuture<F>
where
    F: Future<Output = Result<Response, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = std::task::ready!(this.inner.poll(cx));
        if let (Ok(response), Some(pending)) = (&result, this.pending.take()) {
            let labels = RequestLabels {
                method: pending.method,
                route: pending.route,
                status: response.status().as_u16(),
            };
            let failed = response.extensions().get::<FailedStatement>().copied();
            pending
                .series
                .record(labels, pending.started.elapsed().as_secs_f64(), failed);
        }
        Poll::Ready(result)
    }
}

/// `GET /metrics`.
pub(crate) async fn scrape(State(metrics): State<Arc<Metrics>>) -> Response {
    match metrics.render() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(_) => crate::error::ApiError::Internal("the metrics could not be rendered".into())
            .into_response(),
    }
}

/// `host:port` of a server, for labels: never the credentials.
pub(crate) fn server_address(url: &DatabaseUrl) -> String {
    let host = url.param("host").unwrap_or("localhost");
    match url.param("port") {
        Some(port) => format!("{host}:{port}"),
        None => format!("{host}:5432"),
    }
}

/// What the pool, the queue and the router keep, read at each scrape.
struct Database {
    repo: Repository,
    waiting: Waiting,
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Database").finish_non_exhaustive()
    }
}

/// A gauge without labels.
fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let gauge = ConstGauge::new(value);
    gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)
}

/// A gauge with one series per `(labels, value)`.
fn gauges<S: EncodeLabelSet>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    series: &[(S, f64)],
) -> Result<(), std::fmt::Error> {
    if series.is_empty() {
        return Ok(());
    }
    let mut family = encoder.encode_descriptor(
        name,
        help,
        None,
        prometheus_client::metrics::MetricType::Gauge,
    )?;
    for (labels, value) in series {
        ConstGauge::new(*value).encode(family.encode_family(labels)?)?;
    }
    Ok(())
}

impl Collector for Database {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let pool = self.repo.pool();
        let state = pool.state();
        let open = i64::from(state.connections);
        let idle = i64::from(state.idle_connections);
        let e = &mut encoder;
        gauge(
            e,
            "db_pool_connections",
            "Connections the primary's pool holds open",
            open,
        )?;
        gauge(
            e,
            "db_pool_idle_connections",
            "Open connections of the primary's pool that are idle",
            idle,
        )?;
        gauge(
            e,
            "db_pool_in_use_connections",
            "Open connections of the primary's pool that are checked out",
            open - idle,
        )?;
        gauge(
            e,
            "db_pool_max_connections",
            "The size of the primary's pool",
            i64::from(pool.max_size()),
        )?;
        gauge(
            e,
            "db_queue_waiting",
            "Database calls waiting for the primary: for one of its database threads, or for an async connection",
            i64::try_from(self.waiting.now()).unwrap_or(i64::MAX),
        )?;
        if let Some(nonblocking) = self.waiting.nonblocking() {
            let (open, idle) = nonblocking.connections();
            let open = i64::try_from(open).unwrap_or(i64::MAX);
            let idle = i64::try_from(idle).unwrap_or(i64::MAX);
            gauge(
                e,
                "db_async_pool_connections",
                "Connections the primary's async pool holds open",
                open,
            )?;
            gauge(
                e,
                "db_async_pool_idle_connections",
                "Open connections of the primary's async pool that are idle",
                idle,
            )?;
        }

        // Every field of the router's counters, by its own name: a counter
        // the router gains is exported without a change here.
        if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(self.repo.counters()) {
            for (field, value) in fields {
                let counter = ConstCounter::new(value.as_u64().unwrap_or(0));
                let name = format!("db_router_{field}");
                let help = format!("The replica router's {field} (cruddur_db::RoutingCounters)");
                counter.encode(e.encode_descriptor(
                    &name,
                    &help,
                    None,
                    counter.metric_type(),
                )?)?;
            }
        }

        let router = self.repo.router();
        let replicas = router.replicas();
        if replicas.is_empty() {
            return Ok(());
        }
        let in_flight = router.reads_in_flight();
        let mut up = Vec::new();
        let mut status = Vec::new();
        let mut lag_bytes = Vec::new();
        let mut lag_seconds = Vec::new();
        let mut reads = Vec::new();
        let mut outages = Vec::new();
        for (n, (url, replica)) in replicas.iter().enumerate() {
            let address = server_address(url);
            let label = [("replica", address.clone())];
            up.push((label.clone(), if replica.is_up() { 1.0 } else { 0.0 }));
            status.push((
                [
                    ("replica", address.clone()),
                    ("status", replica.status.to_string()),
                ],
                1.0,
            ));
            if let Some(bytes) = replica.lag_bytes {
                #[expect(clippy::cast_precision_loss, reason = "a gauge is a float")]
                lag_bytes.push((label.clone(), bytes as f64));
            }
            if let Some(time) = replica.lag_time {
                lag_seconds.push((label.clone(), time.as_secs_f64()));
            }
            #[expect(clippy::cast_precision_loss, reason = "a gauge is a float")]
            reads.push((label.clone(), in_flight.get(n).copied().unwrap_or(0) as f64));
            outages.push((label, replica.outages));
        }
        gauges(
            e,
            "db_replica_up",
            "1 while the router sends reads to the replica",
            &up,
        )?;
        gauges(
            e,
            "db_replica_status",
            "1 for the replica's status as its prober last saw it",
            &status,
        )?;
        gauges(
            e,
            "db_replica_lag_bytes",
            "WAL bytes the replica had not replayed at its last probe",
            &lag_bytes,
        )?;
        gauges(
            e,
            "db_replica_lag_seconds",
            "Time since the last transaction the replica replayed committed on the primary",
            &lag_seconds,
        )?;
        gauges(
            e,
            "db_replica_reads_in_flight",
            "Reads the replica holds now",
            &reads,
        )?;
        let mut family = e.encode_descriptor(
            "db_replica_outages",
            "Times the replica went down",
            None,
            prometheus_client::metrics::MetricType::Counter,
        )?;
        for (labels, count) in &outages {
            ConstCounter::new(*count).encode(family.encode_family(labels)?)?;
        }
        Ok(())
    }
}
