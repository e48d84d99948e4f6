//! The primary's reads on async connections (feature `async`), for a
//! service on Tokio: diesel-async's `AsyncPgConnection` (on
//! tokio-postgres) in a deadpool pool of its own, beside the [`Router`]'s
//! synchronous one, which keeps every write, every replica read and every
//! read this module declines.
//!
//! A synchronous connection blocks a thread for each round trip: a caller
//! on Tokio hands each call to a thread and back, two thread wake-ups per
//! request on top of the server's. An async connection's reply wakes the
//! task that waits for it, on the runtime's own threads.
//!
//! # What it declines, and why
//!
//! [`AsyncPrimary::new`] refuses ([`Error::AsyncPrimaryOff`], with the
//! reason) wherever tokio-postgres could reach another server, or the same
//! one differently, than libpq does with the same URL:
//!
//! - **Its parameters are libpq's.** The options come from libpq itself
//!   (`PQconninfo` of a connection it settled: the URL, the `PG*`
//!   variables, a service file, the user name, the default socket
//!   directory), never from a second parsing of the URL's text. A host
//!   list, a `hostaddr`, a service file, `target_session_attrs`,
//!   `requirepeer` or `channel_binding=require` is declined.
//! - **No TLS, no GSSAPI encryption.** tokio-postgres here has neither:
//!   over TCP only `sslmode=disable` with `gssencmode=disable` is accepted
//!   (libpq's defaults, `prefer`, would use TLS where the server offers it,
//!   and GSSAPI where a Kerberos ticket allows, so the async connection
//!   would be a downgrade); over a unix socket, where libpq uses neither,
//!   any mode. `require_auth` is declined (tokio-postgres would answer a
//!   weaker authentication than it allows).
//! - **Not behind a transaction pooler** ([`crate::pooler`]): the session
//!   settings would reach other clients.
//! - **The same server, by its identity.** Every connection it opens runs
//!   [`crate::admin::identify`]'s statement and must find the database the
//!   synchronous primary found when this was built (system identifier,
//!   start time, port, database oid and name: numbers, not URL text), not
//!   in recovery. A connection that finds another is closed and the call
//!   is declined; for a few seconds after, every call is, and then the
//!   primary's identity is read again (after a failover, the synchronous
//!   pool finds the new primary first).
//!
//! A password libpq would read from a password file is not read here: the
//! connections then fail to authenticate. [`AsyncPrimary::ready`] opens one
//! at start so that this is known then (the service calls it, and reads on
//! the database threads when it fails). Startup variables libpq sends that
//! are not connection options (`PGDATESTYLE`, `PGGEQO`) are not sent here;
//! the session is set up as the synchronous pool's is.
//!
//! The pool is as large as the synchronous primary's and beside it: the
//! primary may see up to twice the pool size of connections from one
//! process.
//!
//! # Cancellation
//!
//! A call's future may be dropped at any point (a client that went away,
//! a deadline). A connection is given back to the pool only by a call that
//! ran to its end; a connection whose call was dropped part-way, or whose
//! server went away, is closed instead, so that no connection with a
//! statement or a transaction in flight is ever handed out again.

use std::any::Any;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant};

use diesel::connection::Instrumentation;
use diesel_async::pooled_connection::deadpool::{Object, Pool, PoolError};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, PoolError as SetupError, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, SimpleAsyncConnection};

use crate::admin::{DatabaseIdentity, IDENTIFY_SQL};
use crate::config::DatabaseUrl;
use crate::error::{Error, Result};
use crate::instrument::{ConnectionInstrumentation, ConnectionTarget, Events};
use crate::pool::{classify_connection_error, effective_url, primary_session_sql};
use crate::replica::positions::connection_lost;
use crate::replica::{Consistency, Router};
use crate::repo::feed::{self, FeedPage};

/// How long calls are declined after a connection found another server
/// than the synchronous primary's.
const RECHECK_AFTER: Duration = Duration::from_secs(5);

