//! Replica health: the thresholds ([`ReplicaOptions`]) and the state a
//! prober keeps for each replica ([`ReplicaState`]), with hysteresis.
//!
//! The state machine is plain data, fed one probe result at a time, so that
//! it is tested without a server.

use std::fmt;
use std::time::{Duration, Instant};

use super::token::{ClusterIdentity, Lsn};

/// Default byte lag beyond which a replica may be taken out: 8 MiB (GitLab's
/// `max_replication_difference`).
pub const DEFAULT_MAX_LAG_BYTES: u64 = 8 * 1024 * 1024;
/// Default time lag beyond which a replica may be taken out: 60 s (GitLab's
/// `max_replication_lag_time`).
pub const DEFAULT_MAX_LAG_TIME: Duration = Duration::from_secs(60);
/// Default number of consecutive good probes a replica that was taken out
/// needs to come back: 3 (so that one lucky probe does not flap it in).
pub const DEFAULT_RECOVER_AFTER: u32 = 3;
/// Default time between two probes of one replica: 1 s, jittered by ±25% so
/// that the probers of many processes do not hit a replica in step.
pub const DEFAULT_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Default statement timeout of a probe: 1 s (a replica that cannot answer
/// four catalog functions in a second is not one to send reads to).
pub const DEFAULT_PROBE_STATEMENT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default `connect_timeout` of a prober's connection, in seconds: 2 (libpq
/// counts whole seconds; its minimum is 2).
pub const DEFAULT_PROBE_CONNECT_TIMEOUT_SECS: u32 = 2;
/// Default bound on the wait for a replica to replay past a token before
/// the read goes to the primary: 50 ms.
pub const DEFAULT_TOKEN_WAIT: Duration = Duration::from_millis(50);
/// Default bound on the reads one replica may hold at once (running, or
/// waiting for its replay to pass a token): 8, and never more than the
/// replica's pool size. A read over it goes to another replica or the
/// primary, so a replica that stopped answering holds at most this many.
pub const DEFAULT_MAX_READS_PER_REPLICA: u32 = 8;

/// How replicas are probed and when they are used. Every field has a
/// documented default ([`ReplicaOptions::default`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplicaOptions {
    /// Byte lag (the primary's WAL position minus the replica's replay
    /// position) beyond which a replica is lagging, when its time lag is
    /// beyond [`max_lag_time`](Self::max_lag_time) too (default
    /// [`DEFAULT_MAX_LAG_BYTES`]). Both must be exceeded: time lag alone
    /// grows on an idle primary, where there is nothing to replay.
    pub max_lag_bytes: u64,
    /// Time since the replica last replayed a transaction beyond which it
    /// is lagging, when its byte lag is beyond the byte threshold too
    /// (default [`DEFAULT_MAX_LAG_TIME`]).
    pub max_lag_time: Duration,
    /// Consecutive good probes a replica that was out needs to come back
    /// (default [`DEFAULT_RECOVER_AFTER`]; at least 1).
    pub recover_after: u32,
    /// Time between two probes, before jitter (default
    /// [`DEFAULT_PROBE_INTERVAL`]).
    pub probe_interval: Duration,
    /// Statement timeout of the probe's queries (default
    /// [`DEFAULT_PROBE_STATEMENT_TIMEOUT`]).
    pub probe_statement_timeout: Duration,
    /// `connect_timeout` of the prober's connection, in seconds (default
    /// [`DEFAULT_PROBE_CONNECT_TIMEOUT_SECS`]).
    pub probe_connect_timeout_secs: u32,
    /// How long a read with [`Consistency::AtLeast`](super::Consistency)
    /// polls a replica for the token before it goes to the primary
    /// (default [`DEFAULT_TOKEN_WAIT`]; zero sends it to the primary at once).
    pub token_wait: Duration,
    /// Reads one replica may hold at once, counting those waiting for its
    /// replay (default [`DEFAULT_MAX_READS_PER_REPLICA`]; capped by the
    /// pool size; 0 sends every read to the primary).
    pub max_reads_per_replica: u32,
}

