#![doc = include_str!("../README.md")]

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
mod options;
pub mod output;
pub mod profile;
#[cfg(feature = "aws")]
pub mod rds;
pub mod seed;
mod server_info;
pub mod target;
pub mod user;
pub mod variables;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use cruddur_db::Settings;
use cruddur_db::config::DatabaseUrl;

pub use options::DatabaseArgs;

/// Manage Cruddur's PostgreSQL database: create, migrate, seed, inspect and
/// drop it, safely, in development and production.
#[derive(Debug, Parser)]
#[command(
    name = "cruddur-db",
    version,
    propagate_version = true,
    // The options before the command are this level's own: were they global
    // here, clap would hand them to `local` and `rds` too.
    mut_args = |arg: clap::Arg| arg.global(false),
    after_help = "Environment:\n  \
        DATABASE_URL         the database (the diesel convention); wins over CONNECTION_URL\n  \
        DATABASE_REPLICA_URLS  read replicas, comma-separated (see --replica-url)\n  \
        CONNECTION_URL       the same, under the original project's name\n  \
        PROD_CONNECTION_URL  the production database, used with --prod\n  \
        NO_COLOR             turns colours off (they are off when output is not a terminal)\n  \
        RUST_LOG             diagnostics on stderr, e.g. RUST_LOG=cruddur_db=debug\n  \
        CRUDDUR_POOL_SIZE, CRUDDUR_STATEMENT_TIMEOUT_MS   pool size; statement timeout (ms)\n  \
        CRUDDUR_DEFAULT_URL  tried when no URL is set (default postgres://localhost/cruddur)\n  \
        CRUDDUR_POOLER       `transaction` behind PgBouncer's transaction mode or RDS Proxy\n  \
        DATABASE_DIRECT_URL, PROD_DIRECT_URL   the database without the pooler, for\n  \
        \x20                    migrate, seed, prepare, setup, create, drop, connect\n  \
        CRUDDUR_LOCAL_DIR, CRUDDUR_PG_BINDIR, CRUDDUR_PG_USER   the local cluster (see `local`)\n\
        A .env file is read from the current directory or a parent up to the project root\n\
        (the nearest with .git), and only when nobody but you or root can write it;\n\
        variables already set win over it."
)]
pub struct Cli {
    /// The database options given before the command
    /// (`cruddur-db --prod migrate`). Clap hands them to the command's own
    /// [`DatabaseArgs`] (read those, through [`Command::database_args`]); here
    /// they only tell `local` and `rds` apart, which refuse them.
    #[command(flatten)]
    pub leading: DatabaseArgs,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database the URL asks for (its dbname, else a service
    /// file's, PGDATABASE or the user name) if it does not exist (safe to
    /// repeat); with --prod, mark it as production.
    Create {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Drop the database; asks first unless -y. Connects to the server's
    /// maintenance database, never to the one it drops.
    Drop {
        /// Its own options.
        #[command(flatten)]
        args: lifecycle::DropArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Apply, list or revert the embedded migrations (default: run).
    Migrate {
        /// Its own options.
        #[command(flatten)]
        args: migrate::MigrateArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Revert every migration and apply them all again, in one transaction:
    /// destroys all data.
    SchemaLoad {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Load the reference seed (idempotent), or bulk synthetic data.
    Seed {
        /// Its own options.
        #[command(flatten)]
        args: seed::SeedArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Drop the database if present, create it, migrate and seed: a fresh
    /// development database in one step. Checks that it can create it again
    /// before dropping it, and keeps its environment mark.
    Setup {
        /// Its own options.
        #[command(flatten)]
        args: lifecycle::SetupArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Create the database if missing, apply pending migrations, and seed it
    /// when it then has no user; safe to repeat, and a rerun finishes a run
    /// that was killed.
    Prepare {
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Server version, database, environment, TLS and migrations.
    Status {
        /// Its own options.
        #[command(flatten)]
        args: inspect::StatusArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// The open connections to the database, marking migration-lock holders.
    Sessions {
        /// Its own options.
        #[command(flatten)]
        args: inspect::SessionsArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Run psql on the database; the password goes through the environment,
    /// never the command line.
    Connect {
        /// Its own options.
        #[command(flatten)]
        args: connect::ConnectArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Print the home feed, newest first.
    Feed {
        /// Its own options.
        #[command(flatten)]
        args: feed::FeedArgs,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Post an activity (a "crud") or a reply as a user, checked as the API
    /// checks it, or show a crud with its replies; prints JSON.
    Activity {
        /// What to do.
        #[command(subcommand)]
        command: activity::ActivityCommand,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Show a user's page, or update a user's display name and bio.
    Profile {
        /// What to do.
        #[command(subcommand)]
        command: profile::ProfileCommand,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// Create the user of an identity provider's post-confirmation event
    /// (what the Cognito trigger did in the original).
    User {
        /// What to do.
        #[command(subcommand)]
        command: user::UserCommand,
        /// The database.
        #[command(flatten)]
        db: DatabaseArgs,
    },
    /// A project-local PostgreSQL cluster (in .cruddur/pg) for development
    /// without a configured server.
    Local(local::LocalArgs),
    /// Provision and check the production RDS instance, with the security
    /// practices as defaults (needs the `aws` feature).
    #[cfg(feature = "aws")]
    Rds(Box<rds::RdsArgs>),
}

impl Command {
    /// The command's own database options; `None` for `local` and `rds`,
    /// which work on no target database (they manage a server or AWS
    /// resources).
    pub fn database_args(&self) -> Option<&DatabaseArgs> {
        match self {
            Self::Create { db }
            | Self::SchemaLoad { db }
            | Self::Prepare { db }
            | Self::Drop { db, .. }
            | Self::Migrate { db, .. }
            | Self::Seed { db, .. }
            | Self::Setup { db, .. }
            | Self::Status { db, .. }
            | Self::Sessions { db, .. }
            | Self::Connect { db, .. }
            | Self::Feed { db, .. }
            | Self::Activity { db, .. }
            | Self::Profile { db, .. }
            | Self::User { db, .. } => Some(db),
            Self::Local(_) => None,
            #[cfg(feature = "aws")]
            Self::Rds(_) => None,
        }
    }
}

impl Cli {
    /// Parses `args` (the program's name first), also refusing a database
    /// option given before a command that works on no target database
    /// (after it, clap refuses it: such a command has no such option).
    pub fn try_parse_args<I, T>(args: I) -> Result<Self, clap::Error>
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        use clap::CommandFactory;
        let cli = Self::try_parse_from(args)?;
        if cli.command.database_args().is_none()
            && let Some(flag) = cli.leading.first_given()
        {
            let name = cli_name(&cli.command);
            return Err(Self::command().error(
                clap::error::ErrorKind::ArgumentConflict,
                format!(
                    "{flag} does not apply to `{name}`: it works on no target database \
                     (see `cruddur-db {name} --help`)"
                ),
            ));
        }
        Ok(cli)
    }
}

/// The name of a command that works on no target database, as typed.
fn cli_name(command: &Command) -> &'static str {
    match command {
        Command::Local(_) => "local",
        #[cfg(feature = "aws")]
        Command::Rds(_) => "rds",
        _ => "this command",
    }
}

/// Parses the command line, exiting with a usage error (status 2) as clap
/// does, also when a database option is given to `local` or `rds`.
pub fn parse() -> Cli {
    Cli::try_parse_args(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// Runs a parsed command line with the settings read once from the
/// environment and `.env`.
///
/// Each command group's handler takes its arguments (and, when it works on
/// the database, its [`DatabaseArgs`] and the settings) and returns
/// `anyhow::Result<ExitCode>`. `local` and `rds` take only their own
/// arguments and the settings: they manage a server or AWS resources, not
/// the target database. A group that needs the database calls
/// [`target::Target::resolve`].
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let settings = Settings::from_env()?;
    init_tracing(&settings);
    run_with(cli, &settings)
}

/// Runs a parsed command line with `settings`; the process-wide password
/// registry ([`output::register_secrets`]) is filled from them and the
/// command's database options before anything is printed.
pub fn run_with(cli: Cli, settings: &Settings) -> anyhow::Result<ExitCode> {
    let db = &cli.command.database_args().cloned().unwrap_or_default();
    output::register_secrets(known_passwords(db, settings));
    tracing::debug!(database_args = ?db, "starting");
    match cli.command {
        Command::Create { .. } => lifecycle::create(db, settings),
        Command::Drop { args, .. } => lifecycle::drop(args, db, settings),
        Command::Migrate { args, .. } => migrate::run(args, db, settings),
        Command::SchemaLoad { .. } => lifecycle::schema_load(db, settings),
        Command::Seed { args, .. } => seed::run(args, db, settings),
        Command::Setup { args, .. } => lifecycle::setup(args, db, settings),
        Command::Prepare { .. } => lifecycle::prepare(db, settings),
        Command::Status { args, .. } => inspect::status(args, db, settings),
        Command::Sessions { args, .. } => inspect::sessions(args, db, settings),
        Command::Connect { args, .. } => connect::run(args, db, settings),
        Command::Feed { args, .. } => feed::run(args, db, settings),
        Command::Activity { command, .. } => activity::run(command, db, settings),
        Command::Profile { command, .. } => profile::run(command, db, settings),
        Command::User { command, .. } => user::run(command, db, settings),
        Command::Local(args) => local::run(args, settings),
        #[cfg(feature = "aws")]
        Command::Rds(args) => rds::run(*args, settings),
    }
}

/// The passwords of every connection string the tool may have been given,
/// on its command line (`db`) or in its settings, so that
/// [`output::scrub`] can keep them out of anything printed.
fn known_passwords(db: &DatabaseArgs, settings: &Settings) -> Vec<String> {
    use cruddur_db::variables::{
        CONNECTION_URL, DATABASE_REPLICA_URLS, DATABASE_URL, PROD_CONNECTION_URL,
    };
    let from_env = [DATABASE_URL, CONNECTION_URL, PROD_CONNECTION_URL]
        .into_iter()
        .filter_map(|var| settings.get(&var).map(str::to_owned));
    // Replica lists are comma-separated; a password with a comma is
    // percent-encoded in a URL, so splitting cannot cut one in two.
    let replicas = settings
        .list(&DATABASE_REPLICA_URLS)
        .into_iter()
        .map(str::to_owned);
    db.database_url
        .clone()
        .into_iter()
        .chain(db.replica_urls.iter().cloned())
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
    let colour = std::io::stderr().is_terminal() && !settings.is_set(&variables::NO_COLOR);
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
    }

    fn parsed(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_args(std::iter::once("cruddur-db").chain(args.iter().copied()))
    }

    #[test]
    fn database_options_are_refused_where_they_do_not_apply() {
        for (args, flag) in [
            (&["--prod", "local", "start"][..], "--prod"),
            (
                &["--database-url", "postgres://h/d", "local", "url"],
                "--database-url",
            ),
            (
                &["local", "--database-url", "postgres://h/d", "url"],
                "--database-url",
            ),
            (&["local", "status", "-y"], "-y"),
            (
                &["local", "stop", "--allow-production"],
                "--allow-production",
            ),
            (&["-y", "local", "stop"], "--yes"),
        ] {
            let e = parsed(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
            let shown = e.to_string();
            assert!(
                shown.starts_with("error: ") && shown.contains(flag),
                "{args:?}: {shown}"
            );
        }
        let e = parsed(&["--prod", "local", "start"]).expect_err("refused");
        assert!(
            e.to_string()
                .starts_with("error: --prod does not apply to `local`"),
            "{e}"
        );
        #[cfg(feature = "aws")]
        for args in [
            &["--prod", "rds", "status"][..],
            &["rds", "status", "--prod"],
        ] {
            let e = parsed(args).expect_err(&format!("{args:?} was accepted"));
            assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
            assert!(e.to_string().contains("--prod"), "{args:?}: {e}");
        }
        #[cfg(feature = "aws")]
        {
            let e = parsed(&["--prod", "rds", "status"]).expect_err("refused");
            assert!(
                e.to_string()
                    .starts_with("error: --prod does not apply to `rds`"),
                "{e}"
            );
        }
    }

    #[test]
    fn database_options_are_taken_before_after_and_inside_the_command() {
        for args in [
            &[
                "--database-url",
                "postgres://h/d",
                "--prod",
                "-y",
                "migrate",
                "revert",
            ][..],
            &[
                "migrate",
                "revert",
                "--database-url",
                "postgres://h/d",
                "--prod",
                "-y",
            ],
            &[
                "migrate",
                "--prod",
                "revert",
                "--database-url",
                "postgres://h/d",
                "--yes",
            ],
            &[
                "-y",
                "--prod",
                "migrate",
                "--database-url",
                "postgres://h/d",
                "revert",
            ],
        ] {
            let cli = parsed(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let db = cli.command.database_args().expect("a database command");
            assert_eq!(
                db.database_url.as_deref(),
                Some("postgres://h/d"),
                "{args:?}"
            );
            assert!(
                db.prod && db.yes && !db.allow_production,
                "{args:?}: {db:?}"
            );
            assert!(
                matches!(
                    cli.command,
                    Command::Migrate {
                        args: migrate::MigrateArgs {
                            command: Some(migrate::MigrateCommand::Revert)
                        },
                        ..
                    }
                ),
                "{args:?}: {:?}",
                cli.command
            );
        }
        let cli = parsed(&[
            "--allow-production",
            "activity",
            "create",
            "--handle",
            "h",
            "--message",
            "m",
            "--ttl",
            "1-hour",
            "--replica-url",
            "postgres://r/d",
        ])
        .expect("activity create");
        let db = cli.command.database_args().expect("a database command");
        assert!(db.allow_production && !db.prod, "{db:?}");
        assert_eq!(db.replica_urls, ["postgres://r/d"]);
        // Given on both sides, the later list replaces the earlier one.
        let cli = parsed(&[
            "--replica-url",
            "postgres://a/d",
            "feed",
            "--replica-url",
            "postgres://b/d",
        ])
        .expect("feed");
        let db = cli.command.database_args().expect("a database command");
        assert_eq!(db.replica_urls, ["postgres://b/d"]);
        let cli = parsed(&["--replica-url", "postgres://a/d", "feed"]).expect("feed");
        let db = cli.command.database_args().expect("a database command");
        assert_eq!(db.replica_urls, ["postgres://a/d"]);
        let cli = parsed(&["local", "start"]).expect("local");
        assert!(cli.command.database_args().is_none());
    }

    #[test]
    fn global_options_have_a_heading_of_their_own() {
        let mut cmd = Cli::command();
        cmd.build(); // propagates the options into nested commands, as parsing does
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
