//! Counters of the routing decisions, kept with relaxed atomics (they are
//! statistics: no decision reads them) and read as a [`RoutingCounters`]
//! snapshot.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many reads and writes went where, and why, since the router was
/// built. A snapshot: the numbers do not move after it is taken.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct RoutingCounters {
    /// Reads served by a replica.
    pub replica_reads: u64,
    /// Reads sent to the primary because the caller asked for
    /// [`Consistency::Primary`](super::Consistency::Primary).
    pub primary_reads_chosen: u64,
    /// Reads sent to the primary because no replica was up (none
    /// configured, all down, lagging or promoted).
    pub primary_reads_no_healthy_replica: u64,
    /// Reads with a token sent to the primary because no replica had
    /// replayed past it within the wait.
    pub primary_reads_not_current: u64,
    /// Reads with a token of another server (another system identifier or
    /// timeline than the primary's, or the primary's not known yet) sent
    /// to the primary at once: no replica position can satisfy it.
    pub primary_reads_foreign_token: u64,
    /// Reads with a token beyond every position this router issued and
    /// every position its probes saw on the primary (a forged or garbled
    /// token) sent to the primary at once, without a wait.
    pub primary_reads_token_ahead: u64,
    /// Reads sent to the primary because every replica that could serve
    /// them already held its bound of reads
    /// ([`ReplicaOptions::max_reads_per_replica`](super::ReplicaOptions::max_reads_per_replica)).
    pub primary_reads_replicas_full: u64,
    /// Reads with a token that a replica could serve only after a wait for
    /// its replay to pass the token.
    pub token_waits_succeeded: u64,
    /// Token waits that ran out (those reads went to the primary).
    pub token_waits_timed_out: u64,
    /// Reads cancelled on a replica by a recovery conflict (SQLSTATE
    /// 40001) and run again on the primary.
    pub conflict_retries: u64,
    /// Reads that failed on a replica because it could not be reached (the
    /// replica is then taken out until its prober sees it back) and were
    /// run again on the primary.
    pub replica_failure_retries: u64,
    /// Writes (each yields a token).
    pub writes: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) replica_reads: AtomicU64,
    pub(crate) primary_reads_chosen: AtomicU64,
    pub(crate) primary_reads_no_healthy_replica: AtomicU64,
    pub(crate) primary_reads_not_current: AtomicU64,
    pub(crate) primary_reads_foreign_token: AtomicU64,
    pub(crate) primary_reads_token_ahead: AtomicU64,
    pub(crate) primary_reads_replicas_full: AtomicU64,
    pub(crate) token_waits_succeeded: AtomicU64,
    pub(crate) token_waits_timed_out: AtomicU64,
    pub(crate) conflict_retries: AtomicU64,
    pub(crate) replica_failure_retries: AtomicU64,
    pub(crate) writes: AtomicU64,
}

/// Adds one to a counter.
pub(crate) fn bump(counter: &AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Counters {
    pub(crate) fn snapshot(&self) -> RoutingCounters {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        RoutingCounters {
            replica_reads: get(&self.replica_reads),
            primary_reads_chosen: get(&self.primary_reads_chosen),
            primary_reads_no_healthy_replica: get(&self.primary_reads_no_healthy_replica),
            primary_reads_not_current: get(&self.primary_reads_not_current),
            primary_reads_foreign_token: get(&self.primary_reads_foreign_token),
            primary_reads_token_ahead: get(&self.primary_reads_token_ahead),
            primary_reads_replicas_full: get(&self.primary_reads_replicas_full),
            token_waits_succeeded: get(&self.token_waits_succeeded),
            token_waits_timed_out: get(&self.token_waits_timed_out),
            conflict_retries: get(&self.conflict_retries),
            replica_failure_retries: get(&self.replica_failure_retries),
            writes: get(&self.writes),
        }
    }
}