/// Said in a connection error when the server is not the primary's.
const NOT_THE_PRIMARY: &str = "not the primary's server: ";

/// The primary's reads on async connections; see the [module
/// documentation](self). Cheap to clone (one pool).
#[derive(Clone)]
pub struct AsyncPrimary {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool<AsyncPgConnection>,
    router: Router,
    /// The synchronous primary's identity, which every connection must
    /// find (read again after a mismatch).
    expected: Arc<RwLock<DatabaseIdentity>>,
    /// What a mismatch left: read on every checkout, under one lock.
    verification: Mutex<Verification>,
    /// What is told of each checkout, and the pool as it is named to it.
    checkout: Option<(ConnectionInstrumentation, ConnectionTarget)>,
    /// Calls waiting for a connection.
    waiting: AtomicUsize,
    checkout_timeout: Duration,
    pool_size: u32,
    url: DatabaseUrl,
}

/// What a connection that reached another server left behind.
#[derive(Default)]
struct Verification {
    /// Until when calls are declined.
    off_until: Option<Instant>,
    /// When the identity last changed: connections opened before are not
    /// handed out again.
    invalidated_at: Option<Instant>,
}

impl std::fmt::Debug for AsyncPrimary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncPrimary")
            .field("url", &self.inner.url)
            .field("pool_size", &self.inner.pool_size)
            .finish_non_exhaustive()
    }
}

impl AsyncPrimary {
    /// The async reads of `router`'s primary, with its pool size, checkout
    /// timeout, statement timeout and instrumentation. Blocks for one
    /// statement on the synchronous primary (its identity); opens no async
    /// connection yet (see [`AsyncPrimary::ready`]).
    ///
    /// # Errors
    /// [`Error::AsyncPrimaryOff`] when the URL or the pooler is one it
    /// declines (see the [module documentation](self)); the primary's
    /// errors when its identity cannot be read.
    pub fn new(router: &Router) -> Result<Self> {
        let config = router.config();
        if config.pooler.is_transaction() {
            return Err(off(
                "behind a transaction pooler (CRUDDUR_POOLER=transaction)",
            ));
        }
        let url = config.database_url.clone();
        let client = client_config(&effective_url(&url)).map_err(|why| off(&why))?;
        let expected = router.read_claimed(crate::admin::identify)?;
        if expected.in_recovery {
            return Err(off("the primary's URL reaches a standby"));
        }
        let expected = Arc::new(RwLock::new(expected));
        let session = primary_session_sql(&url, config.statement_timeout_ms);
        let make = config.instrumentation.clone();
        let target = ConnectionTarget {
            nonblocking: true,
            ..router.primary_target().clone()
        };
        let checkout = config.instrumentation.clone().map(|i| (i, target.clone()));
        let setup_expected = Arc::clone(&expected);
        let mut manager = ManagerConfig::default();
        // A connection goes back to the pool only from a call that ran to
        // its end (see `Lease`): nothing to check on the way out.
        manager.recycling_method = RecyclingMethod::Fast;
        manager.custom_setup = Box::new(move |_| {
            let client = client.clone();
            let session = session.clone();
            let expected = Arc::clone(&setup_expected);
            let application = make.as_ref().and_then(|make| make.make(&target));
            Box::pin(connect(client, session, expected, application))
        });
        let pool_size = config.pool_size;
        let pool = Pool::builder(AsyncDieselConnectionManager::new_with_config(
            String::new(),
            manager,
        ))
        .max_size(usize::try_from(pool_size).unwrap_or(usize::MAX).max(1))
        .build()
        .map_err(|e| off(&format!("the pool could not be built: {e}")))?;
        Ok(Self {
            inner: Arc::new(Inner {
                pool,
                router: router.clone(),
                expected,
                verification: Mutex::default(),
                checkout,
                waiting: AtomicUsize::new(0),
                checkout_timeout: config.checkout_timeout,
                pool_size,
                url,
            }),
        })
    }

