//! The calls bound for the primary: a fixed set of threads, one per
//! connection of the primary's pool, that take calls first come, first
//! served from one queue.
//!
//! Before, each call waited for a permit (a Tokio semaphore, for the same
//! order) and then ran on Tokio's blocking pool. Whenever a call ended, the
//! next one was still waiting for the permit that call gave back, not in
//! the blocking pool's queue, so the thread that had just finished found
//! nothing to do and went to sleep, and the next call woke another one:
//! two thread wake-ups per request on top of the database's, which on two
//! cores cost more CPU than the rest of the request. Here a thread that
//! finishes takes the next call at once while calls are waiting, and
//! sleeps only when none is.
//!
//! A call that has waited [`Workers::call`]'s timeout without being taken
//! is withdrawn (it never runs: `503`, nothing written); one already taken
//! is waited for. A call whose caller went away before it was taken (the
//! client disconnected, the shutdown deadline) is skipped.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::sync::oneshot;

/// A call waiting in the queue.
const QUEUED: u8 = 0;
/// A call a thread has taken.
const TAKEN: u8 = 1;
/// A call its caller withdrew after waiting too long.
const WITHDRAWN: u8 = 2;

/// Why [`Workers::call`] has no result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum CallError {
    /// No thread took the call within the timeout; it will not run.
    Busy,
    /// The call panicked, or the threads are gone.
    Failed(&'static str),
}

type Job = Box<dyn FnOnce() + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a call: a call wakes one only if there is one.
    idle: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The threads and their queue. Dropping the last clone stops the threads
/// once the calls already queued have run.
#[derive(Clone)]
pub(crate) struct Workers {
    owner: Arc<Owner>,
}

struct Owner {
    shared: Arc<Shared>,
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.ready.notify_all();
    }
}

impl Workers {
    /// `threads` threads (at least one), named `cruddur-db-N`.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn start(threads: usize) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        });
        for n in 0..threads.max(1) {
            let shared = Arc::clone(&shared);
            std::thread::Builder::new()
                .name(format!("cruddur-db-{n}"))
                .spawn(move || work(&shared))?;
        }
        Ok(Self {
            owner: Arc::new(Owner { shared }),
        })
    }

    /// Runs `f` on one of the threads, after the calls queued before it;
    /// [`CallError::Busy`] (and `f` never runs) when no thread has taken
    /// it within `wait`.
    pub(crate) async fn call<T: Send + 'static>(
        &self,
        wait: Duration,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, CallError> {
        let state = Arc::new(AtomicU8::new(QUEUED));
        let (tx, mut rx) = oneshot::channel();
        let job: Job = {
            let state = Arc::clone(&state);
            Box::new(move || {
                if tx.is_closed()
                    || state
                        .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                        .is_err()
                {
                    return;
                }
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
                let _ = tx.send(result);
            })
        };
        self.queue(job);
        let received = match tokio::time::timeout(wait, &mut rx).await {
            Ok(received) => received,
            Err(_) => {
                if state
                    .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
                {
                    return Err(CallError::Busy);
                }
                // Taken just now: it runs to the end, and is answered.
                rx.await
            }
        };
        match received {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_panic)) => Err(CallError::Failed("a database call panicked")),
            Err(_) => Err(CallError::Failed("the database threads stopped")),
        }
    }
}

impl Workers {
    /// Appends `job`, waking a thread only if one is waiting.
    fn queue(&self, job: Job) {
        let shared = &self.owner.shared;
        let wake = {
            let mut queue = shared.lock();
            queue.jobs.push_back(job);
            queue.idle > 0
        };
        if wake {
            shared.ready.notify_one();
        }
    }
}

/// A thread: takes calls in order until the queue is closed and empty.
fn work(shared: &Shared) {
    let mut queue = shared.lock();
    loop {
        if let Some(job) = queue.jobs.pop_front() {
            drop(queue);
            job();
            queue = shared.lock();
            continue;
        }
        if queue.closed {
            return;
        }
        queue.idle += 1;
        queue = shared
            .ready
            .wait(queue)
            .unwrap_or_else(PoisonError::into_inner);
        queue.idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[tokio::test]
    async fn calls_run_in_order_and_a_call_not_taken_in_time_never_runs() {
        let workers = Workers::start(1).unwrap();
        // The one thread is held until `release` is sent.
        let (release, held) = mpsc::channel::<()>();
        let (started, first_started) = mpsc::channel::<()>();
        let first = tokio::spawn({
            let workers = workers.clone();
            async move {
                workers
                    .call(Duration::from_secs(30), move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                        1
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || first_started.recv().unwrap())
            .await
            .unwrap();
        let ran = Arc::new(AtomicU8::new(0));
        let late = {
            let ran = Arc::clone(&ran);
            workers.call(Duration::from_millis(100), move || {
                ran.store(1, Ordering::SeqCst);
            })
        };
        assert_eq!(late.await, Err(CallError::Busy));
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(1));
        // The withdrawn call was dequeued after the first and skipped.
        let order = workers.call(Duration::from_secs(30), || 2).await;
        assert_eq!(order, Ok(2));
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn call ran");
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_the_thread_goes_on() {
        let workers = Workers::start(1).unwrap();
        let panicked = workers
            .call(Duration::from_secs(30), || -> u8 { panic!("boom") })
            .await;
        assert_eq!(panicked, Err(CallError::Failed("a database call panicked")));
        assert_eq!(workers.call(Duration::from_secs(30), || 3).await, Ok(3));
    }
}
