//! `cargo xtask <task>`: the developer tasks of the sbx workspace.
//!
//! `cargo xtask ci` is the one test command: it installs what the tests need on a fresh machine, then runs
//! `cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings` and the whole test suite.

mod bench_proxy;
mod ci;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci         install test prerequisites, then fmt --check, clippy -D warnings, the whole test suite
  deps       only install the test prerequisites (apt packages, cargo tools)
  bench-proxy  sbx-netproxy load test vs direct and mitmproxy (results for docs/benchmarks.md)
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::pipeline(),
        Some("deps") => ci::install_prerequisites(),
        Some("bench-proxy") => bench_proxy::run(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            eprint!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n{USAGE}"),
    }
}
