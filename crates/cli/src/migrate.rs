//! `migrate run|status|revert`: the embedded migrations, under the
//! migration advisory lock.

use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};

use crate::DatabaseArgs;
use crate::output::{self, HEADING, SUCCESS, WARNING};
use crate::target::Target;
use cruddur_db::Settings;
use cruddur_db::config::Environment;
use cruddur_db::environment::mark_environment;
use cruddur_db::migrations;

/// Options of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// What to do with the migrations (default: run).
    #[command(subcommand)]
    pub command: Option<MigrateCommand>,
}

/// What `migrate` does.
#[derive(Debug, Clone, Copy, Subcommand)]
pub enum MigrateCommand {
    /// Apply every pending migration (processes started at once queue on an
    /// advisory lock); with --prod, mark the database as production.
    Run,
    /// List every migration and whether it is applied.
    Status,
    /// Revert the most recently applied migration (destroys the data it
    /// created).
    Revert,
}

/// Runs `migrate`.
pub fn run(args: MigrateArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("migrations")?;
    let database = target.database()?;
    let command = args.command.unwrap_or(MigrateCommand::Run);
    if let MigrateCommand::Revert = command {
        return revert(&target, &database, db, settings);
    }
    let conn = &mut target.connect()?;
    if let MigrateCommand::Run = command {
        let applied = migrations::run_migrations(conn)
            .with_context(|| format!("applying the migrations to `{database}`"))?;
        if Target::marks_production(db) {
            mark_environment(conn, Environment::Production)
                .with_context(|| format!("marking `{database}` as production"))?;
            output::note(&format!("marked `{database}` as production"));
        }
        if applied.is_empty() {
            output::result(&format!("`{database}` is up to date; no migration pending"));
        } else {
            for version in &applied {
                output::result(&format!("applied {version}"));
            }
            output::success(&format!(
                "applied {} migration(s) to `{database}`",
                applied.len()
            ));
        }
    } else {
        let states = migrations::migration_status(conn)
            .with_context(|| format!("reading the migrations of `{database}`"))?;
        anstream::println!("{HEADING}{:<8}  migration{HEADING:#}", "state");
        for m in &states {
            if m.applied {
                anstream::println!("{SUCCESS}{:<8}{SUCCESS:#}  {}", "applied", m.name);
            } else {
                anstream::println!("{WARNING}{:<8}{WARNING:#}  {}", "pending", m.name);
            }
        }
        let applied = states.iter().filter(|m| m.applied).count();
        output::result(&format!(
            "{applied} applied, {} pending",
            states.len() - applied
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `migrate revert`: on the connection that passed the production check,
/// after the confirmation.
fn revert(
    target: &Target,
    database: &str,
    db: &DatabaseArgs,
    settings: &Settings,
) -> anyhow::Result<ExitCode> {
    let action = "revert a migration of";
    let question = |database: &str| {
        format!(
            "Revert the last migration of `{database}` ({}), deleting the data it holds?",
            target.url()
        )
    };
    let Some((mut conn, identity)) = target.check_and_confirm(db, settings, action, question)?
    else {
        anyhow::bail!("database `{database}` does not exist; nothing to revert");
    };
    let database = identity.database;
    match migrations::revert_last_migration(&mut conn)
        .with_context(|| format!("reverting the last migration of `{database}`"))?
    {
        Some(version) => output::success(&format!("reverted {version}")),
        None => output::result(&format!(
            "no migration is applied to `{database}`; nothing to revert"
        )),
    }
    Ok(ExitCode::SUCCESS)
}
