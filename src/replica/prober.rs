//! The background prober: one thread per replica, with connections of its
//! own, so that requests read the replica's health from memory and never
//! pay for a check.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::dsl::sql;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Nullable, Text};

use super::health::{Probe, ReplicaOptions, ReplicaState};
use super::token::WriteToken;
use crate::config::DatabaseUrl;
use crate::error::Result;
use crate::pool::establish_with_timeout;

/// The `application_name` of a prober's connections, so that they can be
/// told apart from the application's in `pg_stat_activity`.
pub const PROBE_APPLICATION_NAME: &str = "cruddur-db replica probe";

/// Tells the probers to stop, waking them from their sleep.
#[derive(Debug, Default)]
pub(crate) struct Stop {
    stopped: Mutex<bool>,
    wake: Condvar,
}

impl Stop {
    pub(crate) fn stop(&self) {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner) = true;
        self.wake.notify_all();
    }

    fn is_stopped(&self) -> bool {
        *self.stopped.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sleeps for `duration` or until stopped; returns whether stopped.
    fn sleep(&self, duration: Duration) -> bool {
        let guard = self.stopped.lock().unwrap_or_else(PoisonError::into_inner);
        let (guard, _) = self
            .wake
            .wait_timeout_while(guard, duration, |stopped| !*stopped)
            .unwrap_or_else(PoisonError::into_inner);
        *guard
    }
}

/// A replica's health, shared by its prober (which writes it) and the
/// router (which reads it, and marks the replica down when a request finds
/// it unreachable).
pub(crate) type SharedState = Arc<Mutex<ReplicaState>>;

/// Locks a replica's state; a panic elsewhere does not poison the routing.
pub(crate) fn lock(state: &SharedState) -> std::sync::MutexGuard<'_, ReplicaState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

pub(crate) struct Prober {
    pub(crate) index: usize,
    pub(crate) replica: DatabaseUrl,
    pub(crate) primary: DatabaseUrl,
    pub(crate) state: SharedState,
    pub(crate) options: ReplicaOptions,
    pub(crate) stop: Arc<Stop>,
}

impl Prober {
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("cruddur-replica-probe-{}", self.index))
            .spawn(move || self.run())
    }

    fn run(self) {
        let replica = self.probe_url(&self.replica);
        let primary = self.probe_url(&self.primary);
        let mut replica_conn: Option<PgConnection> = None;
        let mut primary_conn: Option<PgConnection> = None;
        while !self.stop.is_stopped() {
            // The router takes the replica out if this probe gets stuck.
            lock(&self.state).probe_started(Instant::now());
            let probe = self.probe(&replica, &primary, &mut replica_conn, &mut primary_conn);
            if let Probe::Failed(message) = &probe {
                tracing::warn!(replica = %self.replica, "replica probe failed: {message}");
            }
            lock(&self.state).record(probe, &self.options, Instant::now());
            if self
                .stop
                .sleep(jittered(self.options.probe_interval, self.index))
            {
                break;
            }
        }
    }

    /// The URL with the probe's own short connect timeout (replacing the
    /// application's: a probe must not hang where a request may wait).
    fn probe_url(&self, url: &DatabaseUrl) -> DatabaseUrl {
        url.with_param(
            "connect_timeout",
            &self.options.probe_connect_timeout_secs.to_string(),
        )
        .with_default_param("application_name", PROBE_APPLICATION_NAME)
    }

    fn connect(&self, url: &DatabaseUrl) -> Result<PgConnection> {
        let timeout_ms = self.options.probe_statement_timeout.as_millis();
        // A zero statement timeout would mean "none": keep at least 1 ms.
        let timeout_ms = u64::try_from(timeout_ms).unwrap_or(u64::MAX).max(1);
        establish_with_timeout(url, timeout_ms)
    }

    fn probe(
        &self,
        replica: &DatabaseUrl,
        primary: &DatabaseUrl,
        replica_conn: &mut Option<PgConnection>,
        primary_conn: &mut Option<PgConnection>,
    ) -> Probe {
        // The primary first: a replica position read after it can only be
        // newer, so the byte lag is never overstated.
        let primary_lsn = match reuse_or_connect(primary_conn, || self.connect(primary)) {
            Ok(conn) => match current_wal_lsn(conn) {
                Ok(lsn) => Some(lsn),
                Err(e) => {
                    tracing::debug!(primary = %self.primary, "probe of the primary failed: {e}");
                    *primary_conn = None;
                    None
                }
            },
            Err(_) => None,
        };
        let conn = match reuse_or_connect(replica_conn, || self.connect(replica)) {
            Ok(conn) => conn,
            Err(e) => return Probe::Failed(e.to_string()),
        };
        match read_replica(conn) {
            Ok(row) => Probe::Answered {
                in_recovery: row.0,
                replay: row.1.and_then(|t| t.parse().ok()),
                receive: row.2.and_then(|t| t.parse().ok()),
                primary: primary_lsn,
                replay_age: row
                    .3
                    .filter(|ms| ms.is_finite())
                    .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
            },
            Err(e) => {
                *replica_conn = None;
                Probe::Failed(self.replica.scrub(&e.to_string()))
            }
        }
    }
}

