//! `sbx exec`: run a command in a sandbox (starting it if stopped), streaming its I/O; the exit status is the
//! command's own.

use std::io::{IsTerminal, Read, Write};
use std::sync::mpsc::{Receiver, TryRecvError, channel};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use sbx_proto::{ClientError, ExecRequest, Message, WindowSize};

use crate::commands::sandbox;
use crate::home::Home;
use crate::sandboxes::SandboxDir;

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
    let terminal = args.tty && std::io::stdin().is_terminal();
    let mut env = record.env.clone();
    env.extend(args.env.iter().cloned());
    let request = ExecRequest {
        argv: args.argv.clone(),
        env,
        cwd: args.workdir.clone(),
        user: args.user.clone(),
        tty: args
            .tty
            .then(|| window_size().unwrap_or(WindowSize { rows: 24, cols: 80 })),
        detached: false,
    };
    let mut session = client.exec(request).map_err(|e| exec_error(e, &args))?;
    let stdin = if args.interactive {
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
    let mut stdin = stdin;
    loop {
        if let Some(rx) = &stdin {
            match forward_stdin(rx, &session) {
                Ok(true) => {}
                Ok(false) => stdin = None,
                Err(e) => return Err(e),
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
            Ok(Message::Exit(status)) => return Ok(status.shell_code()),
            Ok(Message::Error(e)) => bail!("sandbox {}: {} ({})", args.name, e.message, e.kind),
            Ok(_) => {}
            Err(ClientError::Timeout(_)) => {}
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "lost the connection to sandbox {} while the command ran",
                        args.name
                    )
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

/// Sends whatever stdin has ready; returns false once stdin is closed.
fn forward_stdin(
    rx: &Receiver<Option<Vec<u8>>>,
    session: &sbx_proto::RemoteSession,
) -> Result<bool> {
    loop {
        match rx.try_recv() {
            Ok(Some(data)) => session.write_stdin(&data).context("cannot send stdin")?,
            Ok(None) | Err(TryRecvError::Disconnected) => {
                session.close_stdin().context("cannot close stdin")?;
                return Ok(false);
            }
            Err(TryRecvError::Empty) => return Ok(true),
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
