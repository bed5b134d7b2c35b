//! The writer: a bounded queue in front of one background thread that owns the stream's files.
//!
//! Callers serialize their event on their own thread ([`AuditHandle::record`], with the allocation-free serializer
//! in `json`), run SHA-256 over the whole 64-byte blocks of the body while the writer falls behind (a [`Prefix`])
//! and copy both into the queue.
//! The writer thread takes the whole queue at once, adds the chain fields, finishes each line's hash (the last
//! blocks, which hold `seq` and `prev_hash`), hands lines to the OS in large `write()` calls, fsyncs according to
//! the [`Durability`] mode and rotates files. Nothing on the caller's side touches the disk; the chain itself is
//! serial and stays on the one writer thread.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::chain::{self, GENESIS, Hash, Prefix};
use crate::event::Event;
use crate::id::random_u64;
use crate::json;
use crate::layout;
use crate::lines::MAX_LINE;
use crate::queue::{Batch, FlushAck, Pushed, Queue};
use crate::time::Timestamp;
use crate::writeback;

/// When appended events reach the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// Written to the operating system as the queue drains (at most ~10 ms after being recorded); never fsynced
    /// except at rotation and close. Survives a crash of the process, except for events still queued in memory, not
    /// a crash of the machine.
    Buffered,
    /// Written as the queue drains and fsynced at most `max_delay` after the first unsynced event: one fsync covers
    /// every event that arrived meanwhile. Events recorded while the writer is busy are collected for up to
    /// `max_delay` before they are written, so a process crash loses at most that much.
    GroupCommit {
        /// Upper bound on how long an event waits for its fsync.
        max_delay: Duration,
    },
    /// Each event is written and fsynced on its own before the next.
    PerEvent,
}

/// What [`AuditHandle::record`] does when the queue is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FullPolicy {
    /// Wait for room (the caller blocks until the writer catches up).
    Block,
    /// Drop the event, count it, and have the writer record an `audit_dropped {count}` event.
    Drop,
}

/// Writer settings. Start from [`WriterConfig::default`] and adjust with the builder methods.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct WriterConfig {
    /// When events reach the disk (default: group commit within 10 ms).
    pub durability: Durability,
    /// Queue length in events (default 65,536).
    pub queue_capacity: usize,
    /// Policy when the queue is full (default: block).
    pub when_full: FullPolicy,
    /// Rotate when a file would grow beyond this many bytes (default 64 MiB).
    pub max_file_bytes: u64,
    /// Rotate a file this old (default 24 h; `None` never rotates by age).
    pub max_file_age: Option<Duration>,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            durability: Durability::GroupCommit {
                max_delay: Duration::from_millis(10),
            },
            queue_capacity: 65_536,
            when_full: FullPolicy::Block,
            max_file_bytes: 64 << 20,
            max_file_age: Some(Duration::from_secs(24 * 3600)),
        }
    }
}

impl WriterConfig {
    /// Sets the durability mode.
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }
    /// Sets the queue length (at least 1).
    pub fn queue_capacity(mut self, events: usize) -> Self {
        self.queue_capacity = events.max(1);
        self
    }
    /// Sets the full-queue policy.
    pub fn when_full(mut self, policy: FullPolicy) -> Self {
        self.when_full = policy;
        self
    }
    /// Sets the size at which files rotate (at least 4 KiB).
    pub fn max_file_bytes(mut self, bytes: u64) -> Self {
        self.max_file_bytes = bytes.max(4096);
        self
    }
    /// Sets the age at which files rotate.
    pub fn max_file_age(mut self, age: Option<Duration>) -> Self {
        self.max_file_age = age;
        self
    }
}

