//! What the library needs to reach a database and size its pool
//! ([`Config`]), and its defaults. It is built from [`Settings`], the
//! environment read once; the variables are listed in
//! [`crate::variables`], and which database is used when none is named is
//! [`crate::resolve`](mod@crate::resolve)'s to decide.
//!
//! Connection URLs are held as [`DatabaseUrl`], whose `Display` and `Debug`
//! never show the password.

use std::fmt;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::instrument::ConnectionInstrumentation;
use crate::pooler::Pooler;
use crate::settings::Settings;
use crate::variables::{
    CONNECTION_URL, CRUDDUR_POOL_SIZE, CRUDDUR_STATEMENT_TIMEOUT_MS, DATABASE_DIRECT_URL,
    DATABASE_REPLICA_URLS, DATABASE_URL, PROD_CONNECTION_URL, PROD_DIRECT_URL,
};

/// Default maximum number of pooled connections.
pub const DEFAULT_POOL_SIZE: u32 = 10;
/// Default time a caller waits for a pooled connection before it gets
/// [`Error::PoolTimeout`]: 5 seconds.
pub const DEFAULT_CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default time to establish a TCP connection and authenticate (libpq's
/// `connect_timeout`), used when the URL sets none: 5 seconds.
pub const DEFAULT_CONNECT_TIMEOUT_SECS: u32 = 5;
/// Default statement timeout, in milliseconds: 30 seconds.
pub const DEFAULT_STATEMENT_TIMEOUT_MS: u64 = 30_000;
/// The `application_name` every connection reports to the server.
pub const APPLICATION_NAME: &str = "cruddur-db";
/// The URL tried when no variable names a database (unless
/// `CRUDDUR_DEFAULT_URL` replaces it); when nothing answers there,
/// the project-local cluster (crate `cruddur-db-local`) is used.
pub const DEFAULT_DATABASE_URL: &str = "postgres://localhost/cruddur";

/// Which kind of database a [`Config`] points at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    /// The development (or test) database.
    Development,
    /// The production database (`PROD_CONNECTION_URL`).
    Production,
}

impl fmt::Display for Environment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Environment::Development => "development",
            Environment::Production => "production",
        })
    }
}

pub use crate::conninfo::{DatabaseUrl, redact, scrub_secrets};

/// Everything the library needs to reach a database and size its pool.
///
/// Build it with [`Config::from_env`] or [`Config::new`]; every field has a
/// documented default.
#[derive(Debug, Clone)]
pub struct Config {
    /// The database to connect to.
    pub database_url: DatabaseUrl,
    /// Whether this is the production database.
    pub environment: Environment,
    /// Maximum pooled connections (default [`DEFAULT_POOL_SIZE`]).
    pub pool_size: u32,
    /// How long a caller waits for a pooled connection (default
    /// [`DEFAULT_CHECKOUT_TIMEOUT`]).
    pub checkout_timeout: Duration,
    /// Statement timeout set on every connection, in milliseconds (default
    /// [`DEFAULT_STATEMENT_TIMEOUT_MS`]; 0 disables it).
    pub statement_timeout_ms: u64,
    /// A note when both `DATABASE_URL` and `CONNECTION_URL` are set and
    /// differ (`DATABASE_URL` is used); callers may show it.
    pub warning: Option<String>,
    /// Read replicas of the database (`DATABASE_REPLICA_URLS`; default
    /// none, and then every read goes to the primary).
    pub replica_urls: Vec<DatabaseUrl>,
    /// What stands between the application and the server (`CRUDDUR_POOLER`;
    /// default [`Pooler::Session`]); see [`crate::pooler`].
    pub pooler: Pooler,
    /// The database without the transaction pooler, for what needs a
    /// session (`DATABASE_DIRECT_URL`, or `PROD_DIRECT_URL` for
    /// production; default none). See [`Config::session_url`].
    pub direct_url: Option<DatabaseUrl>,
    /// What each pooled connection (the primary's and the replicas') reports
    /// its statements to (default none); see [`crate::instrument`]. Code
    /// sets it, no variable does.
    pub instrumentation: Option<ConnectionInstrumentation>,
}

