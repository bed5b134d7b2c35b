//! cgroup v2 limits, where the host delegates a writable cgroup to us.

use std::path::{Path, PathBuf};

use crate::config::Limits;

/// What happened with cgroup limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupStatus {
    /// The sandbox runs in this cgroup with the limits applied.
    Applied(PathBuf),
    /// No limits were asked for.
    NotNeeded,
    /// Not available; only rlimits apply. The reason says why.
    Unavailable(String),
}

const ROOT: &str = "/sys/fs/cgroup";

/// Our own cgroup v2 directory, if the host uses the unified hierarchy.
fn own_cgroup() -> Result<PathBuf, String> {
    if !Path::new(ROOT).join("cgroup.controllers").exists() {
        return Err(
            "the host does not use the cgroup v2 unified hierarchy at /sys/fs/cgroup".into(),
        );
    }
    let text = std::fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let rel = text
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("no cgroup v2 entry in /proc/self/cgroup")?;
    Ok(Path::new(ROOT).join(rel.trim_start_matches('/')))
}

/// Creates `sbx-<name>` next to our cgroup, applies `limits` and moves `pid` into it.
pub fn apply(name: &str, pid: i32, limits: &Limits) -> CgroupStatus {
    if limits.memory_bytes.is_none() && limits.max_pids.is_none() && limits.cpu_percent.is_none() {
        return CgroupStatus::NotNeeded;
    }
    match try_apply(name, pid, limits) {
        Ok(dir) => CgroupStatus::Applied(dir),
        Err(reason) => CgroupStatus::Unavailable(reason),
    }
}

fn try_apply(name: &str, pid: i32, limits: &Limits) -> Result<PathBuf, String> {
    let own = own_cgroup()?;
    // A process may not live in an inner cgroup that has controllers enabled, so the sandbox goes next to us.
    let parent = own.parent().ok_or("cgroup has no parent")?;
    let dir = parent.join(format!("sbx-{name}"));
    std::fs::create_dir_all(&dir)
        .map_err(|e| format!("create {}: {e} (cgroup not delegated)", dir.display()))?;
    let write = |file: &str, value: String| {
        std::fs::write(dir.join(file), value)
            .map_err(|e| format!("write {}/{file}: {e}", dir.display()))
    };
    if let Some(m) = limits.memory_bytes {
        write("memory.max", m.to_string())?;
    }
    if let Some(p) = limits.max_pids {
        write("pids.max", p.to_string())?;
    }
    if let Some(c) = limits.cpu_percent {
        write("cpu.max", format!("{} 100000", u64::from(c) * 1000))?;
    }
    write("cgroup.procs", pid.to_string())?;
    Ok(dir)
}
