//! The background process that owns one running sandbox.
//!
//! `sbx start` re-executes itself as `sbx __supervise NAME`, detached with `setsid`. The supervisor starts the
//! sandbox's egress proxy ([`crate::egress`]: the sandbox's only way out), then the jail (it is the jail init's
//! parent, so it reaps it), then serves a line protocol on `control.sock`: `ping` → `pong`, `stop` → stops the jail
//! cleanly, answers `stopping` and exits; `env` → the credential placeholders as JSON; `reload` → re-reads the
//! policy; `secrets` → re-reads the secret store (a secret added while the sandbox runs); `audit-exec ARGV_JSON` → records a command. If the jail dies on its own the supervisor removes its socket
//! and exits, so `sbx ls` sees the sandbox as crashed. Commands reach the agent directly over the jail's agent
//! socket; the supervisor is only the owner of the processes.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use sbx_audit::Action;

use crate::egress::{Egress, EgressSpec};
use crate::home::Home;
use crate::sandboxes::{Record, SandboxDir, process_alive};

/// The hidden subcommand name; also the marker that identifies a supervisor in `/proc/<pid>/cmdline`.
pub(crate) const SUBCOMMAND: &str = "__supervise";
/// How long a clean stop of the jail may take before it is killed.
pub(crate) const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `sbx start` waits for the supervisor's control socket. A start normally takes well under a second; the
/// bound only catches a supervisor that is alive but stuck (a dead one is reported at once). The 20 s expiries once
/// blamed on load were a jail init deadlocked before exec (fixed in sbx-jail); 30 s leaves room for a loaded machine.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often the supervisor checks that the jail is still alive.
pub(crate) const POLL: Duration = Duration::from_millis(50);

/// Runs in the supervisor process: starts the sandbox's egress proxy, then the jail (or the microVM), and serves the
/// control socket until told to stop.
pub(crate) fn serve(home: &Home, dir: &SandboxDir, record: &Record, guest: &Path) -> Result<()> {
    if record.isolation == crate::sandboxes::Isolation::Microvm {
        return crate::microvm::serve(home, dir, record, guest);
    }
    let mut config = sbx_jail::JailConfig::new(&record.name, &record.template, dir.jail(), guest);
    config.workspaces = record
        .workspaces
        .iter()
        .map(|w| sbx_jail::WorkspaceMount {
            path: w.path.clone(),
            read_only: w.read_only,
        })
        .collect();
    config.limits = record.limits.jail_limits();
    let socket = dir.control_socket();
    let _ = std::fs::remove_file(&socket);
    crate::signals::catch(crate::signals::TERMINATION);
    let egress = Egress::start(&EgressSpec {
        home,
        sandbox: &record.name,
        socket: dir.root().join("proxy.sock"),
        ca_file: dir.root().join("ca.pem"),
    })?;
    check_mounts(home, record, &egress)?;
    config.proxy_socket = Some(egress.socket().to_path_buf());
    config.ca_file = Some(egress.ca_file().to_path_buf());
    let mut sandbox =
        sbx_jail::Jail::spawn(&config).context("cannot start the namespace sandbox")?;
    // Anything going wrong from here on must not leave the jail behind.
    sandbox.set_kill_on_drop(true);
    let listener = UnixListener::bind(&socket)
        .with_context(|| format!("cannot listen on {}", socket.display()))?;
    listener
        .set_nonblocking(true)
        .context("cannot make the control socket non-blocking")?;
    let _ = egress
        .audit()
        .record(crate::audit::lifecycle(record, Action::SandboxStarted));
    eprintln!(
        "sbx supervisor: sandbox {} running, init pid {}",
        record.name,
        sandbox.pid()
    );
    let result = control_loop(&listener, &socket, sandbox, &egress, record);
    let _ = std::fs::remove_file(&socket);
    let _ = egress
        .audit()
        .record(crate::audit::lifecycle(record, Action::SandboxStopped));
    egress.shutdown();
    result
}

