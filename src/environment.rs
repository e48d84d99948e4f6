//! Which environment a database belongs to, recorded in the database itself.
//!
//! A database created or migrated for production is *marked*: one row in
//! `cruddur_meta.database_environment`. Destructive tools read the mark and
//! refuse to run on a production database unless told otherwise, so the
//! protection holds however the database is reached (through
//! `PROD_CONNECTION_URL`, or the same URL passed under another name).
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

use crate::config::{DatabaseUrl, Environment};
use crate::error::{Error, Result};
use crate::pool::establish;

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
        other => Err(Error::Migration(format!(
            "{METADATA_SCHEMA}.database_environment holds an unknown environment `{other}`"
        ))),
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

/// The mark of the database named in `url`, on a connection of its own that
/// is closed before this returns. A database that does not exist has no
/// mark (`Ok(None)`); any other connection failure is returned, so that a
/// caller guarding a destructive command cannot mistake "could not check"
/// for "not production".
pub fn read_mark_at(url: &DatabaseUrl) -> Result<Option<EnvironmentMark>> {
    match establish(url) {
        Ok(mut conn) => read_mark(&mut conn),
        Err(Error::DatabaseMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether two connection strings name the same database: same host, port
/// (5432 when unset) and database name, whatever the credentials or
/// parameters. Used to recognise the production URL passed under another
/// name. Strings that are not URLs are compared whole.
pub fn same_database(a: &DatabaseUrl, b: &DatabaseUrl) -> bool {
    fn key(u: &DatabaseUrl) -> Option<(String, u16, Option<String>)> {
        let parsed = url::Url::parse(u.expose()).ok()?;
        let host = parsed
            .host_str()
            .unwrap_or("localhost")
            .trim_matches(['[', ']'])
            .to_ascii_lowercase();
        let host = match host.as_str() {
            "" | "127.0.0.1" | "::1" => "localhost".to_owned(),
            _ => host,
        };
        Some((host, parsed.port().unwrap_or(5432), u.database()))
    }
    match (key(a), key(b)) {
        (Some(ka), Some(kb)) => ka == kb,
        _ => a.expose().trim() == b.expose().trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use diesel::debug_query;
    use diesel::pg::Pg;

    fn url(s: &str) -> DatabaseUrl {
        DatabaseUrl::parse(s).unwrap()
    }

    #[test]
    fn same_database_ignores_credentials_and_parameters() {
        let cases = [
            (
                "postgres://a:x@db.example.com/cruddur",
                "postgresql://b@DB.example.com:5432/cruddur?sslmode=require",
                true,
            ),
            (
                "postgres://127.0.0.1/cruddur",
                "postgres://localhost:5432/cruddur",
                true,
            ),
            (
                "postgres://db.example.com/cruddur",
                "postgres://db.example.com/other",
                false,
            ),
            (
                "postgres://db.example.com/cruddur",
                "postgres://db.example.com:5433/cruddur",
                false,
            ),
            (
                "postgres://db.example.com/cruddur",
                "postgres://other.example.com/cruddur",
                false,
            ),
        ];
        for (a, b, same) in cases {
            assert_eq!(same_database(&url(a), &url(b)), same, "{a} vs {b}");
        }
    }

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
