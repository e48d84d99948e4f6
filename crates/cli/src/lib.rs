//! The `cruddur-db` command-line tool, as a library so that the binary
//! stays a thin `main` and the tests can drive a command group in process.
//!
//! [`Cli`] holds the clap types (their doc comments are the `--help`);
//! each command group has a handler module with a `run`-style function
//! taking its arguments and the [`GlobalArgs`], whose
//! [`settings`](GlobalArgs::settings) are read once by [`run`]. The data
//! work is the library's (`cruddur_db`); the CLI's own SQL is the catalog
//! queries of `status` and `sessions`.

pub mod activity;
pub mod connect;
#[cfg(feature = "aws")]
mod env_file;
pub mod feed;
pub mod inspect;
mod libpq;
pub mod lifecycle;
pub mod local;
pub mod migrate;
pub mod output;
#[cfg(feature = "aws")]
pub mod rds;
pub mod seed;
mod server_info;
pub mod target;
pub mod user;

use std::fmt;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use cruddur_db::config::DatabaseUrl;

/// Manage Cruddur's PostgreSQL database: create, migrate, seed, inspect and
/// drop it, safely, in development and production.
#[derive(Debug, Parser)]
#[command(
    name = "cruddur-db",
    version,
    propagate_version = true,
    after_help = "Environment:\n  \
        DATABASE_URL         the database (the diesel convention); wins over CONNECTION_URL\n  \
        DATABASE_REPLICA_URLS  read replicas, comma-separated (see --replica-url)\n  \
        CONNECTION_URL       the same, under the original project's name\n  \
        PROD_CONNECTION_URL  the production database, used with --prod\n  \
        NO_COLOR             turns colours off (they are off when output is not a terminal)\n  \
        RUST_LOG             diagnostics on stderr, e.g. RUST_LOG=cruddur_db=debug\n  \
        CRUDDUR_POOL_SIZE, CRUDDUR_STATEMENT_TIMEOUT_MS   pool size; statement timeout (ms)\n  \
        CRUDDUR_DEFAULT_URL  tried when no URL is set (default postgres://localhost/cruddur)\n  \
        CRUDDUR_LOCAL_DIR, CRUDDUR_PG_BINDIR, CRUDDUR_PG_USER   the local cluster (see `local`)\n\
        A .env file is read from the current directory or a parent up to the project root\n\
        (the nearest with .git), and only when nobody but you or root can write it;\n\
        variables already set win over it."
)]
pub struct Cli {
    /// Options every command takes.
    #[command(flatten)]
    pub global: GlobalArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command that works on a database; they may come before
/// or after the command. `local` and `rds` refuse them (see [`parse`]).
#[derive(Clone, Default, Args)]
#[command(next_help_heading = "Global options")]
pub struct GlobalArgs {
    /// The database to use; wins over DATABASE_URL, CONNECTION_URL and
    /// PROD_CONNECTION_URL.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// Work on the production database (PROD_CONNECTION_URL): the target is
    /// labelled, `create` and `migrate` mark it as production, and
    /// destructive commands need --allow-production.
    #[arg(long, global = true)]
    pub prod: bool,

    /// Answer yes to confirmation questions (needed when stdin is not a
    /// terminal).
    #[arg(short = 'y', long, global = true)]
    pub yes: bool,

    /// Allow drop, schema-load, setup, migrate revert and a bulk seed into a
    /// non-empty database on a production database.
    #[arg(long, global = true)]
    pub allow_production: bool,

    /// A read replica of the database (repeatable); replaces
    /// DATABASE_REPLICA_URLS. `feed` and `status` use replicas.
    #[arg(long = "replica-url", global = true, value_name = "URL")]
    pub replica_urls: Vec<String>,

