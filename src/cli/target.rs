//! Which database a command works on, whether it is production, and the
//! checks a destructive command passes first.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use diesel::PgConnection;

use crate::admin::{DatabaseIdentity, identify};
use crate::cli::GlobalArgs;
use crate::cli::output;
use crate::config::{Config, DatabaseUrl, Environment};
use crate::environment::{EnvironmentMark, read_mark};

/// The database a command works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its connection string (redacted when shown).
    pub url: DatabaseUrl,
    /// Why it counts as production before anything is asked of the server
    /// (`--prod`); `None` otherwise. The mark and `PROD_CONNECTION_URL` are
    /// checked on a connection ([`Target::check_and_confirm`]).
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
        let production_reason = global
            .prod
            .then(|| "--prod targets the production database".to_owned());
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

    /// Connects to the target and, on that one connection, asks the server
    /// which database it is and reads its production mark; then refuses
    /// `action` (e.g. "drop") on a production database unless
    /// `--allow-production` was given, and asks `question` (given the
    /// database's name) as [`confirm`] does. Production means: `--prod`, a
    /// database marked as production, or the very database (same server,
    /// same oid) that `PROD_CONNECTION_URL` reaches, however either is
    /// spelled.
    ///
    /// Returns the connection and the server's identity of the database,
    /// which is what the command then acts on; `None` when the server says
    /// the database does not exist. Anything that keeps the question from
    /// being answered is an error, never a go-ahead.
    pub fn check_and_confirm(
        &self,
        global: &GlobalArgs,
        action: &str,
        question: impl FnOnce(&str) -> String,
    ) -> anyhow::Result<Option<(PgConnection, DatabaseIdentity)>> {
        let mut conn = match self.connect() {
            Ok(conn) => conn,
            Err(e) => {
                let missing = e
                    .downcast_ref::<crate::Error>()
                    .is_some_and(|e| matches!(e, crate::Error::DatabaseMissing { .. }));
                if let (true, Some(name)) = (missing, self.url.database()) {
                    self.refuse_production(global, action, &name, None, None)?;
                    return Ok(None);
                }
                return Err(e.context(format!(
                    "checking which database {} is before {action} it",
                    self.url
                )));
            }
        };
        let identity = identify(&mut conn).context("asking the server which database this is")?;
        let mark = read_mark(&mut conn).context("reading the production mark")?;
        let of_prod = match self.production_url_match(&identity) {
            Ok(found) => found,
            Err(e) if global.allow_production => {
                output::warning(&format!("{e:#}"));
                None
            }
            Err(e) => return Err(e),
        };
        self.refuse_production(
            global,
            action,
            &identity.database,
            mark.as_ref(),
            of_prod.as_deref(),
        )?;
        confirm(
            global,
            &question(&identity.database),
            &format!("refusing to {action} `{}`", identity.database),
        )?;
        Ok(Some((conn, identity)))
    }

    /// Why the database of `identity` is the one `PROD_CONNECTION_URL`
    /// reaches, if it is; asked of the production server. A production URL
    /// that cannot be asked is an error: the target could be it.
    fn production_url_match(&self, identity: &DatabaseIdentity) -> anyhow::Result<Option<String>> {
        let Some(prod) = prod_url()? else {
            return Ok(None);
        };
        match crate::admin::identify_at(&prod) {
            Ok(Some(prod_identity)) if prod_identity.same_database(identity) => Ok(Some(format!(
                "it is the database of PROD_CONNECTION_URL ({prod}): the same server and database"
            ))),
            Ok(_) => Ok(None),
            Err(e) => Err(anyhow::Error::new(e).context(format!(
                "cannot tell whether `{}` is the production database: PROD_CONNECTION_URL \
                 ({prod}) could not be asked; fix or unset it, or pass --allow-production",
                identity.database
            ))),
        }
    }

    /// The refusal itself, given what was found.
    fn refuse_production(
        &self,
        global: &GlobalArgs,
        action: &str,
        database: &str,
        mark: Option<&EnvironmentMark>,
        of_prod: Option<&str>,
    ) -> anyhow::Result<()> {
        let marked = mark.filter(|m| m.is_production()).map(|m| {
            format!(
                "it is marked as production (since {}, by {})",
                m.marked_at.format("%Y-%m-%d %H:%M:%S UTC"),
                m.marked_by
            )
        });
        let reasons: Vec<String> = [
            self.production_reason.clone(),
            marked,
            of_prod.map(str::to_owned),
        ]
        .into_iter()
        .flatten()
        .collect();
        if reasons.is_empty() {
            return Ok(());
        }
        if self.production_reason.is_none() {
            output::environment_label(true, &self.url.to_string());
        }
        let reason = reasons.join(", and ");
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

/// `PROD_CONNECTION_URL`, when set. One that does not parse is an error:
/// ignoring it would switch off the check that a target is not the
/// production database.
fn prod_url() -> anyhow::Result<Option<DatabaseUrl>> {
    let Some(raw) = std::env::var("PROD_CONNECTION_URL")
        .ok()
        .filter(|v| !v.trim().is_empty())
    else {
        return Ok(None);
    };
    DatabaseUrl::parse(&raw).map(Some).context(
        "reading PROD_CONNECTION_URL, to tell whether the target is the production database",
    )
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