impl ReplicaOptions {
    /// How long a probe may wait before its replica counts as
    /// [`ReplicaStatus::Stalled`]: twice the probe's connect timeout plus
    /// statement timeout (one of each for the primary and for the
    /// replica), 6 s by default. The statement timeout is enforced by the
    /// server, so a server that stopped answering would hold a probe (and a
    /// request) for as long as it stays silent; this bound is what takes
    /// it out of the routing meanwhile.
    pub fn stalled_after(&self) -> Duration {
        (Duration::from_secs(u64::from(self.probe_connect_timeout_secs))
            + self.probe_statement_timeout)
            * 2
    }
}

impl Default for ReplicaOptions {
    fn default() -> Self {
        Self {
            max_lag_bytes: DEFAULT_MAX_LAG_BYTES,
            max_lag_time: DEFAULT_MAX_LAG_TIME,
            recover_after: DEFAULT_RECOVER_AFTER,
            probe_interval: DEFAULT_PROBE_INTERVAL,
            probe_statement_timeout: DEFAULT_PROBE_STATEMENT_TIMEOUT,
            probe_connect_timeout_secs: DEFAULT_PROBE_CONNECT_TIMEOUT_SECS,
            token_wait: DEFAULT_TOKEN_WAIT,
            max_reads_per_replica: DEFAULT_MAX_READS_PER_REPLICA,
        }
    }
}

/// What the last probe found a replica to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplicaStatus {
    /// Not probed yet: not used until the first probe answers.
    Unknown,
    /// Answering, in recovery, within the lag thresholds: used.
    Up,
    /// Beyond both lag thresholds: not used.
    Lagging,
    /// Could not be reached or did not answer the probe: not used.
    Down,
    /// Answering but not a standby (promoted, or a primary by mistake):
    /// not used, since it no longer follows the primary.
    NotInRecovery,
    /// Its probe has waited longer than
    /// [`ReplicaOptions::stalled_after`] for an answer: the server (or the
    /// network to it) accepts but does not answer, e.g. a frozen process
    /// or a host gone silent. Not used until it answers again.
    Stalled,
    /// A standby of another cluster: its `system_identifier` differs from
    /// the primary's, so its positions say nothing about the primary's
    /// writes. Not used.
    ForeignCluster,
    /// A standby of this cluster on another timeline than the primary's
    /// (left behind by a promotion, or not yet following the new one).
    /// Not used.
    OtherTimeline,
    /// Its identity, or the primary's, could not be read (the role may not
    /// execute `pg_control_system()`, or the primary has not answered yet),
    /// so nothing proves that it follows the primary. Not used.
    Unverified,
}

impl fmt::Display for ReplicaStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReplicaStatus::Unknown => "unknown",
            ReplicaStatus::Up => "up",
            ReplicaStatus::Lagging => "lagging",
            ReplicaStatus::Down => "down",
            ReplicaStatus::NotInRecovery => "not in recovery",
            ReplicaStatus::Stalled => "not answering",
            ReplicaStatus::ForeignCluster => "another cluster",
            ReplicaStatus::OtherTimeline => "another timeline",
            ReplicaStatus::Unverified => "unverified",
        })
    }
}

/// What one probe read from a replica (and from the primary, for its WAL
/// position).
#[derive(Debug, Clone, PartialEq)]
pub enum Probe {
    /// The replica could not be reached, or the probe failed; the message
    /// holds no password.
    Failed(String),
    /// The replica answered.
    Answered {
        /// `pg_is_in_recovery()`.
        in_recovery: bool,
        /// `pg_last_wal_replay_lsn()`.
        replay: Option<Lsn>,
        /// `pg_last_wal_receive_lsn()`.
        receive: Option<Lsn>,
        /// The primary's `pg_current_wal_lsn()`, when it could be read.
        primary: Option<Lsn>,
        /// The replica's system identifier and timeline, when this session
        /// may read them.
        identity: Option<ClusterIdentity>,
        /// The primary's, as last read.
        primary_identity: Option<ClusterIdentity>,
        /// Time since the last replayed transaction committed on the
        /// primary (`now() - pg_last_xact_replay_timestamp()`), if any.
        replay_age: Option<Duration>,
    },
}

