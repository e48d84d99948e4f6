//! The database's lifecycle: `create`, `drop`, `schema-load`, `setup`,
//! `prepare`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::cli::GlobalArgs;
use crate::cli::output;
use crate::cli::target::Target;
use crate::config::Environment;
use crate::environment::mark_environment;
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

/// Marks the database of `conn` as production when `--prod` was given.
fn mark_if_prod(
    conn: &mut diesel::PgConnection,
    database: &str,
    global: &GlobalArgs,
) -> anyhow::Result<()> {
    if Target::marks_production(global) {
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
    if Target::marks_production(global) {
        let conn = &mut target.connect()?;
        mark_if_prod(conn, &database, global)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's identity of the database to act on after
/// [`Target::check_and_confirm`], or `None` when it does not exist; the
/// checking connection is closed, so that it does not hold the database
/// open for a drop.
fn check_then_confirm(
    target: &Target,
    global: &GlobalArgs,
    action: &str,
    question: impl FnOnce(&str) -> String,
) -> anyhow::Result<Option<crate::admin::DatabaseIdentity>> {
    Ok(target
        .check_and_confirm(global, action, question)?
        .map(|(_conn, identity)| identity))
}

fn drop_checked(
    target: &Target,
    identity: &crate::admin::DatabaseIdentity,
    force: bool,
) -> anyhow::Result<bool> {
    let database = &identity.database;
    admin::drop_checked(&target.url, identity, force).map_err(|e| {
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

/// `drop`: drops the database the server names on a connection to the
/// target, after the production check and the confirmation; a missing
/// database is not an error.
pub fn drop(args: DropArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let checked = check_then_confirm(&target, global, "drop", |database| {
        format!(
            "Drop database `{database}` ({}) and everything in it?",
            target.url
        )
    })?;
    let dropped = match &checked {
        Some(identity) => drop_checked(&target, identity, args.force)?,
        None => false,
    };
    let database = checked
        .map(|i| i.database)
        .or_else(|| target.url.database())
        .unwrap_or_default();
    if dropped {
        output::success(&format!("dropped database `{database}`"));
    } else {
        output::result(&format!(
            "database `{database}` does not exist; nothing to drop"
        ));
    }
    Ok(ExitCode::SUCCESS)
}

/// `schema-load`: reverts every migration and applies them again, on the
/// connection that passed the checks.
pub fn schema_load(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(global)?;
    let action = "reload the schema of";
    let question = |database: &str| {
        format!(
            "Revert every migration of `{database}` ({}), deleting all its data, and apply them again?",
            target.url
        )
    };
    let Some((mut conn, identity)) = target.check_and_confirm(global, action, question)? else {
        anyhow::bail!(
            "database `{}` does not exist; create it with `cruddur-db create`",
            target.url.database().unwrap_or_default()
        );
    };
    let database = identity.database;
    let conn = &mut conn;
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
/// failure. The database created, migrated and seeded must be the one
/// dropped: each connection is checked against the server's answer.
pub fn setup(args: SetupArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(global)?;
    output::step("drop");
    let action = "set up (drop and recreate)";
    let checked = check_then_confirm(&target, global, action, |database| {
        format!(
            "Drop database `{database}` ({}) and set it up anew?",
            target.url
        )
    })?;
    let database = match &checked {
        Some(identity) => {
            drop_checked(&target, identity, args.force)?;
            output::result(&format!("dropped database `{}`", identity.database));
            identity.database.clone()
        }
        None => {
            let database = target.database()?;
            output::result(&format!(
                "database `{database}` does not exist; nothing to drop"
            ));
            database
        }
    };
    output::step("create");
    admin::create_database(&target.url)
        .with_context(|| format!("creating database `{database}`"))?;
    output::result(&format!("created database `{database}`"));
    let conn = &mut target.connect()?;
    let reached =
        crate::admin::identify(conn).context("asking the server which database this is")?;
    let same_server = checked.as_ref().is_none_or(|c| c.same_server(&reached));
    if reached.database != database || !same_server {
        anyhow::bail!(
            "refusing to go on: {} reaches `{}`, not the database `{database}` that was just created",
            target.url,
            reached.database
        );
    }
    mark_if_prod(conn, &database, global)?;
    output::step("migrate");
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
    if Target::marks_production(global) {
        let conn = &mut target.connect()?;
        mark_if_prod(conn, &database, global)?;
    }
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
