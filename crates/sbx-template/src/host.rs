//! A small template assembled from the host's own programs and their shared libraries (found with `ldd`): it takes
//! well under a second and needs no network, which is what tests and the first-run fallback use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::debian::AGENT_UID;
use crate::error::{TemplateError, io};
use crate::tools::which;

/// Programs copied into a host template (those the host lacks are skipped).
pub const HOST_PROGRAMS: &[&str] = &[
    "sh",
    "bash",
    "ls",
    "cat",
    "echo",
    "env",
    "id",
    "whoami",
    "mkdir",
    "rm",
    "touch",
    "cp",
    "mv",
    "ln",
    "sleep",
    "true",
    "false",
    "test",
    "readlink",
    "realpath",
    "stat",
    "head",
    "tail",
    "wc",
    "grep",
    "sed",
    "tr",
    "uname",
    "hostname",
    "dd",
    "stty",
    "tty",
    "pwd",
    "kill",
    "ps",
    "sync",
    "date",
    "chmod",
    "find",
    "curl",
    "getent",
    "timeout",
    "seq",
    "base64",
    "sha256sum",
    "sort",
    "nproc",
    "printf",
    "ping",
    "mount",
    "unshare",
    "cut",
    // branch mode: agents commit on their sandbox branch.
    "git",
];

/// Shared libraries `binary` needs, from `ldd` (empty for static binaries).
fn shared_libs(binary: &Path) -> Vec<PathBuf> {
    let Ok(out) = Command::new("ldd").arg(binary).output() else {
        return Vec::new();
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let path = l.split("=>").last()?.split_whitespace().next()?;
            path.starts_with('/').then(|| PathBuf::from(path))
        })
        .collect()
}

fn copy_into(dest: &Path, file: &Path) -> Result<(), TemplateError> {
    let target = dest.join(file.strip_prefix("/").unwrap_or(file));
    if let Some(dir) = target.parent() {
        std::fs::create_dir_all(dir).map_err(io("create", dir))?;
    }
    let real = std::fs::canonicalize(file).map_err(io("resolve", file))?;
    std::fs::copy(&real, &target).map_err(io("copy", file))?;
    Ok(())
}

/// Assembles a minimal template at `dest` from the host's own programs ([`HOST_PROGRAMS`]) and their libraries, with
/// `/etc/passwd` (root and a non-root `agent` user), `/etc/group`, `/etc/hosts` and a home directory for `agent`.
pub fn host_template(dest: &Path) -> Result<(), TemplateError> {
    if which("ldd").is_none() {
        return Err(TemplateError::MissingTool {
            tool: "ldd",
            what: "host template",
            install: "apt-get install libc-bin",
        });
    }
    let mut files = BTreeSet::new();
    for program in HOST_PROGRAMS {
        if let Some(path) = which(program) {
            files.extend(shared_libs(&path));
            files.insert(path);
        }
    }
    for file in &files {
        copy_into(dest, file)?;
    }
    // Usual locations, whatever the host's layout (merged /usr or not).
    for dir in [
        "bin",
        "usr/bin",
        "etc",
        "root",
        "home/agent",
        "tmp",
        "proc",
        "sys",
        "dev",
        "run",
        "var/tmp",
    ] {
        std::fs::create_dir_all(dest.join(dir)).map_err(io("create", &dest.join(dir)))?;
    }
    if !dest.join("bin/sh").exists()
        && let Some(sh) = which("sh")
    {
        copy_into(dest, &sh)?;
        if !dest.join("bin/sh").exists() {
            std::fs::copy(
                dest.join(sh.strip_prefix("/").unwrap_or(&sh)),
                dest.join("bin/sh"),
            )
            .map_err(io("copy", &sh))?;
        }
    }
    let etc = [
        (
            "etc/passwd",
            "root:x:0:0:root:/root:/bin/sh\nagent:x:1000:1000:sbx agent:/home/agent:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        ),
        (
            "etc/group",
            "root:x:0:\nsudo:x:27:agent\nagent:x:1000:\nnogroup:x:65534:\n",
        ),
        ("etc/hosts", "127.0.0.1 localhost\n::1 localhost\n"),
        (
            "etc/nsswitch.conf",
            "passwd: files\ngroup: files\nhosts: files dns\n",
        ),
        ("etc/hostname", "sbx\n"),
    ];
    for (path, content) in etc {
        std::fs::write(dest.join(path), content).map_err(io("write", &dest.join(path)))?;
    }
    // The template's files carry the owners they have inside (the namespace backend maps them when it starts a
    // sandbox): the agent's home is the agent's. Only root can say so; an unprivileged build leaves every file its
    // own, which the namespace backend reads as root's, and its init gives the agent its home.
    for sticky in ["tmp", "var/tmp"] {
        let dir = dest.join(sticky);
        std::fs::set_permissions(&dir, std::os::unix::fs::PermissionsExt::from_mode(0o1777))
            .map_err(io("chmod", &dir))?;
    }
    if rustix::process::geteuid().is_root() {
        let home = dest.join("home/agent");
        rustix::fs::chown(
            &home,
            Some(rustix::fs::Uid::from_raw(AGENT_UID)),
            Some(rustix::fs::Gid::from_raw(AGENT_UID)),
        )
        .map_err(|e| io("chown", &home)(e.into()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_template_has_a_shell_its_libraries_and_users() {
        let dir = tempfile::tempdir().unwrap();
        host_template(dir.path()).unwrap();
        assert!(dir.path().join("bin/sh").exists() || dir.path().join("usr/bin/sh").exists());
        let sh = which("sh").unwrap();
        for lib in shared_libs(&sh) {
            assert!(
                dir.path().join(lib.strip_prefix("/").unwrap()).exists(),
                "{} missing",
                lib.display()
            );
        }
        let passwd = std::fs::read_to_string(dir.path().join("etc/passwd")).unwrap();
        assert!(passwd.contains("agent:x:1000:1000"));
    }
}
