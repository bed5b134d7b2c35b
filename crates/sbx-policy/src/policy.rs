//! The compiled policy and network decisions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::decision::{Decision, Reason};
use crate::host::{CanonicalHost, canonical_host};
use crate::index::{EntryRef, HostIndex, NetIndex};
use crate::ip::canonical_ip;
use crate::layer::{Action, LayerLevel, ModelRule, MountRule, PolicyLayer, Preset, SettingRule};
use crate::path::{PathPattern, normalize_path};
use crate::target::{HostSpec, PortSpec};

/// How a connection reaches its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// Plain HTTP.
    Http,
    /// HTTPS (TLS).
    Https,
    /// Any other TCP stream: needs a rule with an explicit port.
    Tcp,
}

/// One outbound request or connection to decide on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NetworkRequest<'a> {
    /// The destination host as the client named it (name, IPv4, `[IPv6]`, any case, trailing dot).
    pub host: &'a str,
    /// The destination port.
    pub port: u16,
    /// How it is reached.
    pub protocol: Protocol,
    /// The HTTP method, when known.
    pub method: Option<&'a str>,
    /// The raw request path (query allowed; the policy normalises it), when known.
    pub path: Option<&'a str>,
}

impl<'a> NetworkRequest<'a> {
    /// A connection-level request (no method or path yet).
    pub fn new(host: &'a str, port: u16, protocol: Protocol) -> Self {
        NetworkRequest {
            host,
            port,
            protocol,
            method: None,
            path: None,
        }
    }

    /// An HTTPS request on port 443 with method and path.
    pub fn https(host: &'a str, method: &'a str, path: &'a str) -> Self {
        Self::new(host, 443, Protocol::Https)
            .with_method(method)
            .with_path(path)
    }

    /// Sets the HTTP method.
    pub fn with_method(mut self, method: &'a str) -> Self {
        self.method = Some(method);
        self
    }

    /// Sets the raw request path.
    pub fn with_path(mut self, path: &'a str) -> Self {
        self.path = Some(path);
        self
    }
}

/// One layer's identity inside the compiled policy.
#[derive(Debug, Clone)]
pub(crate) struct LayerInfo {
    pub(crate) level: LayerLevel,
    pub(crate) name: String,
}

/// A network rule after compilation.
#[derive(Debug)]
struct CompiledRule {
    layer: usize,
    action: Action,
    methods: Option<Vec<String>>,
    paths: Option<Vec<PathPattern>>,
    /// Per target: its port spec and the rule as written, for explanations.
    targets: Vec<(PortSpec, String)>,
}

/// Layers combined into one immutable, thread-safe decision engine.
///
/// Cheap to share (`Arc<Policy>`); every check is a read-only lookup.
#[derive(Debug)]
pub struct Policy {
    pub(crate) layers: Vec<LayerInfo>,
    /// Index of the highest layer with `enforced = true`: allows below it grant nothing.
    pub(crate) cutoff: Option<usize>,
    rules: Vec<CompiledRule>,
    names: HostIndex,
    nets: NetIndex,
    localhost: Vec<EntryRef>,
    default: Decision,
    pub(crate) models: Vec<(usize, ModelRule)>,
    pub(crate) mounts: Vec<(usize, MountRule)>,
    pub(crate) settings: Vec<BTreeMap<String, SettingRule>>,
}

/// What one request looks like to the rule matcher.
struct MatchCtx<'a> {
    port: u16,
    /// `None` for an address check, where only the port is known.
    protocol: Option<Protocol>,
    method: Option<&'a str>,
    path: Option<&'a str>,
}

/// Best matching entries seen so far (lowest rule index = highest authority).
#[derive(Default)]
struct Scan {
    deny: Option<EntryRef>,
    allow: Option<EntryRef>,
    conditional: Option<EntryRef>,
    blocked: Option<EntryRef>,
}

fn keep_min(slot: &mut Option<EntryRef>, entry: EntryRef) {
    if slot.is_none_or(|current| entry < current) {
        *slot = Some(entry);
    }
}

/// Whether a rule's method/path limits hold for a request.
#[derive(PartialEq, Eq)]
enum Applies {
    Yes,
    No,
    /// The request does not say (connection level): cannot tell yet.
    Unknown,
}

