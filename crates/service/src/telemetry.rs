//! Traces over OTLP (HTTP, protobuf), on only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Each request is a span (`GET /api/activities/home`, kind server) whose
//! parent is the caller's, from the W3C `traceparent` header; a database
//! call bound for the primary adds a child `pool checkout`, until one of
//! the database threads (each holding one of the pool's connections)
//! takes it; and each statement, on the primary or a replica, is a child
//! span of its own (named after its first keyword: `SELECT`, `INSERT`,
//! `BEGIN`, ...) with `db.system`, `db.query.text` (with its `$1`
//! placeholders, never the values bound), `server.address` and
//! `server.port`: see [`statement_instrumentation`]. The spans are the service's
//! `tracing` spans, turned into OpenTelemetry's by `tracing-opentelemetry`,
//! and sent in batches by the SDK's batch processor from a thread of its
//! own, with ureq (the service's HTTP client already), to
//! `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`. The exporter reads its other
//! standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`), and the resource `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` (the service's name is otherwise
//! `cruddur-db-service`). The service applies the sampler of
//! `OTEL_TRACES_SAMPLER` itself, before it makes a request's span
//! ([`HeadSampler`]): a request left out makes no OpenTelemetry span at
//! all, and its database calls none.
//!
//! With tracing on, each request's span carries its `trace_id`, which the
//! log lines logged within it show (`CRUDDUR_LOG_FORMAT=json`: in `span`);
//! the log lines themselves are not copied into the spans as events.
//! With tracing off, none of this runs: no header is read, no span added.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::MatchedPath;
use axum::http::Request;
use diesel::connection::{Instrumentation, InstrumentationEvent};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TraceId, TracerProvider as _};
use opentelemetry_http::{Bytes, HttpClient, HttpError};
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// Whether the OpenTelemetry layer is installed: the request span reads
/// `traceparent` and database calls add their spans only then.
static TRACING: AtomicBool = AtomicBool::new(false);

/// Whether traces are exported.
pub(crate) fn tracing_on() -> bool {
    TRACING.load(Ordering::Relaxed)
}

/// The target of the spans made for traces alone (a statement's, a pool
/// checkout's): the log lines' layer leaves them out (see
/// [`for_logs`]), so that it does not format their fields for nothing.
pub const TRACES_ONLY: &str = "cruddur_db_service::traces_only";

/// Whether the log lines' layer takes a span or event of `metadata`: all
/// but the spans made for traces alone.
pub fn for_logs(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.target() != TRACES_ONLY
}

/// The service's name in its traces, unless `OTEL_SERVICE_NAME` says
/// otherwise.
pub const SERVICE_NAME: &str = "cruddur-db-service";

/// How long one export may take: 10 s (the OTLP default).
pub const EXPORT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why traces cannot be exported.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up the OTLP trace exporter for {endpoint}: {source}")]
pub struct TelemetryError {
    endpoint: String,
    #[source]
    source: opentelemetry_otlp::ExporterBuildError,
}

/// The tracer provider: dropping it (at exit) sends the spans still
/// batched.
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Err(e) = self.provider.shutdown() {
            eprintln!("warning: the last traces could not be sent: {e}");
        }
    }
}

impl Telemetry {
    /// An exporter to `endpoint` (`OTEL_EXPORTER_OTLP_ENDPOINT`: the
    /// collector's base URL, to which `/v1/traces` is added) and the layer
    /// that turns the service's spans into its spans, the requests to
    /// trace chosen by `sampler`. Marks tracing on.
    ///
    /// # Errors
    /// When the endpoint is not a URL the exporter can use.
    pub fn start<S>(
        endpoint: &str,
        sampler: HeadSampler,
    ) -> Result<
        (
            Self,
            tracing_opentelemetry::OpenTelemetryLayer<S, opentelemetry_sdk::trace::Tracer>,
        ),
        TelemetryError,
    >
    where
        S: tracing::Subscriber + for<'span> tracing_subscriber::registry::LookupSpan<'span>,
    {
        let traces = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(Ureq(
                ureq::Agent::config_builder()
                    // A collector that does not answer holds the batch
                    // thread no longer than this; its spans are dropped.
                    .timeout_global(Some(EXPORT_TIMEOUT))
                    .build()
                    .into(),
            ))
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .with_endpoint(traces.clone())
            .build()
            .map_err(|source| TelemetryError {
                endpoint: traces,
                source,
            })?;
        let resource = opentelemetry_sdk::Resource::builder()
            .with_service_name(SERVICE_NAME)
            .build();
        // The service samples before it makes a request's span
        // ([`HeadSampler`]); what it makes, the SDK keeps.
        let _ = HEAD_SAMPLER.set(sampler);
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .with_sampler(opentelemetry_sdk::trace::Sampler::AlwaysOn)
            .build();
        // No attributes a span of the service does not need: its source
        // file and line, its target, its thread, its busy and idle times
        // (two clock reads on every enter and exit); and no OpenTelemetry
        // context made current on entering a span, which nothing here
        // reads.
        let layer = tracing_opentelemetry::layer()
            .with_location(false)
            .with_target(false)
            .with_threads(false)
            .with_tracked_inactivity(false)
            .with_context_activation(false)
            .with_tracer(provider.tracer(SERVICE_NAME));
        TRACING.store(true, Ordering::Relaxed);
        Ok((Self { provider }, layer))
    }
}

