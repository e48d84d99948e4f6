//! Which database to use: the one named on the command line, else the
//! configured one, else the default URL when a server answers there, else
//! the project's local cluster. The example and the CLI both ask here.

use cruddur_db::config::DEFAULT_DATABASE_URL;
use cruddur_db::{Config, DatabaseUrl, Environment, Settings};

use crate::error::{Error, Result};
use crate::{DEFAULT_DATABASE, LocalCluster, PROBE_TIMEOUT_SECS, StartOutcome};

/// Where [`resolve`] found the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// Given by the caller (a command-line flag).
    Explicit,
    /// A variable of the environment or `.env`: `DATABASE_URL`, else
    /// `CONNECTION_URL`.
    Environment(&'static str),
    /// The default URL, where a server answered.
    Default,
    /// The project's [`LocalCluster`], because nothing answered at the
    /// default URL.
    LocalCluster {
        /// It was started by this call (else it was already running).
        started: bool,
    },
}

/// The result of [`resolve`].
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration to use.
    pub config: Config,
    /// Where its URL came from.
    pub source: UrlSource,
    /// One line for the user when the local cluster is used (show it on
    /// stderr); `None` otherwise.
    pub notice: Option<String>,
}

impl Resolved {
    /// One line saying which database this is and why (the URL redacted),
    /// for stderr.
    pub fn describe(&self) -> String {
        let url = &self.config.database_url;
        match (&self.notice, self.source) {
            (Some(notice), _) => notice.clone(),
            (None, UrlSource::Explicit) => format!("using {url} (from the command line)"),
            (None, UrlSource::Environment(var)) => format!("using {url} (from {var})"),
            (None, UrlSource::Default) => format!(
                "using {url} (the default URL: neither DATABASE_URL nor CONNECTION_URL is set)"
            ),
            (None, UrlSource::LocalCluster { .. }) => format!("using {url} (the local cluster)"),
        }
    }
}

/// Whether [`resolve`] may start the project's cluster when it falls back
/// to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Start it when it is not running (`prepare`, `setup`, the example).
    Start,
    /// Use it only when it is already running (every other command, so
    /// that none starts a server as a side effect).
    IfRunning,
}

/// The configuration to use:
///
/// 1. `explicit` (a command-line URL), when given;
/// 2. else `DATABASE_URL` / `CONNECTION_URL` of `settings`;
/// 3. else the default URL (`CRUDDUR_DEFAULT_URL`, else
///    [`DEFAULT_DATABASE_URL`]) when a server answers there within
///    [`PROBE_TIMEOUT_SECS`] (even if it then refuses us: a server that
///    answers is the one meant, and its error is worth seeing);
/// 4. else the project's [`LocalCluster`] (see [`Fallback`]), with the
///    default URL's database name.
///
/// A configured URL (1, 2) is never replaced: if it fails, the caller sees
/// that error. Pool settings come from `settings` in every case.
pub fn resolve(
    explicit: Option<DatabaseUrl>,
    settings: &Settings,
    fallback: Fallback,
) -> Result<Resolved> {
    resolve_with(explicit, settings, fallback, || {
        LocalCluster::project(settings)
    })
}

/// [`resolve`] with the local cluster given by `cluster` (for tests).
pub fn resolve_with(
    explicit: Option<DatabaseUrl>,
    settings: &Settings,
    fallback: Fallback,
    cluster: impl FnOnce() -> Result<LocalCluster>,
) -> Result<Resolved> {
    if let Some(url) = explicit {
        return Ok(Resolved {
            config: settings.config_for(url)?,
            source: UrlSource::Explicit,
            notice: None,
        });
    }
    match settings.config(Environment::Development) {
        Ok(config) => {
            let var = if settings.get("DATABASE_URL").is_some() {
                "DATABASE_URL"
            } else {
                "CONNECTION_URL"
            };
            return Ok(Resolved {
                config,
                source: UrlSource::Environment(var),
                notice: None,
            });
        }
        Err(cruddur_db::Error::MissingUrl { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let default = DatabaseUrl::parse(
        settings
            .get("CRUDDUR_DEFAULT_URL")
            .unwrap_or(DEFAULT_DATABASE_URL),
    )?;
    let probe = default.with_default_param("connect_timeout", &PROBE_TIMEOUT_SECS.to_string());
    let unreachable = match cruddur_db::establish(&probe) {
        Err(e @ cruddur_db::Error::Unreachable { .. }) => e,
        // Connected, or the server answered with a refusal or "no such
        // database": it is there.
        _ => {
            return Ok(Resolved {
                config: settings.config_for(default)?,
                source: UrlSource::Default,
                notice: None,
            });
        }
    };
    let cluster = cluster()?;
    let started = if cluster.pid().is_some() {
        false
    } else if fallback == Fallback::Start {
        matches!(cluster.start()?, StartOutcome::Started { .. })
    } else {
        return Err(Error::NothingAnswers {
            cause: unreachable,
            dir: cluster.dir().to_owned(),
        });
    };
    let database = default
        .database()
        .unwrap_or_else(|| DEFAULT_DATABASE.to_owned());
    let url = cluster.url_for(&database)?;
    let notice = format!(
        "no database configured and nothing answers at {default}: using the local cluster in {} ({}), {url}",
        cluster.dir().display(),
        if started {
            "started"
        } else {
            "already running"
        },
    );
    Ok(Resolved {
        config: settings.config_for(url)?,
        source: UrlSource::LocalCluster { started },
        notice: Some(notice),
    })
}
