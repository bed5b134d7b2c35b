//! The audit event schema (version 1). See the crate README for the JSON form of every field.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::id::EventId;
use crate::time::Timestamp;

/// The schema version this crate writes (and the newest it reads).
pub const SCHEMA_VERSION: u32 = 1;

/// One audited fact: who (sandbox, agent, user, hostname), when, what (`action`) and, for policy decisions, the
/// verdict and its explanation (`rule`, `layer`, `reason` as given by sbx-policy).
///
/// `seq` and `prev_hash` are the tamper-evidence chain; the writer fills them in, whatever the caller set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Event {
    /// Schema version of this record ([`SCHEMA_VERSION`] when written by this crate).
    pub schema_version: u32,
    /// UUIDv7, unique per event.
    pub id: EventId,
    /// When the event happened (UTC, microseconds).
    pub timestamp: Timestamp,
    /// The sandbox concerned; absent for events of the audit system itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<String>,
    /// The area the event belongs to.
    pub category: Category,
    /// ALLOW or DENY, for events that record a policy decision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// What happened.
    pub action: Action,
    /// The policy rule that decided, as written in the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The policy layer the rule came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layer: Option<String>,
    /// Why the decision was made (`matched-deny`, `default-deny`, `private-address`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The agent running in the sandbox (e.g. `claude`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The user on whose behalf the sandbox runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The host the event was recorded on.
    pub hostname: String,
    /// Position in the writer's chain (0 for the first event of a stream); set by the writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// Hex SHA-256 of the previous line of the same stream (64 zeros for the first); set by the writer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prev_hash: Option<String>,
}

/// The area an event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum Category {
    /// Network egress and HTTP requests.
    Network,
    /// Credential injection and blocked placeholders.
    Secret,
    /// Sandbox created, started, stopped, removed.
    Lifecycle,
    /// Commands run in a sandbox.
    Exec,
    /// Host paths mounted into a sandbox.
    Mount,
    /// Policy changes and other policy decisions.
    Policy,
    /// Events of the audit trail itself (`audit_dropped`).
    Audit,
}

impl Category {
    /// Every category, in schema order.
    pub const ALL: [Category; 7] = [
        Category::Network,
        Category::Secret,
        Category::Lifecycle,
        Category::Exec,
        Category::Mount,
        Category::Policy,
        Category::Audit,
    ];

    /// The name used in JSON and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Network => "network",
            Category::Secret => "secret",
            Category::Lifecycle => "lifecycle",
            Category::Exec => "exec",
            Category::Mount => "mount",
            Category::Policy => "policy",
            Category::Audit => "audit",
        }
    }

    /// Parses a category name (as printed by [`Category::as_str`]).
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(s))
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A policy verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Decision {
    /// Allowed.
    #[serde(rename = "ALLOW")]
    Allow,
    /// Denied.
    #[serde(rename = "DENY")]
    Deny,
}

impl Decision {
    /// `ALLOW` or `DENY`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Allow => "ALLOW",
            Decision::Deny => "DENY",
        }
    }

    /// Parses `allow`/`deny` in any case.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("allow") {
            Some(Decision::Allow)
        } else if s.eq_ignore_ascii_case("deny") {
            Some(Decision::Deny)
        } else {
            None
        }
    }
}

impl From<bool> for Decision {
    fn from(allowed: bool) -> Self {
        if allowed {
            Decision::Allow
        } else {
            Decision::Deny
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a connection reached the egress proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Proxy {
    /// An explicit HTTP(S) proxy request (`CONNECT` or absolute-form).
    Forward,
    /// Intercepted traffic (TLS SNI or HTTP Host).
    Transparent,
    /// A raw TCP connection.
    Raw,
}

impl Proxy {
    /// `forward`, `transparent` or `raw`.
    pub fn as_str(self) -> &'static str {
        match self {
            Proxy::Forward => "forward",
            Proxy::Transparent => "transparent",
            Proxy::Raw => "raw",
        }
    }
}

/// How a host path is mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MountMode {
    /// Read-only.
    #[serde(rename = "ro")]
    ReadOnly,
    /// Read-write.
    #[serde(rename = "rw")]
    ReadWrite,
}

/// What happened. In JSON an object whose `type` names the kind, with the kind's fields beside it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", try_from = "RawAction")]
#[non_exhaustive]
pub enum Action {
    /// A connection leaving a sandbox through the egress proxy.
    NetworkEgress {
        /// Destination host name (or address).
        host: String,
        /// Destination port.
        port: u16,
        /// How the connection reached the proxy.
        proxy: Proxy,
    },
    /// One HTTP request seen by the proxy.
    HttpRequest {
        /// Request method.
        method: String,
        /// Destination host.
        host: String,
        /// Destination port.
        port: u16,
        /// Request path (with query).
        path: String,
        /// Response status, absent when no response came.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        status: Option<u16>,
        /// Request body bytes sent upstream.
        bytes_up: u64,
        /// Response body bytes sent back.
        bytes_down: u64,
        /// Time from request to end of response.
        duration_ms: u64,
    },
    /// A credential was injected into a request (never the value itself).
    SecretInjected {
        /// The credential's service (e.g. `anthropic`).
        service: String,
        /// The host it was sent to.
        host: String,
    },
    /// A placeholder headed for a host it is not bound to was left untouched.
    PlaceholderBlocked {
        /// The credential's service.
        service: String,
        /// The host the request went to.
        host: String,
    },
    /// A sandbox was created.
    SandboxCreated,
    /// A sandbox was started.
    SandboxStarted,
    /// A sandbox was stopped.
    SandboxStopped,
    /// A sandbox was removed.
    SandboxRemoved,
    /// A command was run in a sandbox.
    Exec {
        /// The command line.
        argv: Vec<String>,
    },
    /// A host path was mounted into a sandbox.
    Mount {
        /// The host path.
        path: String,
        /// Read-only or read-write.
        mode: MountMode,
    },
    /// The writer's queue was full and this many events were dropped (queue policy `drop`).
    AuditDropped {
        /// How many events were dropped since the last such record.
        count: u64,
    },
}

impl Action {
    /// The `type` tag of this action in JSON.
    pub fn kind(&self) -> &'static str {
        match self {
            Action::NetworkEgress { .. } => "network_egress",
            Action::HttpRequest { .. } => "http_request",
            Action::SecretInjected { .. } => "secret_injected",
            Action::PlaceholderBlocked { .. } => "placeholder_blocked",
            Action::SandboxCreated => "sandbox_created",
            Action::SandboxStarted => "sandbox_started",
            Action::SandboxStopped => "sandbox_stopped",
            Action::SandboxRemoved => "sandbox_removed",
            Action::Exec { .. } => "exec",
            Action::Mount { .. } => "mount",
            Action::AuditDropped { .. } => "audit_dropped",
        }
    }

