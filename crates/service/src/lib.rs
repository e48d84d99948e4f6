//! Cruddur's activity API over HTTP, served from [`cruddur_db`]: the
//! endpoints of the original Flask backend, so that its React frontend can
//! point `REACT_APP_BACKEND_URL` here unchanged.
//!
//! - `GET /api/activities/home`: the home feed, the JSON array PostgreSQL
//!   builds, served as is. Optional `?limit=` (1 to 100, default 20) and
//!   `?before=<created_at>_<uuid>` of the last item seen.
//! - `POST /api/activities` `{"message", "ttl"}`: the new crud (6 keys);
//!   `422` with every failing validation code.
//! - `GET /api/health-check`: `200` once the database answers.
//!
//! Authors come from a Cognito token verified offline ([`auth`]), or, in
//! the development mode, are one configured handle. The repository is
//! synchronous; every call runs on Tokio's blocking pool.
//!
//! The listener is the service's own [`transport`]: a header-read timeout,
//! an idle keep-alive timeout, a cap on open connections and a shutdown
//! deadline, so that clients that send slowly or not at all neither use
//! up file descriptors nor keep SIGTERM from finishing. A request body is
//! at most 64 KiB ([`api::MAX_BODY_BYTES`]; `413` beyond).

pub mod api;
pub mod auth;
pub mod error;
mod extract;
pub mod settings;
pub mod transport;
pub mod variables;

pub use api::{AppState, app};
pub use auth::Auth;
pub use settings::ServiceSettings;
pub use transport::{Stopped, Transport, serve};

/// A future that completes on Ctrl-C (SIGINT) or SIGTERM. The handlers
/// are installed by this call, not when the future is first polled, so
/// that a signal that comes as soon as the service says it listens stops
/// it gracefully instead of killing it. Call it inside the runtime.
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static>
{
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: finishing the requests in flight");
    })
}
