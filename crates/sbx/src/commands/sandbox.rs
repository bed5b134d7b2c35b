//! `sbx create|start|stop|rm|ls` and the hidden `__supervise`: the sandbox lifecycle.

use std::os::unix::fs::DirBuilderExt;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use crate::agents::AgentTable;
use crate::backend::{self, IsolationChoice};
use crate::cli::exit;
use crate::home::Home;
use crate::output;
use crate::sandboxes::{self, Record, SandboxDir, Status, Workspace};
use crate::supervisor;

/// What `sbx create` (and `sbx run`) was asked for.
#[derive(Debug)]
pub(crate) struct CreateRequest {
    pub(crate) name: Option<String>,
    pub(crate) isolation: IsolationChoice,
    pub(crate) env: Vec<(String, String)>,
    pub(crate) agent: String,
    pub(crate) paths: Vec<String>,
    /// `--branch` / `--clone`: work on a branch of the first workspace's repository.
    pub(crate) git: Option<crate::gitmode::Request>,
    /// `-t`, `--cpus`, `-m`.
    pub(crate) resources: crate::limits::Resources,
}

/// `sbx create`: records the sandbox and starts it. Returns its name.
pub(crate) fn create(home: &Home, req: CreateRequest) -> Result<String> {
    if let Some(name) = &req.name {
        crate::names::validate_sandbox(name)?;
    }
    AgentTable::load(&home.config.join("agents.toml"))?.get(&req.agent)?;
    let mut workspaces = parse_workspaces(&req.paths)?;
    if req.git.is_some() && workspaces.is_empty() {
        bail!(
            "--branch/--clone need a workspace: name the repository, e.g. `sbx create --branch auto shell .`"
        );
    }
    let isolation = backend::choose(req.isolation, backend::host_kvm())?;
    crate::isolation_policy::check(home, isolation)?;
    // Checked now so a missing agent is reported before anything is created; the supervisor finds it the same way.
    backend::guest_binary()?;
    let template = backend::template(home, req.resources.template.as_deref(), isolation)?;
    let name = match req.name {
        Some(n) => n,
        None => free_name(home, &req.agent, &workspaces)?,
    };
    let dir = SandboxDir::new(home, &name)?;
    std::fs::create_dir_all(sandboxes::sandboxes_dir(home))
        .with_context(|| format!("cannot create {}", sandboxes::sandboxes_dir(home).display()))?;
    // create_dir (not _all) is the atomic claim on the name: two concurrent creates cannot both win. Private to the
    // user: it holds the control and agent sockets, and whoever can reach those can run commands inside.
    match std::fs::DirBuilder::new().mode(0o700).create(dir.root()) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => bail!(
            "a sandbox named `{name}` already exists; start it with `sbx start {name}`, or remove it with \
             `sbx rm -f {name}`"
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", dir.root().display())),
    }
    let git = match &req.git {
        Some(request) => match crate::gitmode::setup(&name, &workspaces[0], request) {
            Ok((git, mounts)) => {
                let others = workspaces.split_off(1);
                workspaces = mounts;
                workspaces.extend(others);
                Some(git)
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(dir.root());
                return Err(e);
            }
        },
        None => None,
    };
    let record = Record {
        name: name.clone(),
        agent: req.agent,
        isolation,
        workspaces,
        env: req.env,
        template,
        limits: crate::limits::SandboxLimits {
            cpus: req.resources.cpus,
            memory_mib: req.resources.memory_mib,
        },
        created_at: sandboxes::now(),
        supervisor_pid: None,
        started_at: None,
        git: git.clone(),
    };
    let lock = dir.lock()?;
    dir.save(&record)?;
    crate::audit::record_or_warn(
        home,
        crate::audit::lifecycle(&record, sbx_audit::Action::SandboxCreated),
    );
    let removed = crate::audit::lifecycle(&record, sbx_audit::Action::SandboxRemoved);
    if let Err(e) = start_locked(&dir, record) {
        drop(lock);
        if let Some(git) = &git {
            let _ = crate::gitmode::remove(&name, git, true);
        }
        let _ = std::fs::remove_dir_all(dir.root());
        crate::audit::record_or_warn(home, removed);
        return Err(e);
    }
    Ok(name)
}

