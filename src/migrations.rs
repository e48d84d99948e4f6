//! Embedded migrations, applied under a PostgreSQL advisory lock.
//!
//! The migrations are the files in `migrations/`, embedded at compile time
//! (`build.rs` makes cargo rebuild when they change). They are recorded in
//! Diesel's own `__diesel_schema_migrations` table, so the stock
//! `diesel migration run` and this module agree on what is applied.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

/// The migrations in `migrations/`, embedded in the library.
pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// The advisory lock key that serialises migration runs on one database
/// (`pg_advisory_lock`); it is the first 8 bytes of "cruddurm" read as an
/// integer, so that `sessions` can recognise it.
pub const MIGRATION_LOCK_KEY: i64 = i64::from_be_bytes(*b"cruddurm");

/// One migration and whether it is applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct MigrationState {
    /// The migration's version (the directory name's leading timestamp,
    /// digits only), as Diesel records it.
    pub version: String,
    /// The full directory name.
    pub name: String,
    /// Whether `__diesel_schema_migrations` lists it.
    pub applied: bool,
}

fn migration_error(e: Box<dyn std::error::Error + Send + Sync>) -> Error {
    Error::Migration(e)
}

/// Holds the migration advisory lock for as long as it lives.
///
/// While it is held the session's statement timeout is off: waiting for
/// another runner's lock, and a long migration, are not runaway statements.
/// The previous timeout is restored afterwards.
struct MigrationLock<'a> {
    conn: &'a mut PgConnection,
    previous_timeout: String,
}

#[derive(QueryableByName)]
struct Setting {
    #[diesel(sql_type = Text)]
    value: String,
}

fn set_statement_timeout(conn: &mut PgConnection, value: &str) -> QueryResult<()> {
    diesel::sql_query("SELECT set_config('statement_timeout', $1, false) AS value")
        .bind::<Text, _>(value)
        .get_result::<Setting>(conn)
        .map(drop)
}

impl<'a> MigrationLock<'a> {
    fn acquire(conn: &'a mut PgConnection) -> Result<Self> {
        let previous_timeout =
            diesel::sql_query("SELECT current_setting('statement_timeout') AS value")
                .get_result::<Setting>(conn)?
                .value;
        set_statement_timeout(conn, "0")?;
        let lock = Self {
            conn,
            previous_timeout,
        };
        diesel::sql_query("SELECT pg_advisory_lock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(lock.conn)?;
        Ok(lock)
    }
}

impl Drop for MigrationLock<'_> {
    fn drop(&mut self) {
        // Unlocking a lock this session does not hold only warns, so this
        // is also right when acquiring failed half-way.
        let unlocked = diesel::sql_query("SELECT pg_advisory_unlock($1)")
            .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
            .execute(self.conn);
        if let Err(e) = unlocked {
            // The lock is session-level: it goes when the connection does.
            tracing::warn!("could not release the migration lock: {e}");
        }
        if let Err(e) = set_statement_timeout(self.conn, &self.previous_timeout) {
            tracing::warn!("could not restore the statement timeout: {e}");
        }
    }
}

/// Runs `f` while holding the migration advisory lock on `conn`'s
/// database, with the statement timeout off (see [`MIGRATION_LOCK_KEY`]).
/// Check-then-act sequences on the schema (read what is applied, then
/// migrate or seed) go inside, so that no other runner acts in between.
pub fn with_migration_lock<T>(
    conn: &mut PgConnection,
    f: impl FnOnce(&mut PgConnection) -> Result<T>,
) -> Result<T> {
    let lock = MigrationLock::acquire(conn)?;
    let result = f(lock.conn);
    drop(lock);
    result
}

/// Applies the pending migrations, each in its own transaction; the caller
/// holds the lock ([`with_migration_lock`]). Returns their folder names.
///
/// When nothing is pending it writes nothing: Diesel's harness would first
/// create `__diesel_schema_migrations` (`CREATE TABLE IF NOT EXISTS`, a
/// write even when the table exists), which fails on a read-only session
/// and on a hot standby. Whether every embedded migration is recorded is
/// read with plain SELECTs ([`pending_migrations`]).
pub(crate) fn run_pending(conn: &mut PgConnection) -> Result<Vec<String>> {
    if pending_migrations(conn)?.is_empty() {
        return Ok(Vec::new());
    }
    let applied = conn
        .run_pending_migrations(MIGRATIONS)
        .map_err(migration_error)?;
    names_of(applied.into_iter().map(|v| v.to_string()))
}

/// The folder names (`2026-11-24-000002_create_users`) of the embedded
/// migrations with these versions, so that every report names a migration
/// the way `migration_status` and the `migrations/` folder do.
fn names_of(versions: impl IntoIterator<Item = String>) -> Result<Vec<String>> {
    use diesel::migration::MigrationSource;
    let all =
        MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).map_err(migration_error)?;
    Ok(versions
        .into_iter()
        .map(|version| {
            all.iter()
                .find(|m| m.name().version().to_string() == version)
                .map_or(version, |m| m.name().to_string())
        })
        .collect())
}

