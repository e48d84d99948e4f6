//! WAL positions and identities read from a server: a write's position on
//! the primary, a standby's replay position, and which cluster and timeline
//! each belongs to. Positions are read as `pg_lsn` values (binary), never
//! as text; every function is schema-qualified, so that a `search_path` of
//! the session cannot put another function in its place.

use diesel::dsl::sql;
use diesel::pg::data_types::PgLsn;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Bool, Nullable, PgLsn as PgLsnType, Text};

use super::token::{ClusterIdentity, Lsn, WriteToken};
use crate::error::{Error, Result};

/// Whether a query failed because the connection is gone (the server
/// stopped or the network failed), rather than because of the query.
pub(crate) fn connection_lost(e: &DieselError) -> bool {
    match e {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        ) => true,
        // libpq reports a server that ended the session (`pg_ctl stop`,
        // SQLSTATE 57P01) as an error of no particular kind; Diesel does
        // not expose the SQLSTATE.
        DieselError::DatabaseError(_, info) => {
            let message = info.message();
            [
                "terminating connection due to administrator command",
                "server closed the connection",
                // libpq, once the connection is gone or while reading from
                // or writing to a dead one.
                "no connection to the server",
                "connection to server was lost",
                "could not receive data from server",
                "could not send data to server",
                // A server that ends its sessions as it crashes or stops.
                "terminating connection because of crash of another server process",
                "the database system is shutting down",
            ]
            .iter()
            .any(|m| message.contains(m))
        }
        // COMMIT failed and so did the ROLLBACK after it: the connection
        // is gone if the commit's error says so.
        DieselError::RollbackErrorOnCommit { commit_error, .. } => connection_lost(commit_error),
        _ => false,
    }
}

/// Whether a statement failed because the server is a read-only standby
/// (SQLSTATE 25006, `read_only_sql_transaction`): a primary demoted, or a
/// connection that reached a standby. Nothing was written.
pub(crate) fn read_only_server(e: &DieselError) -> bool {
    matches!(
        e,
        DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _)
    )
}

/// The primary's current WAL insert position
/// (`pg_current_wal_insert_lsn()`): read on the connection that just
/// committed, it is at or past the end of that commit. Fails on a standby.
pub fn current_position(conn: &mut PgConnection) -> Result<Lsn> {
    let lsn: PgLsn = diesel::select(sql::<PgLsnType>("pg_catalog.pg_current_wal_insert_lsn()"))
        .get_result(conn)?;
    Ok(Lsn(lsn.0))
}

/// [`current_position`] with the timeline the primary writes (from the name
/// of its current WAL file, as [`primary_identity`] reads it), in one round
/// trip: the timeline of the server that just committed, which a failover
/// changes before any probe sees it. `None` when the file name does not
/// start with one.
pub(crate) fn position_and_timeline(conn: &mut PgConnection) -> Result<(Lsn, Option<u32>)> {
    let (lsn, walfile): (PgLsn, String) = WritePosition.get_result(conn)?;
    let timeline = walfile
        .get(..8)
        .and_then(|t| u32::from_str_radix(t, 16).ok());
    Ok((Lsn(lsn.0), timeline))
}

/// The statement of [`position_and_timeline`], every write's last: with a
/// static [`QueryId`](diesel::query_builder::QueryId) Diesel prepares it
/// once per connection, where `diesel::select(sql(..))` has the server
/// parse and plan it at every write.
#[derive(Debug, Clone, Copy, diesel::query_builder::QueryId)]
struct WritePosition;

impl diesel::query_builder::QueryFragment<diesel::pg::Pg> for WritePosition {
    fn walk_ast<'b>(
        &'b self,
        mut out: diesel::query_builder::AstPass<'_, 'b, diesel::pg::Pg>,
    ) -> QueryResult<()> {
        out.push_sql(
            "SELECT pg_catalog.pg_current_wal_insert_lsn(), \
             pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())",
        );
        Ok(())
    }
}

impl diesel::query_builder::Query for WritePosition {
    type SqlType = (PgLsnType, Text);
}

impl RunQueryDsl<PgConnection> for WritePosition {}

