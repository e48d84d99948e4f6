//! The service's HTTP/1.1 transport: hyper's `http1` connections serving
//! the axum router, with the limits a public listener needs.
//!
//! - A **header-read timeout**: a request head must be complete within it
//!   from its first byte, however slowly the bytes come (a trickle does not
//!   extend it).
//!   The body that follows has as long again once the handler reads it
//!   ([`crate::AppState::with_body_timeout`]; `408` after).
//! - An **idle timeout**: a keep-alive connection with no request on it is
//!   closed after it, counted from the end of the last response (or from
//!   the accept).
//! - A **cap on open connections**: a connection beyond it is accepted and
//!   closed at once, so that its client learns right away rather than
//!   waiting in the kernel's backlog, and the listener keeps draining the
//!   backlog.
//! - A **shutdown deadline**: on shutdown the listener closes, idle
//!   connections close, requests in flight are answered; whatever is still
//!   open at the deadline (a half-sent request, a slow reader) is dropped,
//!   and [`serve`] returns.
//!
//! The timeouts are the service's own rather than hyper's
//! `header_read_timeout`, whose clock also runs while a keep-alive
//! connection waits idle, which would make the idle timeout the header
//! timeout.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response};
use hyper::body::{Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tower_service::Service;

/// The default header-read timeout: 10 s.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// The default idle keep-alive timeout: 60 s.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// The default cap on open connections: 1024.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;
/// The default shutdown deadline: 30 s.
pub const DEFAULT_SHUTDOWN_DEADLINE: Duration = Duration::from_secs(30);

/// How long to wait before accepting again after an error that is not the
/// client's (out of file descriptors, say), so that the loop does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The transport's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transport {
    /// From a request head's first byte to its last
    /// (`CRUDDUR_HEADER_READ_TIMEOUT_MS`, default
    /// [`DEFAULT_HEADER_READ_TIMEOUT`]).
    pub header_read_timeout: Duration,
    /// How long a connection may wait for its next request
    /// (`CRUDDUR_IDLE_TIMEOUT_MS`, default [`DEFAULT_IDLE_TIMEOUT`]).
    pub idle_timeout: Duration,
    /// Open connections at most (`CRUDDUR_MAX_CONNECTIONS`, default
    /// [`DEFAULT_MAX_CONNECTIONS`]); more are accepted and closed at once.
    pub max_connections: usize,
    /// How long shutdown waits for open connections before dropping them
    /// (`CRUDDUR_SHUTDOWN_DEADLINE_MS`, default
    /// [`DEFAULT_SHUTDOWN_DEADLINE`]).
    pub shutdown_deadline: Duration,
}

impl Default for Transport {
    fn default() -> Self {
        Self {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            shutdown_deadline: DEFAULT_SHUTDOWN_DEADLINE,
        }
    }
}

/// How [`serve`] ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// Every connection finished before the deadline: every request in
    /// flight was answered.
    Drained,
    /// This many connections were still open at the shutdown deadline and
    /// were dropped.
    Deadline(usize),
}

/// Serves `app` on `listener` with the limits of `transport` until
/// `shutdown` completes; then stops accepting, lets open connections
/// finish for up to the shutdown deadline, drops the rest and returns.
///
/// Every connection is set `TCP_NODELAY`: a response may leave in more
/// than one write (head, then a feed page), and with Nagle's algorithm a
/// later write can wait for the client's delayed ACK (40 ms on Linux).
pub async fn serve(
    listener: TcpListener,
    app: axum::Router,
    transport: Transport,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<Stopped> {
    let permits = Arc::new(Semaphore::new(transport.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut at_capacity = false;
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            // Polled first: a busy listener must not starve the signal.
            biased;
            () = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            accepted = listener.accept() => match accepted {
                Ok((tcp, _peer)) => {
                    let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
                        if !std::mem::replace(&mut at_capacity, true) {
                            tracing::warn!(
                                max = transport.max_connections,
                                "at the connection cap: closing new connections until one frees"
                            );
                        }
                        drop(tcp);
                        continue;
                    };
                    at_capacity = false;
                    if let Err(e) = tcp.set_nodelay(true) {
                        tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
                    }
                    connections.spawn(connection(
                        tcp,
                        app.clone(),
                        transport,
                        stopping.clone(),
                        permit,
                    ));
                }
                Err(e) if is_per_connection(&e) => {
                    tracing::debug!("a connection failed while being accepted: {e}");
                }
                Err(e) => {
                    tracing::error!("cannot accept connections: {e}");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_BACKOFF) => {}
                    }
                }
            },
        }
    }
    drop(listener);
    // Receivers see the change even if every one of them is gone.
    let _ = stop.send(true);
    let deadline = tokio::time::sleep(transport.shutdown_deadline);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = connections.join_next() => if next.is_none() {
                return Ok(Stopped::Drained);
            },
            () = &mut deadline => {
                let open = connections.len();
                tracing::warn!(open, "shutdown deadline reached: dropping the connections still open");
                connections.shutdown().await;
                return Ok(Stopped::Deadline(open));
            }
        }
    }
}

/// Errors of one connection that the listener survives as is (the client
/// gave up before the accept completed).
fn is_per_connection(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(
        e.kind(),
        K::ConnectionAborted | K::ConnectionReset | K::ConnectionRefused | K::Interrupted
    )
}

