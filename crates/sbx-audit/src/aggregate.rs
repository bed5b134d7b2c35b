//! The aggregate view printed by `sbx policy log`: decisions grouped by sandbox, type, host, proxy, rule and reason.

use std::collections::HashMap;
use std::fmt;

use serde::Serialize;

use crate::event::{Action, Decision, Event};
use crate::time::Timestamp;

/// One row of the view: how often a decision of one shape was made and when last.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PolicyLogRow {
    /// Sandbox name (`-` when none).
    pub sandbox: String,
    /// `network`, `http`, `secret`, `mount` or `exec`.
    #[serde(rename = "type")]
    pub kind: String,
    /// `host:port` for network egress, the host for HTTP and secrets, the path for mounts, the command for exec.
    pub host: String,
    /// `forward`, `transparent`, `raw`, or `-`.
    pub proxy: String,
    /// The rule as written, or `-`.
    pub rule: String,
    /// The reason, or `-`.
    pub reason: String,
    /// The latest occurrence.
    pub last_seen: Timestamp,
    /// How many events.
    pub count: u64,
}

/// The Blocked and Allowed tables, each sorted by last-seen time, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PolicyLogView {
    /// Denied decisions.
    pub blocked: Vec<PolicyLogRow>,
    /// Allowed decisions.
    pub allowed: Vec<PolicyLogRow>,
}

type Key = (
    Decision,
    String,
    &'static str,
    String,
    String,
    String,
    String,
);

/// Builds [`PolicyLogView`] from events one at a time.
#[derive(Debug, Default)]
pub struct Aggregator {
    rows: HashMap<Key, (Timestamp, u64)>,
}

impl Aggregator {
    /// An empty aggregation.
    pub fn new() -> Self {
        Self::default()
    }

    /// Counts `event` if it records a decision.
    pub fn add(&mut self, event: &Event) {
        let Some(decision) = event.decision else {
            return;
        };
        let dash = || "-".to_owned();
        let (kind, host, proxy) = match &event.action {
            Action::NetworkEgress { host, port, proxy } => (
                "network",
                format!("{host}:{port}"),
                proxy.as_str().to_owned(),
            ),
            Action::HttpRequest { host, .. } => ("http", host.clone(), dash()),
            Action::SecretInjected { host, .. } | Action::PlaceholderBlocked { host, .. } => {
                ("secret", host.clone(), dash())
            }
            Action::Mount { path, .. } => ("mount", path.clone(), dash()),
            Action::Exec { argv } => ("exec", argv.first().cloned().unwrap_or_else(dash), dash()),
            _ => ("other", dash(), dash()),
        };
        let key = (
            decision,
            event.sandbox.clone().unwrap_or_else(dash),
            kind,
            host,
            proxy,
            event.rule.clone().unwrap_or_else(dash),
            event.reason.clone().unwrap_or_else(dash),
        );
        let entry = self.rows.entry(key).or_insert((event.timestamp, 0));
        entry.0 = entry.0.max(event.timestamp);
        entry.1 += 1;
    }

    /// The finished view.
    pub fn finish(self) -> PolicyLogView {
        let mut view = PolicyLogView::default();
        for ((decision, sandbox, kind, host, proxy, rule, reason), (last_seen, count)) in self.rows
        {
            let row = PolicyLogRow {
                sandbox,
                kind: kind.to_owned(),
                host,
                proxy,
                rule,
                reason,
                last_seen,
                count,
            };
            match decision {
                Decision::Deny => view.blocked.push(row),
                Decision::Allow => view.allowed.push(row),
            }
        }
        for table in [&mut view.blocked, &mut view.allowed] {
            table.sort_by(|a, b| {
                b.last_seen
                    .cmp(&a.last_seen)
                    .then_with(|| a.host.cmp(&b.host))
            });
        }
        view
    }
}

impl PolicyLogView {
    /// Aggregates a sequence of events.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut agg = Aggregator::new();
        for e in events {
            agg.add(e);
        }
        agg.finish()
    }

    /// The `--json` form: `{"blocked": [...], "allowed": [...]}` with the column names as keys.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

const HEADERS: [&str; 8] = [
    "SANDBOX",
    "TYPE",
    "HOST",
    "PROXY",
    "RULE",
    "REASON",
    "LAST-SEEN",
    "COUNT",
];

fn write_table(f: &mut fmt::Formatter<'_>, title: &str, rows: &[PolicyLogRow]) -> fmt::Result {
    writeln!(f, "{title}")?;
    if rows.is_empty() {
        return writeln!(f, "  (none)");
    }
    let cells: Vec<[String; 8]> = rows
        .iter()
        .map(|r| {
            [
                r.sandbox.clone(),
                r.kind.clone(),
                r.host.clone(),
                r.proxy.clone(),
                r.rule.clone(),
                r.reason.clone(),
                r.last_seen
                    .to_rfc3339()
                    .get(..19)
                    .unwrap_or_default()
                    .replace('T', " "),
                r.count.to_string(),
            ]
        })
        .collect();
    let mut widths = HEADERS.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |f: &mut fmt::Formatter<'_>, row: &[&str]| -> fmt::Result {
        let mut out = String::new();
        for (i, (c, w)) in row.iter().zip(widths).enumerate() {
            if i + 1 == row.len() {
                out.push_str(&format!("{c:>w$}"));
            } else {
                out.push_str(&format!("{c:<w$}  "));
            }
        }
        writeln!(f, "{}", out.trim_end())
    };
    line(f, &HEADERS)?;
    for row in &cells {
        line(f, &row.each_ref().map(String::as_str))?;
    }
    Ok(())
}

/// The two tables as `sbx policy log` prints them (LAST-SEEN in UTC).
impl fmt::Display for PolicyLogView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_table(f, "Blocked", &self.blocked)?;
        writeln!(f)?;
        write_table(f, "Allowed", &self.allowed)
    }
}
