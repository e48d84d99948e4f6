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

pub mod api;
pub mod auth;
pub mod error;
pub mod settings;

use std::future::Future;

use axum::serve::ListenerExt;

pub use api::{AppState, app};
pub use auth::Auth;
pub use settings::ServiceSettings;

/// Serves `app` on `listener` until `shutdown` completes, then stops
/// accepting connections and returns once every request in flight has
/// been answered.
///
/// Every connection is set `TCP_NODELAY`: a response may leave in more
/// than one write (head, then a feed page), and with Nagle's algorithm a
/// later write can wait for the client's delayed ACK (40 ms on Linux).
pub async fn serve(
    listener: tokio::net::TcpListener,
    app: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("cannot set TCP_NODELAY on a connection: {e}");
        }
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

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