    /// The environment and `.env`, read once by [`run`].
    #[arg(skip)]
    pub settings: cruddur_db::Settings,
}

impl fmt::Debug for GlobalArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalArgs")
            .field(
                "database_url",
                &self.database_url.as_deref().map(cruddur_db::config::redact),
            )
            .field("prod", &self.prod)
            .field("yes", &self.yes)
            .field("allow_production", &self.allow_production)
            .field(
                "replica_urls",
                &self
                    .replica_urls
                    .iter()
                    .map(|u| cruddur_db::config::redact(u))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database the URL asks for (its dbname, else a service
    /// file's, PGDATABASE or the user name) if it does not exist (safe to
    /// repeat); with --prod, mark it as production.
    Create,
    /// Drop the database; asks first unless -y. Connects to the server's
    /// maintenance database, never to the one it drops.
    Drop(lifecycle::DropArgs),
    /// Apply, list or revert the embedded migrations (default: run).
    Migrate(migrate::MigrateArgs),
    /// Revert every migration and apply them all again, in one transaction:
    /// destroys all data.
    SchemaLoad,
    /// Load the reference seed (idempotent), or bulk synthetic data.
    Seed(seed::SeedArgs),
    /// Drop the database if present, create it, migrate and seed: a fresh
    /// development database in one step. Checks that it can create it again
    /// before dropping it, and keeps its environment mark.
    Setup(lifecycle::SetupArgs),
    /// Create the database if missing, apply pending migrations, and seed it
    /// when it then has no user; safe to repeat, and a rerun finishes a run
    /// that was killed.
    Prepare,
    /// Server version, database, environment, TLS and migrations.
    Status(inspect::StatusArgs),
    /// The open connections to the database, marking migration-lock holders.
    Sessions(inspect::SessionsArgs),
    /// Run psql on the database; the password goes through the environment,
    /// never the command line.
    Connect(connect::ConnectArgs),
    /// Print the home feed, newest first.
    Feed(feed::FeedArgs),
    /// Post an activity (a "crud") as a user, checked as the API checks it;
    /// prints the new activity as JSON.
    #[command(subcommand)]
    Activity(activity::ActivityCommand),
    /// Create the user of an identity provider's post-confirmation event
    /// (what the Cognito trigger did in the original).
    #[command(subcommand)]
    User(user::UserCommand),
    /// A project-local PostgreSQL cluster (in .cruddur/pg) for development
    /// without a configured server.
    Local(local::LocalArgs),
    /// Provision and check the production RDS instance, with the security
    /// practices as defaults (needs the `aws` feature).
    #[cfg(feature = "aws")]
    Rds(Box<rds::RdsArgs>),
}

/// The commands that work on no target database (they manage a server or
/// AWS resources), so the global options do not apply to them.
fn without_target() -> &'static [&'static str] {
    #[cfg(feature = "aws")]
    return &["local", "rds"];
    #[cfg(not(feature = "aws"))]
    return &["local"];
}

/// The clap command of [`Cli`], with the global options taken out of the
/// commands that work on no target database (`local`, `rds`): there they
/// are hidden from the help and refused by [`parse`].
pub fn command() -> clap::Command {
    use clap::CommandFactory;
    let mut cmd = Cli::command();
    let globals: Vec<clap::Arg> = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .cloned()
        .collect();
    for &name in without_target() {
        // A subcommand that defines an argument itself does not receive the
        // global one of that id; these hidden stand-ins exist only so that
        // `parse` can name the option in its refusal.
        cmd = cmd.mut_subcommand(name, |mut sc| {
            for arg in &globals {
                sc = sc.arg(arg.clone().hide(true));
            }
            sc
        });
    }
    cmd
}

/// Parses the command line, exiting with a usage error (status 2) as clap
/// does, also when a global option is given to `local` or `rds`.
pub fn parse() -> Cli {
    use clap::FromArgMatches;
    let mut cmd = command();
    let matches = cmd.get_matches_mut();
    if let Some(refusal) = refused_global(&cmd, &matches) {
        cmd.error(clap::error::ErrorKind::ArgumentConflict, refusal)
            .exit();
    }
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.format(&mut cmd).exit())
}

