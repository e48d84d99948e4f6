//! Behind a pooler: what changes when PgBouncer (transaction mode) or RDS
//! Proxy stands between the application and the server.
//!
//! A transaction pooler hands each transaction of a client connection to
//! whichever server connection is free. What a session would keep from one
//! transaction to the next is then lost, or worse, seen by another client:
//!
//! | what | direct or session pooler | transaction pooler |
//! |---|---|---|
//! | named prepared statements (Diesel's statement cache) | prepared once per connection | `42P05` "already exists" or `26000` "does not exist": the cache is off ([`CacheSize::Disabled`]), every statement goes unnamed |
//! | session settings (`SET statement_timeout`, `TimeZone`, `plan_cache_mode`, a replica's `default_transaction_read_only`) | set once per connection | never set: they would leak to the next client of that server connection. Set them on the role or database instead (`ALTER ROLE … SET statement_timeout = '30s'`); the pool warns at start when the server's `statement_timeout` is not the configured one; a replica read runs in a read-only transaction (`BEGIN READ ONLY`) instead of a read-only session |
//! | session advisory locks (the migration lock), `LISTEN` | hold for the session | mean nothing: whatever needs a session goes through [`Config::direct_url`] (`DATABASE_DIRECT_URL`) |
//! | `SET LOCAL`, `pg_advisory_xact_lock`, one statement | safe | safe |
//!
//! The mode is chosen by configuration (`CRUDDUR_POOLER`, [`Pooler`]).
//! Without it, [`build_pool`](crate::pool::build_pool) checks that it is not
//! behind a transaction pooler (two connections that share one server
//! process, or one whose server process changes between two transactions,
//! can only be a transaction pooler's) and refuses with
//! [`Error::TransactionPooler`], which says what to set: the breakage is a
//! clear error at start rather than wrong answers later. A replica's URL is
//! checked the same way by its prober, before it sets anything there: a
//! replica behind a transaction pooler without the mode is out, with that
//! error as its reason, and its reads go to the primary.
//!
//! Replica routing and write tokens work through a pooler in front of each
//! server: a token's position is the server's WAL position, whichever
//! server process reads it.

use std::fmt;

use diesel::connection::CacheSize;
use diesel::prelude::*;

use crate::admin::identify;
#[cfg(doc)]
use crate::config::Config;
use crate::config::DatabaseUrl;
use crate::error::{Error, Result};
use crate::settings::Settings;
use crate::variables::CRUDDUR_POOLER;

/// What stands between the application and the server (`CRUDDUR_POOLER`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Pooler {
    /// The server itself, or a pooler that gives each client connection a
    /// server connection of its own for the session (PgBouncer's session
    /// mode). The default.
    #[default]
    Session,
    /// A transaction pooler: PgBouncer's transaction mode, RDS Proxy. No
    /// named statement, no session setting, and whatever needs a session
    /// goes through the direct URL.
    Transaction,
}

impl Pooler {
    /// `CRUDDUR_POOLER` of `settings`: unset, `session` or `transaction`
    /// (any case); anything else is an [`Error::InvalidSetting`].
    pub fn from_settings(settings: &Settings) -> Result<Self> {
        let Some(value) = settings.get(&CRUDDUR_POOLER) else {
            return Ok(Self::Session);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "" | "session" => Ok(Self::Session),
            "transaction" => Ok(Self::Transaction),
            _ => Err(Error::InvalidSetting {
                name: CRUDDUR_POOLER.name(),
                value: value.chars().take(40).collect(),
                reason: "expected `session` or `transaction`".into(),
            }),
        }
    }

    /// Whether connections must keep nothing between transactions.
    pub fn is_transaction(self) -> bool {
        self == Self::Transaction
    }

    /// Readies a new connection for this mode: behind a transaction pooler,
    /// Diesel's statement cache goes off, so that every statement is sent
    /// unnamed (libpq's `PQsendQueryParams`).
    pub(crate) fn ready(self, conn: &mut PgConnection) {
        if self.is_transaction() {
            conn.set_prepared_statement_cache_size(CacheSize::Disabled);
        }
    }
}

impl fmt::Display for Pooler {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Session => "session",
            Self::Transaction => "transaction",
        })
    }
}

