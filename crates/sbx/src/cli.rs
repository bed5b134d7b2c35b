//! The command line, as clap sees it. Handlers live in `commands/`.

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help` and the README.
pub(crate) mod exit {
    /// An error; the message says what happened and what to type next.
    pub(crate) const ERROR: i32 = 1;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success (sbx exec passes the command's own status through)
  1  error: the message says what happened and what to type next
  2  bad usage or a bad input file
  3  sbx policy check: the request is blocked

Environment:
  SBX_HOME   keep all config and state below this directory (default: XDG directories)
  NO_COLOR   disable colours";

/// Run coding agents in disposable sandboxes with policy-controlled egress.
#[derive(Debug, Parser)]
#[command(name = "sbx", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Check this host: KVM kind, isolation backends, secret store, templates, guest kernel, proxy CA.
    #[command(after_help = "Examples:\n  sbx doctor\n  sbx doctor --json")]
    Doctor {
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List the agents sbx knows how to launch, or show one.
    #[command(after_help = "Examples:\n  sbx agents\n  sbx agents claude --json")]
    Agents {
        /// Show only this agent.
        name: Option<String>,
        /// Print the table as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  sbx completion bash > ~/.local/share/bash-completion/completions/sbx\n  sbx completion zsh > ~/.zfunc/_sbx"
    )]
    Completion {
        /// The shell to generate for.
        shell: clap_complete::Shell,
    },
}