/// The target of a request's span when its trace is not sampled: the
/// OpenTelemetry layer leaves it out ([`for_traces`]), so that such a
/// request costs what it costs with tracing off, and its database calls
/// make no span.
pub const NOT_SAMPLED: &str = "cruddur_db_service::not_sampled";

/// Whether the OpenTelemetry layer takes a span or event of `metadata`:
/// spans only (a log line is not copied into its span as an event), and
/// not a request's whose trace is not sampled.
pub fn for_traces(metadata: &tracing::Metadata<'_>) -> bool {
    metadata.is_span() && metadata.target() != NOT_SAMPLED
}

/// The span of a request: `request`, with its method and path (and, with
/// tracing on and its trace sampled, its OpenTelemetry name, kind, route,
/// the caller's trace as its parent, and its trace id, also returned), and
/// the trace id its log line names: this request's when it is traced, the
/// caller's `traceparent`'s when it is not sampled, none with tracing off.
pub(crate) fn request_span<B>(request: &Request<B>) -> (Span, Option<TraceId>) {
    if !tracing_on() {
        let span = tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
        return (span, None);
    }
    // The caller's trace, read only when it sent one.
    let parent = request
        .headers()
        .contains_key("traceparent")
        .then(|| {
            TraceContextPropagator::new()
                .extract(&opentelemetry_http::HeaderExtractor(request.headers()))
        })
        .filter(|parent| parent.span().span_context().is_valid());
    let caller = parent.as_ref().map(|p| {
        let span = p.span();
        let context = span.span_context();
        (context.trace_id(), context.is_sampled())
    });
    if !HEAD_SAMPLER
        .get()
        .copied()
        .unwrap_or_default()
        .samples(caller)
    {
        let span = tracing::info_span!(target: NOT_SAMPLED, "request", method = %request.method(), path = %request.uri().path());
        // The caller's trace, which this request is part of even though
        // it records nothing of it: its log line names it.
        return (span, caller.map(|(trace_id, _)| trace_id));
    }
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", MatchedPath::as_str);
    let span = tracing::info_span!(
        "request",
        method = %request.method(),
        path = %request.uri().path(),
        trace_id = tracing::field::Empty,
        otel.name = %format_args!("{} {route}", request.method()),
        otel.kind = "server",
        http.request.method = %request.method(),
        http.route = route,
    );
    if let Some(parent) = parent {
        // Fails only when the span is disabled or already started.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    (span, Some(trace_id))
}

/// Whether `span` (a request's) belongs to a sampled trace: made with
/// tracing on, and not as [`NOT_SAMPLED`].
fn sampled(span: &Span) -> bool {
    span.metadata().is_some_and(|m| m.target() != NOT_SAMPLED)
}

/// The sampler of `OTEL_TRACES_SAMPLER`, applied before a request's span is
/// made. The six standard values: `always_on`, `always_off`,
/// `traceidratio`, and each of them `parentbased_` (the default,
/// `parentbased_always_on`: a caller's `traceparent` decides, and a
/// request without one is traced). `traceidratio` takes its ratio from
/// `OTEL_TRACES_SAMPLER_ARG` (0 to 1; 1 when unset or not such a number),
/// and decides on the caller's trace id as the SDK's sampler would (its
/// last 8 bytes), or at random for a request that starts a trace (the SDK
/// would draw its trace id at random). Other values (`jaeger_remote`,
/// ...) are not supported here: the default applies, with a warning.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HeadSampler {
    /// Whether a caller's `traceparent` decides when there is one.
    parent_based: bool,
    /// Otherwise, the share of traces kept: 0 to 1.
    ratio: f64,
}

