//! Connections and the r2d2 pool.
//!
//! Defaults (all overridable through [`Config`]):
//!
//! | setting | default |
//! |---|---|
//! | maximum connections | [`DEFAULT_POOL_SIZE`](crate::config::DEFAULT_POOL_SIZE) (10) |
//! | idle connections | opened on demand, none eagerly (`min_idle` = 0); closed after 10 minutes idle (r2d2's `idle_timeout`) |
//! | checkout timeout | [`DEFAULT_CHECKOUT_TIMEOUT`](crate::config::DEFAULT_CHECKOUT_TIMEOUT) (5 s) |
//! | connect timeout | [`DEFAULT_CONNECT_TIMEOUT_SECS`] (5 s), unless the URL sets `connect_timeout` |
//! | dead network | TCP keepalives and `tcp_user_timeout` ([`DEFAULT_TCP_SETTINGS`]): a connection whose peer vanished fails within about a minute, unless the URL sets its own; keepalives the URL leaves unset follow its `tcp_user_timeout` ([`tcp_settings`]); the server's end of each session is set to the same (`tcp_keepalives_*`, `tcp_user_timeout`), so that the server ends a cut-off client's sessions and their locks too |
//! | statement timeout | [`DEFAULT_STATEMENT_TIMEOUT_MS`](crate::config::DEFAULT_STATEMENT_TIMEOUT_MS) (30 s) |
//! | `application_name` | [`APPLICATION_NAME`], unless the URL sets one |
//! | `TimeZone` | `UTC` |
//! | `plan_cache_mode` | `force_generic_plan` (PostgreSQL 12 and later): see [below](#prepared-statements-are-planned-once) |
//! | health check on checkout | off: a connection that failed is marked broken by Diesel and replaced, so the hot path pays no extra round trip |
//!
//! # Prepared statements are planned once
//!
//! Diesel prepares each query once per connection, but with PostgreSQL's
//! default `plan_cache_mode = auto` the server still plans the feed page on
//! every execution: for a generic plan it assumes that `LIMIT $1` returns 10%
//! of the table, so the generic plan always looks far costlier than a custom
//! one, and a custom plan is made for each call. On the 1M-activity
//! benchmark that planning took longer than running the query (about 60 µs
//! against 40 µs) and cost a third of the page's latency. Every query of this
//! crate is an index lookup whose best plan does not depend on the values, so
//! connections are set to `force_generic_plan`: each statement is planned
//! once per connection. A caller running its own statement whose plan must
//! follow the parameter values can `SET plan_cache_mode = auto` on the
//! connection it checked out.

use std::time::Duration;

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use diesel::r2d2::{ConnectionManager, CustomizeConnection, PooledConnection};

use crate::config::{APPLICATION_NAME, Config, DEFAULT_CONNECT_TIMEOUT_SECS, DatabaseUrl};
use crate::error::{Error, Result};
use crate::instrument::{ConnectionInstrumentation, ConnectionTarget, Events};
use crate::pooler::Pooler;

/// The pool type the library and its users share.
pub type PgPool = diesel::r2d2::Pool<ConnectionManager<PgConnection>>;
/// A connection checked out of a [`PgPool`].
pub type PgPooledConnection = PooledConnection<ConnectionManager<PgConnection>>;

/// TCP settings that make a silently dead network (a peer that vanished
/// without a reset) fail a connection within about a minute instead of
/// never: keepalive probes after 30 s idle, every 10 s, 3 unanswered ones
/// end it; sent data unacknowledged for 60 s ends it too
/// (`tcp_user_timeout`, in milliseconds). Each applies only when the URL
/// does not set it; libpq ignores them on Unix sockets.
pub const DEFAULT_TCP_SETTINGS: &[(&str, &str)] = &[
    ("keepalives", "1"),
    ("keepalives_idle", "30"),
    ("keepalives_interval", "10"),
    ("keepalives_count", "3"),
    ("tcp_user_timeout", "60000"),
];

/// The default `tcp_user_timeout`, in milliseconds (one minute).
pub const DEFAULT_TCP_USER_TIMEOUT_MS: u64 = 60_000;