/// Why `matches` is refused: a global option given to a command in
/// [`without_target`], before or after its name.
fn refused_global(cmd: &clap::Command, matches: &clap::ArgMatches) -> Option<String> {
    use clap::parser::ValueSource;
    let (name, sub) = matches.subcommand()?;
    if !without_target().contains(&name) {
        return None;
    }
    let mut levels = vec![matches, sub];
    if let Some((_, leaf)) = sub.subcommand() {
        levels.push(leaf);
    }
    let given = cmd
        .get_arguments()
        .filter(|a| a.is_global_set())
        .find(|a| {
            levels.iter().any(|m| {
                m.try_get_raw(a.get_id().as_str()).is_ok()
                    && m.value_source(a.get_id().as_str()) == Some(ValueSource::CommandLine)
            })
        })?;
    let flag = given
        .get_long()
        .map_or_else(|| given.get_id().to_string(), |l| format!("--{l}"));
    Some(format!(
        "{flag} does not apply to `{name}`: it works on no target database \
         (see `cruddur-db {name} --help`)"
    ))
}

/// Runs a parsed command line.
///
/// Each command group's handler takes its arguments (and, when it works on
/// the database, the [`GlobalArgs`]) and returns `anyhow::Result<ExitCode>`.
/// `local` and `rds` take only their own arguments: they manage a server or
/// AWS resources, not the target database. A group that needs the database
/// calls [`target::Target::resolve`].
pub fn run(mut cli: Cli) -> anyhow::Result<ExitCode> {
    cli.global.settings = cruddur_db::Settings::from_env()?;
    init_tracing(&cli.global.settings);
    output::register_secrets(known_passwords(&cli.global));
    tracing::debug!(global = ?cli.global, "starting");
    let global = &cli.global;
    match cli.command {
        Command::Create => lifecycle::create(global),
        Command::Drop(args) => lifecycle::drop(args, global),
        Command::Migrate(args) => migrate::run(args, global),
        Command::SchemaLoad => lifecycle::schema_load(global),
        Command::Seed(args) => seed::run(args, global),
        Command::Setup(args) => lifecycle::setup(args, global),
        Command::Prepare => lifecycle::prepare(global),
        Command::Status(args) => inspect::status(args, global),
        Command::Sessions(args) => inspect::sessions(args, global),
        Command::Connect(args) => connect::run(args, global),
        Command::Feed(args) => feed::run(args, global),
        Command::Activity(command) => activity::run(command, global),
        Command::User(command) => user::run(command, global),
        Command::Local(args) => local::run(args, &global.settings),
        #[cfg(feature = "aws")]
        Command::Rds(args) => rds::run(*args, &global.settings),
    }
}

/// The passwords of every connection string the tool may have been given,
/// so that [`output::scrub`] can keep them out of anything printed.
fn known_passwords(global: &GlobalArgs) -> Vec<String> {
    let from_env = ["DATABASE_URL", "CONNECTION_URL", "PROD_CONNECTION_URL"]
        .into_iter()
        .filter_map(|k| global.settings.get(k).map(str::to_owned));
    // Replica lists are comma-separated; a password with a comma is
    // percent-encoded in a URL, so splitting cannot cut one in two.
    let replicas = global
        .settings
        .get("DATABASE_REPLICA_URLS")
        .into_iter()
        .flat_map(|list| list.split(',').map(str::to_owned).collect::<Vec<_>>());
    global
        .database_url
        .clone()
        .into_iter()
        .chain(global.replica_urls.iter().cloned())
        .chain(from_env)
        .chain(replicas)
        .filter_map(|raw| password_of(&raw))
        .collect()
}

/// The password in `raw`, also when it is not a URL this tool accepts
/// (an unsupported scheme is still a URL with a password).
fn password_of(raw: &str) -> Option<String> {
    if let Ok(url) = DatabaseUrl::parse(raw)
        && let Some(pw) = url.password()
    {
        return Some(pw);
    }
    // Not parsed by libpq: never echoed, but its password (as typed) is
    // still kept out of any other output.
    url::Url::parse(raw.trim())
        .ok()?
        .password()
        .map(str::to_owned)
}

