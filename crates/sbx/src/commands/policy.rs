//! `sbx policy ...`: edit the user and sandbox layers, list every layer, check a URL.

use std::io::{BufRead, IsTerminal, Write};

use anyhow::{Context, Result, bail};
use sbx_audit::{Filter, Follow, FollowFrom, Reader};
use sbx_policy::batch::{RequestLine, format_decision};
use sbx_policy::{LayerLevel, Preset};

use crate::cli::{PolicyCommand, RuleArgs, exit};
use crate::home::Home;
use crate::names::validate_sandbox;
use crate::output;
use crate::policy_files::{self, LayerEditor, ListedLayer};

pub(crate) fn run(cmd: PolicyCommand) -> Result<i32> {
    let home = Home::from_env()?;
    let edits = matches!(
        cmd,
        PolicyCommand::Allow(_)
            | PolicyCommand::Deny(_)
            | PolicyCommand::Rm { .. }
            | PolicyCommand::Reset { .. }
            | PolicyCommand::SetDefault { .. }
    );
    let code = match cmd {
        PolicyCommand::Allow(args) => add_rule(&home, true, args),
        PolicyCommand::Deny(args) => add_rule(&home, false, args),
        PolicyCommand::Ls { json } => list(&home, json),
        PolicyCommand::Rm { kind: _, id } => remove(&home, &id),
        PolicyCommand::Check {
            kind: _,
            url,
            sandbox,
            method,
        } => check(&home, &url, sandbox.as_deref(), &method),
        PolicyCommand::Reset { force } => reset(&home, force),
        PolicyCommand::SetDefault { preset } => set_default(&home, &preset),
        PolicyCommand::Log {
            sandbox,
            json,
            limit,
            follow,
        } => log(&home, sandbox.as_deref(), json, limit, follow),
    }?;
    if edits && code == 0 {
        reload_running(&home);
    }
    Ok(code)
}

/// Tells every running sandbox's proxy to re-read the policy now, so an edit applies to the very next request.
/// (Supervisors also notice changed files by themselves; this only closes the gap.)
fn reload_running(home: &Home) {
    let Ok(names) = crate::sandboxes::list_names(home) else {
        return;
    };
    for name in names {
        let Ok(dir) = crate::sandboxes::SandboxDir::new(home, &name) else {
            continue;
        };
        if !dir.control_socket().exists() {
            continue;
        }
        if let Err(e) = crate::supervisor::reload_policy(&dir) {
            output::warning(&format!(
                "sandbox {name} did not take the new policy yet: {e:#}"
            ));
        }
    }
}

fn editor_for(home: &Home, sandbox: Option<&str>) -> Result<LayerEditor> {
    match sandbox {
        Some(name) => {
            validate_sandbox(name)?;
            LayerEditor::open(
                &policy_files::sandbox_file(home, name),
                LayerLevel::Sandbox,
                &format!("sandbox {name}"),
            )
        }
        None => LayerEditor::open(&policy_files::user_file(home), LayerLevel::User, "user"),
    }
}

fn add_rule(home: &Home, allow: bool, args: RuleArgs) -> Result<i32> {
    let hosts: Vec<String> = args
        .hosts
        .iter()
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() {
        bail!("no host given; e.g. `sbx policy allow network api.example.com`");
    }
    let methods: Vec<String> = args
        .methods
        .iter()
        .map(|m| m.trim().to_ascii_uppercase())
        .collect();
    let mut editor = editor_for(home, args.sandbox.as_deref())?;
    let id = editor.add_network_rule(allow, &hosts, &methods, &args.paths);
    editor.save()?;
    let scope = args
        .sandbox
        .map_or_else(|| "all sandboxes".to_string(), |s| format!("sandbox {s}"));
    let verb = if allow { "allowed" } else { "denied" };
    println!(
        "{verb} {} for {scope} (rule {id}; remove with `sbx policy rm network --id {id}`)",
        hosts.join(", ")
    );
    Ok(0)
}

fn all_layers(home: &Home) -> Result<Vec<ListedLayer>> {
    let mut layers = Vec::new();
    for file in policy_files::layer_files(home, None) {
        layers.push(policy_files::list_layer(&file, None)?);
    }
    for name in policy_files::sandboxes_with_layers(home)? {
        for file in policy_files::layer_files(home, Some(&name)) {
            if file.level == LayerLevel::Sandbox {
                layers.push(policy_files::list_layer(&file, Some(&name))?);
            }
        }
    }
    Ok(layers)
}

fn list(home: &Home, json: bool) -> Result<i32> {
    let layers = all_layers(home)?;
    let mut out = std::io::stdout().lock();
    if json {
        serde_json::to_writer_pretty(&mut out, &layers)?;
        writeln!(out)?;
        return Ok(0);
    }
    let mut rows = Vec::new();
    for layer in &layers {
        let level = match &layer.sandbox {
            Some(s) => format!("sandbox:{s}"),
            None => layer.level.clone(),
        };
        let mut head = layer
            .preset
            .as_ref()
            .map(|p| format!("preset {p}"))
            .unwrap_or_default();
        if layer.enforced {
            head.push_str(if head.is_empty() {
                "enforced"
            } else {
                ", enforced"
            });
        }
        if !head.is_empty() {
            rows.push(vec![
                level.clone(),
                layer.name.clone(),
                "-".into(),
                head,
                String::new(),
                String::new(),
                String::new(),
            ]);
        }
        for rule in &layer.network {
            let or_any = |v: &[String]| {
                if v.is_empty() {
                    "*".to_string()
                } else {
                    v.join(",")
                }
            };
            rows.push(vec![
                level.clone(),
                layer.name.clone(),
                rule.id.clone().unwrap_or_else(|| "-".into()),
                rule.action.clone(),
                rule.hosts.join(","),
                or_any(&rule.methods),
                or_any(&rule.paths),
            ]);
        }
    }
    output::table(
        &mut out,
        &["LAYER", "NAME", "ID", "ACTION", "HOSTS", "METHODS", "PATHS"],
        &rows,
    )?;
    Ok(0)
}

