//! Starting, reaching and stopping a namespace sandbox.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::process::{Pid, WaitOptions, waitpid};
use sbx_proto::Client;

use crate::cgroup::{self, CgroupStatus};
use crate::config::JailConfig;
use crate::error::JailError;
use crate::idmap::{self, MappingMode, UserMapping};
use crate::plan::{self, RootMode};
use crate::seccomp;
use crate::state::StateDir;
use crate::sys::{self, ChildFds};

/// How long [`Jail::spawn`] waits for the agent.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace backend.
#[derive(Debug, Clone, Copy, Default)]
pub struct Jail;

/// A running namespace sandbox.
#[derive(Debug)]
pub struct Sandbox {
    pid: i32,
    state: StateDir,
    is_child: bool,
    cgroup: CgroupStatus,
    root_mode: RootMode,
    kill_on_drop: bool,
    startup: Duration,
    user_mapping: UserMapping,
}

fn prepare(step: impl Into<String>) -> impl FnOnce(std::io::Error) -> JailError {
    let step = step.into();
    move |source| JailError::Prepare { step, source }
}

fn check_exists(what: &'static str, path: &Path, dir: bool) -> Result<(), JailError> {
    let ok = if dir { path.is_dir() } else { path.exists() };
    if !path.is_absolute() || !ok {
        let kind = if dir { "directory" } else { "file" };
        return Err(JailError::BadPath {
            what,
            path: path.into(),
            reason: format!("must be an existing {kind} given by absolute path"),
        });
    }
    Ok(())
}

impl Jail {
    /// Starts a sandbox: namespaces, root from template + state, workspaces, seccomp, the agent as init. Returns
    /// once the agent reported ready.
    pub fn spawn(config: &JailConfig) -> Result<Sandbox, JailError> {
        let started = Instant::now();
        check_exists("template", &config.template, true)?;
        check_exists("guest agent binary", &config.guest_binary, false)?;
        if let Some(p) = &config.proxy_socket {
            check_exists("proxy socket", p, false)?;
        }
        if let Some(p) = &config.ca_file {
            check_exists("CA file", p, false)?;
        }
        let state = StateDir::new(&config.state_dir);
        state.create()?;
        let _ = std::fs::remove_file(state.agent_socket());
        let mapping = prepare_mapping(config)?;
        state.store_user_mapping(&mapping)?;
        let mut mode = if state.copy_root().is_dir() {
            RootMode::Copy
        } else {
            RootMode::Overlay
        };
        let (pid, cgroup) = match start(config, &mode, &mapping) {
            Err(JailError::Setup { step, source })
                if mode == RootMode::Overlay && step.contains("(overlay)") =>
            {
                eprintln!(
                    "sbx-jail: overlayfs refused in a user namespace ({source}); using a private copy of the template"
                );
                copy_template(&config.template, &state.copy_root())?;
                mode = RootMode::Copy;
                start(config, &mode, &mapping)?
            }
            other => other?,
        };
        let mut sandbox = Sandbox {
            pid,
            state,
            is_child: true,
            cgroup,
            root_mode: mode,
            kill_on_drop: false,
            startup: Duration::ZERO,
            user_mapping: mapping,
        };
        if let Err(e) = sandbox.wait_ready(READY_TIMEOUT) {
            sandbox.kill();
            return Err(e);
        }
        sandbox.startup = started.elapsed();
        Ok(sandbox)
    }
}

/// Chooses the id mapping and makes the template's ownership match it. An unprivileged caller that cannot re-own
/// the template (someone else built it) keeps the single mapping, as before keep-id existed, and says why.
fn prepare_mapping(config: &JailConfig) -> Result<UserMapping, JailError> {
    let mapping = idmap::choose(config.user_mapping, &config.template);
    let root = rustix::process::geteuid().is_root();
    if mapping.mode == MappingMode::Single && !root {
        // Nothing an unprivileged caller could shift: the single mapping shows its files as root's and everything
        // else as nobody.
        return Ok(mapping);
    }
    match crate::shift::prepare_template(&config.template, &mapping) {
        Ok(_) => Ok(mapping),
        Err(JailError::Template { detail, .. }) if !root => {
            let mut single = idmap::choose(idmap::MappingChoice::Single, &config.template);
            single.fallback = Some(format!(
                "the template {} cannot be used with keep-id: {detail}",
                config.template.display()
            ));
            Ok(single)
        }
        Err(e) => Err(e),
    }
}