impl Default for HeadSampler {
    fn default() -> Self {
        Self {
            parent_based: true,
            ratio: 1.0,
        }
    }
}

/// `arg` as a ratio from 0 to 1, if it is one.
fn ratio(arg: &str) -> Option<f64> {
    arg.trim()
        .parse::<f64>()
        .ok()
        .filter(|r| (0.0..=1.0).contains(r))
}

/// The sampler every request is decided by, set when tracing starts.
static HEAD_SAMPLER: std::sync::OnceLock<HeadSampler> = std::sync::OnceLock::new();

impl HeadSampler {
    /// From `OTEL_TRACES_SAMPLER` and `OTEL_TRACES_SAMPLER_ARG` in
    /// `settings` (the environment, or a `.env` file, as the service's other
    /// variables), with a warning for a value it does not take.
    pub fn from_settings(settings: &cruddur_db::Settings) -> Self {
        use crate::variables::{OTEL_TRACES_SAMPLER, OTEL_TRACES_SAMPLER_ARG};
        let sampler = settings.get(&OTEL_TRACES_SAMPLER).unwrap_or_default();
        let arg = settings.get(&OTEL_TRACES_SAMPLER_ARG);
        let Some(parsed) = Self::parse(sampler, arg) else {
            eprintln!(
                "warning: OTEL_TRACES_SAMPLER={sampler:?} is not one of always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off, \
                 parentbased_traceidratio; using parentbased_always_on"
            );
            return Self::default();
        };
        if let Some(arg) = arg
            && sampler.trim().ends_with("traceidratio")
            && ratio(arg).is_none()
        {
            eprintln!(
                "warning: OTEL_TRACES_SAMPLER_ARG={arg:?} is not a ratio from 0 to 1; \
                 every trace is kept"
            );
        }
        parsed
    }

    /// The sampler `sampler` names (empty: the default), with `arg` for
    /// a ratio; `None` for a name that is not one of the six.
    pub fn parse(sampler: &str, arg: Option<&str>) -> Option<Self> {
        let sampler = sampler.trim();
        let (parent_based, root) = match sampler.strip_prefix("parentbased_") {
            Some(root) => (true, root),
            None if sampler.is_empty() => (true, "always_on"),
            None => (false, sampler),
        };
        let ratio = match root {
            "always_on" => 1.0,
            "always_off" => 0.0,
            "traceidratio" => arg.and_then(ratio).unwrap_or(1.0),
            _ => return None,
        };
        Some(Self {
            parent_based,
            ratio,
        })
    }

    /// Whether a request is traced: `caller` is the caller's trace id and
    /// whether it sampled it, when it sent a valid `traceparent`.
    pub fn samples(self, caller: Option<(TraceId, bool)>) -> bool {
        match caller {
            Some((_, sampled)) if self.parent_based => sampled,
            _ if self.ratio >= 1.0 => true,
            _ if self.ratio <= 0.0 => false,
            Some((trace_id, _)) => {
                let bytes = trace_id.to_bytes();
                let mut low = [0; 8];
                low.copy_from_slice(&bytes[8..]);
                self.keeps(u64::from_be_bytes(low))
            }
            None => {
                use std::hash::{BuildHasher, Hasher};
                // A fresh random value: RandomState's keys differ at each
                // call (as a trace id the SDK draws would).
                let random = std::collections::hash_map::RandomState::new()
                    .build_hasher()
                    .finish();
                self.keeps(random)
            }
        }
    }

    /// The SDK's trace-id ratio rule on the 64 bits `value`.
    fn keeps(self, value: u64) -> bool {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "the ratio is in 0..=1, so the bound is in 0..=2^63"
        )]
        let bound = (self.ratio * (1_u64 << 63) as f64) as u64;
        (value >> 1) < bound
    }
}

/// The spans of a database call bound for the primary: `pool checkout`, a
/// child of the request's from now until one of the database threads
/// (each holding one of the pool's connections) takes it, and the
/// request's span itself, which the thread enters while it runs the call,
/// so that each statement's span is the request's child. `None` with
/// tracing off.
pub(crate) fn call_spans() -> Option<(Span, Span)> {
    if !tracing_on() {
        return None;
    }
    let parent = Span::current();
    if !sampled(&parent) {
        return None;
    }
    let wait = tracing::info_span!(target: TRACES_ONLY, parent: &parent, "pool checkout", otel.kind = "internal");
    Some((wait, parent))
}

