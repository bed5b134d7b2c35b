//! The seams between the proxy and the crates that decide, inject and record.
//!
//! The proxy talks to policy, credentials and audit only through the three traits here. They are shaped after the
//! sbx-policy, sbx-secrets and sbx-audit APIs (see `docs/architecture.md`), so the adapters for those concrete types
//! are thin; [`crate::simple`] holds small self-contained implementations used by the example and the tests.

use std::net::IpAddr;

/// What kind of traffic a network check is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Protocol {
    /// Plain HTTP (absolute-form forward request, or HTTP inside a tunnel).
    Http,
    /// HTTPS (TLS intercepted by the proxy).
    Https,
    /// Raw TCP bytes the proxy cannot parse: only an explicit `host:port` rule allows them.
    Tcp,
}

impl Protocol {
    /// Lower-case name (`http`, `https`, `tcp`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Http => "http",
            Self::Https => "https",
            Self::Tcp => "tcp",
        }
    }
}

/// One network question: may this sandbox reach `host:port` with `protocol` (and this method/path)?
#[derive(Debug, Clone, Copy)]
pub struct NetworkRequest<'a> {
    /// Normalised host name or IP literal (no brackets).
    pub host: &'a str,
    /// Destination port.
    pub port: u16,
    /// Traffic kind.
    pub protocol: Protocol,
    /// HTTP method, when known.
    pub method: Option<&'a str>,
    /// Raw request path (no query), when known.
    pub path: Option<&'a str>,
}

/// A decision and why it was made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// The deciding rule as the user wrote it, if a rule decided.
    pub rule: Option<String>,
    /// The name of the layer the rule came from.
    pub layer: Option<String>,
    /// Reason code: `matched-deny`, `matched-allow`, `default-deny`, `private-address`, ...
    pub reason: String,
}

impl Verdict {
    /// An allow decided by `rule` from `layer`.
    #[must_use]
    pub fn allow(rule: Option<String>, layer: Option<String>, reason: &str) -> Self {
        Self {
            allowed: true,
            rule,
            layer,
            reason: reason.to_owned(),
        }
    }

    /// A deny decided by `rule` from `layer`.
    #[must_use]
    pub fn deny(rule: Option<String>, layer: Option<String>, reason: &str) -> Self {
        Self {
            allowed: false,
            rule,
            layer,
            reason: reason.to_owned(),
        }
    }

    /// A deny decided by the proxy itself (no policy rule), e.g. `sni-mismatch`.
    #[must_use]
    pub fn proxy_deny(reason: &str) -> Self {
        Self {
            allowed: false,
            rule: None,
            layer: Some("proxy".to_owned()),
            reason: reason.to_owned(),
        }
    }
}

/// The policy seam: sbx-policy's `Policy` implements this through a thin adapter.
pub trait EgressPolicy: Send + Sync + 'static {
    /// Decide a host/port/protocol (and optional method/path) request.
    fn check_network(&self, request: &NetworkRequest<'_>) -> Verdict;
    /// Decide whether a restricted address (loopback, private, link-local, ...) may be connected to. Allowed only when
    /// a rule names that address, CIDR or `localhost:PORT`; otherwise a deny with reason `private-address`.
    fn allows_address(&self, ip: IpAddr, port: u16, host: &str) -> Verdict;
    /// Decide whether `model` may be used at `api_host`.
    fn check_model(&self, api_host: &str, model: &str) -> Verdict;
}

/// Where a request is going, as seen by credential injection.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    /// The host the proxy connects to (CONNECT target or Host).
    pub connect_host: &'a str,
    /// The TLS SNI the client sent, if any.
    pub sni: Option<&'a str>,
    /// The request's own authority host (Host / `:authority`), normalised.
    pub authority: &'a str,
}

/// What credential injection did to one request (service and host; never a value).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectionReport {
    /// `(service, host)` pairs whose credential was applied.
    pub injected: Vec<(String, String)>,
    /// `(service, host)` pairs whose placeholder was headed to a host it is not bound to (left untouched).
    pub blocked: Vec<(String, String)>,
}

/// What a credential injector needs done with a request body (decided per request, after header injection).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum BodyPlan {
    /// Stream the body untouched (the default, and what every request without body secrets gets).
    #[default]
    Stream,
    /// Buffer the body (up to [`Limits::max_buffered_body`](crate::Limits::max_buffered_body), larger bodies are
    /// refused with 413) and hand it to [`CredentialInjector::inject_body`]: the destination is bound to a secret
    /// that asked for body substitution.
    Buffer,
    /// Stream the body untouched, but watch it for these `(service, placeholder)` pairs: the destination is not bound
    /// to them, so any one seen is audited as `placeholder_blocked` (and never substituted).
    Watch(Vec<(String, String)>),
}