impl Policy {
    /// Compiles layers into a policy. Order within one level is kept; levels are sorted from
    /// company (highest authority) to sandbox.
    pub fn new(layers: Vec<(LayerLevel, PolicyLayer)>) -> Self {
        let mut layers = layers;
        layers.sort_by_key(|(level, _)| *level);
        let cutoff = layers.iter().position(|(_, l)| l.enforced);
        let mut policy = Policy {
            layers: Vec::with_capacity(layers.len()),
            cutoff,
            rules: Vec::new(),
            names: HostIndex::default(),
            nets: NetIndex::default(),
            localhost: Vec::new(),
            default: Decision::new(false, Reason::DefaultDeny),
            models: Vec::new(),
            mounts: Vec::new(),
            settings: Vec::new(),
        };
        for (index, (level, layer)) in layers.iter().enumerate() {
            policy.layers.push(LayerInfo {
                level: *level,
                name: layer.name.clone(),
            });
            policy.add_layer(index, layer);
        }
        policy.default = policy.default_decision(&layers);
        policy
    }

    fn add_layer(&mut self, index: usize, layer: &PolicyLayer) {
        for rule in &layer.network {
            let rule_id = u32::try_from(self.rules.len()).unwrap_or(u32::MAX);
            let limits = describe_limits(rule.methods.as_deref(), rule.paths.as_deref());
            let mut targets = Vec::with_capacity(rule.targets.len());
            for (target_id, (target, origin)) in rule.targets.iter().enumerate() {
                let entry = (rule_id, u32::try_from(target_id).unwrap_or(u32::MAX));
                match &target.host {
                    HostSpec::Name(pattern) => self.names.insert(pattern, entry),
                    HostSpec::Net(net) => self.nets.insert(net, entry),
                    HostSpec::Localhost => self.localhost.push(entry),
                }
                let written = format!("{} {}{limits} ({origin})", rule.action, target.text);
                targets.push((target.port, written));
            }
            self.rules.push(CompiledRule {
                layer: index,
                action: rule.action,
                methods: rule.methods.clone(),
                paths: rule
                    .paths
                    .as_ref()
                    .map(|p| p.iter().map(|(pattern, _)| pattern.clone()).collect()),
                targets,
            });
        }
        self.models
            .extend(layer.models.iter().map(|m| (index, m.clone())));
        self.mounts
            .extend(layer.mounts.iter().map(|m| (index, m.clone())));
        self.settings.push(layer.settings.clone());
    }

    /// The answer when no rule matches: deny, unless a layer uses the `open` preset, no layer uses
    /// a stricter one, and no enforced layer sits above it.
    fn default_decision(&self, layers: &[(LayerLevel, PolicyLayer)]) -> Decision {
        let strict = layers
            .iter()
            .position(|(_, l)| matches!(l.preset, Some(Preset::Balanced | Preset::LockedDown)));
        let open = layers
            .iter()
            .position(|(_, l)| l.preset == Some(Preset::Open));
        match (strict, open) {
            (Some(i), _) => Decision::new(false, Reason::DefaultDeny)
                .with_rule(
                    format!("preset = \"{}\"", preset_name(&layers[i].1)),
                    &self.layers[i].name,
                )
                .with_note("no rule matched"),
            (None, Some(i)) if !self.counts(i) => {
                self.enforced_deny(i, "preset = \"open\"".to_owned())
            }
            (None, Some(i)) => Decision::new(true, Reason::DefaultAllow)
                .with_rule("preset = \"open\"", &self.layers[i].name),
            (None, None) => Decision::new(false, Reason::DefaultDeny).with_note("no rule matched"),
        }
    }

    /// True when allows from layer `index` can grant (it is not below an enforced layer).
    pub(crate) fn counts(&self, index: usize) -> bool {
        self.cutoff.is_none_or(|c| index <= c)
    }

    /// The deny given when an allow (written as `rule`, in layer `index`) sits below an enforced layer.
    pub(crate) fn enforced_deny(&self, index: usize, rule: String) -> Decision {
        let cutoff = self
            .cutoff
            .unwrap_or(0)
            .min(self.layers.len().saturating_sub(1));
        let Some(enforcer) = self.layers.get(cutoff) else {
            return Decision::new(false, Reason::DefaultDeny);
        };
        let layer = self.layers.get(index).map_or("", |l| l.name.as_str());
        Decision::new(false, Reason::EnforcedBy(enforcer.level))
            .with_rule(rule, layer)
            .with_note(format!(
                "layer `{}` ({}) is enforced: allows from layers below it grant nothing",
                enforcer.name, enforcer.level
            ))
    }

