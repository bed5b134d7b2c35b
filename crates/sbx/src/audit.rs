//! The audit events sbx records itself (the proxy records the network ones): lifecycle, exec and mount.
//!
//! A running sandbox's supervisor owns a writer on `$STATE/audit` (the proxy's); commands that concern a running
//! sandbox hand their event to it over the control socket, so a busy `sbx exec` loop does not open a new audit
//! stream per command. Events about a sandbox that is not running (created, removed) are written by the command
//! itself, through a short-lived writer of its own: sbx-audit gives each writer its own stream, so concurrent
//! writers never interleave.

use anyhow::{Context, Result};
use sbx_audit::{Action, Event, MountMode, WriterConfig};

use crate::home::Home;
use crate::output;
use crate::sandboxes::{Record, SandboxDir};

/// Writes `event` to the audit trail with a writer of this process, and waits until it is on disk.
pub(crate) fn record(home: &Home, event: Event) -> Result<()> {
    let dir = home.audit_dir();
    let (handle, guard) = sbx_audit::AuditLog::open(&dir, WriterConfig::default())
        .with_context(|| format!("cannot open the audit log in {}", dir.display()))?;
    handle
        .record(event)
        .context("cannot record an audit event")?;
    guard.close().context("cannot close the audit log")?;
    Ok(())
}

/// [`record`], with a warning instead of an error: an audit hiccup must not fail the command it describes.
pub(crate) fn record_or_warn(home: &Home, event: Event) {
    if let Err(e) = record(home, event) {
        output::warning(&format!("{e:#}"));
    }
}

/// `sandbox_created`, `sandbox_removed`, ... for `record`'s sandbox.
pub(crate) fn lifecycle(record: &Record, action: Action) -> Event {
    Event::lifecycle(&record.name, action).agent(&record.agent)
}

/// A command run in `record`'s sandbox: through the supervisor when it answers, otherwise written here.
pub(crate) fn exec(home: &Home, dir: &SandboxDir, record: &Record, argv: &[String]) {
    let sent = serde_json::to_string(argv).ok().and_then(|json| {
        crate::supervisor::request(&dir.control_socket(), &format!("audit-exec {json}")).ok()
    });
    if sent.as_deref() != Some("ok") {
        record_or_warn(home, Event::exec(&record.name, argv).agent(&record.agent));
    }
}

/// The mount events of a starting sandbox, with the policy's decision for each workspace.
pub(crate) fn mounts(
    record: &Record,
    policy: &sbx_policy::Policy,
    host_home: &std::path::Path,
) -> Vec<(Event, bool)> {
    record
        .workspaces
        .iter()
        .map(|w| {
            let decision = policy.check_mount(&w.path, host_home);
            let mode = if w.read_only {
                MountMode::ReadOnly
            } else {
                MountMode::ReadWrite
            };
            let audit_decision = if decision.allowed {
                sbx_audit::Decision::Allow
            } else {
                sbx_audit::Decision::Deny
            };
            let e = &decision.explanation;
            let event = Event::mount(
                &record.name,
                &w.path.display().to_string(),
                mode,
                audit_decision,
            )
            .agent(&record.agent)
            .explained(e.rule.as_deref(), e.layer.as_deref(), &e.reason.to_string());
            (event, decision.allowed)
        })
        .collect()
}