/// The request's span, for a call that runs on another thread without
/// queueing (a read sent to a replica) to enter there. `None` with tracing
/// off, and for a request whose trace is not sampled.
pub(crate) fn current_span() -> Option<Span> {
    if !tracing_on() {
        return None;
    }
    let span = Span::current();
    sampled(&span).then_some(span)
}

/// With tracing on, has the connections of `config`'s pools (the
/// primary's and the replicas') trace their statements (see
/// [`statement_instrumentation`]); with tracing off, leaves `config` as it
/// is, and statements cost nothing more.
pub fn trace_statements(config: &mut cruddur_db::Config) {
    if tracing_on() {
        config.instrumentation = Some(statement_instrumentation());
    }
}

/// The instrumentation of a connection that traces its statements: one
/// client span per statement, child of the span current where it runs
/// (the request's), with `db.system`, `db.query.text` (the SQL with its
/// `$1` placeholders, never the values bound), `server.address` and
/// `server.port`.
///
/// A read sent to a replica also gets its `pool checkout` span here: the
/// checkout from the replica's pool, while the router makes it; so does a
/// read on the async primary, from its pool. (A call
/// bound for the primary has its `pool checkout` from the queue: its
/// wait for a database thread, each holding one of the pool's connections,
/// so that its checkout from the pool itself never waits.)
pub fn statement_instrumentation() -> cruddur_db::ConnectionInstrumentation {
    cruddur_db::ConnectionInstrumentation::new(|target| {
        Some(Box::new(StatementSpans::new(target)) as Box<dyn Instrumentation>)
    })
    .with_checkout(|target| {
        // The database threads' calls have theirs from the queue; a
        // replica's and the async primary's checkouts are the pool's own.
        if !(target.replica || target.nonblocking) || !sampled(&Span::current()) {
            return None;
        }
        let span =
            tracing::info_span!(target: TRACES_ONLY, "pool checkout", otel.kind = "internal");
        Some(Box::new(span) as Box<dyn std::any::Any + Send>)
    })
}

/// One connection's statement spans: from Diesel's `StartQuery` to its
/// `FinishQuery`, a client span, child of the span current on the thread
/// (a statement run outside of one, such as the start-up checks, gets
/// none), named after the statement's first keyword, with `db.system`,
/// `db.system.name` (`postgresql`), `db.query.text` (the SQL as sent, with
/// its `$1` placeholders: the values bound to it are never formatted),
/// `server.address` and `server.port` (the host and port of the
/// connection's URL, a replica's for a replica's connection), and for a
/// statement that failed, status error and `error.type` (Diesel's kind of
/// error; never its message, which can quote a value).
struct StatementSpans {
    host: String,
    port: i64,
    /// The span of the statement under way.
    open: Option<Span>,
    /// The statement's text, rebuilt in place for each statement.
    text: String,
}

impl StatementSpans {
    fn new(target: &cruddur_db::ConnectionTarget) -> Self {
        Self {
            host: target.host.clone(),
            port: i64::from(target.port),
            open: None,
            text: String::new(),
        }
    }
}

/// What Diesel's query `Display` puts between the SQL and the values bound.
const BINDS: &str = " -- binds: ";

/// A writer that keeps what comes before [`BINDS`] and stops there, so
/// that the values after it are never formatted.
struct UntilBinds<'a>(&'a mut String);

impl std::fmt::Write for UntilBinds<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.push_str(s);
        if self.0.ends_with(BINDS) {
            self.0.truncate(self.0.len() - BINDS.len());
            // Ends the formatting before the values.
            return Err(std::fmt::Error);
        }
        Ok(())
    }
}

/// The SQL of `query` (a Diesel query's `Display`: its SQL, then
/// [`BINDS`] and the values; a text sent as it is, such as `BEGIN`, has
/// none) into `text`.
fn statement_text(text: &mut String, query: &dyn std::fmt::Display) {
    use std::fmt::Write as _;
    text.clear();
    // An error is the writer stopping before the values.
    let _ = write!(UntilBinds(text), "{query}");
}

