//! [`Router`]: the primary's pool and one pool per replica, and the choice
//! of a connection for each read by its [`Consistency`].

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::Instant;

use diesel::prelude::*;

use super::counters::{Counters, RoutingCounters, bump};
use super::health::{ReplicaOptions, ReplicaState};
use super::positions::{connection_lost, position_and_timeline, primary_identity};
use super::prober::{PrimaryView, Prober, SharedState, Stop, lock};
use super::token::{ClusterIdentity, Consistency, Lsn, WriteToken};
use super::watch::ReplayWatch;
use crate::config::{Config, DatabaseUrl};
use crate::error::{Error, Result};
use crate::instrument::{ConnectionTarget, Events};
use crate::pool::{PgPool, build_pool, build_replica_pool, checkout};

mod reads;
use reads::Pick;

/// How long [`Router::discard_dead_connections`] waits for its checks: 2
/// seconds (a dead local server fails them at once).
pub const DISCARD_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

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
    /// The primary's pool as its instrumentation is told of it.
    primary_target: ConnectionTarget,
    replicas: Vec<Replica>,
    options: ReplicaOptions,
    counters: Counters,
    /// Round-robin start among the replicas.
    next: AtomicUsize,
    stop: Arc<Stop>,
    /// The probers' and watches' threads.
    probers: Mutex<Vec<JoinHandle<()>>>,
    /// The primary's identity and highest position, as probes and writes
    /// read them.
    primary_view: Arc<PrimaryView>,
    /// The highest position of a token this router issued.
    issued: AtomicU64,
    /// Reads one replica may hold: the option, capped by the pool size.
    max_reads_per_replica: usize,
}

