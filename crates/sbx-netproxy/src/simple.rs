//! Small, self-contained implementations of the seams, used by the example and the tests.
//!
//! [`SimplePolicy`] reads the sbx policy TOML shape (`name`, `preset`, `[[network]]` and `[[model]]` tables) for the
//! rule forms the proxy exercises: exact hosts, `*.` (one label), `**.` (one or more labels), `:port`, IP addresses,
//! CIDRs and `localhost:PORT`; a deny beats every allow; no match denies (preset `open`: allows). The full engine with
//! layers, enforcement and presets is sbx-policy.

use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;

use crate::addr::restricted_category;
use crate::authority::{Host, normalize_host};
use crate::seam::{
    AuditEvent, AuditSink, CredentialInjector, Destination, EgressPolicy, InjectionReport,
    NetworkRequest, Protocol, Verdict,
};

/// A policy file could not be read or parsed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyFileError {
    /// Reading failed.
    #[error("policy file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The TOML or a field is invalid.
    #[error("policy file {path}: {message}")]
    Invalid {
        /// The file.
        path: String,
        /// What is wrong and where.
        message: String,
    },
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FileShape {
    name: Option<String>,
    preset: Option<String>,
    #[serde(default)]
    enforced: bool,
    #[serde(default)]
    network: Vec<NetworkRuleShape>,
    #[serde(default)]
    model: Vec<ModelRuleShape>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NetworkRuleShape {
    action: Action,
    hosts: Vec<String>,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelRuleShape {
    action: Action,
    models: Vec<String>,
    hosts: Option<Vec<String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Action {
    Allow,
    Deny,
}

#[derive(Debug, Clone)]
enum HostPattern {
    Exact(String),
    OneLabel(String),
    AnyLabels(String),
    Ip(IpAddr),
    Cidr(IpAddr, u8),
    Localhost,
}

#[derive(Debug, Clone)]
struct NetRule {
    action: Action,
    written: String,
    host: HostPattern,
    port: Option<u16>,
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    layer: String,
}

#[derive(Debug, Clone)]
struct ModelRule {
    action: Action,
    written: String,
    models: Vec<String>,
    hosts: Option<Vec<String>>,
    layer: String,
}

/// A simple layered network/model policy (see the module docs).
#[derive(Debug, Default)]
pub struct SimplePolicy {
    network: Vec<NetRule>,
    models: Vec<ModelRule>,
    default_allow: bool,
}

impl SimplePolicy {
    /// Parse one or more policy files' text (`(source name, text)`); later files add rules.
    ///
    /// # Errors
    /// [`PolicyFileError::Invalid`] naming the file and the bad value.
    pub fn parse(sources: &[(&str, &str)]) -> Result<Self, PolicyFileError> {
        let mut policy = Self::default();
        for (path, text) in sources {
            let invalid = |message: String| PolicyFileError::Invalid {
                path: (*path).to_owned(),
                message,
            };
            let shape: FileShape = toml::from_str(text).map_err(|e| invalid(e.to_string()))?;
            let layer = shape.name.clone().unwrap_or_else(|| (*path).to_owned());
            match shape.preset.as_deref() {
                None | Some("balanced" | "locked-down") => {}
                Some("open") => policy.default_allow = true,
                Some(other) => {
                    return Err(invalid(format!(
                        "preset {other:?}: use open, balanced or locked-down"
                    )));
                }
            }
            let _ = shape.enforced;
            for rule in shape.network {
                for written in &rule.hosts {
                    let (host, port) = parse_host_pattern(written)
                        .map_err(|m| invalid(format!("hosts entry {written:?}: {m}")))?;
                    policy.network.push(NetRule {
                        action: rule.action,
                        written: written.clone(),
                        host,
                        port,
                        methods: rule.methods.clone(),
                        paths: rule.paths.clone(),
                        layer: layer.clone(),
                    });
                }
            }
            for rule in shape.model {
                policy.models.push(ModelRule {
                    action: rule.action,
                    written: rule.models.join(", "),
                    models: rule.models,
                    hosts: rule.hosts,
                    layer: layer.clone(),
                });
            }
        }
        Ok(policy)
    }

    /// Read and parse policy files.
    ///
    /// # Errors
    /// [`PolicyFileError`] naming the file.
    pub fn load(paths: &[&Path]) -> Result<Self, PolicyFileError> {
        let mut texts = Vec::new();
        for p in paths {
            let text = std::fs::read_to_string(p).map_err(|source| PolicyFileError::Io {
                path: p.display().to_string(),
                source,
            })?;
            texts.push((p.display().to_string(), text));
        }
        let refs: Vec<(&str, &str)> = texts
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        Self::parse(&refs)
    }

    fn decide<'a>(&self, matching: impl Iterator<Item = (&'a str, &'a str, Action)>) -> Verdict {
        let mut allow = None;
        for (written, layer, action) in matching {
            if action == Action::Deny {
                return Verdict::deny(
                    Some(written.to_owned()),
                    Some(layer.to_owned()),
                    "matched-deny",
                );
            }
            allow.get_or_insert((written, layer));
        }
        match allow {
            Some((w, l)) => Verdict::allow(Some(w.to_owned()), Some(l.to_owned()), "matched-allow"),
            None if self.default_allow => Verdict::allow(None, None, "default-allow"),
            None => Verdict::deny(None, None, "default-deny"),
        }
    }
}

fn parse_host_pattern(written: &str) -> Result<(HostPattern, Option<u16>), String> {
    let (host, port) = match written.rsplit_once(':') {
        Some((h, p))
            if !h.is_empty() && (!h.contains(':') || h.ends_with(']') || h.contains("]/")) =>
        {
            (
                h,
                Some(
                    p.parse::<u16>()
                        .map_err(|_| format!("port {p:?} is not a number 1-65535"))?,
                ),
            )
        }
        _ => (written, None),
    };
    let host = host.trim_start_matches('[').replace(']', "");
    if host.eq_ignore_ascii_case("localhost") && port.is_some() {
        return Ok((HostPattern::Localhost, port));
    }
    if let Some((ip, bits)) = host.split_once('/') {
        let ip: IpAddr = ip
            .parse()
            .map_err(|_| format!("{ip:?} is not an IP address"))?;
        let bits: u8 = bits
            .parse()
            .map_err(|_| format!("prefix {bits:?} is not a number"))?;
        return Ok((HostPattern::Cidr(ip, bits), port));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((HostPattern::Ip(ip), port));
    }
    let lower = host.to_ascii_lowercase();
    let pattern = if let Some(rest) = lower.strip_prefix("**.") {
        HostPattern::AnyLabels(rest.to_owned())
    } else if let Some(rest) = lower.strip_prefix("*.") {
        HostPattern::OneLabel(rest.to_owned())
    } else {
        HostPattern::Exact(lower.trim_end_matches('.').to_owned())
    };
    Ok((pattern, port))
}

fn cidr_contains(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    match (net, ip) {
        (IpAddr::V4(n), IpAddr::V4(i)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - u32::from(bits)).unwrap_or(0);
            u32::from(n) & mask == u32::from(i) & mask
        }
        (IpAddr::V6(n), IpAddr::V6(i)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - u32::from(bits)).unwrap_or(0);
            u128::from(n) & mask == u128::from(i) & mask
        }
        _ => false,
    }
}