    /// The category an action of this kind belongs to.
    pub fn category(&self) -> Category {
        match self {
            Action::NetworkEgress { .. } | Action::HttpRequest { .. } => Category::Network,
            Action::SecretInjected { .. } | Action::PlaceholderBlocked { .. } => Category::Secret,
            Action::SandboxCreated
            | Action::SandboxStarted
            | Action::SandboxStopped
            | Action::SandboxRemoved => Category::Lifecycle,
            Action::Exec { .. } => Category::Exec,
            Action::Mount { .. } => Category::Mount,
            Action::AuditDropped { .. } => Category::Audit,
        }
    }

    /// The destination host, for actions that have one.
    pub fn host(&self) -> Option<&str> {
        match self {
            Action::NetworkEgress { host, .. }
            | Action::HttpRequest { host, .. }
            | Action::SecretInjected { host, .. }
            | Action::PlaceholderBlocked { host, .. } => Some(host),
            _ => None,
        }
    }
}

/// The flat form an action is read through: serde's internally tagged enums buffer every field before choosing
/// the variant, which made parsing several times slower than this plain struct.
#[derive(Deserialize)]
struct RawAction {
    #[serde(rename = "type")]
    kind: String,
    host: Option<String>,
    port: Option<u16>,
    proxy: Option<Proxy>,
    method: Option<String>,
    path: Option<String>,
    status: Option<u16>,
    bytes_up: Option<u64>,
    bytes_down: Option<u64>,
    duration_ms: Option<u64>,
    service: Option<String>,
    argv: Option<Vec<String>>,
    mode: Option<MountMode>,
    count: Option<u64>,
}

impl TryFrom<RawAction> for Action {
    type Error = String;

    fn try_from(raw: RawAction) -> Result<Self, String> {
        let kind = raw.kind;
        let need = |field: &'static str| format!("action {kind:?} lacks field `{field}`");
        macro_rules! req {
            ($f:ident) => {
                raw.$f.ok_or_else(|| need(stringify!($f)))?
            };
        }
        Ok(match kind.as_str() {
            "network_egress" => Action::NetworkEgress {
                host: req!(host),
                port: req!(port),
                proxy: req!(proxy),
            },
            "http_request" => Action::HttpRequest {
                method: req!(method),
                host: req!(host),
                port: req!(port),
                path: req!(path),
                status: raw.status,
                bytes_up: req!(bytes_up),
                bytes_down: req!(bytes_down),
                duration_ms: req!(duration_ms),
            },
            "secret_injected" => Action::SecretInjected {
                service: req!(service),
                host: req!(host),
            },
            "placeholder_blocked" => Action::PlaceholderBlocked {
                service: req!(service),
                host: req!(host),
            },
            "sandbox_created" => Action::SandboxCreated,
            "sandbox_started" => Action::SandboxStarted,
            "sandbox_stopped" => Action::SandboxStopped,
            "sandbox_removed" => Action::SandboxRemoved,
            "exec" => Action::Exec { argv: req!(argv) },
            "mount" => Action::Mount {
                path: req!(path),
                mode: req!(mode),
            },
            "audit_dropped" => Action::AuditDropped { count: req!(count) },
            _ => return Err(format!("unknown action type {kind:?}")),
        })
    }
}

/// This machine's host name, read once (`/proc/sys/kernel/hostname`, then `$HOSTNAME`, else `unknown`).
pub fn local_hostname() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::fs::read_to_string("/etc/hostname"))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "unknown".to_owned())
    })
}

