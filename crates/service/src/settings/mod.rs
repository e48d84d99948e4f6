//! The service's own settings, read from the project's [`Settings`] (the
//! environment and `.env`, read once) and the command line.

mod auth;

use std::net::SocketAddr;

use cruddur_db::Settings;

use crate::shed::Shedding;
use crate::transport::Transport;
use crate::variables::{
    BACKEND_URL, CRUDDUR_ASYNC_PRIMARY, CRUDDUR_BIND, CRUDDUR_DEV_ALLOW_NETWORK,
    CRUDDUR_HEADER_READ_TIMEOUT_MS, CRUDDUR_IDLE_TIMEOUT_MS, CRUDDUR_LOG_FORMAT,
    CRUDDUR_MAX_CONNECTIONS, CRUDDUR_METRICS, CRUDDUR_SHED_READS_AT, CRUDDUR_SHED_WRITES_AT,
    CRUDDUR_SHUTDOWN_DEADLINE_MS, FRONTEND_URL,
};

pub use auth::{AuthSettings, DEFAULT_DEV_HANDLE, JwksSource};

/// Where the service listens unless told otherwise: loopback, on the
/// original backend's port.
pub const DEFAULT_BIND: &str = "127.0.0.1:4567";

/// Everything the service needs besides the database.
#[derive(Debug, Clone)]
pub struct ServiceSettings {
    /// The address to listen on (`--bind`, else `CRUDDUR_BIND`, else
    /// [`DEFAULT_BIND`]).
    pub bind: SocketAddr,
    /// Origins allowed by CORS: `FRONTEND_URL` and `BACKEND_URL`, as set.
    pub allowed_origins: Vec<String>,
    /// Who posts.
    pub auth: AuthSettings,
    /// The transport's timeouts, connection cap and shutdown deadline.
    pub transport: Transport,
    /// When requests are refused because too many database calls wait.
    pub shedding: Shedding,
    /// Whether `GET /metrics` and the request counters are on
    /// (`CRUDDUR_METRICS`, default on).
    pub metrics: bool,
    /// Whether the primary's feed reads may use async connections
    /// (`CRUDDUR_ASYNC_PRIMARY`, default on; the URL may still decline them).
    pub async_primary: bool,
}

/// How log lines are written (`CRUDDUR_LOG_FORMAT`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// `text`, the default: tracing's human-readable lines.
    #[default]
    Text,
    /// `json`: one JSON object per line (`timestamp`, `level`, `fields`,
    /// `target`, and the request's span with its fields), for a log
    /// collector.
    Json,
}

/// The log format `CRUDDUR_LOG_FORMAT` asks for (default
/// [`LogFormat::Text`]). Read apart from [`ServiceSettings`], since the
/// logs start before everything else.
pub fn log_format(settings: &Settings) -> Result<LogFormat, SettingsError> {
    match settings.get(&CRUDDUR_LOG_FORMAT).map(str::trim) {
        None | Some("text") => Ok(LogFormat::Text),
        Some("json") => Ok(LogFormat::Json),
        Some(other) => Err(SettingsError::Invalid(format!(
            "invalid CRUDDUR_LOG_FORMAT `{other}`: expected text or json"
        ))),
    }
}

/// The longest timeout or deadline accepted, in milliseconds: one day.
pub const MAX_TIMEOUT_MS: u64 = 86_400_000;

/// The largest `CRUDDUR_MAX_CONNECTIONS` accepted: a million (each
/// connection is a file descriptor; the process limit binds first).
pub const MAX_CONNECTIONS: usize = 1_000_000;

/// A setting that cannot be used; the message names the variable.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A value the library's readers refused (a number out of its range,
    /// a flag that is neither 1 nor 0).
    #[error(transparent)]
    Value(#[from] cruddur_db::Error),
    /// A value of the service's own formats, or settings that do not go
    /// together.
    #[error("{0}")]
    Invalid(String),
}

impl ServiceSettings {
    /// Reads the service's settings from `settings`, with `bind` from the
    /// command line winning over `CRUDDUR_BIND`.
    ///
    /// Authentication is by JWT when `CRUDDUR_JWKS` or
    /// `AWS_COGNITO_USER_POOL_ID` is set; the issuer is `CRUDDUR_JWT_ISSUER`
    /// or the user pool's, and the client id `AWS_COGNITO_USER_POOL_CLIENT_ID`
    /// (required). Otherwise it is the development mode, posting as
    /// `CRUDDUR_DEV_HANDLE` (default [`DEFAULT_DEV_HANDLE`]); setting both a
    /// JWKS and a development handle is an error, never a choice.
    pub fn from_settings(
        settings: &Settings,
        bind: Option<SocketAddr>,
    ) -> Result<Self, SettingsError> {
        let bind = match bind {
            Some(bind) => bind,
            None => parse_bind(settings.get(&CRUDDUR_BIND).unwrap_or(DEFAULT_BIND))?,
        };
        let allowed_origins = [FRONTEND_URL, BACKEND_URL]
            .into_iter()
            .filter_map(|var| settings.get(&var).map(|v| (var.name(), v)))
            .map(|(name, value)| origin(name, value))
            .collect::<Result<_, _>>()?;
        let auth = auth::auth_settings(settings)?;
        let allow_network = settings.flag(&CRUDDUR_DEV_ALLOW_NETWORK)?;
        if matches!(auth, AuthSettings::Development { .. })
            && !bind.ip().to_canonical().is_loopback()
            && !allow_network
        {
            return Err(SettingsError::Invalid(format!(
                "refusing to listen on {bind} in the development mode, where every post is \
                 accepted unverified: bind a loopback address (127.0.0.1, ::1), configure \
                 token verification (CRUDDUR_JWKS or AWS_COGNITO_USER_POOL_ID), or set \
                 CRUDDUR_DEV_ALLOW_NETWORK=1 to expose it anyway"
            )));
        }
        let metrics = !settings.is_set(&CRUDDUR_METRICS) || settings.flag(&CRUDDUR_METRICS)?;
        let async_primary =
            !settings.is_set(&CRUDDUR_ASYNC_PRIMARY) || settings.flag(&CRUDDUR_ASYNC_PRIMARY)?;
        Ok(Self {
            bind,
            allowed_origins,
            auth,
            transport: transport_settings(settings)?,
            shedding: shedding_settings(settings)?,
            metrics,
            async_primary,
        })
    }
}

