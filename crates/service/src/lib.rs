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
pub mod settings;
pub mod transport;

pub use api::{AppState, app};
pub use auth::Auth;
pub use settings::ServiceSettings;
pub use transport::{Stopped, Transport, serve};

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        () = interrupt => {}
        () = terminate => {}
    }
    tracing::info!("shutting down: finishing the requests in flight");
}
