//! The command line, as clap sees it. Handlers live in `commands/`.

use clap::{Parser, Subcommand};

/// Exit codes, documented in `--help` and the README.
pub(crate) mod exit {
    /// An error; the message says what happened and what to type next.
    pub(crate) const ERROR: i32 = 1;
    /// `sbx policy check`: the request is blocked.
    pub(crate) const BLOCKED: i32 = 3;
    /// `sbx merge`: the merge would conflict; nothing was changed.
    pub(crate) const CONFLICT: i32 = 4;
}

const AFTER_HELP: &str = "\
Exit codes:
  0  success (sbx exec passes the command's own status through)
  1  error: the message says what happened and what to type next
  2  bad usage or a bad input file
  3  sbx policy check: the request is blocked
  4  sbx merge: the merge would conflict (the files are listed; nothing was changed)

Without a command, sbx opens the dashboard in a terminal and prints this help otherwise.

Environment:
  SBX_HOME   keep all config and state below this directory (default: XDG directories)
  NO_COLOR   disable colours";

/// Run coding agents in disposable sandboxes with policy-controlled egress.
#[derive(Debug, Parser)]
#[command(name = "sbx", version, after_help = AFTER_HELP)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Option<Command>,
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
    /// Run an agent in a sandbox: create it if needed, start it, attach this terminal.
    #[command(
        after_help = "Examples:\n  sbx run shell .\n  sbx run claude ~/project\n  sbx run --branch auto claude ~/project      # on branch sbx/<name>, review with sbx diff\n  sbx run --name review codex ~/project ~/docs:ro -- --model o4\n  sbx run -d --name bg claude ~/project        # detached; sbx attach bg\n\nDetach from a running agent with Ctrl-] (it keeps running; `sbx attach NAME` returns to it).\nThe exit status is the agent's."
    )]
    Run(RunArgs),
    /// Create a sandbox for an agent and start it (without attaching).
    #[command(
        after_help = "Examples:\n  sbx create shell .\n  sbx create --name review -e DEBUG=1 claude ~/project ~/docs:ro\n  sbx create -q --isolation namespaces shell /tmp/work\n  sbx create --branch auto --name fix claude ~/project\n  sbx create --clone --name try codex ~/project"
    )]
    Create(CreateArgs),
    /// List sandboxes: name, agent, status, isolation, workspace, branch, uptime.
    #[command(after_help = "Examples:\n  sbx ls\n  sbx ls --json")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Run a command in a sandbox (starting it if stopped); exits with the command's status.
    #[command(
        after_help = "Examples:\n  sbx exec my-box ls -la              # in the sandbox's workspace\n  sbx exec -it my-box bash\n  sbx exec -e DEBUG=1 -w /tmp -u agent my-box env"
    )]
    Exec(ExecArgs),
    /// Stop running sandboxes (their files are kept).
    #[command(after_help = "Examples:\n  sbx stop my-box\n  sbx stop a b c")]
    Stop {
        /// Sandboxes to stop.
        #[arg(required = true)]
        names: Vec<String>,
    },
    /// Start a stopped (or crashed) sandbox with its files as they were.
    #[command(after_help = "Examples:\n  sbx start my-box")]
    Start {
        /// The sandbox.
        name: String,
    },
    /// Remove sandboxes and everything they wrote.
    #[command(
        after_help = "Examples:\n  sbx rm my-box\n  sbx rm -f running-box\n  sbx rm --all -f"
    )]
    Rm {
        /// Sandboxes to remove.
        names: Vec<String>,
        /// Stop running sandboxes first instead of refusing.
        #[arg(short, long)]
        force: bool,
        /// Remove every sandbox.
        #[arg(long, conflicts_with = "names")]
        all: bool,
    },
    /// Show what a branch- or clone-mode sandbox changed: a unified diff against the commit it started from.
    #[command(
        after_help = "Examples:\n  sbx diff my-box\n  sbx diff my-box --stat\n  sbx diff my-box --json"
    )]
    Diff {
        /// The sandbox.
        name: String,
        /// Only the per-file summary (A/M/D/R, lines added and removed).
        #[arg(long)]
        stat: bool,
        /// Print the summary and the patch as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Merge a branch- or clone-mode sandbox's commits into the branch you had checked out when it was created.
    #[command(
        after_help = "Examples:\n  sbx merge my-box\n  sbx merge my-box --json\n\nA fast-forward when possible, else a merge commit. A merge that would conflict is refused with the\nfiles listed and nothing changed (exit status 4). Clone mode fetches the sandbox's commits first."
    )]
    Merge {
        /// The sandbox.
        name: String,
        /// Print the outcome as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy files or directories between the host and a sandbox (`NAME:/path` names the sandbox side).
    #[command(
        after_help = "Examples:\n  sbx cp ./notes.md my-box:/tmp/notes.md\n  sbx cp my-box:/home/agent/out ./out\n  sbx cp ./fixtures my-box:/work/\n\nLike `cp -r`: an existing destination directory receives the source by name (an existing copy there is\nmerged into). The sandbox side is read and written by the agent inside the sandbox, as the sandbox's default\nuser, so copied-in files belong to it and symlinks there resolve inside the sandbox, never reaching host\nfiles. Symlinks copied out of a sandbox are skipped, with a warning."
    )]
    Cp {
        /// Source: a host path or NAME:/path.
        src: String,
        /// Destination: a host path or NAME:/path (an existing directory receives the source by name).
        dst: String,
    },
    /// Reattach this terminal to the agent session of a sandbox (detach again with Ctrl-]).
    #[command(after_help = "Examples:\n  sbx attach my-box")]
    Attach {
        /// The sandbox.
        name: String,
    },
    /// Internal: supervise a running sandbox (started by `sbx start`).
    #[command(name = "__supervise", hide = true)]
    Supervise {
        /// The sandbox.
        name: String,
    },
    /// Manage and inspect the network policy.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Store API keys on the host; sandboxes only ever see placeholders.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Build, list and remove sandbox templates.
    #[command(subcommand)]
    Template(crate::commands::template::TemplateCommand),
    /// Print a shell completion script.
    #[command(
        after_help = "Examples:\n  sbx completion bash > ~/.local/share/bash-completion/completions/sbx\n  sbx completion zsh > ~/.zfunc/_sbx"
    )]
    Completion {
        /// The shell to generate for.
        shell: clap_complete::Shell,
    },
}

