//! [`Router`]: the primary's pool and one pool per replica, and the choice
//! of a connection for each read by its [`Consistency`].

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::counters::{Counters, RoutingCounters, bump};
use super::health::{Probe, ReplicaOptions, ReplicaState};
use super::positions::{connection_lost, current_position, wait_for};
use super::prober::{Prober, SharedState, Stop, lock};
use super::token::{Consistency, WriteToken};
use crate::config::{Config, DatabaseUrl};
use crate::error::{Error, Result};
use crate::pool::{PgPool, PgPooledConnection, build_pool, build_replica_pool, checkout};

/// The primary's pool and one pool per read replica, with a background
/// prober per replica. Cheap to clone (shared); the probers stop when the
/// last clone is dropped, which waits for a probe under way to end, for at
/// most [`ReplicaOptions::stalled_after`] (6 s by default): a prober whose
/// replica stopped answering is left to end with its probe.
///
/// Without replicas it is the primary's pool alone: every read goes there,
/// no thread is started, and nothing costs more than before.
#[derive(Clone)]
pub struct Router {
    inner: Arc<Inner>,
}

struct Inner {
    /// For the replicas' pools (rebuilt after an outage).
    config: Config,
    primary: PgPool,
    primary_url: DatabaseUrl,
    replicas: Vec<Replica>,
    options: ReplicaOptions,
    counters: Counters,
    /// Round-robin start among the replicas.
    next: AtomicUsize,
    stop: Arc<Stop>,
    probers: Mutex<Vec<JoinHandle<()>>>,
}

