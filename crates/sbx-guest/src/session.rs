//! One running command: where its output goes (a connection, or a bounded buffer while detached), its stdin, and
//! when its `Exit` may be sent (after the process ended and all output was pumped).

use std::collections::VecDeque;
use std::fs::File;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use sbx_proto::{ExitStatus, Frame, FrameWriter, Message, SessionId, WindowSize};

use crate::process::{OutputKind, Spawned};
use crate::transport::Stream;

/// Most output kept for a detached session; older output is dropped first.
pub const DETACHED_BUFFER_BYTES: usize = 1 << 20;
/// How long after the process exits its output pumps may keep the `Exit` waiting (background children holding the
/// output open).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Identifies a connection.
pub type ConnId = u64;

/// The writing half of a connection, shared by every session attached to it.
pub type SharedWriter = Arc<Mutex<FrameWriter<Stream>>>;

/// Locks a mutex, recovering the data if a thread panicked while holding it.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

#[derive(Debug)]
enum Sink {
    Attached {
        conn: ConnId,
        writer: SharedWriter,
    },
    Detached {
        frames: VecDeque<Frame>,
        bytes: usize,
    },
}

/// How a session starts out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartMode {
    /// Streams to the starting connection and is hung up when it closes (unless detached later).
    Attached,
    /// Streams to the starting connection and keeps running (buffering) when it closes.
    KeepOnDisconnect,
    /// Buffers from the first byte for a later attach; the starting connection only sees `Started`.
    Background,
}

enum StdinMsg {
    Data(Vec<u8>),
    Eof,
}

