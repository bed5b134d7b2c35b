//! A blocking host-side client of the agent: handshake, then exec sessions multiplexed over one stream.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::Duration;

use crate::error::{HandshakeError, StreamError};
use crate::handshake::client_handshake;
use crate::message::{
    CONTROL_SESSION, ErrorReport, ExecRequest, ExitStatus, Frame, Message, Ready, SessionId,
    WindowSize,
};
use crate::stream::{FrameReader, FrameWriter};

type Writer = Arc<Mutex<FrameWriter<DynWriter>>>;

/// The writing half of the stream, type-erased.
struct DynWriter(Box<dyn Write + Send>);

impl std::fmt::Debug for DynWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DynWriter")
    }
}

impl Write for DynWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}
type Routes = Arc<Mutex<HashMap<SessionId, Sender<Message>>>>;

/// A client request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The handshake failed.
    #[error(transparent)]
    Handshake(#[from] HandshakeError),
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The agent refused the request.
    #[error("the sandbox agent refused the request: {}: {}", .0.kind, .0.message)]
    Agent(ErrorReport),
    /// The connection closed before the answer arrived.
    #[error("the sandbox agent closed the connection")]
    Closed,
    /// No answer in time.
    #[error("no answer from the sandbox agent within {0:?}")]
    Timeout(Duration),
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Session ids are agent-wide, so they are unique per host process, not per connection.
static NEXT_SESSION: AtomicU32 = AtomicU32::new(1);

type Closer = Box<dyn Fn() + Send + Sync>;

/// A connection to an agent. Dropping it closes the connection (sessions not detached are hung up by the agent).
pub struct Client {
    closer: Option<Closer>,
    writer: Writer,
    routes: Routes,
    control: Mutex<Receiver<Message>>,
    ready: Ready,
    agent: String,
    version: u16,
}

/// Everything a finished command produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Output {
    /// How it ended.
    pub status: ExitStatus,
    /// stdout (or the pty's output).
    pub stdout: Vec<u8>,
    /// stderr.
    pub stderr: Vec<u8>,
}

impl Output {
    /// stdout as text (lossy).
    pub fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// stderr as text (lossy).
    pub fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&self.stderr).into_owned()
    }

    /// Whether the command exited with code 0.
    pub fn success(&self) -> bool {
        self.status == ExitStatus::Code(0)
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("agent", &self.agent)
            .field("ready", &self.ready)
            .finish_non_exhaustive()
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if let Some(close) = &self.closer {
            close();
        }
    }
}

impl Client {
    /// Connects over a Unix socket (the namespace backend's agent socket).
    pub fn connect_unix(
        stream: std::os::unix::net::UnixStream,
        peer: &str,
    ) -> Result<Self, ClientError> {
        let reader = stream
            .try_clone()
            .map_err(|e| ClientError::Stream(StreamError::Io(e)))?;
        let closer = stream
            .try_clone()
            .map_err(|e| ClientError::Stream(StreamError::Io(e)))?;
        let mut client = Self::connect(reader, stream, peer)?;
        client.closer = Some(Box::new(move || {
            let _ = closer.shutdown(std::net::Shutdown::Both);
        }));
        Ok(client)
    }