/// Opening an audit directory for writing failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The directory could not be created or read.
    #[error("cannot use audit directory {dir}: {source}; check that it exists and is writable", dir = dir.display())]
    Dir {
        /// The audit directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A log file could not be created, locked or sealed.
    #[error("cannot {op} audit file {path}: {source}", path = path.display())]
    File {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The writer thread could not be started.
    #[error("cannot start the audit writer thread: {0}")]
    Spawn(io::Error),
}

/// Recording an event failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The writer was closed.
    #[error("the audit writer is closed; the event was not recorded")]
    Closed,
    /// The event is too large to be a log line.
    #[error("audit event of {bytes} bytes exceeds the {max}-byte line limit; shorten its fields")]
    TooLarge {
        /// Its serialized size.
        bytes: usize,
        /// The limit.
        max: usize,
    },
    /// The event could not be serialized (kept for compatibility: the built-in serializer cannot fail).
    #[error("cannot serialize audit event: {0}")]
    Serialize(String),
    /// The writer cannot write to disk (the events are kept and retried).
    #[error("the audit writer cannot write: {0}")]
    WriteFailed(String),
}

/// Closing the writer failed: some events may not be on disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CloseError {
    /// Writing, syncing or sealing failed at close.
    #[error("audit writer failed at close with {unwritten} events not written: {message}")]
    Io {
        /// What failed.
        message: String,
        /// Events that are not on disk.
        unwritten: usize,
    },
    /// The writer thread panicked.
    #[error("the audit writer thread panicked")]
    Panicked,
}

/// Counters of a writer's life.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct WriterStats {
    /// Events appended (including `audit_dropped` records).
    pub events_written: u64,
    /// Events dropped because the queue was full.
    pub events_dropped: u64,
    /// Files sealed (rotated or closed).
    pub files_sealed: u64,
}

#[derive(Debug)]
struct Shared {
    queue: Queue,
    failure: Mutex<Option<String>>,
    stream: u64,
}

/// Opens audit directories for writing.
#[derive(Debug)]
pub struct AuditLog;

impl AuditLog {
    /// Starts a writer on `dir` (created with mode 0700 if missing) with a new stream, after sealing the files of
    /// writers that died. Returns the handle to record with and the guard that flushes and stops the writer.
    pub fn open(
        dir: impl AsRef<Path>,
        config: WriterConfig,
    ) -> Result<(AuditHandle, WriterGuard), OpenError> {
        let dir = dir.as_ref().to_path_buf();
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(|source| OpenError::Dir {
                dir: dir.clone(),
                source,
            })?;
        layout::seal_orphans(&dir).map_err(|source| OpenError::Dir {
            dir: dir.clone(),
            source,
        })?;
        let shared = Arc::new(Shared {
            queue: Queue::new(config.queue_capacity, config.when_full),
            failure: Mutex::new(None),
            stream: random_u64(),
        });
        let mut writer = Writer::new(dir, config, shared.clone());
        writer.open_file()?;
        let thread = std::thread::Builder::new()
            .name("sbx-audit-writer".into())
            .spawn(move || writer.run())
            .map_err(OpenError::Spawn)?;
        let handle = AuditHandle {
            shared: shared.clone(),
        };
        Ok((
            handle,
            WriterGuard {
                shared,
                thread: Some(thread),
            },
        ))
    }
}

/// Records events; cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct AuditHandle {
    shared: Arc<Shared>,
}

