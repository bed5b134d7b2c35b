//! `sbx` with no arguments: a terminal dashboard of the sandboxes and of what the egress proxy allowed and blocked.
//!
//! The dashboard reads the same state `sbx ls` and `sbx policy log` read (sandbox records, the audit log through
//! sbx-audit's reader) once a second, and acts by running the same commands a user would type (`sbx start`,
//! `sbx policy allow network HOST`, ...), so its effects are exactly theirs. Without a terminal, `sbx` prints help.

mod state;
mod ui;

use std::io::IsTerminal;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::CommandFactory;
use ratatui::crossterm::event::{self, Event, KeyEventKind};

use crate::commands::sandbox;
use crate::home::Home;
use crate::sandboxes::{self, SandboxDir, Status};
use state::{Action, App, NetRow, SandboxRow};

/// How often the data is re-read.
const REFRESH: Duration = Duration::from_secs(1);

/// `sbx` alone: the dashboard in a terminal, otherwise the help.
pub(crate) fn run_or_help() -> Result<i32> {
    if std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        return run(&Home::from_env()?);
    }
    crate::cli::Cli::command()
        .print_help()
        .context("cannot print the help")?;
    Ok(0)
}

fn run(home: &Home) -> Result<i32> {
    let colour = std::env::var_os(crate::env_vars::NO_COLOR).is_none();
    let mut app = App::new();
    app.message = "press n to create a sandbox, q to quit".into();
    let mut terminal = ratatui::init();
    let result = event_loop(home, &mut app, &mut terminal, colour);
    ratatui::restore();
    result
}

fn event_loop(
    home: &Home,
    app: &mut App,
    terminal: &mut ratatui::DefaultTerminal,
    colour: bool,
) -> Result<i32> {
    let mut last = Instant::now() - REFRESH;
    loop {
        if last.elapsed() >= REFRESH {
            let (sandboxes, network) = load(home);
            app.refresh(sandboxes, network);
            last = Instant::now();
        }
        terminal.draw(|f| ui::render(f, app, colour))?;
        if !event::poll(Duration::from_millis(200))? {
            continue;
        }
        let Event::Key(key) = event::read()? else {
            continue;
        };
        if key.kind != KeyEventKind::Press {
            continue;
        }
        let Some(action) = app.on_key(key) else {
            continue;
        };
        if action == Action::Quit {
            return Ok(0);
        }
        if let Action::Attach(name) = &action {
            // Hand the terminal to `sbx attach` and take it back afterwards.
            ratatui::restore();
            let status = Command::new(std::env::current_exe()?)
                .args(["attach", name])
                .status();
            *terminal = ratatui::init();
            app.message = match status {
                Ok(s) if s.success() => format!("back from {name}"),
                Ok(_) | Err(_) => {
                    format!("cannot attach to {name}; is an agent running there (`sbx run`)?")
                }
            };
        } else {
            app.message = format!("{} …", describe(&action));
            terminal.draw(|f| ui::render(f, app, colour))?;
            app.message = perform(&action);
        }
        last = Instant::now() - REFRESH;
    }
}

fn describe(action: &Action) -> String {
    command_line(action).join(" ")
}

/// The `sbx` command line an action runs.
fn command_line(action: &Action) -> Vec<String> {
    let mut args: Vec<String> = match action {
        Action::Create(rest) => {
            let mut a = vec!["create".to_owned()];
            a.extend(rest.iter().cloned());
            return std::iter::once("sbx".to_owned()).chain(a).collect();
        }
        Action::Start(n) => vec!["start".into(), n.clone()],
        Action::Stop(n) => vec!["stop".into(), n.clone()],
        Action::Remove(n) => vec!["rm".into(), "-f".into(), n.clone()],
        Action::Attach(n) => vec!["attach".into(), n.clone()],
        Action::Policy { allow, host } => vec![
            "policy".into(),
            if *allow { "allow" } else { "deny" }.into(),
            "network".into(),
            host.clone(),
        ],
        Action::Quit => Vec::new(),
    };
    args.insert(0, "sbx".into());
    args
}

