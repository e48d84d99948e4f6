//! Read replicas: reads routed by the consistency the caller asks for,
//! writes that return a token, and background health probes.
//!
//! - A write through [`Router::write`] returns a [`WriteToken`]: the
//!   primary's WAL position after its commit, with the primary's
//!   [`ClusterIdentity`] (system identifier and timeline). Its text form
//!   (`0/16B3748.1.7714726817598851214`) can travel in a cookie or a
//!   header. A token of another identity is read on the primary: no
//!   replica position satisfies it; so is a token beyond every position
//!   this primary is known to have reached (a forged one), at once.
//! - A read through [`Router::read`] says what it needs as a
//!   [`Consistency`]: [`Eventual`](Consistency::Eventual) (any healthy
//!   replica), [`AtLeast`](Consistency::AtLeast) a token (only a server
//!   that has replayed past it: a replica as soon as its replay passes the
//!   token, else the primary after a short bounded wait), or
//!   [`Primary`](Consistency::Primary).
//! - Each replica has a prober thread with connections of its own that
//!   reads `pg_is_in_recovery()`, the replay and receive positions and the
//!   replay timestamp every [`ReplicaOptions::probe_interval`] (jittered),
//!   so requests pay nothing for health. A replica is out when it is down,
//!   not in recovery, a standby of another cluster or timeline (its
//!   `system_identifier` from `pg_control_system()` and its timeline must
//!   be the primary's; one that cannot show them is unverified), or behind
//!   by more than both a byte and a time threshold; it comes back after a few good probes in a row
//!   ([`ReplicaState`]). A replica whose probe waits longer than
//!   [`ReplicaOptions::stalled_after`] (a frozen server, a silent network)
//!   is out while it waits. A replica that is out is skipped without
//!   touching its pool, so a dead one costs requests no connect timeout
//!   once found.
//! - Each replica holds at most
//!   [`ReplicaOptions::max_reads_per_replica`] reads at once; reads over it
//!   go elsewhere. A read waiting for a replica to replay past its token
//!   waits on that replica's watch (one thread and connection per replica,
//!   polling only while someone waits), not on a pooled connection.
//! - Replica sessions are read-only (`default_transaction_read_only`;
//!   behind a transaction pooler, which keeps no session setting, each
//!   replica read runs in a read-only transaction instead); a read
//!   cancelled by a recovery conflict is retried once on the primary.
//! - [`RoutingCounters`] count each decision.
//!
//! Replicas are listed in `DATABASE_REPLICA_URLS` ([`crate::config`]);
//! without any, a [`Router`] is the primary's pool and nothing else.

mod counters;
mod health;
mod positions;
mod prober;
mod router;
mod token;
mod watch;

pub use counters::RoutingCounters;
pub use health::{
    DEFAULT_MAX_LAG_BYTES, DEFAULT_MAX_LAG_TIME, DEFAULT_MAX_READS_PER_REPLICA,
    DEFAULT_PROBE_CONNECT_TIMEOUT_SECS, DEFAULT_PROBE_INTERVAL, DEFAULT_PROBE_STATEMENT_TIMEOUT,
    DEFAULT_RECOVER_AFTER, DEFAULT_TOKEN_WAIT, Probe, ReplicaOptions, ReplicaState, ReplicaStatus,
};
pub use positions::{
    current_position, primary_identity, replay_position, standby_identity, write_token,
};
pub use prober::PROBE_APPLICATION_NAME;
pub use router::Router;
pub use token::{ClusterIdentity, Consistency, Lsn, WriteToken};
