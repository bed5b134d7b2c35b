//! `sbx exec`: run a command in a sandbox (starting it if stopped), streaming its I/O; the exit status is the
//! command's own.

use std::io::{IsTerminal, Read, Write};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sbx_proto::{ClientError, ExecRequest, Message, WindowSize};

use crate::commands::sandbox;
use crate::home::Home;
use crate::sandboxes::{Record, SandboxDir};

/// What `sbx exec` was asked for.
#[derive(Debug)]
pub(crate) struct ExecArgs {
    pub(crate) name: String,
    pub(crate) argv: Vec<String>,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) workdir: Option<String>,
    pub(crate) user: Option<String>,
    pub(crate) interactive: bool,
    pub(crate) tty: bool,
    /// The agent's own session (`sbx run`): kept running when the connection drops, detachable with Ctrl-],
    /// reattached with `sbx attach`.
    pub(crate) agent_session: bool,
}

/// How often the output loop looks at stdin and the terminal size.
const TICK: Duration = Duration::from_millis(20);

/// Runs the command and returns its shell exit code (code, or 128 + signal).
pub(crate) fn run(home: &Home, args: ExecArgs) -> Result<i32> {
    if args.argv.is_empty() {
        bail!(
            "give the command to run, e.g. `sbx exec {} -- ls -la`",
            args.name
        );
    }
    let record = sandbox::ensure_running(home, &args.name)?;
    let dir = SandboxDir::new(home, &args.name)?;
    let client = crate::backend::connect_agent(&dir, &record)
        .with_context(|| format!("cannot reach the agent of sandbox {}", args.name))?;
    crate::audit::exec(home, &dir, &record, &args.argv);
    // Placeholders first: `-e` given at creation or here may override them.
    let mut env = crate::supervisor::placeholders_env(&dir)?;
    env.extend(record.env.iter().cloned());
    env.extend(args.env.iter().cloned());
    let mut request = default_request(&record, args.argv.clone());
    request.env = env;
    if let Some(dir) = &args.workdir {
        request.cwd = Some(dir.clone());
    }
    if let Some(user) = &args.user {
        request.user = Some(user.clone());
    }
    request.tty = args
        .tty
        .then(|| window_size().unwrap_or(WindowSize { rows: 24, cols: 80 }));
    request.detached = args.agent_session;
    let mut session = client.exec(request).map_err(|e| exec_error(e, &args))?;
    if !args.agent_session {
        return match stream(&mut session, &args.name, args.interactive, args.tty, false)? {
            End::Exited(code) => Ok(code),
            End::Detached => Ok(0),
        };
    }
    // The agent's own session: it survives a lost connection, and `sbx attach` finds it by this id.
    let id_file = session_file(&dir);
    crate::fsutil::atomic_write(&id_file, session.id().to_string().as_bytes())?;
    finish_agent_session(
        &mut session,
        &args.name,
        &id_file,
        args.interactive,
        args.tty,
    )
}

/// What `sbx exec NAME ARGV...` sends without `-e`, `-w`, `-u`: the sandbox's default user (the agent's own; the
/// sandbox's agent picks it when none is named) in [`default_workdir`]. `sbx cp` writes through the same request,
/// so copied files belong to the user the agent runs as.
pub(crate) fn default_request(record: &Record, argv: Vec<String>) -> ExecRequest {
    ExecRequest {
        argv,
        cwd: default_workdir(record).map(|p| p.display().to_string()),
        ..ExecRequest::default()
    }
}

/// Where commands start without `-w`: the sandbox's first workspace, or in branch and clone mode its worktree
/// (never the user's own checkout); `None` for a sandbox without a workspace (the agent's home then).
pub(crate) fn default_workdir(record: &Record) -> Option<std::path::PathBuf> {
    match &record.git {
        Some(git) => Some(git.workdir()),
        None => record.workspaces.first().map(|w| w.path.clone()),
    }
}

/// Streams the agent's session until it exits (forgetting its id) or the user detaches (keeping it).
pub(crate) fn finish_agent_session(
    session: &mut sbx_proto::RemoteSession,
    name: &str,
    id_file: &std::path::Path,
    interactive: bool,
    tty: bool,
) -> Result<i32> {
    match stream(session, name, interactive, tty, true)? {
        End::Exited(code) => {
            let _ = std::fs::remove_file(id_file);
            Ok(code)
        }
        End::Detached => {
            eprintln!(
                "\r\ndetached from sandbox {name}; the agent keeps running (`sbx attach {name}` returns to it)"
            );
            Ok(0)
        }
    }
}

/// Where the id of a sandbox's agent session is kept while it runs.
pub(crate) fn session_file(dir: &SandboxDir) -> std::path::PathBuf {
    dir.root().join("agent.session")
}

/// How a streamed session ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// The command exited with this shell status.
    Exited(i32),
    /// The user pressed the detach key; the command keeps running.
    Detached,
}

/// The detach key: Ctrl-] (as in telnet), rare in programs and never needed by shells.
pub(crate) const DETACH_KEY: u8 = 0x1d;

/// How long to wait for the agent to confirm a detach (it answers at once unless the sandbox is wedged).
const DETACH_CONFIRM: std::time::Duration = std::time::Duration::from_secs(5);