/// The largest shedding threshold accepted: a million waiting calls.
pub const MAX_SHED_AT: usize = 1_000_000;

/// The shedding thresholds, each from its variable or its default; writes
/// are never refused before reads.
fn shedding_settings(settings: &Settings) -> Result<Shedding, SettingsError> {
    let defaults = Shedding::default();
    let reads_at = settings
        .number(&CRUDDUR_SHED_READS_AT, 1..=MAX_SHED_AT)?
        .unwrap_or(defaults.reads_at);
    let writes_at = match settings.number(&CRUDDUR_SHED_WRITES_AT, 1..=MAX_SHED_AT)? {
        Some(writes_at) if writes_at < reads_at => {
            return Err(SettingsError::Invalid(format!(
                "CRUDDUR_SHED_WRITES_AT ({writes_at}) is below CRUDDUR_SHED_READS_AT ({reads_at}): \
                 posts would be refused before reads"
            )));
        }
        Some(writes_at) => writes_at,
        // Never below the reads' threshold, which may be set above it.
        None => defaults.writes_at.max(reads_at),
    };
    Ok(Shedding {
        reads_at,
        writes_at,
    })
}

/// The transport's limits, each from its variable or its default.
fn transport_settings(settings: &Settings) -> Result<Transport, SettingsError> {
    let defaults = Transport::default();
    Ok(Transport {
        header_read_timeout: settings
            .millis(&CRUDDUR_HEADER_READ_TIMEOUT_MS, 1..=MAX_TIMEOUT_MS)?
            .unwrap_or(defaults.header_read_timeout),
        idle_timeout: settings
            .millis(&CRUDDUR_IDLE_TIMEOUT_MS, 1..=MAX_TIMEOUT_MS)?
            .unwrap_or(defaults.idle_timeout),
        max_connections: settings
            .number(&CRUDDUR_MAX_CONNECTIONS, 1..=MAX_CONNECTIONS)?
            .unwrap_or(defaults.max_connections),
        shutdown_deadline: settings
            .millis(&CRUDDUR_SHUTDOWN_DEADLINE_MS, 0..=MAX_TIMEOUT_MS)?
            .unwrap_or(defaults.shutdown_deadline),
    })
}

fn parse_bind(value: &str) -> Result<SocketAddr, SettingsError> {
    resolve_bind(value)
        .map_err(|e| SettingsError::Invalid(format!("invalid CRUDDUR_BIND `{value}`: {e}")))
}

/// The address to listen on for `value`: an address and port
/// (`127.0.0.1:4567`, `[::1]:4567`) or a host name and port
/// (`localhost:4567`, resolved now; its first address is used).
pub fn resolve_bind(value: &str) -> Result<SocketAddr, SettingsError> {
    use std::net::ToSocketAddrs;
    let value = value.trim();
    if let Ok(address) = value.parse() {
        return Ok(address);
    }
    let expected = || {
        SettingsError::Invalid(format!(
            "expected an address or host name and a port, such as {DEFAULT_BIND} or localhost:4567"
        ))
    };
    if value
        .rsplit_once(':')
        .is_none_or(|(host, _)| host.is_empty())
    {
        return Err(expected());
    }
    value
        .to_socket_addrs()
        .map_err(|_| expected())?
        .next()
        .ok_or_else(expected)
}

/// An origin as browsers send it: scheme, host and port, without a path or
/// a trailing slash (`https://example.com/` names the origin
/// `https://example.com`).
fn origin(name: &str, value: &str) -> Result<String, SettingsError> {
    let trimmed = value.trim().trim_end_matches('/');
    let valid = (trimmed.starts_with("http://") || trimmed.starts_with("https://"))
        && !trimmed.split_once("://").is_some_and(|(_, rest)| {
            rest.is_empty() || rest.contains('/') || rest.contains(char::is_whitespace)
        });
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(SettingsError::Invalid(format!(
            "invalid {name} `{value}`: expected an origin such as http://localhost:3000"
        )))
    }
}

#[cfg(test)]
mod tests;