/// What a policy rule is about. Only network rules are edited from the command line today.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum RuleKind {
    /// Outbound network requests.
    Network,
}

/// Arguments of `sbx policy allow|deny network`.
#[derive(Debug, clap::Args)]
pub(crate) struct RuleArgs {
    /// What the rule is about.
    pub(crate) kind: RuleKind,
    /// Hosts, comma-separated: `api.example.com`, `*.npmjs.org`, `**.example.com`, `10.0.0.0/8:5432`,
    /// `localhost:11434`.
    #[arg(value_delimiter = ',', required = true)]
    pub(crate) hosts: Vec<String>,
    /// Put the rule in this sandbox's layer instead of the global (user) layer.
    #[arg(long)]
    pub(crate) sandbox: Option<String>,
    /// Only these HTTP methods, comma-separated (default: any).
    #[arg(long = "method", value_delimiter = ',')]
    pub(crate) methods: Vec<String>,
    /// Only URL paths matching this glob (`/repos/acme/**`; default: any); repeatable.
    #[arg(long = "path")]
    pub(crate) paths: Vec<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum PolicyCommand {
    /// Allow requests to hosts (global unless --sandbox).
    #[command(
        after_help = "Examples:\n  sbx policy allow network api.example.com\n  sbx policy allow network '*.npmjs.org,registry.yarnpkg.com'\n  sbx policy allow network api.github.com --method GET,HEAD --path '/repos/acme/**'\n  sbx policy allow network localhost:11434 --sandbox my-box"
    )]
    Allow(RuleArgs),
    /// Deny requests to hosts; a deny beats every allow.
    #[command(
        after_help = "Examples:\n  sbx policy deny network '**.pastebin.com'\n  sbx policy deny network api.github.com --method DELETE"
    )]
    Deny(RuleArgs),
    /// List every layer and its rules, highest authority first.
    #[command(after_help = "Examples:\n  sbx policy ls\n  sbx policy ls --json")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a rule by id (ids are shown by `sbx policy ls`).
    #[command(after_help = "Examples:\n  sbx policy rm network --id r1a2b3c4")]
    Rm {
        /// What the rule is about.
        kind: RuleKind,
        /// The rule's id.
        #[arg(long)]
        id: String,
    },
    /// Show how the policy decides a URL; exit 0 allowed, 3 blocked.
    #[command(
        after_help = "Examples:\n  sbx policy check network https://api.anthropic.com/v1/messages\n  sbx policy check network --method POST https://api.github.com/repos/acme/x/issues\n  sbx policy check network tcp://db.internal:5432 --sandbox my-box"
    )]
    Check {
        /// What the request is.
        kind: RuleKind,
        /// The URL (http://, https:// or tcp://HOST:PORT).
        url: String,
        /// Check with this sandbox's layer too.
        #[arg(long)]
        sandbox: Option<String>,
        /// The HTTP method.
        #[arg(long, default_value = "GET")]
        method: String,
    },
    /// Remove every rule you added (global and per sandbox) and return to the balanced preset.
    #[command(after_help = "Examples:\n  sbx policy reset\n  sbx policy reset --force")]
    Reset {
        /// Do not ask for confirmation.
        #[arg(long)]
        force: bool,
    },
    /// Show what the proxy allowed and blocked: a Blocked and an Allowed table, or every event with --follow.
    #[command(
        after_help = "Examples:\n  sbx policy log\n  sbx policy log my-box --limit 20\n  sbx policy log --json\n  sbx policy log --follow"
    )]
    Log {
        /// Only this sandbox.
        sandbox: Option<String>,
        /// Print JSON (with --follow: one event per line).
        #[arg(long)]
        json: bool,
        /// At most this many rows per table.
        #[arg(long)]
        limit: Option<usize>,
        /// Keep printing new decisions as they happen (Ctrl-C to stop).
        #[arg(long)]
        follow: bool,
    },
    /// Set the baseline preset of the global layer: open, balanced or locked-down.
    #[command(after_help = "Examples:\n  sbx policy set-default locked-down")]
    SetDefault {
        /// open (everything allowed), balanced (deny by default plus a baseline allowlist), locked-down (everything denied).
        preset: String,
    },
}