impl Event {
    /// A new event happening now, with a fresh id, this host's name and the action's category.
    pub fn new(action: Action) -> Self {
        let timestamp = Timestamp::now();
        Self {
            schema_version: SCHEMA_VERSION,
            id: EventId::new_v7(timestamp),
            timestamp,
            sandbox: None,
            category: action.category(),
            decision: None,
            action,
            rule: None,
            layer: None,
            reason: None,
            agent: None,
            user: None,
            hostname: local_hostname().to_owned(),
            seq: None,
            prev_hash: None,
        }
    }

    /// A network egress decision.
    pub fn network(sandbox: &str, host: &str, port: u16, proxy: Proxy, decision: Decision) -> Self {
        Self::new(Action::NetworkEgress {
            host: host.to_owned(),
            port,
            proxy,
        })
        .sandbox(sandbox)
        .decision(decision)
    }

    /// An HTTP request seen by the proxy (fill `status`, byte counts and duration with [`Event::http_result`]).
    pub fn http(
        sandbox: &str,
        method: &str,
        host: &str,
        port: u16,
        path: &str,
        decision: Decision,
    ) -> Self {
        Self::new(Action::HttpRequest {
            method: method.to_owned(),
            host: host.to_owned(),
            port,
            path: path.to_owned(),
            status: None,
            bytes_up: 0,
            bytes_down: 0,
            duration_ms: 0,
        })
        .sandbox(sandbox)
        .decision(decision)
    }

    /// Sets the outcome of an [`Action::HttpRequest`]; no effect on other actions.
    pub fn http_result(
        mut self,
        status: Option<u16>,
        up: u64,
        down: u64,
        duration_ms: u64,
    ) -> Self {
        if let Action::HttpRequest {
            status: s,
            bytes_up,
            bytes_down,
            duration_ms: d,
            ..
        } = &mut self.action
        {
            *s = status;
            *bytes_up = up;
            *bytes_down = down;
            *d = duration_ms;
        }
        self
    }

    /// A credential injected into a request to `host`.
    pub fn secret_injected(sandbox: &str, service: &str, host: &str) -> Self {
        Self::new(Action::SecretInjected {
            service: service.to_owned(),
            host: host.to_owned(),
        })
        .sandbox(sandbox)
        .decision(Decision::Allow)
    }

    /// A placeholder for `service` that was headed to `host`, which it is not bound to.
    pub fn placeholder_blocked(sandbox: &str, service: &str, host: &str) -> Self {
        Self::new(Action::PlaceholderBlocked {
            service: service.to_owned(),
            host: host.to_owned(),
        })
        .sandbox(sandbox)
        .decision(Decision::Deny)
    }

    /// A lifecycle change; `action` should be one of the `Sandbox*` actions.
    pub fn lifecycle(sandbox: &str, action: Action) -> Self {
        Self::new(action).sandbox(sandbox)
    }

    /// A command run in the sandbox.
    pub fn exec<S: AsRef<str>>(sandbox: &str, argv: &[S]) -> Self {
        Self::new(Action::Exec {
            argv: argv.iter().map(|a| a.as_ref().to_owned()).collect(),
        })
        .sandbox(sandbox)
    }

    /// A host path mounted into the sandbox.
    pub fn mount(sandbox: &str, path: &str, mode: MountMode, decision: Decision) -> Self {
        Self::new(Action::Mount {
            path: path.to_owned(),
            mode,
        })
        .sandbox(sandbox)
        .decision(decision)
    }

    /// The writer's record of events it had to drop.
    pub fn audit_dropped(count: u64) -> Self {
        Self::new(Action::AuditDropped { count })
    }

    /// Sets the sandbox.
    pub fn sandbox(mut self, sandbox: &str) -> Self {
        self.sandbox = Some(sandbox.to_owned());
        self
    }

    /// Sets the decision.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }

    /// Overrides the category (it defaults to the action's).
    pub fn category(mut self, category: Category) -> Self {
        self.category = category;
        self
    }

    /// Sets the policy explanation: the rule as written, the layer it came from, the reason.
    pub fn explained(mut self, rule: Option<&str>, layer: Option<&str>, reason: &str) -> Self {
        self.rule = rule.map(str::to_owned);
        self.layer = layer.map(str::to_owned);
        self.reason = Some(reason.to_owned());
        self
    }

    /// Sets the agent.
    pub fn agent(mut self, agent: &str) -> Self {
        self.agent = Some(agent.to_owned());
        self
    }

    /// Sets the user.
    pub fn user(mut self, user: &str) -> Self {
        self.user = Some(user.to_owned());
        self
    }

    /// Overrides the host name (it defaults to this machine's).
    pub fn hostname(mut self, hostname: &str) -> Self {
        self.hostname = hostname.to_owned();
        self
    }

    /// Overrides the time (and makes a matching new id); for importing events and for tests.
    pub fn at(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = timestamp;
        self.id = EventId::new_v7(timestamp);
        self
    }

    /// The destination host of the action, if it has one.
    pub fn host(&self) -> Option<&str> {
        self.action.host()
    }
}
