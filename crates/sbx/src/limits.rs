//! `-t`, `--cpus`, `-m` of `sbx run`/`create`: what a new sandbox is made from and how much it may use.

use serde::{Deserialize, Serialize};

/// What `sbx create`/`run` asked for.
#[derive(Debug, Clone, Default)]
pub(crate) struct Resources {
    /// `-t NAME`.
    pub(crate) template: Option<String>,
    /// `--cpus N`.
    pub(crate) cpus: Option<u8>,
    /// `-m MEM`, in MiB.
    pub(crate) memory_mib: Option<u64>,
}

/// The limits stored in the sandbox record (absent in records written before they existed).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SandboxLimits {
    /// vCPUs (microVM) or CPU quota in CPUs (namespaces).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) cpus: Option<u8>,
    /// Memory in MiB: VM RAM or cgroup `memory.max`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) memory_mib: Option<u64>,
}

/// vCPUs of a microVM when `--cpus` was not given.
pub(crate) const DEFAULT_VCPUS: u8 = 2;
/// Memory of a microVM when `-m` was not given.
pub(crate) const DEFAULT_MEMORY_MIB: u64 = 2048;

/// Parses `-m`: `2G`, `1.5G`, `512M`, `512MiB`, or a bare number of MiB. At least 128 MiB.
pub(crate) fn parse_memory_mib(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let lower = t.to_ascii_lowercase();
    let (number, factor) = if let Some(n) = lower
        .strip_suffix("gib")
        .or(lower.strip_suffix("gb"))
        .or(lower.strip_suffix('g'))
    {
        (n, 1024.0)
    } else if let Some(n) = lower
        .strip_suffix("mib")
        .or(lower.strip_suffix("mb"))
        .or(lower.strip_suffix('m'))
    {
        (n, 1.0)
    } else {
        (lower.as_str(), 1.0)
    };
    let value: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("`{text}` is not a memory size; use e.g. 2G, 512M or 4096 (MiB)"))?;
    let mib = (value * factor).round();
    if !mib.is_finite() || mib < 128.0 || mib > f64::from(u32::MAX) {
        return Err(format!(
            "`{text}` is out of range: give between 128M and a few hundred G"
        ));
    }
    Ok(mib as u64)
}

impl SandboxLimits {
    /// The namespace backend's cgroup/rlimit limits.
    pub(crate) fn jail_limits(&self) -> sbx_jail::Limits {
        sbx_jail::Limits {
            memory_bytes: self.memory_mib.map(|m| m << 20),
            cpu_percent: self.cpus.map(|c| u32::from(c) * 100),
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_in_the_usual_spellings() {
        assert_eq!(parse_memory_mib("2G"), Ok(2048));
        assert_eq!(parse_memory_mib("1.5g"), Ok(1536));
        assert_eq!(parse_memory_mib("512M"), Ok(512));
        assert_eq!(parse_memory_mib("512MiB"), Ok(512));
        assert_eq!(parse_memory_mib("4096"), Ok(4096));
        for bad in ["", "lots", "64M", "-1G", "1e30G", "NaN"] {
            let err = parse_memory_mib(bad).unwrap_err();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn limits_become_cgroup_values_in_namespaces() {
        let l = SandboxLimits {
            cpus: Some(2),
            memory_mib: Some(1024),
        }
        .jail_limits();
        assert_eq!(l.cpu_percent, Some(200));
        assert_eq!(l.memory_bytes, Some(1 << 30));
        let none = SandboxLimits::default().jail_limits();
        assert_eq!(none, sbx_jail::Limits::default());
    }

    #[test]
    fn records_without_limits_still_load() {
        let l: SandboxLimits = serde_json::from_str("{}").unwrap();
        assert_eq!(l, SandboxLimits::default());
    }
}
