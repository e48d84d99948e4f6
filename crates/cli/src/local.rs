//! `cruddur-db local …`: the project's own PostgreSQL cluster (see
//! [`cruddur_db_local`]).

use std::process::ExitCode;

use anyhow::{Context as _, bail};

use cruddur_db_local::{LocalCluster, MAX_REPLICAS, ReplicaOutcome, StartOutcome};

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
    Start {
        /// Also start hot standbys 1..=N of it on 127.0.0.1 (each copied from
        /// the cluster with pg_basebackup at first, streaming through a
        /// replication slot); a replica whose slot is gone is copied again.
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u8).range(1..=i64::from(MAX_REPLICAS)))]
        replicas: Option<u8>,
        /// With --replicas: make the standbys synchronous (the primary's
        /// synchronous_standby_names is ANY 1 of them, synchronous_commit
        /// on), so that a commit returns once a standby has it and a
        /// failover loses none; without it they are asynchronous.
        #[arg(long, requires = "replicas")]
        synchronous: bool,
    },
    /// Fail over as RDS Multi-AZ does: kill the primary (SIGKILL), promote
    /// the standby furthest along, point the other standbys at it. The URL
    /// of `local url` finds the new primary; the next `local start` brings
    /// the old primary back as a standby (pg_rewind).
    Failover,
    /// Stop the local cluster and its replicas (fast shutdown); no server
    /// process is left.
    Stop,
    /// Say whether the local cluster runs, where, and its URL, and list its
    /// replicas; exits with 3 when it is not running.
    Status,
    /// Print the URL of the `cruddur` database on the local cluster, for
    /// DATABASE_URL, psql and diesel (it holds no password). With replicas,
    /// the stable endpoint: every server, the primary first, with
    /// target_session_attrs=read-write, so that a client reconnecting after
    /// a failover reaches the new primary.
    Url {
        /// Print replica K's URL instead (a read-only hot standby, from 1).
        #[arg(long, value_name = "K", value_parser = clap::value_parser!(u8).range(1..))]
        replica: Option<u8>,
    },
}