/// The outcome of AWS SigV4 re-signing ([`CredentialInjector::resign`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Resign {
    /// Not an AWS request signed with this sandbox's placeholder credentials, or not bound to this host: forwarded as
    /// it is (header injection already reported any placeholder headed elsewhere).
    NotApplicable,
    /// Re-signed with the real credentials of `service` for `host` (audited as `secret_injected`).
    Resigned {
        /// Service name.
        service: String,
        /// Destination host.
        host: String,
    },
    /// The request must not be forwarded (malformed signature, a foreign key id, a streaming upload that cannot be
    /// re-signed, ...); `reason` says why, without any secret.
    Refused {
        /// Why, for the 403 body and the audit event.
        reason: String,
    },
}

/// The credential seam: sbx-secrets' `SandboxCredentials` implements this through a thin adapter, and
/// [`SecretsInjector`](crate::SecretsInjector) adds body substitution for custom secrets that ask for it.
///
/// Only [`inject`](Self::inject) is required; the body and SigV4 methods default to "nothing to do".
pub trait CredentialInjector: Send + Sync + 'static {
    /// Apply credentials bound to `dest` to the request head; report what was injected or blocked.
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport;

    /// What to do with the request body of this (already header-injected) request.
    fn body_plan(&self, _dest: &Destination<'_>, _head: &http::request::Parts) -> BodyPlan {
        BodyPlan::Stream
    }

    /// Substitute placeholders in a buffered body (only called after [`BodyPlan::Buffer`]); the proxy fixes
    /// `Content-Length` afterwards.
    fn inject_body(&self, _dest: &Destination<'_>, _body: &mut Vec<u8>) -> InjectionReport {
        InjectionReport::default()
    }

    /// Whether re-signing this request needs the SHA-256 of its body (an AWS request signed by the sandbox without
    /// an `x-amz-content-sha256` header); the proxy then buffers the body, bounded like [`BodyPlan::Buffer`].
    fn needs_payload_hash(&self, _dest: &Destination<'_>, _head: &http::request::Parts) -> bool {
        false
    }

    /// Re-sign an AWS SigV4 request with the real credentials (called after header and body injection, with the
    /// hex SHA-256 of the body when [`needs_payload_hash`](Self::needs_payload_hash) asked for it).
    fn resign(
        &self,
        _dest: &Destination<'_>,
        _head: &mut http::request::Parts,
        _payload_sha256: Option<&str>,
    ) -> Resign {
        Resign::NotApplicable
    }
}

/// An injector that never injects anything.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoCredentials;

impl CredentialInjector for NoCredentials {
    fn inject(&self, _dest: &Destination<'_>, _head: &mut http::request::Parts) -> InjectionReport {
        InjectionReport::default()
    }
}

/// Allow or deny, as recorded in audit events.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AuditDecision {
    /// Allowed.
    Allow,
    /// Denied.
    Deny,
}

/// What an audit event is about (mirrors sbx-audit's `Action` for the proxy's variants).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditAction {
    /// A connection or tunnel to `host:port`; `proxy` says how it arrived (`forward`, `connect`, `transparent`, `raw`).
    NetworkEgress {
        /// Destination host.
        host: String,
        /// Destination port.
        port: u16,
        /// Ingress kind.
        proxy: String,
    },
    /// One HTTP request/response exchange.
    HttpRequest {
        /// Method.
        method: String,
        /// Destination host.
        host: String,
        /// Destination port.
        port: u16,
        /// Path without query (queries may carry tokens).
        path: String,
        /// Status returned to the client.
        status: u16,
        /// Request body bytes forwarded.
        bytes_up: u64,
        /// Response body bytes returned.
        bytes_down: u64,
        /// Duration until the response body ended.
        duration_ms: u64,
    },
    /// A credential was applied.
    SecretInjected {
        /// Service name.
        service: String,
        /// Destination host.
        host: String,
    },
    /// A placeholder was headed to a host it is not bound to.
    PlaceholderBlocked {
        /// Service name.
        service: String,
        /// Destination host.
        host: String,
    },
}

/// One audit event produced by the proxy. Never contains a secret value.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AuditEvent {
    /// The sandbox the connection belongs to.
    pub sandbox: String,
    /// Allow/deny, where a decision was made.
    pub decision: Option<AuditDecision>,
    /// What happened.
    pub action: AuditAction,
    /// Deciding rule.
    pub rule: Option<String>,
    /// Deciding layer.
    pub layer: Option<String>,
    /// Reason code.
    pub reason: Option<String>,
}

/// The audit seam: sbx-audit's `AuditHandle` implements this through a thin adapter. Must not block on disk.
pub trait AuditSink: Send + Sync + 'static {
    /// Record one event.
    fn record(&self, event: AuditEvent);
}