    /// Like [`Client::connect`], with a function that closes the underlying stream when the client drops (the reader
    /// thread holds its own handle, so dropping the writer alone does not close it).
    pub fn connect_with_closer<R, W>(
        reader: R,
        writer: W,
        peer: &str,
        closer: impl Fn() + Send + Sync + 'static,
    ) -> Result<Self, ClientError>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let mut client = Self::connect(reader, writer, peer)?;
        client.closer = Some(Box::new(closer));
        Ok(client)
    }

    /// Performs the handshake on the two halves of a stream, waits for `Ready`, and starts the reader thread.
    pub fn connect<R, W>(reader: R, writer: W, peer: &str) -> Result<Self, ClientError>
    where
        R: Read + Send + 'static,
        W: Write + Send + 'static,
    {
        let mut reader = FrameReader::new(reader);
        let mut writer = FrameWriter::new(DynWriter(Box::new(writer)));
        let ack = client_handshake(&mut reader, &mut writer, peer)?;
        let ready = match reader.read_frame()?.map(|f| f.message) {
            Some(Message::Ready(r)) => r,
            Some(Message::Error(e)) => return Err(ClientError::Agent(e)),
            Some(other) => return Err(HandshakeError::Unexpected(format!("{other:?}")).into()),
            None => return Err(ClientError::Closed),
        };
        let routes: Routes = Arc::default();
        let (control_tx, control_rx) = channel();
        let r = Arc::clone(&routes);
        thread::Builder::new()
            .name("sbx-client-reader".into())
            .spawn(move || route_frames(reader, &r, &control_tx))
            .map_err(|e| ClientError::Stream(StreamError::Io(e)))?;
        Ok(Self {
            closer: None,
            writer: Arc::new(Mutex::new(writer)),
            routes,
            control: Mutex::new(control_rx),
            ready,
            agent: ack.peer,
            version: ack.version,
        })
    }

    /// The agent's readiness report.
    pub fn ready(&self) -> &Ready {
        &self.ready
    }

    /// The agent's name from the handshake.
    pub fn agent(&self) -> &str {
        &self.agent
    }

    /// The protocol version agreed in the handshake.
    pub fn version(&self) -> u16 {
        self.version
    }

    fn route(&self, id: SessionId) -> Receiver<Message> {
        let (tx, rx) = channel();
        lock(&self.routes).insert(id, tx);
        rx
    }

    /// Starts a command; returns once the agent reports it running (or refuses it).
    pub fn exec(&self, request: ExecRequest) -> Result<RemoteSession, ClientError> {
        let id = (NEXT_SESSION.fetch_add(1, Ordering::SeqCst) & 0xffff) | self.session_salt();
        self.exec_as(id, request)
    }

    /// Starts a command on an explicit session id (ids are agent-wide; needed to attach later from elsewhere).
    pub fn exec_as(
        &self,
        id: SessionId,
        request: ExecRequest,
    ) -> Result<RemoteSession, ClientError> {
        let rx = self.route(id);
        send(&self.writer, Frame::session(id, Message::Exec(request)))?;
        match rx.recv() {
            Ok(Message::Started(started)) => Ok(RemoteSession {
                id,
                pid: started.pid,
                rx,
                writer: Arc::clone(&self.writer),
                pending: Vec::new(),
                version: self.version,
            }),
            Ok(Message::Error(e)) => Err(ClientError::Agent(e)),
            Ok(other) => Err(HandshakeError::Unexpected(format!("{other:?}")).into()),
            Err(_) => Err(ClientError::Closed),
        }
    }

    /// Takes over detached session `id`.
    pub fn attach(&self, id: SessionId) -> Result<RemoteSession, ClientError> {
        let rx = self.route(id);
        send(&self.writer, Frame::session(id, Message::Attach))?;
        // An error arrives at once; otherwise replayed output (or nothing yet) follows.
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Message::Error(e)) => Err(ClientError::Agent(e)),
            Ok(first) => Ok(RemoteSession {
                id,
                pid: 0,
                rx,
                writer: Arc::clone(&self.writer),
                pending: vec![first],
                version: self.version,
            }),
            Err(RecvTimeoutError::Timeout) => Ok(RemoteSession {
                id,
                pid: 0,
                rx,
                writer: Arc::clone(&self.writer),
                pending: Vec::new(),
                version: self.version,
            }),
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::Closed),
        }
    }

    /// Runs a command with pipes and no stdin, and collects its output.
    pub fn run(&self, argv: &[&str]) -> Result<Output, ClientError> {
        let request = ExecRequest {
            argv: argv.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        };
        let session = self.exec(request)?;
        session.close_stdin()?;
        session.wait_output()
    }

    /// Asks the agent to flush filesystems and waits for it.
    pub fn sync(&self, timeout: Duration) -> Result<(), ClientError> {
        send(&self.writer, Frame::control(Message::Sync))?;
        loop {
            match lock(&self.control).recv_timeout(timeout) {
                Ok(Message::SyncDone) => return Ok(()),
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => return Err(ClientError::Timeout(timeout)),
                Err(RecvTimeoutError::Disconnected) => return Err(ClientError::Closed),
            }
        }
    }

    /// Asks the agent to stop the sandbox (it stops every process, syncs and exits; the connection then closes).
    pub fn shutdown(&self) -> Result<(), ClientError> {
        send(&self.writer, Frame::control(Message::Shutdown))
    }

    fn session_salt(&self) -> u32 {
        // Ids are agent-wide; mixing in our pid keeps two host processes from picking the same ids.
        (std::process::id() & 0x7fff) << 16
    }
}

