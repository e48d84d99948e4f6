//! The read path of [`Router::read`]: which replica takes a read (room
//! among its reads, round-robin or the furthest up), and what happens when
//! it fails (the primary takes the read, the replica is taken out).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{PoisonError, RwLock};
use std::time::Instant;

use diesel::prelude::*;
use diesel::result::{DatabaseErrorKind, Error as DieselError};

use super::Router;
use crate::error::{Error, Result};
use crate::instrument::ConnectionTarget;
use crate::pool::{PgPool, PgPooledConnection, build_replica_pool, checkout};
use crate::replica::counters::bump;
use crate::replica::health::{Probe, ReplicaState};
use crate::replica::positions::connection_lost;
use crate::replica::prober::lock;
use crate::replica::token::{Consistency, Lsn};

/// A place among the reads a replica may hold, given back when dropped.
pub(super) struct ReadSlot<'r> {
    pub(super) index: usize,
    pub(super) in_flight: &'r AtomicUsize,
}

impl Drop for ReadSlot<'_> {
    fn drop(&mut self) {
        self.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Whether replicas have room for a read, unreserved.
enum Room {
    /// One has.
    Free,
    /// Some could serve it, but each holds its bound of reads.
    Full,
    /// None could serve it.
    None,
}

/// Where [`Router::pick`] found room.
pub(super) enum Pick<'r> {
    /// A replica, with a place held among its reads.
    Replica(ReadSlot<'r>),
    /// Replicas could serve the read, but each holds its bound of reads.
    Full,
    /// No replica could serve it.
    None,
}

impl Router {
    /// `get`, a checkout from `target`'s pool, with the application's
    /// instrumentation told of it (see
    /// [`ConnectionInstrumentation::with_checkout`](crate::ConnectionInstrumentation::with_checkout)).
    pub(super) fn observed_checkout<T>(
        &self,
        target: &ConnectionTarget,
        get: impl FnOnce() -> T,
    ) -> T {
        let observed = self
            .inner
            .config
            .instrumentation
            .as_ref()
            .and_then(|instrumentation| instrumentation.checkout_started(target));
        let conn = get();
        drop(observed);
        conn
    }

    /// Runs `f` on the primary because `pick` found no replica with room.
    pub(super) fn no_replica<T>(
        &self,
        pick: &Pick<'_>,
        f: &mut impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let counters = &self.inner.counters;
        match pick {
            Pick::Full => bump(&counters.primary_reads_replicas_full),
            _ => bump(&counters.primary_reads_no_healthy_replica),
        }
        self.on_primary(f)
    }

    pub(super) fn on_primary<T>(
        &self,
        f: &mut impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let mut conn = self.observed_checkout(&self.inner.primary_target, || {
            checkout(&self.inner.primary, &self.inner.primary_url)
        })?;
        let result = f(&mut conn);
        if let Err(Error::Query(e)) = &result
            && connection_lost(e)
        {
            drop(conn);
            self.discard_dead_connections();
        }
        result
    }

    /// Whether a read with `consistency` goes to the primary with no
    /// replica asked, counted as [`Router::read`] counts it when it does:
    /// for a caller that reads the primary on connections of its own (the
    /// async primary of [`crate::nonblocking`], feature `async`). `false`
    /// when a replica may take it: then read it with [`Router::read`].
    pub fn claim_primary_read(&self, consistency: Consistency) -> bool {
        let counters = &self.inner.counters;
        let reason = match consistency {
            Consistency::Primary => &counters.primary_reads_chosen,
            // Looked at without taking a place or moving the round robin
            // on: the read that follows does both, once.
            Consistency::Eventual => match self.room_for_eventual() {
                Room::Free => return false,
                Room::Full => &counters.primary_reads_replicas_full,
                Room::None => &counters.primary_reads_no_healthy_replica,
            },
            Consistency::AtLeast(token) => {
                if self.inner.primary_view.identity() != Some(token.identity()) {
                    &counters.primary_reads_foreign_token
                } else if token.lsn() > self.highest_known() {
                    &counters.primary_reads_token_ahead
                } else {
                    return false;
                }
            }
        };
        bump(reason);
        true
    }

    /// Whether a replica could take an eventual read now, as
    /// [`Router::pick`] would find it, without reserving a place.
    fn room_for_eventual(&self) -> Room {
        let now = Instant::now();
        let max = self.inner.max_reads_per_replica;
        let mut full = false;
        for replica in &self.inner.replicas {
            if !self.usable(&lock(&replica.state), now) {
                continue;
            }
            if replica.in_flight.load(Ordering::Acquire) < max {
                return Room::Free;
            }
            full = true;
        }
        if full { Room::Full } else { Room::None }
    }

    /// Runs `f` on the primary's pool for a read
    /// [`Router::claim_primary_read`] has counted (so it is not counted
    /// again).
    ///
    /// # Errors
    /// As [`Router::read`] on the primary.
    pub fn read_claimed<T>(&self, mut f: impl FnMut(&mut PgConnection) -> Result<T>) -> Result<T> {
        self.on_primary(&mut f)
    }

    /// The primary's pool as its instrumentation is told of it.
    #[cfg(feature = "async")]
    pub(crate) fn primary_target(&self) -> &ConnectionTarget {
        &self.inner.primary_target
    }

    /// Runs `f` on the replica of `slot`, falling back to the primary as
    /// [`Router::read`] says (after giving the slot back).
    pub(super) fn on_replica<T>(
        &self,
        slot: ReadSlot<'_>,
        f: &mut impl FnMut(&mut PgConnection) -> Result<T>,
    ) -> Result<T> {
        let index = slot.index;
        let replica = &self.inner.replicas[index];
        let conn: Result<PgPooledConnection, _> =
            self.observed_checkout(&replica.target, || self.replica_pool(index).get());
        let mut conn = match conn {
            Ok(conn) => conn,
            Err(e) => {
                drop(slot);
                return self.after_replica_failure(index, e.to_string(), f);
            }
        };
        let result = if self.inner.config.pooler.is_transaction() {
            // No session default behind a transaction pooler (it would
            // reach the pooler's other clients): the read runs in a
            // read-only transaction of its own instead, so that a write
            // sent here fails even on a replica promoted since its last
            // probe. Two more round trips (BEGIN READ ONLY, COMMIT).
            conn.build_transaction().read_only().run(|c| f(c))
        } else {
            f(&mut conn)
        };
        drop(conn);
        drop(slot);
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
    pub(super) fn after_replica_failure<T>(
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
    pub(super) fn replica_pool(&self, index: usize) -> PgPool {
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

    /// A replica that is up, satisfies `extra` and has room for one more
    /// read (which this takes), starting the search at the next
    /// round-robin position.
    pub(super) fn pick(&self, extra: impl Fn(&ReplicaState) -> bool) -> Pick<'_> {
        let n = self.inner.replicas.len();
        if n == 0 {
            return Pick::None;
        }
        let start = self.inner.next.fetch_add(1, Ordering::Relaxed);
        let now = Instant::now();
        let mut full = false;
        for i in (0..n).map(|i| (start + i) % n) {
            let fits = {
                let state = lock(&self.inner.replicas[i].state);
                self.usable(&state, now) && extra(&state)
            };
            if fits {
                match self.reserve(i) {
                    Some(slot) => return Pick::Replica(slot),
                    None => full = true,
                }
            }
        }
        if full { Pick::Full } else { Pick::None }
    }

    /// A place among replica `index`'s reads, if it has room.
    pub(super) fn reserve(&self, index: usize) -> Option<ReadSlot<'_>> {
        let in_flight = &self.inner.replicas[index].in_flight;
        let max = self.inner.max_reads_per_replica;
        in_flight
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < max).then_some(n + 1)
            })
            .ok()
            .map(|_| ReadSlot { index, in_flight })
    }

    /// Whether reads may go to a replica in `state`: up at its last probe,
    /// and its probe under way (if any) not stuck.
    pub(super) fn usable(&self, state: &ReplicaState, now: Instant) -> bool {
        state.is_up() && !state.is_stalled(&self.inner.options, now)
    }

    /// The replica that is up and has room with the highest replay
    /// position (a place among its reads taken).
    pub(super) fn furthest_up(&self) -> Pick<'_> {
        let replicas = &self.inner.replicas;
        let now = Instant::now();
        let mut up: Vec<(Option<Lsn>, usize)> = (0..replicas.len())
            .filter_map(|i| {
                let state = lock(&replicas[i].state);
                self.usable(&state, now).then_some((state.replay_lsn, i))
            })
            .collect();
        if up.is_empty() {
            return Pick::None;
        }
        up.sort_by_key(|&(lsn, i)| (std::cmp::Reverse(lsn), i));
        up.into_iter()
            .find_map(|(_, i)| self.reserve(i))
            .map_or(Pick::Full, Pick::Replica)
    }
}
