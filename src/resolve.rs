//! Which database is used: decided here, once, for the CLI, the service,
//! the example and any application.
//!
//! 1. the URL the caller was given (a command-line flag), when there is one;
//! 2. with [`Environment::Production`], `PROD_CONNECTION_URL`;
//! 3. else `DATABASE_URL`, else `CONNECTION_URL` (a difference between the
//!    two is reported in [`Config::warning`]);
//! 4. else the default URL (`CRUDDUR_DEFAULT_URL`, else
//!    [`DEFAULT_DATABASE_URL`]) when a server answers there within
//!    [`PROBE_TIMEOUT_SECS`] (even if it then refuses us: a server that
//!    answers is the one meant, and its error is worth seeing);
//! 5. else [`Error::NothingAnswers`], on which the `cruddur-db-local` crate
//!    adds its last step: the project's own cluster.
//!
//! A configured URL (1 to 3) is never replaced: if it fails, the caller
//! sees that error. Production is never guessed: it is asked for, and it
//! never falls back to a default. The pool settings come from the
//! [`Settings`] in every case.

use crate::config::{Config, DEFAULT_DATABASE_URL, DatabaseUrl, Environment};
use crate::error::{Error, Result};
use crate::settings::{Settings, Variable};
use crate::variables::{CONNECTION_URL, CRUDDUR_DEFAULT_URL, DATABASE_URL, PROD_CONNECTION_URL};

/// How long [`resolve`] waits for the server at the default URL to
/// answer: 2 seconds.
pub const PROBE_TIMEOUT_SECS: u32 = 2;

/// Where the URL of a [`Resolved`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UrlSource {
    /// Given by the caller (a command-line flag).
    Explicit,
    /// A variable of the environment or `.env`: `DATABASE_URL`, else
    /// `CONNECTION_URL`.
    Environment(&'static Variable),
    /// `PROD_CONNECTION_URL`, because production was asked for.
    Production,
    /// The default URL, where a server answered.
    Default,
    /// The project's local cluster (crate `cruddur-db-local`), because
    /// nothing answered at the default URL.
    LocalCluster {
        /// It was started for this (else it was already running).
        started: bool,
    },
}

impl UrlSource {
    /// Whether no database was configured, so that the one used is the
    /// zero-setup default (the default URL or the local cluster), which
    /// its users may create and migrate on first use.
    pub fn is_zero_setup(self) -> bool {
        matches!(self, UrlSource::Default | UrlSource::LocalCluster { .. })
    }
}

/// The database to use, and why.
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
            (None, UrlSource::Production) => format!("using {url} (from PROD_CONNECTION_URL)"),
            (None, UrlSource::Default) => format!(
                "using {url} (the default URL: neither DATABASE_URL nor CONNECTION_URL is set)"
            ),
            (None, UrlSource::LocalCluster { .. }) => format!("using {url} (the local cluster)"),
        }
    }
}

/// The database to use, as the [module docs](self) say: `explicit` (a
/// command-line URL), else for `environment` the variables of `settings`,
/// else (for development only) the default URL where a server answers.
/// Nothing configured and nothing answering is [`Error::NothingAnswers`];
/// production asked for without `explicit` or `PROD_CONNECTION_URL` is
/// [`Error::MissingUrl`].
pub fn resolve(
    explicit: Option<DatabaseUrl>,
    environment: Environment,
    settings: &Settings,
) -> Result<Resolved> {
    let found = |config, source| Resolved {
        config,
        source,
        notice: None,
    };
    if let Some(url) = explicit {
        let mut config = settings.config_for(url)?;
        config.environment = environment;
        return Ok(found(config, UrlSource::Explicit));
    }
    if environment == Environment::Production {
        return Ok(found(
            settings.config(Environment::Production)?,
            UrlSource::Production,
        ));
    }
    match settings.config(Environment::Development) {
        Ok(config) => {
            let var = if settings.is_set(&DATABASE_URL) {
                &DATABASE_URL
            } else {
                &CONNECTION_URL
            };
            return Ok(found(config, UrlSource::Environment(var)));
        }
        Err(Error::MissingUrl { .. }) => {}
        Err(e) => return Err(e),
    }
    let default = DatabaseUrl::parse(
        settings
            .get(&CRUDDUR_DEFAULT_URL)
            .unwrap_or(DEFAULT_DATABASE_URL),
    )?;
    let probe = default.with_default_param("connect_timeout", &PROBE_TIMEOUT_SECS.to_string());
    match crate::pool::establish(&probe) {
        Err(cause @ Error::Unreachable { .. }) => Err(Error::NothingAnswers {
            default: default.to_string(),
            database: default.database(),
            cause: Box::new(cause),
        }),
        // Connected, or the server answered with a refusal or "no such
        // database": it is there.
        _ => Ok(found(settings.config_for(default)?, UrlSource::Default)),
    }
}

/// `PROD_CONNECTION_URL`, when set, for the checks that a target is not the
/// production database. One that does not parse is an error: ignoring it
/// would switch those checks off.
pub fn production_url(settings: &Settings) -> Result<Option<DatabaseUrl>> {
    settings
        .get(&PROD_CONNECTION_URL)
        .map(DatabaseUrl::parse)
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_production_and_environment_urls_are_taken_without_a_probe() {
        // Port 1: nothing listens, so a probe would fail; none is made.
        let explicit = DatabaseUrl::parse("postgres://localhost:1/explicit").unwrap();
        let settings = Settings::from_pairs([
            ("CONNECTION_URL", "postgres://localhost:1/from_env"),
            ("PROD_CONNECTION_URL", "postgres://localhost:1/prod"),
        ]);
        let r = resolve(Some(explicit.clone()), Environment::Development, &settings).unwrap();
        assert_eq!(r.source, UrlSource::Explicit);
        assert_eq!(
            r.config.database_url.database().as_deref(),
            Some("explicit")
        );
        let r = resolve(Some(explicit), Environment::Production, &settings).unwrap();
        assert_eq!(
            (r.source, r.config.environment),
            (UrlSource::Explicit, Environment::Production)
        );
        let r = resolve(None, Environment::Production, &settings).unwrap();
        assert_eq!(r.source, UrlSource::Production);
        assert_eq!(r.config.database_url.database().as_deref(), Some("prod"));
        let r = resolve(None, Environment::Development, &settings).unwrap();
        assert_eq!(r.source, UrlSource::Environment(&CONNECTION_URL));
        assert_eq!(
            r.describe(),
            format!("using {} (from CONNECTION_URL)", r.config.database_url)
        );
        assert!(r.notice.is_none());
    }

    #[test]
    fn production_never_falls_back() {
        let err = resolve(None, Environment::Production, &Settings::default()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::MissingUrl {
                    variables: "PROD_CONNECTION_URL"
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn nothing_configured_and_nothing_answering_says_so() {
        let settings = Settings::from_pairs([(
            "CRUDDUR_DEFAULT_URL",
            "postgres://u:hunter2@localhost:1/feed",
        )]);
        let err = resolve(None, Environment::Development, &settings).unwrap_err();
        let Error::NothingAnswers { database, .. } = &err else {
            panic!("{err}");
        };
        assert_eq!(database.as_deref(), Some("feed"));
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn a_production_url_that_does_not_parse_is_an_error() {
        assert!(production_url(&Settings::default()).unwrap().is_none());
        let bad = Settings::from_pairs([("PROD_CONNECTION_URL", "host=h port")]);
        assert!(production_url(&bad).is_err());
    }
}