    /// Opens one connection (and keeps it in the pool), so that a server
    /// this declines or cannot reach is known at start.
    ///
    /// # Errors
    /// What opening it found: [`Error::AsyncPrimaryOff`] for another
    /// server, a connection error otherwise.
    pub async fn ready(&self) -> Result<()> {
        let lease = self.lease().await?;
        lease.give_back();
        Ok(())
    }

    /// Calls waiting for a connection now.
    pub fn waiting(&self) -> usize {
        self.inner.waiting.load(Ordering::Acquire)
    }

    /// The pool's connections: `(open, idle)`.
    pub fn connections(&self) -> (usize, usize) {
        let status = self.inner.pool.status();
        (status.size, status.available)
    }

    /// [`feed::home_feed_json_bytes`] on the primary, for a read
    /// [`Router::claim_primary_read`] sent there.
    ///
    /// # Errors
    /// As the synchronous call; [`Error::PoolTimeout`] when no connection
    /// freed up within the checkout timeout; [`Error::AsyncPrimaryOff`]
    /// when the call is declined (read on the synchronous primary then).
    pub async fn home_feed_json_bytes(&self, page: FeedPage) -> Result<Vec<u8>> {
        let mut lease = self.lease().await?;
        let result = feed::home_feed_json_bytes_async(lease.conn()?, page).await;
        lease.end(result)
    }

    /// [`AsyncPrimary::home_feed_json_bytes`] for a read with
    /// `consistency`: `None` when the router would not read it on the
    /// primary (a replica may serve it: read it through the router).
    pub async fn home_feed_json_bytes_for(
        &self,
        consistency: Consistency,
        page: FeedPage,
    ) -> Option<Result<Vec<u8>>> {
        if !self.inner.router.claim_primary_read(consistency) {
            return None;
        }
        Some(self.home_feed_json_bytes(page).await)
    }

    /// A connection of the pool, once calls are not declined.
    async fn lease(&self) -> Result<Lease> {
        self.recheck_if_due().await?;
        let inner = &self.inner;
        let _waiting = Waiting::count(&inner.waiting);
        let _observed: Option<Box<dyn Any + Send>> = inner
            .checkout
            .as_ref()
            .and_then(|(instrumentation, target)| instrumentation.checkout_started(target));
        let get = async {
            loop {
                let conn = inner.pool.get().await?;
                let stale = lock(&inner.verification)
                    .invalidated_at
                    .is_some_and(|at| Object::metrics(&conn).created < at);
                if !stale {
                    return Ok(conn);
                }
                drop(Object::take(conn));
            }
        };
        match tokio::time::timeout(inner.checkout_timeout, get).await {
            Ok(Ok(conn)) => Ok(Lease { conn: Some(conn) }),
            Ok(Err(e)) => Err(self.checkout_error(e)),
            Err(_) => Err(Error::PoolTimeout {
                timeout_ms: inner.checkout_timeout.as_millis(),
                pool_size: inner.pool_size,
                last_error: None,
            }),
        }
    }

    fn checkout_error(&self, e: PoolError) -> Error {
        let inner = &self.inner;
        let message = match e {
            PoolError::Backend(SetupError::ConnectionError(e)) => e.to_string(),
            PoolError::Backend(SetupError::QueryError(e)) => e.to_string(),
            other => other.to_string(),
        };
        match message.split_once(NOT_THE_PRIMARY) {
            Some((_, why)) => {
                tracing::warn!(
                    url = %inner.url,
                    "an async connection reached {why}; the primary's reads stay synchronous for {RECHECK_AFTER:?}"
                );
                self.invalidate();
                self.decline(why)
            }
            None => classify_connection_error(&inner.url, &inner.url.scrub(&message)),
        }
    }

    /// Declines calls for [`RECHECK_AFTER`], with `why`.
    fn decline(&self, why: &str) -> Error {
        lock(&self.inner.verification).off_until = Some(Instant::now() + RECHECK_AFTER);
        off(why)
    }