/// A span named `$name` with the statement's attributes.
macro_rules! statement_span {
    ($name:literal, $spans:expr) => {
        tracing::info_span!(
            target: TRACES_ONLY,
            $name,
            otel.kind = "client",
            db.system = "postgresql",
            db.system.name = "postgresql",
            db.query.text = $spans.text.as_str(),
            server.address = $spans.host.as_str(),
            server.port = $spans.port,
            otel.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        )
    };
}

impl StatementSpans {
    fn start(&mut self, query: &dyn std::fmt::Display) {
        // A statement Diesel did not report finished ends here.
        self.open = None;
        // Outside a request, or in one whose trace is not sampled (its
        // span is for the logs alone), a statement has no span: it would
        // start a trace of its own.
        if !sampled(&Span::current()) {
            return;
        }
        statement_text(&mut self.text, query);
        let keyword = self
            .text
            .trim_start()
            .split(|c: char| !c.is_ascii_alphabetic())
            .next()
            .unwrap_or_default();
        let is = |name: &str| keyword.eq_ignore_ascii_case(name);
        // A name of its own per keyword: a span's name is static.
        let span = if is("SELECT") {
            statement_span!("SELECT", self)
        } else if is("INSERT") {
            statement_span!("INSERT", self)
        } else if is("UPDATE") {
            statement_span!("UPDATE", self)
        } else if is("DELETE") {
            statement_span!("DELETE", self)
        } else if is("WITH") {
            statement_span!("WITH", self)
        } else if is("BEGIN") {
            statement_span!("BEGIN", self)
        } else if is("COMMIT") {
            statement_span!("COMMIT", self)
        } else if is("ROLLBACK") {
            statement_span!("ROLLBACK", self)
        } else if is("SAVEPOINT") {
            statement_span!("SAVEPOINT", self)
        } else if is("RELEASE") {
            statement_span!("RELEASE", self)
        } else {
            statement_span!("postgresql", self)
        };
        self.open = Some(span);
    }

    fn finish(&mut self, error: Option<&diesel::result::Error>) {
        let Some(span) = self.open.take() else {
            return;
        };
        if let Some(error) = error {
            span.record("otel.status_code", "ERROR");
            span.record("error.type", error_type(error));
        }
    }
}

impl Instrumentation for StatementSpans {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        match event {
            InstrumentationEvent::StartQuery { query, .. } => self.start(query),
            InstrumentationEvent::FinishQuery { error, .. } => self.finish(error),
            _ => {}
        }
    }
}

/// A statement's error as `error.type`: its kind, never its message.
fn error_type(error: &diesel::result::Error) -> &'static str {
    use diesel::result::{DatabaseErrorKind as K, Error as D};
    match error {
        D::DatabaseError(kind, _) => match kind {
            K::UniqueViolation => "unique_violation",
            K::ForeignKeyViolation => "foreign_key_violation",
            K::NotNullViolation => "not_null_violation",
            K::CheckViolation => "check_violation",
            K::RestrictViolation => "restrict_violation",
            K::ExclusionViolation => "exclusion_violation",
            K::ReadOnlyTransaction => "read_only_transaction",
            K::SerializationFailure => "serialization_failure",
            K::ClosedConnection => "closed_connection",
            K::UnableToSendCommand => "unable_to_send_command",
            _ => "database_error",
        },
        D::NotFound => "not_found",
        D::DeserializationError(_) => "deserialization_error",
        D::SerializationError(_) => "serialization_error",
        _ => "error",
    }
}

/// OTLP over ureq: the batch processor calls the exporter on its own
/// thread, so a blocking client fits, and ureq is the service's already.
#[derive(Debug)]
struct Ureq(ureq::Agent);

