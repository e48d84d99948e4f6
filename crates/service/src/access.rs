//! The request log: one line per request, written by a tower layer that
//! also makes the request's span (`request`, with its method and path, and
//! for a traced request its OpenTelemetry attributes: see
//! [`crate::telemetry`]) and runs the request inside it.
//!
//! The line is written here rather than as a `tracing` event formatted by
//! `tracing_subscriber::fmt`: through the formatter, a line cost about
//! 9,500 instructions (the timestamp's formatting, the event's fields
//! visited as `Debug`, the span's fields looked up, ANSI styles applied to
//! every part even with colour off), a seventh of a feed request's whole
//! CPU. Here it is the same text (or JSON object) put together with
//! `itoa`-style digit writing and a timestamp whose date and time of day
//! are formatted once a second: about a tenth of that. Every other event,
//! and the request's span, still go through `tracing`.
//!
//! The lines are those the formatter would write for the event
//! `answered` (target `cruddur_db_service::api`, level `INFO`) with fields
//! `status` and `latency_us`, inside the request's span (`method`, `path`,
//! and `trace_id` for a traced request): the same text, the same JSON keys.
//! `RUST_LOG` turns them off as it would that event (the service asks it
//! once, at start-up).

use std::cell::RefCell;
use std::fmt::Write as _;
use std::io::Write as _;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::http::{Method, Request, Response, Uri};
use opentelemetry::trace::TraceId;
use pin_project_lite::pin_project;
use tower_layer::Layer;
use tower_service::Service;
use tracing::Span;

use crate::logs::BatchedWriter;
use crate::settings::LogFormat;

/// The target the request lines name, as the event they stand for had.
pub const TARGET: &str = "cruddur_db_service::api";

/// Where request lines go, and how they look.
pub struct AccessLog {
    format: LogFormat,
    colour: bool,
    out: Output,
}

enum Output {
    /// The log thread's buffer.
    Batched(BatchedWriter),
    /// Standard error, one write per line.
    Stderr,
    /// Kept in memory (tests).
    #[cfg(test)]
    Memory(std::sync::Mutex<Vec<u8>>),
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("format", &self.format)
            .field("colour", &self.colour)
            .finish_non_exhaustive()
    }
}

impl AccessLog {
    /// Lines in `format` (in colour when `colour`, text only) into the log
    /// thread's buffer.
    pub fn batched(writer: BatchedWriter, format: LogFormat, colour: bool) -> Self {
        Self {
            format,
            colour,
            out: Output::Batched(writer),
        }
    }

    /// Lines in `format` straight to standard error.
    pub fn stderr(format: LogFormat, colour: bool) -> Self {
        Self {
            format,
            colour,
            out: Output::Stderr,
        }
    }

    /// Writes the line of a request answered `status` after `latency_us`.
    fn write(&self, line: &Line<'_>) {
        LINE.with_borrow_mut(|buffer| {
            buffer.clear();
            match self.format {
                LogFormat::Text => line.text(buffer, self.colour),
                LogFormat::Json => line.json(buffer),
            }
            let bytes = buffer.as_bytes();
            // Nowhere to report a failed write of the log itself.
            let _ = match &self.out {
                Output::Batched(writer) => writer.append(bytes),
                Output::Stderr => std::io::stderr().write_all(bytes),
                #[cfg(test)]
                Output::Memory(memory) => {
                    memory.lock().unwrap().extend_from_slice(bytes);
                    Ok(())
                }
            };
        });
    }
}

thread_local! {
    /// Each thread's line, reused.
    static LINE: RefCell<String> = RefCell::new(String::with_capacity(256));
    /// The second of the last timestamp written on this thread, and its
    /// `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// What a request's line says.
struct Line<'a> {
    method: &'a Method,
    path: &'a str,
    trace_id: Option<TraceId>,
    status: u16,
    latency_us: u64,
    at: SystemTime,
}

/// An ANSI style around what `write` puts, when `on`.
fn styled(out: &mut String, on: bool, style: &str, write: impl FnOnce(&mut String)) {
    if on {
        out.push_str(style);
    }
    write(out);
    if on {
        out.push_str("\x1b[0m");
    }
}

