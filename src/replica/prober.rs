//! The background prober: one thread per replica, with connections of its
//! own, so that requests read the replica's health from memory and never
//! pay for a check.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use diesel::dsl::sql;
use diesel::pg::data_types::PgLsn;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Double, Nullable, PgLsn as PgLsnType};

use super::health::{Probe, ReplicaOptions, ReplicaState};
use super::positions::{primary_identity, standby_identity};
use super::token::{ClusterIdentity, Lsn};
use crate::config::DatabaseUrl;
use crate::error::Result;
use crate::pool::{establish_as, establish_checked};
use crate::pooler::Pooler;

/// The `application_name` of a prober's connections, so that they can be
/// told apart from the application's in `pg_stat_activity`.
pub const PROBE_APPLICATION_NAME: &str = "cruddur-db replica probe";

/// What the probers last read from the primary, shared with the router:
/// its identity (which every write token carries, and every replica must
/// match) and the highest WAL position seen (a token beyond it, and beyond
/// every token the router issued, was never issued by this primary).
#[derive(Debug, Default)]
pub(crate) struct PrimaryView {
    identity: Mutex<Option<ClusterIdentity>>,
    position: AtomicU64,
}

impl PrimaryView {
    /// The primary's identity, as last read.
    pub(crate) fn identity(&self) -> Option<ClusterIdentity> {
        *self.identity.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Records the primary's identity, as just read.
    pub(crate) fn set_identity(&self, identity: ClusterIdentity) {
        *self.identity.lock().unwrap_or_else(PoisonError::into_inner) = Some(identity);
    }

    /// The highest position of the primary seen so far.
    pub(crate) fn position(&self) -> Lsn {
        Lsn(self.position.load(Ordering::Acquire))
    }

    /// Raises the highest position seen to `lsn`.
    pub(crate) fn saw(&self, lsn: Lsn) {
        self.position.fetch_max(lsn.0, Ordering::AcqRel);
    }
}

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
    pub(crate) pooler: Pooler,
    pub(crate) state: SharedState,
    pub(crate) options: ReplicaOptions,
    pub(crate) stop: Arc<Stop>,
    pub(crate) primary_view: Arc<PrimaryView>,
}

/// `url` with a probe's own short connect timeout (replacing the
/// application's: a probe must not hang where a request may wait) and
/// [`PROBE_APPLICATION_NAME`].
pub(crate) fn probe_url(url: &DatabaseUrl, options: &ReplicaOptions) -> DatabaseUrl {
    url.with_param(
        "connect_timeout",
        &options.probe_connect_timeout_secs.to_string(),
    )
    .with_default_param("application_name", PROBE_APPLICATION_NAME)
}

/// A connection for probing: `url` with the probe's statement timeout.
/// Behind a transaction pooler (`pooler`) no session setting is made: the
/// probe's timeouts are then its connect timeout and the stalled bound.
pub(crate) fn probe_connect(
    url: &DatabaseUrl,
    options: &ReplicaOptions,
    pooler: Pooler,
) -> Result<PgConnection> {
    establish_as(url, probe_timeout_ms(options), pooler)
}

/// The probe's statement timeout in milliseconds; a zero one would mean
/// "none", so at least 1 ms.
fn probe_timeout_ms(options: &ReplicaOptions) -> u64 {
    let timeout_ms = options.probe_statement_timeout.as_millis();
    u64::try_from(timeout_ms).unwrap_or(u64::MAX).max(1)
}

/// [`probe_connect`] for a replica's URL, first checking that, without
/// pooler mode, it is not behind a transaction pooler: the replica is then
/// out with [`Error::TransactionPooler`](crate::Error::TransactionPooler)
/// as its reason (which says what to set), and nothing of its session is
/// set there.
fn probe_connect_checked(
    url: &DatabaseUrl,
    options: &ReplicaOptions,
    pooler: Pooler,
) -> Result<PgConnection> {
    establish_checked(url, probe_timeout_ms(options), pooler)
}

impl Prober {
    pub(crate) fn spawn(self) -> std::io::Result<JoinHandle<()>> {
        std::thread::Builder::new()
            .name(format!("cruddur-replica-probe-{}", self.index))
            .spawn(move || self.run())
    }

