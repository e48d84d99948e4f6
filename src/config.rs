//! Configuration, read once from the environment (and a `.env` file).
//!
//! | variable | meaning |
//! |---|---|
//! | `DATABASE_URL` | the database to use (the diesel convention); wins over `CONNECTION_URL` |
//! | `CONNECTION_URL` | the same, under the original project's name |
//! | `PROD_CONNECTION_URL` | the production database, used when production is asked for |
//! | `CRUDDUR_POOL_SIZE` | maximum connections in the pool (default [`DEFAULT_POOL_SIZE`]) |
//! | `CRUDDUR_STATEMENT_TIMEOUT_MS` | per-statement timeout in milliseconds (default [`DEFAULT_STATEMENT_TIMEOUT_MS`]) |
//! | `CRUDDUR_DEFAULT_URL` | the URL tried when none is configured (default [`DEFAULT_DATABASE_URL`]); see [`crate::local::resolve_config`] |
//!
//! The project-local cluster has variables of its own, listed in
//! [`crate::local`].
//!
//! A `.env` file in the current directory (or a parent) is read with
//! [`dotenvy`]; variables already set in the environment win over it.
//!
//! Connection URLs are held as [`DatabaseUrl`], whose `Display` and `Debug`
//! never show the password.

use std::fmt;
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
/// [`crate::local::resolve_config`] uses the project-local cluster.
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

/// A PostgreSQL connection string (URL or libpq `key=value` form) whose
/// password is never shown: `Display` and `Debug` print it as `***`.
///
/// Use [`DatabaseUrl::expose`] only to hand the string to libpq.
#[derive(Clone, PartialEq, Eq)]
pub struct DatabaseUrl(String);

impl DatabaseUrl {
    /// Checks the shape of `raw` (a `postgres://` or `postgresql://` URL, or
    /// a libpq `key=value` string) and wraps it.
    pub fn parse(raw: &str) -> Result<Self> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err(Error::InvalidUrl {
                url: String::new(),
                reason: "the connection URL is empty".into(),
            });
        }
        if is_key_value(raw) {
            return Ok(Self(raw.to_owned()));
        }
        let parsed = url::Url::parse(raw).map_err(|e| Error::InvalidUrl {
            url: redact(raw),
            reason: format!("{e} (expected postgres://user:password@host:port/database)"),
        })?;
        match parsed.scheme() {
            "postgres" | "postgresql" => Ok(Self(raw.to_owned())),
            other => Err(Error::InvalidUrl {
                url: redact(raw),
                reason: format!("unsupported scheme `{other}`; use postgres:// or postgresql://"),
            }),
        }
    }

    /// The full connection string, password included. Hand it to libpq
    /// only; never print it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The password in the URL, if any (percent-decoded).
    pub fn password(&self) -> Option<String> {
        if is_key_value(&self.0) {
            return kv_get(&self.0, "password");
        }
        let from_userinfo =
            userinfo_password_span(&self.0).map(|(start, end)| percent_decode(&self.0[start..end]));
        from_userinfo.or_else(|| {
            let url = url::Url::parse(&self.0).ok()?;
            url.query_pairs()
                .find(|(k, _)| k == "password")
                .map(|(_, v)| v.into_owned())
        })
    }

    /// The database name, if the URL names one.
    pub fn database(&self) -> Option<String> {
        if is_key_value(&self.0) {
            return kv_get(&self.0, "dbname");
        }
        let url = url::Url::parse(&self.0).ok()?;
        let from_query = url
            .query_pairs()
            .find(|(k, _)| k == "dbname")
            .map(|(_, v)| v.into_owned());
        from_query.or_else(|| {
            let path = url.path().trim_start_matches('/');
            (!path.is_empty()).then(|| percent_decode(path))
        })
    }

    /// The same server and credentials, with the database replaced by `database`.
    pub fn with_database(&self, database: &str) -> Self {
        if is_key_value(&self.0) {
            let mut parts: Vec<String> = split_kv(&self.0)
                .into_iter()
                .filter(|(k, _)| k != "dbname")
                .map(|(k, v)| format!("{k}={}", quote_kv(&v)))
                .collect();
            parts.push(format!("dbname={}", quote_kv(database)));
            return Self(parts.join(" "));
        }
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                let pairs: Vec<(String, String)> = url
                    .query_pairs()
                    .filter(|(k, _)| k != "dbname")
                    .map(|(k, v)| (k.into_owned(), v.into_owned()))
                    .collect();
                url.set_path(&format!("/{}", encode_path_segment(database)));
                if pairs.is_empty() {
                    url.set_query(None);
                } else {
                    url.query_pairs_mut().clear().extend_pairs(pairs);
                }
                Self(url.to_string())
            }
            Err(_) => self.clone(),
        }
    }

    /// The same URL with a libpq parameter set when it is not set already
    /// (`connect_timeout`, `application_name`, ...).
    pub fn with_default_param(&self, key: &str, value: &str) -> Self {
        if is_key_value(&self.0) {
            if kv_get(&self.0, key).is_some() {
                return self.clone();
            }
            return Self(format!("{} {key}={}", self.0, quote_kv(value)));
        }
        match url::Url::parse(&self.0) {
            Ok(mut url) => {
                if url.query_pairs().any(|(k, _)| k == key) {
                    return self.clone();
                }
                url.query_pairs_mut().append_pair(key, value);
                Self(url.to_string())
            }
            Err(_) => self.clone(),
        }
    }

    /// Removes every occurrence of this URL's password from `text`, for
    /// messages that come from libpq or the server.
    pub fn scrub(&self, text: &str) -> String {
        let mut secrets: Vec<String> = Vec::new();
        if let Some(pw) = self.password() {
            secrets.push(encode_path_segment(&pw));
            secrets.push(pw);
        }
        if let Some((start, end)) = userinfo_password_span(&self.0) {
            secrets.push(self.0[start..end].to_owned());
        }
        scrub_secrets(text, &secrets)
    }
}

