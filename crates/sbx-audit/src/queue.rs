//! The bounded queue between callers and the writer thread.
//!
//! Callers append their serialized event (an opaque frame) to one shared byte buffer under a mutex (a length, then
//! the frame);
//! the writer takes the whole buffer at once by swapping it with an empty one, so a hand-off costs a lock and a
//! `memcpy` per event, and one lock per batch on the writer's side. Nobody is woken per event: a caller signals
//! the writer only when the writer sleeps waiting for work, and the writer signals callers only when one waits
//! for room. While the writer sleeps through a drain window ([`Sleep::Lazy`], the batching delay of the durability
//! mode) callers do not wake it at all unless the queue grows long: waking a thread costs more than recording the
//! event, and a proxy recording one event per request would otherwise pay it on every request.
//!
//! Flush requests and the close mark travel in the same locked state, so everything queued before a flush (or
//! before close) is in the batch that carries it, or in an earlier one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use crate::writer::FullPolicy;

/// Bytes of the length in front of each queued frame.
const LEN_BYTES: usize = 4;

/// A batch this long (or a quarter of the capacity, if less) means the writer is not keeping up: at the writer's
/// pace between batches (a few hundred microseconds) a writer that keeps up takes far fewer.
const BEHIND_EVENTS: usize = 4096;

/// A writer sleeping through its drain window is woken early once this many events (or a quarter of the queue's
/// capacity, if less) ...
const WAKE_EVENTS: usize = 1024;
/// ... or this many bytes are queued, so batches stay bounded under load.
const WAKE_BYTES: usize = 256 * 1024;

/// How the writer sleeps in [`Queue::take`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sleep {
    /// Not sleeping.
    #[default]
    Awake,
    /// Waiting for work: the next event wakes it.
    ForWork,
    /// Sleeping through a drain window: only a long queue, a flush, close or a caller waiting for room wakes it.
    Lazy,
}

/// A flush request: the writer answers with `Err(message)` if it could not write.
pub(crate) type FlushAck = SyncSender<Result<(), String>>;

/// The result of offering an event to the queue.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Pushed {
    /// Queued.
    Queued,
    /// The queue was full and the policy is to drop: the event was counted.
    Dropped,
    /// The writer is closed.
    Closed,
}

#[derive(Debug)]
pub(crate) struct Queue {
    state: Mutex<State>,
    /// The writer sleeps here when there is nothing to do.
    work: Condvar,
    /// Callers under [`FullPolicy::Block`] sleep here until the writer takes a batch.
    room: Condvar,
    /// Events the queue holds at most.
    capacity: usize,
    /// Bytes the queue holds at most (so a burst of huge events cannot exhaust memory); one event is always
    /// accepted into an empty queue.
    max_bytes: usize,
    policy: FullPolicy,
    /// Set when the writer last took at least `behind_at` events at once: it is not keeping up.
    behind: AtomicBool,
    behind_at: usize,
    /// Events that wake a lazily sleeping writer.
    wake_at: usize,
}

#[derive(Debug, Default)]
struct State {
    frames: Vec<u8>,
    events: usize,
    flushes: Vec<FlushAck>,
    dropped: u64,
    closed: bool,
    writer: Sleep,
    callers_waiting: usize,
}

/// What the writer took from the queue in one go.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    frames: Vec<u8>,
    /// Events in `frames`.
    pub(crate) events: usize,
    /// Events dropped (full queue, drop policy) since the last batch.
    pub(crate) dropped: u64,
    /// Flush requests, to answer after writing `frames`.
    pub(crate) flushes: Vec<FlushAck>,
    /// The writer was closed: nothing follows this batch.
    pub(crate) closed: bool,
    /// The queue was full when taken (callers may be waiting: take the next batch without delay).
    pub(crate) was_full: bool,
}

impl Batch {
    /// The queued frames, in the order they were queued.
    pub(crate) fn frames(&self) -> Frames<'_> {
        Frames { rest: &self.frames }
    }
}

/// Iterator over the frames of a [`Batch`].
pub(crate) struct Frames<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for Frames<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        let (prefix, rest) = self.rest.split_first_chunk::<LEN_BYTES>()?;
        let len = u32::from_le_bytes(*prefix) as usize;
        let (frame, rest) = rest.split_at_checked(len)?;
        self.rest = rest;
        Some(frame)
    }
}

impl Queue {
    pub(crate) fn new(capacity: usize, policy: FullPolicy) -> Self {
        let capacity = capacity.max(1);
        Self {
            state: Mutex::new(State::default()),
            work: Condvar::new(),
            room: Condvar::new(),
            capacity,
            max_bytes: capacity.saturating_mul(512).max(64 << 20),
            policy,
            behind: AtomicBool::new(false),
            behind_at: (capacity / 4).clamp(1, BEHIND_EVENTS),
            wake_at: (capacity / 4).clamp(1, WAKE_EVENTS),
        }
    }