/// Records the policy's decision on every workspace mount and refuses to start when one is denied.
pub(crate) fn check_mounts(home: &Home, record: &Record, egress: &Egress) -> Result<()> {
    let policy = crate::policy_files::load_policy(home, Some(&record.name))?;
    let host_home = std::env::var_os(crate::env_vars::HOME)
        .filter(|h| !h.is_empty())
        .map_or_else(|| std::path::PathBuf::from("/"), Into::into);
    for (event, allowed) in crate::audit::mounts(record, &policy, &host_home) {
        let described = format!(
            "{} ({})",
            match &event.action {
                Action::Mount { path, .. } => path.clone(),
                _ => String::new(),
            },
            [
                event.rule.as_deref(),
                event.layer.as_deref(),
                event.reason.as_deref()
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ")
        );
        let _ = egress.audit().record(event);
        if !allowed {
            bail!(
                "the policy does not allow mounting {described}; see `sbx policy ls`, or recreate the sandbox \
                 without that path"
            );
        }
    }
    Ok(())
}

/// Serves control requests until `stop`, a termination signal, or the jail's death.
fn control_loop(
    listener: &UnixListener,
    socket: &Path,
    sandbox: sbx_jail::Sandbox,
    egress: &Egress,
    record: &Record,
) -> Result<()> {
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                if handle(stream, egress, record)? == Request::Stop {
                    let _ = std::fs::remove_file(socket);
                    let result = sandbox.stop(STOP_TIMEOUT);
                    if let Err(e) = &result {
                        eprintln!("sbx supervisor: {e}");
                    }
                    return Ok(());
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                let signal = crate::signals::take();
                if signal != 0 {
                    // Killed politely (shutdown, `kill PID`): stop the jail cleanly rather than orphan it.
                    eprintln!("sbx supervisor: signal {signal}; stopping the sandbox");
                    let _ = std::fs::remove_file(socket);
                    return sandbox.stop(STOP_TIMEOUT).context("stopping on a signal");
                }
                if !process_alive(sandbox.pid(), "") {
                    let _ = std::fs::remove_file(socket);
                    bail!("the sandbox init (pid {}) exited", sandbox.pid());
                }
                egress.reload_if_changed();
                std::thread::sleep(POLL);
            }
            Err(e) => return Err(e).context("control socket accept failed"),
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Ping,
    Stop,
    Other,
}

/// Answers one control connection. `stop` is acknowledged at once; the client then waits for the supervisor
/// process to exit, which is the reliable signal that the jail is gone. `env` answers the sandbox's placeholder
/// variables as one JSON line, `reload` re-reads the policy, `audit-exec ARGV_JSON` records a command run inside.
pub(crate) fn handle(stream: UnixStream, egress: &Egress, record: &Record) -> Result<Request> {
    stream.set_nonblocking(false).ok();
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok();
    let mut line = String::new();
    let mut reader = BufReader::new(&stream);
    if reader.read_line(&mut line).is_err() {
        return Ok(Request::Other);
    }
    let line = line.trim();
    let (verb, arg) = line.split_once(' ').unwrap_or((line, ""));
    let (request, answer) = match verb {
        "ping" => (Request::Ping, "pong".to_owned()),
        "stop" => (Request::Stop, "stopping".to_owned()),
        "env" => (
            Request::Other,
            serde_json::to_string(&egress.placeholders_env()).unwrap_or_else(|_| "[]".into()),
        ),
        "reload" => (
            Request::Other,
            match egress.reload() {
                Ok(_) => "reloaded".to_owned(),
                Err(e) => format!("error {e:#}").replace('\n', " "),
            },
        ),
        "secrets" => (
            Request::Other,
            match egress.reload_secrets() {
                Ok(changes) => format!("reloaded {changes}"),
                Err(e) => format!("error {e:#}").replace('\n', " "),
            },
        ),
        "audit-exec" => (
            Request::Other,
            match serde_json::from_str::<Vec<String>>(arg) {
                Ok(argv) => {
                    let event = sbx_audit::Event::exec(&record.name, &argv).agent(&record.agent);
                    match egress.audit().record(event) {
                        Ok(()) => "ok".to_owned(),
                        Err(e) => format!("error {e}"),
                    }
                }
                Err(e) => format!("error bad argv: {e}"),
            },
        ),
        _ => (Request::Other, "error unknown request".to_owned()),
    };
    let _ = (&stream).write_all(format!("{answer}\n").as_bytes());
    Ok(request)
}

/// Sends one request and returns the answer line.
pub(crate) fn request(socket: &Path, what: &str) -> Result<String> {
    request_within(socket, what, Duration::from_secs(2))
}

/// [`request`] with a longer wait for the answer, for requests that do real work (opening the secret store).
fn request_within(socket: &Path, what: &str, timeout: Duration) -> Result<String> {
    let stream = UnixStream::connect(socket)
        .with_context(|| format!("cannot connect to {}", socket.display()))?;
    stream.set_read_timeout(Some(timeout)).ok();
    (&stream)
        .write_all(format!("{what}\n").as_bytes())
        .context("cannot send to the supervisor")?;
    let mut line = String::new();
    BufReader::new(&stream)
        .read_line(&mut line)
        .context("no answer from the supervisor")?;
    Ok(line.trim().to_owned())
}

/// The running sandbox's credential placeholders (env var → placeholder), from its supervisor.
pub(crate) fn placeholders_env(dir: &SandboxDir) -> Result<Vec<(String, String)>> {
    let answer = request(&dir.control_socket(), "env")?;
    serde_json::from_str(&answer).with_context(|| {
        format!("the supervisor answered `env` with {answer:?}; restart the sandbox")
    })
}

/// Asks a running supervisor to re-read the policy now (it also notices changes by itself within a second).
pub(crate) fn reload_policy(dir: &SandboxDir) -> Result<()> {
    let answer = request(&dir.control_socket(), "reload")?;
    match answer.strip_prefix("error ") {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// Asks a running supervisor to re-read the secret store now (after `sbx secret set`, `set-custom`, `rm`, `import`).
pub(crate) fn reload_secrets(dir: &SandboxDir) -> Result<()> {
    let answer = request_within(&dir.control_socket(), "secrets", Duration::from_secs(15))?;
    match answer.strip_prefix("error ") {
        Some(e) => bail!("{e}"),
        None => Ok(()),
    }
}

/// Whether the supervisor `pid` is alive and answers on its control socket.
pub(crate) fn is_healthy(dir: &SandboxDir, pid: i32) -> bool {
    process_alive(pid, SUBCOMMAND)
        && request(&dir.control_socket(), "ping").is_ok_and(|a| a == "pong")
}

/// Starts `sbx __supervise NAME` detached and waits until its control socket answers.
pub(crate) fn launch(dir: &SandboxDir, name: &str) -> Result<i32> {
    let exe =
        std::env::current_exe().context("cannot find the sbx executable to start a supervisor")?;
    let log = std::fs::File::create(dir.supervisor_log())
        .with_context(|| format!("cannot create {}", dir.supervisor_log().display()))?;
    let mut cmd = Command::new(exe);
    cmd.arg(SUBCOMMAND)
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    // SAFETY: the closure runs between fork and exec and only calls setsid(2), which is async-signal-safe and
    // touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| rustix::process::setsid().map(drop).map_err(Into::into));
    }
    let mut child = cmd.spawn().context("cannot start the sandbox supervisor")?;
    let pid = i32::try_from(child.id()).context("supervisor pid out of range")?;
    wait_ready(dir, &mut child)?;
    // The supervisor outlives us; its exit is reaped by init once we are gone. Not waiting here is deliberate.
    drop(child);
    Ok(pid)
}

fn wait_ready(dir: &SandboxDir, child: &mut Child) -> Result<()> {
    let start = Instant::now();
    while start.elapsed() < READY_TIMEOUT {
        if let Ok(Some(status)) = child.try_wait() {
            bail!(
                "the sandbox did not start (supervisor {status}): {}",
                log_tail(&dir.supervisor_log())
            );
        }
        if request(&dir.control_socket(), "ping").is_ok_and(|a| a == "pong") {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    // The supervisor leads its own session and process group (setsid above); a jail it had begun to start is in
    // that group until the agent runs, so killing the group leaves nothing of this sandbox behind.
    if let Some(group) = rustix::process::Pid::from_raw(child.id() as i32) {
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
    }
    let _ = child.kill();
    let _ = child.wait();
    bail!(
        "the sandbox did not become ready within {READY_TIMEOUT:?}: {}",
        log_tail(&dir.supervisor_log())
    )
}

/// The last lines of a log, for error messages.
pub(crate) fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    if lines.is_empty() {
        format!("(nothing in {})", path.display())
    } else {
        let mut lines = lines;
        lines.reverse();
        format!("{} (log: {})", lines.join(" | "), path.display())
    }
}

/// Asks the supervisor to stop the jail and waits for it to exit; kills what is left of a crashed one.
pub(crate) fn stop(dir: &SandboxDir, pid: i32) -> Result<()> {
    if process_alive(pid, SUBCOMMAND) {
        let asked = request(&dir.control_socket(), "stop").is_ok();
        let deadline = STOP_TIMEOUT + Duration::from_secs(2);
        let start = Instant::now();
        while process_alive(pid, SUBCOMMAND) && start.elapsed() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        if process_alive(pid, SUBCOMMAND) {
            if !asked {
                eprintln!("sbx: supervisor {pid} does not answer; killing it");
            }
            kill(pid);
        }
    }
    kill_orphaned_init(dir);
    let _ = std::fs::remove_file(dir.control_socket());
    Ok(())
}

/// A supervisor that was killed leaves its jail init running (reparented); kill it so the state dir is free.
pub(crate) fn kill_orphaned_init(dir: &SandboxDir) {
    let state = sbx_jail::StateDir::new(dir.jail());
    let Ok(text) = std::fs::read_to_string(state.pid_file()) else {
        return;
    };
    let Ok(pid) = text.trim().parse::<i32>() else {
        return;
    };
    if process_alive(pid, "") {
        kill(pid);
        let start = Instant::now();
        while process_alive(pid, "") && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let _ = std::fs::remove_file(state.pid_file());
}

fn kill(pid: i32) {
    if let Some(p) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
    }
}
