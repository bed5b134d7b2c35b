//! `cargo xtask bench-proxy [--mitmdump PATH] [--connections N] [--hudsucker] [--latency-rounds N]`: build the sbx-netproxy example in release mode and
//! run the load driver (`crates/sbx-netproxy/benches/proxy_load.rs`) against it and, when `mitmdump` is found (PATH,
//! or `pip install mitmproxy`), against mitmproxy doing the same MITM, all on loopback in one run. With `--hudsucker`
//! it also builds `xtask/hudsucker-probe` (a bare hudsucker MITM, the latency anchor) and measures it alongside.
//! `--latency-rounds N` measures only the single keep-alive connection, N rounds with the routes taking turns, and
//! prints medians (for A/B comparisons of the per-request cost).

use std::process::Command;

use anyhow::{Context, Result, bail};

pub(crate) fn run(args: &[String]) -> Result<()> {
    let status = Command::new(env!("CARGO"))
        .args([
            "build",
            "--release",
            "-p",
            "sbx-netproxy",
            "--example",
            "proxy",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the sbx-netproxy example failed");
    }
    let target = crate::target_dir()?;
    let proxy_bin = target.join("release/examples/proxy");
    let mut driver_args = vec!["--proxy-bin".to_owned(), proxy_bin.display().to_string()];
    let explicit = args
        .iter()
        .position(|a| a == "--mitmdump")
        .and_then(|i| args.get(i + 1))
        .cloned();
    match explicit.or_else(find_mitmdump) {
        Some(m) => driver_args.extend(["--mitmdump".to_owned(), m]),
        None => eprintln!(
            "note: mitmdump not found (pip install mitmproxy, or --mitmdump PATH); measuring without it"
        ),
    }
    if args.iter().any(|a| a == "--hudsucker") {
        driver_args.extend(["--hudsucker".to_owned(), build_hudsucker_probe(&target)?]);
    }
    for flag in ["--connections", "--latency-rounds"] {
        if let Some(i) = args.iter().position(|a| a == flag) {
            driver_args.extend([
                flag.to_owned(),
                args.get(i + 1)
                    .cloned()
                    .with_context(|| format!("{flag} needs a number"))?,
            ]);
        }
    }
    let status = Command::new(env!("CARGO"))
        .args(["bench", "-p", "sbx-netproxy", "--bench", "proxy_load", "--"])
        .args(&driver_args)
        .status()
        .context("running the load driver")?;
    if !status.success() {
        bail!("the proxy load driver failed");
    }
    Ok(())
}

/// Build the hudsucker anchor (`xtask/hudsucker-probe`, its own workspace) into `TARGET/hudsucker-probe`.
fn build_hudsucker_probe(target: &std::path::Path) -> Result<String> {
    let probe_target = target.join("hudsucker-probe");
    let manifest = crate::workspace_root().join("xtask/hudsucker-probe/Cargo.toml");
    let status = Command::new(env!("CARGO"))
        .args(["build", "--release", "--manifest-path"])
        .arg(&manifest)
        .arg("--target-dir")
        .arg(&probe_target)
        .status()
        .context("running cargo build for the hudsucker probe")?;
    if !status.success() {
        bail!("building {} failed", manifest.display());
    }
    Ok(probe_target
        .join("release/hudsucker-probe")
        .display()
        .to_string())
}

fn find_mitmdump() -> Option<String> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("mitmdump"))
        .find(|p| p.is_file())
        .map(|p| p.display().to_string())
}