impl Config {
    /// A configuration for `database_url` with every default.
    pub fn new(database_url: DatabaseUrl) -> Self {
        Self {
            database_url,
            environment: Environment::Development,
            pool_size: DEFAULT_POOL_SIZE,
            checkout_timeout: DEFAULT_CHECKOUT_TIMEOUT,
            statement_timeout_ms: DEFAULT_STATEMENT_TIMEOUT_MS,
            warning: None,
            replica_urls: Vec::new(),
            pooler: Pooler::Session,
            direct_url: None,
            instrumentation: None,
        }
    }

    /// The URL for what needs a session of its own (migrations and their
    /// lock, `prepare`, the CLI's lifecycle commands): the database URL,
    /// or behind a transaction pooler the direct URL. Without one there,
    /// [`Error::NeedsDirectUrl`] names `what` and the variable to set.
    pub fn session_url(&self, what: &'static str) -> Result<&DatabaseUrl> {
        if !self.pooler.is_transaction() {
            return Ok(&self.database_url);
        }
        self.direct_url.as_ref().ok_or(Error::NeedsDirectUrl {
            what,
            variable: match self.environment {
                Environment::Production => PROD_DIRECT_URL.name(),
                Environment::Development => DATABASE_DIRECT_URL.name(),
            },
        })
    }

    /// Reads `.env` and the environment (see [`Settings::from_env`]); a
    /// malformed `.env` is an [`Error::DotEnv`] and applies nothing.
    ///
    /// `environment` selects `PROD_CONNECTION_URL` ([`Environment::Production`])
    /// or `DATABASE_URL` / `CONNECTION_URL`. Returns [`Error::MissingUrl`]
    /// when the chosen variable is unset.
    pub fn from_env(environment: Environment) -> Result<Self> {
        Settings::from_env()?.config(environment)
    }

    /// Like [`Config::from_env`], with the variables of `settings`.
    pub(crate) fn from_settings(environment: Environment, settings: &Settings) -> Result<Self> {
        let (url, warning) = match environment {
            Environment::Production => (
                settings
                    .get(&PROD_CONNECTION_URL)
                    .ok_or(Error::MissingUrl {
                        variables: "PROD_CONNECTION_URL",
                    })?,
                None,
            ),
            Environment::Development => {
                let database_url = settings.get(&DATABASE_URL);
                let connection_url = settings.get(&CONNECTION_URL);
                let warning = match (database_url, connection_url) {
                    (Some(a), Some(b)) if a.trim() != b.trim() => Some(format!(
                        "DATABASE_URL ({}) and CONNECTION_URL ({}) differ{}; using DATABASE_URL",
                        redact(a),
                        redact(b),
                        if redact(a) == redact(b) {
                            " (in the password)"
                        } else {
                            ""
                        }
                    )),
                    _ => None,
                };
                (
                    database_url.or(connection_url).ok_or(Error::MissingUrl {
                        variables: "DATABASE_URL or CONNECTION_URL",
                    })?,
                    warning,
                )
            }
        };
        let mut config = Self::new(DatabaseUrl::parse(url)?).with_settings(settings)?;
        config.environment = environment;
        config.warning = warning;
        if environment == Environment::Production {
            config.direct_url = parse_direct_url(settings, &PROD_DIRECT_URL)?;
        }
        Ok(config)
    }

    /// This configuration with the pool and session settings
    /// (`CRUDDUR_POOL_SIZE`, `CRUDDUR_STATEMENT_TIMEOUT_MS`) and the read
    /// replicas (`DATABASE_REPLICA_URLS`) of `settings`, for callers that
    /// chose the URL themselves. A value outside its range is an
    /// [`Error::InvalidSetting`] naming the variable and the range.
    pub(crate) fn with_settings(mut self, settings: &Settings) -> Result<Self> {
        if let Some(n) = settings.number(&CRUDDUR_POOL_SIZE, 1..=MAX_POOL_SIZE)? {
            self.pool_size = n;
        }
        if let Some(n) =
            settings.number(&CRUDDUR_STATEMENT_TIMEOUT_MS, 0..=MAX_STATEMENT_TIMEOUT_MS)?
        {
            self.statement_timeout_ms = n;
        }
        let replicas = settings.list(&DATABASE_REPLICA_URLS);
        if !replicas.is_empty() {
            self.replica_urls = parse_replica_urls(&replicas)?;
        }
        self.pooler = Pooler::from_settings(settings)?;
        self.direct_url = parse_direct_url(settings, &DATABASE_DIRECT_URL)?;
        Ok(self)
    }
}