/// A running (or just finished, awaiting attach) command.
pub struct Session {
    id: SessionId,
    pid: i32,
    sink: Mutex<Sink>,
    stdin: Mutex<Option<Sender<StdinMsg>>>,
    pty: Option<File>,
    /// Output pumps still running, plus one for the process itself.
    pending: AtomicUsize,
    exit: Mutex<Option<ExitStatus>>,
    finished: AtomicBool,
    keep_on_disconnect: AtomicBool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.id)
            .field("pid", &self.pid)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// Wraps a spawned command attached to `conn` and starts its stdin writer and output pumps.
    pub fn start(
        id: SessionId,
        spawned: Spawned,
        conn: ConnId,
        writer: SharedWriter,
        mode: StartMode,
    ) -> Arc<Self> {
        let (tx, rx) = channel();
        let pty_for_eof = spawned.pty.as_ref().and_then(|p| p.try_clone().ok());
        let session = Arc::new(Session {
            id,
            pid: spawned.pid,
            sink: Mutex::new(Sink::Attached { conn, writer }),
            stdin: Mutex::new(Some(tx)),
            pty: spawned.pty,
            pending: AtomicUsize::new(spawned.outputs.len() + 1),
            exit: Mutex::new(None),
            finished: AtomicBool::new(false),
            keep_on_disconnect: AtomicBool::new(mode != StartMode::Attached),
        });
        session.emit(Message::Started(sbx_proto::Started { pid: session.pid }));
        if mode == StartMode::Background {
            // Before the pumps start, so not a byte of output goes to this connection.
            session.start_buffering();
        }
        spawn_named("sbx-stdin", move || {
            stdin_writer(spawned.stdin, rx, pty_for_eof)
        });
        for (kind, reader) in spawned.outputs {
            let s = Arc::clone(&session);
            spawn_named("sbx-output", move || s.pump(kind, reader));
        }
        session
    }

    /// The session id.
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// The process (group) id.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether `Exit` was already produced.
    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::SeqCst)
    }

    /// Whether the session belongs to connection `conn`.
    pub fn is_attached_to(&self, conn: ConnId) -> bool {
        matches!(&*lock(&self.sink), Sink::Attached { conn: c, .. } if *c == conn)
    }

    /// Whether the session is buffering for a later attach.
    pub fn is_detached(&self) -> bool {
        matches!(&*lock(&self.sink), Sink::Detached { .. })
    }

    /// Sends a message to the attached connection, or buffers it while detached.
    pub fn emit(&self, message: Message) {
        let frame = Frame::session(self.id, message);
        let mut sink = lock(&self.sink);
        match &mut *sink {
            Sink::Attached { writer, .. } => {
                // A failed write means the connection is going away; its close handler decides the session's fate.
                let _ = lock(writer).write_frame(&frame);
            }
            Sink::Detached { frames, bytes } => {
                *bytes += frame_size(&frame);
                frames.push_back(frame);
                while *bytes > DETACHED_BUFFER_BYTES {
                    match frames.pop_front() {
                        Some(old) => *bytes -= frame_size(&old),
                        None => break,
                    }
                }
            }
        }
    }

    /// Marks the session to survive its connection closing.
    pub fn keep_on_disconnect(&self) {
        self.keep_on_disconnect.store(true, Ordering::SeqCst);
    }

    /// The host detached on purpose (`Detach`): output from here on is buffered for a later attach instead of going
    /// to a connection that is about to close, and the session survives that close. With `acknowledge`, a `Detached`
    /// frame marks the switch on the connection: the host reads until it, so output written before the switch (the
    /// echo of the last keys typed, say) is shown there rather than lost.
    pub fn detach_now(&self, acknowledge: bool) {
        self.keep_on_disconnect.store(true, Ordering::SeqCst);
        let mut sink = lock(&self.sink);
        if let Sink::Attached { writer, .. } = &*sink {
            if acknowledge {
                let _ = lock(writer).write_frame(&Frame::session(self.id, Message::Detached));
            }
            *sink = Sink::Detached {
                frames: VecDeque::new(),
                bytes: 0,
            };
        }
    }

    /// Called when the attached connection closed: returns `true` if the session stays (now buffering).
    pub fn connection_closed(&self) -> bool {
        if !self.keep_on_disconnect.load(Ordering::SeqCst) {
            return false;
        }
        self.start_buffering();
        true
    }

    /// Switches an attached session to buffering; a session already buffering keeps what it has.
    fn start_buffering(&self) {
        let mut sink = lock(&self.sink);
        if matches!(&*sink, Sink::Attached { .. }) {
            *sink = Sink::Detached {
                frames: VecDeque::new(),
                bytes: 0,
            };
        }
    }

    /// Attaches the session to a new connection and replays what was buffered.
    pub fn attach(&self, conn: ConnId, writer: SharedWriter) {
        let mut sink = lock(&self.sink);
        if let Sink::Detached { frames, .. } = &mut *sink {
            let mut w = lock(&writer);
            for frame in frames.drain(..) {
                let _ = w.write_frame(&frame);
            }
        }
        *sink = Sink::Attached { conn, writer };
    }

    /// Queues stdin bytes.
    pub fn stdin(&self, data: Vec<u8>) {
        if let Some(tx) = &*lock(&self.stdin) {
            let _ = tx.send(StdinMsg::Data(data));
        }
    }

    /// Ends stdin (pipes: close; pty: EOF character).
    pub fn stdin_eof(&self) {
        if let Some(tx) = lock(&self.stdin).take() {
            let _ = tx.send(StdinMsg::Eof);
        }
    }

    /// Resizes the pty; an error for pipe sessions.
    pub fn resize(&self, size: WindowSize) -> Result<(), String> {
        match &self.pty {
            Some(master) => crate::process::resize(master, size).map_err(|e| e.to_string()),
            None => Err("session has no terminal to resize".into()),
        }
    }

    /// Sends `signal` to the session's process group.
    pub fn signal(&self, signal: i32) -> Result<(), String> {
        let sig = rustix::process::Signal::from_named_raw(signal)
            .ok_or_else(|| format!("unknown signal {signal}"))?;
        let pid = rustix::process::Pid::from_raw(self.pid).ok_or("session has no process")?;
        rustix::process::kill_process_group(pid, sig).map_err(|e| format!("kill: {e}"))
    }

    /// Called by the reaper with the process's wait status.
    pub fn process_exited(self: &Arc<Self>, status: ExitStatus) {
        *lock(&self.exit) = Some(status);
        // Closing stdin lets the writer thread end.
        lock(&self.stdin).take();
        let s = Arc::clone(self);
        spawn_named("sbx-exit-grace", move || {
            thread::sleep(EXIT_GRACE);
            s.finish();
        });
        self.piece_done();
    }

    fn pump(self: Arc<Self>, kind: OutputKind, mut reader: Box<dyn Read + Send>) {
        let mut buf = vec![0u8; sbx_proto::MAX_DATA_CHUNK];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if self.is_finished() {
                        break;
                    }
                    let data = buf[..n].to_vec();
                    self.emit(match kind {
                        OutputKind::Stdout => Message::Stdout(data),
                        OutputKind::Stderr => Message::Stderr(data),
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.piece_done();
    }

    fn piece_done(&self) {
        if self.pending.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finish();
        }
    }

    fn finish(&self) {
        let Some(status) = *lock(&self.exit) else {
            return;
        };
        if !self.finished.swap(true, Ordering::SeqCst) {
            self.emit(Message::Exit(status));
        }
    }
}

fn frame_size(frame: &Frame) -> usize {
    match &frame.message {
        Message::Stdout(d) | Message::Stderr(d) => d.len() + 9,
        _ => 64,
    }
}

fn stdin_writer(mut stdin: Box<dyn Write + Send>, rx: Receiver<StdinMsg>, pty: Option<File>) {
    for msg in rx {
        match msg {
            StdinMsg::Data(d) => {
                if stdin.write_all(&d).is_err() {
                    return;
                }
            }
            StdinMsg::Eof => {
                if let Some(mut master) = pty {
                    // The terminal's EOF character (^D) at the start of a line ends the reader's input.
                    let _ = master.write_all(&[0x04]);
                }
                return;
            }
        }
    }
}

/// Spawns a named helper thread; failure to spawn (resource exhaustion) is logged, not fatal.
pub fn spawn_named<F: FnOnce() + Send + 'static>(name: &str, f: F) {
    if let Err(e) = thread::Builder::new().name(name.to_owned()).spawn(f) {
        eprintln!("sbx-guest: cannot start thread {name}: {e}");
    }
}
