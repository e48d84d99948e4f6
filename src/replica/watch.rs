//! The replay watch: one thread per replica, with a connection of its own,
//! that reads the replica's replay position while reads wait for it to
//! pass their tokens, and wakes them. Waiting readers hold no pooled
//! connection (nor, in the service, a permit): a thousand of them cost one
//! query every [`WATCH_POLL_INTERVAL`], and nothing when none waits.

use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use diesel::PgConnection;

use super::health::ReplicaOptions;
use super::positions::replay_position;
use super::prober::{probe_connect, probe_url};
use super::token::Lsn;
use crate::config::DatabaseUrl;
use crate::pooler::Pooler;

/// How often the watch re-reads a replica's replay position while reads
/// wait: every 2 ms (a round trip on a local network is well under that,
/// and each wait is bounded by
/// [`ReplicaOptions::token_wait`](super::ReplicaOptions::token_wait)).
pub(crate) const WATCH_POLL_INTERVAL: Duration = Duration::from_millis(2);

/// How long the watch waits before it connects again after a failure.
const RETRY_AFTER: Duration = Duration::from_millis(50);

#[derive(Debug, Default)]
struct State {
    /// The replay position read last, with the time it was read.
    replay: Option<(Lsn, Instant)>,
    /// Reads waiting now.
    waiters: usize,
    stopped: bool,
}

/// One replica's replay position, as its watch thread reads it.
#[derive(Debug, Default)]
pub(crate) struct ReplayWatch {
    state: Mutex<State>,
    changed: Condvar,
}

impl ReplayWatch {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits until the replica's replay reaches `target` (true) or `bound`
    /// passes (false). Only a reading taken after the wait began counts: a
    /// replica restarted after a crash may be behind its last reading.
    pub(crate) fn wait_for(&self, target: Lsn, bound: Duration) -> bool {
        let started = Instant::now();
        let deadline = started + bound;
        let mut state = self.lock();
        state.waiters += 1;
        self.changed.notify_all();
        let reached = loop {
            if state
                .replay
                .is_some_and(|(lsn, at)| at >= started && lsn >= target)
            {
                break true;
            }
            let now = Instant::now();
            if state.stopped || now >= deadline {
                break false;
            }
            state = self
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        };
        state.waiters -= 1;
        reached
    }

    /// Stops the watch thread.
    pub(crate) fn stop(&self) {
        self.lock().stopped = true;
        self.changed.notify_all();
    }

    /// Blocks the watch thread until a read waits (true) or the watch is
    /// stopped (false).
    fn until_wanted(&self) -> bool {
        let state = self.lock();
        let state = self
            .changed
            .wait_while(state, |s| s.waiters == 0 && !s.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        !state.stopped
    }

    /// Sleeps `duration`, or less if stopped; returns whether stopped.
    fn pause(&self, duration: Duration) -> bool {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, duration, |s| !s.stopped)
            .unwrap_or_else(PoisonError::into_inner);
        state.stopped
    }

    fn publish(&self, lsn: Option<Lsn>) {
        let mut state = self.lock();
        state.replay = lsn.map(|l| (l, Instant::now()));
        drop(state);
        self.changed.notify_all();
    }

    /// Starts the watch thread of replica `index` at `url`.
    pub(crate) fn spawn(
        self: &Arc<Self>,
        index: usize,
        url: &DatabaseUrl,
        options: &ReplicaOptions,
        pooler: Pooler,
    ) -> std::io::Result<JoinHandle<()>> {
        let watch = Arc::clone(self);
        let url = probe_url(url, options);
        let options = options.clone();
        std::thread::Builder::new()
            .name(format!("cruddur-replica-watch-{index}"))
            .spawn(move || {
                let mut conn: Option<PgConnection> = None;
                while watch.until_wanted() {
                    let reading = match conn.as_mut() {
                        Some(c) => replay_position(c),
                        None => probe_connect(&url, &options, pooler)
                            .and_then(|c| replay_position(conn.insert(c))),
                    };
                    let pause = match reading {
                        Ok(lsn) => {
                            watch.publish(lsn);
                            WATCH_POLL_INTERVAL
                        }
                        Err(e) => {
                            tracing::debug!(replica = %url, "replay watch failed: {e}");
                            conn = None;
                            RETRY_AFTER
                        }
                    };
                    if watch.pause(pause) {
                        break;
                    }
                }
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wait_ends_when_a_reading_taken_after_it_began_passes_the_target() {
        let watch = Arc::new(ReplayWatch::default());
        // A reading from before the wait does not count.
        watch.publish(Some(Lsn(100)));
        assert!(!watch.wait_for(Lsn(50), Duration::ZERO));
        let waiter = Arc::clone(&watch);
        let handle = std::thread::spawn(move || waiter.wait_for(Lsn(50), Duration::from_secs(60)));
        assert!(crate_eventually(|| watch.lock().waiters == 1));
        watch.publish(Some(Lsn(10)));
        assert_eq!(watch.lock().waiters, 1, "not reached yet");
        watch.publish(Some(Lsn(50)));
        assert!(handle.join().unwrap());
        assert_eq!(watch.lock().waiters, 0);
    }

    #[test]
    fn a_wait_times_out_and_stop_releases_waiters() {
        let watch = Arc::new(ReplayWatch::default());
        assert!(!watch.wait_for(Lsn(1), Duration::from_millis(5)));
        let waiter = Arc::clone(&watch);
        let handle = std::thread::spawn(move || waiter.wait_for(Lsn(1), Duration::from_secs(600)));
        assert!(crate_eventually(|| watch.lock().waiters == 1));
        watch.stop();
        assert!(!handle.join().unwrap());
        assert!(!watch.until_wanted());
    }

    fn crate_eventually(mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if done() {
                return true;
            }
            std::thread::yield_now();
        }
        false
    }
}