/// The direct URL of `var`, if set; one libpq refuses is an
/// [`Error::InvalidSetting`] showing it redacted (or not at all when it
/// does not parse: where its password is cannot be known).
fn parse_direct_url(
    settings: &Settings,
    var: &crate::settings::Variable,
) -> Result<Option<DatabaseUrl>> {
    settings
        .get(var)
        .map(|value| {
            DatabaseUrl::parse(value).map_err(|e| match e {
                Error::InvalidUrl { url, reason } => Error::InvalidSetting {
                    name: var.name(),
                    value: url,
                    reason,
                },
                other => other,
            })
        })
        .transpose()
}

/// Parses the entries of `DATABASE_REPLICA_URLS` (the list as
/// [`Settings::list`] splits it: at commas, blank entries left out). An
/// entry libpq refuses is an [`Error::InvalidSetting`] that names the entry
/// by its position and shows the list redacted (an entry that does not
/// parse is not shown at all: where its password is cannot be known).
///
/// A comma always separates entries, so an entry cannot hold one: a
/// replica is one host (libpq's host lists are for failover, not for
/// spreading reads), and a comma in a value is written `%2C` in a URI.
fn parse_replica_urls(entries: &[&str]) -> Result<Vec<DatabaseUrl>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            DatabaseUrl::parse(entry).map_err(|e| Error::InvalidSetting {
                name: DATABASE_REPLICA_URLS.name(),
                value: entries
                    .iter()
                    .map(|e| redact(e))
                    .collect::<Vec<_>>()
                    .join(","),
                reason: format!(
                    "entry {} of {} is not a connection string: {}",
                    i + 1,
                    entries.len(),
                    match e {
                        Error::InvalidUrl { reason, .. } => reason,
                        other => other.to_string(),
                    }
                ),
            })
        })
        .collect()
}

/// The largest `CRUDDUR_POOL_SIZE` accepted: 1,000 connections. r2d2 sizes
/// its bookkeeping by the maximum, and no PostgreSQL server takes more
/// connections than this from one pool in practice.
pub const MAX_POOL_SIZE: u32 = 1_000;

