//! The database's lifecycle: `create`, `drop`, `schema-load`, `setup`,
//! `prepare`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;

use crate::DatabaseArgs;
use crate::output;
use crate::target::Target;
use cruddur_db::Settings;
use cruddur_db::config::Environment;
use cruddur_db::environment::{mark_environment, read_mark, restore_mark};
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
    db: &DatabaseArgs,
) -> anyhow::Result<()> {
    if Target::marks_production(db) {
        mark_environment(conn, Environment::Production)
            .with_context(|| format!("marking `{database}` as production"))?;
        output::note(&format!("marked `{database}` as production"));
    }
    Ok(())
}

/// `create`: creates the database if missing; with `--prod`, marks it.
pub fn create(db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("create")?;
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
    if Target::marks_production(db) {
        let conn = &mut target.connect()?;
        mark_if_prod(conn, &database, db)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The server's identity of the database to act on after
/// [`Target::check_and_confirm`], or `None` when it does not exist; the
/// checking connection is closed, so that it does not hold the database
/// open for a drop.
fn check_then_confirm(
    target: &Target,
    db: &DatabaseArgs,
    settings: &Settings,
    action: &str,
    question: impl FnOnce(&str) -> String,
) -> anyhow::Result<Option<cruddur_db::admin::DatabaseIdentity>> {
    Ok(target
        .check_and_confirm(db, settings, action, question)?
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
pub fn drop(args: DropArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("drop")?;
    let checked = check_then_confirm(&target, db, settings, "drop", |database| {
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
        .or_else(|| target.url().requested_database())
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
pub fn schema_load(db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve(db, settings)?.session("schema-load")?;
    let action = "reload the schema of";
    let question = |database: &str| {
        format!(
            "Revert every migration of `{database}` ({}), deleting all its data, and apply them again?",
            target.url()
        )
    };
    let Some((mut conn, identity)) = target.check_and_confirm(db, settings, action, question)?
    else {
        anyhow::bail!(
            "database `{}` does not exist; create it with `cruddur-db create`",
            target.url().requested_database().unwrap_or_default()
        );
    };
    let database = identity.database;
    let reload = migrations::reload_schema(&mut conn).with_context(|| {
        format!("reloading the schema of `{database}` (in one transaction: nothing changed)")
    })?;
    output::success(&format!(
        "reloaded the schema of `{database}`: {} migration(s) reverted, {} applied",
        reload.reverted.len(),
        reload.applied.len()
    ));
    Ok(ExitCode::SUCCESS)
}

/// `setup`: drop (if present), create, migrate, seed; stops at the first
/// failure.
///
/// Everything the rebuild needs is established before anything is
/// dropped: the name to create again (the server's `current_database()`,
/// which a service file, `PGDATABASE` or libpq's defaults may have chosen,
/// and which must be the name the URL asks libpq for, or the recreated
/// database would not be the one the URL reaches), that the role may
/// create databases, and the database's environment mark, which the
/// rebuilt database gets back before any migration. The database created,
/// migrated and seeded must be on the server the old one was dropped from.
pub fn setup(args: SetupArgs, db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(db, settings)?.session("setup")?;
    output::step("drop");
    let action = "set up (drop and recreate)";
    let checked = target.check_and_confirm(db, settings, action, |database| {
        format!(
            "Drop database `{database}` ({}) and set it up anew?",
            target.url()
        )
    })?;
    let requested = target.url().requested_database();
    let (database, dropped) = match checked {
        Some((mut conn, identity)) => {
            let mark = read_mark(&mut conn).context("reading the environment mark")?;
            // The checking connection would hold the database open.
            std::mem::drop(conn);
            if requested.as_deref() != Some(identity.database.as_str()) {
                anyhow::bail!(
                    "refusing to {action} `{}`: {} reaches `{}` but asks libpq for {}, so the \
                     database created again would not be the one it reaches; nothing was dropped",
                    identity.database,
                    target.url(),
                    identity.database,
                    requested.map_or_else(|| "no database".to_owned(), |r| format!("`{r}`")),
                );
            }
            admin::ensure_may_create(target.url(), &format!("{action} `{}`", identity.database))
                .with_context(|| {
                    format!("checking that `{}` can be created again", identity.database)
                })
                .context("nothing was dropped")?;
            drop_checked(&target, &identity, args.force)?;
            output::result(&format!("dropped database `{}`", identity.database));
            (identity.database.clone(), Some((identity, mark)))
        }
        None => {
            let database = requested.with_context(|| {
                format!(
                    "{} names no database and libpq's defaults name none either",
                    target.url()
                )
            })?;
            output::result(&format!(
                "database `{database}` does not exist; nothing to drop"
            ));
            (database, None)
        }
    };
    output::step("create, migrate, seed");
    let report = admin::prepare_checked(target.url(), |conn, reached| {
        let Some((old, mark)) = &dropped else {
            return Ok(());
        };
        if !old.same_server(reached) {
            return Err(cruddur_db::Error::Refused {
                action: format!("set up `{database}`"),
                reason: format!(
                    "{} now reaches another server than the one `{database}` was dropped on",
                    target.url()
                ),
            });
        }
        if let Some(mark) = mark {
            restore_mark(conn, mark)?;
        }
        Ok(())
    })
    .with_context(|| format!("setting up `{database}`"))?;
    if report.created {
        output::result(&format!("created database `{database}`"));
    }
    if let Some((_, Some(mark))) = &dropped {
        output::result(&format!(
            "kept its mark: {} (since {}, by {})",
            mark.environment,
            mark.marked_at.format("%Y-%m-%d %H:%M:%S UTC"),
            mark.marked_by
        ));
    }
    output::result(&format!(
        "applied {} migration(s)",
        report.migrations_applied.len()
    ));
    if report.seeded {
        output::result("loaded the reference seed");
    }
    if Target::marks_production(db) {
        mark_if_prod(&mut target.connect()?, &database, db)?;
    }
    output::success(&format!("database `{database}` is set up"));
    Ok(ExitCode::SUCCESS)
}

/// `prepare`: create if missing, migrate, seed a migrated database with no
/// user (see [`admin::prepare`]).
pub fn prepare(db: &DatabaseArgs, settings: &Settings) -> anyhow::Result<ExitCode> {
    let target = Target::resolve_starting_local(db, settings)?.session("prepare")?;
    let database = target.database()?;
    let report =
        admin::prepare(target.url()).with_context(|| format!("preparing database `{database}`"))?;
    if Target::marks_production(db) {
        let conn = &mut target.connect()?;
        mark_if_prod(conn, &database, db)?;
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
                "not seeded (it has users)"
            }
        ));
    }
    Ok(ExitCode::SUCCESS)
}