/// Secrets shorter than this are not scrubbed: masking every `o` of a
/// one-letter password would garble all output and hide nothing.
pub const MIN_SCRUBBED_LEN: usize = 4;

/// `text` with each secret replaced by `***` wherever it stands as a whole
/// token (not inside a longer word, and not as a URL scheme before `://`),
/// longest secret first. This is a safety net for text that came from
/// elsewhere (libpq, the server); URLs are shown with [`redact`].
pub fn scrub_secrets(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&str> = secrets
        .iter()
        .map(String::as_str)
        .filter(|s| s.chars().count() >= MIN_SCRUBBED_LEN)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.dedup();
    secrets.into_iter().fold(text.to_owned(), |text, secret| {
        let word = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        let mut out = String::with_capacity(text.len());
        let mut rest = text.as_str();
        while let Some(i) = rest.find(secret) {
            out.push_str(&rest[..i]);
            let after_text = &rest[i + secret.len()..];
            let glued = word(secret.chars().next()) && word(out.chars().last())
                || word(secret.chars().last()) && word(after_text.chars().next());
            if glued || after_text.starts_with("://") {
                out.push_str(secret);
            } else {
                out.push_str("***");
            }
            rest = after_text;
        }
        out.push_str(rest);
        out
    })
}

impl FromStr for DatabaseUrl {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact(&self.0))
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", redact(&self.0))
    }
}

/// Replaces the password in a connection string (URL user-info, a
/// `password=` or `sslpassword=` query parameter, or such a key) with `***`.
///
/// Works on the text, not on a parse of it, so that a password holding
/// `#`, `/`, `?` or `@` (which a URL parser would take for structure) and
/// strings that do not parse at all are hidden too. Where the text is
/// ambiguous it hides more, never less.
pub fn redact(raw: &str) -> String {
    if is_key_value(raw) {
        return split_kv(raw)
            .into_iter()
            .map(|(k, v)| {
                if is_secret_key(&k) {
                    format!("{k}=***")
                } else {
                    format!("{k}={}", quote_kv(&v))
                }
            })
            .collect::<Vec<_>>()
            .join(" ");
    }
    let mut out = match userinfo_password_span(raw) {
        Some((start, end)) => format!("{}***{}", &raw[..start], &raw[end..]),
        None => raw.to_owned(),
    };
    let mut from = 0;
    while let Some(i) = out[from..].find("password=") {
        let value_start = from + i + "password=".len();
        let value_end = out[value_start..]
            .find(['&', '#'])
            .map_or(out.len(), |j| value_start + j);
        out.replace_range(value_start..value_end, "***");
        from = value_start + 3;
    }
    out
}

/// Connection parameters whose value is a secret: `password`, and
/// `sslpassword` (the passphrase of the client key).
fn is_secret_key(key: &str) -> bool {
    matches!(key, "password" | "sslpassword")
}

/// The byte range of the password in `scheme://user:password@host...`:
/// from the first `:` after the scheme to the last `@`, since a password
/// may itself contain `@`, `/`, `?` or `#`.
fn userinfo_password_span(raw: &str) -> Option<(usize, usize)> {
    let after_scheme = raw.find("://")? + 3;
    let at = after_scheme + raw[after_scheme..].rfind('@')?;
    let colon = after_scheme + raw[after_scheme..at].find(':')?;
    Some((colon + 1, at))
}

pub(crate) fn is_key_value(raw: &str) -> bool {
    !raw.contains("://") && raw.contains('=')
}

/// Splits a libpq `key=value key2='quoted value'` string.
pub(crate) fn split_kv(raw: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = raw.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut key = String::new();
        while let Some(&c) = chars.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            chars.next();
        }
        if key.is_empty() {
            break;
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        if chars.peek() == Some(&'=') {
            chars.next();
        }
        while chars.peek().is_some_and(|c| c.is_whitespace()) {
            chars.next();
        }
        let mut value = String::new();
        if chars.peek() == Some(&'\'') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => {
                        if let Some(n) = chars.next() {
                            value.push(n);
                        }
                    }
                    '\'' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c.is_whitespace() {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        out.push((key, value));
    }
    out
}

