//! Which environment a database belongs to, recorded in the database itself.
//!
//! A database created or migrated for production is *marked*: one row in
//! `cruddur_meta.database_environment`. Destructive tools read the mark and
//! refuse to run on a production database unless told otherwise, so the
//! protection holds however the database is reached (through
//! `PROD_CONNECTION_URL`, or any other spelling of it). A database that is
//! not marked is still recognised as the one `PROD_CONNECTION_URL` names by
//! asking both servers which database they serve
//! ([`crate::admin::DatabaseIdentity`]), never by comparing text.
//!
//! # Why the table lives outside the migrations
//!
//! The mark is created with `CREATE SCHEMA/TABLE IF NOT EXISTS` when a
//! database is first marked, in its own schema `cruddur_meta`, instead of by
//! an embedded migration:
//! - it must survive `schema-load` (revert every migration, run them again):
//!   no `down.sql` touches `cruddur_meta`, so the mark outlives the tables it
//!   protects;
//! - `diesel print-schema` reads only the `public` schema, so `src/schema.rs`
//!   and the CI schema-drift check do not see it, and a development database
//!   (never marked) has no extra table at all;
//! - a migration would make every database carry it, and reverting that
//!   migration would silently remove the protection.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};

use crate::config::Environment;
use crate::error::{Error, Result};

/// The schema that holds cruddur-db's own bookkeeping (never `public`).
pub const METADATA_SCHEMA: &str = "cruddur_meta";

/// Serialises concurrent marking of one database (`pg_advisory_xact_lock`),
/// so that two `CREATE … IF NOT EXISTS` cannot race; the first 8 bytes of
/// "cruddure" read as an integer.
const MARK_LOCK_KEY: i64 = i64::from_be_bytes(*b"cruddure");

/// The table's Diesel definition; private, because only this module reads
/// or writes it and `src/schema.rs` (generated from `public`) must not hold it.
mod meta_schema {
    diesel::table! {
        /// At most one row: the environment this database was marked as.
        cruddur_meta.database_environment (singleton) {
            /// Always `true`; the primary key that keeps the table to one row.
            singleton -> Bool,
            /// `development` or `production`.
            environment -> Text,
            /// When the database was first marked with this environment.
            marked_at -> Timestamptz,
            /// The role that marked it.
            marked_by -> Text,
        }
    }
}

use meta_schema::database_environment;

/// The mark a database carries.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct EnvironmentMark {
    /// The environment recorded.
    #[serde(serialize_with = "serialize_environment")]
    pub environment: Environment,
    /// When it was recorded (kept when the same mark is written again).
    pub marked_at: DateTime<Utc>,
    /// The database role that recorded it.
    pub marked_by: String,
}

fn serialize_environment<S: serde::Serializer>(e: &Environment, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(e)
}

impl EnvironmentMark {
    /// Whether the mark says production.
    pub fn is_production(&self) -> bool {
        self.environment == Environment::Production
    }
}

fn parse_environment(text: &str) -> Result<Environment> {
    match text {
        "production" => Ok(Environment::Production),
        "development" => Ok(Environment::Development),
        other => Err(Error::Migration(
            format!(
                "{METADATA_SCHEMA}.database_environment holds an unknown environment `{other}`"
            )
            .into(),
        )),
    }
}

/// Records `environment` as this database's environment, creating the
/// metadata schema and table when missing. Writing the mark it already has
/// changes nothing (the first `marked_at` is kept).
pub fn mark_environment(conn: &mut PgConnection, environment: Environment) -> Result<()> {
    conn.transaction(|conn| {
        diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
            .bind::<BigInt, _>(MARK_LOCK_KEY)
            .execute(conn)?;
        diesel::sql_query(format!("CREATE SCHEMA IF NOT EXISTS {METADATA_SCHEMA}"))
            .execute(conn)?;
        diesel::sql_query(format!(
            "CREATE TABLE IF NOT EXISTS {METADATA_SCHEMA}.database_environment (\
             singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton), \
             environment text NOT NULL CHECK (environment IN ('development', 'production')), \
             marked_at timestamptz NOT NULL DEFAULT now(), \
             marked_by text NOT NULL DEFAULT current_user)"
        ))
        .execute(conn)?;
        diesel::sql_query(format!(
            "INSERT INTO {METADATA_SCHEMA}.database_environment (environment) VALUES ($1) \
             ON CONFLICT (singleton) DO UPDATE \
             SET environment = EXCLUDED.environment, marked_at = now(), marked_by = current_user \
             WHERE database_environment.environment IS DISTINCT FROM EXCLUDED.environment"
        ))
        .bind::<Text, _>(environment.to_string())
        .execute(conn)?;
        Ok(())
    })
}

/// Writes `mark` as it was read ([`read_mark`]) on another database: the
/// same environment, `marked_at` and `marked_by`, for a database rebuilt
/// under the same name (`setup` drops and creates it again), so that the
/// rebuilt one is refused where the old one was. Replaces any mark the
/// database has.
pub fn restore_mark(conn: &mut PgConnection, mark: &EnvironmentMark) -> Result<()> {
    conn.transaction(|conn| {
        mark_environment(conn, mark.environment)?;
        diesel::update(database_environment::table)
            .set((
                database_environment::environment.eq(mark.environment.to_string()),
                database_environment::marked_at.eq(mark.marked_at),
                database_environment::marked_by.eq(&mark.marked_by),
            ))
            .execute(conn)?;
        Ok(())
    })
}

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    present: bool,
}

/// The mark of the database `conn` is connected to, or `None` when it was
/// never marked. Reads only; creates nothing.
pub fn read_mark(conn: &mut PgConnection) -> Result<Option<EnvironmentMark>> {
    let present = diesel::sql_query("SELECT to_regclass($1) IS NOT NULL AS present")
        .bind::<Text, _>(format!("{METADATA_SCHEMA}.database_environment"))
        .get_result::<Present>(conn)?
        .present;
    if !present {
        return Ok(None);
    }
    let row: Option<(String, DateTime<Utc>, String)> = database_environment::table
        .select((
            database_environment::environment,
            database_environment::marked_at,
            database_environment::marked_by,
        ))
        .first(conn)
        .optional()?;
    row.map(|(environment, marked_at, marked_by)| {
        Ok(EnvironmentMark {
            environment: parse_environment(&environment)?,
            marked_at,
            marked_by,
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::pg::Pg;

    #[test]
    fn mark_is_read_from_the_metadata_schema() {
        let query = database_environment::table.select(database_environment::environment);
        let sql = debug_query::<Pg, _>(&query).to_string();
        assert!(
            sql.contains(r#""cruddur_meta"."database_environment""#),
            "{sql}"
        );
    }
}
