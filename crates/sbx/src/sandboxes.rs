//! Sandbox records: what `sbx create` decided about a sandbox, kept in
//! `$STATE/sandboxes/<name>/sandbox.json` (written atomically under a lock), and the sandbox's live status.
//!
//! Layout of one sandbox directory:
//! - `sandbox.json` — the [`Record`]; `sandbox.json.lock` serialises every change to it.
//! - `jail/` — the namespace backend's state directory (overlay upper layer, agent socket); survives stop/start.
//! - `control.sock` — the supervisor's control socket while it runs; `supervisor.log` — its stderr.

use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use crate::fsutil::{FileLock, atomic_write};
use crate::home::Home;
use crate::names;

/// The isolation backend a sandbox runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Isolation {
    /// Linux namespaces (sbx-jail); shares the host kernel.
    Namespaces,
    /// A KVM microVM (sbx-vmm).
    Microvm,
}

impl Isolation {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Isolation::Namespaces => "namespaces",
            Isolation::Microvm => "microvm",
        }
    }
}

/// A host directory shared with the sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Workspace {
    pub(crate) path: PathBuf,
    #[serde(default)]
    pub(crate) read_only: bool,
}

/// Everything sbx remembers about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    pub(crate) name: String,
    pub(crate) agent: String,
    pub(crate) isolation: Isolation,
    pub(crate) workspaces: Vec<Workspace>,
    /// `-e K=V` given at creation; set for every command run in the sandbox.
    #[serde(default)]
    pub(crate) env: Vec<(String, String)>,
    /// The template root directory the sandbox's overlay sits on.
    pub(crate) template: PathBuf,
    /// `--cpus`/`-m` given at creation.
    #[serde(default)]
    pub(crate) limits: crate::limits::SandboxLimits,
    /// Seconds since the epoch.
    pub(crate) created_at: u64,
    /// The supervisor of the running sandbox; `None` when stopped.
    #[serde(default)]
    pub(crate) supervisor_pid: Option<i32>,
    /// When the running sandbox was started (seconds since the epoch).
    #[serde(default)]
    pub(crate) started_at: Option<u64>,
    /// Branch or clone mode: the sandbox's branch and working tree (its mounts are in `workspaces`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) git: Option<crate::gitmode::GitSandbox>,
}

/// What a sandbox is doing right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Status {
    Running,
    Stopped,
    /// The record says running but the supervisor is gone or its control socket is dead.
    Crashed,
}

impl Status {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Crashed => "crashed",
        }
    }
}

/// Seconds since the epoch.
pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The paths of one sandbox.
#[derive(Debug, Clone)]
pub(crate) struct SandboxDir {
    root: PathBuf,
}

impl SandboxDir {
    pub(crate) fn new(home: &Home, name: &str) -> Result<SandboxDir> {
        names::validate_sandbox(name)?;
        Ok(SandboxDir {
            root: sandboxes_dir(home).join(name),
        })
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }
    pub(crate) fn record(&self) -> PathBuf {
        self.root.join("sandbox.json")
    }
    pub(crate) fn jail(&self) -> PathBuf {
        self.root.join("jail")
    }
    pub(crate) fn control_socket(&self) -> PathBuf {
        self.root.join("control.sock")
    }
    pub(crate) fn supervisor_log(&self) -> PathBuf {
        self.root.join("supervisor.log")
    }

    /// Takes the sandbox's lock: every change to the record and every start/stop happens under it.
    pub(crate) fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.record())
    }

    /// Reads the record; a missing sandbox is an error that says how to list the existing ones.
    pub(crate) fn load(&self) -> Result<Record> {
        let path = self.record();
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                bail!(
                    "no sandbox named `{}`; `sbx ls` lists the sandboxes",
                    self.name()
                )
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not a valid sandbox record; remove the sandbox with `sbx rm -f {}`",
                path.display(),
                self.name()
            )
        })
    }

    /// Writes the record atomically (the caller holds the lock).
    pub(crate) fn save(&self, record: &Record) -> Result<()> {
        let json = serde_json::to_vec_pretty(record).context("cannot encode the sandbox record")?;
        atomic_write(&self.record(), &json)
    }

    fn name(&self) -> String {
        self.root
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    }
}

/// `$STATE/sandboxes`.
pub(crate) fn sandboxes_dir(home: &Home) -> PathBuf {
    home.state.join("sandboxes")
}

/// The names of every sandbox with a record, sorted.
pub(crate) fn list_names(home: &Home) -> Result<Vec<String>> {
    let dir = sandboxes_dir(home);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
    };
    let mut names = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if entry.path().join("sandbox.json").is_file() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Whether `pid` is a live (non-zombie) process whose command line contains `marker`.
pub(crate) fn process_alive(pid: i32, marker: &str) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    // The state letter follows the parenthesised command name, which may itself contain spaces or parentheses.
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().next());
    if matches!(state, Some("Z" | "X") | None) {
        return false;
    }
    if marker.is_empty() {
        return true;
    }
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .is_ok_and(|cmd| cmd.split(|b| *b == 0).any(|arg| arg == marker.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn home(dir: &Path) -> Home {
        Home {
            config: dir.join("config"),
            state: dir.join("state"),
        }
    }

    fn record(name: &str) -> Record {
        Record {
            name: name.into(),
            agent: "shell".into(),
            isolation: Isolation::Namespaces,
            workspaces: vec![Workspace {
                path: "/w".into(),
                read_only: true,
            }],
            env: vec![("A".into(), "b".into())],
            template: "/t".into(),
            limits: Default::default(),
            created_at: 1,
            supervisor_pid: None,
            started_at: None,
            git: None,
        }
    }

    #[test]
    fn record_round_trips_and_is_listed() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path());
        let sb = SandboxDir::new(&h, "box-1").unwrap();
        let _lock = sb.lock().unwrap();
        sb.save(&record("box-1")).unwrap();
        assert_eq!(sb.load().unwrap(), record("box-1"));
        assert_eq!(list_names(&h).unwrap(), ["box-1"]);
    }

    #[test]
    fn missing_and_corrupt_records_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let h = home(dir.path());
        let sb = SandboxDir::new(&h, "nope").unwrap();
        let err = sb.load().unwrap_err().to_string();
        assert!(
            err.contains("no sandbox named `nope`") && err.contains("sbx ls"),
            "{err}"
        );
        std::fs::create_dir_all(sb.root()).unwrap();
        std::fs::write(sb.record(), "{not json").unwrap();
        let err = format!("{:#}", sb.load().unwrap_err());
        assert!(err.contains("sbx rm -f nope"), "{err}");
    }

    #[test]
    fn bad_names_never_become_paths() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SandboxDir::new(&home(dir.path()), "../etc").is_err());
    }

    #[test]
    fn process_alive_checks_marker() {
        let me = std::process::id() as i32;
        assert!(process_alive(me, ""));
        assert!(!process_alive(me, "__surely-not-in-my-cmdline__"));
        assert!(!process_alive(i32::MAX, ""));
    }
}
