//! What a namespace sandbox is made of.

use std::path::PathBuf;

/// A host directory shown inside the sandbox at the same absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkspaceMount {
    /// Absolute host path (also the path inside).
    pub path: PathBuf,
    /// Mount read-only (`:ro`).
    pub read_only: bool,
}

/// Resource limits. cgroup v2 is used where the host delegates it; otherwise only the rlimits apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// cgroup `memory.max` in bytes (needs cgroup v2 delegation).
    pub memory_bytes: Option<u64>,
    /// cgroup `pids.max`.
    pub max_pids: Option<u64>,
    /// cgroup `cpu.max` as a fraction of one CPU in percent (e.g. 200 = two CPUs).
    pub cpu_percent: Option<u32>,
    /// `RLIMIT_NOFILE`.
    pub open_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: None,
            max_pids: Some(4096),
            cpu_percent: None,
            open_files: 65536,
        }
    }
}

/// Everything needed to start a sandbox.
#[derive(Debug, Clone)]
pub struct JailConfig {
    /// Sandbox name (hostname inside, cgroup name).
    pub name: String,
    /// The template root directory (read-only lower layer).
    pub template: PathBuf,
    /// The sandbox's state directory (writable layer, sockets, logs); see [`crate::StateDir`].
    pub state_dir: PathBuf,
    /// Workspaces to bind-mount.
    pub workspaces: Vec<WorkspaceMount>,
    /// The static `sbx-guest` binary to run as init.
    pub guest_binary: PathBuf,
    /// The host proxy's Unix socket; bind-mounted as the sandbox's only way out. `None`: no egress at all.
    pub proxy_socket: Option<PathBuf>,
    /// The sandbox CA certificate (PEM) to trust inside.
    pub ca_file: Option<PathBuf>,
    /// Resource limits.
    pub limits: Limits,
    /// Keep-id when a subordinate id range is available (default), or always the single mapping; see
    /// [`crate::idmap`].
    pub user_mapping: crate::idmap::MappingChoice,
}

impl JailConfig {
    /// A configuration with defaults for everything but the essentials.
    pub fn new(
        name: &str,
        template: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
        guest: impl Into<PathBuf>,
    ) -> Self {
        Self {
            name: name.to_owned(),
            template: template.into(),
            state_dir: state_dir.into(),
            workspaces: Vec::new(),
            guest_binary: guest.into(),
            proxy_socket: None,
            ca_file: None,
            limits: Limits::default(),
            user_mapping: crate::idmap::MappingChoice::Auto,
        }
    }
}
