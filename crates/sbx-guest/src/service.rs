//! The exec service: accepts host connections, performs the handshake, reports readiness and serves requests.

use std::net::Shutdown;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sbx_proto::{
    ErrorReport, ExecRequest, Frame, FrameReader, FrameWriter, Message, Ready, SessionId,
    server_handshake,
};

use crate::config::Mode;
use crate::session::{ConnId, Session, SharedWriter, StartMode, lock, spawn_named};
use crate::table::SessionTable;
use crate::transport::{Listener, Stream};
use crate::users;

/// Name the agent gives in the handshake.
pub const AGENT_NAME: &str = concat!("sbx-guest ", env!("CARGO_PKG_VERSION"));

/// State shared by all connections.
#[derive(Debug)]
pub struct Service {
    /// Sessions and reaper.
    pub table: Arc<SessionTable>,
    /// Environment every command starts from.
    pub base_env: Vec<(String, String)>,
    /// What to report in `Ready`.
    pub ready: Ready,
    /// Init duties (decides how shutdown stops processes).
    pub mode: Mode,
    /// Who runs a command whose request names no user (`None`: the agent's own user).
    pub default_user: Option<String>,
    next_conn: AtomicU64,
}

impl Service {
    /// A service for `mode` reporting `ready` and starting commands with `base_env`. Commands that name no user
    /// run as the template's `agent` user in the microVM and as the agent's own user otherwise.
    pub fn new(mode: Mode, base_env: Vec<(String, String)>, ready: Ready) -> Arc<Self> {
        let default_user = (mode == Mode::MicroVm).then(|| users::AGENT_USER.to_owned());
        Self::with_default_user(mode, base_env, ready, default_user)
    }