impl HostPattern {
    fn matches(&self, host: &Host) -> bool {
        match (self, host) {
            (Self::Exact(p), Host::Name(h)) => p == h,
            (Self::OneLabel(p), Host::Name(h)) => h
                .strip_suffix(p.as_str())
                .and_then(|l| l.strip_suffix('.'))
                .is_some_and(|l| !l.is_empty() && !l.contains('.')),
            (Self::AnyLabels(p), Host::Name(h)) => h
                .strip_suffix(p.as_str())
                .and_then(|l| l.strip_suffix('.'))
                .is_some_and(|l| !l.is_empty()),
            (Self::Localhost, Host::Name(h)) => h == "localhost",
            (Self::Ip(p), Host::Ip(ip)) => p == ip,
            (Self::Cidr(net, bits), Host::Ip(ip)) => cidr_contains(*net, *bits, *ip),
            _ => false,
        }
    }

    fn names_address(&self, ip: IpAddr, host: &str) -> bool {
        match self {
            Self::Ip(p) => *p == ip,
            Self::Cidr(net, bits) => cidr_contains(*net, *bits, ip),
            Self::Localhost => ip.is_loopback() && host == "localhost",
            _ => false,
        }
    }
}

/// `*` matches any run of characters (within a path segment when `segmented`), `**` any run at all.
#[doc(hidden)]
#[must_use]
pub fn glob_match(pattern: &str, text: &str, segmented: bool) -> bool {
    fn go(p: &[u8], t: &[u8], seg: bool) -> bool {
        match p.first() {
            None => t.is_empty(),
            Some(b'*') => {
                let (rest, any) = if p.get(1) == Some(&b'*') {
                    (&p[2..], true)
                } else {
                    (&p[1..], !seg)
                };
                (0..=t.len())
                    .take_while(|&i| any || i == 0 || t[i - 1] != b'/')
                    .any(|i| go(rest, &t[i..], seg))
            }
            Some(c) => t.first() == Some(c) && go(&p[1..], &t[1..], seg),
        }
    }
    go(pattern.as_bytes(), text.as_bytes(), segmented)
}