    /// Whether the writer is falling behind (the last batch it took was long), so callers should take work off it.
    pub(crate) fn writer_behind(&self) -> bool {
        self.behind.load(Ordering::Relaxed)
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent at every unlock (no code between lock and unlock can panic mid-update).
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn is_full(&self, state: &State, adding: usize) -> bool {
        state.events > 0
            && (state.events >= self.capacity || state.frames.len() + adding > self.max_bytes)
    }

    /// Queues one serialized event (`frame.len()` fits in `u32`: callers enforce the line limit first).
    pub(crate) fn push(&self, frame: &[u8]) -> Pushed {
        let adding = LEN_BYTES + frame.len();
        let mut state = self.lock();
        while !state.closed && self.is_full(&state, adding) {
            match self.policy {
                FullPolicy::Drop => {
                    state.dropped += 1;
                    return Pushed::Dropped;
                }
                FullPolicy::Block => {
                    self.wake_writer(&mut state);
                    state.callers_waiting += 1;
                    state = self.room.wait(state).unwrap_or_else(|e| e.into_inner());
                    state.callers_waiting -= 1;
                }
            }
        }
        if state.closed {
            return Pushed::Closed;
        }
        let len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        state.frames.extend_from_slice(&len.to_le_bytes());
        state.frames.extend_from_slice(frame);
        state.events += 1;
        if state.writer == Sleep::ForWork || self.urgent(&state) {
            self.wake_writer(&mut state);
        }
        Pushed::Queued
    }

    /// Queues a flush request; `false` when the writer is closed.
    pub(crate) fn push_flush(&self, ack: FlushAck) -> bool {
        let mut state = self.lock();
        if state.closed {
            return false;
        }
        state.flushes.push(ack);
        self.wake_writer(&mut state);
        true
    }

    /// Marks the queue closed: later pushes fail, the writer finishes after the batch that carries the mark.
    pub(crate) fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        self.wake_writer(&mut state);
        drop(state);
        self.room.notify_all();
    }

    /// Whether the writer should not wait out a drain window: the queue is long, or somebody waits on the writer.
    fn urgent(&self, state: &State) -> bool {
        state.events >= self.wake_at
            || state.frames.len() >= WAKE_BYTES
            || !state.flushes.is_empty()
            || state.closed
            || state.callers_waiting > 0
    }

    fn wake_writer(&self, state: &mut State) {
        if state.writer != Sleep::Awake {
            state.writer = Sleep::Awake;
            self.work.notify_one();
        }
    }