    /// Like [`Service::new`] with an explicit default user (`--user`).
    pub fn with_default_user(
        mode: Mode,
        base_env: Vec<(String, String)>,
        ready: Ready,
        default_user: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            table: SessionTable::new(),
            base_env,
            ready,
            mode,
            default_user,
            next_conn: AtomicU64::new(1),
        })
    }

    /// Accepts connections forever, one thread each.
    pub fn serve(self: &Arc<Self>, listener: Listener) {
        loop {
            match listener.accept() {
                Ok(stream) => {
                    let svc = Arc::clone(self);
                    spawn_named("sbx-conn", move || svc.handle(stream));
                }
                Err(e) => {
                    eprintln!("sbx-guest: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(50));
                }
            }
        }
    }

    /// Serves one connection until it closes.
    pub fn handle(self: &Arc<Self>, stream: Stream) {
        let conn = self.next_conn.fetch_add(1, Ordering::SeqCst);
        let (read_half, write_half) = match (stream.try_clone(), stream.try_clone()) {
            (Ok(r), Ok(w)) => (r, w),
            _ => return,
        };
        let mut reader = FrameReader::new(read_half);
        let mut writer = FrameWriter::new(write_half);
        let version = match server_handshake(&mut reader, &mut writer, AGENT_NAME) {
            Ok(v) => v,
            Err(e) => {
                eprintln!("sbx-guest: handshake failed: {e}");
                return;
            }
        };
        let writer: SharedWriter = Arc::new(Mutex::new(writer));
        send(&writer, Frame::control(Message::Ready(self.ready.clone())));
        loop {
            match reader.read_frame() {
                Ok(Some(frame)) => self.dispatch(conn, version, &writer, frame),
                Ok(None) => break,
                Err(e) => {
                    eprintln!("sbx-guest: closing connection {conn}: {e}");
                    break;
                }
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
        self.connection_closed(conn);
    }

    fn dispatch(self: &Arc<Self>, conn: ConnId, version: u16, writer: &SharedWriter, frame: Frame) {
        let id = frame.session;
        let result = match frame.message {
            Message::Exec(req) => self.exec(conn, writer, id, req),
            Message::Attach => self.attach(conn, writer, id),
            Message::Ping(v) => {
                send(writer, Frame::session(id, Message::Pong(v)));
                Ok(())
            }
            Message::Sync => {
                rustix::fs::sync();
                send(writer, Frame::session(id, Message::SyncDone));
                Ok(())
            }
            Message::Shutdown => crate::init::shutdown(self),
            other => self.to_session(conn, version, id, other),
        };
        if let Err(report) = result {
            send(writer, Frame::session(id, Message::Error(report)));
        }
    }

    fn exec(
        &self,
        conn: ConnId,
        writer: &SharedWriter,
        id: SessionId,
        req: ExecRequest,
    ) -> Result<(), ErrorReport> {
        self.table.sweep();
        if id == sbx_proto::CONTROL_SESSION {
            return Err(ErrorReport::new(
                "bad-request",
                "exec needs a non-zero session id",
            ));
        }
        if self.table.contains(id) {
            return Err(ErrorReport::new(
                "session-exists",
                format!("session {id} is already in use"),
            ));
        }
        let user = match &req.user {
            Some(spec) => Some(
                users::lookup(std::path::Path::new("/etc"), spec)
                    .map_err(|e| ErrorReport::new("exec-failed", e))?,
            ),
            // Commands run as the template's non-root `agent` user (sudo is available) in the microVM and in a
            // namespace sandbox with keep-id, where the agent is the host user so workspace files keep their owner;
            // `-u root` asks for root. With the single-mapping fallback only root exists inside.
            None => self
                .default_user
                .as_deref()
                .and_then(|name| users::lookup(std::path::Path::new("/etc"), name).ok()),
        };
        let mut env = self.base_env.clone();
        if let Some(u) = &user {
            for (k, v) in [
                ("HOME", &u.home),
                ("USER", &u.name),
                ("LOGNAME", &u.name),
                ("SHELL", &u.shell),
            ] {
                env.push((k.to_owned(), v.clone()));
            }
        }
        env.extend(req.env.iter().cloned());
        let env = dedup_env(env);
        let session = self
            .table
            .spawn_with(|| {
                crate::process::spawn(&req, &env, user.as_ref()).map(|spawned| {
                    Session::start(id, spawned, conn, Arc::clone(writer), start_mode(&req))
                })
            })
            .map_err(|e| {
                ErrorReport::new(
                    "exec-failed",
                    format!("cannot run {:?}: {e}", req.argv.first().map_or("", |s| s)),
                )
            })?;
        let _ = session;
        Ok(())
    }

    fn attach(
        &self,
        conn: ConnId,
        writer: &SharedWriter,
        id: SessionId,
    ) -> Result<(), ErrorReport> {
        let session = self.table.get(id).ok_or_else(|| {
            ErrorReport::new("no-such-session", format!("no session {id} to attach to"))
        })?;
        if !session.is_detached() {
            return Err(ErrorReport::new(
                "bad-request",
                format!("session {id} is attached to another connection"),
            ));
        }
        session.attach(conn, Arc::clone(writer));
        Ok(())
    }

    fn to_session(
        &self,
        conn: ConnId,
        version: u16,
        id: SessionId,
        message: Message,
    ) -> Result<(), ErrorReport> {
        let session = self
            .table
            .get(id)
            .filter(|s| s.is_attached_to(conn))
            .ok_or_else(|| {
                ErrorReport::new(
                    "no-such-session",
                    format!("no session {id} on this connection"),
                )
            })?;
        match message {
            Message::Stdin(data) => session.stdin(data),
            Message::StdinEof => session.stdin_eof(),
            Message::Resize(size) => session
                .resize(size)
                .map_err(|e| ErrorReport::new("bad-request", e))?,
            Message::Signal(sig) => session
                .signal(sig)
                .map_err(|e| ErrorReport::new("bad-request", e))?,
            // From version 2 the host reads on until `Detached`, so output racing the Detach is not lost.
            Message::Detach => session.detach_now(version >= 2),
            other => {
                return Err(ErrorReport::new(
                    "bad-request",
                    format!("unexpected message from host: {other:?}"),
                ));
            }
        }
        Ok(())
    }

    fn connection_closed(&self, conn: ConnId) {
        for session in self
            .table
            .all()
            .into_iter()
            .filter(|s| s.is_attached_to(conn))
        {
            if session.is_finished() {
                self.table.remove(session.id());
            } else if !session.connection_closed() {
                hang_up(&session);
            }
        }
    }
}

/// How an exec request wants its session started.
fn start_mode(req: &ExecRequest) -> StartMode {
    if req.background {
        StartMode::Background
    } else if req.detached {
        StartMode::KeepOnDisconnect
    } else {
        StartMode::Attached
    }
}

/// SIGHUP to the session's group, then SIGKILL after two seconds if it is still running.
fn hang_up(session: &Arc<Session>) {
    let _ = session.signal(libc::SIGHUP);
    let s = Arc::clone(session);
    spawn_named("sbx-hangup", move || {
        std::thread::sleep(Duration::from_secs(2));
        if !s.is_finished() {
            let _ = s.signal(libc::SIGKILL);
        }
    });
}

fn send(writer: &SharedWriter, frame: Frame) {
    let _ = lock(writer).write_frame(&frame);
}

/// Keeps the last value of each variable, in first-seen order.
fn dedup_env(env: Vec<(String, String)>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::with_capacity(env.len());
    for (k, v) in env {
        match out.iter_mut().find(|(ek, _)| *ek == k) {
            Some(slot) => slot.1 = v,
            None => out.push((k, v)),
        }
    }
    out
}
