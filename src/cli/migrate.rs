//! `migrate run|status|revert`: the embedded migrations, under the
//! migration advisory lock.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use diesel::migration::MigrationSource;
use diesel::pg::Pg;

use crate::cli::GlobalArgs;
use crate::cli::output::{self, HEADING, SUCCESS, WARNING};
use crate::cli::target::Target;
use crate::config::Environment;
use crate::environment::{mark_environment, read_mark};
use crate::migrations;

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
pub fn run(args: MigrateArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let database = target.database()?;
    let conn = &mut target.connect()?;
    match args.command.unwrap_or(MigrateCommand::Run) {
        MigrateCommand::Run => {
            let applied = migrations::run_migrations(conn)
                .with_context(|| format!("applying the migrations to `{database}`"))?;
            if Target::marks_production(global) {
                mark_environment(conn, Environment::Production)
                    .with_context(|| format!("marking `{database}` as production"))?;
                output::note(&format!("marked `{database}` as production"));
            }
            if applied.is_empty() {
                output::result(&format!("`{database}` is up to date; no migration pending"));
            } else {
                let names = names_by_version();
                for version in &applied {
                    output::result(&format!("applied {}", name_of(&names, version)));
                }
                output::success(&format!(
                    "applied {} migration(s) to `{database}`",
                    applied.len()
                ));
            }
        }
        MigrateCommand::Status => {
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
        MigrateCommand::Revert => {
            let mark = read_mark(conn).context("reading the production mark")?;
            target.guard_destructive(global, "revert a migration of", mark.as_ref())?;
            match migrations::revert_last_migration(conn)
                .with_context(|| format!("reverting the last migration of `{database}`"))?
            {
                Some(version) => output::success(&format!(
                    "reverted {}",
                    name_of(&names_by_version(), &version)
                )),
                None => output::result(&format!(
                    "no migration is applied to `{database}`; nothing to revert"
                )),
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The folder name (`2026-11-24-000003_create_activities`) of each embedded
/// migration, by version (`20261124000003`): the library reports what it
/// applied or reverted by version, `migrate status` lists folder names, and
/// every subcommand names a migration the same way, as `migrations/` does.
fn names_by_version() -> HashMap<String, String> {
    MigrationSource::<Pg>::migrations(&migrations::MIGRATIONS)
        .map(|all| {
            all.iter()
                .map(|m| (m.name().version().to_string(), m.name().to_string()))
                .collect()
        })
        .unwrap_or_default()
}

/// The folder name of `version`, or the version itself when it is not one
/// of the embedded migrations (applied by another build).
fn name_of<'a>(names: &'a HashMap<String, String>, version: &'a str) -> &'a str {
    names.get(version).map_or(version, String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_map_to_the_folder_names_status_lists() {
        let names = names_by_version();
        assert_eq!(
            name_of(&names, "20261124000003"),
            "2026-11-24-000003_create_activities",
            "{names:?}"
        );
        assert_eq!(name_of(&names, "29991231000000"), "29991231000000");
        assert_eq!(
            names.len(),
            std::fs::read_dir("migrations").map_or(0, |d| d.count())
        );
    }
}