/// Serves one connection until it ends, a timeout closes it, or shutdown
/// has let it finish.
async fn connection(
    tcp: TcpStream,
    app: axum::Router,
    transport: Transport,
    mut stopping: watch::Receiver<bool>,
    _permit: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(Watched {
        inner: tcp,
        activity: Arc::clone(&activity),
    });
    let service = {
        let activity = Arc::clone(&activity);
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = Busy::new(Arc::clone(&activity));
            let mut router = app.clone();
            async move {
                let response: Response<Body> = match router.call(request.map(Body::new)).await {
                    Ok(response) => response,
                    Err(never) => match never {},
                };
                Ok::<_, Infallible>(response.map(|body| {
                    Body::new(Tracked {
                        inner: body,
                        _busy: busy,
                    })
                }))
            }
        })
    };
    let mut builder = hyper::server::conn::http1::Builder::new();
    // The service's own timeouts below replace hyper's.
    builder.keep_alive(true).header_read_timeout(None);
    let conn = builder.serve_connection(io, service);
    tokio::pin!(conn);
    let timeout = watchdog(&activity, transport);
    tokio::pin!(timeout);
    let mut draining = *stopping.borrow();
    if draining {
        conn.as_mut().graceful_shutdown();
    }
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            reason = &mut timeout => {
                tracing::debug!("closing a connection: {reason}");
                return;
            }
            _ = stopping.changed(), if !draining => {
                draining = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Completes when the connection has outstayed a timeout, with the reason.
///
/// It runs on its timer alone: nothing the connection does wakes it (a
/// wake-up per change of phase cost a poll of the whole connection task,
/// three times per request). Each time its timer fires, it reads the
/// phase and sleeps until that phase's deadline, but never longer than
/// the shorter timeout from now, so that a phase that began while it
/// slept (a request head on an idle connection, the end of a busy spell)
/// is seen before its own clock can run out: a deadline is met, late by
/// the timer's resolution at most, with one wake-up per shorter timeout
/// and connection.
async fn watchdog(activity: &Activity, transport: Transport) -> &'static str {
    let recheck = transport.header_read_timeout.min(transport.idle_timeout);
    loop {
        let now = Instant::now();
        let phase = activity.phase();
        let wake = match phase.deadline(transport) {
            Some(deadline) if deadline <= now => {
                return match phase {
                    Phase::Head(_) => "header-read timeout",
                    _ => "idle timeout",
                };
            }
            Some(deadline) => deadline.min(now + recheck),
            None => now + recheck,
        };
        tokio::time::sleep_until(wake).await;
    }
}

/// Where a connection is between requests.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Waiting for a request since then.
    Idle(Instant),
    /// Reading a request head whose first byte came then.
    Head(Instant),
    /// This many requests are being answered (HTTP/1.1: one at a time).
    Busy(usize),
}

impl Phase {
    fn deadline(self, transport: Transport) -> Option<Instant> {
        match self {
            Phase::Idle(since) => Some(since + transport.idle_timeout),
            Phase::Head(since) => Some(since + transport.header_read_timeout),
            Phase::Busy(_) => None,
        }
    }
}

/// A connection's phase, moved on by its reads and its requests, and read
/// by its [`watchdog`] when its timer fires.
struct Activity {
    phase: Mutex<Phase>,
}

impl Activity {
    fn new() -> Self {
        Self {
            phase: Mutex::new(Phase::Idle(Instant::now())),
        }
    }

    fn phase(&self) -> Phase {
        *self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn update(&self, f: impl FnOnce(Phase) -> Phase) {
        let mut phase = self.phase.lock().unwrap_or_else(PoisonError::into_inner);
        *phase = f(*phase);
    }

    /// Bytes arrived: on an idle connection, a request head has begun.
    fn read(&self) {
        let idle = matches!(self.phase(), Phase::Idle(_));
        if idle {
            self.update(|phase| match phase {
                Phase::Idle(_) => Phase::Head(Instant::now()),
                other => other,
            });
        }
    }
}

/// A request being answered: from its complete head until its response's
/// body is done (or dropped).
struct Busy(Arc<Activity>);

impl Busy {
    fn new(activity: Arc<Activity>) -> Self {
        activity.update(|phase| match phase {
            Phase::Busy(n) => Phase::Busy(n + 1),
            Phase::Idle(_) | Phase::Head(_) => Phase::Busy(1),
        });
        Self(activity)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.update(|phase| match phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(Instant::now()),
        });
    }
}

/// A response body that keeps its connection busy until hyper has taken
/// all of it.
struct Tracked {
    inner: Body,
    _busy: Busy,
}

impl hyper::body::Body for Tracked {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A connection's socket, telling its [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.read();
        }
        result
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_phase_has_a_deadline_only_between_requests() {
        let transport = Transport {
            header_read_timeout: Duration::from_secs(1),
            idle_timeout: Duration::from_secs(5),
            ..Transport::default()
        };
        let now = Instant::now();
        assert_eq!(
            Phase::Head(now).deadline(transport),
            Some(now + Duration::from_secs(1))
        );
        assert_eq!(
            Phase::Idle(now).deadline(transport),
            Some(now + Duration::from_secs(5))
        );
        assert_eq!(Phase::Busy(1).deadline(transport), None);
    }
}