/// Runs `ops` in a child in a new user namespace with `mapping` (where the caller may give its files to any mapped
/// id), waiting for it to finish.
pub(crate) fn run_in_userns(
    mapping: &UserMapping,
    ops: &[plan::Op],
    exec: Option<&[std::ffi::CString]>,
) -> Result<(), JailError> {
    let (go_r, go_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let pid =
        sys::clone_userns_helper(ops, exec, &go_r, &report_w).map_err(JailError::Namespaces)?;
    drop((go_r, report_w));
    idmap::write_maps(pid, mapping).map_err(|e| {
        kill_and_reap(pid);
        JailError::Prepare {
            step: "write id maps of the helper namespace".into(),
            source: e,
        }
    })?;
    let mut go = std::fs::File::from(go_w);
    let released = go.write_all(&[1]);
    drop(go);
    let mut report = Vec::new();
    let read = std::fs::File::from(report_r).read_to_end(&mut report);
    let status =
        Pid::from_raw(pid).and_then(|p| waitpid(Some(p), WaitOptions::empty()).ok().flatten());
    released
        .and(read)
        .map_err(prepare("run the helper in a user namespace"))?;
    if report.len() >= 8 {
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        let what = match step {
            sys::STEP_IDS => "become root of the user namespace".to_owned(),
            sys::STEP_EXEC => format!(
                "exec {}",
                exec.and_then(|e| e.first())
                    .map_or_else(String::new, |p| p.to_string_lossy().into_owned())
            ),
            _ => ops
                .get(step as usize)
                .map_or_else(|| "wait for the host".to_owned(), plan::Op::describe),
        };
        return Err(JailError::Setup {
            step: what,
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    match status.and_then(|s| s.1.exit_status()) {
        Some(0) => Ok(()),
        other => Err(JailError::Prepare {
            step: "run the helper in a user namespace".into(),
            source: std::io::Error::other(format!("it ended with {other:?}")),
        }),
    }
}

fn copy_template(template: &Path, dest: &Path) -> Result<(), JailError> {
    let status = std::process::Command::new("cp")
        .args(["-a", "--reflink=auto"])
        .arg(template)
        .arg(dest)
        .status()
        .map_err(prepare("run cp to copy the template"))?;
    if !status.success() {
        return Err(JailError::Prepare {
            step: format!("copy {} to {}", template.display(), dest.display()),
            source: std::io::Error::other(format!("cp exited with {status}")),
        });
    }
    Ok(())
}

fn pipe() -> Result<(OwnedFd, OwnedFd), JailError> {
    rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| JailError::Prepare {
        step: "create pipe".into(),
        source: e.into(),
    })
}

/// Clones the init, maps ids, applies the cgroup, releases it and waits for its exec (or its failure report).
fn start(
    config: &JailConfig,
    mode: &RootMode,
    mapping: &UserMapping,
) -> Result<(i32, CgroupStatus), JailError> {
    let state = StateDir::new(&config.state_dir);
    let plan = plan::build_for(config, mode, mapping)?;
    let filters = seccomp::programs()?;
    let (go_r, go_w) = pipe()?;
    let (report_r, report_w) = pipe()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(state.log())
        .map_err(prepare(format!("open {}", state.log().display())))?;
    let null = std::fs::File::open("/dev/null").map_err(prepare("open /dev/null"))?;
    let fds = ChildFds {
        go: go_r,
        report: report_w,
        log: log.into(),
        null: null.into(),
    };
    // Raising a hard limit needs privileges outside the user namespace, so the requested value is capped at ours.
    let nofile_max = rustix::process::getrlimit(rustix::process::Resource::Nofile)
        .maximum
        .unwrap_or(u64::MAX);
    let rlimits = [
        (
            libc::RLIMIT_NOFILE,
            config.limits.open_files.min(nofile_max),
        ),
        (libc::RLIMIT_CORE, 0),
    ];
    let pid = sys::clone_init(&plan, &fds, &filters, &rlimits).map_err(JailError::Namespaces)?;
    drop(fds);
    let abort = |e: JailError| {
        kill_and_reap(pid);
        e
    };
    idmap::write_maps(pid, mapping).map_err(|e| {
        abort(JailError::Prepare {
            step: "write id maps".into(),
            source: e,
        })
    })?;
    let cgroup = cgroup::apply(&config.name, pid, &config.limits);
    let mut go = std::fs::File::from(go_w);
    go.write_all(&[1]).map_err(|e| {
        abort(JailError::Prepare {
            step: "release the sandbox init".into(),
            source: e,
        })
    })?;
    let mut report = Vec::new();
    std::fs::File::from(report_r)
        .read_to_end(&mut report)
        .map_err(|e| {
            abort(JailError::Prepare {
                step: "read the setup report".into(),
                source: e,
            })
        })?;
    if report.len() >= 8 {
        let step = u32::from_ne_bytes([report[0], report[1], report[2], report[3]]);
        let errno = i32::from_ne_bytes([report[4], report[5], report[6], report[7]]);
        kill_and_reap(pid);
        return Err(JailError::Setup {
            step: describe_step(&plan, step),
            source: std::io::Error::from_raw_os_error(errno),
        });
    }
    std::fs::write(state.pid_file(), pid.to_string()).map_err(prepare("write the pid file"))?;
    Ok((pid, cgroup))
}

fn describe_step(plan: &plan::Plan, step: u32) -> String {
    match step {
        sys::STEP_WAIT => "wait for the host".into(),
        sys::STEP_CGROUP => "unshare the cgroup namespace".into(),
        sys::STEP_STDIO => "redirect stdio".into(),
        sys::STEP_RLIMIT => "set resource limits".into(),
        sys::STEP_SECCOMP => "install the seccomp filter".into(),
        sys::STEP_EXEC => format!("exec {}", plan.exec_path.to_string_lossy()),
        sys::STEP_IDS => "become root of the user namespace".into(),
        i => plan
            .ops
            .get(i as usize)
            .map_or_else(|| format!("step {i}"), |op| op.describe()),
    }
}

fn kill_and_reap(pid: i32) {
    if let Some(p) = Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        let _ = waitpid(Some(p), WaitOptions::empty());
    }
}

/// Connects to the agent of the sandbox whose state directory is `state` (from any host process).
pub fn connect(state: &StateDir) -> Result<Client, JailError> {
    let stream = connect_socket(&state.agent_socket())
        .map_err(|e| JailError::Client(sbx_proto::ClientError::Stream(e.into())))?;
    Ok(Client::connect_unix(
        stream,
        concat!("sbx-jail ", env!("CARGO_PKG_VERSION")),
    )?)
}

/// Unix socket paths are limited to 108 bytes; longer ones are reached through the directory's descriptor.
fn connect_socket(path: &Path) -> std::io::Result<UnixStream> {
    if path.as_os_str().len() < 100 {
        return UnixStream::connect(path);
    }
    let dir = std::fs::File::open(path.parent().unwrap_or(Path::new("/")))?;
    let name = path.file_name().unwrap_or_default();
    let via = PathBuf::from(format!(
        "/proc/self/fd/{}",
        std::os::fd::AsRawFd::as_raw_fd(&dir)
    ))
    .join(name);
    UnixStream::connect(via)
}

impl Sandbox {
    /// Pid of the sandbox init (the agent) in the host's pid namespace.
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The state directory.
    pub fn state(&self) -> &StateDir {
        &self.state
    }

    /// Whether cgroup limits apply.
    pub fn cgroup(&self) -> &CgroupStatus {
        &self.cgroup
    }

    /// How ids are mapped: keep-id (the agent user is the host user) or the single-mapping fallback, whose
    /// [`UserMapping::warning`] the CLI shows.
    pub fn user_mapping(&self) -> &UserMapping {
        &self.user_mapping
    }

    /// How the root was assembled.
    pub fn root_mode(&self) -> &RootMode {
        &self.root_mode
    }

    /// Time from [`Jail::spawn`] being called to the agent's readiness.
    pub fn startup_time(&self) -> Duration {
        self.startup
    }

    /// Kill the sandbox when this handle drops (tests, short-lived sandboxes).
    pub fn set_kill_on_drop(&mut self, yes: bool) {
        self.kill_on_drop = yes;
    }

    /// A new connection to the agent.
    pub fn connect(&self) -> Result<Client, JailError> {
        connect(&self.state)
    }

    fn is_running(&self) -> bool {
        let Some(pid) = Pid::from_raw(self.pid) else {
            return false;
        };
        if self.is_child {
            return matches!(waitpid(Some(pid), WaitOptions::NOHANG), Ok(None));
        }
        Path::new(&format!("/proc/{}", self.pid)).exists()
    }

    fn wait_ready(&self, timeout: Duration) -> Result<(), JailError> {
        let start = Instant::now();
        let mut last = String::from("agent socket not created yet");
        while start.elapsed() < timeout {
            if !self.is_running() {
                return Err(self.not_ready(start, "the agent exited".into()));
            }
            match self.connect() {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        Err(self.not_ready(start, last))
    }

    fn not_ready(&self, start: Instant, detail: String) -> JailError {
        let log = std::fs::read_to_string(self.state.log()).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(5).collect();
        let detail = if tail.is_empty() {
            detail
        } else {
            format!("{detail}; agent said: {}", tail.join(" | "))
        };
        JailError::NotReady {
            waited_ms: start.elapsed().as_millis(),
            detail,
            log: self.state.log(),
        }
    }

    /// Stops the sandbox: asks the agent to stop everything and sync, waits up to `timeout`, then kills it.
    pub fn stop(mut self, timeout: Duration) -> Result<(), JailError> {
        self.kill_on_drop = false;
        if let Ok(client) = self.connect() {
            let _ = client.shutdown();
        }
        let start = Instant::now();
        while self.is_running() && start.elapsed() < timeout {
            std::thread::sleep(Duration::from_millis(5));
        }
        let forced = self.is_running();
        self.kill();
        if forced {
            return Err(JailError::Stop {
                pid: self.pid,
                detail: format!("did not stop within {timeout:?}; killed"),
            });
        }
        Ok(())
    }

    /// Kills the sandbox init (and with it every process of the sandbox) without a clean shutdown.
    pub fn kill(&mut self) {
        if self.is_child {
            kill_and_reap(self.pid);
        } else if let Some(p) = Pid::from_raw(self.pid) {
            let _ = rustix::process::kill_process(p, rustix::process::Signal::KILL);
        }
        let _ = std::fs::remove_file(self.state.pid_file());
        if let CgroupStatus::Applied(dir) = &self.cgroup {
            let _ = std::fs::remove_dir(dir);
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.kill_on_drop {
            self.kill();
        }
    }
}
