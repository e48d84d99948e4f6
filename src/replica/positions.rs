//! WAL positions: a write's token on the primary, a standby's replay
//! position, and the bounded wait for a standby to reach a token.

use std::time::{Duration, Instant};

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{Nullable, Text};

use super::token::WriteToken;
use crate::error::Result;

/// How often a read with a token re-reads a replica's replay position while
/// it waits: every 2 ms (a round trip on a local network is well under
/// that, and the wait is bounded by
/// [`ReplicaOptions::token_wait`](super::ReplicaOptions::token_wait)).
const TOKEN_POLL_INTERVAL: Duration = Duration::from_millis(2);

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
            message.contains("terminating connection due to administrator command")
                || message.contains("server closed the connection")
        }
        _ => false,
    }
}

/// Polls the replica's replay position until it reaches `token` (true) or
/// `bound` passes (false).
pub(crate) fn wait_for(
    conn: &mut PgConnection,
    token: WriteToken,
    bound: Duration,
) -> Result<bool> {
    let deadline = Instant::now() + bound;
    loop {
        if replay_position(conn)?.is_some_and(|replayed| replayed >= token) {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(TOKEN_POLL_INTERVAL);
    }
}

/// The primary's current WAL insert position
/// (`pg_current_wal_insert_lsn()`): read on the connection that just
/// committed, it is at or past the end of that commit. Fails on a standby.
pub fn current_position(conn: &mut PgConnection) -> Result<WriteToken> {
    let text: String =
        diesel::select(sql::<Text>("pg_current_wal_insert_lsn()::text")).get_result(conn)?;
    text.parse()
}

/// A standby's replay position (`pg_last_wal_replay_lsn()`): every write
/// whose token is at or below it is visible there. `None` on a primary.
pub fn replay_position(conn: &mut PgConnection) -> Result<Option<WriteToken>> {
    let text: Option<String> =
        diesel::select(sql::<Nullable<Text>>("pg_last_wal_replay_lsn()::text")).get_result(conn)?;
    text.map(|t| t.parse()).transpose()
}