/// Sends `tracing` diagnostics to stderr, filtered by `RUST_LOG` (default:
/// warnings and errors), coloured only on a terminal without `NO_COLOR`.
fn init_tracing(settings: &cruddur_db::Settings) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    use tracing_subscriber::filter::LevelFilter;
    let filter = EnvFilter::builder()
        .with_default_directive(LevelFilter::WARN.into())
        .from_env_lossy();
    let colour = std::io::stderr().is_terminal() && settings.get("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
        command().debug_assert();
    }

    fn refusal(args: &[&str]) -> Option<String> {
        let cmd = command();
        let matches = cmd
            .clone()
            .try_get_matches_from(std::iter::once("cruddur-db").chain(args.iter().copied()))
            .unwrap_or_else(|e| panic!("{args:?}: {e}"));
        refused_global(&cmd, &matches)
    }

    #[test]
    fn global_options_are_refused_where_they_do_not_apply() {
        for (args, flag) in [
            (&["--prod", "local", "start"][..], "--prod"),
            (
                &["local", "--database-url", "postgres://h/d", "url"],
                "--database-url",
            ),
            (&["local", "status", "-y"], "--yes"),
            (
                &["local", "stop", "--allow-production"],
                "--allow-production",
            ),
        ] {
            let refusal = refusal(args).unwrap_or_else(|| panic!("{args:?} was accepted"));
            assert!(
                refusal.starts_with(&format!("{flag} does not apply to `local`")),
                "{args:?}: {refusal}"
            );
        }
        for args in [
            &["local", "start"][..],
            &["--prod", "migrate", "status"],
            &["feed", "--database-url", "postgres://h/d", "-y"],
        ] {
            assert_eq!(refusal(args), None, "{args:?}");
        }
    }

    #[test]
    fn global_options_have_a_heading_of_their_own() {
        let mut cmd = command();
        cmd.build(); // propagates the global options, as parsing does
        let help = cmd
            .find_subcommand_mut("activity")
            .and_then(|a| a.find_subcommand_mut("create"))
            .expect("activity create")
            .render_long_help()
            .to_string();
        let heading = help
            .find("Global options:")
            .unwrap_or_else(|| panic!("{help}"));
        for own in ["--handle", "--message", "--message-file", "--ttl"] {
            assert!(
                help.find(own).is_some_and(|i| i < heading),
                "{own} below the heading:\n{help}"
            );
        }
        for global in ["--database-url", "--prod", "--yes", "--allow-production"] {
            assert!(
                help.find(global).is_some_and(|i| i > heading),
                "{global} above the heading:\n{help}"
            );
        }
        let local = cmd
            .find_subcommand_mut("local")
            .expect("local")
            .render_long_help()
            .to_string();
        for global in [
            "Global options",
            "--database-url",
            "--prod",
            "--allow-production",
        ] {
            assert!(
                !local.contains(global),
                "{global} in the help of local:\n{local}"
            );
        }
    }

    #[test]
    fn global_args_debug_hides_the_password() {
        let global = GlobalArgs {
            database_url: Some("postgres://u:S3cretPw@h/db".into()),
            ..GlobalArgs::default()
        };
        let shown = format!("{global:?}");
        assert!(!shown.contains("S3cretPw"), "{shown}");
    }

    #[test]
    fn passwords_are_found_in_every_form() {
        for (raw, pw) in [
            ("postgres://u:S3cretPw@h/db", "S3cretPw"),
            ("mysql://u:S3cretPw@h/db", "S3cretPw"),
            ("host=h password=S3cretPw dbname=d", "S3cretPw"),
            ("postgres://u:p%40ss@h/db", "p@ss"),
        ] {
            assert_eq!(password_of(raw).as_deref(), Some(pw), "{raw}");
        }
    }
}