/// A replica's health, as its prober last saw it.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplicaState {
    /// What the probes say; only [`ReplicaStatus::Up`] is routed to.
    pub status: ReplicaStatus,
    /// Consecutive good probes so far (a replica that was out comes back
    /// after [`ReplicaOptions::recover_after`] of them).
    pub good_probes: u32,
    /// Bytes of WAL the replica has not replayed: the primary's position
    /// minus its replay position (or, when the primary could not be read,
    /// its receive position minus its replay position).
    pub lag_bytes: Option<u64>,
    /// Time since the last transaction it replayed committed on the
    /// primary. Large on an idle primary even when nothing is behind.
    pub lag_time: Option<Duration>,
    /// Its replay position at the last probe: a token at or below it is
    /// visible there.
    pub replay_lsn: Option<Lsn>,
    /// Its receive position at the last probe.
    pub receive_lsn: Option<Lsn>,
    /// Its system identifier and timeline at the last probe.
    pub identity: Option<ClusterIdentity>,
    /// When it was last probed (or found failing by a request).
    pub last_probe: Option<Instant>,
    /// Why it is out, when it is.
    pub last_error: Option<String>,
    /// How many times it went down: the connections pooled before an
    /// outage died with the server, so the router opens new ones after it.
    pub outages: u64,
    /// When the probe under way started, if one is.
    pub probing_since: Option<Instant>,
}

impl Default for ReplicaState {
    fn default() -> Self {
        Self {
            status: ReplicaStatus::Unknown,
            good_probes: 0,
            lag_bytes: None,
            lag_time: None,
            replay_lsn: None,
            receive_lsn: None,
            identity: None,
            last_probe: None,
            last_error: None,
            outages: 0,
            probing_since: None,
        }
    }
}

impl ReplicaState {
    /// Whether reads may be sent to it, as of its last probe. A router
    /// also asks [`ReplicaState::at`] whether that probe is stuck.
    pub fn is_up(&self) -> bool {
        self.status == ReplicaStatus::Up
    }

    /// Whether its probe under way has waited past `options`'
    /// [`stalled_after`](ReplicaOptions::stalled_after) at `now`.
    pub fn is_stalled(&self, options: &ReplicaOptions, now: Instant) -> bool {
        self.probing_since
            .is_some_and(|since| now.saturating_duration_since(since) > options.stalled_after())
    }

    /// The state as of `now`: [`ReplicaStatus::Stalled`] while its probe
    /// has waited too long for an answer, else as last recorded.
    pub fn at(&self, options: &ReplicaOptions, now: Instant) -> ReplicaState {
        let mut state = self.clone();
        if let Some(since) = self.probing_since.filter(|_| self.is_stalled(options, now)) {
            state.status = ReplicaStatus::Stalled;
            state.good_probes = 0;
            state.last_error = Some(stalled_message(now.saturating_duration_since(since)));
        }
        state
    }

    /// Notes that a probe starts at `at`.
    pub fn probe_started(&mut self, at: Instant) {
        self.probing_since = Some(at);
    }

