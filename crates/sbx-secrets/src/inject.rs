//! Per-sandbox credentials: placeholders for the sandbox's environment, and injection of the
//! real values into requests bound for the right hosts.

use std::collections::BTreeMap;

use base64::Engine as _;
use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use zeroize::Zeroizing;

use crate::catalog::{Apply, Catalog, Provider};
use crate::error::CredentialsError;
use crate::host::{Destination, resolve_destination, resolve_names};
use crate::placeholder;
use crate::sigv4::{AwsCredentials, percent_decode, uri_encode};
use crate::value::{SecretKey, SecretValue};

/// What [`SandboxCredentials::inject`] did: `(service, host)` pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InjectionReport {
    /// Placeholders replaced by their real value (audit: `secret_injected`).
    pub injected: Vec<(String, String)>,
    /// Placeholders left untouched because the destination is not a host their secret is bound
    /// to, or the destination is ambiguous, or they sit where the provider's secret does not
    /// belong (audit: `placeholder_blocked`; a possible exfiltration attempt).
    pub blocked: Vec<(String, String)>,
}

impl InjectionReport {
    fn push(list: &mut Vec<(String, String)>, service: &str, host: &str) {
        let entry = (service.to_owned(), host.to_owned());
        if !list.contains(&entry) {
            list.push(entry);
        }
    }
}

/// One secret made available to a sandbox.
pub(crate) struct BoundSecret {
    pub(crate) provider: Provider,
    pub(crate) placeholder: String,
    pub(crate) value: SecretValue,
    pub(crate) aws: Option<AwsBinding>,
}

/// AWS: the sandbox signs with placeholder credentials; the proxy re-signs with the real ones.
pub(crate) struct AwsBinding {
    pub(crate) real: AwsCredentials,
    pub(crate) key_id: String,
    pub(crate) token: Option<String>,
}

impl BoundSecret {
    fn placeholders(&self) -> impl Iterator<Item = &str> {
        let aws = self
            .aws
            .iter()
            .flat_map(|a| std::iter::once(a.key_id.as_str()).chain(a.token.as_deref()));
        std::iter::once(self.placeholder.as_str()).chain(aws)
    }

    fn appears_in(&self, text: &[u8]) -> bool {
        self.placeholders().any(|p| contains(text, p.as_bytes()))
    }
}

/// A sandbox's secrets with their placeholders. The placeholder → value map lives only here,
/// on the host; the sandbox sees [`placeholders_env`](Self::placeholders_env) only.
pub struct SandboxCredentials {
    sandbox: String,
    pub(crate) bound: Vec<BoundSecret>,
}

impl std::fmt::Debug for SandboxCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let services: Vec<&str> = self
            .bound
            .iter()
            .map(|b| b.provider.name.as_str())
            .collect();
        f.debug_struct("SandboxCredentials")
            .field("sandbox", &self.sandbox)
            .field("services", &services)
            .finish()
    }
}

impl SandboxCredentials {
    /// Makes fresh placeholders for `sandbox` for each `(service, value)` in `secrets` (e.g.
    /// from [`SecretStore::effective_for`](crate::SecretStore::effective_for)). Every service
    /// must be in `catalog`.
    pub fn new(
        sandbox: &str,
        catalog: &Catalog,
        secrets: impl IntoIterator<Item = (String, SecretValue)>,
    ) -> Result<Self, CredentialsError> {
        SecretKey::sandbox(sandbox, "probe")?;
        let mut bound = Vec::new();
        for (service, value) in secrets {
            let provider = catalog
                .get(&service)
                .ok_or_else(|| CredentialsError::UnknownService {
                    service: service.clone(),
                })?
                .clone();
            let aws = if provider.is_sigv4() {
                let real =
                    AwsCredentials::parse(&value).ok_or(CredentialsError::BadAwsCredentials)?;
                let token = match real.session_token {
                    Some(_) => Some(placeholder::generate(&service)?),
                    None => None,
                };
                Some(AwsBinding {
                    real,
                    key_id: placeholder::generate_aws_key_id()?,
                    token,
                })
            } else {
                None
            };
            bound.push(BoundSecret {
                placeholder: placeholder::generate(&service)?,
                provider,
                value,
                aws,
            });
        }
        Ok(Self {
            sandbox: sandbox.to_owned(),
            bound,
        })
    }

    /// The sandbox these credentials belong to.
    pub fn sandbox(&self) -> &str {
        &self.sandbox
    }

