//! Read-only questions about the server and the database: what a status
//! report and a session list need. Catalog queries, so written in SQL.

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Double, Integer, Nullable, Text};

use cruddur_db::error::Result;
use cruddur_db::migrations::MIGRATION_LOCK_KEY;

/// What the server says about itself and this connection.
#[derive(Debug, Clone, PartialEq, QueryableByName, serde::Serialize)]
pub struct ServerInfo {
    /// `server_version`, e.g. `15.4 (Debian 15.4-1)`.
    #[diesel(sql_type = Text)]
    pub server_version: String,
    /// The database this connection is on (`current_database()`).
    #[diesel(sql_type = Text)]
    pub database: String,
    /// The role this connection uses (`current_user`).
    #[diesel(sql_type = Text)]
    pub user: String,
    /// Whether this connection is encrypted with TLS (`pg_stat_ssl.ssl`
    /// for the own backend).
    #[diesel(sql_type = Bool)]
    pub tls: bool,
    /// The TLS protocol version, when TLS is in use (e.g. `TLSv1.3`).
    #[diesel(sql_type = Nullable<Text>)]
    pub tls_version: Option<String>,
    /// The TLS cipher, when TLS is in use.
    #[diesel(sql_type = Nullable<Text>)]
    pub tls_cipher: Option<String>,
}

/// The SQL of [`server_info`].
const SERVER_INFO_SQL: &str = "SELECT current_setting('server_version') AS server_version, \
     current_database()::text AS database, current_user::text AS user, \
     COALESCE(s.ssl, false) AS tls, s.version AS tls_version, s.cipher AS tls_cipher \
     FROM (SELECT 1) AS one \
     LEFT JOIN pg_stat_ssl s ON s.pid = pg_backend_pid()";

/// The server's version, the database and role of this connection, and
/// whether the connection uses TLS (from `pg_stat_ssl` for the own pid,
/// which is what the server sees, whatever the client asked for).
pub fn server_info(conn: &mut PgConnection) -> Result<ServerInfo> {
    Ok(diesel::sql_query(SERVER_INFO_SQL).get_result(conn)?)
}

/// One client connection to the database, from `pg_stat_activity`.
#[derive(Debug, Clone, PartialEq, QueryableByName, serde::Serialize)]
pub struct Session {
    /// The backend's process id (what `pg_terminate_backend` takes).
    #[diesel(sql_type = Integer)]
    pub pid: i32,
    /// The role it is logged in as (`None` when the server hides it).
    #[diesel(sql_type = Nullable<Text>)]
    pub user: Option<String>,
    /// Its `application_name` (empty when the client set none).
    #[diesel(sql_type = Text)]
    pub application: String,
    /// The client's address and port, `local` for a Unix socket, `None`
    /// when the server hides it from this role.
    #[diesel(sql_type = Nullable<Text>)]
    pub client: Option<String>,
    /// `active`, `idle`, `idle in transaction`, …
    #[diesel(sql_type = Nullable<Text>)]
    pub state: Option<String>,
    /// Seconds since the session connected.
    #[diesel(sql_type = Double)]
    pub connected_secs: f64,
    /// Seconds since the state last changed (`None` when unknown).
    #[diesel(sql_type = Nullable<Double>)]
    pub state_secs: Option<f64>,
    /// Whether this is the connection that asked.
    #[diesel(sql_type = Bool)]
    pub is_self: bool,
    /// Whether it holds the migration advisory lock
    /// ([`MIGRATION_LOCK_KEY`]): a migration is running there.
    #[diesel(sql_type = Bool)]
    pub holds_migration_lock: bool,
    /// Whether it waits for the migration lock.
    #[diesel(sql_type = Bool)]
    pub waits_for_migration_lock: bool,
}

/// The SQL of [`sessions`]. A bigint advisory key is stored in `pg_locks`
/// as `classid` (high 32 bits) and `objid` (low 32 bits) with `objsubid = 1`.
///
/// Ages are measured from `clock_timestamp()`, not `now()`: `now()` is when
/// the transaction started, and a session (this one included: the extended
/// protocol marks it active at Execute, after Parse started the transaction)
/// can change state after that, which made `now() - state_change` negative.
/// `greatest(0, …)` keeps the ages non-negative even if the clock steps back.
const SESSIONS_SQL: &str = "SELECT a.pid, a.usename::text AS user, \
     COALESCE(a.application_name, '') AS application, \
     CASE WHEN a.client_addr IS NOT NULL THEN host(a.client_addr) || ':' || a.client_port \
          WHEN a.client_port = -1 THEN 'local' END AS client, \
     a.state, \
     greatest(0, EXTRACT(EPOCH FROM (clock_timestamp() - a.backend_start)))::float8 AS connected_secs, \
     CASE WHEN a.state_change IS NOT NULL \
          THEN greatest(0, EXTRACT(EPOCH FROM (clock_timestamp() - a.state_change)))::float8 \
     END AS state_secs, \
     a.pid = pg_backend_pid() AS is_self, \
     EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' \
             AND l.database = a.datid AND l.objsubid = 1 AND l.granted \
             AND ((l.classid::int8 << 32) | l.objid::int8) = $1) AS holds_migration_lock, \
     EXISTS (SELECT 1 FROM pg_locks l WHERE l.pid = a.pid AND l.locktype = 'advisory' \
             AND l.database = a.datid AND l.objsubid = 1 AND NOT l.granted \
             AND ((l.classid::int8 << 32) | l.objid::int8) = $1) AS waits_for_migration_lock \
     FROM pg_stat_activity a \
     WHERE a.datname = current_database() AND a.backend_type = 'client backend' \
     ORDER BY a.backend_start, a.pid";

/// Every client connection to the database `conn` is on, oldest first,
/// including `conn` itself ([`Session::is_self`]), with which of them
/// hold or wait for the migration lock.
///
/// A role without `pg_read_all_stats` sees the user, client and state of
/// other roles' sessions as `None`.
pub fn sessions(conn: &mut PgConnection) -> Result<Vec<Session>> {
    Ok(diesel::sql_query(SESSIONS_SQL)
        .bind::<BigInt, _>(MIGRATION_LOCK_KEY)
        .load(conn)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migration_lock_key_splits_as_pg_locks_stores_it() {
        // pg_locks shows the key as two unsigned 32-bit halves; the SQL
        // puts them back together. Both halves are below 2^31 for this
        // key, so the shift cannot overflow into the sign bit.
        let classid = (MIGRATION_LOCK_KEY >> 32) as u32;
        let objid = (MIGRATION_LOCK_KEY & 0xffff_ffff) as u32;
        assert!(classid < 1 << 31);
        assert_eq!(
            (i64::from(classid) << 32) | i64::from(objid),
            MIGRATION_LOCK_KEY
        );
        assert!(SESSIONS_SQL.contains("objsubid = 1"));
    }
}