    /// Closes the idle connections and marks every open one as not to be
    /// handed out again: they were verified against an identity that no
    /// longer holds.
    fn invalidate(&self) {
        lock(&self.inner.verification).invalidated_at = Some(Instant::now());
        self.inner.pool.retain(|_, _| false);
    }

    /// Declines calls while a mismatch is recent; once it is not, reads the
    /// synchronous primary's identity again (on a blocking thread), for
    /// the connections opened from then on.
    async fn recheck_if_due(&self) -> Result<()> {
        let inner = &self.inner;
        {
            let mut verification = lock(&inner.verification);
            match verification.off_until {
                None => return Ok(()),
                Some(at) if Instant::now() < at => {
                    return Err(off(
                        "a connection reached another server than the primary's",
                    ));
                }
                Some(_) => verification.off_until = None,
            }
        }
        let router = inner.router.clone();
        let identity =
            tokio::task::spawn_blocking(move || router.read_claimed(crate::admin::identify)).await;
        let identity = match identity {
            Ok(Ok(identity)) => identity,
            Ok(Err(e)) => {
                return Err(self.decline(&format!(
                    "the primary's identity could not be read again: {e}"
                )));
            }
            Err(e) => {
                return Err(self.decline(&format!("reading the primary's identity failed: {e}")));
            }
        };
        *inner
            .expected
            .write()
            .unwrap_or_else(PoisonError::into_inner) = identity;
        // Connections verified against the identity before are not handed
        // out again.
        self.invalidate();
        Ok(())
    }
}

/// Opens one connection with `client`'s parameters, sets the session up
/// as the synchronous pool does, and checks that it reached `expected`.
async fn connect(
    client: tokio_postgres::Config,
    session: String,
    expected: Arc<RwLock<DatabaseIdentity>>,
    application: Option<Box<dyn Instrumentation>>,
) -> diesel::ConnectionResult<AsyncPgConnection> {
    use diesel::result::ConnectionError;
    let (client, connection) = client
        .connect(tokio_postgres::NoTls)
        .await
        .map_err(|e| ConnectionError::BadConnection(e.to_string()))?;
    let mut conn = AsyncPgConnection::try_from_client_and_connection(client, connection).await?;
    // Its statements are seen from the first, as a pooled synchronous
    // connection's are.
    conn.set_instrumentation(Events::new(application));
    conn.batch_execute(&session)
        .await
        .map_err(ConnectionError::CouldntSetupConfiguration)?;
    let seen: DatabaseIdentity =
        diesel_async::RunQueryDsl::get_result(diesel::sql_query(IDENTIFY_SQL), &mut conn)
            .await
            .map_err(ConnectionError::CouldntSetupConfiguration)?;
    let expected = expected
        .read()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    if seen.in_recovery || !seen.same_database(&expected) {
        return Err(ConnectionError::BadConnection(format!(
            "{NOT_THE_PRIMARY}it found database {} (oid {}) of the server started at {} µs on port {}{}, \
             where the primary's is database {} (oid {}) of the server started at {} µs on port {}",
            seen.database,
            seen.oid,
            seen.server_started_at_us,
            seen.port,
            if seen.in_recovery {
                ", in recovery"
            } else {
                ""
            },
            expected.database,
            expected.oid,
            expected.server_started_at_us,
            expected.port,
        )));
    }
    Ok(conn)
}

/// tokio-postgres's parameters for `url`, from the options libpq settles
/// for it; the reason when any of them is one libpq would act on and
/// tokio-postgres would not (see the [module documentation](self)).
fn client_config(url: &DatabaseUrl) -> std::result::Result<tokio_postgres::Config, String> {
    let options = url
        .settled_params()
        .ok_or("libpq could not settle the URL's options")?;
    client_config_from(&options)
}

