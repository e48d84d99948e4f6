//! Configuration, read once from the environment (and a `.env` file).
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | the database to use (the diesel convention); wins over `CONNECTION_URL` |
//! | `CONNECTION_URL` | the same, under the original project's name |
//! | `PROD_CONNECTION_URL` | the production database, used when production is asked for |
//! | `CRUDDUR_POOL_SIZE` | maximum connections in the pool (default [`DEFAULT_POOL_SIZE`]) |
//! | `CRUDDUR_STATEMENT_TIMEOUT_MS` | per-statement timeout in milliseconds (default [`DEFAULT_STATEMENT_TIMEOUT_MS`]) |
//! | `DATABASE_REPLICA_URLS` | read replicas of the database, comma-separated connection strings (none by default: every read goes to the primary); see [`crate::replica`] |
//! | `CRUDDUR_DEFAULT_URL` | the URL tried when none is configured (default [`DEFAULT_DATABASE_URL`]); the `cruddur-db-local` crate falls back to its cluster when nothing answers there |
//!
//! The project-local cluster has variables of its own, listed in
//! the `cruddur-db-local` crate.
//!
//! A `.env` file is read with [`dotenvy`]; variables already set in the
//! environment win over it. It is looked for in the current directory and
//! its parents up to the project root, the nearest one that holds `.git`;
//! outside a git checkout, in the current directory only. So a `.env` in
//! a shared place above the project (the system temp directory, `/`) is
//! never read. The file must belong to the current user or to root and
//! must not be writable by its group or others: it chooses programs that
//! may be run as root (`CRUDDUR_PG_BINDIR`), so a file another user could
//! have written is refused ([`Error::DotEnvUnsafe`]).
//!
//! Connection URLs are held as [`DatabaseUrl`], whose `Display` and `Debug`
//! never show the password.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

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
        }
    }

    /// Reads `.env` and the environment (see the module docs); a malformed
    /// `.env` is an [`Error::DotEnv`] and applies nothing.
    ///
    /// `environment` selects `PROD_CONNECTION_URL` ([`Environment::Production`])
    /// or `DATABASE_URL` / `CONNECTION_URL`. Returns [`Error::MissingUrl`]
    /// when the chosen variable is unset.
    pub fn from_env(environment: Environment) -> Result<Self> {
        Settings::from_env()?.config(environment)
    }

    /// Like [`Config::from_env`], with variables read from `lookup` (for
    /// callers that hold their own settings, and for tests).
    pub(crate) fn from_lookup(
        environment: Environment,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let (url, warning) = match environment {
            Environment::Production => (
                non_empty("PROD_CONNECTION_URL").ok_or(Error::MissingUrl {
                    variables: "PROD_CONNECTION_URL",
                })?,
                None,
            ),
            Environment::Development => {
                let database_url = non_empty("DATABASE_URL");
                let connection_url = non_empty("CONNECTION_URL");
                let warning = match (&database_url, &connection_url) {
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
        let mut config = Self::new(DatabaseUrl::parse(&url)?).with_settings_from(&lookup)?;
        config.environment = environment;
        config.warning = warning;
        Ok(config)
    }

    /// This configuration with the pool and session settings
    /// (`CRUDDUR_POOL_SIZE`, `CRUDDUR_STATEMENT_TIMEOUT_MS`) and the read
    /// replicas (`DATABASE_REPLICA_URLS`) read from `lookup`, for callers
    /// that chose the URL themselves. A value outside its range is an
    /// [`Error::InvalidSetting`] naming the variable and the range.
    pub(crate) fn with_settings_from(
        mut self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<Self> {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("CRUDDUR_POOL_SIZE") {
            self.pool_size = parse_setting("CRUDDUR_POOL_SIZE", &v, 1, MAX_POOL_SIZE)?;
        }
        if let Some(v) = non_empty("CRUDDUR_STATEMENT_TIMEOUT_MS") {
            self.statement_timeout_ms = parse_setting(
                "CRUDDUR_STATEMENT_TIMEOUT_MS",
                &v,
                0,
                MAX_STATEMENT_TIMEOUT_MS,
            )?;
        }
        if let Some(v) = non_empty("DATABASE_REPLICA_URLS") {
            self.replica_urls = parse_replica_urls(&v)?;
        }
        Ok(self)
    }
}

/// Parses `DATABASE_REPLICA_URLS`: connection strings separated by commas,
/// blank entries ignored (a trailing comma is harmless). An entry libpq
/// refuses is an [`Error::InvalidSetting`] that names the entry by its
/// position and shows the list redacted (an entry that does not parse is
/// not shown at all: where its password is cannot be known).
///
/// A comma always separates entries, so an entry cannot hold one: a
/// replica is one host (libpq's host lists are for failover, not for
/// spreading reads), and a comma in a value is written `%2C` in a URI.
pub(crate) fn parse_replica_urls(value: &str) -> Result<Vec<DatabaseUrl>> {
    let entries: Vec<&str> = value
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            DatabaseUrl::parse(entry).map_err(|e| Error::InvalidSetting {
                name: "DATABASE_REPLICA_URLS",
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

fn parse_setting<T>(name: &'static str, value: &str, min: T, max: T) -> Result<T>
where
    T: FromStr + PartialOrd + fmt::Display + Copy,
{
    let out_of_range = || Error::InvalidSetting {
        name,
        value: value.to_owned(),
        reason: format!("must be a whole number from {min} to {max}"),
    };
    let parsed: T = value.trim().parse().map_err(|_| out_of_range())?;
    if parsed < min || parsed > max {
        return Err(out_of_range());
    }
    Ok(parsed)
}

/// The variables [`Settings`] reads. Besides those of the module docs:
/// the project-local cluster's (`CRUDDUR_LOCAL_DIR`, `CRUDDUR_PG_BINDIR`,
/// `CRUDDUR_PG_USER`, with `PATH` to find the server programs),
/// `TEST_DATABASE_URL` (the server the tests use), `NO_COLOR`, the AWS
/// endpoint override `AWS_ENDPOINT_URL_EC2`, the regions `rds audit` allows
/// (`CRUDDUR_RDS_ALLOWED_REGIONS`), and the HTTP service's
/// (`CRUDDUR_BIND`, `FRONTEND_URL`, `BACKEND_URL`, `CRUDDUR_JWKS`,
/// `CRUDDUR_JWT_ISSUER`, `AWS_COGNITO_USER_POOL_ID`,
/// `AWS_COGNITO_USER_POOL_CLIENT_ID`, `CRUDDUR_DEV_HANDLE`,
/// `CRUDDUR_DEV_ALLOW_NETWORK`, `CRUDDUR_HEADER_READ_TIMEOUT_MS`,
/// `CRUDDUR_IDLE_TIMEOUT_MS`, `CRUDDUR_MAX_CONNECTIONS`,
/// `CRUDDUR_SHUTDOWN_DEADLINE_MS`).
pub const VARIABLES: &[&str] = &[
    "DATABASE_URL",
    "CONNECTION_URL",
    "PROD_CONNECTION_URL",
    "CRUDDUR_POOL_SIZE",
    "CRUDDUR_STATEMENT_TIMEOUT_MS",
    "DATABASE_REPLICA_URLS",
    "CRUDDUR_DEFAULT_URL",
    "CRUDDUR_LOCAL_DIR",
    "CRUDDUR_PG_BINDIR",
    "CRUDDUR_PG_USER",
    "PATH",
    "TEST_DATABASE_URL",
    "NO_COLOR",
    "AWS_ENDPOINT_URL_EC2",
    "CRUDDUR_RDS_ALLOWED_REGIONS",
    "CRUDDUR_BIND",
    "FRONTEND_URL",
    "BACKEND_URL",
    "CRUDDUR_JWKS",
    "CRUDDUR_JWT_ISSUER",
    "AWS_COGNITO_USER_POOL_ID",
    "AWS_COGNITO_USER_POOL_CLIENT_ID",
    "CRUDDUR_DEV_HANDLE",
    "CRUDDUR_DEV_ALLOW_NETWORK",
    "CRUDDUR_HEADER_READ_TIMEOUT_MS",
    "CRUDDUR_IDLE_TIMEOUT_MS",
    "CRUDDUR_MAX_CONNECTIONS",
    "CRUDDUR_SHUTDOWN_DEADLINE_MS",
];

/// Every setting of the project, read once: from the environment and the
/// `.env` file ([`Settings::from_env`]), or from any lookup
/// ([`Settings::from_lookup`]). Everything else takes its variables from a
/// `Settings` value, never from the process environment.
///
/// `Debug` shows the names of the variables that are set, never a value
/// (connection strings hold passwords).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    vars: std::collections::BTreeMap<&'static str, String>,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl Settings {
    /// Loads the `.env` file (of the current directory or its nearest
    /// parent up to the project root, see the [module docs](self)) into the
    /// process environment (variables already set win), then reads every
    /// variable of [`VARIABLES`] from the environment. A `.env` that another
    /// user could have written is an [`Error::DotEnvUnsafe`] and applies
    /// nothing. The whole file is parsed before any of it is applied:
    /// a malformed `.env` is an [`Error::DotEnv`] naming the line (never
    /// its content) and applies nothing.
    pub fn from_env() -> Result<Self> {
        load_dotenv()?;
        Ok(Self::from_lookup(|k| std::env::var(k).ok()))
    }

    /// The variables of [`VARIABLES`] as `lookup` gives them (for tests and
    /// callers with settings of their own). Reads no `.env` file.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Self {
        let vars = VARIABLES
            .iter()
            .filter_map(|&k| lookup(k).map(|v| (k, v)))
            .collect();
        Self { vars }
    }

    /// A variable's value; `None` when unset or blank (an empty
    /// `DATABASE_URL=` means "not set", so that it can mask a `.env` line).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    /// These settings with `name` set to `value` (`name` must be one of
    /// [`VARIABLES`]; others are ignored), e.g. to apply a command-line flag.
    pub fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        if let Some(&k) = VARIABLES.iter().find(|&&k| k == name) {
            self.vars.insert(k, value.into());
        }
        self
    }

    /// These settings without `name`.
    pub fn without(mut self, name: &str) -> Self {
        self.vars.remove(name);
        self
    }

    /// The [`Config`] for `environment`: `PROD_CONNECTION_URL`, or
    /// `DATABASE_URL` / `CONNECTION_URL`, with the pool settings.
    pub fn config(&self, environment: Environment) -> Result<Config> {
        Config::from_lookup(environment, |k| self.get(k).map(str::to_owned))
    }

    /// A development [`Config`] for `url`, with the pool settings of these
    /// settings (for a URL chosen by other means: a flag, a local cluster).
    pub fn config_for(&self, url: DatabaseUrl) -> Result<Config> {
        Config::new(url).with_settings_from(|k| self.get(k).map(str::to_owned))
    }
}

/// Loads the `.env` file of the current directory or its nearest parent
/// up to the project root (see the [module docs](self)) into the process
/// environment; variables already set win.
///
/// The file is opened once; its owner and mode are checked on that handle
/// and its content read from it, so the check and the read see one file.
/// The whole file is parsed before anything is applied: a line that does
/// not parse is an [`Error::DotEnv`] naming the file and the line number
/// (never the line, which may hold a password), and then no variable of the
/// file is set. A missing file is normal.
pub(crate) fn load_dotenv() -> Result<()> {
    let Ok(cwd) = std::env::current_dir() else {
        return Ok(());
    };
    let Some(path) = find_dotenv(&cwd) else {
        return Ok(());
    };
    let content = read_dotenv(&path)?;
    check_dotenv(&path, &content)?;
    dotenvy::from_read(content.as_slice()).map_err(|_| Error::DotEnv { path, line: None })
}

/// The `.env` to read from `cwd`: the nearest one in `cwd` and its parents
/// up to the nearest directory holding `.git`, or, when no parent holds
/// one, in `cwd` only.
pub(crate) fn find_dotenv(cwd: &Path) -> Option<PathBuf> {
    let root = cwd.ancestors().find(|dir| dir.join(".git").exists());
    let searched: Vec<&Path> = match root {
        Some(root) => cwd
            .ancestors()
            .take_while(|dir| *dir != root)
            .chain([root])
            .collect(),
        None => vec![cwd],
    };
    searched
        .into_iter()
        .map(|dir| dir.join(".env"))
        .find(|candidate| candidate.is_file())
}

/// Opens the `.env` at `path`, checks on the opened file that it belongs
/// to the current user or root and that neither its group nor others may
/// write it, and returns its content, read from that same handle.
pub(crate) fn read_dotenv(path: &Path) -> Result<Vec<u8>> {
    use std::io::Read as _;
    use std::os::unix::fs::MetadataExt as _;
    let unreadable = || Error::DotEnv {
        path: path.to_owned(),
        line: None,
    };
    use std::os::unix::fs::OpenOptionsExt as _;
    // Non-blocking, so that a FIFO swapped in for the file cannot hang us;
    // it is then refused as no regular file.
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(|_| unreadable())?;
    let meta = file.metadata().map_err(|_| unreadable())?;
    let unsafe_because = |reason: String| Error::DotEnvUnsafe {
        path: path.to_owned(),
        reason,
    };
    if !meta.is_file() {
        return Err(unsafe_because("it is not a regular file".into()));
    }
    let me = effective_uid();
    if meta.uid() != me && meta.uid() != 0 {
        return Err(unsafe_because(format!(
            "it belongs to another user (uid {}), not to you (uid {me}) or root",
            meta.uid()
        )));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_because(format!(
            "its group or other users may write it (mode {:o}); `chmod go-w` it",
            meta.mode() & 0o7777
        )));
    }
    let mut content = Vec::new();
    file.read_to_end(&mut content).map_err(|_| unreadable())?;
    Ok(content)
}

/// The effective user id of this process.
fn effective_uid() -> u32 {
    #[expect(
        unsafe_code,
        reason = "geteuid(2) through libc: no arguments, always succeeds"
    )]
    // SAFETY: geteuid takes nothing, touches no memory and cannot fail.
    unsafe {
        libc::geteuid()
    }
}

/// Parses every line of `content`, the `.env` file at `path`, without
/// applying any.
pub(crate) fn check_dotenv(path: &Path, content: &[u8]) -> Result<()> {
    let unreadable = |line| Error::DotEnv {
        path: path.to_owned(),
        line,
    };
    let items = dotenvy::from_read_iter(content);
    for item in items {
        match item {
            Ok(_) => {}
            Err(dotenvy::Error::LineParse(text, _)) => {
                let line = find_line(content, text.trim_end_matches(['\n', '\r']));
                return Err(unreadable(line));
            }
            Err(_) => return Err(unreadable(None)),
        }
    }
    Ok(())
}

/// The 1-based number of the line where `text` starts in `content`.
fn find_line(content: &[u8], text: &str) -> Option<usize> {
    let text = text.as_bytes();
    if text.is_empty() {
        return Some(content.split(|b| *b == b'\n').count());
    }
    let at = content.windows(text.len()).position(|w| w == text)?;
    Some(content[..at].iter().filter(|b| **b == b'\n').count() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_wins_and_difference_is_reported() {
        let vars = |k: &str| match k {
            "DATABASE_URL" => Some("postgres://a:pw1@h/one".to_owned()),
            "CONNECTION_URL" => Some("postgres://a:pw2@h/two".to_owned()),
            _ => None,
        };
        let config = Config::from_lookup(Environment::Development, vars).unwrap();
        assert_eq!(config.database_url.database().as_deref(), Some("one"));
        let warning = config.warning.unwrap();
        assert!(warning.contains("differ"), "{warning}");
        assert!(
            !warning.contains("pw1") && !warning.contains("pw2"),
            "{warning}"
        );
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
            let err = Config::new(url.clone())
                .with_settings_from(|k| (k == name).then(|| value.to_owned()))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(name) && err.contains(" to "),
                "{name}={value}: {err}"
            );
        }
        let ok = Config::new(url)
            .with_settings_from(|k| match k {
                "CRUDDUR_POOL_SIZE" => Some("1000".into()),
                "CRUDDUR_STATEMENT_TIMEOUT_MS" => Some("2147483647".into()),
                _ => None,
            })
            .unwrap();
        assert_eq!(
            (ok.pool_size, ok.statement_timeout_ms),
            (1000, 2_147_483_647)
        );
    }

    #[test]
    fn replica_urls_are_read_and_bad_ones_are_refused_without_their_password() {
        let url = DatabaseUrl::parse("postgres://h/d").unwrap();
        let with = |value: &str| {
            let value = value.to_owned();
            Config::new(url.clone())
                .with_settings_from(move |k| (k == "DATABASE_REPLICA_URLS").then(|| value.clone()))
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
        let settings = Settings::from_lookup(|k| match k {
            "DATABASE_URL" => Some("postgres://h/d".into()),
            "DATABASE_REPLICA_URLS" => Some("postgres://r1/d".into()),
            _ => None,
        });
        let config = settings.config(Environment::Development).unwrap();
        assert_eq!(config.replica_urls.len(), 1);
    }

    #[test]
    fn the_env_file_is_looked_for_up_to_the_project_root_only() {
        let base = std::env::temp_dir().join(format!(
            "cruddur-find-dotenv-{}",
            uuid::Uuid::new_v4().simple()
        ));
        let deep = base.join("project/a/b");
        std::fs::create_dir_all(&deep).unwrap();
        std::fs::write(base.join(".env"), "A=1\n").unwrap();
        assert_eq!(
            find_dotenv(&deep),
            None,
            "no .git: the current directory only"
        );
        std::fs::write(deep.join(".env"), "A=1\n").unwrap();
        assert_eq!(find_dotenv(&deep), Some(deep.join(".env")));
        std::fs::remove_file(deep.join(".env")).unwrap();
        std::fs::create_dir(base.join("project/.git")).unwrap();
        assert_eq!(find_dotenv(&deep), None, "not above the project root");
        std::fs::write(base.join("project/.env"), "A=1\n").unwrap();
        assert_eq!(find_dotenv(&deep), Some(base.join("project/.env")));
        // A directory named .env is no file.
        std::fs::create_dir(base.join("project/a/.env")).unwrap();
        assert_eq!(find_dotenv(&deep), Some(base.join("project/.env")));
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn a_env_fifo_is_refused_without_waiting_for_a_writer() {
        let base = std::env::temp_dir().join(format!(
            "cruddur-dotenv-fifo-{}",
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&base).unwrap();
        let fifo = base.join(".env");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        let err = read_dotenv(&fifo).unwrap_err();
        std::fs::remove_dir_all(&base).unwrap();
        assert!(
            matches!(err, Error::DotEnvUnsafe { .. }) && err.to_string().contains("regular file"),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_env_file_names_the_line_but_not_its_value() {
        let dir = std::env::temp_dir().join(format!("cruddur-dotenv-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(
            &path,
            "# comment\nA=1\n\nDATABASE_URL=postgres://u:hunter2@h/d x\nB=2\n",
        )
        .unwrap();
        let content = read_dotenv(&path).unwrap();
        let err = check_dotenv(&path, &content).unwrap_err().to_string();
        std::fs::remove_dir_all(&dir).ok();
        assert!(err.contains("line 4"), "{err}");
        assert!(!err.contains("hunter2"), "{err}");
    }
}
