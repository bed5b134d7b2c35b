//! `cargo xtask guest-agent [--debug]`: builds the statically linked in-sandbox agent.
//!
//! The agent must run in any template (and as PID 1 of a microVM) without the template's libc, so it is linked with
//! `crt-static`. The flag is passed only to this build (with an explicit `--target`, RUSTFLAGS reach target crates,
//! not build scripts), so no global rustflags affect other crates.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{Context, Result, bail};

/// The only target installed here; glibc static linking works for it.
const TARGET: &str = "x86_64-unknown-linux-gnu";

/// Builds the agent and prints its path.
pub(crate) fn build(args: &[String]) -> Result<()> {
    let bin = build_static(!args.iter().any(|a| a == "--debug"))?;
    println!("{}", bin.display());
    Ok(())
}

/// Builds the statically linked agent (release or debug) and returns its path.
pub(crate) fn build_static(release: bool) -> Result<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(&root)
        .args(["build", "-p", "sbx-guest", "--target", TARGET]);
    if release {
        cmd.arg("--release");
    }
    cmd.env("RUSTFLAGS", "-C target-feature=+crt-static");
    let status = cmd.status().context("could not run cargo")?;
    if !status.success() {
        bail!("building sbx-guest failed ({status})");
    }
    let target_dir = std::env::var("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| root.join("target"));
    let bin = target_dir
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("sbx-guest");
    let ldd = Command::new("ldd")
        .arg(&bin)
        .output()
        .context("could not run ldd")?;
    let text =
        String::from_utf8_lossy(&ldd.stdout).to_string() + &String::from_utf8_lossy(&ldd.stderr);
    if !(text.contains("not a dynamic executable") || text.contains("statically linked")) {
        bail!("{} is not statically linked:\n{text}", bin.display());
    }
    Ok(bin)
}
