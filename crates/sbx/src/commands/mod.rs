//! Command handlers: each one a thin call into a library crate.

mod agents;
mod attach;
mod completion;
mod cp;
pub(crate) mod dashboard;
mod doctor;
pub(crate) mod exec;
mod policy;
mod review;
mod run;
pub(crate) mod sandbox;
pub(crate) mod secret;
pub(crate) mod template;

use anyhow::Result;

use crate::cli::Command;
use crate::home::Home;

pub(crate) use doctor::KvmKind;

/// Runs one command and returns the process exit code.
pub(crate) fn dispatch(command: Command) -> Result<i32> {
    match command {
        Command::Doctor { json } => doctor::run(json),
        Command::Agents { name, json } => agents::run(name.as_deref(), json),
        Command::Policy(cmd) => policy::run(cmd),
        Command::Secret(cmd) => secret::run(cmd),
        Command::Completion { shell } => completion::run(shell),
        Command::Template(cmd) => template::run(cmd),
        Command::Create(args) => {
            let home = Home::from_env()?;
            let quiet = args.quiet;
            let name = sandbox::create(
                &home,
                sandbox::CreateRequest {
                    name: args.name,
                    isolation: args.isolation,
                    env: args.env,
                    agent: args.agent,
                    paths: args.paths,
                    git: args.setup.git(),
                    resources: args.setup.resources(),
                },
            )?;
            if !quiet {
                eprintln!(
                    "created and started sandbox {name}; run commands with `sbx exec {name} CMD`"
                );
            }
            println!("{name}");
            Ok(0)
        }
        Command::Run(args) => run::run(&Home::from_env()?, args),
        Command::Ls { json } => sandbox::ls(&Home::from_env()?, json),
        Command::Exec(args) => exec::run(
            &Home::from_env()?,
            exec::ExecArgs {
                name: args.name,
                argv: args.command,
                env: args.env,
                workdir: args.workdir,
                user: args.user,
                interactive: args.interactive,
                tty: args.tty,
                agent_session: false,
            },
        ),
        Command::Stop { names } => sandbox::stop(&Home::from_env()?, &names),
        Command::Start { name } => sandbox::start(&Home::from_env()?, &name),
        Command::Rm { names, force, all } => sandbox::rm(&Home::from_env()?, &names, force, all),
        Command::Diff { name, stat, json } => review::diff(&Home::from_env()?, &name, stat, json),
        Command::Merge { name, json } => review::merge(&Home::from_env()?, &name, json),
        Command::Cp { src, dst } => cp::run(&Home::from_env()?, &src, &dst),
        Command::Attach { name } => attach::run(&Home::from_env()?, &name),
        Command::Supervise { name } => sandbox::supervise(&Home::from_env()?, &name),
    }
}