/// The TCP settings for a dead-network bound of `user_timeout_ms`: that
/// `tcp_user_timeout`, with keepalive probes after half of it idle, every
/// sixth of it, 3 of them (whole seconds, at least 1).
/// `tcp_settings(DEFAULT_TCP_USER_TIMEOUT_MS)` is [`DEFAULT_TCP_SETTINGS`].
///
/// Both are needed. `tcp_user_timeout` ends a connection whose sent data
/// stays unacknowledged, but a statement in flight has nothing
/// unacknowledged: its query was acknowledged before the network went
/// silent, and the client waits in `recv`. Only a keepalive probe finds
/// that peer gone, and Linux then ends the connection once the probes go
/// unanswered for `tcp_user_timeout`. With `tcp_user_timeout=3000` in the
/// URL and the keepalives left at 30 s idle, a statement in flight was
/// measured to fail 42 s after the partition began, not 3 s
/// (`tests/partition.rs`); with these it fails within about the bound.
pub fn tcp_settings(user_timeout_ms: u64) -> [(&'static str, String); 5] {
    let secs = |divisor: u64| (user_timeout_ms / 1000 / divisor).max(1).to_string();
    [
        ("keepalives", "1".into()),
        ("keepalives_idle", secs(2)),
        ("keepalives_interval", secs(6)),
        ("keepalives_count", "3".into()),
        ("tcp_user_timeout", user_timeout_ms.to_string()),
    ]
}

/// The URL libpq is given: the user's, with our defaults for the
/// parameters it leaves unset. Keepalives follow the URL's
/// `tcp_user_timeout` when it sets one ([`tcp_settings`]); a URL with
/// `tcp_user_timeout=0` (the system's default) gets the default
/// keepalives.
pub(crate) fn effective_url(url: &DatabaseUrl) -> DatabaseUrl {
    let connect_timeout = DEFAULT_CONNECT_TIMEOUT_SECS.to_string();
    let user_timeout_ms = url
        .param("tcp_user_timeout")
        .and_then(|ms| ms.trim().parse::<u64>().ok())
        .filter(|&ms| ms > 0)
        .unwrap_or(DEFAULT_TCP_USER_TIMEOUT_MS);
    let tcp = tcp_settings(user_timeout_ms);
    let mut defaults = vec![
        ("connect_timeout", connect_timeout.as_str()),
        ("application_name", APPLICATION_NAME),
    ];
    defaults.extend(tcp.iter().map(|(key, value)| (*key, value.as_str())));
    url.with_default_params(&defaults)
}

/// Opens one connection, with the same settings as pooled connections,
/// and turns libpq's failure into a typed [`Error`]. For a server or a
/// session pooler (its session settings are set); behind a transaction
/// pooler, use [`establish_config`].
pub fn establish(url: &DatabaseUrl) -> Result<PgConnection> {
    establish_as(
        url,
        crate::config::DEFAULT_STATEMENT_TIMEOUT_MS,
        Pooler::Session,
    )
}

/// Opens one connection to `config`'s database with its session settings
/// (its statement timeout) and its [`Pooler`] mode, outside any pool.
pub fn establish_config(config: &Config) -> Result<PgConnection> {
    establish_as(
        &config.database_url,
        config.statement_timeout_ms,
        config.pooler,
    )
}

/// Opens one connection to `url` readied for `pooler`: with the session
/// settings, or behind a transaction pooler with none and Diesel's
/// statement cache off.
pub(crate) fn establish_as(
    url: &DatabaseUrl,
    statement_timeout_ms: u64,
    pooler: Pooler,
) -> Result<PgConnection> {
    let mut conn = PgConnection::establish(effective_url(url).expose())
        .map_err(|e| classify_connection_error(url, &e.to_string()))?;
    session_settings(url, statement_timeout_ms, false, pooler)
        .on_acquire(&mut conn)
        .map_err(|e| Error::Connection {
            url: url.to_string(),
            message: url.scrub(&e.to_string()),
        })?;
    Ok(conn)
}

/// Opens one connection to `url` like [`establish_as`], but in session
/// mode only after checking, on two connections that set nothing, that
/// `url` is not behind a transaction pooler ([`Error::TransactionPooler`]
/// if it is): a session setting made there would reach another client.
/// [`build_pool`] checks the primary so; a replica's URL is checked by its
/// prober with this, since a replica that is down at start must not fail
/// the start.
pub(crate) fn establish_checked(
    url: &DatabaseUrl,
    statement_timeout_ms: u64,
    pooler: Pooler,
) -> Result<PgConnection> {
    if pooler.is_transaction() {
        return establish_as(url, statement_timeout_ms, pooler);
    }
    let mut first = establish_as(url, statement_timeout_ms, Pooler::Transaction)?;
    let mut second = establish_as(url, statement_timeout_ms, Pooler::Transaction)?;
    if crate::pooler::behind_transaction_pooler(&mut first, &mut second)? {
        return Err(Error::TransactionPooler {
            url: url.to_string(),
        });
    }
    drop(second);
    // Not a transaction pooler: the session's cache and settings, as
    // `establish_as` gives them in session mode.
    first.set_prepared_statement_cache_size(diesel::connection::CacheSize::Unbounded);
    session_settings(url, statement_timeout_ms, false, pooler)
        .on_acquire(&mut first)
        .map_err(|e| Error::Connection {
            url: url.to_string(),
            message: url.scrub(&e.to_string()),
        })?;
    Ok(first)
}

/// Sorts a libpq connection failure into the variant a user can act on.
pub(crate) fn classify_connection_error(url: &DatabaseUrl, message: &str) -> Error {
    let message = url.scrub(message.trim());
    let shown = url.to_string();
    // libpq quotes every name it mentions (host, socket path, database,
    // role); drop them so that a database called `no_ssl_role` or a socket
    // under `~/tls/` cannot steer the classification.
    let lower = without_quoted(&message).to_lowercase();
    if lower.contains("password authentication failed")
        || lower.contains("authentication failed")
        || lower.contains("no password supplied")
        || lower.contains("role") && lower.contains("does not exist")
        || lower.contains("no pg_hba.conf entry")
    {
        Error::Authentication {
            url: shown,
            message,
        }
    } else if lower.contains("database") && lower.contains("does not exist") {
        Error::DatabaseMissing {
            url: shown,
            database: url.database().unwrap_or_else(|| "(default)".into()),
        }
    } else if lower.contains("invalid connection option")
        || lower.contains("invalid uri")
        || lower.contains("invalid integer value")
        || lower.contains("missing \"=\"")
        || lower.contains("invalid port")
        || lower.contains("invalid sslmode")
        || lower.contains("invalid percent-encoded")
        || lower.contains("unterminated quoted string")
    {
        Error::InvalidUrl {
            url: shown,
            reason: message,
        }
    } else if lower.contains("certificate")
        || lower.contains("ssl")
        || lower.contains("tls")
        || lower.contains("does not match host name")
    {
        Error::Tls {
            url: shown,
            message,
        }
    } else if lower.contains("connection refused")
        || lower.contains("could not translate host name")
        || lower.contains("timeout expired")
        || lower.contains("no such file or directory")
        || lower.contains("network is unreachable")
        || lower.contains("no route to host")
        || lower.contains("could not connect to server")
        || lower.contains("the database system is starting up")
        || lower.contains("the database system is shutting down")
        || lower.contains("server closed the connection")
        // target_session_attrs=read-write found only standbys (a failover
        // under way): the primary is not there yet.
        || lower.contains("session is read-only")
        || lower.contains("hot standby mode")
    {
        Error::Unreachable {
            url: shown,
            message,
        }
    } else {
        Error::Connection {
            url: shown,
            message,
        }
    }
}

/// `text` without its double-quoted parts.
fn without_quoted(text: &str) -> String {
    text.split('"').step_by(2).collect::<Vec<_>>().join("\"\"")
}

/// Session settings applied once when a connection is opened (not on
/// every checkout), and the connection's instrumentation.
#[derive(Debug, Clone)]
struct SessionSettings {
    statement_timeout_ms: u64,
    /// `default_transaction_read_only = on`, for replica sessions: a write
    /// routed there by mistake fails loudly even on a server that is not a
    /// standby (a promoted replica, a misconfigured URL).
    read_only: bool,
    /// Behind a transaction pooler nothing is set (it would leak to the
    /// next client of that server connection) and statements go unnamed.
    pooler: Pooler,
    /// The application's instrumentation, and the server the connections
    /// reach, which it is told.
    instrumentation: Option<(ConnectionInstrumentation, ConnectionTarget)>,
    /// The connection's own dead-network bound, for the server's end.
    server_tcp: ServerTcp,
}

/// The server's end of a connection held to the client's dead-network
/// bound: its `tcp_keepalives_idle`, `_interval`, `_count` (seconds,
/// seconds, probes; `None` when the URL turns keepalives off) and
/// `tcp_user_timeout` (ms), from the URL libpq is given
/// ([`effective_url`]).
///
/// A client cut off by the network leaves its sessions on the server,
/// which has nothing to send an idle one and so never finds it gone (the
/// operating system's keepalive default is two hours): a transaction whose
/// `COMMIT` was lost stays open, holding its locks (an `Idempotency-Key`
/// claimed, a row updated), and a retry waits behind it. With these the
/// server ends such a session, rolling it back, within about the same
/// bound as the client (measured: never, for 17 s, without them;
/// `tests/partition.rs`). On a unix socket the server ignores them.
#[derive(Debug, Clone, Copy)]
struct ServerTcp {
    keepalives: Option<(u64, u64, u64)>,
    user_timeout_ms: Option<u64>,
}

impl ServerTcp {
    fn of(url: &DatabaseUrl) -> Self {
        let url = effective_url(url);
        let number = |key: &str| url.param(key).and_then(|v| v.trim().parse::<u64>().ok());
        let keepalives = if number("keepalives") == Some(0) {
            None
        } else {
            match (
                number("keepalives_idle"),
                number("keepalives_interval"),
                number("keepalives_count"),
            ) {
                (Some(idle), Some(interval), Some(count)) => Some((idle, interval, count)),
                _ => None,
            }
        };
        Self {
            keepalives,
            user_timeout_ms: number("tcp_user_timeout"),
        }
    }

    /// The statements that set them (integers only, so nothing to quote).
    fn sql(&self) -> String {
        let mut sql = String::new();
        if let Some((idle, interval, count)) = self.keepalives {
            sql.push_str(&format!(
                "SET tcp_keepalives_idle = {idle}; SET tcp_keepalives_interval = {interval}; \
                 SET tcp_keepalives_count = {count}; "
            ));
        }
        if let Some(ms) = self.user_timeout_ms {
            // A server setting from PostgreSQL 12 on.
            sql.push_str(&format!(
                "SELECT set_config('tcp_user_timeout', '{ms}', false) \
                 WHERE current_setting('server_version_num')::int >= 120000; "
            ));
        }
        sql
    }
}

impl SessionSettings {
    /// The statements that set a session up, in one round trip. Diesel
    /// already sets the client encoding; TimeZone is set again here so the
    /// guarantee does not depend on Diesel's internals. plan_cache_mode
    /// exists from PostgreSQL 12 on; older servers keep their behaviour.
    /// The read-only default is set here rather than with libpq's
    /// `options=-c ...`: a URL that sets `options` itself would silently
    /// lose it there.
    fn sql(&self) -> String {
        format!(
            "SET TIME ZONE 'UTC'; SET statement_timeout = {}; {}{}\
             SELECT set_config('plan_cache_mode', 'force_generic_plan', false) \
             WHERE current_setting('server_version_num')::int >= 120000",
            self.statement_timeout_ms,
            if self.read_only {
                "SET default_transaction_read_only = on; "
            } else {
                ""
            },
            self.server_tcp.sql(),
        )
    }
}

/// The statements [`build_pool`]'s connections to the primary run once
/// each, for a connection opened elsewhere (the async primary's).
#[cfg(feature = "async")]
pub(crate) fn primary_session_sql(url: &DatabaseUrl, statement_timeout_ms: u64) -> String {
    session_settings(url, statement_timeout_ms, false, Pooler::Session).sql()
}

fn session_settings(
    url: &DatabaseUrl,
    statement_timeout_ms: u64,
    read_only: bool,
    pooler: Pooler,
) -> SessionSettings {
    SessionSettings {
        statement_timeout_ms,
        read_only,
        pooler,
        instrumentation: None,
        server_tcp: ServerTcp::of(url),
    }
}

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for SessionSettings {
    fn on_acquire(&self, conn: &mut PgConnection) -> Result<(), diesel::r2d2::Error> {
        let application = self
            .instrumentation
            .as_ref()
            .and_then(|(make, target)| make.make(target));
        conn.set_instrumentation(Events::new(application));
        self.pooler.ready(conn);
        if self.pooler.is_transaction() {
            return Ok(());
        }
        conn.batch_execute(&self.sql())
            .map_err(diesel::r2d2::Error::QueryError)
    }
}

/// Builds the r2d2 pool for `config`, failing fast with a typed error.
///
/// One connection is opened first, directly, and closed again, so that a
/// bad URL, an unreachable host, a wrong password or a missing database is
/// reported as such (r2d2 alone would only say "timed out" after the
/// checkout timeout). The pool itself is built lazily: it opens connections
/// as callers need them, up to `config.pool_size`.
///
/// Defaults are listed in the [module documentation](self).
pub fn build_pool(config: &Config) -> Result<PgPool> {
    let url = &config.database_url;
    // Probe: typed errors instead of a pool timeout.
    // The probe sets nothing (as behind a transaction pooler): until the
    // check below says there is none, a session setting could reach
    // another client of the pooler.
    let mut probe = establish_as(url, config.statement_timeout_ms, Pooler::Transaction)?;
    if config.pooler.is_transaction() {
        warn_on_server_settings(&mut probe, config);
    } else {
        let mut second = establish_as(url, config.statement_timeout_ms, Pooler::Transaction)?;
        if crate::pooler::behind_transaction_pooler(&mut probe, &mut second)? {
            return Err(Error::TransactionPooler {
                url: url.to_string(),
            });
        }
    }
    drop(probe);
    Ok(lazy_pool(config, url, false))
}

/// Behind a transaction pooler the pool sets no `statement_timeout`: the
/// server's (from the role or database) applies. Says so when it differs
/// from the configured one.
fn warn_on_server_settings(conn: &mut PgConnection, config: &Config) {
    match crate::pooler::server_statement_timeout_ms(conn) {
        Ok(ms) if ms != config.statement_timeout_ms => tracing::warn!(
            url = %config.database_url,
            "behind a transaction pooler the server's statement_timeout applies: {ms} ms, not the \
             configured {} ms; set it on the role or database (ALTER ROLE … SET statement_timeout = …)",
            config.statement_timeout_ms
        ),
        Ok(_) => {}
        Err(e) => tracing::warn!(url = %config.database_url, "cannot read statement_timeout: {e}"),
    }
}

/// Builds the pool of a read replica at `url`, with `config`'s size and
/// timeouts, whose sessions are read-only (`default_transaction_read_only =
/// on`). No connection is opened here: a replica that is down when the
/// application starts is taken out by its prober, not reported as an error.
pub fn build_replica_pool(config: &Config, url: &DatabaseUrl) -> PgPool {
    lazy_pool(config, url, true)
}

/// A pool for `url` with `config`'s size, timeouts and session settings,
/// that opens connections only as callers need them.
fn lazy_pool(config: &Config, url: &DatabaseUrl, read_only: bool) -> PgPool {
    let manager = ConnectionManager::<PgConnection>::new(effective_url(url).expose());
    diesel::r2d2::Pool::builder()
        .max_size(config.pool_size)
        .min_idle(Some(0))
        .connection_timeout(config.checkout_timeout)
        .test_on_check_out(false)
        .connection_customizer(Box::new(SessionSettings {
            instrumentation: config
                .instrumentation
                .clone()
                .map(|make| (make, ConnectionTarget::of(url, read_only))),
            ..session_settings(url, config.statement_timeout_ms, read_only, config.pooler)
        }))
        .error_handler(Box::new(ScrubbingErrorHandler { url: url.clone() }))
        .build_unchecked(manager)
}

/// Checks a connection out of `pool`, turning r2d2's timeout into
/// [`Error::PoolTimeout`] with the last connection error (scrubbed).
pub fn checkout(pool: &PgPool, config_url: &DatabaseUrl) -> Result<PgPooledConnection> {
    pool.get().map_err(|e| pool_error(pool, config_url, &e))
}

pub(crate) fn pool_error(pool: &PgPool, url: &DatabaseUrl, e: &r2d2::Error) -> Error {
    let last = e.to_string();
    let last_error =
        (!last.is_empty() && last != "timed out waiting for connection").then(|| url.scrub(&last));
    Error::PoolTimeout {
        timeout_ms: pool.connection_timeout().as_millis(),
        pool_size: pool.max_size(),
        last_error,
    }
}

/// Logs pool connection errors through `tracing`, without the password.
#[derive(Debug)]
struct ScrubbingErrorHandler {
    url: DatabaseUrl,
}

impl r2d2::HandleError<diesel::r2d2::Error> for ScrubbingErrorHandler {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        tracing::warn!(
            url = %self.url,
            "pool connection error: {}",
            self.url.scrub(&error.to_string())
        );
    }
}