    /// Env var → placeholder, for the sandbox's environment. AWS gets a placeholder access key
    /// id, secret access key and (when the real credentials have one) session token.
    pub fn placeholders_env(&self) -> Vec<(String, String)> {
        let mut env = BTreeMap::new();
        for b in &self.bound {
            match &b.aws {
                Some(aws) => {
                    env.insert("AWS_ACCESS_KEY_ID".to_owned(), aws.key_id.clone());
                    env.insert("AWS_SECRET_ACCESS_KEY".to_owned(), b.placeholder.clone());
                    if let Some(token) = &aws.token {
                        env.insert("AWS_SESSION_TOKEN".to_owned(), token.clone());
                    }
                }
                None => {
                    for var in &b.provider.env {
                        env.insert(var.clone(), b.placeholder.clone());
                    }
                }
            }
        }
        env.into_iter().collect()
    }

    /// The placeholder of `service`, if this sandbox has that secret.
    pub fn placeholder_for(&self, service: &str) -> Option<&str> {
        self.bound
            .iter()
            .find(|b| b.provider.name == service)
            .map(|b| b.placeholder.as_str())
    }

    /// Replaces placeholders in the request head with real values where the destination is a
    /// host the secret is bound to and the placeholder sits where the provider applies its
    /// secret (the configured header and scheme, basic-auth, query parameter; anywhere in the
    /// headers for custom secrets). Everything else is left untouched and reported as
    /// blocked. If the CONNECT target, SNI, authority, absolute URI and Host headers do not
    /// all name one host, nothing is injected. AWS SigV4 is handled by
    /// [`resign_sigv4`](Self::resign_sigv4); AWS placeholders bound for AWS hosts are left for
    /// it and not reported here.
    ///
    /// Injected header values are marked sensitive (HPACK never-indexed, hidden from `Debug`).
    pub fn inject(
        &self,
        dest: &Destination<'_>,
        head: &mut http::request::Parts,
    ) -> InjectionReport {
        let mut report = InjectionReport::default();
        if self.bound.is_empty() {
            return report;
        }
        let host = resolve_destination(dest, head).ok();
        let label = host.clone().unwrap_or_else(|| claimed_host(dest, head));
        let ctx = Ctx {
            host: host.as_deref(),
            label: &label,
        };
        self.inject_headers(&ctx, head, &mut report);
        self.inject_uri(&ctx, head, &mut report);
        report
    }

    /// Replaces placeholders of custom secrets that asked for body replacement (`anywhere`
    /// with `body = true`) in a request body, when `dest` names one bound host. The caller
    /// must fix `Content-Length` afterwards (the length changes).
    pub fn inject_body(&self, dest: &Destination<'_>, body: &mut Vec<u8>) -> InjectionReport {
        let mut report = InjectionReport::default();
        let host = resolve_names(dest).ok();
        let label = host.clone().unwrap_or_else(|| {
            dest.authority
                .or(dest.sni)
                .unwrap_or("unknown")
                .to_ascii_lowercase()
        });
        for b in &self.bound {
            let wants_body = b
                .provider
                .apply
                .iter()
                .any(|a| matches!(a, Apply::Anywhere { body: true }));
            if !wants_body || !contains(body, b.placeholder.as_bytes()) {
                continue;
            }
            match host.as_deref() {
                Some(h) if b.provider.is_bound_to(h) => {
                    let replaced =
                        replace_bytes(body, b.placeholder.as_bytes(), b.value.expose().as_bytes());
                    *body = replaced;
                    InjectionReport::push(&mut report.injected, &b.provider.name, h);
                }
                _ => InjectionReport::push(&mut report.blocked, &b.provider.name, &label),
            }
        }
        report
    }

    fn inject_headers(
        &self,
        ctx: &Ctx<'_>,
        head: &mut http::request::Parts,
        report: &mut InjectionReport,
    ) {
        let names: Vec<HeaderName> = head.headers.keys().cloned().collect();
        for name in names {
            let values: Vec<HeaderValue> = head.headers.get_all(&name).iter().cloned().collect();
            if !values
                .iter()
                .any(|v| might_hold_placeholder(&searchable(&name, v)))
            {
                continue;
            }
            let rewritten: Vec<HeaderValue> = values
                .into_iter()
                .map(|v| self.rewrite_header(ctx, &name, v, report))
                .collect();
            head.headers.remove(&name);
            for value in rewritten {
                head.headers.append(name.clone(), value);
            }
        }
    }