/// The largest `CRUDDUR_STATEMENT_TIMEOUT_MS` accepted: PostgreSQL's own
/// limit for `statement_timeout` (`INT_MAX` milliseconds, about 24.8 days).
pub const MAX_STATEMENT_TIMEOUT_MS: u64 = i32::MAX as u64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_wins_and_difference_is_reported() {
        let settings = Settings::from_pairs([
            ("DATABASE_URL", "postgres://a:pw1@h/one"),
            ("CONNECTION_URL", "postgres://a:pw2@h/two"),
        ]);
        let config = settings.config(Environment::Development).unwrap();
        assert_eq!(config.database_url.database().as_deref(), Some("one"));
        let warning = config.warning.unwrap();
        assert!(warning.contains("differ"), "{warning}");
        assert!(
            !warning.contains("pw1") && !warning.contains("pw2"),
            "{warning}"
        );
    }

    #[test]
    fn a_blank_variable_counts_as_unset() {
        let settings = Settings::from_pairs([
            ("DATABASE_URL", "  "),
            ("CONNECTION_URL", "postgres://h/two"),
        ]);
        let config = settings.config(Environment::Development).unwrap();
        assert_eq!(config.database_url.database().as_deref(), Some("two"));
        assert!(config.warning.is_none());
        let err = Settings::from_pairs([("PROD_CONNECTION_URL", "")])
            .config(Environment::Production)
            .unwrap_err();
        assert!(matches!(err, Error::MissingUrl { .. }), "{err}");
    }

    #[test]
    fn settings_outside_their_range_name_the_variable_and_the_range() {
        let url = DatabaseUrl::parse("postgres://h/d").unwrap();
        for (name, value) in [
            ("CRUDDUR_POOL_SIZE", "0"),
            ("CRUDDUR_POOL_SIZE", "4294967295"),
            ("CRUDDUR_POOL_SIZE", "1001"),
            ("CRUDDUR_POOL_SIZE", "ten"),
            ("CRUDDUR_STATEMENT_TIMEOUT_MS", "2147483648"),
            ("CRUDDUR_STATEMENT_TIMEOUT_MS", "-1"),
        ] {
            let err = Settings::from_pairs([(name, value)])
                .config_for(url.clone())
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name) && err.contains(" to "),
                "{name}={value}: {err}"
            );
        }
        let ok = Settings::from_pairs([
            ("CRUDDUR_POOL_SIZE", "1000"),
            ("CRUDDUR_STATEMENT_TIMEOUT_MS", "2147483647"),
        ])
        .config_for(url)
        .unwrap();
        assert_eq!(
            (ok.pool_size, ok.statement_timeout_ms),
            (1000, 2_147_483_647)
        );
    }

    #[test]
    fn pooler_mode_and_direct_urls_are_read_for_their_environment() {
        let config = |pairs: &[(&str, &str)], environment| {
            Settings::from_pairs(pairs.iter().copied()).config(environment)
        };
        let base = [
            ("DATABASE_URL", "postgres://pooler/d"),
            ("PROD_CONNECTION_URL", "postgres://proxy/d"),
        ];
        let plain = config(&base, Environment::Development).unwrap();
        assert_eq!(
            (plain.pooler, plain.direct_url.is_none()),
            (Pooler::Session, true)
        );
        assert_eq!(
            plain.session_url("x").unwrap().param("host"),
            Some("pooler")
        );
        for value in ["transaction", " Transaction "] {
            let mut pairs = base.to_vec();
            pairs.extend([
                ("CRUDDUR_POOLER", value),
                ("DATABASE_DIRECT_URL", "postgres://db/d"),
                ("PROD_DIRECT_URL", "postgres://instance/d"),
            ]);
            let dev = config(&pairs, Environment::Development).unwrap();
            assert_eq!(dev.pooler, Pooler::Transaction, "{value}");
            assert_eq!(dev.session_url("x").unwrap().param("host"), Some("db"));
            let prod = config(&pairs, Environment::Production).unwrap();
            assert_eq!(
                prod.session_url("x").unwrap().param("host"),
                Some("instance")
            );
        }
        let mut pairs = base.to_vec();
        pairs.push(("CRUDDUR_POOLER", "transaction"));
        let err = config(&pairs, Environment::Production)
            .unwrap()
            .session_url("migrations")
            .unwrap_err();
        assert!(err.to_string().contains("set PROD_DIRECT_URL"), "{err}");
        for (name, value) in [
            ("CRUDDUR_POOLER", "statement"),
            ("DATABASE_DIRECT_URL", "postgres://u:hunter2@db/d?nope=1"),
        ] {
            let mut pairs = base.to_vec();
            pairs.push((name, value));
            let err = config(&pairs, Environment::Development).unwrap_err();
            assert!(matches!(err, Error::InvalidSetting { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn replica_urls_are_read_and_bad_ones_are_refused_without_their_password() {
        let url = DatabaseUrl::parse("postgres://h/d").unwrap();
        let with = |value: &str| {
            Settings::from_pairs([("DATABASE_REPLICA_URLS", value)]).config_for(url.clone())
        };
        assert!(Config::new(url.clone()).replica_urls.is_empty());
        assert!(with("").unwrap().replica_urls.is_empty());
        let two = with(" postgres://u:pw@r1/d , postgresql://r2:5433/d,").unwrap();
        let hosts: Vec<_> = two.replica_urls.iter().map(|u| u.param("host")).collect();
        assert_eq!(hosts, [Some("r1"), Some("r2")]);
        for bad in [
            "postgres://u:hunter2@r1/d,postgres://u:hunter2@r2/d?nope=1",
            "postgres://u:hunter2@r1/d,host=r2 password=hunter2 port",
            "postgres://u:hunter2@r1/d,not a url",
        ] {
            let err = with(bad).unwrap_err();
            let text = err.to_string();
            assert!(matches!(err, Error::InvalidSetting { .. }), "{bad}: {text}");
            assert!(
                text.contains("DATABASE_REPLICA_URLS") && text.contains("entry "),
                "{bad}: {text}"
            );
            assert!(!text.contains("hunter2"), "{bad}: {text}");
        }
        let settings = Settings::from_pairs([
            ("DATABASE_URL", "postgres://h/d"),
            ("DATABASE_REPLICA_URLS", "postgres://r1/d"),
        ]);
        let config = settings.config(Environment::Development).unwrap();
        assert_eq!(config.replica_urls.len(), 1);
    }
}