fn kv_get(raw: &str, key: &str) -> Option<String> {
    split_kv(raw)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

fn quote_kv(value: &str) -> String {
    if !value.is_empty() && !value.contains([' ', '\'', '\\']) {
        return value.to_owned();
    }
    format!("'{}'", value.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub(crate) fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}

fn encode_path_segment(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

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
        }
    }

    /// Reads `.env` and the environment (see the module docs).
    ///
    /// `environment` selects `PROD_CONNECTION_URL` ([`Environment::Production`])
    /// or `DATABASE_URL` / `CONNECTION_URL`. Returns [`Error::MissingUrl`]
    /// when the chosen variable is unset.
    pub fn from_env(environment: Environment) -> Result<Self> {
        load_dotenv();
        Self::from_lookup(environment, |k| std::env::var(k).ok())
    }

    /// Like [`Config::from_env`], with variables read from `lookup` (for
    /// callers that hold their own settings, and for tests).
    pub fn from_lookup(
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
    /// (`CRUDDUR_POOL_SIZE`, `CRUDDUR_STATEMENT_TIMEOUT_MS`) read from
    /// `lookup`, for callers that chose the URL themselves.
    pub fn with_settings_from(mut self, lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let non_empty = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        if let Some(v) = non_empty("CRUDDUR_POOL_SIZE") {
            self.pool_size = parse_setting("CRUDDUR_POOL_SIZE", &v)?;
            if self.pool_size == 0 {
                return Err(Error::InvalidSetting {
                    name: "CRUDDUR_POOL_SIZE",
                    value: v,
                    reason: "must be at least 1".into(),
                });
            }
        }
        if let Some(v) = non_empty("CRUDDUR_STATEMENT_TIMEOUT_MS") {
            self.statement_timeout_ms = parse_setting("CRUDDUR_STATEMENT_TIMEOUT_MS", &v)?;
        }
        Ok(self)
    }
}

fn parse_setting<T: FromStr>(name: &'static str, value: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    value
        .trim()
        .parse()
        .map_err(|e: T::Err| Error::InvalidSetting {
            name,
            value: value.to_owned(),
            reason: e.to_string(),
        })
}

/// Loads `.env` once; a missing file is normal, a malformed one is ignored
/// with a log line (the environment still applies).
pub fn load_dotenv() {
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        tracing::warn!("ignoring .env: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacts_password_in_every_form() {
        let cases = [
            "postgres://alice:s3cret@db.example.com:5432/cruddur",
            "postgresql://alice:s3cret@db.example.com/cruddur?sslmode=require",
            "postgres://alice@db.example.com/cruddur?password=s3cret",
            "host=db.example.com user=alice password=s3cret dbname=cruddur",
            "host=db password='s3cret with space' dbname=x",
            "postgres://alice@db.example.com/cruddur?sslpassword=s3cret",
            "host=db sslpassword=s3cret dbname=x",
            "postgres://alice:s3cret@[::1/cruddur",
            "mysql://alice:s3cret@host/db",
        ];
        for raw in cases {
            let shown = redact(raw);
            assert!(!shown.contains("s3cret"), "{raw} -> {shown}");
        }
    }

    #[test]
    fn database_name_and_replacement() {
        let url = DatabaseUrl::parse("postgres://u:p@h:5433/cruddur?sslmode=require").unwrap();
        assert_eq!(url.database().as_deref(), Some("cruddur"));
        let other = url.with_database("postgres");
        assert_eq!(
            other.expose(),
            "postgres://u:p@h:5433/postgres?sslmode=require"
        );
        let kv = DatabaseUrl::parse("host=h dbname=cruddur password=p").unwrap();
        assert_eq!(
            kv.with_database("postgres").database().as_deref(),
            Some("postgres")
        );
    }

    #[test]
    fn scrubbing_hides_whole_tokens_without_garbling_words() {
        let secrets = ["postgres".to_owned(), "o".to_owned(), "s3cr3t!".to_owned()];
        let cases = [
            (
                "postgres://postgres:s3cr3t!@localhost/postgresdb",
                "postgres://***:***@localhost/postgresdb",
            ),
            (
                "cannot connect: Connection refused",
                "cannot connect: Connection refused",
            ),
            ("the password is postgres.", "the password is ***."),
            ("key=s3cr3t! other", "key=*** other"),
        ];
        for (text, expected) in cases {
            assert_eq!(scrub_secrets(text, &secrets), expected, "{text}");
        }
    }

    #[test]
    fn rejects_non_postgres_urls() {
        for raw in ["", "   ", "http://x/y", "not a url"] {
            assert!(
                DatabaseUrl::parse(raw).is_err(),
                "{raw:?} should be rejected"
            );
        }
    }

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
}