fn reuse_or_connect(
    slot: &mut Option<PgConnection>,
    connect: impl FnOnce() -> Result<PgConnection>,
) -> Result<&mut PgConnection> {
    match slot {
        Some(conn) => Ok(conn),
        empty => Ok(empty.insert(connect()?)),
    }
}

type ReplicaRow = (bool, Option<String>, Option<String>, Option<f64>);

/// One round trip: whether the server is a standby, how far it has
/// received and replayed, and how old its last replayed commit is.
fn read_replica(conn: &mut PgConnection) -> QueryResult<ReplicaRow> {
    diesel::select((
        sql::<Bool>("pg_is_in_recovery()"),
        sql::<Nullable<Text>>("pg_last_wal_replay_lsn()::text"),
        sql::<Nullable<Text>>("pg_last_wal_receive_lsn()::text"),
        sql::<Nullable<Double>>(
            "(extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000)::float8",
        ),
    ))
    .get_result(conn)
}

/// The primary's WAL write position (`pg_current_wal_lsn()`).
fn current_wal_lsn(conn: &mut PgConnection) -> Result<WriteToken> {
    let text: String =
        diesel::select(sql::<Text>("pg_current_wal_lsn()::text")).get_result(conn)?;
    text.parse()
}

/// `interval` scaled by a factor in [0.75, 1.25], from the clock's
/// nanoseconds mixed with the replica's index: cheap, different for each
/// replica and each round, and good enough to keep probers out of step.
pub(crate) fn jittered(interval: Duration, index: usize) -> Duration {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let index = u64::try_from(index).unwrap_or(u64::MAX);
    let mixed = (nanos ^ index.wrapping_mul(GOLDEN)).wrapping_mul(GOLDEN) >> 40;
    // `mixed` has 24 bits, so the conversion is exact.
    let fraction = mixed as f64 / f64::from(1u32 << 24);
    interval.mul_f64(0.75 + 0.5 * fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_a_quarter_of_the_interval() {
        let interval = Duration::from_millis(1000);
        let mut seen = std::collections::BTreeSet::new();
        for round in 0..200 {
            let d = jittered(interval, round % 4);
            assert!(
                d >= Duration::from_millis(750) && d <= Duration::from_millis(1250),
                "{d:?}"
            );
            seen.insert(d.as_millis());
        }
        assert!(seen.len() > 10, "the jitter varies: {seen:?}");
    }

    #[test]
    fn stop_wakes_a_sleeping_prober() {
        let stop = Arc::new(Stop::default());
        let sleeper = Arc::clone(&stop);
        let started = Instant::now();
        let handle = std::thread::spawn(move || sleeper.sleep(Duration::from_secs(60)));
        stop.stop();
        assert!(handle.join().unwrap());
        assert!(started.elapsed() < Duration::from_secs(30));
    }
}