impl NetRule {
    fn matches(&self, host: &Host, req: &NetworkRequest<'_>) -> bool {
        let port_ok = match self.port {
            Some(p) => p == req.port,
            None => req.protocol != Protocol::Tcp && (req.port == 80 || req.port == 443),
        };
        let method_ok = match (&self.methods, req.method) {
            (Some(ms), Some(m)) => ms.iter().any(|x| x.eq_ignore_ascii_case(m)),
            _ => true,
        };
        let path_ok = match (&self.paths, req.path) {
            (Some(ps), Some(path)) => ps.iter().any(|p| glob_match(p, path, true)),
            _ => true,
        };
        port_ok && method_ok && path_ok && self.host.matches(host)
    }
}

impl EgressPolicy for SimplePolicy {
    fn check_network(&self, req: &NetworkRequest<'_>) -> Verdict {
        let Ok(host) = normalize_host(req.host) else {
            return Verdict::deny(None, None, "invalid-host");
        };
        self.decide(
            self.network
                .iter()
                .filter(|r| r.matches(&host, req))
                .map(|r| (r.written.as_str(), r.layer.as_str(), r.action)),
        )
    }

    fn allows_address(&self, ip: IpAddr, port: u16, host: &str) -> Verdict {
        if restricted_category(ip).is_none() {
            return Verdict::allow(None, None, "public-address");
        }
        let naming = self
            .network
            .iter()
            .filter(|r| r.port.is_none_or(|p| p == port) && r.host.names_address(ip, host));
        let v = self.decide(naming.map(|r| (r.written.as_str(), r.layer.as_str(), r.action)));
        if v.allowed && v.rule.is_some() {
            v
        } else {
            Verdict {
                allowed: false,
                reason: "private-address".into(),
                ..v
            }
        }
    }

    fn check_model(&self, api_host: &str, model: &str) -> Verdict {
        let matching = self.models.iter().filter(|r| {
            r.models.iter().any(|m| glob_match(m, model, false))
                && r.hosts
                    .as_ref()
                    .is_none_or(|hs| hs.iter().any(|h| h == api_host))
        });
        let mut allow = None;
        for r in matching {
            if r.action == Action::Deny {
                return Verdict::deny(
                    Some(r.written.clone()),
                    Some(r.layer.clone()),
                    "matched-deny",
                );
            }
            allow.get_or_insert(r);
        }
        match allow {
            Some(r) => Verdict::allow(
                Some(r.written.clone()),
                Some(r.layer.clone()),
                "matched-allow",
            ),
            None => Verdict::allow(None, None, "no-model-rule"),
        }
    }
}

/// How a bound credential is applied to requests for its hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Apply {
    /// Only replace the placeholder wherever it appears in header values or the query.
    ReplacePlaceholder,
    /// Set this header to `prefix + secret` (e.g. `authorization`, `Bearer `), and replace placeholders.
    Header {
        /// Header name.
        name: http::HeaderName,
        /// Value prefix (scheme), e.g. `Bearer `.
        prefix: String,
    },
}

/// One credential: a service, its value, the placeholder the sandbox sees and the hosts it is bound to.
#[derive(Clone)]
pub struct StaticCredential {
    /// Service name (e.g. `anthropic`).
    pub service: String,
    /// The placeholder the sandbox sees.
    pub placeholder: String,
    value: String,
    /// Hosts (normalised names or IPs) the credential may be sent to.
    pub hosts: Vec<String>,
    /// How it is applied.
    pub apply: Apply,
}

impl std::fmt::Debug for StaticCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticCredential")
            .field("service", &self.service)
            .field("placeholder", &self.placeholder)
            .field("value", &"[redacted]")
            .field("hosts", &self.hosts)
            .finish()
    }
}

impl StaticCredential {
    /// A credential for `service` with a fresh random placeholder `sbx-ph-<service>-<random>`.
    #[must_use]
    pub fn new(service: &str, value: &str, hosts: Vec<String>, apply: Apply) -> Self {
        Self {
            service: service.to_owned(),
            placeholder: random_placeholder(service),
            value: value.to_owned(),
            hosts,
            apply,
        }
    }

