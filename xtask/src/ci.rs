//! The CI pipeline: prerequisites, formatting, lints, tests.

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

/// Debian packages the test suite uses, with the command whose presence shows the package is installed.
/// Each entry says which tests need it.
const APT_PACKAGES: &[(&str, &str)] = &[
    // git interop tests of sbx-worktree and the branch-mode end-to-end tests.
    ("git", "git"),
    // end-to-end tests send requests from inside sandboxes with curl.
    ("curl", "curl"),
    // sbx-jail namespace tests: `unshare` probes namespace support; `mount` is put in the host template to prove
    // the seccomp filter refuses mounting; `ping` proves ICMP cannot leave a sandbox.
    ("util-linux", "unshare"),
    ("mount", "mount"),
    ("iputils-ping", "ping"),
    // sbx-virtiofs: the fusermount3 mount path of the host-FUSE frontend (tests/fusermount.rs).
    ("fuse3", "fusermount3"),
    // sbx-template: the microVM root image is made with `mkfs.ext4 -d` and checked with `debugfs`.
    ("e2fsprogs", "mkfs.ext4"),
];

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Installs missing apt packages (when root) and cargo-nextest (when missing).
pub(crate) fn install_prerequisites() -> Result<()> {
    let missing: Vec<&str> = APT_PACKAGES
        .iter()
        .filter(|(_, cmd)| !have(cmd))
        .map(|(pkg, _)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !is_root() || !have("apt-get") {
            bail!(
                "the tests need these Debian packages: {}; install them (e.g. `sudo apt-get install -y {}`) and run again",
                missing.join(" "),
                missing.join(" ")
            );
        }
        eprintln!("xtask: installing {}", missing.join(" "));
        exec(Command::new("apt-get").args(["update", "-q"]))?;
        exec(
            Command::new("apt-get")
                .args(["install", "-y", "-q", "--no-install-recommends"])
                .args(&missing)
                .env("DEBIAN_FRONTEND", "noninteractive"),
        )?;
    }
    if !have("cargo-nextest") {
        eprintln!("xtask: installing cargo-nextest");
        exec(cargo().args(["install", "--locked", "cargo-nextest"]))?;
    }
    Ok(())
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(workspace_root());
    cmd
}

fn exec(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

fn step(name: &str, cmd: &mut Command) -> Result<()> {
    eprintln!("\n== xtask ci: {name}");
    let start = Instant::now();
    let result = exec(cmd);
    eprintln!("== xtask ci: {name}: {:.0?}", start.elapsed());
    result
}

/// The whole pipeline. Stops at the first failing step. The full test run comes last so that its summary is
/// the closing line of the output.
pub(crate) fn pipeline() -> Result<()> {
    install_prerequisites()?;
    step("fmt", cargo().args(["fmt", "--all", "--check"]))?;
    step(
        "clippy",
        cargo().args([
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?;
    // The fuzz crate is outside the workspace (cargo-fuzz builds it with nightly); make sure every target still
    // compiles against the current APIs. Its own target dir keeps the nightly/sanitizer builds apart.
    step(
        "fuzz targets compile",
        cargo()
            .args(["check", "--manifest-path", "fuzz/Cargo.toml", "--bins"])
            .env(
                "CARGO_TARGET_DIR",
                workspace_root().join("target/fuzz-check"),
            ),
    )?;
    step("doc tests", cargo().args(["test", "--workspace", "--doc"]))?;
    // sbx-audit's OTLP export is an opt-in feature without extra dependencies; its tests use a local receiver.
    step(
        "sbx-audit otlp",
        cargo().args([
            "nextest",
            "run",
            "-p",
            "sbx-audit",
            "--features",
            "otlp",
            "--profile",
            "ci",
        ]),
    )?;
    // The namespace end-to-end tests (sbx-jail, sbx) run the static in-sandbox agent; build it once here rather
    // than from inside several test processes at once.
    eprintln!("\n== xtask ci: static sbx-guest");
    let guest = crate::guest_agent::build_static(false)?;
    // sbx-vmm's level-2 test boots the real guest kernel (cached after the first build).
    eprintln!("\n== xtask ci: guest kernel");
    let started = Instant::now();
    let kernel = crate::guest_kernel::build_cached(false)?;
    eprintln!("== xtask ci: guest kernel: {:.0?}", started.elapsed());
    step(
        "tests",
        cargo()
            .args(["nextest", "run", "--workspace", "--profile", "ci"])
            .env("SBX_GUEST_BIN", &guest)
            .env("SBX_TEST_KERNEL", &kernel),
    )?;
    Ok(())
}