    fn rewrite_header(
        &self,
        ctx: &Ctx<'_>,
        name: &HeaderName,
        value: HeaderValue,
        report: &mut InjectionReport,
    ) -> HeaderValue {
        let view = searchable(name, &value);
        let mut text: Zeroizing<String> = match std::str::from_utf8(value.as_bytes()) {
            Ok(t) => Zeroizing::new(t.to_owned()),
            Err(_) => {
                for b in self.bound.iter().filter(|b| b.appears_in(&view)) {
                    InjectionReport::push(&mut report.blocked, &b.provider.name, ctx.label);
                }
                return value;
            }
        };
        let mut injected = Vec::new();
        let present: Vec<&BoundSecret> =
            self.bound.iter().filter(|b| b.appears_in(&view)).collect();
        for b in present {
            match ctx.host {
                Some(h) if b.provider.is_bound_to(h) && b.aws.is_some() => {}
                Some(h) if b.provider.is_bound_to(h) => match apply_in_header(b, name, &text) {
                    Some(new) => {
                        text = new;
                        injected.push(b.provider.name.as_str());
                    }
                    None => InjectionReport::push(&mut report.blocked, &b.provider.name, h),
                },
                _ => InjectionReport::push(&mut report.blocked, &b.provider.name, ctx.label),
            }
        }
        if injected.is_empty() {
            return value;
        }
        match HeaderValue::from_str(&text) {
            Ok(mut new) => {
                new.set_sensitive(true);
                for service in injected {
                    InjectionReport::push(&mut report.injected, service, ctx.label);
                }
                new
            }
            Err(_) => {
                // The real value cannot be carried in a header (control characters): send the
                // placeholder rather than a mangled secret.
                for service in injected {
                    InjectionReport::push(&mut report.blocked, service, ctx.label);
                }
                value
            }
        }
    }

    fn inject_uri(
        &self,
        ctx: &Ctx<'_>,
        head: &mut http::request::Parts,
        report: &mut InjectionReport,
    ) {
        let Some(pq) = head.uri.path_and_query() else {
            return;
        };
        if !might_hold_placeholder(pq.as_str().as_bytes()) {
            return;
        }
        let path = pq.path().to_owned();
        let query = pq.query().map(str::to_owned);
        for b in self.bound.iter().filter(|b| b.appears_in(path.as_bytes())) {
            match ctx.host {
                Some(h) if b.provider.is_bound_to(h) && b.aws.is_some() => {}
                _ => InjectionReport::push(&mut report.blocked, &b.provider.name, ctx.label),
            }
        }
        let Some(query) = query else { return };
        let mut changed = false;
        let mut pairs: Vec<Zeroizing<String>> = Vec::new();
        for pair in query.split('&') {
            let new = self.rewrite_query_pair(ctx, pair, report);
            changed |= new.is_some();
            pairs.push(new.unwrap_or_else(|| Zeroizing::new(pair.to_owned())));
        }
        if !changed {
            return;
        }
        let joined: Vec<&str> = pairs.iter().map(|p| p.as_str()).collect();
        let new_pq = format!("{path}?{}", joined.join("&"));
        let mut parts = head.uri.clone().into_parts();
        parts.path_and_query = http::uri::PathAndQuery::from_maybe_shared(new_pq).ok();
        if let Ok(uri) = http::Uri::from_parts(parts) {
            head.uri = uri;
        }
    }

    fn rewrite_query_pair(
        &self,
        ctx: &Ctx<'_>,
        pair: &str,
        report: &mut InjectionReport,
    ) -> Option<Zeroizing<String>> {
        let (name, raw_value) = pair.split_once('=').unwrap_or((pair, ""));
        let value = Zeroizing::new(percent_decode(raw_value));
        let mut out = None;
        for b in self
            .bound
            .iter()
            .filter(|b| b.appears_in(pair.as_bytes()) || b.appears_in(&value))
        {
            let bound_host = ctx.host.filter(|h| b.provider.is_bound_to(h));
            match bound_host {
                Some(_) if b.aws.is_some() => {}
                Some(h) => {
                    let param_ok = b.provider.apply.iter().any(|a| matches!(a, Apply::Query { name: n } if n.as_bytes() == percent_decode(name)));
                    if param_ok && *value == b.placeholder.as_bytes() {
                        out = Some(Zeroizing::new(format!(
                            "{name}={}",
                            uri_encode(b.value.expose().as_bytes(), false)
                        )));
                        InjectionReport::push(&mut report.injected, &b.provider.name, h);
                    } else {
                        InjectionReport::push(&mut report.blocked, &b.provider.name, h);
                    }
                }
                None => InjectionReport::push(&mut report.blocked, &b.provider.name, ctx.label),
            }
        }
        out
    }
}

