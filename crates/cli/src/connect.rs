//! `connect`: psql on the database, with the connection handed over in
//! libpq's `PG*` environment variables so that the password never appears
//! in psql's argument list (which `ps` shows to every user).

use std::process::{Command, ExitCode};

use anyhow::{Context, bail};
use clap::Args;

use crate::DatabaseArgs;
use crate::libpq::{self, PARAMETER_VARIABLES};
use crate::target::Target;
use cruddur_db::Settings;

/// Options of `connect`.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// The psql program to run.
    #[arg(long, value_name = "PROGRAM", default_value = "psql")]
    pub psql: String,

    /// Arguments passed on to psql, after `--` (e.g. `-- -c 'select 1'`).
    #[arg(last = true, value_name = "PSQL_ARGS")]
    pub psql_args: Vec<String>,
}

/// Runs `connect`: replaces this process with psql (on Unix), so psql owns
/// the terminal and its exit status is the command's.
pub fn run(args: ConnectArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("psql")?;
    let env = libpq::environment(target.url()).context("handing the connection to psql")?;
    let mut command = Command::new(&args.psql);
    // Variables already in the environment must not mix with the URL's:
    // a stray PGHOST would send psql elsewhere.
    for (_, var) in PARAMETER_VARIABLES {
        command.env_remove(var);
    }
    command.envs(env.vars.iter().map(|(k, v)| (*k, v)));
    if let Some(conninfo) = &env.conninfo {
        // Only parameters without a variable are here; none is a secret.
        command.arg(format!("--dbname={conninfo}"));
    }
    command.args(&args.psql_args);
    tracing::debug!(program = %args.psql, ?env, "running psql");
    exec(command, &args.psql)
}

#[cfg(unix)]
fn exec(mut command: Command, program: &str) -> anyhow::Result<ExitCode> {
    use std::os::unix::process::CommandExt;
    let error = command.exec();
    bail!("cannot run `{program}`: {error} (is the PostgreSQL client installed and on PATH?)")
}

#[cfg(not(unix))]
fn exec(mut command: Command, program: &str) -> anyhow::Result<ExitCode> {
    let status = command.status().with_context(|| {
        format!("cannot run `{program}` (is the PostgreSQL client installed and on PATH?)")
    })?;
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}