/// A standby's replay position (`pg_last_wal_replay_lsn()`): every write
/// whose position is at or below it is visible there. `None` on a primary.
pub fn replay_position(conn: &mut PgConnection) -> Result<Option<Lsn>> {
    let lsn: Option<PgLsn> = diesel::select(sql::<Nullable<PgLsnType>>(
        "pg_catalog.pg_last_wal_replay_lsn()",
    ))
    .get_result(conn)?;
    Ok(lsn.map(|l| Lsn(l.0)))
}

/// Whether this session may call `pg_control_system()` and
/// `pg_control_checkpoint()` (PUBLIC may by default; an administrator can
/// revoke it). Asked first, in a query of its own: the server checks a
/// function's privilege when it plans the call, even in a branch of a
/// `CASE` that is never taken.
fn may_read_control(conn: &mut PgConnection) -> QueryResult<bool> {
    diesel::select(sql::<Bool>(
        "pg_catalog.has_function_privilege('pg_catalog.pg_control_system()', 'EXECUTE') \
         AND pg_catalog.has_function_privilege('pg_catalog.pg_control_checkpoint()', 'EXECUTE')",
    ))
    .get_result(conn)
}

/// The system identifier as PostgreSQL stores it (an unsigned 64-bit
/// number, shown by `pg_control_system()` as a signed `bigint`).
fn system_identifier(signed: i64) -> u64 {
    u64::from_ne_bytes(signed.to_ne_bytes())
}

/// The primary's identity: its system identifier and the timeline it
/// writes (the first 8 hexadecimal digits of the name of the WAL file it
/// writes into, which a promotion changes at once, where
/// `pg_control_checkpoint()` waits for the next checkpoint). `None` when
/// this session may not read `pg_control_system()`. Fails on a standby.
pub fn primary_identity(conn: &mut PgConnection) -> Result<Option<ClusterIdentity>> {
    if !may_read_control(conn)? {
        return Ok(None);
    }
    let (sysid, walfile): (i64, String) = diesel::select((
        sql::<BigInt>("(pg_catalog.pg_control_system()).system_identifier"),
        sql::<Text>("pg_catalog.pg_walfile_name(pg_catalog.pg_current_wal_lsn())"),
    ))
    .get_result(conn)?;
    let timeline = walfile
        .get(..8)
        .and_then(|t| u32::from_str_radix(t, 16).ok())
        .ok_or_else(|| Error::UnknownIdentity {
            reason: format!(
                "the WAL file name `{}` does not start with a timeline",
                walfile.chars().take(40).collect::<String>()
            ),
        })?;
    Ok(Some(ClusterIdentity {
        system_identifier: system_identifier(sysid),
        timeline,
    }))
}

/// A standby's identity: its system identifier and the timeline it
/// follows (the WAL receiver's `received_tli` where this session may see
/// it, else the timeline of its last restartpoint). `None` when this
/// session may not read `pg_control_system()`.
pub fn standby_identity(conn: &mut PgConnection) -> Result<Option<ClusterIdentity>> {
    if !may_read_control(conn)? {
        return Ok(None);
    }
    let (sysid, timeline): (i64, i64) = diesel::select((
        sql::<BigInt>("(pg_catalog.pg_control_system()).system_identifier"),
        sql::<BigInt>(
            "coalesce((SELECT received_tli FROM pg_catalog.pg_stat_wal_receiver), \
             (pg_catalog.pg_control_checkpoint()).timeline_id)::int8",
        ),
    ))
    .get_result(conn)?;
    Ok(u32::try_from(timeline)
        .ok()
        .map(|timeline| ClusterIdentity {
            system_identifier: system_identifier(sysid),
            timeline,
        }))
}

/// The token of everything committed on this primary connection so far:
/// [`current_position`] with [`primary_identity`], or
/// [`ClusterIdentity::UNVERIFIED`] when the session may not read it (such a
/// token is read on the primary). Fails on a standby.
pub fn write_token(conn: &mut PgConnection) -> Result<WriteToken> {
    let lsn = current_position(conn)?;
    let identity = primary_identity(conn)?.unwrap_or(ClusterIdentity::UNVERIFIED);
    Ok(WriteToken::new(lsn, identity))
}