/// `PATH[:ro]` arguments → absolute, existing directories.
pub(crate) fn parse_workspaces(paths: &[String]) -> Result<Vec<Workspace>> {
    let mut out = Vec::new();
    for arg in paths {
        let (path, read_only) = match arg.strip_suffix(":ro") {
            Some(p) => (p, true),
            None => (arg.as_str(), false),
        };
        let canonical = std::fs::canonicalize(path).with_context(|| {
            format!("workspace `{path}` does not exist; give an existing directory, optionally with `:ro`")
        })?;
        if !canonical.is_dir() {
            bail!("workspace `{path}` is not a directory");
        }
        out.push(Workspace {
            path: canonical,
            read_only,
        });
    }
    Ok(out)
}

/// `<agent>-<workspace dir>` (or `<agent>`), made a valid sandbox name.
pub(crate) fn default_name(agent: &str, workspaces: &[Workspace]) -> String {
    let base_dir = workspaces
        .first()
        .and_then(|w| w.path.file_name())
        .map(|n| n.to_string_lossy().to_lowercase());
    let mut base: String = match base_dir {
        Some(d) => format!("{agent}-{d}"),
        None => agent.to_owned(),
    }
    .chars()
    .map(|c| {
        if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
            c.to_ascii_lowercase()
        } else {
            '-'
        }
    })
    .collect();
    base.truncate(34);
    while base.contains("..") {
        base = base.replace("..", ".");
    }
    base
}

/// [`default_name`], with `-2`, `-3`, ... when taken.
pub(crate) fn free_name(home: &Home, agent: &str, workspaces: &[Workspace]) -> Result<String> {
    let base = default_name(agent, workspaces);
    for n in 1..1000 {
        let candidate = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        if !SandboxDir::new(home, &candidate)?.root().exists() {
            return Ok(candidate);
        }
    }
    bail!("no free sandbox name starting with `{base}`; pass --name")
}

/// The live status of a sandbox from its record.
pub(crate) fn status(dir: &SandboxDir, record: &Record) -> Status {
    match record.supervisor_pid {
        None => Status::Stopped,
        Some(pid) if supervisor::is_healthy(dir, pid) => Status::Running,
        Some(_) => Status::Crashed,
    }
}

/// Starts the sandbox if it is not running (the caller holds the lock). Returns whether it was started.
fn start_locked(dir: &SandboxDir, mut record: Record) -> Result<bool> {
    match status(dir, &record) {
        Status::Running => return Ok(false),
        Status::Crashed => {
            output::warning(&format!(
                "sandbox {} had crashed (supervisor gone); cleaning up and starting it again with its state",
                record.name
            ));
            if let Some(pid) = record.supervisor_pid {
                supervisor::stop(dir, pid)?;
            }
        }
        Status::Stopped => supervisor::kill_orphaned_init(dir),
    }
    if record.isolation == sandboxes::Isolation::Microvm && backend::host_kvm().is_hardware() {
        // A kernel removed from the cache, or made stale by a new config fragment, is rebuilt here (with the line
        // and progress) rather than failing inside the detached supervisor.
        backend::ensure_guest_kernel()?;
    }
    let pid = supervisor::launch(dir, &record.name)?;
    if let Some(warning) = user_mapping(dir, &record).and_then(|m| m.warning()) {
        output::warning(&format!("sandbox {}: {warning}", record.name));
    }
    record.supervisor_pid = Some(pid);
    record.started_at = Some(sandboxes::now());
    dir.save(&record)?;
    Ok(true)
}

/// How a namespace sandbox mapped its user ids when it last started (`None` for microVMs and before a first start).
fn user_mapping(dir: &SandboxDir, record: &Record) -> Option<sbx_jail::UserMapping> {
    (record.isolation == sandboxes::Isolation::Namespaces)
        .then(|| sbx_jail::StateDir::new(dir.jail()).user_mapping())
        .flatten()
}

/// Starts `name` if needed (used by `start`, `exec`, `run`).
pub(crate) fn ensure_running(home: &Home, name: &str) -> Result<Record> {
    let dir = SandboxDir::new(home, name)?;
    let _lock = dir.lock()?;
    let record = dir.load()?;
    start_locked(&dir, record)?;
    dir.load()
}

