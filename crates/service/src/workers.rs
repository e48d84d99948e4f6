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
//! client disconnected, the shutdown deadline) is withdrawn too, and
//! skipped.
//!
//! [`Workers::waiting`] counts the calls queued and neither taken nor
//! withdrawn, without the lock: load shedding reads it on every request,
//! and `/metrics` exports it. Withdrawn calls stay in the queue until a
//! thread pops and skips them, so the queue's length would overcount.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::Histogram;
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

type Job = Box<dyn FnOnce(&Shared) + Send>;

struct Queue {
    jobs: VecDeque<Job>,
    /// Threads waiting for a call: a call wakes one only if there is one.
    idle: usize,
    closed: bool,
}

struct Shared {
    queue: Mutex<Queue>,
    ready: Condvar,
    /// Calls queued, neither taken nor withdrawn.
    waiting: AtomicUsize,
    /// Where each call's wait in the queue is observed, in seconds: until
    /// a thread took it, or until it was withdrawn at its timeout.
    wait_seconds: Option<Histogram>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Moves a queued call to `to` (taken or withdrawn), once: whichever
    /// of its thread and its caller comes first wins, and only the winner
    /// stops counting it as waiting and ends its `pool checkout` span (so
    /// that a call withdrawn at its timeout does not seem to wait until a
    /// thread pops it).
    fn leave_queue(&self, slot: &Slot, to: u8) -> bool {
        let left = slot
            .state
            .compare_exchange(QUEUED, to, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if left {
            self.waiting.fetch_sub(1, Ordering::AcqRel);
            if let Some(span) = &slot.wait_span {
                drop(span.lock().unwrap_or_else(PoisonError::into_inner).take());
            }
        }
        left
    }

    fn observe_wait(&self, since: Instant) {
        if let Some(histogram) = &self.wait_seconds {
            histogram.observe(since.elapsed().as_secs_f64());
        }
    }
}

/// What a queued call's caller and its job share.
struct Slot {
    /// [`QUEUED`], [`TAKEN`] or [`WITHDRAWN`].
    state: AtomicU8,
    /// With tracing on, the call's `pool checkout` span, ended by whoever
    /// takes the call out of the queue.
    wait_span: Option<Mutex<Option<tracing::Span>>>,
}

/// A queued call's place, held by its caller: dropping it (the caller went
/// away) withdraws the call if no thread has taken it yet.
struct Ticket {
    shared: Arc<Shared>,
    slot: Arc<Slot>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.leave_queue(&self.slot, WITHDRAWN);
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
    /// `threads` threads (at least one), named `cruddur-db-N`; each call's
    /// wait in the queue is observed in `wait_seconds`, if given.
    ///
    /// # Errors
    /// When a thread cannot be started.
    pub(crate) fn start(threads: usize, wait_seconds: Option<Histogram>) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::new(),
                idle: 0,
                closed: false,
            }),
            ready: Condvar::new(),
            waiting: AtomicUsize::new(0),
            wait_seconds,
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
        let shared = &self.owner.shared;
        // With tracing on: `pool checkout` until a thread takes the call,
        // which then runs in the request's span (its statements' parent).
        let (wait_span, request_span) = crate::telemetry::call_spans().unzip();
        let ticket = Ticket {
            shared: Arc::clone(shared),
            slot: Arc::new(Slot {
                state: AtomicU8::new(QUEUED),
                wait_span: wait_span.map(|span| Mutex::new(Some(span))),
            }),
        };
        let queued_at = Instant::now();
        let (tx, mut rx) = oneshot::channel();
        let job: Job = {
            let slot = Arc::clone(&ticket.slot);
            Box::new(move |shared: &Shared| {
                if !shared.leave_queue(&slot, TAKEN) {
                    return;
                }
                shared.observe_wait(queued_at);
                let result = {
                    let _in_request = request_span.as_ref().map(tracing::Span::enter);
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
                };
                // Given back before the caller is answered, so that the
                // request's span can end with its request.
                drop(request_span);
                let _ = tx.send(result);
            })
        };
        self.queue(job);
        let received = match tokio::time::timeout(wait, &mut rx).await {
            Ok(received) => received,
            Err(_) => {
                if shared.leave_queue(&ticket.slot, WITHDRAWN) {
                    shared.observe_wait(queued_at);
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
    /// The calls waiting for a thread now: queued, neither taken nor
    /// withdrawn.
    pub(crate) fn waiting(&self) -> usize {
        self.owner.shared.waiting.load(Ordering::Acquire)
    }

    /// Appends `job`, waking a thread only if one is waiting.
    fn queue(&self, job: Job) {
        let shared = &self.owner.shared;
        // Counted before it is visible to the threads, so that a thread
        // taking it never brings the count below zero.
        shared.waiting.fetch_add(1, Ordering::AcqRel);
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
            job(shared);
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
        let workers = Workers::start(1, None).unwrap();
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
    async fn waiting_counts_the_calls_not_taken_until_they_are_taken_or_withdrawn() {
        let histogram = Histogram::new([0.001, 1.0]);
        let workers = Workers::start(1, Some(histogram.clone())).unwrap();
        let (release, held) = mpsc::channel::<()>();
        let (started, first_started) = mpsc::channel::<()>();
        let first = tokio::spawn({
            let workers = workers.clone();
            async move {
                workers
                    .call(Duration::from_secs(30), move || {
                        started.send(()).unwrap();
                        held.recv().unwrap();
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || first_started.recv().unwrap())
            .await
            .unwrap();
        assert_eq!(workers.waiting(), 0, "a call taken is not waiting");
        // A caller that goes away withdraws its call.
        let ran = Arc::new(AtomicU8::new(0));
        let gone = tokio::spawn({
            let workers = workers.clone();
            let ran = Arc::clone(&ran);
            async move {
                workers
                    .call(Duration::from_secs(30), move || {
                        ran.store(1, Ordering::SeqCst)
                    })
                    .await
            }
        });
        let mut polls = 0;
        while workers.waiting() != 1 {
            polls += 1;
            assert!(polls < 10_000, "the call never queued");
            tokio::task::yield_now().await;
        }
        gone.abort();
        assert!(gone.await.unwrap_err().is_cancelled());
        assert_eq!(workers.waiting(), 0, "a call whose caller went away");
        // A call that times out stops waiting when it does.
        let late = workers.call(Duration::from_millis(50), || ()).await;
        assert_eq!(late, Err(CallError::Busy));
        assert_eq!(workers.waiting(), 0, "a call that timed out");
        release.send(()).unwrap();
        assert_eq!(first.await.unwrap(), Ok(()));
        assert_eq!(workers.call(Duration::from_secs(30), || 4).await, Ok(4));
        assert_eq!(workers.waiting(), 0);
        assert_eq!(ran.load(Ordering::SeqCst), 0, "a withdrawn call ran");
        // Observed: the first, the timed-out one, the last (not the one
        // withdrawn by its caller).
        let mut text = String::new();
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("wait", "", histogram);
        prometheus_client::encoding::prometheus_text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("wait_count 3\n"), "{text}");
    }

    #[tokio::test]
    async fn a_panicking_call_is_an_error_and_the_thread_goes_on() {
        let workers = Workers::start(1, None).unwrap();
        let panicked = workers
            .call(Duration::from_secs(30), || -> u8 { panic!("boom") })
            .await;
        assert_eq!(panicked, Err(CallError::Failed("a database call panicked")));
        assert_eq!(workers.call(Duration::from_secs(30), || 3).await, Ok(3));
    }
}