/// Parses `K=V` (the key must be a valid environment variable name).
fn parse_env(s: &str) -> Result<(String, String), String> {
    let (k, v) = s
        .split_once('=')
        .ok_or_else(|| format!("`{s}` is not KEY=VALUE"))?;
    let valid = !k.is_empty()
        && !k.starts_with(|c: char| c.is_ascii_digit())
        && k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid {
        return Err(format!(
            "`{k}` is not a valid variable name (letters, digits and `_`, not starting with a digit)"
        ));
    }
    Ok((k.to_owned(), v.to_owned()))
}

/// Arguments of `sbx create`.
#[derive(Debug, clap::Args)]
pub(crate) struct CreateArgs {
    /// Name of the sandbox (default: AGENT-<workspace directory>).
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Isolation backend.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) isolation: crate::backend::IsolationChoice,
    /// Set an environment variable for everything run in the sandbox (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,
    /// Print only the sandbox name.
    #[arg(short, long)]
    pub(crate) quiet: bool,
    #[command(flatten)]
    pub(crate) setup: SetupArgs,
    /// The agent (`sbx agents` lists them).
    pub(crate) agent: String,
    /// Host directories shared at the same path inside; append `:ro` for read-only.
    pub(crate) paths: Vec<String>,
}

/// How a new sandbox is set up (git mode, template, resources); shared by `sbx create` and `sbx run`.
#[derive(Debug, clap::Args)]
pub(crate) struct SetupArgs {
    /// Work on a branch of the workspace's git repository in its own worktree (`auto`: `sbx/<name>`).
    #[arg(long, value_name = "NAME|auto", conflicts_with = "clone")]
    pub(crate) branch: Option<String>,
    /// Work in a private clone of the workspace's git repository (the host fetches it as remote `sandbox-<name>`).
    #[arg(long)]
    pub(crate) clone: bool,
    /// Template of a new sandbox (`sbx template ls`; default: `default`, built on first use).
    #[arg(short = 't', long = "template")]
    pub(crate) template: Option<String>,
    /// vCPUs of a new sandbox (microVM), or its CPU quota in CPUs (namespaces, cgroup `cpu.max`).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub(crate) cpus: Option<u8>,
    /// Memory of a new sandbox: `2G`, `512M` or MiB (microVM RAM; namespaces: cgroup `memory.max`).
    #[arg(short = 'm', long = "memory", value_parser = crate::limits::parse_memory_mib)]
    pub(crate) memory: Option<u64>,
}

impl SetupArgs {
    /// The git mode asked for, if any.
    pub(crate) fn git(&self) -> Option<crate::gitmode::Request> {
        crate::gitmode::Request::from_flags(self.branch.as_deref(), self.clone)
    }

    /// The template and resources asked for.
    pub(crate) fn resources(&self) -> crate::limits::Resources {
        crate::limits::Resources {
            template: self.template.clone(),
            cpus: self.cpus,
            memory_mib: self.memory,
        }
    }
}

/// Arguments of `sbx run`.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// Name of the sandbox (default: AGENT-<workspace directory>); an existing sandbox of that name is reused.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// Isolation backend (for a new sandbox).
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) isolation: crate::backend::IsolationChoice,
    /// Set an environment variable for everything run in a new sandbox (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,
    #[command(flatten)]
    pub(crate) setup: SetupArgs,
    /// Start the agent and return at once; `sbx attach NAME` connects to it later.
    #[arg(short, long)]
    pub(crate) detach: bool,
    /// The agent (`sbx agents` lists them).
    pub(crate) agent: String,
    /// Host directories shared at the same path inside; append `:ro` for read-only.
    pub(crate) paths: Vec<String>,
    /// Extra arguments for the agent, after `--`.
    #[arg(last = true)]
    pub(crate) agent_args: Vec<String>,
}

