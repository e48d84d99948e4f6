//! The database's lifecycle: `create`, `drop`, `schema-load`, `setup`,
//! `prepare`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::GlobalArgs;
use crate::cli::output;
use crate::cli::target::{Target, confirm};
use crate::config::Environment;
use crate::environment::{mark_environment, read_mark, read_mark_at};
use crate::{admin, migrations, repo};

/// Options of `drop`.
#[derive(Debug, Args)]
pub struct DropArgs {
    /// End the other sessions connected to the database first
    /// (`DROP DATABASE … WITH (FORCE)`); without it, open sessions make the
    /// drop fail.
    #[arg(long)]
    pub force: bool,
}

/// Options of `setup`.
#[derive(Debug, Args)]
pub struct SetupArgs {
    /// End the other sessions connected to the database before dropping it.
    #[arg(long)]
    pub force: bool,
}

/// Marks the target as production when `--prod` was given.
fn mark_if_prod(target: &Target, global: &GlobalArgs) -> anyhow::Result<()> {
    if Target::marks_production(global) {
        let database = target.database()?;
        let conn = &mut target.connect()?;
        mark_environment(conn, Environment::Production)
            .with_context(|| format!("marking `{database}` as production"))?;
        output::note(&format!("marked `{database}` as production"));
    }
    Ok(())
}

/// `create`: creates the database if missing; with `--prod`, marks it.
pub fn create(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let database = target.database()?;
    let created = admin::create_database(&target.url)
        .with_context(|| format!("creating database `{database}`"))?;
    if created {
        output::success(&format!("created database `{database}`"));
    } else {
        output::result(&format!(
            "database `{database}` already exists; nothing to do"
        ));
    }
    mark_if_prod(&target, global)?;
    Ok(ExitCode::SUCCESS)
}

/// Reads the production mark of the target before a destructive command
/// that must not rely on an open connection to it. A failure to check is an
/// error unless `--allow-production` makes the answer irrelevant.
fn mark_before_drop(
    target: &Target,
    global: &GlobalArgs,
) -> anyhow::Result<Option<crate::EnvironmentMark>> {
    match read_mark_at(&target.url) {
        Ok(mark) => Ok(mark),
        Err(e) if global.allow_production => {
            tracing::debug!("could not read the production mark: {e}");
            Ok(None)
        }
        Err(e) => Err(e).context(
            "checking whether the database is marked as production (pass --allow-production to skip)",
        ),
    }
}

fn drop_database(target: &Target, force: bool) -> anyhow::Result<bool> {
    let database = target.database()?;
    admin::drop_database(&target.url, force).map_err(|e| {
        let text = e.to_string();
        let err = anyhow::Error::new(e).context(format!("dropping database `{database}`"));
        if text.contains("being accessed by other users") {
            err.context(
                "other sessions are connected: list them with `cruddur-db sessions`, \
                 or end them with `cruddur-db drop --force`",
            )
        } else {
            err
        }
    })
}

/// `drop`: drops the database after the production check and the
/// confirmation; a missing database is not an error.
pub fn drop(args: DropArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let database = target.database()?;
    let exists = admin::database_exists(&target.url)
        .with_context(|| format!("checking whether database `{database}` exists"))?;
    if !exists {
        output::result(&format!(
            "database `{database}` does not exist; nothing to drop"
        ));
        return Ok(ExitCode::SUCCESS);
    }
    let mark = mark_before_drop(&target, global)?;
    target.guard_destructive(global, "drop", mark.as_ref())?;
    confirm(
        global,
        &format!(
            "Drop database `{database}` ({}) and everything in it?",
            target.url
        ),
        &format!("refusing to drop `{database}`"),
    )?;
    if drop_database(&target, args.force)? {
        output::success(&format!("dropped database `{database}`"));
    } else {
        output::result(&format!(
            "database `{database}` does not exist; nothing to drop"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `schema-load`: reverts every migration and applies them again.
pub fn schema_load(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let database = target.database()?;
    let conn = &mut target.connect()?;
    let mark = read_mark(conn).context("reading the production mark")?;
    target.guard_destructive(global, "reload the schema of", mark.as_ref())?;
    let reverted = migrations::revert_all_migrations(conn)
        .with_context(|| format!("reverting the migrations of `{database}`"))?;
    let applied = migrations::run_migrations(conn)
        .with_context(|| format!("applying the migrations to `{database}`"))?;
    output::success(&format!(
        "reloaded the schema of `{database}`: {} migration(s) reverted, {} applied",
        reverted.len(),
        applied.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `setup`: drop (if present), create, migrate, seed; stops at the first
/// failure.
pub fn setup(args: SetupArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(global)?;
    let database = target.database()?;
    output::step("drop");
    let exists = admin::database_exists(&target.url)
        .with_context(|| format!("checking whether database `{database}` exists"))?;
    if exists {
        let mark = mark_before_drop(&target, global)?;
        target.guard_destructive(global, "set up (drop and recreate)", mark.as_ref())?;
        drop_database(&target, args.force)?;
        output::result(&format!("dropped database `{database}`"));
    } else {
        target.guard_destructive(global, "set up", None)?;
        output::result(&format!(
            "database `{database}` does not exist; nothing to drop"
        ));
    }
    output::step("create");
    admin::create_database(&target.url)
        .with_context(|| format!("creating database `{database}`"))?;
    output::result(&format!("created database `{database}`"));
    mark_if_prod(&target, global)?;
    output::step("migrate");
    let conn = &mut target.connect()?;
    let applied = migrations::run_migrations(conn)
        .with_context(|| format!("applying the migrations to `{database}`"))?;
    output::result(&format!("applied {} migration(s)", applied.len()));
    output::step("seed");
    let report =
        repo::seed::seed_reference(conn).with_context(|| format!("seeding `{database}`"))?;
    output::result(&format!(
        "seeded {} user(s), {} activit{}",
        report.users,
        report.activities,
        if report.activities == 1 { "y" } else { "ies" }
    ));
    output::success(&format!("database `{database}` is set up"));
    Ok(ExitCode::SUCCESS)
}

/// `prepare`: create if missing, migrate, seed a fresh database.
pub fn prepare(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(global)?;
    let database = target.database()?;
    let report =
        admin::prepare(&target.url).with_context(|| format!("preparing database `{database}`"))?;
    mark_if_prod(&target, global)?;
    if !report.created && report.migrations_applied.is_empty() && !report.seeded {
        output::result(&format!("database `{database}` is ready; nothing to do"));
    } else {
        output::success(&format!(
            "database `{database}` is ready: {}, {} migration(s) applied, {}",
            if report.created { "created" } else { "existed" },
            report.migrations_applied.len(),
            if report.seeded {
                "seeded"
            } else {
                "not seeded (it was not fresh)"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}
