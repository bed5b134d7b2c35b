//! Sandbox templates: the read-only root every sandbox starts from.
//!
//! * [`build_template`] builds the default Debian template with debootstrap (a directory for namespaces and an ext4
//!   image for the microVM).
//! * [`host_template`] assembles a small template from the host's own binaries and their shared libraries (found
//!   with `ldd`); it takes well under a second and is what tests use.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::TemplateError;

/// Packages of the default template.
pub const DEFAULT_PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "git",
    "openssh-client",
    "python3",
    "nodejs",
    "npm",
    "sudo",
    "procps",
    "less",
];
/// Agent CLIs installed from npm into the default template.
pub const AGENT_CLIS: &[&str] = &[
    "@anthropic-ai/claude-code",
    "@openai/codex",
    "@google/gemini-cli",
];
/// Debian suite of the default template.
pub const SUITE: &str = "bookworm";
/// Size of the ext4 image for the microVM.
pub const IMAGE_SIZE: &str = "4G";

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

/// Progress of a template build.
pub trait Progress {
    /// A step started (`index` of `total`).
    fn step(&mut self, index: usize, total: usize, what: &str);
    /// A line of tool output.
    fn line(&mut self, _line: &str) {}
}

/// Progress that discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&mut self, _: usize, _: usize, _: &str) {}
}

fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> TemplateError {
    let path = path.to_path_buf();
    move |source| TemplateError::Io {
        action,
        path,
        source,
    }
}

fn which(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_else(|| "/usr/sbin:/usr/bin:/sbin:/bin".into());
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

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
    Ok(())
}

fn run_step(
    progress: &mut dyn Progress,
    step: &str,
    cmd: &mut Command,
) -> Result<(), TemplateError> {
    progress.line(&format!("$ {cmd:?}"));
    let out = cmd.output().map_err(|e| TemplateError::Step {
        step: step.into(),
        detail: e.to_string(),
    })?;
    for line in String::from_utf8_lossy(&out.stdout)
        .lines()
        .chain(String::from_utf8_lossy(&out.stderr).lines())
    {
        progress.line(line);
    }
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let tail: Vec<&str> = err
            .lines()
            .rev()
            .take(8)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        return Err(TemplateError::Step {
            step: step.into(),
            detail: format!("{}: {}", out.status, tail.join("\n")),
        });
    }
    Ok(())
}

/// Checks the tools [`build_template`] needs, naming what is missing and how to install it.
pub fn check_build_tools() -> Result<(), TemplateError> {
    for (tool, install) in [
        ("debootstrap", "sudo apt-get install debootstrap"),
        ("mkfs.ext4", "sudo apt-get install e2fsprogs"),
        ("chroot", "sudo apt-get install coreutils"),
    ] {
        if which(tool).is_none() && !Path::new("/usr/sbin").join(tool).exists() {
            return Err(TemplateError::MissingTool {
                tool,
                what: "Debian sandbox template",
                install,
            });
        }
    }
    if rustix::process::geteuid().as_raw() != 0 {
        return Err(TemplateError::NeedsRoot);
    }
    Ok(())
}

/// Builds the default template `name` under `dest`: `dest/rootfs` (directory for namespaces) and `dest/rootfs.ext4`
/// (image for the microVM). `mirror` defaults to deb.debian.org.
pub fn build_template(
    name: &str,
    dest: &Path,
    mirror: Option<&str>,
    progress: &mut dyn Progress,
) -> Result<(), TemplateError> {
    check_build_tools()?;
    let total = 6;
    let rootfs = dest.join("rootfs");
    let partial = dest.join("rootfs.partial");
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(io("create", &partial))?;
    progress.step(
        1,
        total,
        &format!("debootstrap {SUITE} for template {name}"),
    );
    run_step(
        progress,
        "debootstrap",
        Command::new("debootstrap")
            .args([
                "--variant=minbase",
                &format!("--include={}", DEFAULT_PACKAGES.join(",")),
                SUITE,
            ])
            .arg(&partial)
            .arg(mirror.unwrap_or("http://deb.debian.org/debian")),
    )?;
    let chroot = |script: &str| {
        let mut c = Command::new("chroot");
        c.arg(&partial)
            .args(["/bin/sh", "-c", script])
            .env("DEBIAN_FRONTEND", "noninteractive");
        c
    };
    progress.step(2, total, "create the agent user");
    run_step(
        progress,
        "create the agent user",
        &mut chroot(
            "id agent >/dev/null 2>&1 || useradd --create-home --uid 1000 --shell /bin/bash --groups sudo agent; \
             echo 'agent ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/agent; chmod 0440 /etc/sudoers.d/agent",
        ),
    )?;
    progress.step(3, total, "install the agent CLIs from npm");
    run_step(
        progress,
        "npm install",
        &mut chroot(&format!(
            "npm install -g --no-audit --no-fund {}",
            AGENT_CLIS.join(" ")
        )),
    )?;
    progress.step(4, total, "clean apt caches");
    run_step(
        progress,
        "clean",
        &mut chroot("apt-get clean; rm -rf /var/lib/apt/lists/* /root/.npm"),
    )?;
    progress.step(5, total, "install the directory");
    let _ = std::fs::remove_dir_all(&rootfs);
    std::fs::rename(&partial, &rootfs).map_err(io("rename", &partial))?;
    progress.step(6, total, "make the ext4 image");
    let image = dest.join("rootfs.ext4");
    let tmp = dest.join("rootfs.ext4.partial");
    let _ = std::fs::remove_file(&tmp);
    run_step(
        progress,
        "mkfs.ext4",
        Command::new("mkfs.ext4")
            .args(["-q", "-F", "-L", "sbx-root", "-d"])
            .arg(&rootfs)
            .arg(&tmp)
            .arg(IMAGE_SIZE),
    )?;
    std::fs::rename(&tmp, &image).map_err(io("rename", &tmp))?;
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

    #[test]
    fn missing_debootstrap_is_named_with_its_install_command() {
        if which("debootstrap").is_some() {
            println!(
                "skipped: debootstrap is installed here, so the missing-tool error cannot be observed"
            );
            return;
        }
        let err = check_build_tools().unwrap_err().to_string();
        assert!(
            err.contains("debootstrap") && err.contains("apt-get install debootstrap"),
            "{err}"
        );
    }
}