/// Arguments of `sbx exec`.
#[derive(Debug, clap::Args)]
pub(crate) struct ExecArgs {
    /// Forward stdin to the command.
    #[arg(short, long)]
    pub(crate) interactive: bool,
    /// Run the command on a pseudo-terminal.
    #[arg(short, long)]
    pub(crate) tty: bool,
    /// Set an environment variable (repeatable).
    #[arg(short = 'e', long = "env", value_parser = parse_env)]
    pub(crate) env: Vec<(String, String)>,
    /// Working directory inside the sandbox (default: the sandbox's workspace; its worktree in branch mode).
    #[arg(short, long)]
    pub(crate) workdir: Option<String>,
    /// User (name or uid) to run as.
    #[arg(short, long)]
    pub(crate) user: Option<String>,
    /// The sandbox.
    pub(crate) name: String,
    /// The command and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub(crate) command: Vec<String>,
}

/// Where a secret applies: every sandbox (`-g`, the default) or one sandbox.
#[derive(Debug, clap::Args)]
pub(crate) struct SecretScope {
    /// For every sandbox (the default).
    #[arg(short = 'g', long = "global", conflicts_with = "sandbox")]
    pub(crate) global: bool,
    /// Only for this sandbox; overrides the global secret of the same service.
    #[arg(long)]
    pub(crate) sandbox: Option<String>,
}

#[derive(Debug, Subcommand)]
pub(crate) enum SecretCommand {
    /// Store a provider's secret; the value is read from stdin (hidden in a terminal) unless -t is given.
    #[command(
        after_help = "Examples:\n  sbx secret set anthropic              # prompts, input hidden\n  pass show openai | sbx secret set openai\n  sbx secret set --sandbox my-box github < token.txt"
    )]
    Set {
        #[command(flatten)]
        scope: SecretScope,
        /// The provider (see `sbx secret ls` errors for the list), or a custom secret's name.
        service: String,
        /// The value on the command line (it lands in shell history; prefer stdin).
        #[arg(short = 't', long = "token")]
        token: Option<String>,
    },
    /// Store a custom secret bound to hosts: the sandbox's env var NAME gets a placeholder, which the proxy
    /// replaces in headers (and with --body, bodies) of requests to those hosts only.
    #[command(
        after_help = "Examples:\n  sbx secret set-custom --host api.internal.example --env INTERNAL_TOKEN < token.txt\n  sbx secret set-custom --host a.example,b.example --env HOOK_KEY --body"
    )]
    SetCustom {
        /// Hosts the secret is bound to, comma-separated (`api.example.com`, `*.example.com`).
        #[arg(long = "host", value_delimiter = ',', required = true)]
        hosts: Vec<String>,
        /// The environment variable the sandbox reads.
        #[arg(long)]
        env: String,
        /// The secret's name (default: the env var in lower case, `_` as `-`).
        #[arg(long)]
        name: Option<String>,
        /// Also replace the placeholder in request bodies.
        #[arg(long)]
        body: bool,
        #[command(flatten)]
        scope: SecretScope,
        /// The value on the command line (it lands in shell history; prefer stdin).
        #[arg(short = 't', long = "token")]
        token: Option<String>,
    },
    /// List stored secrets: service, scope and backend. Values are never printed.
    #[command(after_help = "Examples:\n  sbx secret ls\n  sbx secret ls --json")]
    Ls {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Remove a secret.
    #[command(
        after_help = "Examples:\n  sbx secret rm anthropic\n  sbx secret rm --sandbox my-box github"
    )]
    Rm {
        #[command(flatten)]
        scope: SecretScope,
        /// The service.
        service: String,
    },
    /// Store every recognised API key of this shell's environment (ANTHROPIC_API_KEY, GH_TOKEN, ...) as a global secret.
    #[command(after_help = "Examples:\n  sbx secret import")]
    Import,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_pairs_are_validated() {
        assert_eq!(parse_env("A_1=x=y").unwrap(), ("A_1".into(), "x=y".into()));
        assert_eq!(parse_env("E=").unwrap(), ("E".into(), String::new()));
        assert!(parse_env("novalue").unwrap_err().contains("KEY=VALUE"));
        assert!(parse_env("1A=x").unwrap_err().contains("`1A`"));
        assert!(parse_env("A-B=x").is_err());
    }

    #[test]
    fn exec_keeps_command_flags_for_the_command() {
        let cli = Cli::try_parse_from(["sbx", "exec", "-i", "box", "ls", "-la"]).unwrap();
        let Some(Command::Exec(args)) = cli.command else {
            panic!("not exec")
        };
        assert!(args.interactive);
        assert_eq!(args.command, ["ls", "-la"]);
    }
}
