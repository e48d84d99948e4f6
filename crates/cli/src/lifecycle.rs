//! The database's lifecycle: `create`, `drop`, `schema-load`, `setup`,
//! `prepare`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::GlobalArgs;
use crate::output;
use crate::target::Target;
use cruddur_db::config::Environment;
use cruddur_db::environment::mark_environment;
use cruddur_db::{admin, migrations};

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
    let created = admin::create_database(target.url())
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
) -> anyhow::Result<Option<cruddur_db::admin::DatabaseIdentity>> {
    Ok(target
        .check_and_confirm(global, action, question)?
        .map(|(_conn, identity)| identity))
}

fn drop_checked(
    target: &Target,
    identity: &cruddur_db::admin::DatabaseIdentity,
    force: bool,
) -> anyhow::Result<bool> {
    let database = &identity.database;
    admin::drop_checked(target.url(), identity, force).map_err(|e| {
        // SQLSTATE 55006 (object_in_use): other sessions are connected.
        let in_use = matches!(
            &e,
            cruddur_db::Error::Query(diesel::result::Error::DatabaseError(_, info))
                if info.message().contains("is being accessed by other users")
        );
        let err = anyhow::Error::new(e).context(format!("dropping database `{database}`"));
        if in_use {
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
            target.url()
        )
    })?;
    let dropped = match &checked {
        Some(identity) => drop_checked(&target, identity, args.force)?,
        None => false,
    };
    let database = checked
        .map(|i| i.database)
        .or_else(|| target.url().database())
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
            target.url()
        )
    };
    let Some((mut conn, identity)) = target.check_and_confirm(global, action, question)? else {
        anyhow::bail!(
            "database `{}` does not exist; create it with `cruddur-db create`",
            target.url().database().unwrap_or_default()
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
            target.url()
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
    output::step("create, migrate, seed");
    let report = admin::prepare_checked(target.url(), |reached| match &checked {
        Some(dropped) if !dropped.same_server(reached) => Err(cruddur_db::Error::Refused {
            action: format!("set up `{database}`"),
            reason: format!(
                "{} now reaches another server than the one `{database}` was dropped on",
                target.url()
            ),
        }),
        _ => Ok(()),
    })
    .with_context(|| format!("setting up `{database}`"))?;
    if report.created {
        output::result(&format!("created database `{database}`"));
    }
    output::result(&format!(
        "applied {} migration(s)",
        report.migrations_applied.len()
    ));
    if report.seeded {
        output::result("loaded the reference seed");
    }
    if Target::marks_production(global) {
        mark_if_prod(&mut target.connect()?, &database, global)?;
    }
    output::success(&format!("database `{database}` is set up"));
    Ok(ExitCode::SUCCESS)
}

/// `prepare`: create if missing, migrate, seed a fresh database.
pub fn prepare(global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(global)?;
    let database = target.database()?;
    let report =
        admin::prepare(target.url()).with_context(|| format!("preparing database `{database}`"))?;
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
