//! Where the log lines go: a buffer in memory that a thread of its own
//! writes out in batches, so that a request's log line costs a copy under
//! a lock, never a write system call or a thread wake-up on the request's
//! worker.
//!
//! tracing-appender's non-blocking writer, which the service used before,
//! woke its thread for every line and wrote each line with a system call of
//! its own: at a few thousand requests a second on two cores, that thread
//! took CPU time from the workers and from PostgreSQL.
//!
//! The writer thread wakes every [`FLUSH_INTERVAL`], or as soon as
//! [`BATCH_BYTES`] are waiting. No line is dropped: when
//! [`MAX_BUFFERED_BYTES`] are waiting (the output is stuck), loggers wait
//! for the thread to catch up. Dropping the [`LogGuard`] writes out
//! everything logged before it.

use std::io::Write;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use tracing_subscriber::fmt::MakeWriter;

/// How long a line may wait in memory: 20 ms.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(20);
/// Bytes waiting that wake the writer thread before its interval: 64 KiB.
pub const BATCH_BYTES: usize = 64 * 1024;
/// Bytes waiting at most: 16 MiB (about 100k request lines); loggers wait
/// beyond it.
pub const MAX_BUFFERED_BYTES: usize = 16 * 1024 * 1024;

/// What the loggers and the writer thread share.
struct Shared {
    state: Mutex<State>,
    /// Signalled when the writer thread has work: a batch, or closing.
    work: Condvar,
    /// Signalled when the writer thread has taken the buffer.
    room: Condvar,
}

struct State {
    buffer: Vec<u8>,
    closed: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A [`MakeWriter`] for `tracing_subscriber::fmt`: every event is one
/// `write` of its whole line, appended to the buffer.
#[derive(Clone)]
pub struct BatchedWriter {
    shared: Arc<Shared>,
}

/// Keeps the writer thread; dropping it writes out what is buffered and
/// stops the thread.
pub struct LogGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// A writer into `output` through a thread named `cruddur-logs`, and the
/// guard that flushes it.
///
/// # Errors
/// When the thread cannot be started.
pub fn batched<W: Write + Send + 'static>(output: W) -> std::io::Result<(BatchedWriter, LogGuard)> {
    let shared = Arc::new(Shared {
        state: Mutex::new(State {
            buffer: Vec::with_capacity(BATCH_BYTES),
            closed: false,
        }),
        work: Condvar::new(),
        room: Condvar::new(),
    });
    let thread = {
        let shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("cruddur-logs".into())
            .spawn(move || write_out(&shared, output))?
    };
    Ok((
        BatchedWriter {
            shared: Arc::clone(&shared),
        },
        LogGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: takes the buffer every interval (or once a batch is
/// waiting) and writes it, until closed and empty.
fn write_out<W: Write>(shared: &Shared, mut output: W) {
    let mut spare = Vec::with_capacity(BATCH_BYTES);
    loop {
        let mut state = shared.lock();
        if state.buffer.len() < BATCH_BYTES && !state.closed {
            state = shared
                .work
                .wait_timeout(state, FLUSH_INTERVAL)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        let closed = state.closed;
        std::mem::swap(&mut state.buffer, &mut spare);
        drop(state);
        shared.room.notify_all();
        if !spare.is_empty() {
            // Nowhere to report a failed write of the log itself.
            let _ = output.write_all(&spare).and_then(|()| output.flush());
            spare.clear();
        }
        if closed && shared.lock().buffer.is_empty() {
            return;
        }
    }
}

impl BatchedWriter {
    /// Appends `bytes` (whole lines) to the buffer, waiting while
    /// [`MAX_BUFFERED_BYTES`] are.
    ///
    /// # Errors
    /// None: the signature is `Write`'s.
    pub fn append(&self, bytes: &[u8]) -> std::io::Result<()> {
        let mut state = self.shared.lock();
        while state.buffer.len() >= MAX_BUFFERED_BYTES && !state.closed {
            state = self
                .shared
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        let before = state.buffer.len();
        state.buffer.extend_from_slice(bytes);
        let batch = before < BATCH_BYTES && state.buffer.len() >= BATCH_BYTES;
        drop(state);
        if batch {
            self.shared.work.notify_one();
        }
        Ok(())
    }
}

impl Write for BatchedWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.append(bytes).map(|()| bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        // Lines go out within the interval; an event's line needs no more.
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for BatchedWriter {
    type Writer = BatchedWriter;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

impl Drop for LogGuard {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.work.notify_one();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An output that several threads can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn every_line_comes_out_whole_and_in_order_by_the_guard_drop() {
        let out = Shared::default();
        let (writer, guard) = batched(out.clone()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4 {
                let mut w = writer.clone();
                s.spawn(move || {
                    for i in 0..5_000 {
                        w.write_all(format!("thread {t} line {i}\n").as_bytes())
                            .unwrap();
                    }
                });
            }
        });
        drop(guard);
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        let mut next = [0_usize; 4];
        let mut lines = 0;
        for line in text.lines() {
            let (t, i) = line
                .strip_prefix("thread ")
                .and_then(|l| l.split_once(" line "))
                .unwrap_or_else(|| panic!("a line cut or mixed: {line:?}"));
            let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
            assert_eq!(i, next[t], "thread {t}'s lines out of order");
            next[t] += 1;
            lines += 1;
        }
        assert_eq!(lines, 20_000);
    }

    #[test]
    fn a_line_goes_out_without_the_guard_dropped() {
        let out = Shared::default();
        let (mut writer, _guard) = batched(out.clone()).unwrap();
        writer.write_all(b"one line\n").unwrap();
        // Bounded poll: the interval is 20 ms; allow far more.
        let mut seen = false;
        for _ in 0..500 {
            if out.0.lock().unwrap().as_slice() == b"one line\n" {
                seen = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(seen, "the line was not written within 5 s");
    }
}