    /// Number of compiled network rules (one per `[[network]]` table, preset groups included).
    pub fn network_rule_count(&self) -> usize {
        self.rules.len()
    }

    /// Names and levels of the layers, highest authority first.
    pub fn layers(&self) -> impl Iterator<Item = (LayerLevel, &str)> {
        self.layers.iter().map(|l| (l.level, l.name.as_str()))
    }

    /// Decides on a network request. A deny rule that matches wins over every allow; otherwise
    /// an allow from a layer not below an enforced one grants; otherwise the default applies.
    ///
    /// With `method` and `path` both `None` on HTTP(S) (a connection-level check, e.g. a CONNECT
    /// before TLS interception), an allow limited to methods or paths admits the connection with
    /// [`Decision::conditional`] set: check every request inside it again. Raw TCP cannot be
    /// inspected, so there such allows grant nothing and such denies apply in full.
    pub fn check_network(&self, request: &NetworkRequest<'_>) -> Decision {
        let host = match canonical_host(request.host) {
            Ok(host) => host,
            Err(message) => return Decision::new(false, Reason::InvalidRequest).with_note(message),
        };
        let method = request.method.map(str::to_ascii_uppercase);
        let path = request.path.map(normalize_path);
        let ctx = MatchCtx {
            port: request.port,
            protocol: Some(request.protocol),
            method: method.as_deref(),
            path: path.as_deref(),
        };
        let mut scan = Scan::default();
        self.host_candidates(&host, |entry| self.consider(&mut scan, entry, &ctx));
        self.decide(&scan)
    }

    /// The proxy's private-address exception: may a connection go to `ip:port`, a private or
    /// loopback address (`host` is the name the client used)? Only when an allow rule names that
    /// address or a CIDR holding it (or `localhost:PORT` for loopback), from a layer that counts,
    /// and no deny matches the address or the name. Otherwise a deny with reason `private-address`.
    pub fn allows_address(&self, ip: IpAddr, port: u16, host: &str) -> Decision {
        let ip = canonical_ip(ip);
        let ctx = MatchCtx {
            port,
            protocol: None,
            method: None,
            path: None,
        };
        let mut by_name = Scan::default();
        if let Ok(name @ CanonicalHost::Name(_)) = canonical_host(host) {
            self.host_candidates(&name, |entry| self.consider(&mut by_name, entry, &ctx));
        }
        let mut by_addr = Scan::default();
        self.host_candidates(&CanonicalHost::Ip(ip), |entry| {
            self.consider(&mut by_addr, entry, &ctx)
        });
        let deny = [by_name.deny, by_addr.deny].into_iter().flatten().min();
        if let Some(entry) = deny {
            return self.rule_decision(entry, false, Reason::MatchedDeny);
        }
        if let Some(entry) = by_addr.allow.or(by_addr.conditional) {
            return self.rule_decision(entry, true, Reason::MatchedAllow);
        }
        if let Some(entry) = by_addr.blocked {
            return self.enforced_deny(self.rule_layer(entry), self.written(entry));
        }
        Decision::new(false, Reason::PrivateAddress).with_note(format!(
            "`{host}` resolves to the private address {ip}; only a rule naming the address \
             (or a CIDR holding it, or localhost:PORT) may allow it"
        ))
    }

    /// Calls `found` for every entry whose host part matches.
    fn host_candidates(&self, host: &CanonicalHost, mut found: impl FnMut(EntryRef)) {
        match host {
            CanonicalHost::Name(name) => {
                let labels: Vec<&str> = name.split('.').collect();
                self.names.lookup(&labels, &mut found);
                if name == "localhost" {
                    self.localhost.iter().copied().for_each(&mut found);
                }
            }
            CanonicalHost::Ip(ip) => {
                self.nets.lookup(*ip, &mut found);
                if ip.is_loopback() {
                    self.localhost.iter().copied().for_each(&mut found);
                }
            }
        }
    }

