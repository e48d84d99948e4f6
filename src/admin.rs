//! Database lifecycle: create, drop, and `prepare` (create + migrate + seed).
//!
//! Creating and dropping connect to the server's maintenance database
//! (`postgres`, else `template1`) with the URL's credentials, never to the
//! database being dropped.

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::config::DatabaseUrl;
use crate::error::{Error, Result};
use crate::pool::establish;

/// Quotes an identifier for SQL that cannot take bind parameters
/// (`CREATE DATABASE`, `DROP DATABASE`).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn target_database(url: &DatabaseUrl) -> Result<String> {
    url.database().ok_or_else(|| Error::InvalidUrl {
        url: url.to_string(),
        reason: "the URL names no database".into(),
    })
}

/// Connects to the maintenance database of `url`'s server.
///
/// Tries `postgres`, then `template1`; an authentication failure or an
/// unreachable server is reported as such, not as a missing database.
pub fn connect_maintenance(url: &DatabaseUrl) -> Result<PgConnection> {
    match establish(&url.with_database("postgres")) {
        Err(Error::DatabaseMissing { .. }) => {
            establish(&url.with_database("template1")).map_err(|e| relabel(e, url))
        }
        other => other.map_err(|e| relabel(e, url)),
    }
}

/// Errors about the maintenance database name the user's URL instead.
fn relabel(e: Error, url: &DatabaseUrl) -> Error {
    let shown = url.to_string();
    match e {
        Error::Unreachable { message, .. } => Error::Unreachable {
            url: shown,
            message,
        },
        Error::Authentication { message, .. } => Error::Authentication {
            url: shown,
            message,
        },
        Error::Connection { message, .. } => Error::Connection {
            url: shown,
            message,
        },
        other => other,
    }
}

#[derive(QueryableByName)]
struct Exists {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    exists: bool,
}

fn exists_on(conn: &mut PgConnection, name: &str) -> Result<bool> {
    Ok(
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<Text, _>(name)
            .get_result::<Exists>(conn)?
            .exists,
    )
}

/// Whether the database named in `url` exists on its server.
pub fn database_exists(url: &DatabaseUrl) -> Result<bool> {
    let name = target_database(url)?;
    exists_on(&mut connect_maintenance(url)?, &name)
}

/// Creates the database named in `url` unless it exists; returns whether
/// it was created. Safe to run concurrently with itself.
pub fn create_database(url: &DatabaseUrl) -> Result<bool> {
    let name = target_database(url)?;
    let conn = &mut connect_maintenance(url)?;
    if exists_on(conn, &name)? {
        return Ok(false);
    }
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(&name))).execute(conn) {
        Ok(_) => Ok(true),
        // Someone else created it between the check and here.
        Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(false),
        Err(e) if e.to_string().contains("already exists") => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Drops the database named in `url` if it exists; returns whether it was
/// dropped. With `force`, other sessions connected to it are ended first
/// (`DROP DATABASE … WITH (FORCE)`); without it, open sessions make the
/// drop fail with the server's explanation.
pub fn drop_database(url: &DatabaseUrl, force: bool) -> Result<bool> {
    let name = target_database(url)?;
    let conn = &mut connect_maintenance(url)?;
    if !exists_on(conn, &name)? {
        return Ok(false);
    }
    let sql = format!(
        "DROP DATABASE IF EXISTS {}{}",
        quote_ident(&name),
        if force { " WITH (FORCE)" } else { "" }
    );
    diesel::sql_query(sql).execute(conn)?;
    Ok(true)
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrepareReport {
    /// The database did not exist and was created.
    pub created: bool,
    /// Versions of the migrations applied by this call.
    pub migrations_applied: Vec<String>,
    /// The reference seed was loaded (only into a fresh database).
    pub seeded: bool,
}

/// Makes the database in `url` ready to use, idempotently: creates it if
/// missing, applies pending migrations, and loads the reference seed only
/// into a fresh database (one that had no migrations applied before).
/// Running it again changes nothing.
pub fn prepare(url: &DatabaseUrl) -> Result<PrepareReport> {
    let created = create_database(url)?;
    let conn = &mut establish(url)?;
    let fresh = crate::migrations::migration_status(conn)?
        .iter()
        .all(|m| !m.applied);
    let migrations_applied = crate::migrations::run_migrations(conn)?;
    let seeded = if fresh {
        crate::repo::seed::seed_reference(conn)?.inserted_anything()
    } else {
        false
    };
    Ok(PrepareReport {
        created,
        migrations_applied,
        seeded,
    })
}
