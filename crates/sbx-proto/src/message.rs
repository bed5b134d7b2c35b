//! The messages of the protocol and their payload types.

use serde::{Deserialize, Serialize};

/// Identifies one exec session on a connection. Session 0 is the connection itself (handshake, readiness, shutdown).
pub type SessionId = u32;

/// The session id used by messages that concern the whole connection rather than one command.
pub const CONTROL_SESSION: SessionId = 0;

/// One decoded frame: the session it belongs to and the message it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Session the message belongs to ([`CONTROL_SESSION`] for connection-level messages).
    pub session: SessionId,
    /// The message itself.
    pub message: Message,
}

impl Frame {
    /// A frame on the control session.
    pub fn control(message: Message) -> Self {
        Self {
            session: CONTROL_SESSION,
            message,
        }
    }

    /// A frame for `session`.
    pub fn session(session: SessionId, message: Message) -> Self {
        Self { session, message }
    }
}

/// Every message of protocol version 1. Data messages carry raw bytes; the others carry a JSON payload.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// First message of each side: the versions it speaks.
    Hello(Hello),
    /// The agent's answer to [`Message::Hello`]: the version both sides use from now on.
    HelloAck(HelloAck),
    /// The agent is up: mounts done, forwarder listening, exec service serving.
    Ready(Ready),
    /// Start a command in a new session (the frame's session id names it; the client picks it).
    Exec(ExecRequest),
    /// The command of the session is running with this pid (inside the sandbox).
    Started(Started),
    /// Bytes for the command's stdin (or its pty).
    Stdin(Vec<u8>),
    /// Close the command's stdin (for a pty: send the terminal's EOF character).
    StdinEof,
    /// Bytes the command wrote to stdout (or to its pty).
    Stdout(Vec<u8>),
    /// Bytes the command wrote to stderr (never sent for a pty session).
    Stderr(Vec<u8>),
    /// New terminal size of a pty session.
    Resize(WindowSize),
    /// Deliver a signal (by number, e.g. 2 for SIGINT) to the session's process group.
    Signal(i32),
    /// The command ended; no more output follows for this session.
    Exit(ExitStatus),
    /// Keep the session running when this connection closes; output is buffered until an attach.
    Detach,
    /// Take over a detached session on this connection (buffered output is replayed).
    Attach,
    /// The agent applied a [`Message::Detach`]: nothing more of this session is sent on this connection (output from
    /// here on waits for an attach), so the host may stop reading it. Protocol version 2 and later.
    Detached,
    /// Ask the agent to stop every process, sync filesystems and exit.
    Shutdown,
    /// Ask the agent to flush filesystems to disk; answered with [`Message::SyncDone`].
    Sync,
    /// The sync asked for has completed.
    SyncDone,
    /// Something the peer asked for failed; `session` says which request.
    Error(ErrorReport),
    /// Liveness probe; answered with [`Message::Pong`] carrying the same value.
    Ping(u64),
    /// Answer to [`Message::Ping`].
    Pong(u64),
}

/// Handshake offer: the inclusive range of protocol versions a peer speaks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hello {
    /// Oldest version spoken.
    pub min_version: u16,
    /// Newest version spoken.
    pub max_version: u16,
    /// Free-form name of the peer, e.g. `sbx 0.1.0` (for diagnostics only).
    pub peer: String,
}

/// Handshake answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HelloAck {
    /// The version chosen (the newest both sides speak).
    pub version: u16,
    /// Free-form name of the agent.
    pub peer: String,
}

/// Readiness report of the agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ready {
    /// Milliseconds from the agent's start to readiness.
    pub boot_ms: u64,
    /// `namespace` or `microvm`: how the agent was started.
    pub mode: String,
    /// Address of the egress forwarder inside the sandbox, e.g. `127.0.0.1:3128` (empty when disabled).
    pub proxy_listen: String,
}

/// What to run, and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ExecRequest {
    /// Program and arguments; `argv[0]` is looked up in `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Variables added to (or overriding) the sandbox's base environment (proxy and CA variables included).
    #[serde(default)]
    pub env: Vec<(String, String)>,
    /// Working directory inside the sandbox; the user's home when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// User name or numeric uid to run as; the agent's own user (root of the sandbox) when absent.
    #[serde(default)]
    pub user: Option<String>,
    /// Run on a new pseudo-terminal of this size; pipes when absent.
    #[serde(default)]
    pub tty: Option<WindowSize>,
    /// Keep running if the connection goes away without an explicit [`Message::Detach`].
    #[serde(default)]
    pub detached: bool,
    /// Start in the background: after `Started` nothing of the session is sent on this connection; its output is
    /// kept for a later [`Message::Attach`] from the first byte. Implies `detached`. Protocol version 2 and later.
    #[serde(default)]
    pub background: bool,
}

/// Size of a terminal in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct WindowSize {
    /// Rows.
    pub rows: u16,
    /// Columns.
    pub cols: u16,
}

/// Answer to an exec: the process started.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Started {
    /// Pid inside the sandbox's pid namespace.
    pub pid: i32,
}

/// How a command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExitStatus {
    /// Exited with this code.
    Code(i32),
    /// Killed by this signal number.
    Signal(i32),
}

impl ExitStatus {
    /// The shell convention: the code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match self {
            ExitStatus::Code(c) => c,
            ExitStatus::Signal(s) => 128 + s,
        }
    }
}

/// A failure report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorReport {
    /// Stable machine-readable kind, e.g. `exec-failed`, `no-such-session`, `version-mismatch`.
    pub kind: String,
    /// Human-readable explanation.
    pub message: String,
}

impl ErrorReport {
    /// Builds a report.
    pub fn new(kind: &str, message: impl Into<String>) -> Self {
        Self {
            kind: kind.to_owned(),
            message: message.into(),
        }
    }
}