impl HttpClient for Ureq {
    fn send_bytes<'a, 'b>(
        &'a self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<axum::http::Response<Bytes>, HttpError>> + Send + 'b>>
    where
        'a: 'b,
        Self: 'b,
    {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let request = Request::from_parts(parts, body.to_vec());
            let mut response = self.0.run(request)?;
            let status = response.status();
            let body = response.body_mut().read_to_vec()?;
            let mut answer = axum::http::Response::new(Bytes::from(body));
            *answer.status_mut() = status;
            Ok(answer)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_head_sampler_reads_the_six_standard_samplers_and_their_ratio() {
        let parse =
            |s: &str, a: Option<&str>| HeadSampler::parse(s, a).map(|h| (h.parent_based, h.ratio));
        assert_eq!(parse("", None), Some((true, 1.0)));
        assert_eq!(parse(" always_on ", None), Some((false, 1.0)));
        assert_eq!(parse("always_off", Some("0.5")), Some((false, 0.0)));
        assert_eq!(parse("traceidratio", Some("0.25")), Some((false, 0.25)));
        assert_eq!(parse("parentbased_always_on", None), Some((true, 1.0)));
        assert_eq!(parse("parentbased_always_off", None), Some((true, 0.0)));
        assert_eq!(
            parse("parentbased_traceidratio", Some(" 0.1 ")),
            Some((true, 0.1))
        );
        // A ratio that is not one: 1, as the SDK's default.
        for arg in [None, Some("2"), Some("-0.1"), Some("half"), Some("NaN")] {
            assert_eq!(parse("traceidratio", arg), Some((false, 1.0)), "{arg:?}");
        }
        for unknown in [
            "jaeger_remote",
            "xray",
            "parentbased_",
            "ALWAYS_ON",
            "parentbased_xray",
        ] {
            assert_eq!(parse(unknown, None), None, "{unknown}");
        }
    }

    #[test]
    fn the_head_sampler_is_read_from_the_services_settings() {
        let settings =
            |pairs: &[(&str, &str)]| cruddur_db::Settings::from_pairs(pairs.iter().copied());
        let read = |pairs: &[(&str, &str)]| {
            let h = HeadSampler::from_settings(&settings(pairs));
            (h.parent_based, h.ratio)
        };
        assert_eq!(read(&[]), (true, 1.0));
        assert_eq!(
            read(&[
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.1"),
            ]),
            (true, 0.1)
        );
        // Values it does not take: the defaults (with a warning).
        assert_eq!(read(&[("OTEL_TRACES_SAMPLER", "xray")]), (true, 1.0));
        assert_eq!(
            read(&[
                ("OTEL_TRACES_SAMPLER", "traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0,1"),
            ]),
            (false, 1.0)
        );
    }

    #[test]
    fn the_head_sampler_follows_the_caller_or_the_trace_id_or_chance() {
        use opentelemetry::trace::TraceId;
        let sampler = |s: &str, a: &str| HeadSampler::parse(s, Some(a)).unwrap();
        let low = TraceId::from_hex("7d3f0c2a9b8e4f1100000000000000a1").unwrap();
        let high = TraceId::from_hex("7d3f0c2a9b8e4f11ffffffffffffff00").unwrap();
        // Parent-based: the caller's flag decides, whatever the ratio.
        let parent = sampler("parentbased_traceidratio", "0.5");
        assert!(parent.samples(Some((high, true))));
        assert!(!parent.samples(Some((low, false))));
        assert!(!sampler("parentbased_always_off", "").samples(None));
        assert!(sampler("parentbased_always_on", "").samples(None));
        // Not parent-based: the trace id decides, not the caller's flag.
        let ratio = sampler("traceidratio", "0.5");
        assert!(ratio.samples(Some((low, false))));
        assert!(!ratio.samples(Some((high, true))));
        assert!(!sampler("always_off", "").samples(Some((low, true))));
        assert!(sampler("always_on", "").samples(Some((high, false))));
        // A request that starts a trace: about the ratio's share.
        let kept = (0..10_000).filter(|_| ratio.samples(None)).count();
        assert!((4_000..6_000).contains(&kept), "{kept} of 10000 at 0.5");
        let tenth = sampler("parentbased_traceidratio", "0.1");
        let kept = (0..10_000).filter(|_| tenth.samples(None)).count();
        assert!((600..1_400).contains(&kept), "{kept} of 10000 at 0.1");
    }
    use diesel::prelude::*;

    diesel::table! {
        notes (id) {
            id -> Integer,
            body -> Text,
        }
    }

    #[test]
    fn a_statements_text_has_its_placeholders_and_never_its_values() {
        let query = notes::table
            .filter(notes::body.eq("a secret value"))
            .select(notes::id);
        let shown = diesel::debug_query::<diesel::pg::Pg, _>(&query);
        assert!(
            shown.to_string().contains("a secret value"),
            "Diesel's Display shows the values bound: {shown}"
        );
        let mut text = String::from("what was there before");
        statement_text(&mut text, &shown);
        assert_eq!(
            text,
            r#"SELECT "notes"."id" FROM "notes" WHERE ("notes"."body" = $1)"#
        );
        // A text sent as it is (Diesel's BEGIN, COMMIT) has no values.
        statement_text(&mut text, &"BEGIN");
        assert_eq!(text, "BEGIN");
    }
}
