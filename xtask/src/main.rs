//! `cargo xtask <task>`: the developer tasks of the sbx workspace.
//!
//! `cargo xtask ci` is the one test command: it installs what the tests need on a fresh machine, then runs
//! `cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings` and the whole test suite.

mod bench_proxy;
mod bench_virtiofs;
mod bench_vmm;
mod ci;
mod guest_agent;
mod guest_kernel;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

/// Root of the workspace (the parent of `xtask/`).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cargo target directory, absolute: `CARGO_TARGET_DIR` if set, else the workspace's `target/`. Absolute because
/// `cargo bench` runs a driver in its package's directory, not here.
pub(crate) fn target_dir() -> Result<PathBuf> {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => std::path::absolute(dir).context("resolving CARGO_TARGET_DIR"),
        None => Ok(workspace_root().join("target")),
    }
}

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci         install test prerequisites, then fmt --check, clippy -D warnings, the whole test suite
  deps       only install the test prerequisites (apt packages, cargo tools)
  bench-proxy  sbx-netproxy load test vs direct, mitmproxy and (--hudsucker) a bare hudsucker (docs/benchmarks.md)
  guest-agent [--debug]  build the statically linked in-sandbox agent (sbx-guest) and print its path
  bench-virtiofs [DIR]  sbx-virtiofs through host FUSE vs the plain directory and bindfs (root; DIR: scratch space)
  guest-kernel  build the microVM guest kernel (sbx-vmm); prints the vmlinux path last
  bench-vmm  sbx-vmm start-up CPU time and memory overhead vs Firecracker
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::pipeline(),
        Some("deps") => ci::install_prerequisites(),
        Some("bench-proxy") => bench_proxy::run(&args[1..]),
        Some("guest-agent") => guest_agent::build(&args[1..]),
        Some("bench-virtiofs") => bench_virtiofs::run(&args[1..]),
        Some("guest-kernel") => guest_kernel::run(&args[1..]),
        Some("bench-vmm") => bench_vmm::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            eprint!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n{USAGE}"),
    }
}
