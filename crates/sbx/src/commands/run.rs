//! `sbx run`: create the sandbox if needed, start it, and attach this terminal to the agent.

use anyhow::Result;

use crate::agents::AgentTable;
use crate::cli::RunArgs;
use crate::commands::exec::{self, ExecArgs};
use crate::commands::sandbox::{self, CreateRequest};
use crate::home::Home;
use crate::output;
use crate::sandboxes::SandboxDir;

/// Runs the agent's command (from the agent table, with its YOLO flags and `-- ARGS`) on a terminal in the
/// sandbox and returns its exit status.
pub(crate) fn run(home: &Home, args: RunArgs) -> Result<i32> {
    let table = AgentTable::load(&home.config.join("agents.toml"))?;
    let agent = table.get(&args.agent)?.clone();
    let workspaces = sandbox::parse_workspaces(&args.paths)?;
    let name = match &args.name {
        Some(n) => n.clone(),
        // Without --name, `sbx run AGENT PATH` again returns to the same sandbox.
        None => sandbox::default_name(&args.agent, &workspaces),
    };
    let dir = SandboxDir::new(home, &name)?;
    let existing = dir.load().ok();
    match &existing {
        Some(record) => {
            if record.agent != agent.name {
                output::warning(&format!(
                    "sandbox {name} was created for agent {}; running {} in it anyway",
                    record.agent, agent.name
                ));
            }
            sandbox::ensure_running(home, &name)?;
        }
        None => {
            sandbox::create(
                home,
                CreateRequest {
                    name: Some(name.clone()),
                    isolation: args.isolation,
                    env: args.env,
                    agent: args.agent.clone(),
                    paths: args.paths.clone(),
                    git: args.setup.git(),
                    resources: args.setup.resources(),
                },
            )?;
            eprintln!("created sandbox {name}");
        }
    }
    let mut argv = agent.command.clone();
    argv.extend(agent.yolo.iter().cloned());
    argv.extend(args.agent_args);
    // Branch and clone mode: the agent starts in its worktree, not in the user's checkout.
    let record = dir.load()?;
    let workdir = exec::default_workdir(&record).map(|p| p.display().to_string());
    let exec_args = ExecArgs {
        name,
        argv,
        env: Vec::new(),
        workdir,
        user: None,
        interactive: true,
        tty: true,
        agent_session: true,
    };
    if args.detach {
        return crate::commands::attach::start_detached(home, exec_args);
    }
    exec::run(home, exec_args)
}