/// `sbx start NAME`.
pub(crate) fn start(home: &Home, name: &str) -> Result<i32> {
    let dir = SandboxDir::new(home, name)?;
    let _lock = dir.lock()?;
    let record = dir.load()?;
    if !start_locked(&dir, record)? {
        output::warning(&format!("sandbox {name} is already running"));
    }
    println!("{name}");
    Ok(0)
}

/// Stops one sandbox (the caller holds the lock).
fn stop_locked(dir: &SandboxDir, mut record: Record) -> Result<()> {
    if let Some(pid) = record.supervisor_pid {
        supervisor::stop(dir, pid)?;
    } else {
        supervisor::kill_orphaned_init(dir);
    }
    record.supervisor_pid = None;
    record.started_at = None;
    dir.save(&record)
}

/// `sbx stop NAME...`: every name is tried; the exit status is 1 if any failed.
pub(crate) fn stop(home: &Home, names: &[String]) -> Result<i32> {
    for_each(names, |name| {
        let dir = SandboxDir::new(home, name)?;
        let _lock = dir.lock()?;
        let record = dir.load()?;
        stop_locked(&dir, record)?;
        println!("{name}");
        Ok(())
    })
}

/// `sbx rm [-f] [--all] NAME...`.
pub(crate) fn rm(home: &Home, names: &[String], force: bool, all: bool) -> Result<i32> {
    let names = if all {
        sandboxes::list_names(home)?
    } else {
        if names.is_empty() {
            bail!("name the sandboxes to remove, or pass --all; `sbx ls` lists them");
        }
        names.to_vec()
    };
    for_each(&names, |name| {
        let dir = SandboxDir::new(home, name)?;
        let lock = dir.lock()?;
        let record = dir.load()?;
        let st = status(&dir, &record);
        if st == Status::Running && !force {
            bail!(
                "sandbox {name} is running; stop it first (`sbx stop {name}`) or use `sbx rm -f {name}`"
            );
        }
        let removed = crate::audit::lifecycle(&record, sbx_audit::Action::SandboxRemoved);
        let git = record.git.clone();
        stop_locked(&dir, record)?;
        if let Some(git) = &git {
            crate::gitmode::remove(name, git, force)?;
        }
        drop(lock);
        // The jail's state first: with keep-id, what root inside wrote belongs to subordinate ids that an
        // unprivileged host user removes only through sbx-jail.
        sbx_jail::StateDir::new(dir.jail())
            .remove()
            .with_context(|| format!("cannot remove {}", dir.jail().display()))?;
        std::fs::remove_dir_all(dir.root())
            .with_context(|| format!("cannot remove {}", dir.root().display()))?;
        crate::audit::record_or_warn(home, removed);
        println!("{name}");
        Ok(())
    })
}

fn for_each(names: &[String], mut f: impl FnMut(&str) -> Result<()>) -> Result<i32> {
    let mut code = 0;
    for name in names {
        if let Err(e) = f(name) {
            output::error(&format!("{e:#}"));
            code = exit::ERROR;
        }
    }
    Ok(code)
}

/// One row of `sbx ls`.
#[derive(Debug, Serialize)]
struct Row {
    name: String,
    agent: String,
    status: Status,
    isolation: String,
    workspace: Vec<PathBuf>,
    branch: Option<String>,
    /// Branch or clone mode: where the agent works.
    worktree: Option<PathBuf>,
    /// `branch` or `clone`; absent when the workspace is shared directly.
    mode: Option<crate::gitmode::GitMode>,
    /// Seconds since start, when running.
    uptime_secs: Option<u64>,
    supervisor_pid: Option<i32>,
    /// Namespace sandboxes: how user ids are mapped (keep-id, or the single-mapping fallback where the agent is
    /// root inside).
    users: Option<String>,
    /// Namespace sandboxes on the single-mapping fallback: the agent runs as root inside (the host user).
    agent_is_root: bool,
}

