//! Database lifecycle: create, drop, and `prepare` (create + migrate + seed).
//!
//! Creating and dropping connect to the server's maintenance database
//! (`postgres`, else `template1`) with the URL's credentials. A drop acts on
//! the name the server gave on a connection to the target
//! ([`identify`]), after checking that the maintenance connection reached
//! the same server and that the database is still the one checked.

use diesel::prelude::*;
use diesel::sql_types::Text;

use crate::config::DatabaseUrl;
use crate::error::{Error, Result};
use crate::pool::establish;
use crate::sql::quote_ident;

/// The database `url` asks for: its `dbname`, else the one libpq fills in
/// (a service file, `PGDATABASE`, the user name), as
/// [`DatabaseUrl::requested_database`] reads it.
fn target_database(url: &DatabaseUrl) -> Result<String> {
    url.requested_database().ok_or_else(|| Error::InvalidUrl {
        url: url.to_string(),
        reason: "neither the URL nor libpq's defaults (service file, PGDATABASE, user name) \
                 name a database"
            .into(),
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

/// Creates the database `url` asks for unless it exists (the URL's
/// `dbname`, else libpq's default: a service file, `PGDATABASE`, the user
/// name); returns whether it was created. Safe to run concurrently with
/// itself.
pub fn create_database(url: &DatabaseUrl) -> Result<bool> {
    create_named(url, &target_database(url)?)
}

/// Creates the database `name` on the server of `url` (through its
/// maintenance database) unless it exists; returns whether it was created.
/// For rebuilding a database under the name the server gave it
/// ([`identify`]), which a URL without `dbname` does not spell. Safe to run
/// concurrently with itself.
pub fn create_named(url: &DatabaseUrl, name: &str) -> Result<bool> {
    let conn = &mut connect_maintenance(url)?;
    if exists_on(conn, name)? {
        return Ok(false);
    }
    match diesel::sql_query(format!("CREATE DATABASE {}", quote_ident(name))).execute(conn) {
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

#[derive(QueryableByName)]
struct MayCreate {
    #[diesel(sql_type = Text)]
    role: String,
    #[diesel(sql_type = diesel::sql_types::Bool)]
    may_create: bool,
}

/// Checks, before anything is dropped, that the role of `url` may create a
/// database on its server again (it is a superuser or has `CREATEDB`, as
/// `pg_roles` says for `current_user`), through the same maintenance
/// database a create would use. Refuses ([`Error::Refused`], naming
/// `action`) when it may not. Reads only.
pub fn ensure_may_create(url: &DatabaseUrl, action: &str) -> Result<()> {
    let conn = &mut connect_maintenance(url)?;
    let found = diesel::sql_query(
        "SELECT current_user::text AS role, \
         COALESCE((SELECT rolcreatedb OR rolsuper FROM pg_roles WHERE rolname = current_user), \
                  false) AS may_create",
    )
    .get_result::<MayCreate>(conn)?;
    if found.may_create {
        return Ok(());
    }
    Err(Error::Refused {
        action: action.to_owned(),
        reason: format!(
            "the role `{}` may not create databases (it has neither CREATEDB nor superuser), \
             so the database could not be created again once dropped",
            found.role
        ),
    })
}

/// Which server and database a connection reached, as the server says.
///
/// Two identities name the same database only when the server instance
/// (its `system_identifier`, when the role may read it, the postmaster's
/// start time and its port) and the database's oid and name agree, however
/// differently the two connection strings were spelled.
///
/// Every field is read as a value, never as the server's rendering of one:
/// the start time is whole microseconds since the Unix epoch and the port
/// an integer, so that session settings which change how values print
/// (`DateStyle`, `TimeZone`, `IntervalStyle`, `extra_float_digits`,
/// `lc_*`), set per role, per database or in the URL's `options`, cannot
/// make one server look like two or two look like one.
#[derive(Debug, Clone, PartialEq, Eq, QueryableByName, serde::Serialize)]
pub struct DatabaseIdentity {
    /// `current_database()`.
    #[diesel(sql_type = Text)]
    pub database: String,
    /// The database's oid in `pg_database`.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub oid: i64,
    /// `pg_control_system().system_identifier`: chosen by `initdb`, kept by
    /// every copy of the cluster (a streaming standby has its primary's);
    /// `None` when the role may not call it.
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
    pub system_identifier: Option<i64>,
    /// `pg_postmaster_start_time()`, in microseconds since the Unix epoch.
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    pub server_started_at_us: i64,
    /// The server's `port` setting.
    #[diesel(sql_type = diesel::sql_types::Integer)]
    pub port: i32,
    /// `pg_is_in_recovery()`: a hot standby.
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub in_recovery: bool,
}

impl DatabaseIdentity {
    /// Whether both connections reached the same server instance.
    pub fn same_server(&self, other: &Self) -> bool {
        let ids_agree = match (self.system_identifier, other.system_identifier) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        ids_agree
            && self.server_started_at_us == other.server_started_at_us
            && self.port == other.port
    }

    /// Whether both connections reached the same database of the same server.
    pub fn same_database(&self, other: &Self) -> bool {
        self.same_server(other) && self.oid == other.oid && self.database == other.database
    }
}

/// The statement of [`identify`]. `extract(epoch …)` of a `timestamptz` is
/// the same instant whatever the session's `TimeZone`, and it is exact
/// (`numeric`) from PostgreSQL 14 on; every column is sent in binary.
pub(crate) const IDENTIFY_SQL: &str = "SELECT current_database()::text AS database, d.oid::bigint AS oid, \
     CASE WHEN has_function_privilege('pg_control_system()', 'EXECUTE') \
          THEN (SELECT system_identifier FROM pg_control_system()) END \
          AS system_identifier, \
     round(extract(epoch FROM pg_postmaster_start_time()) * 1000000)::bigint \
          AS server_started_at_us, \
     current_setting('port')::integer AS port, pg_is_in_recovery() AS in_recovery \
     FROM pg_database d WHERE d.datname = current_database()";

/// Asks the server which server and database `conn` reached. Reads only.
pub fn identify(conn: &mut PgConnection) -> Result<DatabaseIdentity> {
    // The CASE keeps pg_control_system() uncalled where the role may not
    // call it (its sub-select is evaluated only when needed).
    Ok(diesel::sql_query(IDENTIFY_SQL).get_result(conn)?)
}

#[derive(QueryableByName)]
struct Oid {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    oid: i64,
}

fn oid_of(conn: &mut PgConnection, name: &str) -> Result<Option<i64>> {
    Ok(
        diesel::sql_query("SELECT oid::bigint AS oid FROM pg_database WHERE datname = $1")
            .bind::<Text, _>(name)
            .get_result::<Oid>(conn)
            .optional()?
            .map(|o| o.oid),
    )
}

/// Connects to the database `url` reaches and asks the server which it is.
/// `Ok(None)` when the server says that database does not exist.
pub fn identify_at(url: &DatabaseUrl) -> Result<Option<DatabaseIdentity>> {
    match establish(url) {
        Ok(mut conn) => identify(&mut conn).map(Some),
        Err(Error::DatabaseMissing { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Drops exactly the database `checked` describes (as [`identify`] read it
/// on a connection through `url`), from the maintenance database of the
/// same server; returns whether it was dropped (`false`: it is gone already).
///
/// Refuses ([`Error::Refused`]) when the maintenance connection reached
/// another server, or when a database of that name exists with another oid
/// (it was dropped and created again since it was checked): the name that
/// is dropped is the server's, never one read from the text of `url`.
/// With `force`, other sessions are ended first (`DROP DATABASE … WITH
/// (FORCE)`); without it, open sessions make the drop fail with the
/// server's explanation.
pub fn drop_checked(url: &DatabaseUrl, checked: &DatabaseIdentity, force: bool) -> Result<bool> {
    let conn = &mut connect_maintenance(url)?;
    let here = identify(conn)?;
    if !here.same_server(checked) {
        return Err(Error::Refused {
            action: format!("drop database `{}`", checked.database),
            reason: format!(
                "the maintenance connection for {url} reached another server than the one \
                 the database was checked on"
            ),
        });
    }
    match oid_of(conn, &checked.database)? {
        None => Ok(false),
        Some(oid) if oid != checked.oid => Err(Error::Refused {
            action: format!("drop database `{}`", checked.database),
            reason: "it was dropped and created again since it was checked".into(),
        }),
        Some(_) => {
            let sql = format!(
                "DROP DATABASE {}{}",
                quote_ident(&checked.database),
                if force { " WITH (FORCE)" } else { "" }
            );
            diesel::sql_query(sql).execute(conn)?;
            Ok(true)
        }
    }
}

/// Drops the database `url` reaches, if it exists; returns whether it was
/// dropped. The server names the database ([`identify`]) and
/// [`drop_checked`] drops that one. With `force`, other sessions connected
/// to it are ended first. It reads no production mark: guarding is the
/// caller's (the CLI's `drop` refuses a production database).
pub fn drop_database(url: &DatabaseUrl, force: bool) -> Result<bool> {
    match identify_at(url)? {
        Some(identity) => drop_checked(url, &identity, force),
        None => Ok(false),
    }
}

/// What [`prepare`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PrepareReport {
    /// The database did not exist and was created.
    pub created: bool,
    /// Folder names of the migrations applied by this call.
    pub migrations_applied: Vec<String>,
    /// The reference seed was loaded (into a migrated database with no
    /// user, as seen under the migration lock).
    pub seeded: bool,
}

/// Makes the database in `url` ready to use, idempotently: creates it if
/// missing, applies pending migrations, and loads the reference seed when,
/// under the migration lock and with every migration applied, the database
/// holds no user. Running it again changes nothing.
///
/// The decision to seed is made from the state under the lock, not from
/// what this call did: a first `prepare` killed at any point (between two
/// migrations, before the seed's commit) leaves a database the next one
/// migrates and seeds, and the seed is loaded exactly once. (A migrated
/// database whose users were all deleted is seeded again: it cannot be
/// told apart from an interrupted first run.)
///
/// Everything after `CREATE DATABASE` happens under the migration lock, so
/// that processes starting at once on a new database all succeed: the first
/// migrates and seeds, the others then find it migrated and seeded.
pub fn prepare(url: &DatabaseUrl) -> Result<PrepareReport> {
    prepare_checked(url, |_, _| Ok(()))
}

/// [`prepare`] on `config`'s database through the URL that keeps a
/// session: [`Config::database_url`](crate::Config::database_url), or behind a transaction pooler
/// (`CRUDDUR_POOLER=transaction`) [`Config::direct_url`](crate::Config::direct_url), checked to reach
/// the same database when both exist ([`crate::pooler::check_direct_url`]).
/// Without a direct URL there it refuses with [`Error::NeedsDirectUrl`].
pub fn prepare_for(config: &crate::Config) -> Result<PrepareReport> {
    let url = config.session_url("prepare")?;
    crate::pooler::check_direct_url(config)?;
    prepare(url)
}

/// [`prepare`], refusing ([`Error::Refused`], before any migration or seed)
/// when the connection to `url` reaches another database than the one
/// `url` asks for and was just created (a proxy, a host list), or when
/// `check` refuses the server's [`DatabaseIdentity`] of it (e.g. "the same
/// server as the database just dropped"). `check` gets the connection too,
/// before any migration, e.g. to restore a production mark first.
pub fn prepare_checked(
    url: &DatabaseUrl,
    check: impl FnOnce(&mut PgConnection, &DatabaseIdentity) -> Result<()>,
) -> Result<PrepareReport> {
    let database = target_database(url)?;
    let created = create_database(url)?;
    let conn = &mut establish(url)?;
    let reached = identify(conn)?;
    if reached.database != database {
        return Err(Error::Refused {
            action: format!("prepare `{database}`"),
            reason: format!(
                "{url} reaches the database `{}`, not `{database}`",
                reached.database
            ),
        });
    }
    check(conn, &reached)?;
    crate::migrations::with_migration_lock(conn, |conn| {
        let migrations_applied = crate::migrations::run_pending(conn)?;
        // Decided from what the lock shows (migrated, no user), so that a
        // run killed before its seed committed is finished by the next one.
        let seeded = !crate::repo::seed::has_data(conn)?
            && crate::repo::seed::seed_reference(conn)?.inserted_anything();
        Ok(PrepareReport {
            created,
            migrations_applied,
            seeded,
        })
    })
}
