//! `cargo xtask bench-vmm`: sbx-vmm start-up cost and memory overhead, next to Firecracker's published figures.
//!
//! Runs `examples/bench_start` (release) N times, each in a fresh process, and reports medians and p90s of:
//! process CPU time at the first `KVM_RUN` (the VMM start cost, including exec and configuration), CPU and wall
//! time from `Vm::start` to the first `KVM_RUN`, and RSS outside guest memory — first with an 11-byte test guest,
//! then with the real guest kernel (`--kernel PATH`, else the `cargo xtask guest-kernel` cache when it holds one).
//! The load average is printed with the results, since the machine may be shared. Boot-to-init time and microVMs
//! per core per second need hardware virtualization; on other hosts the task says so instead of printing numbers.

use std::path::Path;
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::workspace_root;

const DEFAULT_RUNS: usize = 30;

/// Entry point: `cargo xtask bench-vmm [--runs N] [--kernel PATH]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let mut runs = DEFAULT_RUNS;
    let mut kernel: Option<String> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--runs" => {
                runs = it
                    .next()
                    .context("--runs needs a number")?
                    .parse()
                    .context("--runs")?
            }
            "--kernel" => kernel = Some(it.next().context("--kernel needs a path")?.clone()),
            other => bail!(
                "unknown argument {other}; usage: cargo xtask bench-vmm [--runs N] [--kernel PATH]"
            ),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "-p",
            "sbx-vmm",
            "--example",
            "bench_start",
        ])
        .status()
        .context("running cargo build")?;
    if !status.success() {
        bail!("building the bench_start example failed");
    }
    let exe = crate::target_dir()?.join("release/examples/bench_start");
    let kernel = kernel.map(std::path::PathBuf::from).or_else(|| {
        let cached = crate::guest_kernel::cache_dir().ok()?.join("vmlinux");
        cached.exists().then_some(cached)
    });
    println!("load average before: {}", load_average());
    report(&exe, runs, None)?;
    match &kernel {
        Some(k) => report(&exe, runs, Some(k))?,
        None => println!(
            "\n(no guest kernel: run `cargo xtask guest-kernel` or pass --kernel PATH to measure the real kernel too)"
        ),
    }
    println!("\nload average after: {}", load_average());
    let flavor = kvm_flavor();
    if flavor == "kvm_intel" || flavor == "kvm_amd" {
        println!(
            "boot to guest init (goal ≤ 100 ms, Firecracker ≤ 125 ms): not automated yet; boot the guest kernel with the boot example"
        );
    } else {
        println!(
            "boot to guest init (goal ≤ 100 ms, Firecracker ≤ 125 ms) and microVMs per core per second (goal ≥ 10, \
             Firecracker 5): need hardware KVM (this host: {flavor}); not measured"
        );
    }
    Ok(())
}

/// `uptime`'s load averages.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// Runs the example `runs` times with `kernel` (or its tiny guest) and prints one table.
fn report(exe: &Path, runs: usize, kernel: Option<&Path>) -> Result<()> {
    let mut samples: Vec<[f64; 4]> = Vec::new();
    for i in 0..runs {
        let mut cmd = Command::new(exe);
        if let Some(k) = kernel {
            cmd.arg("--kernel").arg(k);
        }
        let out = cmd
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!("run {i} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        samples.push(parse_line(&String::from_utf8_lossy(&out.stdout))?);
    }
    let column = |k: usize| {
        let mut v: Vec<f64> = samples.iter().map(|s| s[k]).collect();
        v.sort_by(f64::total_cmp);
        (percentile(&v, 0.5), percentile(&v, 0.9))
    };
    let (cpu, start_cpu, start_wall, rss) = (column(0), column(1), column(2), column(3));
    let guest = kernel.map_or_else(
        || "tiny test guest (11 bytes of code)".to_string(),
        |k| k.display().to_string(),
    );
    println!("\nsbx-vmm start-up, {runs} runs, guest: {guest}, 128 MiB\n");
    println!("| metric | sbx-vmm median | p90 | goal | Firecracker (published) |");
    println!("|---|---|---|---|---|");
    println!(
        "| process CPU until first KVM_RUN | {:.2} ms | {:.2} ms | ≤ 5 ms | ≤ 8 ms |",
        cpu.0, cpu.1
    );
    println!(
        "| CPU from Vm::start to first KVM_RUN | {:.2} ms | {:.2} ms | – | – |",
        start_cpu.0, start_cpu.1
    );
    println!(
        "| wall time from Vm::start to first KVM_RUN | {:.2} ms | {:.2} ms | – | – |",
        start_wall.0, start_wall.1
    );
    println!(
        "| VMM memory overhead (RSS outside guest memory) | {:.2} MiB | {:.2} MiB | ≤ 4 MiB | ≤ 5 MiB |",
        rss.0 / 1024.0,
        rss.1 / 1024.0
    );
    Ok(())
}

fn parse_line(line: &str) -> Result<[f64; 4]> {
    let mut out = [0.0; 4];
    for (i, key) in [
        "process_cpu_ms",
        "start_cpu_ms",
        "start_wall_ms",
        "overhead_kib",
    ]
    .iter()
    .enumerate()
    {
        let value = line
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
            .with_context(|| format!("{key} missing in {line:?}"))?;
        out[i] = value.parse().with_context(|| format!("{key}={value}"))?;
    }
    Ok(out)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// The loaded KVM vendor module, from /sys/module.
fn kvm_flavor() -> &'static str {
    ["kvm_intel", "kvm_amd", "kvm_pvm"]
        .into_iter()
        .find(|m| Path::new("/sys/module").join(m).exists())
        .unwrap_or("no KVM module")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_example_output() {
        let v =
            parse_line("process_cpu_ms=4.8 start_cpu_ms=2.6 start_wall_ms=8.5 overhead_kib=2396\n")
                .unwrap();
        assert_eq!(v, [4.8, 2.6, 8.5, 2396.0]);
        assert!(parse_line("garbage").is_err());
        assert_eq!(percentile(&[1.0, 2.0, 3.0], 0.5), 2.0);
    }
}
