//! Which database a command works on, whether it is production, and the
//! checks a destructive command passes first.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use diesel::PgConnection;

use crate::cli::GlobalArgs;
use crate::cli::output;
use crate::config::{Config, DatabaseUrl, Environment};
use crate::environment::{EnvironmentMark, same_database};

/// The database a command works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its connection string (redacted when shown).
    pub url: DatabaseUrl,
    /// Why it counts as production before any mark is read (`--prod`, or
    /// the same database as `PROD_CONNECTION_URL`); `None` otherwise.
    pub production_reason: Option<String>,
    /// Where the URL came from (`--database-url`, `DATABASE_URL`, …).
    pub source: &'static str,
}

impl Target {
    /// Resolves the target from the flags and the environment: the URL of
    /// `--database-url` wins; else `PROD_CONNECTION_URL` with `--prod`;
    /// else `DATABASE_URL`, `CONNECTION_URL`, and finally
    /// the default URL or, when nothing answers there, a running local
    /// cluster (see [`crate::local::resolve_default`]). A production target is
    /// labelled on stderr.
    pub fn resolve(global: &GlobalArgs) -> anyhow::Result<Self> {
        Self::resolve_with(global, false)
    }

    /// Like [`Target::resolve`], but when no URL is configured and nothing
    /// answers at the default URL, starts the project's local cluster
    /// (for `prepare` and `setup`; other commands only reuse a running one).
    pub fn resolve_starting_local(global: &GlobalArgs) -> anyhow::Result<Self> {
        Self::resolve_with(global, true)
    }

    fn resolve_with(global: &GlobalArgs, may_start_local: bool) -> anyhow::Result<Self> {
        let environment = if global.prod {
            Environment::Production
        } else {
            Environment::Development
        };
        let (url, source) = match &global.database_url {
            Some(raw) => (
                DatabaseUrl::parse(raw).context("reading --database-url")?,
                "--database-url",
            ),
            None => match Config::from_env(environment) {
                Ok(config) => {
                    if let Some(warning) = &config.warning {
                        output::warning(warning);
                    }
                    let source = match environment {
                        Environment::Production => "PROD_CONNECTION_URL",
                        Environment::Development if env_set("DATABASE_URL") => "DATABASE_URL",
                        Environment::Development => "CONNECTION_URL",
                    };
                    (config.database_url, source)
                }
                Err(crate::Error::MissingUrl { .. }) if !global.prod => {
                    let resolved = crate::local::resolve_default(may_start_local)
                        .context("choosing the database")?;
                    match &resolved.notice {
                        Some(notice) => output::note(&format!("note: {notice}")),
                        None => output::note(&format!(
                            "note: neither DATABASE_URL nor CONNECTION_URL is set; using {}",
                            resolved.config.database_url
                        )),
                    }
                    let source = match resolved.source {
                        crate::local::UrlSource::LocalCluster { .. } => "the local cluster",
                        _ => "the default",
                    };
                    (resolved.config.database_url, source)
                }
                Err(e) => return Err(e).context("choosing the database"),
            },
        };
        let production_reason = if global.prod {
            Some("--prod targets the production database".to_owned())
        } else {
            prod_url()
                .filter(|prod| same_database(prod, &url))
                .map(|_| "it is the database of PROD_CONNECTION_URL".to_owned())
        };
        let target = Self {
            url,
            production_reason,
            source,
        };
        if target.production_reason.is_some() {
            output::environment_label(true, &target.url.to_string());
        }
        tracing::debug!(url = %target.url, source, "target resolved");
        Ok(target)
    }

    /// The database name in the URL.
    pub fn database(&self) -> anyhow::Result<String> {
        self.url
            .database()
            .with_context(|| format!("the URL {} names no database", self.url))
    }

    /// One connection to the target (see [`crate::establish`]).
    pub fn connect(&self) -> anyhow::Result<PgConnection> {
        let config = Config::new(self.url.clone())
            .with_settings_from(|k| std::env::var(k).ok())
            .context("reading the connection settings")?;
        Ok(crate::pool::establish_config(&config)?)
    }

    /// Whether `--prod` was given (the flag that writes the production mark).
    pub fn marks_production(global: &GlobalArgs) -> bool {
        global.prod
    }

    /// Refuses `action` (e.g. "drop") on a production database unless
    /// `--allow-production` was given. Production means: `--prod`, the
    /// database of `PROD_CONNECTION_URL`, or a database whose `mark` says so.
    pub fn guard_destructive(
        &self,
        global: &GlobalArgs,
        action: &str,
        mark: Option<&EnvironmentMark>,
    ) -> anyhow::Result<()> {
        let marked = mark.filter(|m| m.is_production()).map(|m| {
            format!(
                "it is marked as production (since {}, by {})",
                m.marked_at.format("%Y-%m-%d %H:%M:%S UTC"),
                m.marked_by
            )
        });
        if marked.is_some() && self.production_reason.is_none() {
            output::environment_label(true, &self.url.to_string());
        }
        let reason = match (&self.production_reason, marked) {
            (Some(flag), Some(mark)) => format!("{flag}, and {mark}"),
            (Some(flag), None) => flag.clone(),
            (None, Some(mark)) => mark,
            (None, None) => return Ok(()),
        };
        let database = self.database()?;
        if !global.allow_production {
            bail!(
                "refusing to {action} `{database}`: {reason}; pass --allow-production to do it anyway"
            );
        }
        output::warning(&format!(
            "going ahead to {action} `{database}` because of --allow-production, although {reason}"
        ));
        Ok(())
    }
}

fn env_set(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| !v.trim().is_empty())
}

fn prod_url() -> Option<DatabaseUrl> {
    let raw = std::env::var("PROD_CONNECTION_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())?;
    match DatabaseUrl::parse(&raw) {
        Ok(url) => Some(url),
        Err(e) => {
            // Ignoring it silently would also switch off the check that the
            // target is not the production database.
            output::warning(&format!(
                "ignoring PROD_CONNECTION_URL, so a target is not recognised as production by its URL: {e}"
            ));
            None
        }
    }
}

/// Asks `question` on a terminal and returns whether the answer was yes.
/// With `-y` it does not ask; when stdin is not a terminal and `-y` was not
/// given it refuses, saying to pass `-y`, rather than guess.
pub fn confirm(global: &GlobalArgs, question: &str, refusal: &str) -> anyhow::Result<()> {
    if global.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{refusal} without confirmation: stdin is not a terminal; pass -y/--yes to confirm");
    }
    anstream::eprint!("{}{question}{:#} [y/N] ", output::WARNING, output::WARNING);
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .context("reading the answer")?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        bail!("{refusal}: not confirmed")
    }
}