    /// Takes in one probe result taken at `at`.
    ///
    /// A failing probe takes the replica out at once (a dead replica must
    /// not cost requests a connect timeout); a good one brings it back only
    /// after `recover_after` in a row, except for the first probe of a
    /// replica never seen failing, which needs no history.
    /// A probe that answers only after it stalled counts as bad: a server
    /// that froze once has to answer well a few times before it is used
    /// again.
    pub fn record(&mut self, probe: Probe, options: &ReplicaOptions, at: Instant) {
        let stalled = self.is_stalled(options, at).then(|| {
            let waited = self
                .probing_since
                .map_or(Duration::ZERO, |since| at.saturating_duration_since(since));
            (ReplicaStatus::Stalled, stalled_message(waited))
        });
        self.probing_since = None;
        self.last_probe = Some(at);
        let bad = match probe {
            Probe::Failed(message) => {
                self.replay_lsn = None;
                self.receive_lsn = None;
                self.identity = None;
                self.lag_bytes = None;
                self.lag_time = None;
                Some((ReplicaStatus::Down, message))
            }
            Probe::Answered {
                in_recovery,
                replay,
                receive,
                primary,
                identity,
                primary_identity,
                replay_age,
            } => {
                // The latest reading, not the highest ever seen: a standby
                // restarted after a crash may accept connections before it
                // has replayed again as far as it had.
                self.replay_lsn = replay;
                self.receive_lsn = receive;
                self.identity = identity;
                let ahead = primary.or(receive);
                self.lag_bytes = match (ahead, replay) {
                    (Some(a), Some(r)) => Some(a.0.saturating_sub(r.0)),
                    _ => None,
                };
                self.lag_time = replay_age;
                let too_far = self.lag_bytes.is_some_and(|b| b > options.max_lag_bytes)
                    && replay_age.is_none_or(|t| t > options.max_lag_time);
                if !in_recovery {
                    Some((
                        ReplicaStatus::NotInRecovery,
                        "the server is not in recovery (not a standby)".to_owned(),
                    ))
                } else if let Some(bad) = identity_mismatch(identity, primary_identity) {
                    Some(bad)
                } else if too_far {
                    Some((
                        ReplicaStatus::Lagging,
                        format!(
                            "{} bytes and {:?} behind (thresholds {} bytes and {:?})",
                            self.lag_bytes.unwrap_or_default(),
                            replay_age.unwrap_or_default(),
                            options.max_lag_bytes,
                            options.max_lag_time
                        ),
                    ))
                } else {
                    None
                }
            }
        };
        match bad.or(stalled) {
            Some((status, message)) => {
                if status == ReplicaStatus::Down && self.status != ReplicaStatus::Down {
                    self.outages += 1;
                }
                self.status = status;
                self.good_probes = 0;
                self.last_error = Some(message);
            }
            None => {
                self.good_probes = self.good_probes.saturating_add(1);
                if matches!(self.status, ReplicaStatus::Up | ReplicaStatus::Unknown)
                    || self.good_probes >= options.recover_after.max(1)
                {
                    self.status = ReplicaStatus::Up;
                    self.last_error = None;
                }
            }
        }
    }
}

/// Why a replica of `replica`'s identity does not follow a primary of
/// `primary`'s, or `None` when it does (same system identifier and
/// timeline).
fn identity_mismatch(
    replica: Option<ClusterIdentity>,
    primary: Option<ClusterIdentity>,
) -> Option<(ReplicaStatus, String)> {
    match (replica, primary) {
        (None, _) => Some((
            ReplicaStatus::Unverified,
            "cannot read the replica's system identifier (no EXECUTE on pg_control_system() \
             or pg_control_checkpoint())"
                .to_owned(),
        )),
        (_, None) => Some((
            ReplicaStatus::Unverified,
            "the primary's system identifier and timeline are not known (not read yet, or no \
             EXECUTE on pg_control_system())"
                .to_owned(),
        )),
        (Some(r), Some(p)) if r.system_identifier != p.system_identifier => Some((
            ReplicaStatus::ForeignCluster,
            format!(
                "a standby of another cluster: system identifier {} where the primary's is {}",
                r.system_identifier, p.system_identifier
            ),
        )),
        (Some(r), Some(p)) if r.timeline != p.timeline => Some((
            ReplicaStatus::OtherTimeline,
            format!(
                "on timeline {} where the primary is on timeline {}",
                r.timeline, p.timeline
            ),
        )),
        _ => None,
    }
}

fn stalled_message(waited: Duration) -> String {
    format!(
        "the probe has waited {:.1} s for an answer",
        waited.as_secs_f64()
    )
}

#[cfg(test)]
mod tests;
