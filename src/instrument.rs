//! What each pooled connection reports of its statements: an application
//! hands [`Config::instrumentation`](crate::Config::instrumentation) a
//! [`ConnectionInstrumentation`], which makes a Diesel
//! [`Instrumentation`] for each connection a pool opens, told which server
//! it reaches. The library itself traces nothing: an application that
//! sets none pays for one call per statement that does nothing.
//!
//! Every pooled connection carries the library's own instrumentation
//! (`Events`), which also tells [`Router::write`](crate::Router::write)
//! when a `COMMIT` was sent, and passes every event on to the
//! application's.

use std::any::Any;
use std::fmt;
use std::sync::Arc;

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::config::DatabaseUrl;

/// The server a pooled connection reaches, as its URL names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionTarget {
    /// The host (or socket directory) of the URL; `localhost` when it
    /// names none, as libpq defaults. A multi-host URL lists them all,
    /// comma-separated, as it does.
    pub host: String,
    /// The port; 5432 when the URL names none (or names several).
    pub port: u16,
    /// Whether the pool is a read replica's.
    pub replica: bool,
    /// Whether the pool is the async primary's (`cruddur_db::nonblocking`,
    /// feature `async`), whose calls wait in its checkout; the synchronous
    /// primary's callers may queue before theirs.
    pub nonblocking: bool,
}

impl ConnectionTarget {
    /// The target of `url`'s connections.
    pub fn of(url: &DatabaseUrl, replica: bool) -> Self {
        Self {
            host: url.param("host").unwrap_or("localhost").to_owned(),
            port: url
                .param("port")
                .and_then(|port| port.parse().ok())
                .unwrap_or(5432),
            replica,
            nonblocking: false,
        }
    }
}

type Make = dyn Fn(&ConnectionTarget) -> Option<Box<dyn Instrumentation>> + Send + Sync;
type Checkout = dyn Fn(&ConnectionTarget) -> Option<Box<dyn Any + Send>> + Send + Sync;

/// Makes the Diesel [`Instrumentation`] of each connection a pool opens,
/// from the [`ConnectionTarget`] it reaches (`None`: none for it). It
/// receives every event of the connection: each statement's
/// `StartQuery` and `FinishQuery` (whose query's `Display` shows the SQL
/// followed by the values bound to it), transactions, and the connection
/// itself. It runs on the thread that uses the connection, inside the
/// caller's work, so it should do little.
///
/// It may also be told of each checkout the [`Router`](crate::Router)
/// makes ([`ConnectionInstrumentation::with_checkout`]).
#[derive(Clone)]
pub struct ConnectionInstrumentation {
    make: Arc<Make>,
    checkout: Option<Arc<Checkout>>,
}

impl ConnectionInstrumentation {
    /// One made by `make`.
    pub fn new(
        make: impl Fn(&ConnectionTarget) -> Option<Box<dyn Instrumentation>> + Send + Sync + 'static,
    ) -> Self {
        Self {
            make: Arc::new(make),
            checkout: None,
        }
    }

    /// This one, also told when the router starts checking a connection
    /// out of a pool (the primary's or a replica's): `checkout` is called
    /// with the pool's target just before, on the caller's thread, and
    /// what it returns is dropped once the checkout has ended, whether it
    /// got a connection or not (a guard: a span, a timer).
    #[must_use]
    pub fn with_checkout(
        mut self,
        checkout: impl Fn(&ConnectionTarget) -> Option<Box<dyn Any + Send>> + Send + Sync + 'static,
    ) -> Self {
        self.checkout = Some(Arc::new(checkout));
        self
    }

    /// The instrumentation of a connection to `target`.
    pub(crate) fn make(&self, target: &ConnectionTarget) -> Option<Box<dyn Instrumentation>> {
        (self.make)(target)
    }

    /// What to drop when a checkout from `target`'s pool has ended.
    pub(crate) fn checkout_started(
        &self,
        target: &ConnectionTarget,
    ) -> Option<Box<dyn Any + Send>> {
        self.checkout.as_ref().and_then(|checkout| checkout(target))
    }
}

impl fmt::Debug for ConnectionInstrumentation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ConnectionInstrumentation(..)")
    }
}

/// The library's instrumentation of a pooled connection: notes when a
/// top-level `COMMIT` is sent, and passes every event on to the
/// application's, if any. Set once when the connection is opened, so that
/// a write costs no allocation of its own.
pub(crate) struct Events {
    /// A top-level `COMMIT` was announced since [`Events::commit_sent`]
    /// was last reset.
    pub(crate) commit_sent: bool,
    application: Option<Box<dyn Instrumentation>>,
}

impl Events {
    pub(crate) fn new(application: Option<Box<dyn Instrumentation>>) -> Self {
        Self {
            commit_sent: false,
            application,
        }
    }
}

impl Instrumentation for Events {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        // Diesel announces each COMMIT before it sends it.
        if let InstrumentationEvent::CommitTransaction { depth, .. } = &event
            && depth.get() == 1
        {
            self.commit_sent = true;
        }
        if let Some(application) = &mut self.application {
            application.on_connection_event(event);
        }
    }
}