/// How long [`wait_for_server`] polls by default: 10 seconds.
pub const DEFAULT_WAIT: Duration = Duration::from_secs(10);

/// Polls until a connection to `url` succeeds or `timeout` passes,
/// returning the last error. For tools that start a server and go on.
pub fn wait_for_server(url: &DatabaseUrl, timeout: Duration) -> Result<()> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match establish(url) {
            Ok(_) => return Ok(()),
            Err(e @ (Error::Unreachable { .. } | Error::Connection { .. }))
                if std::time::Instant::now() < deadline =>
            {
                tracing::debug!("waiting for the server: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_get_tcp_keepalives_unless_the_url_sets_its_own() {
        let url =
            DatabaseUrl::parse("postgres://u:pw@db.example.com/cruddur?keepalives_idle=5").unwrap();
        let effective = effective_url(&url);
        for (key, value) in DEFAULT_TCP_SETTINGS {
            let expected = if *key == "keepalives_idle" {
                "5"
            } else {
                value
            };
            assert_eq!(effective.param(key), Some(expected), "{key}");
        }
        assert_eq!(effective.param("password"), Some("pw"));
        assert_eq!(effective.database().as_deref(), Some("cruddur"));
    }

    #[test]
    fn keepalives_follow_the_urls_tcp_user_timeout() {
        let default: Vec<(&str, String)> = DEFAULT_TCP_SETTINGS
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect();
        assert_eq!(tcp_settings(DEFAULT_TCP_USER_TIMEOUT_MS).to_vec(), default);
        let cases = [
            ("tcp_user_timeout=3000", ["1", "1", "1", "3", "3000"]),
            ("tcp_user_timeout=12000", ["1", "6", "2", "3", "12000"]),
            (
                "tcp_user_timeout=3000&keepalives_idle=9",
                ["1", "9", "1", "3", "3000"],
            ),
            ("tcp_user_timeout=0", ["1", "30", "10", "3", "0"]),
            ("keepalives=0", ["0", "30", "10", "3", "60000"]),
        ];
        for (query, expected) in cases {
            let url =
                DatabaseUrl::parse(&format!("postgres://u:pw@db.example.com/cruddur?{query}"))
                    .unwrap();
            let effective = effective_url(&url);
            let got: Vec<&str> = [
                "keepalives",
                "keepalives_idle",
                "keepalives_interval",
                "keepalives_count",
                "tcp_user_timeout",
            ]
            .iter()
            .map(|k| effective.param(k).unwrap_or("unset"))
            .collect();
            assert_eq!(got, expected, "{query}");
        }
    }

    #[test]
    fn the_servers_end_gets_the_connections_dead_network_bound() {
        let url = |query: &str| {
            DatabaseUrl::parse(&format!("postgres://u:pw@db.example.com/cruddur?{query}")).unwrap()
        };
        let sql = ServerTcp::of(&url("tcp_user_timeout=3000")).sql();
        assert!(
            sql.starts_with(
                "SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; \
                 SET tcp_keepalives_count = 3; SELECT set_config('tcp_user_timeout', '3000', false)"
            ),
            "{sql}"
        );
        let sql = ServerTcp::of(&url("keepalives=0")).sql();
        assert!(!sql.contains("tcp_keepalives"), "{sql}");
        assert!(sql.contains("'tcp_user_timeout', '60000'"), "{sql}");
    }

    #[test]
    fn classification_ignores_the_names_libpq_quotes() {
        fn kind(e: &Error) -> &'static str {
            match e {
                Error::DatabaseMissing { .. } => "missing",
                Error::Authentication { .. } => "auth",
                Error::Tls { .. } => "tls",
                Error::Unreachable { .. } => "unreachable",
                _ => "other",
            }
        }
        let url = DatabaseUrl::parse("postgres://u:pw@localhost/cruddur").unwrap();
        let tcp = r#"connection to server at "localhost" (127.0.0.1), port 5432 failed: "#;
        let socket = r#"connection to server on socket "/tmp/nossl_tls_role_database/.s.PGSQL.5432" failed: "#;
        let cases = [
            (
                tcp,
                r#"FATAL:  database "cruddur_roles_missing" does not exist"#,
                "missing",
            ),
            (
                tcp,
                r#"FATAL:  role "ssl_tls_database" does not exist"#,
                "auth",
            ),
            (
                tcp,
                r#"FATAL:  password authentication failed for user "database_ssl""#,
                "auth",
            ),
            (
                tcp,
                r#"server certificate for "localhost" does not match host name "127.0.0.1""#,
                "tls",
            ),
            (tcp, "SSL error: certificate verify failed", "tls"),
            (tcp, "Connection refused", "unreachable"),
            (
                tcp,
                r#"FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "role", database "db""#,
                "auth",
            ),
            (socket, "No such file or directory", "unreachable"),
        ];
        for (prefix, reason, expected) in cases {
            let err = classify_connection_error(&url, &format!("{prefix}{reason}"));
            assert_eq!(kind(&err), expected, "{reason} -> {err:?}");
        }
    }
}