    /// Files one candidate entry into the scan when its port and limits apply.
    fn consider(&self, scan: &mut Scan, entry: EntryRef, ctx: &MatchCtx<'_>) {
        let Some(rule) = self.rules.get(entry.0 as usize) else {
            return;
        };
        let Some((port, _)) = rule.targets.get(entry.1 as usize) else {
            return;
        };
        if !port_applies(*port, rule.action, ctx) {
            return;
        }
        let applies = limits_apply(rule, ctx);
        let raw_tcp = ctx.protocol == Some(Protocol::Tcp);
        match (rule.action, applies) {
            (_, Applies::No) => {}
            (Action::Deny, Applies::Yes) => keep_min(&mut scan.deny, entry),
            (Action::Deny, Applies::Unknown) if raw_tcp => keep_min(&mut scan.deny, entry),
            (Action::Deny, Applies::Unknown) => {}
            (Action::Allow, _) if !self.counts(rule.layer) => keep_min(&mut scan.blocked, entry),
            (Action::Allow, Applies::Yes) => keep_min(&mut scan.allow, entry),
            (Action::Allow, Applies::Unknown) if raw_tcp => {}
            (Action::Allow, Applies::Unknown) => keep_min(&mut scan.conditional, entry),
        }
    }

    fn decide(&self, scan: &Scan) -> Decision {
        if let Some(entry) = scan.deny {
            return self.rule_decision(entry, false, Reason::MatchedDeny);
        }
        if let Some(entry) = scan.allow {
            return self.rule_decision(entry, true, Reason::MatchedAllow);
        }
        if let Some(entry) = scan.conditional {
            let mut decision = self
                .rule_decision(entry, true, Reason::MatchedAllow)
                .with_note(
                    "the rule is limited to some methods or paths: each request must be checked",
                );
            decision.conditional = true;
            return decision;
        }
        if let Some(entry) = scan.blocked {
            return self.enforced_deny(self.rule_layer(entry), self.written(entry));
        }
        self.default.clone()
    }

    fn rule_layer(&self, entry: EntryRef) -> usize {
        self.rules.get(entry.0 as usize).map_or(0, |r| r.layer)
    }

    fn written(&self, entry: EntryRef) -> String {
        self.rules
            .get(entry.0 as usize)
            .and_then(|r| r.targets.get(entry.1 as usize))
            .map(|(_, w)| w.clone())
            .unwrap_or_default()
    }

    fn rule_decision(&self, entry: EntryRef, allowed: bool, reason: Reason) -> Decision {
        let layer = self
            .layers
            .get(self.rule_layer(entry))
            .map_or("", |l| l.name.as_str());
        Decision::new(allowed, reason).with_rule(self.written(entry), layer)
    }
}

fn preset_name(layer: &PolicyLayer) -> &'static str {
    layer.preset.map_or("", Preset::as_str)
}

/// A rule without a port covers HTTP(S) on 80/443 when allowing, and every port when denying.
fn port_applies(spec: PortSpec, action: Action, ctx: &MatchCtx<'_>) -> bool {
    match spec {
        PortSpec::Exact(port) => port == ctx.port,
        PortSpec::Web => match action {
            Action::Deny => true,
            Action::Allow => matches!(ctx.port, 80 | 443) && ctx.protocol != Some(Protocol::Tcp),
        },
    }
}

fn limits_apply(rule: &CompiledRule, ctx: &MatchCtx<'_>) -> Applies {
    let method = match (&rule.methods, ctx.method) {
        (None, _) => Applies::Yes,
        (Some(list), Some(m)) if list.iter().any(|l| l == m) => Applies::Yes,
        (Some(_), Some(_)) => Applies::No,
        (Some(_), None) => Applies::Unknown,
    };
    let path = match (&rule.paths, ctx.path) {
        (None, _) => Applies::Yes,
        (Some(list), Some(p)) if list.iter().any(|g| g.matches(p)) => Applies::Yes,
        (Some(_), Some(_)) => Applies::No,
        (Some(_), None) => Applies::Unknown,
    };
    if method == Applies::No || path == Applies::No {
        Applies::No
    } else if method == Applies::Unknown || path == Applies::Unknown {
        Applies::Unknown
    } else {
        Applies::Yes
    }
}

/// ` methods=GET,HEAD paths=/a/**` for explanations.
fn describe_limits(methods: Option<&[String]>, paths: Option<&[(PathPattern, String)]>) -> String {
    let mut out = String::new();
    if let Some(methods) = methods {
        out.push_str(" methods=");
        out.push_str(&methods.join(","));
    }
    if let Some(paths) = paths {
        out.push_str(" paths=");
        let texts: Vec<&str> = paths.iter().map(|(_, t)| t.as_str()).collect();
        out.push_str(&texts.join(","));
    }
    out
}