    /// The built-in bindings for a few well-known services (`anthropic`, `openai`, `github`, `gemini`); any other
    /// service is bound to nothing until hosts are given.
    #[must_use]
    pub fn well_known(service: &str, value: &str) -> Self {
        let (hosts, apply): (&[&str], Apply) = match service {
            "anthropic" => (
                &["api.anthropic.com"],
                Apply::Header {
                    name: http::HeaderName::from_static("x-api-key"),
                    prefix: String::new(),
                },
            ),
            "openai" => (
                &["api.openai.com"],
                Apply::Header {
                    name: http::header::AUTHORIZATION,
                    prefix: "Bearer ".into(),
                },
            ),
            "github" => (&["api.github.com", "github.com"], Apply::ReplacePlaceholder),
            "gemini" => (
                &["generativelanguage.googleapis.com"],
                Apply::Header {
                    name: http::HeaderName::from_static("x-goog-api-key"),
                    prefix: String::new(),
                },
            ),
            _ => (&[], Apply::ReplacePlaceholder),
        };
        Self::new(
            service,
            value,
            hosts.iter().map(|h| (*h).to_owned()).collect(),
            apply,
        )
    }
}

fn random_placeholder(service: &str) -> String {
    use rand_like::random_hex;
    format!("sbx-ph-{service}-{}", random_hex())
}