struct Ctx<'a> {
    /// The established destination, if all names agreed.
    host: Option<&'a str>,
    /// What to report as the host (the destination, or the name the request claimed).
    label: &'a str,
}

/// Best-effort host name for reports when the destination is ambiguous.
fn claimed_host(dest: &Destination<'_>, head: &http::request::Parts) -> String {
    let host_header = head
        .headers
        .get(http::header::HOST)
        .and_then(|v| v.to_str().ok());
    let uri_host = head.uri.host();
    [
        dest.authority,
        host_header,
        uri_host,
        dest.sni,
        dest.connect_host,
    ]
    .into_iter()
    .flatten()
    .next()
    .unwrap_or("unknown")
    .to_ascii_lowercase()
}

/// Applies `b`'s provider rules to one header value; `None` if the placeholder is not where
/// any rule puts the secret.
fn apply_in_header(b: &BoundSecret, name: &HeaderName, text: &str) -> Option<Zeroizing<String>> {
    let real = b.value.expose();
    let ph = b.placeholder.as_str();
    b.provider.apply.iter().find_map(|apply| match apply {
        Apply::Header { name: n, scheme } if name.as_str().eq_ignore_ascii_case(n) => {
            let trimmed = text.trim();
            match scheme {
                None => (trimmed == ph).then(|| Zeroizing::new(real.to_owned())),
                Some(s) => {
                    let (given, rest) = trimmed.split_once(' ')?;
                    (given.eq_ignore_ascii_case(s) && rest.trim() == ph)
                        .then(|| Zeroizing::new(format!("{given} {real}")))
                }
            }
        }
        Apply::BasicAuth if *name == AUTHORIZATION => basic_auth(text, ph, real),
        Apply::Anywhere { .. } => Some(Zeroizing::new(text.replace(ph, real))),
        _ => None,
    })
}

/// `Basic base64(user:pass)` with the placeholder as password (or as user name, as when a
/// token is put in a URL's user part) → the same with the real value.
fn basic_auth(text: &str, ph: &str, real: &str) -> Option<Zeroizing<String>> {
    let (scheme, encoded) = text.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let engine = base64::engine::general_purpose::STANDARD;
    let decoded = Zeroizing::new(engine.decode(encoded.trim()).ok()?);
    let decoded = std::str::from_utf8(&decoded).ok()?;
    let (user, pass) = decoded.split_once(':')?;
    let replaced = if pass == ph {
        Zeroizing::new(format!("{user}:{real}"))
    } else if user == ph {
        Zeroizing::new(format!("{real}:{pass}"))
    } else {
        return None;
    };
    Some(Zeroizing::new(format!(
        "{scheme} {}",
        engine.encode(replaced.as_bytes())
    )))
}

/// The bytes to search a header value for placeholders: the value itself, plus the decoded
/// credentials of `Authorization: Basic` (where git puts a token, base64-encoded).
fn searchable(name: &HeaderName, value: &HeaderValue) -> Zeroizing<Vec<u8>> {
    let mut view = Zeroizing::new(value.as_bytes().to_vec());
    if *name == AUTHORIZATION || *name == http::header::PROXY_AUTHORIZATION {
        let text = String::from_utf8_lossy(value.as_bytes());
        let decoded = text
            .trim()
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("basic"))
            .and_then(|(_, encoded)| {
                base64::engine::general_purpose::STANDARD
                    .decode(encoded.trim())
                    .ok()
            });
        if let Some(decoded) = decoded {
            let decoded = Zeroizing::new(decoded);
            view.push(b'\n');
            view.extend_from_slice(&decoded);
        }
    }
    view
}

/// Cheap pre-filter: can these bytes hold any sbx placeholder at all?
fn might_hold_placeholder(bytes: &[u8]) -> bool {
    contains(bytes, placeholder::PREFIX.as_bytes())
        || contains(bytes, placeholder::AWS_KEY_ID_PREFIX.as_bytes())
}

pub(crate) fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

fn replace_bytes(haystack: &[u8], needle: &[u8], replacement: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(haystack.len());
    let mut i = 0;
    while i < haystack.len() {
        if haystack[i..].starts_with(needle) {
            out.extend_from_slice(replacement);
            i += needle.len();
        } else {
            out.push(haystack[i]);
            i += 1;
        }
    }
    out
}