thread_local! {
    /// Each recording thread serializes into its own reused buffer, then copies the bytes into the queue.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer grown beyond this by one huge event is given back rather than kept.
const SCRATCH_KEEP: usize = 64 * 1024;

impl AuditHandle {
    /// Queues an event. Serializes it on the calling thread, never touches the disk; when the queue is full it blocks
    /// or drops (and counts) according to the [`FullPolicy`]. The chain fields of `event` are ignored.
    pub fn record(&self, event: Event) -> Result<(), RecordError> {
        SCRATCH.with_borrow_mut(|frame| {
            // Callers share the hashing only while the writer falls behind: then it is the bottleneck, and the
            // hashing parallelizes across callers; otherwise the writer has time to spare and callers return sooner.
            frame_event(&event, frame, self.shared.queue.writer_behind());
            let result = self.enqueue(frame);
            if frame.capacity() > SCRATCH_KEEP {
                *frame = Vec::new();
            }
            result
        })
    }

    fn enqueue(&self, frame: &[u8]) -> Result<(), RecordError> {
        let line = frame.len() - Prefix::ENCODED_LEN + CHAIN_FIELDS_LEN;
        if line >= MAX_LINE {
            return Err(RecordError::TooLarge {
                bytes: line,
                max: MAX_LINE,
            });
        }
        match self.shared.queue.push(frame) {
            Pushed::Queued | Pushed::Dropped => Ok(()),
            Pushed::Closed => Err(RecordError::Closed),
        }
    }

    /// Waits until every event recorded before this call is written to the operating system and, unless the mode is
    /// [`Durability::Buffered`], fsynced.
    pub fn flush(&self) -> Result<(), RecordError> {
        let (ack_tx, ack_rx) = mpsc::sync_channel(1);
        if !self.shared.queue.push_flush(ack_tx) {
            return Err(RecordError::Closed);
        }
        match ack_rx.recv() {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(RecordError::WriteFailed(message)),
            Err(_) => Err(RecordError::Closed),
        }
    }

    /// This writer's stream id, as it appears in file names.
    pub fn stream(&self) -> String {
        format!("{:016x}", self.shared.stream)
    }

    /// The last write failure, if the writer is currently failing (it keeps the events and retries).
    pub fn failure(&self) -> Option<String> {
        self.shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

/// Serializes `event` without chain fields into `frame`, behind a hash [`Prefix`]: what the queue carries to the
/// writer. With `hash_here`, the calling thread hashes the leading blocks of the body; otherwise the prefix is
/// empty and the writer hashes the whole line.
fn frame_event(event: &Event, frame: &mut Vec<u8>, hash_here: bool) {
    frame.clear();
    frame.resize(Prefix::ENCODED_LEN, 0);
    json::write_body(event, frame);
    let prefix = if hash_here {
        Prefix::of_body(&frame[Prefix::ENCODED_LEN..])
    } else {
        Prefix::EMPTY
    };
    frame[..Prefix::ENCODED_LEN].copy_from_slice(&prefix.to_bytes());
}

/// Stops the writer: on [`WriterGuard::close`] or drop, every queued event is written, the file is fsynced and sealed.
#[derive(Debug)]
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<Result<WriterStats, CloseError>>>,
}

impl WriterGuard {
    /// Refuses further events, writes everything queued, seals the active file and returns the writer's counters.
    pub fn close(mut self) -> Result<WriterStats, CloseError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<WriterStats, CloseError> {
        let Some(thread) = self.thread.take() else {
            return Ok(WriterStats::default());
        };
        // From here on no event enters the queue; the writer drains what is in it and stops.
        self.shared.queue.close();
        thread.join().unwrap_or(Err(CloseError::Panicked))
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

/// Bytes the chain fields add to a line: `,"seq":<=20 digits>,"prev_hash":"<64>"`.
const CHAIN_FIELDS_LEN: usize = 110;
/// Write to the OS once this much is buffered, even if the batch is not finished.
const WRITE_CHUNK: usize = 256 * 1024;
/// In buffered mode, start the disk write of every this many bytes written (see [`writeback`]).
const WRITEBACK_CHUNK: u64 = 4 << 20;
/// A batch of more than one event means events are arriving faster than the writer wakes up for them ...
const BUSY_BATCH: usize = 2;
/// ... and then it pauses this long before taking the next batch, so batches are large and callers never pay for
/// waking a parked writer (which costs more than the event itself).
const BUSY_PAUSE: Duration = Duration::from_micros(300);
const RETRY: Duration = Duration::from_millis(100);
/// In buffered mode, events that arrive while the writer is busy wait at most this long before they are handed to
/// the OS (the drain window; group commit uses its `max_delay`).
const BUFFERED_WINDOW: Duration = Duration::from_millis(10);

struct Active {
    file: File,
    path: PathBuf,
    /// Bytes of the file once `buf` is written.
    len: u64,
    /// Bytes handed to the OS.
    written: u64,
    /// Bytes whose disk write was started (buffered mode).
    submitted: u64,
    opened: Instant,
}

struct Writer {
    dir: PathBuf,
    cfg: WriterConfig,
    shared: Arc<Shared>,
    next_file_seq: u32,
    next_seq: u64,
    last_hash: Hash,
    active: Option<Active>,
    /// Finished lines not yet handed to the OS.
    buf: Vec<u8>,
    /// Events serialized by callers that could not be chained yet (a file could not be opened).
    backlog: VecDeque<Vec<u8>>,
    unsynced_since: Option<Instant>,
    /// The end of the current drain window: until then, events queue up without waking the writer.
    drain_until: Option<Instant>,
    /// When the current drain window opened: events collected in it have waited since then at most.
    drain_opened: Option<Instant>,
    failing: bool,
    stats: WriterStats,
}

impl Writer {
    fn new(dir: PathBuf, cfg: WriterConfig, shared: Arc<Shared>) -> Self {
        Self {
            dir,
            cfg,
            shared,
            next_file_seq: 0,
            next_seq: 0,
            last_hash: GENESIS,
            active: None,
            buf: Vec::with_capacity(WRITE_CHUNK * 2),
            backlog: VecDeque::new(),
            unsynced_since: None,
            drain_until: None,
            drain_opened: None,
            failing: false,
            stats: WriterStats::default(),
        }
    }

    fn run(mut self) -> Result<WriterStats, CloseError> {
        let mut batch = Batch::default();
        loop {
            let lazy = self.drain_until.is_some();
            self.shared.queue.take(&mut batch, self.next_wakeup(), lazy);
            self.backdate_unsynced(&batch, lazy);
            self.open_drain_window(&batch);
            self.absorb(&batch);
            self.tick();
            if !batch.flushes.is_empty() {
                self.answer_flushes(&mut batch.flushes);
            }
            if batch.closed {
                break;
            }
            if batch.events >= BUSY_BATCH
                && !batch.was_full
                && self.cfg.durability != Durability::PerEvent
            {
                // Under load, let the queue fill for a moment instead of parking on it.
                std::thread::sleep(BUSY_PAUSE);
            }
        }
        self.finish()
    }

    /// Chains a batch of queued events onto the stream (or onto the backlog while the writer is failing).
    fn absorb(&mut self, batch: &Batch) {
        if batch.events > 0 {
            let aged = self.rotate_by_age();
            self.note(aged);
        }
        for frame in batch.frames() {
            if self.backlog.is_empty() {
                if let Err(e) = self.append(frame) {
                    self.backlog.push_back(frame.to_vec());
                    self.note(Err(e));
                }
            } else {
                self.backlog.push_back(frame.to_vec());
            }
        }
        if batch.dropped > 0 {
            self.stats.events_dropped += batch.dropped;
            self.record_internal(&Event::audit_dropped(batch.dropped));
        }
    }

    /// Housekeeping after each batch: retries, writing, group commit, age rotation.
    fn tick(&mut self) {
        let result = self
            .drain_backlog()
            .and_then(|()| self.write_out())
            .and_then(|()| self.group_commit(false))
            .and_then(|()| self.rotate_by_age());
        self.note(result);
    }

    /// Answers flush requests once everything before them is written (and synced unless buffered).
    fn answer_flushes(&mut self, flushes: &mut Vec<FlushAck>) {
        let result = self
            .drain_backlog()
            .and_then(|()| self.write_out())
            .and_then(|()| self.group_commit(true));
        let reply = result.as_ref().map_err(ToString::to_string).map(|_| ());
        self.note(result);
        for ack in flushes.drain(..) {
            let _ = ack.send(reply.clone());
        }
    }

    /// After a batch with events, the next ones are collected for a window rather than each waking the writer:
    /// a steady trickle (one event per proxied request) then costs one wake-up per window, not one per event. The
    /// first event after a quiet window still wakes the writer at once, so it reaches the OS without delay.
    fn open_drain_window(&mut self, batch: &Batch) {
        let window = match self.cfg.durability {
            Durability::Buffered => BUFFERED_WINDOW,
            Durability::GroupCommit { max_delay } => max_delay,
            Durability::PerEvent => return,
        };
        let now = Instant::now();
        let expired = self.drain_until.is_none_or(|until| now >= until);
        if expired {
            self.drain_until = (batch.events > 0 && !window.is_zero()).then(|| now + window);
            self.drain_opened = self.drain_until.map(|_| now);
        }
    }

    /// Group commit promises an fsync at most `max_delay` after an event is recorded. Events collected during a
    /// drain window may have waited since it opened, so their fsync deadline counts from then, not from their write
    /// (otherwise an event recorded early in a window could wait for the window and then a whole `max_delay` more).
    fn backdate_unsynced(&mut self, batch: &Batch, collected_in_window: bool) {
        let group_commit = matches!(self.cfg.durability, Durability::GroupCommit { .. });
        if !(group_commit && collected_in_window && batch.events > 0) {
            return;
        }
        // The earlier of the two, where either is known.
        self.unsynced_since = self
            .unsynced_since
            .into_iter()
            .chain(self.drain_opened)
            .min();
    }

    fn next_wakeup(&self) -> Option<Duration> {
        let mut wake: Option<Duration> = None;
        let mut consider = |d: Duration| wake = Some(wake.map_or(d, |w| w.min(d)));
        if self.failing || !self.backlog.is_empty() {
            consider(RETRY);
        }
        if let (Durability::GroupCommit { max_delay }, Some(since)) =
            (self.cfg.durability, self.unsynced_since)
        {
            consider(max_delay.saturating_sub(since.elapsed()));
        }
        if let (Some(age), Some(active)) = (self.cfg.max_file_age, &self.active)
            && active.len > 0
        {
            consider(age.saturating_sub(active.opened.elapsed()));
        }
        if let Some(until) = self.drain_until {
            consider(until.saturating_duration_since(Instant::now()));
        }
        wake
    }

    fn record_internal(&mut self, event: &Event) {
        let mut frame = Vec::with_capacity(384);
        frame_event(event, &mut frame, false);
        self.backlog.push_back(frame);
    }

    fn note(&mut self, result: io::Result<()>) {
        let mut failure = self
            .shared
            .failure
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match result {
            Ok(()) => {
                if self.failing && self.backlog.is_empty() && self.buf.is_empty() {
                    self.failing = false;
                    *failure = None;
                }
            }
            Err(e) => {
                self.failing = true;
                *failure = Some(format!("{e} (audit directory {})", self.dir.display()));
            }
        }
    }

    fn drain_backlog(&mut self) -> io::Result<()> {
        while let Some(frame) = self.backlog.pop_front() {
            if let Err(e) = self.append(&frame) {
                self.backlog.push_front(frame);
                return Err(e);
            }
        }
        Ok(())
    }

    /// Chains one queued event (a frame from [`frame_event`]) onto the stream. An error means the event was not
    /// chained (no file to put it in) and is still the caller's; once chained, a line stays in `buf` until
    /// written, whatever writing does.
    fn append(&mut self, frame: &[u8]) -> io::Result<()> {
        let (prefix, body) =
            Prefix::decode(frame).unwrap_or_else(|| (Prefix::of_body(frame), frame));
        let estimate = (body.len() + CHAIN_FIELDS_LEN) as u64;
        if let Some(active) = &self.active
            && active.len > 0
            && active.len + estimate > self.cfg.max_file_bytes
        {
            self.rotate()?;
        }
        if self.active.is_none() {
            self.open_file()?;
        }
        let start = self.buf.len();
        self.last_hash =
            chain::seal_line(body, prefix, self.next_seq, &self.last_hash, &mut self.buf);
        self.buf.push(b'\n');
        self.next_seq += 1;
        self.stats.events_written += 1;
        if let Some(active) = &mut self.active {
            active.len += (self.buf.len() - start) as u64;
        }
        let written = if self.cfg.durability == Durability::PerEvent {
            self.write_out().and_then(|()| self.sync())
        } else if self.buf.len() >= WRITE_CHUNK && !self.failing {
            self.write_out()
        } else {
            Ok(())
        };
        if written.is_err() {
            self.note(written);
        }
        Ok(())
    }

    fn age_exceeded(&self, active: &Active) -> bool {
        self.cfg
            .max_file_age
            .is_some_and(|age| active.opened.elapsed() >= age)
    }

    /// Hands buffered lines to the OS; on a short write keeps the rest for the next attempt.
    fn write_out(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let Some(active) = &mut self.active else {
            return Err(io::Error::other("no active audit file"));
        };
        let mut written = 0;
        let result = loop {
            if written == self.buf.len() {
                break Ok(());
            }
            match active.file.write(&self.buf[written..]) {
                Ok(0) => {
                    break Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        "audit file accepted no bytes",
                    ));
                }
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.buf.drain(..written);
        active.written += written as u64;
        if self.cfg.durability == Durability::Buffered
            && active.written - active.submitted >= WRITEBACK_CHUNK
        {
            writeback::start(
                &active.file,
                active.submitted,
                active.written - active.submitted,
            );
            active.submitted = active.written;
        }
        if written > 0 && self.unsynced_since.is_none() {
            self.unsynced_since = Some(Instant::now());
        }
        result.map_err(|e| {
            io::Error::new(e.kind(), format!("writing {}: {e}", active.path.display()))
        })
    }

    fn sync(&mut self) -> io::Result<()> {
        if let Some(active) = &self.active {
            active.file.sync_data().map_err(|e| {
                io::Error::new(e.kind(), format!("fsync {}: {e}", active.path.display()))
            })?;
        }
        self.unsynced_since = None;
        Ok(())
    }

    /// In group-commit mode, fsyncs once the oldest unsynced write is `max_delay` old (or now, when `force`).
    fn group_commit(&mut self, force: bool) -> io::Result<()> {
        let due = match self.cfg.durability {
            Durability::Buffered => false,
            Durability::PerEvent => force,
            Durability::GroupCommit { max_delay } => {
                force
                    || self
                        .unsynced_since
                        .is_some_and(|s| s.elapsed() >= max_delay)
            }
        };
        if due && self.unsynced_since.is_some() {
            self.sync()
        } else {
            Ok(())
        }
    }

    fn rotate_by_age(&mut self) -> io::Result<()> {
        match &self.active {
            Some(active) if active.len > 0 && self.age_exceeded(active) => self.rotate(),
            _ => Ok(()),
        }
    }

    /// Writes, fsyncs and seals the active file; the next append opens a new one.
    fn rotate(&mut self) -> io::Result<()> {
        self.write_out()?;
        self.sync()?;
        if let Some(active) = self.active.take() {
            fs::set_permissions(&active.path, Permissions::from_mode(0o444))?;
            self.stats.files_sealed += 1;
        }
        Ok(())
    }

    /// Creates the next file of the stream under a hidden name, locks it, then gives it its real name, so no other
    /// process ever sees it unlocked.
    fn open_file(&mut self) -> Result<(), OpenError> {
        let name = layout::file_name(Timestamp::now(), self.shared.stream, self.next_file_seq);
        let path = self.dir.join(&name);
        let hidden = self.dir.join(format!(".{name}.creating"));
        let err = |op, source| OpenError::File {
            op,
            path: path.clone(),
            source,
        };
        let file = OpenOptions::new()
            .append(true)
            .create_new(true)
            .mode(0o644)
            .open(&hidden)
            .map_err(|e| err("create", e))?;
        file.lock().map_err(|e| err("lock", e))?;
        fs::rename(&hidden, &path).map_err(|e| err("rename", e))?;
        if self.cfg.durability != Durability::Buffered {
            layout::sync_dir(&self.dir).map_err(|e| err("sync directory of", e))?;
        }
        self.next_file_seq += 1;
        self.active = Some(Active {
            file,
            path,
            len: 0,
            written: 0,
            submitted: 0,
            opened: Instant::now(),
        });
        Ok(())
    }

    fn finish(mut self) -> Result<WriterStats, CloseError> {
        let result = self
            .drain_backlog()
            .and_then(|()| self.write_out())
            .and_then(|()| self.seal_active());
        result.map_err(|e| CloseError::Io {
            message: e.to_string(),
            unwritten: self.backlog.len() + self.buf.iter().filter(|&&b| b == b'\n').count(),
        })?;
        Ok(self.stats)
    }

    fn seal_active(&mut self) -> io::Result<()> {
        let Some(active) = &self.active else {
            return Ok(());
        };
        if active.len == 0 {
            // Nothing was ever written: leave no empty file behind.
            let path = active.path.clone();
            self.active = None;
            return fs::remove_file(path);
        }
        self.rotate()?;
        layout::sync_dir(&self.dir)
    }
}

impl From<OpenError> for io::Error {
    fn from(e: OpenError) -> Self {
        io::Error::other(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn writer(durability: Durability) -> Writer {
        let shared = Arc::new(Shared {
            queue: Queue::new(16, FullPolicy::Block),
            failure: Mutex::new(None),
            stream: 0,
        });
        let cfg = WriterConfig {
            durability,
            ..WriterConfig::default()
        };
        // No file is opened: these tests drive the writer's bookkeeping only.
        Writer::new(PathBuf::from("unused"), cfg, shared)
    }

    fn batch_of(events: usize) -> Batch {
        let mut batch = Batch::default();
        batch.events = events;
        batch
    }

    #[test]
    fn events_collected_in_a_drain_window_are_due_for_fsync_when_the_window_ends() {
        let max_delay = Duration::from_secs(60);
        let mut w = writer(Durability::GroupCommit { max_delay });
        // A batch was written: the drain window opens.
        w.open_drain_window(&batch_of(1));
        let opened = w.drain_opened.expect("a window opened");
        assert_eq!(w.drain_until, Some(opened + max_delay));
        // The next batch was collected in that window: its fsync deadline counts from the window's opening, so no
        // event waits for the window and then a whole max_delay more.
        w.backdate_unsynced(&batch_of(3), true);
        assert_eq!(w.unsynced_since, Some(opened));
        assert!(w.next_wakeup().expect("an fsync is pending") <= max_delay);
        // The window has not ended, so the next batch does not open another.
        w.open_drain_window(&batch_of(3));
        assert_eq!(w.drain_opened, Some(opened));
    }

    #[test]
    fn an_older_unsynced_write_keeps_its_earlier_deadline() {
        let mut w = writer(Durability::GroupCommit {
            max_delay: Duration::from_secs(60),
        });
        let older = Instant::now();
        w.unsynced_since = Some(older);
        w.open_drain_window(&batch_of(1));
        w.backdate_unsynced(&batch_of(1), true);
        assert_eq!(w.unsynced_since, Some(older));
    }

    #[test]
    fn only_group_commit_batches_collected_in_a_window_are_backdated() {
        let mut w = writer(Durability::GroupCommit {
            max_delay: Duration::from_secs(60),
        });
        w.open_drain_window(&batch_of(1));
        w.backdate_unsynced(&batch_of(1), false);
        w.backdate_unsynced(&batch_of(0), true);
        assert_eq!(w.unsynced_since, None, "not collected, or empty");

        for durability in [Durability::Buffered, Durability::PerEvent] {
            let mut w = writer(durability);
            w.open_drain_window(&batch_of(1));
            w.backdate_unsynced(&batch_of(1), true);
            assert_eq!(
                w.unsynced_since, None,
                "{durability:?} has no fsync deadline"
            );
        }
        let mut per_event = writer(Durability::PerEvent);
        per_event.open_drain_window(&batch_of(1));
        assert_eq!(per_event.drain_until, None, "fsync per event never waits");
    }
}
