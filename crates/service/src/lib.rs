#![doc = include_str!("../README.md")]

pub mod access;
pub mod api;
pub mod auth;
mod cors;
pub mod error;
mod extract;
pub mod logs;
pub mod metrics;
pub mod openapi;
pub mod ready;
mod routes;
pub mod settings;
pub mod shed;
pub mod telemetry;
pub mod transport;
pub mod variables;
mod workers;

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