/// Connects the session to this process's stdin/stdout/stderr (raw terminal when `tty` and stdin is one), forwards
/// signals and window size, and returns when the command exits or, with `detach_key`, on Ctrl-].
pub(crate) fn stream(
    session: &mut sbx_proto::RemoteSession,
    name: &str,
    interactive: bool,
    tty: bool,
    detach_key: bool,
) -> Result<End> {
    let terminal = tty && std::io::stdin().is_terminal();
    let mut stdin = if interactive {
        Some(stdin_reader())
    } else {
        session
            .close_stdin()
            .context("cannot close the command's stdin")?;
        None
    };
    let _raw = if terminal { RawMode::enter() } else { None };
    // Ctrl-C (outside raw mode), `kill`, a closed terminal: passed to the command, whose exit then ends us.
    crate::signals::catch(crate::signals::TERMINATION);
    let mut size = window_size();
    let (mut out, mut err) = (std::io::stdout(), std::io::stderr());
    loop {
        if let Some(rx) = &stdin {
            match forward_stdin(rx, session, detach_key)? {
                Forwarded::More => {}
                Forwarded::Closed => stdin = None,
                Forwarded::Detach => {
                    let tail = session
                        .detach(DETACH_CONFIRM)
                        .context("cannot detach from the session")?;
                    for message in tail {
                        match message {
                            Message::Stdout(data) => out.write_all(&data)?,
                            Message::Stderr(data) => err.write_all(&data)?,
                            // It ended before the detach took effect: nothing is left to attach to.
                            Message::Exit(status) => return Ok(End::Exited(status.shell_code())),
                            _ => {}
                        }
                    }
                    out.flush()?;
                    return Ok(End::Detached);
                }
            }
        }
        let signal = crate::signals::take();
        if signal != 0 {
            session
                .signal(signal)
                .context("cannot forward the signal")?;
        }
        if terminal {
            let now = window_size();
            if now != size
                && let Some(ws) = now
            {
                let _ = session.resize(ws.rows, ws.cols);
                size = now;
            }
        }
        match session.next_message(TICK) {
            Ok(Message::Stdout(data)) => {
                out.write_all(&data)?;
                out.flush()?;
            }
            Ok(Message::Stderr(data)) => {
                err.write_all(&data)?;
                err.flush()?;
            }
            Ok(Message::Exit(status)) => return Ok(End::Exited(status.shell_code())),
            Ok(Message::Error(e)) => bail!("sandbox {name}: {} ({})", e.message, e.kind),
            Ok(_) => {}
            Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!("lost the connection to sandbox {name} while the command ran")
                });
            }
        }
    }
}

fn exec_error(e: ClientError, args: &ExecArgs) -> anyhow::Error {
    match e {
        ClientError::Agent(report) => anyhow::anyhow!(
            "cannot run `{}` in sandbox {}: {}",
            args.argv.join(" "),
            args.name,
            report.message
        ),
        other => anyhow::Error::new(other)
            .context(format!("cannot run a command in sandbox {}", args.name)),
    }
}

/// Reads our stdin on a thread; `None` on the channel means end of input.
fn stdin_reader() -> Receiver<Option<Vec<u8>>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) | Err(_) => {
                    let _ = tx.send(None);
                    return;
                }
                Ok(n) => {
                    if tx.send(Some(buf[..n].to_vec())).is_err() {
                        return;
                    }
                }
            }
        }
    });
    rx
}

/// What forwarding stdin found.
enum Forwarded {
    More,
    Closed,
    Detach,
}

/// Sends whatever stdin has ready: up to the detach key when `detach_key` is set.
fn forward_stdin(
    rx: &Receiver<Option<Vec<u8>>>,
    session: &sbx_proto::RemoteSession,
    detach_key: bool,
) -> Result<Forwarded> {
    loop {
        match rx.try_recv() {
            Ok(Some(data)) => {
                let key = detach_key
                    .then(|| data.iter().position(|b| *b == DETACH_KEY))
                    .flatten();
                let end = key.unwrap_or(data.len());
                if end > 0 {
                    session
                        .write_stdin(&data[..end])
                        .context("cannot send stdin")?;
                }
                if key.is_some() {
                    return Ok(Forwarded::Detach);
                }
            }
            Ok(None) | Err(TryRecvError::Disconnected) => {
                session.close_stdin().context("cannot close stdin")?;
                return Ok(Forwarded::Closed);
            }
            Err(TryRecvError::Empty) => return Ok(Forwarded::More),
        }
    }
}

fn window_size() -> Option<WindowSize> {
    let ws = rustix::termios::tcgetwinsize(std::io::stdout()).ok()?;
    (ws.ws_row > 0 && ws.ws_col > 0).then_some(WindowSize {
        rows: ws.ws_row,
        cols: ws.ws_col,
    })
}

/// The local terminal in raw mode (keys go to the sandbox's pty unprocessed); restored on drop.
struct RawMode {
    saved: rustix::termios::Termios,
}

impl RawMode {
    fn enter() -> Option<RawMode> {
        let stdin = std::io::stdin();
        let saved = rustix::termios::tcgetattr(&stdin).ok()?;
        let mut raw = saved.clone();
        raw.make_raw();
        rustix::termios::tcsetattr(&stdin, rustix::termios::OptionalActions::Now, &raw).ok()?;
        Some(RawMode { saved })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = rustix::termios::tcsetattr(
            std::io::stdin(),
            rustix::termios::OptionalActions::Now,
            &self.saved,
        );
    }
}