struct Replica {
    url: DatabaseUrl,
    /// The pool, with the number of outages it was built after.
    pool: RwLock<(u64, PgPool)>,
    state: SharedState,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.stop();
        let mut probers =
            std::mem::take(&mut *self.probers.lock().unwrap_or_else(PoisonError::into_inner));
        // A prober finishes its probe first: within its timeouts, unless
        // the server stopped answering. Such a prober holds only its own
        // connections and its replica's state; it ends with its probe.
        let deadline = Instant::now() + self.options.stalled_after();
        loop {
            let (finished, running): (Vec<_>, Vec<_>) =
                probers.into_iter().partition(JoinHandle::is_finished);
            for prober in finished {
                let _ = prober.join();
            }
            probers = running;
            if probers.is_empty() {
                return;
            }
            if Instant::now() >= deadline {
                tracing::warn!(
                    probers = probers.len(),
                    "replica probes still waiting for an answer are left to end on their own"
                );
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }
}

impl std::fmt::Debug for Router {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Router")
            .field("primary", &self.inner.primary_url)
            .field("pool", &self.inner.primary.state())
            .field(
                "replicas",
                &self
                    .replicas()
                    .into_iter()
                    .map(|(u, s)| (u, s.status))
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Router {
    /// Builds the primary's pool for `config` (failing fast like
    /// [`build_pool`]) and a read-only pool and a prober for each of
    /// `config.replica_urls`, with the default [`ReplicaOptions`].
    pub fn connect(config: &Config) -> Result<Self> {
        Self::connect_with(config, ReplicaOptions::default())
    }

    /// Like [`Router::connect`], with these thresholds and timings.
    pub fn connect_with(config: &Config, options: ReplicaOptions) -> Result<Self> {
        let primary = build_pool(config)?;
        Self::with_replicas(primary, config, options)
    }

    /// A router over an existing primary pool, without replicas.
    pub fn primary_only(primary: PgPool, primary_url: DatabaseUrl) -> Self {
        let config = Config::new(primary_url);
        Self::build(primary, config, Vec::new(), ReplicaOptions::default())
    }

    fn with_replicas(primary: PgPool, config: &Config, options: ReplicaOptions) -> Result<Self> {
        let replicas = config
            .replica_urls
            .iter()
            .map(|url| Replica {
                url: url.clone(),
                pool: RwLock::new((0, build_replica_pool(config, url))),
                state: SharedState::default(),
            })
            .collect();
        let router = Self::build(primary, config.clone(), replicas, options);
        for (index, replica) in router.inner.replicas.iter().enumerate() {
            let prober = Prober {
                index,
                replica: replica.url.clone(),
                primary: router.inner.primary_url.clone(),
                state: Arc::clone(&replica.state),
                options: router.inner.options.clone(),
                stop: Arc::clone(&router.inner.stop),
            };
            // On failure `router` drops here, stopping the probers spawned.
            let handle = prober.spawn().map_err(|cause| Error::Io {
                context: format!("starting the prober of replica {}", replica.url),
                cause,
            })?;
            router
                .inner
                .probers
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(handle);
        }
        Ok(router)
    }

    fn build(
        primary: PgPool,
        config: Config,
        replicas: Vec<Replica>,
        options: ReplicaOptions,
    ) -> Self {
        Self {
            inner: Arc::new(Inner {
                primary,
                primary_url: config.database_url.clone(),
                config,
                replicas,
                options,
                counters: Counters::default(),
                next: AtomicUsize::new(0),
                stop: Arc::new(Stop::default()),
                probers: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The primary's pool.
    pub fn primary(&self) -> &PgPool {
        &self.inner.primary
    }

    /// The primary's URL (show it: it prints redacted).
    pub fn primary_url(&self) -> &DatabaseUrl {
        &self.inner.primary_url
    }

    /// The thresholds and timings in use.
    pub fn options(&self) -> &ReplicaOptions {
        &self.inner.options
    }

    /// Each replica's URL and health, in configuration order (a replica
    /// whose probe is stuck shows as [`ReplicaStatus::Stalled`](super::ReplicaStatus::Stalled)).
    pub fn replicas(&self) -> Vec<(DatabaseUrl, ReplicaState)> {
        let now = Instant::now();
        let options = &self.inner.options;
        let replicas = &self.inner.replicas;
        replicas
            .iter()
            .map(|r| (r.url.clone(), lock(&r.state).at(options, now)))
            .collect()
    }

    /// Waits until every replica has answered or failed its first probe,
    /// for at most `bound`, and returns whether all have. Until then a
    /// replica is not used, which suits a long-lived service but would send
    /// every read of a short-lived caller (a command line) to the primary.
    /// Polls every 10 ms.
    pub fn wait_for_probes(&self, bound: std::time::Duration) -> bool {
        let deadline = Instant::now() + bound;
        loop {
            let probed = self
                .inner
                .replicas
                .iter()
                .all(|r| lock(&r.state).status != super::health::ReplicaStatus::Unknown);
            if probed {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// A snapshot of the routing counters.
    pub fn counters(&self) -> RoutingCounters {
        self.inner.counters.snapshot()
    }

    /// Runs `f` on the primary and returns its result with the primary's
    /// WAL position read on the same connection after `f` returned, which
    /// covers every commit `f` made. `f` must not leave a transaction open
    /// (the connection functions of [`crate::repo`] commit their own).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> Result<T>,
    ) -> Result<(T, WriteToken)> {
        let mut conn = checkout(&self.inner.primary, &self.inner.primary_url)?;
        let value = f(&mut conn)?;
        let token = current_position(&mut conn)?;
        bump(&self.inner.counters.writes);
        Ok((value, token))
    }

    /// Runs `f` on a connection chosen for `consistency`:
    ///
    /// - [`Consistency::Primary`]: the primary.
    /// - [`Consistency::Eventual`]: a replica that is up (round robin), else
    ///   the primary.
    /// - [`Consistency::AtLeast`]: a replica that is up and whose last
    ///   probed replay position is at or past the token; else the replica
    ///   furthest along is polled (`pg_last_wal_replay_lsn()`) for up to
    ///   [`ReplicaOptions::token_wait`] and serves the read once it passes
    ///   the token; else the primary.
    ///
    /// A replica that is out is skipped without touching its pool. On a
    /// replica, `f` runs in a read-only session: a write there is an
    /// [`Error::WriteOnReplica`]. A read cancelled there by a recovery
    /// conflict (SQLSTATE 40001), or failing because the replica went away,
    /// runs once more on the primary (so `f` may run twice).
    pub fn read<T>(
        &self,
        consistency: Consistency,
        mut f: impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let counters = &self.inner.counters;
        match consistency {
            Consistency::Primary => {
                bump(&counters.primary_reads_chosen);
                self.on_primary(&mut f)
            }
            Consistency::Eventual => match self.pick(|_| true) {
                Some(index) => self.on_replica(index, None, &mut f),
                None => {
                    bump(&counters.primary_reads_no_healthy_replica);
                    self.on_primary(&mut f)
                }
            },
            Consistency::AtLeast(token) => {
                if let Some(index) = self.pick(|s| s.replay_lsn >= Some(token)) {
                    return self.on_replica(index, None, &mut f);
                }
                let Some(index) = self.furthest_up() else {
                    bump(&counters.primary_reads_no_healthy_replica);
                    return self.on_primary(&mut f);
                };
                if self.inner.options.token_wait.is_zero() {
                    bump(&counters.primary_reads_not_current);
                    return self.on_primary(&mut f);
                }
                let mut conn = match self.replica_pool(index).get() {
                    Ok(conn) => conn,
                    Err(e) => return self.after_replica_failure(index, e.to_string(), &mut f),
                };
                match wait_for(&mut conn, token, self.inner.options.token_wait) {
                    Ok(true) => {
                        bump(&counters.token_waits_succeeded);
                        self.on_replica(index, Some(conn), &mut f)
                    }
                    Ok(false) => {
                        bump(&counters.token_waits_timed_out);
                        bump(&counters.primary_reads_not_current);
                        self.on_primary(&mut f)
                    }
                    Err(e) => self.after_replica_failure(index, e.to_string(), &mut f),
                }
            }
        }
    }

    fn on_primary<T>(&self, f: &mut impl FnMut(&mut PgConnection) -> Result<T>) -> Result<T> {
        f(&mut *checkout(
            &self.inner.primary,
            &self.inner.primary_url,
        )?)
    }

    /// Runs `f` on replica `index` (on `conn` when one is checked out
    /// already), falling back to the primary as [`Router::read`] says.
    fn on_replica<T>(
        &self,
        index: usize,
        conn: Option<PgPooledConnection>,
        f: &mut impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let replica = &self.inner.replicas[index];
        let mut conn = match conn {
            Some(conn) => conn,
            None => match self.replica_pool(index).get() {
                Ok(conn) => conn,
                Err(e) => return self.after_replica_failure(index, e.to_string(), f),
            },
        };
        let result = f(&mut conn);
        drop(conn);
        let counters = &self.inner.counters;
        match result {
            Ok(value) => {
                bump(&counters.replica_reads);
                Ok(value)
            }
            Err(Error::Query(DieselError::DatabaseError(
                DatabaseErrorKind::SerializationFailure,
                info,
            ))) => {
                tracing::info!(replica = %replica.url, "read cancelled by a recovery conflict, retried on the primary: {}", info.message());
                bump(&counters.conflict_retries);
                self.on_primary(f)
            }
            Err(Error::Query(
                e @ DieselError::DatabaseError(DatabaseErrorKind::ReadOnlyTransaction, _),
            )) => Err(Error::WriteOnReplica {
                url: replica.url.to_string(),
                source: e,
            }),
            Err(Error::Query(e)) if connection_lost(&e) => {
                self.after_replica_failure(index, e.to_string(), f)
            }
            Err(e) => Err(e),
        }
    }

    /// Takes replica `index` out (its prober brings it back) and runs `f`
    /// on the primary.
    fn after_replica_failure<T>(
        &self,
        index: usize,
        message: String,
        f: &mut impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let replica = &self.inner.replicas[index];
        let message = replica.url.scrub(&message);
        tracing::warn!(replica = %replica.url, "replica failed, read retried on the primary: {message}");
        lock(&replica.state).record(Probe::Failed(message), &self.inner.options, Instant::now());
        bump(&self.inner.counters.replica_failure_retries);
        self.on_primary(f)
    }

    /// Replica `index`'s pool; a new one after an outage, since the
    /// connections pooled before it died with the server (each would fail
    /// once and take the replica out again).
    fn replica_pool(&self, index: usize) -> PgPool {
        let replica = &self.inner.replicas[index];
        let outages = lock(&replica.state).outages;
        let read = |pool: &RwLock<(u64, PgPool)>| {
            let guard = pool.read().unwrap_or_else(PoisonError::into_inner);
            (guard.0 == outages).then(|| guard.1.clone())
        };
        if let Some(pool) = read(&replica.pool) {
            return pool;
        }
        let mut guard = replica.pool.write().unwrap_or_else(PoisonError::into_inner);
        if guard.0 != outages {
            *guard = (
                outages,
                build_replica_pool(&self.inner.config, &replica.url),
            );
        }
        guard.1.clone()
    }

    /// A replica that is up and satisfies `extra`, starting the search at
    /// the next round-robin position.
    fn pick(&self, extra: impl Fn(&ReplicaState) -> bool) -> Option<usize> {
        let n = self.inner.replicas.len();
        if n == 0 {
            return None;
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        (0..n).map(|i| (start + i) % n).find(|&i| {
            let state = lock(&self.inner.replicas[i].state);
            self.usable(&state, now) && extra(&state)
        })
    }

    /// Whether reads may go to a replica in `state`: up at its last probe,
    /// and its probe under way (if any) not stuck.
    fn usable(&self, state: &ReplicaState, now: Instant) -> bool {
        state.is_up() && !state.is_stalled(&self.inner.options, now)
    }

    /// The replica that is up with the highest replay position.
    fn furthest_up(&self) -> Option<usize> {
        let replicas = &self.inner.replicas;
        let now = Instant::now();
        (0..replicas.len())
            .filter_map(|i| {
                let state = lock(&replicas[i].state);
                self.usable(&state, now).then_some((state.replay_lsn, i))
            })
            .max_by_key(|&(lsn, i)| (lsn, std::cmp::Reverse(i)))
            .map(|(_, i)| i)
    }
}