fn client_config_from(
    options: &[(String, String)],
) -> std::result::Result<tokio_postgres::Config, String> {
    let get = |key: &str| {
        options
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
    };
    // `require_auth` (libpq 16) refuses weaker authentication, which
    // tokio-postgres would answer, a cleartext password among it.
    for key in ["service", "hostaddr", "requirepeer", "require_auth"] {
        if get(key).is_some() {
            return Err(format!("the URL sets `{key}`"));
        }
    }
    let host = get("host").ok_or("no host")?;
    if host.contains(',') {
        return Err("the URL names more than one host".into());
    }
    let port = get("port").unwrap_or("5432");
    let port: u16 = port
        .trim()
        .parse()
        .map_err(|_| format!("the port `{port}` is not one number"))?;
    let socket = host.starts_with('/');
    if host.starts_with('@') {
        return Err("an abstract unix socket".into());
    }
    let sslmode = get("sslmode").unwrap_or("prefer");
    if !socket && sslmode != "disable" {
        return Err(format!(
            "sslmode={sslmode} over TCP: libpq would use TLS where the server offers it \
             (set sslmode=disable and gssencmode=disable on a network that needs neither)"
        ));
    }
    // libpq built with GSSAPI (Debian's is) encrypts with it over TCP
    // where a Kerberos ticket allows, whatever the sslmode; tokio-postgres
    // cannot.
    if !socket && get("gssencmode").is_some_and(|mode| mode != "disable") {
        return Err(format!(
            "gssencmode={} over TCP: libpq would encrypt with GSSAPI where a Kerberos \
             ticket allows (set gssencmode=disable as well)",
            get("gssencmode").unwrap_or_default()
        ));
    }
    if get("channel_binding") == Some("require") {
        return Err("channel_binding=require".into());
    }
    if get("target_session_attrs").is_some_and(|v| v != "any") {
        return Err("target_session_attrs other than `any`".into());
    }
    let mut config = tokio_postgres::Config::new();
    if socket {
        config.host_path(host);
    } else {
        config.host(host);
    }
    config.port(port);
    config.user(get("user").ok_or("no user")?);
    if let Some(password) = get("password") {
        config.password(password);
    }
    if let Some(dbname) = get("dbname") {
        config.dbname(dbname);
    }
    if let Some(options) = get("options") {
        config.options(options);
    }
    if let Some(name) = get("application_name").or_else(|| get("fallback_application_name")) {
        config.application_name(name);
    }
    let seconds = |key: &str| get(key).and_then(|v| v.trim().parse::<u64>().ok());
    if let Some(s) = seconds("connect_timeout").filter(|&s| s > 0) {
        config.connect_timeout(Duration::from_secs(s));
    }
    if !socket {
        if seconds("keepalives") != Some(0) {
            config.keepalives(true);
            if let Some(s) = seconds("keepalives_idle") {
                config.keepalives_idle(Duration::from_secs(s));
            }
            if let Some(s) = seconds("keepalives_interval") {
                config.keepalives_interval(Duration::from_secs(s));
            }
            if let Some(n) = seconds("keepalives_count").and_then(|n| u32::try_from(n).ok()) {
                config.keepalives_retries(n);
            }
        }
        if let Some(ms) = seconds("tcp_user_timeout").filter(|&ms| ms > 0) {
            config.tcp_user_timeout(Duration::from_millis(ms));
        }
    }
    Ok(config)
}