fn send(writer: &Writer, frame: Frame) -> Result<(), ClientError> {
    lock(writer).write_frame(&frame).map_err(ClientError::from)
}

fn route_frames<R: Read>(mut reader: FrameReader<R>, routes: &Routes, control: &Sender<Message>) {
    while let Ok(Some(frame)) = reader.read_frame() {
        if frame.session == CONTROL_SESSION {
            let _ = control.send(frame.message);
            continue;
        }
        let done = matches!(frame.message, Message::Exit(_));
        let mut routes = lock(routes);
        if let Some(tx) = routes.get(&frame.session) {
            let _ = tx.send(frame.message);
        }
        if done {
            routes.remove(&frame.session);
        }
    }
    // Dropping every sender tells waiting sessions the connection is gone.
    lock(routes).clear();
}

/// One command running in the sandbox.
#[derive(Debug)]
pub struct RemoteSession {
    id: SessionId,
    pid: i32,
    rx: Receiver<Message>,
    writer: Writer,
    pending: Vec<Message>,
    version: u16,
}

impl RemoteSession {
    /// The session id (give it to [`Client::attach`] on another connection).
    pub fn id(&self) -> SessionId {
        self.id
    }

    /// Pid inside the sandbox (0 for an attached session).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    fn send(&self, message: Message) -> Result<(), ClientError> {
        send(&self.writer, Frame::session(self.id, message))
    }

    /// Writes to the command's stdin.
    pub fn write_stdin(&self, data: &[u8]) -> Result<(), ClientError> {
        for chunk in data.chunks(crate::codec::MAX_DATA_CHUNK) {
            self.send(Message::Stdin(chunk.to_vec()))?;
        }
        Ok(())
    }

    /// Closes stdin.
    pub fn close_stdin(&self) -> Result<(), ClientError> {
        self.send(Message::StdinEof)
    }

    /// Resizes the terminal.
    pub fn resize(&self, rows: u16, cols: u16) -> Result<(), ClientError> {
        self.send(Message::Resize(WindowSize { rows, cols }))
    }

    /// Sends a signal to the command's process group.
    pub fn signal(&self, signal: i32) -> Result<(), ClientError> {
        self.send(Message::Signal(signal))
    }

    /// Keeps the command running after this connection closes. Returns what the command printed before the agent
    /// applied the detach (everything later waits for an attach); stops early at an `Exit`, which is then the last
    /// message returned. Agents speaking protocol version 1 do not confirm, so nothing is awaited from them.
    pub fn detach(&mut self, timeout: Duration) -> Result<Vec<Message>, ClientError> {
        self.send(Message::Detach)?;
        let mut before = Vec::new();
        if self.version < 2 {
            return Ok(before);
        }
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.next_message(left)? {
                Message::Detached => return Ok(before),
                Message::Exit(status) => {
                    before.push(Message::Exit(status));
                    return Ok(before);
                }
                other => before.push(other),
            }
        }
    }

    /// The next message from the agent for this session (`Stdout`, `Stderr`, `Exit`, `Error`).
    pub fn next_message(&mut self, timeout: Duration) -> Result<Message, ClientError> {
        if !self.pending.is_empty() {
            return Ok(self.pending.remove(0));
        }
        self.rx.recv_timeout(timeout).map_err(|e| match e {
            RecvTimeoutError::Timeout => ClientError::Timeout(timeout),
            RecvTimeoutError::Disconnected => ClientError::Closed,
        })
    }

    /// Collects output until the command exits.
    pub fn wait_output(mut self) -> Result<Output, ClientError> {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            match self.next_message(Duration::from_secs(3600))? {
                Message::Stdout(d) => stdout.extend_from_slice(&d),
                Message::Stderr(d) => stderr.extend_from_slice(&d),
                Message::Exit(status) => {
                    return Ok(Output {
                        status,
                        stdout,
                        stderr,
                    });
                }
                Message::Error(e) => return Err(ClientError::Agent(e)),
                _ => {}
            }
        }
    }
}
