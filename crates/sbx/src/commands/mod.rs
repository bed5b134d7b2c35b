//! Command handlers: each one a thin call into a library crate.

mod agents;
mod completion;
mod doctor;
mod policy;
mod secret;

use anyhow::Result;

use crate::cli::Command;

/// Runs one command and returns the process exit code.
pub(crate) fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Doctor { json } => doctor::run(json),
        Command::Agents { name, json } => agents::run(name.as_deref(), json),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Secret(cmd) => secret::run(cmd),
        Command::Completion { shell } => completion::run(shell),
    }
}
