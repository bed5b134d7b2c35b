//! Command-line front end to sbx-worktree.
//!
//! ```text
//! worktree --repo DIR create SANDBOX [--branch B] [--clone]   prints the sandbox's path
//! worktree --repo DIR list [--json]
//! worktree --repo DIR diff SANDBOX [--stat]
//! worktree --repo DIR merge SANDBOX
//! worktree --repo DIR remove SANDBOX [--force]
//! ```
//! Errors go to stderr with exit status 1 (2 for usage errors).

use std::path::PathBuf;
use std::process::ExitCode;

use sbx_worktree::{Host, MergeOutcome};

const USAGE: &str = "usage: worktree --repo DIR <command>
  create SANDBOX [--branch B] [--clone]
  list [--json]
  diff SANDBOX [--stat]
  merge SANDBOX
  remove SANDBOX [--force]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Usage(msg)) => {
            eprintln!("error: {msg}\n{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Op(err)) => {
            eprintln!("error: {err}");
            let mut source = err.source();
            while let Some(cause) = source {
                eprintln!("  caused by: {cause}");
                source = cause.source();
            }
            ExitCode::from(1)
        }
    }
}

enum Failure {
    Usage(String),
    Op(Box<dyn std::error::Error>),
}

impl<E: std::error::Error + 'static> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure::Op(Box::new(e))
    }
}

fn run(args: &[String]) -> Result<(), Failure> {
    let mut repo = None;
    let mut flags = Vec::new();
    let mut positional = Vec::new();
    let mut branch = None;
    let mut iter = args.iter();
    while let Some(arg) = iter.next() {
        match arg.as_str() {
            "--repo" => {
                repo = Some(PathBuf::from(
                    iter.next()
                        .ok_or_else(|| usage("--repo needs a directory"))?,
                ))
            }
            "--branch" => {
                branch = Some(
                    iter.next()
                        .ok_or_else(|| usage("--branch needs a name"))?
                        .clone(),
                )
            }
            "--json" | "--stat" | "--force" | "--clone" => flags.push(arg.as_str()),
            "-h" | "--help" => {
                println!("{USAGE}");
                return Ok(());
            }
            other if other.starts_with('-') => {
                return Err(usage(&format!("unknown option {other}")));
            }
            other => positional.push(other),
        }
    }
    let repo = repo.ok_or_else(|| usage("--repo DIR is required"))?;
    let host = Host::open(&repo)?;
    let sandbox = || {
        positional
            .get(1)
            .copied()
            .ok_or_else(|| usage("missing SANDBOX"))
    };
    match positional.first().copied() {
        Some("create") => {
            let created = if flags.contains(&"--clone") {
                host.create_clone(sandbox()?)?
            } else {
                host.create(sandbox()?, branch.as_deref())?
            };
            println!("{}", created.path.display());
        }
        Some("list") => list(&host, flags.contains(&"--json"))?,
        Some("diff") => {
            let diff = host.diff(sandbox()?)?;
            if flags.contains(&"--stat") {
                print!("{}", diff.summary);
            } else {
                print!("{}", diff.patch);
            }
        }
        Some("merge") => match host.merge(sandbox()?)? {
            MergeOutcome::UpToDate { target } => println!("{target} is up to date"),
            MergeOutcome::FastForward { target, from, to } => {
                println!("{target}: fast-forward {from}..{to}")
            }
            MergeOutcome::MergeCommit { target, commit } => {
                println!("{target}: merge commit {commit}")
            }
            other => println!("{other:?}"),
        },
        Some("remove") => {
            let removed = host.remove(sandbox()?, flags.contains(&"--force"))?;
            match removed.branch {
                Some(branch) => println!("removed sandbox {} and branch {branch}", removed.sandbox),
                None => println!("removed sandbox {}", removed.sandbox),
            }
        }
        Some(other) => return Err(usage(&format!("unknown command {other}"))),
        None => return Err(usage("missing command")),
    }
    Ok(())
}

fn list(host: &Host, json: bool) -> Result<(), Failure> {
    let sandboxes = host.list()?;
    if json {
        println!("{}", serde_json::to_string_pretty(&sandboxes)?);
        return Ok(());
    }
    println!(
        "{:<16} {:<24} {:<10} {:>5} {:>6} {:<7} PATH",
        "SANDBOX", "BRANCH", "BASE", "AHEAD", "BEHIND", "STATE"
    );
    for s in sandboxes {
        let state = match (s.state, s.dirty) {
            (sbx_worktree::State::Creating, _) => "creating",
            (_, None) => "missing",
            (_, Some(true)) => "dirty",
            (_, Some(false)) => "clean",
        };
        println!(
            "{:<16} {:<24} {:<10} {:>5} {:>6} {:<7} {}",
            s.sandbox,
            s.branch.unwrap_or_default(),
            s.base.get(..10).unwrap_or(&s.base),
            s.ahead,
            s.behind,
            state,
            s.path.display()
        );
    }
    Ok(())
}

fn usage(msg: &str) -> Failure {
    Failure::Usage(msg.to_owned())
}