/// `sbx ls [--json]`.
pub(crate) fn ls(home: &Home, json: bool) -> Result<i32> {
    let mut rows = Vec::new();
    for name in sandboxes::list_names(home)? {
        let dir = SandboxDir::new(home, &name)?;
        let record = match dir.load() {
            Ok(r) => r,
            Err(e) => {
                output::warning(&format!("{e:#}"));
                continue;
            }
        };
        let st = status(&dir, &record);
        let mapping = user_mapping(&dir, &record);
        rows.push(Row {
            name,
            agent: record.agent.clone(),
            status: st,
            isolation: record.isolation.as_str().to_owned(),
            workspace: crate::gitmode::visible_workspaces(&record.workspaces, record.git.as_ref()),
            branch: record.git.as_ref().map(|g| g.branch.clone()),
            worktree: record.git.as_ref().map(|g| g.worktree.clone()),
            mode: record.git.as_ref().map(|g| g.mode),
            uptime_secs: match st {
                Status::Running => record
                    .started_at
                    .map(|s| sandboxes::now().saturating_sub(s)),
                _ => None,
            },
            supervisor_pid: record.supervisor_pid.filter(|_| st != Status::Stopped),
            users: mapping.as_ref().map(|m| m.summary()),
            agent_is_root: mapping.is_some_and(|m| m.warning().is_some()),
        });
    }
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &rows).context("cannot encode JSON")?;
        std::io::Write::write_all(&mut out, b"\n")?;
        return Ok(0);
    }
    let table: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.name.clone(),
                r.agent.clone(),
                match r.status {
                    Status::Crashed => "crashed (supervisor gone; `sbx start` recovers)".into(),
                    s => s.as_str().into(),
                },
                match r.isolation.as_str() {
                    "namespaces" if r.agent_is_root => {
                        "namespaces (shares host kernel; agent is root inside)".into()
                    }
                    "namespaces" => "namespaces (shares host kernel)".into(),
                    other => other.into(),
                },
                workspace_cell(&r.workspace),
                r.branch.clone().unwrap_or_else(|| "-".into()),
                r.uptime_secs
                    .map(format_uptime)
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    output::table(
        &mut out,
        &[
            "NAME",
            "AGENT",
            "STATUS",
            "ISOLATION",
            "WORKSPACE",
            "BRANCH",
            "UPTIME",
        ],
        &table,
    )?;
    Ok(0)
}

fn workspace_cell(paths: &[PathBuf]) -> String {
    if paths.is_empty() {
        return "-".into();
    }
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(",")
}

pub(crate) fn format_uptime(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{}s", s / 60, s % 60),
        s if s < 86400 => format!("{}h{}m", s / 3600, s % 3600 / 60),
        s => format!("{}d{}h", s / 86400, s % 86400 / 3600),
    }
}

/// The hidden `sbx __supervise NAME`: runs in the background for as long as the sandbox runs.
pub(crate) fn supervise(home: &Home, name: &str) -> Result<i32> {
    let dir = SandboxDir::new(home, name)?;
    // No lock here: the `sbx start` that launched us holds it until our control socket answers.
    let record = dir.load()?;
    let guest = backend::guest_binary()?;
    supervisor::serve(home, &dir, &record, &guest)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn uptime_is_human() {
        assert_eq!(format_uptime(5), "5s");
        assert_eq!(format_uptime(125), "2m5s");
        assert_eq!(format_uptime(7260), "2h1m");
        assert_eq!(format_uptime(90000), "1d1h");
    }

    #[test]
    fn workspaces_are_checked_and_ro_is_parsed() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().to_str().unwrap();
        let ws = parse_workspaces(&[format!("{p}:ro"), p.to_owned()]).unwrap();
        assert!(ws[0].read_only && !ws[1].read_only);
        let err = format!(
            "{:#}",
            parse_workspaces(&["/no/such/dir".into()]).unwrap_err()
        );
        assert!(err.contains("/no/such/dir"), "{err}");
    }

    #[test]
    fn generated_names_are_valid() {
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            config: dir.path().join("c"),
            state: dir.path().join("s"),
        };
        let ws = [Workspace {
            path: Path::new("/x/My Project..v2").into(),
            read_only: false,
        }];
        let name = free_name(&home, "claude", &ws).unwrap();
        crate::names::validate_sandbox(&name).unwrap();
        assert_eq!(name, "claude-my-project.v2");
    }
}