    /// Takes everything queued into `batch` (whose previous frames are discarded, its buffer reused), waiting up
    /// to `timeout` (forever if `None`) when there is nothing. With `lazy`, the wait is a drain window: it lasts
    /// the whole `timeout` however many events arrive, unless the queue grows long, a flush or close arrives, or a
    /// caller waits for room.
    pub(crate) fn take(&self, batch: &mut Batch, timeout: Option<Duration>, lazy: bool) {
        batch.frames.clear();
        batch.flushes.clear();
        let mut state = self.lock();
        let idle = |s: &State| s.events == 0 && s.dropped == 0 && s.flushes.is_empty() && !s.closed;
        let asleep = |s: &State| s.writer != Sleep::Awake;
        if lazy && timeout.is_some_and(|t| !t.is_zero()) && !self.urgent(&state) {
            state.writer = Sleep::Lazy;
            if let Some(t) = timeout {
                state = self
                    .work
                    .wait_timeout_while(state, t, |s| asleep(s))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
            state.writer = Sleep::Awake;
        } else if idle(&state) {
            state.writer = Sleep::ForWork;
            state = match timeout {
                Some(t) => {
                    self.work
                        .wait_timeout_while(state, t, |s| idle(s))
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self
                    .work
                    .wait_while(state, |s| idle(s))
                    .unwrap_or_else(|e| e.into_inner()),
            };
            state.writer = Sleep::Awake;
        }
        batch.was_full = self.is_full(&state, 0);
        std::mem::swap(&mut batch.frames, &mut state.frames);
        batch.events = std::mem::take(&mut state.events);
        batch.dropped = std::mem::take(&mut state.dropped);
        std::mem::swap(&mut batch.flushes, &mut state.flushes);
        batch.closed = state.closed;
        self.behind
            .store(batch.events >= self.behind_at, Ordering::Relaxed);
        let wake_callers = state.callers_waiting > 0;
        drop(state);
        if wake_callers {
            self.room.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    #[test]
    fn a_batch_yields_the_frames_in_order() {
        let q = Queue::new(10, FullPolicy::Block);
        for body in [&b"one"[..], b"", b"three"] {
            assert_eq!(q.push(body), Pushed::Queued);
        }
        let mut batch = Batch::default();
        q.take(&mut batch, Some(Duration::ZERO), false);
        assert_eq!(batch.events, 3);
        let got: Vec<&[u8]> = batch.frames().collect();
        assert_eq!(got, [&b"one"[..], b"", b"three"]);
        q.take(&mut batch, Some(Duration::from_millis(1)), false);
        assert_eq!((batch.events, batch.dropped, batch.closed), (0, 0, false));
        assert!(batch.flushes.is_empty());
    }

    #[test]
    fn drop_policy_counts_what_did_not_fit() {
        let q = Queue::new(2, FullPolicy::Drop);
        let results: Vec<Pushed> = (0..5).map(|_| q.push(b"x")).collect();
        assert_eq!(results.iter().filter(|r| **r == Pushed::Queued).count(), 2);
        let mut batch = Batch::default();
        q.take(&mut batch, None, false);
        assert_eq!((batch.events, batch.dropped, batch.was_full), (2, 3, true));
        assert!(
            q.writer_behind(),
            "a full batch of a small queue means the writer is behind"
        );
        q.take(&mut batch, Some(Duration::ZERO), false);
        assert!(!q.writer_behind());
    }

    #[test]
    fn block_policy_waits_for_the_writer_and_close_releases_waiters() {
        let q = Arc::new(Queue::new(1, FullPolicy::Block));
        assert_eq!(q.push(b"a"), Pushed::Queued);
        let (tx, rx) = mpsc::channel();
        let caller = {
            let q = q.clone();
            std::thread::spawn(move || {
                tx.send(q.push(b"b")).unwrap();
                q.push(b"c")
            })
        };
        assert!(
            rx.recv_timeout(Duration::from_millis(50)).is_err(),
            "must wait"
        );
        let mut batch = Batch::default();
        q.take(&mut batch, None, false);
        assert_eq!(batch.frames().collect::<Vec<_>>(), [b"a"]);
        assert_eq!(rx.recv().unwrap(), Pushed::Queued);
        // The queue holds "b"; "c" waits until close releases it with an error.
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert_eq!(caller.join().unwrap(), Pushed::Closed);
        q.take(&mut batch, None, false);
        assert!(batch.closed);
        assert_eq!(batch.frames().collect::<Vec<_>>(), [b"b"]);
        assert_eq!(q.push(b"d"), Pushed::Closed);
        let (ack, _) = mpsc::sync_channel(1);
        assert!(!q.push_flush(ack));
    }

    #[test]
    fn a_sleeping_writer_wakes_for_an_event() {
        let q = Arc::new(Queue::new(4, FullPolicy::Block));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut batch = Batch::default();
                q.take(&mut batch, None, false);
                batch.events
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        q.push(b"x");
        assert_eq!(writer.join().unwrap(), 1);
    }

    /// Runs one lazy `take` on a writer thread with a long window; returns what it took.
    fn lazy_writer(q: &Arc<Queue>) -> std::thread::JoinHandle<Batch> {
        let q = q.clone();
        std::thread::spawn(move || {
            let mut batch = Batch::default();
            q.take(&mut batch, Some(Duration::from_secs(30)), true);
            batch
        })
    }

    fn wait_until_lazy(q: &Queue) {
        while q.lock().writer != Sleep::Lazy {
            std::thread::yield_now();
        }
    }

    #[test]
    fn a_writer_in_its_drain_window_is_woken_by_a_long_queue_not_by_each_event() {
        let q = Arc::new(Queue::new(1 << 20, FullPolicy::Block));
        let writer = lazy_writer(&q);
        wait_until_lazy(&q);
        for _ in 0..WAKE_EVENTS - 1 {
            assert_eq!(q.push(b"e"), Pushed::Queued);
        }
        assert_eq!(
            q.lock().writer,
            Sleep::Lazy,
            "single events must not wake it"
        );
        assert!(!writer.is_finished());
        q.push(b"e");
        let batch = writer.join().unwrap();
        assert_eq!(batch.events, WAKE_EVENTS);
    }

    #[test]
    fn flush_and_close_end_a_drain_window() {
        let q = Arc::new(Queue::new(1 << 20, FullPolicy::Block));
        let writer = lazy_writer(&q);
        wait_until_lazy(&q);
        q.push(b"e");
        let (ack, _rx) = mpsc::sync_channel(1);
        assert!(q.push_flush(ack));
        let batch = writer.join().unwrap();
        assert_eq!((batch.events, batch.flushes.len()), (1, 1));

        let writer = lazy_writer(&q);
        wait_until_lazy(&q);
        q.close();
        assert!(writer.join().unwrap().closed);
    }

    #[test]
    fn a_writer_waiting_for_work_wakes_for_the_first_event() {
        let q = Arc::new(Queue::new(1 << 20, FullPolicy::Block));
        let writer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let mut batch = Batch::default();
                q.take(&mut batch, Some(Duration::from_secs(30)), false);
                batch.events
            })
        };
        while q.lock().writer != Sleep::ForWork {
            std::thread::yield_now();
        }
        q.push(b"x");
        assert_eq!(writer.join().unwrap(), 1);
    }

    #[test]
    fn the_byte_bound_holds_back_huge_events_but_never_an_empty_queue() {
        let q = Queue::new(1000, FullPolicy::Drop);
        let huge = vec![b'x'; 40 << 20];
        assert_eq!(q.push(&huge), Pushed::Queued);
        assert_eq!(q.push(&huge), Pushed::Dropped);
        assert_eq!(q.push(b"small"), Pushed::Queued);
    }
}
