//! Which database a command works on, whether it is production, and the
//! checks a destructive command passes first.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, bail};
use diesel::PgConnection;

use crate::DatabaseArgs;
use crate::output;
use cruddur_db::Repository;
use cruddur_db::admin::{DatabaseIdentity, identify};
use cruddur_db::environment::{EnvironmentMark, read_mark};
use cruddur_db::{Config, DatabaseUrl, Environment, Settings, UrlSource};
use cruddur_db_local::Fallback;

/// How long a command waits for the first probe of its replicas: the
/// probe's connect and statement timeouts (2 s and 1 s), with a margin.
pub const FIRST_PROBE_BOUND: std::time::Duration = std::time::Duration::from_secs(4);

/// The database a command works on.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its configuration: the connection string (redacted when shown) and
    /// the pool and session settings, resolved once.
    pub config: Config,
    /// Why it counts as production before anything is asked of the server
    /// (`--prod`); `None` otherwise. The mark and `PROD_CONNECTION_URL` are
    /// checked on a connection ([`Target::check_and_confirm`]).
    pub production_reason: Option<String>,
    /// Where the URL came from (`--database-url`, `DATABASE_URL`, …).
    pub source: &'static str,
}

impl Target {
    /// Resolves the target from the flags and the settings, as
    /// [`cruddur_db::resolve()`] decides (with `--prod`, `--database-url` or
    /// else `PROD_CONNECTION_URL`; otherwise `--database-url`,
    /// `DATABASE_URL`, `CONNECTION_URL`, the default URL) and
    /// [`cruddur_db_local::resolve`] completes (a running local cluster). A
    /// production target is labelled on stderr.
    pub fn resolve(db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<Self> {
        Self::resolve_with(db, settings, Fallback::IfRunning)
    }

    /// Like [`Target::resolve`], but when no URL is configured and nothing
    /// answers at the default URL, starts the project's local cluster
    /// (for `prepare` and `setup`; other commands only reuse a running one).
    pub fn resolve_starting_local(db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<Self> {
        Self::resolve_with(db, settings, Fallback::Start)
    }

    fn resolve_with(
        db: &DatabaseArgs,
        settings: &Settings,
        fallback: Fallback,
    ) -> anyhow::Result<Self> {
        let explicit = match &db.database_url {
            Some(raw) => Some(DatabaseUrl::parse(raw).context("reading --database-url")?),
            None => None,
        };
        let environment = if db.prod {
            Environment::Production
        } else {
            Environment::Development
        };
        let resolved = cruddur_db_local::resolve(explicit, environment, settings, fallback)
            .context("choosing the database")?;
        let source = match resolved.source {
            UrlSource::Explicit => "--database-url",
            UrlSource::Environment(var) => var.name(),
            UrlSource::Production => "PROD_CONNECTION_URL",
            UrlSource::Default => "the default",
            UrlSource::LocalCluster { .. } => "the local cluster",
        };
        if resolved.source.is_zero_setup() {
            output::note(&format!("note: {}", resolved.describe()));
        }
        let mut config = resolved.config;
        if !db.replica_urls.is_empty() {
            config.replica_urls = db
                .replica_urls
                .iter()
                .map(|raw| DatabaseUrl::parse(raw).context("reading --replica-url"))
                .collect::<anyhow::Result<_>>()?;
        }
        if let Some(warning) = &config.warning {
            output::warning(warning);
        }
        let production_reason = db
            .prod
            .then(|| "--prod targets the production database".to_owned());
        let target = Self {
            config,
            production_reason,
            source,
        };
        if target.production_reason.is_some() {
            output::environment_label(true, &target.url().to_string());
        }
        tracing::debug!(url = %target.url(), source, "target resolved");
        Ok(target)
    }

    /// The target for `what`, a command that needs a session of its own
    /// (migrations and their lock, `prepare`, the lifecycle commands,
    /// `psql`): itself, or behind a transaction pooler
    /// (`CRUDDUR_POOLER=transaction`) its direct URL, checked to reach the
    /// same database. Without a direct URL there it refuses, naming the
    /// variable to set.
    pub fn session(mut self, what: &'static str) -> anyhow::Result<Self> {
        if !self.config.pooler.is_transaction() {
            return Ok(self);
        }
        let direct = self.config.session_url(what)?.clone();
        cruddur_db::pooler::check_direct_url(&self.config)?;
        tracing::debug!(url = %direct, "{what}: through the direct URL, not the pooler");
        self.config.database_url = direct;
        self.config.pooler = cruddur_db::Pooler::Session;
        self.config.direct_url = None;
        Ok(self)
    }

    /// Its connection string.
    pub fn url(&self) -> &DatabaseUrl {
        &self.config.database_url
    }

    /// The repository over the target and its read replicas, each replica
    /// probed once (for at most [`FIRST_PROBE_BOUND`]) so that a one-shot
    /// command can use them. Its pool opens connections as they are used.
    pub fn repository(&self) -> anyhow::Result<Repository> {
        let repo = Repository::connect(&self.config)?;
        if !self.config.replica_urls.is_empty() {
            repo.router().wait_for_probes(FIRST_PROBE_BOUND);
        }
        Ok(repo)
    }

    /// Whether read replicas are configured for the target.
    pub fn has_replicas(&self) -> bool {
        !self.config.replica_urls.is_empty()
    }

    /// The database name the URL asks for: its `dbname`, else libpq's
    /// default (a service file, `PGDATABASE`, the user name).
    pub fn database(&self) -> anyhow::Result<String> {
        self.url().requested_database().with_context(|| {
            format!(
                "{} names no database and libpq's defaults name none either",
                self.url()
            )
        })
    }

    /// One connection to the target, with its session settings (see
    /// [`cruddur_db::pool::establish_config`]).
    pub fn connect(&self) -> anyhow::Result<PgConnection> {
        Ok(cruddur_db::pool::establish_config(&self.config)?)
    }

    /// Whether `--prod` was given (the flag that writes the production mark).
    pub fn marks_production(db: &DatabaseArgs) -> bool {
        db.prod
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
        db: &DatabaseArgs,
        settings: &Settings,
        action: &str,
        question: impl FnOnce(&str) -> String,
    ) -> anyhow::Result<Option<(PgConnection, DatabaseIdentity)>> {
        let mut conn = match self.connect() {
            Ok(conn) => conn,
            Err(e) => {
                let missing = e
                    .downcast_ref::<cruddur_db::Error>()
                    .is_some_and(|e| matches!(e, cruddur_db::Error::DatabaseMissing { .. }));
                if let (true, Some(name)) = (missing, self.url().requested_database()) {
                    self.refuse_production(db, action, &name, None, None)?;
                    return Ok(None);
                }
                return Err(e.context(format!(
                    "checking which database {} is before {action} it",
                    self.url()
                )));
            }
        };
        let identity = identify(&mut conn).context("asking the server which database this is")?;
        let mark = read_mark(&mut conn).context("reading the production mark")?;
        let of_prod = match self.production_url_match(settings, &identity) {
            Ok(found) => found,
            Err(e) if db.allow_production => {
                output::warning(&format!("{e:#}"));
                None
            }
            Err(e) => return Err(e),
        };
        self.refuse_production(
            db,
            action,
            &identity.database,
            mark.as_ref(),
            of_prod.as_deref(),
        )?;
        confirm(
            db,
            &question(&identity.database),
            &format!("refusing to {action} `{}`", identity.database),
        )?;
        Ok(Some((conn, identity)))
    }

    /// Why the database of `identity` is the one `PROD_CONNECTION_URL`
    /// reaches, if it is; asked of the production server. A production URL
    /// that cannot be asked is an error: the target could be it.
    fn production_url_match(
        &self,
        settings: &Settings,
        identity: &DatabaseIdentity,
    ) -> anyhow::Result<Option<String>> {
        let Some(prod) = prod_url(settings)? else {
            return Ok(None);
        };
        match cruddur_db::admin::identify_at(&prod) {
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
        db: &DatabaseArgs,
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
            output::environment_label(true, &self.url().to_string());
        }
        let reason = reasons.join(", and ");
        if !db.allow_production {
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

/// `PROD_CONNECTION_URL`, when set ([`cruddur_db::resolve::production_url`]).
/// One that does not parse is an error: ignoring it would switch off the
/// check that a target is not the production database.
fn prod_url(settings: &Settings) -> anyhow::Result<Option<DatabaseUrl>> {
    cruddur_db::resolve::production_url(settings).context(
        "reading PROD_CONNECTION_URL, to tell whether the target is the production database",
    )
}

/// Asks `question` on a terminal and returns whether the answer was yes.
/// With `-y` it does not ask; when stdin is not a terminal and `-y` was not
/// given it refuses, saying to pass `-y`, rather than guess.
pub fn confirm(db: &DatabaseArgs, question: &str, refusal: &str) -> anyhow::Result<()> {
    if db.yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        bail!("{refusal} without confirmation: stdin is not a terminal; pass -y/--yes to confirm");
    }
    anstream::eprint!(
        "{}{}{:#} [y/N] ",
        output::WARNING,
        output::shown(question),
        output::WARNING
    );
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
