//! `sbx completion SHELL`.

use anyhow::Result;
use clap::CommandFactory;

use crate::cli::Cli;

pub(crate) fn run(shell: clap_complete::Shell) -> Result<i32> {
    clap_complete::generate(
        shell,
        &mut Cli::command(),
        "sbx",
        &mut std::io::stdout().lock(),
    );
    Ok(0)
}
