//! `cruddur-db local …`: the project's own PostgreSQL cluster (see
//! [`cruddur_db_local`]).

use std::process::ExitCode;

use anyhow::{Context as _, bail};

use cruddur_db_local::{LocalCluster, StartOutcome};

/// Exit status of `local status` when the cluster is not running, as
/// `pg_ctl status` uses.
pub const NOT_RUNNING: u8 = 3;

/// Run the project's own PostgreSQL cluster, in `.cruddur/pg` (or
/// CRUDDUR_LOCAL_DIR), with the PostgreSQL programs installed on this
/// machine.
#[derive(Debug, clap::Args)]
pub struct LocalArgs {
    /// What to do with the local cluster.
    #[command(subcommand)]
    pub command: LocalCommand,
}

/// The subcommands of `cruddur-db local`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::Subcommand)]
pub enum LocalCommand {
    /// Start the local cluster (creating it on first use) and create the
    /// `cruddur` database in it; does nothing when it already runs.
    Start,
    /// Stop the local cluster (fast shutdown); no server process is left.
    Stop,
    /// Say whether the local cluster runs, where, and its URL; exits with 3
    /// when it is not running.
    Status,
    /// Print the URL of the `cruddur` database on the local cluster, for
    /// DATABASE_URL, psql and diesel (it holds no password).
    Url,
}

/// Runs `cruddur-db local …`.
pub fn run(args: LocalArgs, settings: &cruddur_db::Settings) -> anyhow::Result<ExitCode> {
    let cluster = LocalCluster::project(settings)?;
    match args.command {
        LocalCommand::Start => {
            match cluster.start()? {
                StartOutcome::Started { initialized: true } => {
                    eprintln!(
                        "created and started the local cluster in {}",
                        cluster.dir().display()
                    );
                }
                StartOutcome::Started { initialized: false } => {
                    eprintln!("started the local cluster in {}", cluster.dir().display());
                }
                StartOutcome::AlreadyRunning { pid } => {
                    eprintln!(
                        "the local cluster in {} is already running (pid {pid})",
                        cluster.dir().display()
                    );
                }
            }
            let url = cluster.url()?;
            cruddur_db::admin::create_database(&url)?;
            println!("{url}");
        }
        LocalCommand::Stop => {
            if cluster.stop()? {
                eprintln!("stopped the local cluster in {}", cluster.dir().display());
            } else {
                eprintln!(
                    "the local cluster in {} is not running",
                    cluster.dir().display()
                );
            }
        }
        LocalCommand::Status => {
            let status = cluster.status()?;
            print!("{status}");
            if !status.initialized {
                eprintln!("(`cruddur-db local start` creates and starts it)");
            }
            if !status.running {
                return Ok(ExitCode::from(NOT_RUNNING));
            }
        }
        LocalCommand::Url => {
            let url = cluster
                .url()
                .context("no URL yet (start the cluster with `cruddur-db local start`)")?;
            if url.password().is_some() {
                // Never print a secret; the project cluster's URL has none.
                bail!(
                    "this cluster asks for a password, so its URL is not printed; the password is in {}",
                    cluster.dir().join("password").display()
                );
            }
            println!("{}", url.expose());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Wrapper {
        #[command(subcommand)]
        command: Top,
    }

    #[derive(Debug, clap::Subcommand)]
    enum Top {
        Local(LocalArgs),
    }

    fn parse(args: &[&str]) -> Result<LocalCommand, clap::Error> {
        let argv = std::iter::once("cruddur-db").chain(args.iter().copied());
        Wrapper::try_parse_from(argv).map(|w| match w.command {
            Top::Local(local) => local.command,
        })
    }

    #[test]
    fn parses_every_subcommand() {
        let cases = [
            ("start", LocalCommand::Start),
            ("stop", LocalCommand::Stop),
            ("status", LocalCommand::Status),
            ("url", LocalCommand::Url),
        ];
        for (arg, expected) in cases {
            assert_eq!(parse(&["local", arg]).unwrap(), expected, "local {arg}");
        }
    }

    #[test]
    fn rejects_unknown_or_missing_subcommands() {
        for args in [
            &["local"][..],
            &["local", "restart"],
            &["local", "start", "extra"],
        ] {
            assert!(parse(args).is_err(), "{args:?} should be rejected");
        }
    }

    #[test]
    fn help_comes_from_doc_comments() {
        let help = parse(&["local", "--help"]).unwrap_err().to_string();
        for needle in [
            "start",
            "stop",
            "status",
            "url",
            "already runs",
            ".cruddur/pg",
        ] {
            assert!(help.contains(needle), "{needle:?} missing in:\n{help}");
        }
        <Wrapper as clap::CommandFactory>::command().debug_assert();
    }
}