/// Runs `cruddur-db local …`.
pub fn run(args: LocalArgs, settings: &cruddur_db::Settings) -> anyhow::Result<ExitCode> {
    let cluster = LocalCluster::project(settings)?;
    match args.command {
        LocalCommand::Start {
            replicas,
            synchronous,
        } => {
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
            if cluster.primary_number() != 0 {
                eprintln!(
                    "the primary is replica {} since a failover; the original data directory runs as its standby",
                    cluster.primary_number()
                );
            }
            let url = cluster.endpoint_url()?;
            cruddur_db::admin::create_database(&url)?;
            // After `cruddur` exists, so that the replicas' copies have it.
            match replicas {
                Some(n) => start_replicas(&cluster, n, synchronous)?,
                None => note_stopped_replicas(&cluster),
            }
            println!("{}", endpoint(&cluster)?);
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
        LocalCommand::Failover => {
            let report = cluster.failover()?;
            eprintln!(
                "failover: killed the primary ({}{}), promoted {} (received up to {}) in {:?}",
                member(report.old_primary),
                report
                    .killed_pid
                    .map(|p| format!(", pid {p}"))
                    .unwrap_or_default(),
                member(report.new_primary),
                report.promoted_at.as_deref().unwrap_or("unknown"),
                report.elapsed
            );
            for m in &report.repointed {
                eprintln!("{} now streams from the new primary", member(*m));
            }
            if cluster.is_synchronous() {
                if report.synchronous_standby_names.is_empty() {
                    eprintln!(
                        "note: no standby is left running, so the new primary waits for none until `cruddur-db local start` brings the old primary back as its standby"
                    );
                } else {
                    eprintln!(
                        "synchronous_standby_names = '{}'",
                        report.synchronous_standby_names
                    );
                }
            }
            eprintln!(
                "the old primary stays down; `cruddur-db local start` rewinds it (pg_rewind) and starts it as a standby"
            );
            println!("{}", endpoint(&cluster)?);
        }
        LocalCommand::Status => {
            let primary = cluster.primary_number();
            let status = cluster.primary_member().status()?;
            if primary != 0 {
                println!("primary:    replica {primary} (promoted by a failover)");
                let original = cluster.status()?;
                println!(
                    "original:   {} ({}){}",
                    if original.running {
                        "running"
                    } else {
                        "stopped"
                    },
                    original.dir.display(),
                    cluster
                        .sync_state(0)
                        .map(|s| format!(", standby: {s}"))
                        .unwrap_or_default()
                );
            }
            print!("{status}");
            println!(
                "standbys:   {}",
                if cluster.is_synchronous() {
                    "synchronous (ANY 1)"
                } else {
                    "asynchronous"
                }
            );
            for replica in cluster.replicas()? {
                println!("{replica}");
            }
            if !status.initialized {
                eprintln!("(`cruddur-db local start` creates and starts it)");
            }
            if !status.running {
                return Ok(ExitCode::from(NOT_RUNNING));
            }
        }
        LocalCommand::Url { replica } => {
            let url = match replica {
                None => endpoint(&cluster)
                    .context("no URL yet (start the cluster with `cruddur-db local start`)")?,
                Some(k) => cluster.replica_url(k).with_context(|| {
                    format!("no URL for replica {k} (make and start it with `cruddur-db local start --replicas {k}`)")
                })?,
            };
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

/// "the original data directory" (member 0) or "replica K".
fn member(m: u8) -> String {
    if m == 0 {
        "the original data directory".to_owned()
    } else {
        format!("replica {m}")
    }
}

/// The URL to give clients: the cluster's own without replicas, else the
/// endpoint over every server that finds the primary.
fn endpoint(cluster: &LocalCluster) -> anyhow::Result<cruddur_db::DatabaseUrl> {
    Ok(if cluster.has_replicas() || cluster.primary_number() != 0 {
        cluster.endpoint_url()?
    } else {
        cluster.url()?
    })
}

/// Starts replicas 1..=`n` and says on stderr what was done to each.
fn start_replicas(cluster: &LocalCluster, n: u8, synchronous: bool) -> anyhow::Result<()> {
    for started in cluster.start_replicas_with(n, synchronous)? {
        let k = started.number;
        let dir = cluster.replica_dir(k);
        match started.outcome {
            ReplicaOutcome::Created => {
                eprintln!("created and started replica {k} in {}", dir.display());
            }
            ReplicaOutcome::Rebuilt(reason) => {
                eprintln!(
                    "note: replica {k} was removed and copied again from the primary because {reason}; started it in {}",
                    dir.display()
                );
            }
            ReplicaOutcome::Started => {
                eprintln!("started replica {k} in {}", dir.display());
            }
            ReplicaOutcome::AlreadyRunning { pid } => {
                eprintln!("replica {k} is already running (pid {pid})");
            }
            ReplicaOutcome::Rewound => {
                eprintln!(
                    "replica {k}, the primary before a failover, was rewound (pg_rewind) and started as a standby"
                );
            }
            ReplicaOutcome::Primary => {
                eprintln!("replica {k} is the primary (promoted by a failover)");
            }
        }
    }
    if synchronous {
        eprintln!("the standbys are synchronous: a commit returns once one of them has it");
    }
    Ok(())
}

/// A plain `start` leaves replicas alone; say so when some are stopped,
/// because their slots keep WAL on the primary until they stream again.
fn note_stopped_replicas(cluster: &LocalCluster) {
    let Ok(replicas) = cluster.replicas() else {
        return;
    };
    let stopped = replicas.iter().filter(|r| !r.running).count();
    if let Some(highest) = replicas.iter().map(|r| r.number).max()
        && stopped > 0
    {
        eprintln!(
            "note: {stopped} replica(s) stopped; their slots keep WAL on the primary (start them with `cruddur-db local start --replicas {highest}`)"
        );
    }
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
        let start = |replicas, synchronous| LocalCommand::Start {
            replicas,
            synchronous,
        };
        let cases: [(&[&str], LocalCommand); 9] = [
            (&["start"], start(None, false)),
            (&["start", "--replicas", "2"], start(Some(2), false)),
            (&["start", "--replicas=8"], start(Some(8), false)),
            (
                &["start", "--replicas", "1", "--synchronous"],
                start(Some(1), true),
            ),
            (&["failover"], LocalCommand::Failover),
            (&["stop"], LocalCommand::Stop),
            (&["status"], LocalCommand::Status),
            (&["url"], LocalCommand::Url { replica: None }),
            (
                &["url", "--replica", "3"],
                LocalCommand::Url { replica: Some(3) },
            ),
        ];
        for (args, expected) in cases {
            let argv: Vec<&str> = std::iter::once("local")
                .chain(args.iter().copied())
                .collect();
            assert_eq!(parse(&argv).unwrap(), expected, "local {args:?}");
        }
    }

    #[test]
    fn rejects_replica_counts_and_numbers_out_of_range() {
        for args in [
            &["local", "start", "--replicas", "0"][..],
            &["local", "start", "--replicas", "9"],
            &["local", "start", "--replicas", "-1"],
            &["local", "start", "--replicas"],
            &["local", "url", "--replica", "0"],
            &["local", "url", "--replica", "x"],
            &["local", "stop", "--replicas", "2"],
            &["local", "start", "--synchronous"],
            &["local", "failover", "--replicas", "1"],
        ] {
            let err = parse(args).expect_err(&format!("{args:?} should be rejected"));
            assert_ne!(
                err.kind(),
                clap::error::ErrorKind::DisplayHelp,
                "{args:?}: {err}"
            );
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
            "replicas",
        ] {
            assert!(help.contains(needle), "{needle:?} missing in:\n{help}");
        }
        <Wrapper as clap::CommandFactory>::command().debug_assert();
    }
}
