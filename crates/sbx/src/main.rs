//! `sbx`: run coding agents in disposable sandboxes with policy-controlled egress.
//!
//! A small binary composing the library crates: each `commands/<verb>.rs` is a thin call into a library.

mod agents;
mod audit;
mod backend;
mod cli;
mod commands;
mod credentials;
mod custom_secrets;
mod egress;
mod env_vars;
mod fsutil;
mod gitmode;
mod home;
mod isolation_policy;
mod limits;
mod microvm;
mod names;
mod output;
mod policy_files;
mod sandboxes;
mod secret_input;
mod signals;
mod supervisor;

use clap::Parser;

fn main() {
    let cli = cli::Cli::parse();
    let result = match cli.command {
        Some(command) => commands::dispatch(command),
        // `sbx` alone: the dashboard in a terminal, the help otherwise.
        None => commands::dashboard::run_or_help(),
    };
    let code = match result {
        Ok(code) => code,
        Err(err) if is_broken_pipe(&err) => 0,
        Err(err) => {
            output::error(&format!("{err:#}"));
            cli::exit::ERROR
        }
    };
    std::process::exit(code);
}

/// `sbx ls | head` must not report an error when `head` closes the pipe.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain()
        .filter_map(|e| e.downcast_ref::<std::io::Error>())
        .any(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
}