fn remove(home: &Home, id: &str) -> Result<i32> {
    let mut targets = vec![None];
    targets.extend(
        policy_files::sandboxes_with_layers(home)?
            .into_iter()
            .map(Some),
    );
    for sandbox in targets {
        let mut editor = editor_for(home, sandbox.as_deref())?;
        if editor.remove_network_rule(id) {
            editor.save()?;
            println!("removed rule {id}");
            return Ok(0);
        }
    }
    bail!(
        "no rule with id `{id}` in the user or sandbox layers (company/org/team layers are read-only); see `sbx policy ls`"
    )
}

fn check(home: &Home, url: &str, sandbox: Option<&str>, method: &str) -> Result<i32> {
    if let Some(name) = sandbox {
        validate_sandbox(name)?;
    }
    let policy = policy_files::load_policy(home, sandbox)?;
    let line = RequestLine::parse(&format!("{method} {url}"))
        .map_err(|e| anyhow::anyhow!("bad URL: {e}"))?;
    let decision = policy.check_network(&line.request());
    println!("{}", format_decision(&decision, &line.host, line.port));
    Ok(if decision.allowed { 0 } else { exit::BLOCKED })
}

fn confirm(question: &str) -> Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("{question} needs confirmation: run in a terminal, or pass --force");
    }
    eprint!("{question} [y/N] ");
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}

fn reset(home: &Home, force: bool) -> Result<i32> {
    if !force && !confirm("Remove every rule you added and return to the balanced preset?")? {
        println!("nothing changed");
        return Ok(exit::ERROR);
    }
    for name in policy_files::sandboxes_with_layers(home)? {
        let path = policy_files::sandbox_file(home, &name);
        let _lock = crate::fsutil::FileLock::acquire(&path)?;
        std::fs::remove_file(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    let user = policy_files::user_file(home);
    let _lock = crate::fsutil::FileLock::acquire(&user)?;
    match std::fs::remove_file(&user) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("cannot remove {}", user.display())),
    }
    println!("policy reset: balanced preset, no rules of your own");
    Ok(0)
}

fn set_default(home: &Home, preset: &str) -> Result<i32> {
    let preset: Preset = preset.parse().map_err(|e: String| anyhow::anyhow!("{e}"))?;
    let mut editor = editor_for(home, None)?;
    editor.set_preset(preset);
    editor.save()?;
    println!("default policy: {}", preset.as_str());
    if preset == Preset::Open {
        output::warning(
            "the open preset allows every host; secrets are still only injected for their bound hosts",
        );
    }
    Ok(0)
}

fn log_filter(sandbox: Option<&str>) -> Result<Filter> {
    let filter = Filter::all();
    Ok(match sandbox {
        Some(name) => {
            validate_sandbox(name)?;
            filter.sandbox(name)
        }
        None => filter,
    })
}

fn log(
    home: &Home,
    sandbox: Option<&str>,
    json: bool,
    limit: Option<usize>,
    follow: bool,
) -> Result<i32> {
    let dir = home.audit_dir();
    let filter = log_filter(sandbox)?;
    if follow {
        return follow_log(&dir, filter, json);
    }
    if !dir.exists() {
        println!("no audit events yet ({} does not exist)", dir.display());
        return Ok(0);
    }
    let (mut view, issues) = Reader::open(&dir)?.aggregate(&filter);
    for issue in issues {
        output::warning(&issue.to_string());
    }
    if let Some(n) = limit {
        view.blocked.truncate(n);
        view.allowed.truncate(n);
    }
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", view.to_json())?;
    } else {
        write!(out, "{view}")?;
    }
    Ok(0)
}

fn follow_log(dir: &std::path::Path, filter: Filter, json: bool) -> Result<i32> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut follow = Follow::new(dir, filter, FollowFrom::End)?;
    let mut out = std::io::stdout().lock();
    loop {
        match follow.next_timeout(std::time::Duration::from_secs(3600))? {
            // Only decisions: lifecycle and exec events are in the audit trail, not in the policy log.
            Some(Ok(event)) if event.decision.is_none() => continue,
            Some(Ok(event)) if json => writeln!(out, "{}", serde_json::to_string(&event)?)?,
            Some(Ok(event)) => writeln!(out, "{}", event_line(&event))?,
            Some(Err(issue)) => output::warning(&issue.to_string()),
            None => continue,
        }
        out.flush()?;
    }
}

/// One event as a human-readable line: time, sandbox, decision, what, and why.
fn event_line(e: &sbx_audit::Event) -> String {
    let decision = e
        .decision
        .map_or_else(|| "-".to_string(), |d| d.to_string());
    let why = [e.rule.as_deref(), e.layer.as_deref(), e.reason.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let action = serde_json::to_string(&e.action).unwrap_or_default();
    format!(
        "{} {} {} {} {action} {why}",
        e.timestamp,
        e.sandbox.as_deref().unwrap_or("-"),
        e.category,
        decision
    )
}