/// Applies every pending migration, each in its own transaction, while
/// holding the migration advisory lock.
///
/// Processes that start at once queue on the lock: the first applies the
/// migrations, the others then find nothing pending. Returns the versions
/// this call applied, by folder name (empty when the schema was current).
pub fn run_migrations(conn: &mut PgConnection) -> Result<Vec<String>> {
    with_migration_lock(conn, run_pending)
}

/// What [`reload_schema`] did: the folder names reverted (newest first)
/// and applied (oldest first).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SchemaReload {
    /// The migrations reverted.
    pub reverted: Vec<String>,
    /// The migrations applied again.
    pub applied: Vec<String>,
}

/// Reverts every applied migration and applies them all again, in one
/// transaction under the migration lock: a failure or a kill at any point
/// leaves the schema (and data) as they were, never half-reverted. Each
/// migration's own transaction becomes a savepoint of the outer one.
/// Destroys all data in the schema's tables.
pub fn reload_schema(conn: &mut PgConnection) -> Result<SchemaReload> {
    with_migration_lock(conn, |conn| {
        conn.transaction(|conn| {
            let reverted = if applied_versions(conn)?.is_empty() {
                Vec::new()
            } else {
                let versions = conn
                    .revert_all_migrations(MIGRATIONS)
                    .map_err(migration_error)?;
                names_of(versions.into_iter().map(|v| v.to_string()))?
            };
            let applied = run_pending(conn)?;
            Ok(SchemaReload { reverted, applied })
        })
    })
}

/// Reverts the most recently applied migration under the lock; returns its
/// folder name, or `None` when nothing was applied.
pub fn revert_last_migration(conn: &mut PgConnection) -> Result<Option<String>> {
    with_migration_lock(conn, |conn| {
        if applied_versions(conn)?.is_empty() {
            return Ok(None);
        }
        let version = conn
            .revert_last_migration(MIGRATIONS)
            .map_err(migration_error)?
            .to_string();
        Ok(names_of([version])?.pop())
    })
}

/// Reverts every applied migration, newest first, under the lock; returns
/// the folder names of those reverted. Destroys all data in the schema's
/// tables.
pub fn revert_all_migrations(conn: &mut PgConnection) -> Result<Vec<String>> {
    with_migration_lock(conn, |conn| {
        if applied_versions(conn)?.is_empty() {
            return Ok(Vec::new());
        }
        let reverted = conn
            .revert_all_migrations(MIGRATIONS)
            .map_err(migration_error)?;
        names_of(reverted.into_iter().map(|v| v.to_string()))
    })
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Text)]
    version: String,
}

#[derive(QueryableByName)]
struct Present {
    #[diesel(sql_type = diesel::sql_types::Bool)]
    present: bool,
}

/// The versions recorded in Diesel's `__diesel_schema_migrations`, oldest
/// first. Reads only: a database without that table has no migration
/// applied, and the table is not created (Diesel's own
/// `applied_migrations` creates it), so this works on a read-only session,
/// for a role that may only SELECT, and on a hot standby.
pub fn applied_versions(conn: &mut PgConnection) -> Result<Vec<String>> {
    let present = diesel::sql_query(
        "SELECT to_regclass('__diesel_schema_migrations') IS NOT NULL AS present",
    )
    .get_result::<Present>(conn)?
    .present;
    if !present {
        return Ok(Vec::new());
    }
    Ok(diesel::sql_query(
        "SELECT version::text AS version FROM __diesel_schema_migrations ORDER BY version",
    )
    .load::<Version>(conn)?
    .into_iter()
    .map(|v| v.version)
    .collect())
}

/// The names of the embedded migrations that are not applied yet. Reads
/// only (see [`applied_versions`]).
pub fn pending_migrations(conn: &mut PgConnection) -> Result<Vec<String>> {
    Ok(migration_status(conn)?
        .into_iter()
        .filter(|m| !m.applied)
        .map(|m| m.name)
        .collect())
}

/// Every embedded migration, oldest first, with whether it is applied.
/// Reads only (see [`applied_versions`]).
pub fn migration_status(conn: &mut PgConnection) -> Result<Vec<MigrationState>> {
    use diesel::migration::MigrationSource;
    let applied = applied_versions(conn)?;
    let mut all =
        MigrationSource::<diesel::pg::Pg>::migrations(&MIGRATIONS).map_err(migration_error)?;
    all.sort_by_key(|m| m.name().version().to_string());
    Ok(all
        .iter()
        .map(|m| {
            let version = m.name().version().to_string();
            MigrationState {
                applied: applied.contains(&version),
                name: m.name().to_string(),
                version,
            }
        })
        .collect())
}

/// Fails with [`Error::PendingMigrations`] unless the schema is current.
/// Reads only.
pub fn ensure_current(conn: &mut PgConnection) -> Result<()> {
    let pending = pending_migrations(conn)?;
    if pending.is_empty() {
        Ok(())
    } else {
        Err(Error::PendingMigrations {
            count: pending.len(),
            names: pending.join(", "),
        })
    }
}
