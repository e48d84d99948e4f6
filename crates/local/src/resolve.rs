//! The last step of "which database?": the library's
//! [`cruddur_db::resolve()`] decides (a command-line URL, production, the
//! configured variables, the default URL where a server answers); when
//! nothing is configured and nothing answers, the project's local cluster
//! is used. The example, the CLI and the service all ask here.

use cruddur_db::{DatabaseUrl, Environment, Resolved, Settings, UrlSource};

use crate::error::{Error, Result};
use crate::{DEFAULT_DATABASE, LocalCluster, StartOutcome};

/// Whether [`resolve`] may start the project's cluster when it falls back
/// to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fallback {
    /// Start it when it is not running (`prepare`, `setup`, the example,
    /// the service).
    Start,
    /// Use it only when it is already running (every other command, so
    /// that none starts a server as a side effect).
    IfRunning,
}

/// The database to use: what [`cruddur_db::resolve()`] says for
/// `explicit`, `environment` and `settings`; else, when nothing is
/// configured and nothing answers at the default URL, the project's
/// [`LocalCluster`] (see [`Fallback`]), with the default URL's database
/// name ([`UrlSource::LocalCluster`], with a notice to show).
///
/// A configured URL is never replaced: if it fails, the caller sees that
/// error. Pool settings come from `settings` in every case.
pub fn resolve(
    explicit: Option<DatabaseUrl>,
    environment: Environment,
    settings: &Settings,
    fallback: Fallback,
) -> Result<Resolved> {
    resolve_with(explicit, environment, settings, fallback, || {
        LocalCluster::project(settings)
    })
}

/// [`resolve`] with the local cluster given by `cluster` (for tests).
pub fn resolve_with(
    explicit: Option<DatabaseUrl>,
    environment: Environment,
    settings: &Settings,
    fallback: Fallback,
    cluster: impl FnOnce() -> Result<LocalCluster>,
) -> Result<Resolved> {
    let (default, database, unreachable) =
        match cruddur_db::resolve(explicit, environment, settings) {
            Err(cruddur_db::Error::NothingAnswers {
                default,
                database,
                cause,
            }) => (default, database, *cause),
            other => return Ok(other?),
        };
    let cluster = cluster()?;
    // After a failover the primary is a replica's server, and this
    // cluster's own one its standby.
    let started = if cluster.primary_member().pid().is_some() {
        false
    } else if fallback == Fallback::Start {
        matches!(cluster.start()?, StartOutcome::Started { .. })
    } else {
        return Err(Error::NothingAnswers {
            cause: unreachable,
            dir: cluster.dir().to_owned(),
        });
    };
    let database = database.as_deref().unwrap_or(DEFAULT_DATABASE);
    let url = if cluster.primary_number() == 0 {
        cluster.url_for(database)?
    } else {
        cluster.endpoint_url_for(database)?
    };
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
