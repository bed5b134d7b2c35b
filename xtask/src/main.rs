//! `cargo xtask <task>`: the developer tasks of the sbx workspace.
//!
//! `cargo xtask ci` is the one test command: it installs what the tests need on a fresh machine, then runs
//! `cargo fmt --check`, `cargo clippy --workspace --all-targets -- -D warnings` and the whole test suite.

mod ci;
mod guest_agent;

use anyhow::{Result, bail};

const USAGE: &str = "usage: cargo xtask <task>

tasks:
  ci         install test prerequisites, then fmt --check, clippy -D warnings, the whole test suite
  deps       only install the test prerequisites (apt packages, cargo tools)
  guest-agent [--debug]  build the statically linked in-sandbox agent (sbx-guest) and print its path
";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("ci") => ci::pipeline(),
        Some("deps") => ci::install_prerequisites(),
        Some("guest-agent") => guest_agent::build(&args[1..]),
        Some("-h" | "--help" | "help") | None => {
            eprint!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown task `{other}`\n{USAGE}"),
    }
}