/// Runs the action's `sbx` command with its output captured; returns the line to show.
fn perform(action: &Action) -> String {
    let argv = command_line(action);
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => return format!("cannot find the sbx executable: {e}"),
    };
    let out = Command::new(exe)
        .args(&argv[1..])
        .env(crate::env_vars::NO_COLOR, "1")
        .stdin(Stdio::null())
        .output();
    match out {
        Ok(o) if o.status.success() => {
            let text = String::from_utf8_lossy(&o.stdout);
            format!(
                "done: {} {}",
                argv.join(" "),
                text.lines().next_back().unwrap_or("")
            )
        }
        Ok(o) => {
            let err = String::from_utf8_lossy(&o.stderr);
            let last = err
                .lines()
                .rev()
                .find(|l| !l.starts_with("warning"))
                .unwrap_or("failed");
            format!("{}: {last}", argv.join(" "))
        }
        Err(e) => format!("cannot run {}: {e}", argv.join(" ")),
    }
}

/// Reads the sandboxes and the network view (problems become empty panels, never a crash).
fn load(home: &Home) -> (Vec<SandboxRow>, Vec<NetRow>) {
    let mut rows = Vec::new();
    for name in sandboxes::list_names(home).unwrap_or_default() {
        let Ok(dir) = SandboxDir::new(home, &name) else {
            continue;
        };
        let Ok(record) = dir.load() else { continue };
        let status = sandbox::status(&dir, &record);
        rows.push(SandboxRow {
            agent: record.agent.clone(),
            status: status.as_str().into(),
            isolation: record.isolation.as_str().into(),
            workspace: crate::gitmode::visible_workspaces(&record.workspaces, record.git.as_ref())
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
            branch: record
                .git
                .as_ref()
                .map_or_else(|| "-".into(), |g| g.branch.clone()),
            uptime: match (status, record.started_at) {
                (Status::Running, Some(t)) => {
                    sandbox::format_uptime(sandboxes::now().saturating_sub(t))
                }
                _ => "-".into(),
            },
            name,
        });
    }
    (rows, network(home))
}

fn network(home: &Home) -> Vec<NetRow> {
    let dir = home.audit_dir();
    let Ok(reader) = sbx_audit::Reader::open(&dir) else {
        return Vec::new();
    };
    let (view, _issues) = reader.aggregate(&sbx_audit::Filter::all());
    let row = |allowed: bool, r: &sbx_audit::PolicyLogRow| NetRow {
        allowed,
        sandbox: r.sandbox.clone(),
        host: r.host.clone(),
        count: r.count,
        why: if r.rule.is_empty() {
            r.reason.clone()
        } else {
            r.rule.clone()
        },
    };
    view.blocked
        .iter()
        .map(|r| row(false, r))
        .chain(view.allowed.iter().map(|r| row(true, r)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_run_the_commands_a_user_would_type() {
        assert_eq!(
            command_line(&Action::Policy {
                allow: false,
                host: "evil.example".into()
            }),
            ["sbx", "policy", "deny", "network", "evil.example"]
        );
        assert_eq!(
            command_line(&Action::Remove("a".into())),
            ["sbx", "rm", "-f", "a"]
        );
        assert_eq!(
            command_line(&Action::Create(vec!["shell".into(), "/w".into()])),
            ["sbx", "create", "shell", "/w"]
        );
    }

    #[test]
    fn the_network_panel_reads_the_audit_log() {
        use sbx_audit::{AuditLog, Decision, Event, Proxy, WriterConfig};
        let dir = tempfile::tempdir().unwrap();
        let home = Home {
            config: dir.path().join("c"),
            state: dir.path().join("s"),
        };
        assert!(
            network(&home).is_empty(),
            "no audit log yet: an empty panel"
        );
        let (handle, guard) = AuditLog::open(home.audit_dir(), WriterConfig::default()).unwrap();
        for _ in 0..2 {
            handle
                .record(Event::network(
                    "box",
                    "evil.example",
                    443,
                    Proxy::Forward,
                    Decision::Deny,
                ))
                .unwrap();
        }
        handle
            .record(Event::network(
                "box",
                "api.anthropic.com",
                443,
                Proxy::Forward,
                Decision::Allow,
            ))
            .unwrap();
        guard.close().unwrap();
        let rows = network(&home);
        assert_eq!(rows.len(), 2, "{rows:?}");
        assert!(
            !rows[0].allowed && rows[0].host == "evil.example:443" && rows[0].count == 2,
            "{rows:?}"
        );
        assert!(
            rows[1].allowed && rows[1].host == "api.anthropic.com:443" && rows[1].sandbox == "box"
        );
    }
}