#[derive(QueryableByName)]
struct Pid {
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pid: i32,
}

fn backend_pid(conn: &mut PgConnection) -> Result<i32> {
    Ok(diesel::sql_query("SELECT pg_backend_pid() AS pid")
        .get_result::<Pid>(conn)?
        .pid)
}

/// Whether `first` (open on `url`) is behind a transaction pooler, asked
/// with a second connection `second` to the same URL: on a server or
/// behind a session pooler, two open connections never share a server
/// process and one connection keeps its own. Each query is a transaction
/// of its own. With PgBouncer's default (server connections reused last in,
/// first out) the second connection gets the first one's server process;
/// with `server_round_robin`, the first one's next transaction moves.
pub(crate) fn behind_transaction_pooler(
    first: &mut PgConnection,
    second: &mut PgConnection,
) -> Result<bool> {
    let before = backend_pid(first)?;
    let other = backend_pid(second)?;
    if other == before {
        return Ok(true);
    }
    Ok(backend_pid(first)? != before)
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    value: i64,
}

/// The server's `statement_timeout` for this role and database, in
/// milliseconds (its unit in `pg_settings`): what a connection behind a
/// transaction pooler runs with, since it sets none of its own.
pub fn server_statement_timeout_ms(conn: &mut PgConnection) -> Result<u64> {
    let row: Setting = diesel::sql_query(
        "SELECT setting::bigint AS value FROM pg_settings WHERE name = 'statement_timeout'",
    )
    .get_result(conn)?;
    Ok(u64::try_from(row.value).unwrap_or(0))
}

/// Checks that `direct` (a connection through the direct URL) reached the
/// database that `pooled_url` reaches through the pooler, so that a stale
/// `DATABASE_DIRECT_URL` cannot send migrations to another database.
pub(crate) fn check_same_database(
    direct: &mut PgConnection,
    direct_url: &DatabaseUrl,
    pooled_url: &DatabaseUrl,
    pooler: Pooler,
) -> Result<()> {
    let mut pooled = crate::pool::establish_as(pooled_url, 0, pooler)?;
    let (a, b) = (identify(direct)?, identify(&mut pooled)?);
    if a.same_database(&b) {
        return Ok(());
    }
    Err(Error::DirectUrlMismatch {
        direct_url: direct_url.to_string(),
        pooled_url: pooled_url.to_string(),
        reached: format!(
            "`{}` on port {}, `{}` on port {}",
            a.database, a.port, b.database, b.port
        ),
    })
}

/// A connection for what needs a session (migrations and their lock,
/// `prepare`, the lifecycle commands): to [`Config::database_url`], or
/// behind a transaction pooler to [`Config::direct_url`], checked to reach
/// the same database. Without a direct URL there, it refuses with
/// [`Error::NeedsDirectUrl`] naming `what` and the variable to set.
pub fn session_connection(config: &crate::Config, what: &'static str) -> Result<PgConnection> {
    let url = config.session_url(what)?;
    let mut conn = crate::pool::establish_as(url, config.statement_timeout_ms, Pooler::Session)?;
    if config.pooler.is_transaction() {
        check_same_database(&mut conn, url, &config.database_url, config.pooler)?;
    }
    Ok(conn)
}

/// Behind a transaction pooler, checks that [`Config::direct_url`] reaches
/// the database that [`Config::database_url`] reaches through the pooler
/// (when both exist: before `create`, neither may), so that a stale
/// `DATABASE_DIRECT_URL` cannot point the lifecycle commands at another
/// database. Without pooler mode, or without a direct URL, it checks
/// nothing.
pub fn check_direct_url(config: &crate::Config) -> Result<()> {
    let (Pooler::Transaction, Some(direct_url)) = (config.pooler, &config.direct_url) else {
        return Ok(());
    };
    let mut direct = match crate::pool::establish_as(direct_url, 0, Pooler::Session) {
        Ok(conn) => conn,
        Err(Error::DatabaseMissing { .. }) => return Ok(()),
        Err(e) => return Err(e),
    };
    match check_same_database(&mut direct, direct_url, &config.database_url, config.pooler) {
        Err(Error::DatabaseMissing { .. }) => Ok(()),
        other => other,
    }
}