const DIMMED: &str = "\x1b[2m";
const BOLD: &str = "\x1b[1m";
const GREEN: &str = "\x1b[32m";
const ITALIC: &str = "\x1b[3m";

impl Line<'_> {
    /// `2026-12-04T19:20:01.123456Z  INFO request{method=GET path=/api/x}:
    /// cruddur_db_service::api: answered status=200 latency_us=523`, as
    /// tracing's formatter writes it (its colours too).
    fn text(&self, out: &mut String, colour: bool) {
        styled(out, colour, DIMMED, |out| timestamp(out, self.at));
        out.push(' ');
        styled(out, colour, GREEN, |out| out.push_str(" INFO"));
        out.push(' ');
        styled(out, colour, BOLD, |out| out.push_str("request"));
        styled(out, colour, BOLD, |out| out.push('{'));
        field(out, colour, "method", self.method.as_str());
        out.push(' ');
        field(out, colour, "path", self.path);
        if let Some(trace_id) = self.trace_id {
            out.push(' ');
            styled(out, colour, ITALIC, |out| out.push_str("trace_id"));
            styled(out, colour, DIMMED, |out| out.push('='));
            let _ = write!(out, "{trace_id}");
        }
        styled(out, colour, BOLD, |out| out.push('}'));
        styled(out, colour, DIMMED, |out| out.push(':'));
        out.push(' ');
        styled(out, colour, DIMMED, |out| out.push_str(TARGET));
        styled(out, colour, DIMMED, |out| out.push(':'));
        out.push_str(" answered ");
        styled(out, colour, ITALIC, |out| out.push_str("status"));
        styled(out, colour, DIMMED, |out| out.push('='));
        number(out, u64::from(self.status));
        out.push(' ');
        styled(out, colour, ITALIC, |out| out.push_str("latency_us"));
        styled(out, colour, DIMMED, |out| out.push('='));
        number(out, self.latency_us);
        out.push('\n');
    }

    /// The object tracing's JSON formatter writes for the event, with the
    /// current span: `{"timestamp":…,"level":"INFO","fields":{"message":
    /// "answered","status":200,"latency_us":523},"target":…,"span":
    /// {"method":…,"path":…,"name":"request"}}`.
    fn json(&self, out: &mut String) {
        out.push_str(r#"{"timestamp":""#);
        timestamp(out, self.at);
        out.push_str(r#"","level":"INFO","fields":{"message":"answered","status":"#);
        number(out, u64::from(self.status));
        out.push_str(r#","latency_us":"#);
        number(out, self.latency_us);
        out.push_str(r#"},"target":""#);
        out.push_str(TARGET);
        out.push_str(r#"","span":{"method":"#);
        json_string(out, self.method.as_str());
        out.push_str(r#","path":"#);
        json_string(out, self.path);
        if let Some(trace_id) = self.trace_id {
            let _ = write!(out, r#","trace_id":"{trace_id}""#);
        }
        out.push_str(r#","name":"request"}}"#);
        out.push('\n');
    }
}

/// `name=value` in the span's braces.
fn field(out: &mut String, colour: bool, name: &str, value: &str) {
    styled(out, colour, ITALIC, |out| out.push_str(name));
    styled(out, colour, DIMMED, |out| out.push('='));
    out.push_str(value);
}

/// `n` in decimal.
fn number(out: &mut String, n: u64) {
    padded(out, n, 1);
}

/// `n` in decimal, with leading zeros to at least `width` digits (at most
/// 20).
fn padded(out: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    while n > 0 || digits.len() - at < width {
        at -= 1;
        // A digit: n % 10 < 10.
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
    }
    for &d in &digits[at..] {
        out.push(char::from(d));
    }
}

/// `value` as a JSON string: quoted, with `"`, `\` and control characters
/// escaped.
fn json_string(out: &mut String, value: &str) {
    out.push('"');
    for c in value.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if u32::from(c) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// `at` as RFC 3339 in UTC with microseconds (`2026-12-04T19:20:01.123456Z`),
/// as tracing's `SystemTime` timer writes it; the date and time of day are
/// formatted once per second per thread.
fn timestamp(out: &mut String, at: SystemTime) {
    let since = at.duration_since(UNIX_EPOCH).unwrap_or_default();
    let second = since.as_secs();
    SECOND.with_borrow_mut(|(cached, text)| {
        if *cached != second {
            *cached = second;
            text.clear();
            civil(text, second);
        }
        out.push_str(text);
    });
    out.push('.');
    padded(out, u64::from(since.subsec_micros()), 6);
    out.push('Z');
}

/// `YYYY-MM-DDTHH:MM:SS` of the Unix time `seconds`, in UTC (days to a
/// civil date by Howard Hinnant's algorithm, for the proleptic Gregorian
/// calendar).
fn civil(out: &mut String, seconds: u64) {
    let days = i64::try_from(seconds / 86_400).unwrap_or(i64::MAX);
    let of_day = seconds % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era =
        (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let mp = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    let _ = write!(
        out,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60
    );
}

/// The layer that makes each request's span, runs the request in it, and
/// writes its line to the [`AccessLog`], if any.
#[derive(Clone)]
pub(crate) struct AccessLayer {
    log: Option<Arc<AccessLog>>,
}

impl AccessLayer {
    pub(crate) fn new(log: Option<Arc<AccessLog>>) -> Self {
        Self { log }
    }
}

impl<S> Layer<S> for AccessLayer {
    type Service = Access<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Access {
            inner,
            log: self.log.clone(),
        }
    }
}

/// [`AccessLayer`]'s service.
#[derive(Clone)]
pub(crate) struct Access<S> {
    inner: S,
    log: Option<Arc<AccessLog>>,
}

impl<S, B, R> Service<Request<B>> for Access<S>
where
    S: Service<Request<B>, Response = Response<R>>,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = AccessFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request<B>) -> Self::Future {
        let (span, trace_id) = crate::telemetry::request_span(&request);
        let logged = self.log.as_ref().map(|log| Logged {
            log: Arc::clone(log),
            method: request.method().clone(),
            uri: request.uri().clone(),
            trace_id,
            started: Instant::now(),
        });
        let inner = {
            let _in_request = span.enter();
            self.inner.call(request)
        };
        AccessFuture {
            inner,
            span,
            logged,
        }
    }
}

/// What a request's line needs, kept until it is answered.
struct Logged {
    log: Arc<AccessLog>,
    method: Method,
    uri: Uri,
    trace_id: Option<TraceId>,
    started: Instant,
}

pin_project! {
    /// A request's response, polled in its span; its line is written when
    /// the response is ready.
    pub(crate) struct AccessFuture<F> {
        #[pin]
        inner: F,
        span: Span,
        logged: Option<Logged>,
    }
}

impl<F, R, E> Future for AccessFuture<F>
where
    F: Future<Output = Result<Response<R>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _in_request = this.span.enter();
            std::task::ready!(this.inner.poll(cx))
        };
        if let (Ok(response), Some(logged)) = (&result, this.logged.take()) {
            let latency = logged.started.elapsed();
            logged.log.write(&Line {
                method: &logged.method,
                path: logged.uri.path(),
                trace_id: logged.trace_id,
                status: response.status().as_u16(),
                latency_us: u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
                at: SystemTime::now(),
            });
        }
        Poll::Ready(result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn line(path: &str, trace_id: Option<TraceId>) -> Line<'_> {
        Line {
            method: &Method::GET,
            path,
            trace_id,
            status: 200,
            latency_us: 523,
            // 2026-12-04T19:20:01.000042Z
            at: UNIX_EPOCH + Duration::new(1_796_412_001, 42_000),
        }
    }

    #[test]
    fn a_text_line_reads_as_the_formatter_writes_it() {
        let mut out = String::new();
        line("/api/activities/home", None).text(&mut out, false);
        assert_eq!(
            out,
            "2026-12-04T19:20:01.000042Z  INFO request{method=GET path=/api/activities/home}: \
             cruddur_db_service::api: answered status=200 latency_us=523\n"
        );
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        out.clear();
        line("/", Some(trace)).text(&mut out, true);
        let plain = out
            .split('\x1b')
            .enumerate()
            .map(|(i, part)| {
                if i == 0 {
                    part
                } else {
                    &part[part.find('m').unwrap() + 1..]
                }
            })
            .collect::<String>();
        assert_eq!(
            plain,
            "2026-12-04T19:20:01.000042Z  INFO request{method=GET path=/ \
             trace_id=4bf92f3577b34da6a3ce929d0e0e4736}: cruddur_db_service::api: answered \
             status=200 latency_us=523\n"
        );
        assert!(out.contains("\x1b[32m INFO\x1b[0m"), "{out:?}");
    }

    #[test]
    fn a_json_line_parses_with_the_keys_of_the_formatter() {
        let mut out = String::new();
        let hostile = "/api/\"quoted\"\\back\u{1}slash/é";
        line(hostile, None).json(&mut out);
        assert!(
            out.ends_with('\n') && out.matches('\n').count() == 1,
            "{out:?}"
        );
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["timestamp"], "2026-12-04T19:20:01.000042Z");
        assert_eq!(value["level"], "INFO");
        assert_eq!(value["target"], TARGET);
        assert_eq!(value["fields"]["message"], "answered");
        assert_eq!(value["fields"]["status"], 200);
        assert_eq!(value["fields"]["latency_us"], 523);
        assert_eq!(value["span"]["name"], "request");
        assert_eq!(value["span"]["method"], "GET");
        assert_eq!(value["span"]["path"], hostile);
        assert!(value["span"].get("trace_id").is_none());
        let trace = TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap();
        out.clear();
        line("/", Some(trace)).json(&mut out);
        let value: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            value["span"]["trace_id"],
            "4bf92f3577b34da6a3ce929d0e0e4736"
        );
    }

    #[test]
    fn timestamps_agree_with_chrono_across_the_calendar() {
        // Leap days, year ends, the epoch, a century not a leap year.
        for seconds in [
            0_u64,
            951_782_400,   // 2000-02-29
            4_107_542_399, // 2100-02-28T23:59:59
            4_107_542_400, // 2100-03-01
            1_796_412_001,
            1_798_761_599, // 2026-12-31T23:59:59
        ] {
            let at = UNIX_EPOCH + Duration::new(seconds, 999_999_000);
            let mut ours = String::new();
            timestamp(&mut ours, at);
            let theirs = chrono::DateTime::<chrono::Utc>::from(at)
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            assert_eq!(ours, theirs, "at {seconds}");
        }
    }

    #[test]
    fn numbers_are_written_in_full() {
        for n in [0, 7, 10, 523, u64::from(u32::MAX), u64::MAX] {
            let mut out = String::new();
            number(&mut out, n);
            assert_eq!(out, n.to_string());
        }
        for (n, width) in [(0, 6), (42, 6), (999_999, 6), (1_234_567, 6), (5, 1)] {
            let mut out = String::new();
            padded(&mut out, n, width);
            assert_eq!(out, format!("{n:0width$}"), "{n} in {width}");
        }
    }

    #[tokio::test]
    async fn each_answered_request_writes_one_line_with_its_status() {
        use axum::body::Body;
        let log = Arc::new(AccessLog {
            format: LogFormat::Json,
            colour: false,
            out: Output::Memory(std::sync::Mutex::default()),
        });
        let service: axum::Router = axum::Router::new()
            .route("/one", axum::routing::get(|| async { "one" }))
            .fallback(|| async { axum::http::StatusCode::NOT_FOUND });
        let mut access = AccessLayer::new(Some(Arc::clone(&log))).layer(service);
        for path in ["/one", "/missing"] {
            let request = Request::get(path).body(Body::empty()).unwrap();
            access.call(request).await.unwrap();
        }
        let Output::Memory(memory) = &log.out else {
            unreachable!()
        };
        let text = String::from_utf8(memory.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 2, "{text}");
        assert_eq!(lines[0]["span"]["path"], "/one");
        assert_eq!(lines[0]["fields"]["status"], 200);
        assert_eq!(lines[1]["span"]["path"], "/missing");
        assert_eq!(lines[1]["fields"]["status"], 404);
    }
}