struct Replica {
    url: DatabaseUrl,
    /// Its pool as its instrumentation is told of it.
    target: ConnectionTarget,
    /// The pool, with the number of outages it was built after.
    pool: RwLock<(u64, PgPool)>,
    state: SharedState,
    /// Reads running on it or waiting for its replay now.
    in_flight: AtomicUsize,
    watch: Arc<ReplayWatch>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.stop.stop();
        for replica in &self.replicas {
            replica.watch.stop();
        }
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
                target: ConnectionTarget::of(url, true),
                pool: RwLock::new((0, build_replica_pool(config, url))),
                state: SharedState::default(),
                in_flight: AtomicUsize::new(0),
                watch: Arc::default(),
            })
            .collect();
        let router = Self::build(primary, config.clone(), replicas, options);
        for (index, replica) in router.inner.replicas.iter().enumerate() {
            let prober = Prober {
                index,
                replica: replica.url.clone(),
                primary: router.inner.primary_url.clone(),
                pooler: router.inner.config.pooler,
                state: Arc::clone(&replica.state),
                options: router.inner.options.clone(),
                stop: Arc::clone(&router.inner.stop),
                primary_view: Arc::clone(&router.inner.primary_view),
            };
            // On failure `router` drops here, stopping the threads spawned.
            let spawned = |what: &str, handle: std::io::Result<JoinHandle<()>>| {
                let handle = handle.map_err(|cause| Error::Io {
                    context: format!("starting the {what} of replica {}", replica.url),
                    cause,
                })?;
                router
                    .inner
                    .probers
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push(handle);
                Ok::<_, Error>(())
            };
            spawned("prober", prober.spawn())?;
            spawned(
                "replay watch",
                replica.watch.spawn(
                    index,
                    &replica.url,
                    &router.inner.options,
                    router.inner.config.pooler,
                ),
            )?;
        }
        Ok(router)
    }

    fn build(
        primary: PgPool,
        config: Config,
        replicas: Vec<Replica>,
        options: ReplicaOptions,
    ) -> Self {
        let max_reads_per_replica =
            usize::try_from(options.max_reads_per_replica.min(config.pool_size))
                .unwrap_or(usize::MAX);
        Self {
            inner: Arc::new(Inner {
                max_reads_per_replica,
                primary_view: Arc::default(),
                issued: AtomicU64::new(0),
                primary,
                primary_target: ConnectionTarget::of(&config.database_url, false),
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

    /// The configuration the router was built from (the primary's direct
    /// URL and pooler mode among others).
    pub fn config(&self) -> &Config {
        &self.inner.config
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

    /// How many reads each replica holds now (running there, or waiting
    /// for its replay to pass a token), in configuration order.
    pub fn reads_in_flight(&self) -> Vec<usize> {
        self.inner
            .replicas
            .iter()
            .map(|r| r.in_flight.load(Ordering::Acquire))
            .collect()
    }

    /// The primary's identity as this router last read it (by a probe or
    /// a write): what a token must carry to be served by a replica.
    pub fn primary_identity(&self) -> Option<ClusterIdentity> {
        self.inner.primary_view.identity()
    }

    /// How long a read sent to a replica may take before its caller may
    /// give up on it and read on the primary instead: what a replica that
    /// answers can take at most (a pool checkout, the statement timeout)
    /// plus [`ReplicaOptions::stalled_after`], after which its prober
    /// counts it as not answering. 41 s with the defaults. A read on a
    /// server that stopped answering keeps its thread and its place among
    /// the replica's reads until the server answers or the connection
    /// dies, but need not keep its caller.
    pub fn replica_read_bound(&self) -> std::time::Duration {
        let config = &self.inner.config;
        config.checkout_timeout
            + std::time::Duration::from_millis(config.statement_timeout_ms)
            + self.inner.options.stalled_after()
    }

    /// A snapshot of the routing counters.
    pub fn counters(&self) -> RoutingCounters {
        self.inner.counters.snapshot()
    }

    /// Runs `f` on the primary and returns its result with a token: the
    /// primary's WAL position read on the same connection after `f`
    /// returned, which covers every commit `f` made, and the primary's
    /// identity (as the probes last read it; read on this connection when
    /// no probe has yet, so at most once without replicas). `f` must not
    /// leave a transaction open (the connection functions of
    /// [`crate::repo`] commit their own). When the primary's identity
    /// cannot be read (the role may not execute `pg_control_system()`), the
    /// token carries [`ClusterIdentity::UNVERIFIED`], which only the
    /// primary satisfies: `f` has committed, so the write never fails for
    /// its token. Nor does it when the position cannot be read after `f`
    /// committed (the connection broke in between): the token then carries
    /// [`ClusterIdentity::UNVERIFIED`] too, with the highest position known.
    ///
    /// When the connection is lost after `f` sent its top-level `COMMIT`
    /// (the primary died, or failed over, while committing), the write is
    /// reported as [`Error::OutcomeUnknown`]: it may have been committed.
    /// A connection lost earlier leaves nothing committed: that is an
    /// [`Error::ConnectionLost`], [retryable](Error::is_retryable). Either way the primary's idle
    /// pooled connections are checked at once and the dead ones discarded
    /// (see [`Router::discard_dead_connections`]), so that the next
    /// checkouts open new connections (to the new primary, through a
    /// multi-host URL with `target_session_attrs=read-write`).
    pub fn write<T>(
        &self,
        f: impl FnOnce(&mut PgConnection) -> Result<T>,
    ) -> Result<(T, WriteToken)> {
        let mut conn = self.observed_checkout(&self.inner.primary_target, || {
            checkout(&self.inner.primary, &self.inner.primary_url)
        })?;
        // Diesel announces each COMMIT before it sends it: after that, a
        // lost connection leaves the outcome unknown. The pool's
        // connections carry the library's instrumentation, which notes it;
        // a connection of a pool built elsewhere gets it now, once.
        match conn.instrumentation().downcast_mut::<Events>() {
            Some(events) => events.commit_sent = false,
            None => conn.set_instrumentation(Events::new(None)),
        }
        let value = match f(&mut conn) {
            Ok(value) => value,
            Err(e) => {
                let lost = match &e {
                    Error::Query(q) | Error::StatementTimeout(q) => connection_lost(q),
                    _ => false,
                };
                if !lost {
                    return Err(e);
                }
                // `f` replaced the instrumentation if it is not there:
                // then a COMMIT may have been sent unseen.
                let commit_sent = conn
                    .instrumentation()
                    .downcast_mut::<Events>()
                    .is_none_or(|events| events.commit_sent);
                drop(conn);
                self.discard_dead_connections();
                let url = self.inner.primary_url.to_string();
                return Err(match e {
                    Error::Query(source) | Error::StatementTimeout(source) if commit_sent => {
                        Error::OutcomeUnknown { url, source }
                    }
                    Error::Query(source) | Error::StatementTimeout(source) => {
                        Error::ConnectionLost { url, source }
                    }
                    other => other,
                });
            }
        };
        // `f` has committed: from here on nothing fails the write. A token
        // whose position or identity cannot be read carries
        // `ClusterIdentity::UNVERIFIED`, which sends the next read to the
        // primary, where the write is.
        let (lsn, timeline) = match position_and_timeline(&mut conn) {
            Ok(read) => read,
            Err(e) => {
                tracing::warn!(error = %e, "the write committed; its WAL position could not be read");
                bump(&self.inner.counters.writes);
                if matches!(&e, Error::Query(q) | Error::StatementTimeout(q) if connection_lost(q))
                {
                    // Diesel does not always mark a connection broken when
                    // a prepared statement's preparation finds it gone: check
                    // the idle ones, this one included, rather than hand it
                    // to the next caller.
                    drop(conn);
                    self.discard_dead_connections();
                }
                return Ok((
                    value,
                    WriteToken::new(self.highest_known(), ClusterIdentity::UNVERIFIED),
                ));
            }
        };
        let view = &self.inner.primary_view;
        let identity = match view.identity() {
            Some(identity) => identity,
            None => match primary_identity(&mut conn) {
                Ok(Some(identity)) => {
                    view.set_identity(identity);
                    identity
                }
                Ok(None) => ClusterIdentity::UNVERIFIED,
                Err(e) => {
                    tracing::warn!(error = %e, "the write committed; the primary's identity could not be read");
                    ClusterIdentity::UNVERIFIED
                }
            },
        };
        // The timeline of the server that committed, not the one a probe
        // (or the first write) saw: after a failover the new primary
        // writes a new timeline, and a token of the old one is read on
        // the primary until a replica is known to follow the new one.
        let identity = match timeline {
            Some(timeline)
                if identity != ClusterIdentity::UNVERIFIED && timeline != identity.timeline =>
            {
                let current = ClusterIdentity {
                    timeline,
                    ..identity
                };
                view.set_identity(current);
                current
            }
            _ => identity,
        };
        self.inner.issued.fetch_max(lsn.0, Ordering::AcqRel);
        bump(&self.inner.counters.writes);
        Ok((value, WriteToken::new(lsn, identity)))
    }

    /// Checks each idle connection of the primary's pool (`SELECT 1`) and
    /// discards those whose server is gone, waiting at most
    /// [`DISCARD_WAIT`] (a check stuck on a silent network goes on in the
    /// background). Called when a primary connection was found lost: a
    /// server that died took its other connections with it, and without
    /// this each of them would fail one more call before the pool dropped
    /// it. Diesel marks a connection broken once libpq finds it dead, and
    /// r2d2 then discards it instead of taking it back.
    pub fn discard_dead_connections(&self) {
        let pool = self.inner.primary.clone();
        let (done, finished) = std::sync::mpsc::channel();
        let checker = std::thread::Builder::new()
            .name("cruddur-db-discard".into())
            .spawn(move || {
                let mut checked = Vec::new();
                while let Some(mut conn) = pool.try_get() {
                    let alive =
                        diesel::connection::SimpleConnection::batch_execute(&mut *conn, "SELECT 1")
                            .is_ok();
                    if alive {
                        // Held until every idle one is seen, so that
                        // try_get does not hand it back.
                        checked.push(conn);
                    }
                }
                drop(checked);
                let _ = done.send(());
            });
        match checker {
            Ok(_) => {
                let _ = finished.recv_timeout(DISCARD_WAIT);
            }
            Err(e) => tracing::warn!("cannot check the pool's connections: {e}"),
        }
    }

    /// The highest position this primary is known to have reached: the
    /// highest token issued here, or position seen by a probe.
    fn highest_known(&self) -> Lsn {
        Lsn(self.inner.issued.load(Ordering::Acquire)).max(self.inner.primary_view.position())
    }

    /// Whether a read with `consistency` would be sent to the primary
    /// without trying a replica, as things stand (the answer may change
    /// before the read is made; a read sent to a replica may still end on
    /// the primary, as [`Router::read`] says). The service queues for the
    /// primary's pool only the calls this says go there.
    pub fn would_read_on_primary(&self, consistency: Consistency) -> bool {
        let room = |extra: &dyn Fn(&ReplicaState) -> bool| {
            let now = Instant::now();
            self.inner.replicas.iter().any(|r| {
                let state = lock(&r.state);
                self.usable(&state, now)
                    && extra(&state)
                    && r.in_flight.load(Ordering::Acquire) < self.inner.max_reads_per_replica
            })
        };
        match consistency {
            Consistency::Primary => true,
            Consistency::Eventual => !room(&|_| true),
            Consistency::AtLeast(token) => {
                self.inner.primary_view.identity() != Some(token.identity())
                    || token.lsn() > self.highest_known()
                    || !room(&|_| true)
            }
        }
    }

    /// Runs `f` on a connection chosen for `consistency`:
    ///
    /// - [`Consistency::Primary`]: the primary.
    /// - [`Consistency::Eventual`]: a replica that is up (round robin), else
    ///   the primary.
    /// - [`Consistency::AtLeast`]: the primary at once when the token's
    ///   identity is not the primary's (another cluster or timeline), or
    ///   its position is beyond every token this router issued and every
    ///   position its probes saw on the primary; else a replica that is up
    ///   and whose last probed replay position is at or past the token;
    ///   else the replica furthest along is watched for up to
    ///   [`ReplicaOptions::token_wait`] (without holding a connection) and
    ///   serves the read once its replay passes the token; else the
    ///   primary.
    ///
    /// A replica that is out is skipped without touching its pool, and so
    /// is one that holds [`ReplicaOptions::max_reads_per_replica`] reads. On a
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
                Pick::Replica(slot) => self.on_replica(slot, &mut f),
                other => self.no_replica(&other, &mut f),
            },
            Consistency::AtLeast(token) => {
                if self.inner.primary_view.identity() != Some(token.identity()) {
                    bump(&counters.primary_reads_foreign_token);
                    return self.on_primary(&mut f);
                }
                let lsn = token.lsn();
                if lsn > self.highest_known() {
                    bump(&counters.primary_reads_token_ahead);
                    return self.on_primary(&mut f);
                }
                if let Pick::Replica(slot) = self.pick(|s| s.replay_lsn >= Some(lsn)) {
                    return self.on_replica(slot, &mut f);
                }
                let slot = match self.furthest_up() {
                    Pick::Replica(slot) => slot,
                    other => return self.no_replica(&other, &mut f),
                };
                let options = &self.inner.options;
                if options.token_wait.is_zero() {
                    drop(slot);
                    bump(&counters.primary_reads_not_current);
                    return self.on_primary(&mut f);
                }
                let watch = &self.inner.replicas[slot.index].watch;
                if watch.wait_for(lsn, options.token_wait) {
                    bump(&counters.token_waits_succeeded);
                    self.on_replica(slot, &mut f)
                } else {
                    drop(slot);
                    bump(&counters.token_waits_timed_out);
                    bump(&counters.primary_reads_not_current);
                    self.on_primary(&mut f)
                }
            }
        }
    }
}
