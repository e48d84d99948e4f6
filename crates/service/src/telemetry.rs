//! Traces over OTLP (HTTP, protobuf), on only when
//! `OTEL_EXPORTER_OTLP_ENDPOINT` is set.
//!
//! Each request is a span (`GET /api/activities/home`, kind server) whose
//! parent is the caller's, from the W3C `traceparent` header; a database
//! call bound for the primary adds two children: `queue wait`, until one
//! of the database threads takes it, and `statement`, while it runs there
//! (with `db.system` and `server.address`). The spans are the service's
//! `tracing` spans, turned into OpenTelemetry's by `tracing-opentelemetry`,
//! and sent in batches by the SDK's batch processor from a thread of its
//! own, with ureq (the service's HTTP client already), to
//! `$OTEL_EXPORTER_OTLP_ENDPOINT/v1/traces`. The exporter reads its other
//! standard variables itself (`OTEL_EXPORTER_OTLP_HEADERS`,
//! `OTEL_EXPORTER_OTLP_TIMEOUT`), and the resource `OTEL_SERVICE_NAME` and
//! `OTEL_RESOURCE_ATTRIBUTES` (the service's name is otherwise
//! `cruddur-db-service`).
//!
//! With tracing on, each request's span carries its `trace_id`, which the
//! log lines logged within it show (`CRUDDUR_LOG_FORMAT=json`: in `span`).
//! With tracing off, none of this runs: no header is read, no span added.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::body::Body;
use axum::extract::MatchedPath;
use axum::http::Request;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
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
    /// that turns the service's spans into its spans. Marks tracing on.
    ///
    /// # Errors
    /// When the endpoint is not a URL the exporter can use.
    pub fn start<S>(
        endpoint: &str,
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
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(resource)
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer(SERVICE_NAME));
        TRACING.store(true, Ordering::Relaxed);
        Ok((Self { provider }, layer))
    }
}

/// The span of a request: `request`, with its method and path (and, with
/// tracing on, its OpenTelemetry name, kind, route, the caller's trace as
/// its parent, and its trace id).
pub(crate) fn request_span(request: &Request<Body>) -> Span {
    if !tracing_on() {
        return tracing::info_span!("request", method = %request.method(), path = %request.uri().path());
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
    let parent = TraceContextPropagator::new()
        .extract(&opentelemetry_http::HeaderExtractor(request.headers()));
    if parent.span().span_context().is_valid() {
        // Fails only when the span is disabled or already started.
        let _ = span.set_parent(parent);
    }
    let trace_id = span.context().span().span_context().trace_id();
    span.record("trace_id", tracing::field::display(trace_id));
    span
}

/// The spans of a database call bound for the primary, children of the
/// request's: `queue wait` from now until a thread takes it, and
/// `statement` (made when it is taken) while it runs. `None` with tracing
/// off.
pub(crate) fn call_spans(server_address: &str) -> Option<(Span, CallSpan)> {
    if !tracing_on() {
        return None;
    }
    let parent = Span::current();
    let wait = tracing::info_span!(parent: &parent, "queue wait", otel.kind = "internal");
    Some((
        wait,
        CallSpan {
            parent,
            server_address: server_address.to_owned(),
        },
    ))
}

/// What the `statement` span is made from, on the database thread.
pub(crate) struct CallSpan {
    parent: Span,
    server_address: String,
}

impl CallSpan {
    /// The `statement` span, started now.
    pub(crate) fn start(&self) -> Span {
        tracing::info_span!(
            parent: &self.parent,
            "statement",
            otel.kind = "client",
            db.system = "postgresql",
            db.system.name = "postgresql",
            server.address = %self.server_address,
        )
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