fn off(reason: &str) -> Error {
    Error::AsyncPrimaryOff {
        reason: reason.to_owned(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Counts a call among those waiting for a connection while it lives.
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn count(n: &'a AtomicUsize) -> Self {
        n.fetch_add(1, Ordering::AcqRel);
        Self(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A connection out of the pool. Given back only by [`Lease::give_back`]
/// or [`Lease::end`]; dropped otherwise (its call's future was dropped
/// part-way), it is taken out of the pool and closed.
struct Lease {
    conn: Option<Object<AsyncPgConnection>>,
}

impl Lease {
    /// Its connection (it holds one until it ends).
    fn conn(&mut self) -> Result<&mut AsyncPgConnection> {
        self.conn
            .as_deref_mut()
            .ok_or_else(|| off("the connection's lease has ended"))
    }

    fn give_back(mut self) {
        drop(self.conn.take());
    }

    /// Gives the connection back after `result`, unless its server went
    /// away (then it is closed).
    fn end<T>(self, result: Result<T>) -> Result<T> {
        let lost = matches!(&result, Err(Error::Query(e) | Error::StatementTimeout(e)) if connection_lost(e));
        if !lost {
            self.give_back();
        }
        result
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            drop(Object::take(conn));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    const BASE: &[(&str, &str)] = &[("user", "app"), ("dbname", "cruddur"), ("port", "5432")];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(String, String)> {
        let mut all = BASE.to_vec();
        all.extend_from_slice(extra);
        options(&all)
    }

    #[test]
    fn tcp_needs_tls_off_and_a_unix_socket_does_not() {
        let prefer = client_config_from(&with(&[("host", "db.internal"), ("sslmode", "prefer")]));
        assert!(prefer.unwrap_err().contains("sslmode=prefer"));
        let unset = client_config_from(&with(&[("host", "db.internal")]));
        assert!(unset.unwrap_err().contains("sslmode=prefer"));
        for mode in ["require", "verify-ca", "verify-full", "allow"] {
            let pairs = [("host", "db.internal"), ("sslmode", mode)];
            assert!(client_config_from(&with(&pairs)).is_err(), "{mode}");
        }
        let off = client_config_from(&with(&[("host", "127.0.0.1"), ("sslmode", "disable")]))
            .expect("sslmode=disable over TCP");
        assert_eq!(off.get_ports(), [5432]);
        assert_eq!(off.get_user(), Some("app"));
        assert_eq!(off.get_dbname(), Some("cruddur"));
        let socket = client_config_from(&with(&[
            ("host", "/var/run/postgresql"),
            ("sslmode", "prefer"),
        ]))
        .expect("a unix socket");
        assert!(matches!(
            socket.get_hosts(),
            [tokio_postgres::config::Host::Unix(path)] if path.as_os_str() == "/var/run/postgresql"
        ));
    }

    #[test]
    fn what_tokio_postgres_would_read_otherwise_is_declined() {
        let tcp = [("host", "127.0.0.1"), ("sslmode", "disable")];
        for extra in [
            ("service", "prod"),
            ("hostaddr", "10.0.0.1"),
            ("requirepeer", "postgres"),
            ("channel_binding", "require"),
            ("target_session_attrs", "read-write"),
            ("gssencmode", "require"),
            ("gssencmode", "prefer"),
            ("require_auth", "scram-sha-256"),
        ] {
            let mut pairs = tcp.to_vec();
            pairs.push(extra);
            let refused = client_config_from(&with(&pairs));
            assert!(refused.is_err(), "{extra:?} was accepted");
        }
        let two = client_config_from(&with(&[("host", "a,b"), ("sslmode", "disable")]));
        assert!(two.unwrap_err().contains("more than one host"));
        let ports = client_config_from(&options(&[
            ("host", "127.0.0.1"),
            ("port", "5432,5433"),
            ("user", "app"),
            ("sslmode", "disable"),
        ]));
        assert!(ports.unwrap_err().contains("not one number"));
        let abstract_socket = client_config_from(&with(&[("host", "@pg")]));
        assert!(abstract_socket.is_err());
    }

    #[test]
    fn settled_options_carry_what_the_environment_gives_libpq() {
        // libpq fills the user and the socket directory in: the async
        // connection gets the same ones, not tokio-postgres's defaults.
        let url = DatabaseUrl::parse("postgres:///somedb?sslmode=disable").unwrap();
        let settled = url.settled_params().expect("libpq settles them");
        let get = |key: &str| {
            settled
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("dbname").as_deref(), Some("somedb"));
        assert!(get("user").is_some_and(|u| !u.is_empty()));
        assert!(get("host").is_some_and(|h| !h.is_empty()));
        let config = client_config(&url).expect("a local socket or host");
        assert_eq!(config.get_dbname(), Some("somedb"));
        assert_eq!(config.get_user(), get("user").as_deref());
    }
}