mod rand_like {
    /// 128 random bits as hex, from the OS CSPRNG via ring.
    pub(super) fn random_hex() -> String {
        use rustls::crypto::ring::default_provider;
        let mut bytes = [0u8; 16];
        if default_provider().secure_random.fill(&mut bytes).is_err() {
            // The OS RNG failing is not survivable for a security tool; fall back to a time-derived value would be
            // guessable, so we make the placeholder unique but obviously broken rather than predictable.
            return "rng-unavailable".to_owned();
        }
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// A fixed set of credentials (see [`StaticCredential`]).
#[derive(Debug, Default)]
pub struct StaticInjector {
    creds: Vec<StaticCredential>,
}

impl StaticInjector {
    /// Build from credentials.
    #[must_use]
    pub fn new(creds: Vec<StaticCredential>) -> Self {
        Self { creds }
    }

    /// `(service, placeholder)` pairs to hand to the sandbox.
    #[must_use]
    pub fn placeholders(&self) -> Vec<(String, String)> {
        self.creds
            .iter()
            .map(|c| (c.service.clone(), c.placeholder.clone()))
            .collect()
    }
}

impl CredentialInjector for StaticInjector {
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport {
        let mut report = InjectionReport::default();
        for cred in &self.creds {
            let bound = cred.hosts.iter().any(|h| h == dest.authority)
                && cred.hosts.iter().any(|h| h == dest.connect_host);
            let present = head
                .headers
                .values()
                .any(|v| contains(v.as_bytes(), cred.placeholder.as_bytes()))
                || head
                    .uri
                    .query()
                    .is_some_and(|q| q.contains(&cred.placeholder));
            let entry = (cred.service.clone(), dest.authority.to_owned());
            if !bound {
                if present {
                    report.blocked.push(entry);
                }
                continue;
            }
            let mut applied = present && replace_placeholder(head, &cred.placeholder, &cred.value);
            if let Apply::Header { name, prefix } = &cred.apply
                && let Ok(v) = http::HeaderValue::from_str(&format!("{prefix}{}", cred.value))
            {
                let mut v = v;
                v.set_sensitive(true);
                head.headers.insert(name.clone(), v);
                applied = true;
            }
            if applied {
                report.injected.push(entry);
            }
        }
        report
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn replace_placeholder(head: &mut http::request::Parts, placeholder: &str, value: &str) -> bool {
    let mut changed = false;
    for v in head.headers.values_mut() {
        if let Ok(s) = v.to_str()
            && s.contains(placeholder)
            && let Ok(mut nv) = http::HeaderValue::from_str(&s.replace(placeholder, value))
        {
            nv.set_sensitive(true);
            *v = nv;
            changed = true;
        }
    }
    if let Some(pq) = head.uri.path_and_query()
        && pq.as_str().contains(placeholder)
    {
        let mut parts = head.uri.clone().into_parts();
        parts.path_and_query = pq.as_str().replace(placeholder, value).parse().ok();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            head.uri = uri;
            changed = true;
        }
    }
    changed
}

/// Keeps events in memory (tests, and callers that forward them elsewhere).
#[derive(Debug, Default)]
pub struct MemoryAudit {
    events: Mutex<Vec<AuditEvent>>,
}

impl MemoryAudit {
    /// A copy of the events recorded so far.
    #[must_use]
    pub fn events(&self) -> Vec<AuditEvent> {
        self.events.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

impl AuditSink for MemoryAudit {
    fn record(&self, event: AuditEvent) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(host: &str, port: u16, protocol: Protocol) -> NetworkRequest<'_> {
        NetworkRequest {
            host,
            port,
            protocol,
            method: Some("GET"),
            path: Some("/"),
        }
    }

    #[test]
    fn host_patterns_and_ports() {
        let p = SimplePolicy::parse(&[(
            "t.toml",
            r#"name = "team"
[[network]]
action = "allow"
hosts = ["api.example.com", "*.one.test", "**.many.test", "db.test:5432", "127.0.0.1:8080", "localhost:9000", "10.0.0.0/8:22"]
[[network]]
action = "deny"
hosts = ["bad.many.test"]
"#,
        )])
        .unwrap();
        assert!(
            p.check_network(&req("api.example.com", 443, Protocol::Https))
                .allowed
        );
        assert!(
            !p.check_network(&req("api.example.com", 8443, Protocol::Https))
                .allowed
        );
        assert!(
            !p.check_network(&req("api.example.com", 443, Protocol::Tcp))
                .allowed
        );
        assert!(
            p.check_network(&req("a.one.test", 80, Protocol::Http))
                .allowed
        );
        assert!(
            !p.check_network(&req("a.b.one.test", 80, Protocol::Http))
                .allowed
        );
        assert!(
            p.check_network(&req("a.b.many.test", 80, Protocol::Http))
                .allowed
        );
        let deny = p.check_network(&req("bad.many.test", 443, Protocol::Https));
        assert_eq!(
            (
                deny.allowed,
                deny.reason.as_str(),
                deny.rule.as_deref(),
                deny.layer.as_deref()
            ),
            (false, "matched-deny", Some("bad.many.test"), Some("team"))
        );
        assert!(
            p.check_network(&req("db.test", 5432, Protocol::Tcp))
                .allowed
        );
        assert!(
            p.allows_address("127.0.0.1".parse().unwrap(), 8080, "127.0.0.1")
                .allowed
        );
        assert!(
            p.allows_address("127.0.0.1".parse().unwrap(), 9000, "localhost")
                .allowed
        );
        assert!(
            p.allows_address("10.1.1.1".parse().unwrap(), 22, "x")
                .allowed
        );
        let v = p.allows_address("127.0.0.1".parse().unwrap(), 8081, "127.0.0.1");
        assert_eq!((v.allowed, v.reason.as_str()), (false, "private-address"));
        assert!(
            !p.allows_address("169.254.169.254".parse().unwrap(), 80, "api.example.com")
                .allowed
        );
    }

    #[test]
    fn globs() {
        assert!(glob_match("claude-*-opus-*", "claude-3-opus-2024", false));
        assert!(!glob_match("/repos/*", "/repos/a/b", true));
        assert!(glob_match("/repos/**", "/repos/a/b", true));
    }

    #[test]
    fn placeholders_only_reach_bound_hosts() {
        let cred = StaticCredential::new(
            "svc",
            "s3cret",
            vec!["good.test".into()],
            Apply::ReplacePlaceholder,
        );
        let ph = cred.placeholder.clone();
        let inj = StaticInjector::new(vec![cred]);
        let mk = || {
            http::Request::builder()
                .header("authorization", format!("Bearer {ph}"))
                .body(())
                .unwrap()
                .into_parts()
                .0
        };
        let mut head = mk();
        let r = inj.inject(
            &Destination {
                connect_host: "good.test",
                sni: Some("good.test"),
                authority: "good.test",
            },
            &mut head,
        );
        assert_eq!(head.headers["authorization"], "Bearer s3cret");
        assert_eq!(r.injected, vec![("svc".to_owned(), "good.test".to_owned())]);
        let mut head = mk();
        let r = inj.inject(
            &Destination {
                connect_host: "evil.test",
                sni: Some("evil.test"),
                authority: "evil.test",
            },
            &mut head,
        );
        assert_eq!(
            head.headers["authorization"],
            format!("Bearer {ph}").as_str()
        );
        assert_eq!(r.blocked, vec![("svc".to_owned(), "evil.test".to_owned())]);
        assert!(!format!("{inj:?}").contains("s3cret"));
    }
}