    fn run(self) {
        let replica = probe_url(&self.replica, &self.options);
        let primary = probe_url(&self.primary, &self.options);
        let mut replica_conn: Option<PgConnection> = None;
        let mut primary_conn: Option<PgConnection> = None;
        while !self.stop.is_stopped() {
            // The router takes the replica out if this probe gets stuck.
            lock(&self.state).probe_started(Instant::now());
            let probe = self.probe(&replica, &primary, &mut replica_conn, &mut primary_conn);
            if let Probe::Failed(message) = &probe {
                tracing::warn!(replica = %self.replica, "replica probe failed: {message}");
            }
            let (before, after) = {
                let mut state = lock(&self.state);
                let before = state.status;
                state.record(probe, &self.options, Instant::now());
                (before, state.clone())
            };
            if before != after.status {
                let reason = after.last_error.as_deref().unwrap_or("");
                if after.is_up() {
                    tracing::info!(replica = %self.replica, "replica {}, was {before}", after.status);
                } else {
                    tracing::warn!(replica = %self.replica, "replica {} (was {before}): {reason}", after.status);
                }
            }
            if self
                .stop
                .sleep(jittered(self.options.probe_interval, self.index))
            {
                break;
            }
        }
    }

    fn connect(&self, url: &DatabaseUrl) -> Result<PgConnection> {
        probe_connect(url, &self.options, self.pooler)
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
            Ok(conn) => match read_primary(conn) {
                Ok((lsn, identity)) => {
                    self.primary_view.saw(lsn);
                    if let Some(identity) = identity {
                        self.primary_view.set_identity(identity);
                    }
                    Some(lsn)
                }
                Err(e) => {
                    tracing::debug!(primary = %self.primary, "probe of the primary failed: {e}");
                    *primary_conn = None;
                    None
                }
            },
            Err(_) => None,
        };
        let conn = match reuse_or_connect(replica_conn, || {
            probe_connect_checked(replica, &self.options, self.pooler)
        }) {
            Ok(conn) => conn,
            Err(e) => return Probe::Failed(e.to_string()),
        };
        let identity = read_replica(conn).and_then(|row| {
            // Only a standby's identity is read (a promoted server is out
            // for that already, and has no WAL receiver).
            let identity = if row.0 { standby_identity(conn)? } else { None };
            Ok((row, identity))
        });
        match identity {
            Ok((row, identity)) => Probe::Answered {
                in_recovery: row.0,
                replay: row.1.map(|l| Lsn(l.0)),
                receive: row.2.map(|l| Lsn(l.0)),
                primary: primary_lsn,
                identity,
                // The last identity read, even when this round could not
                // read it: the primary's identity does not change without
                // a promotion, which a replica's timeline then shows.
                primary_identity: self.primary_view.identity(),
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

type ReplicaRow = (bool, Option<PgLsn>, Option<PgLsn>, Option<f64>);

/// One round trip: whether the server is a standby, how far it has
/// received and replayed, and how old its last replayed commit is.
fn read_replica(conn: &mut PgConnection) -> Result<ReplicaRow> {
    Ok(diesel::select((
        sql::<Bool>("pg_catalog.pg_is_in_recovery()"),
        sql::<Nullable<PgLsnType>>("pg_catalog.pg_last_wal_replay_lsn()"),
        sql::<Nullable<PgLsnType>>("pg_catalog.pg_last_wal_receive_lsn()"),
        sql::<Nullable<Double>>(
            "(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() \
             OPERATOR(pg_catalog.-) pg_catalog.pg_last_xact_replay_timestamp()) * 1000)::float8",
        ),
    ))
    .get_result(conn)?)
}

/// The primary's WAL write position (`pg_current_wal_lsn()`) and identity.
fn read_primary(conn: &mut PgConnection) -> Result<(Lsn, Option<ClusterIdentity>)> {
    let lsn: PgLsn =
        diesel::select(sql::<PgLsnType>("pg_catalog.pg_current_wal_lsn()")).get_result(conn)?;
    Ok((Lsn(lsn.0), primary_identity(conn)?))
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
