//! The [`CredentialInjector`] adapters for sbx-secrets' per-sandbox credentials.
//!
//! `SandboxCredentials` itself injects headers and re-signs AWS SigV4 requests. [`SecretsInjector`] wraps it with the
//! provider catalog, which says which custom secrets asked for body substitution, so bodies headed to their bound
//! hosts are buffered and substituted and bodies headed elsewhere are watched for their placeholders.

use http::header::{AUTHORIZATION, HeaderValue};
use sbx_secrets::{Apply, Catalog, SandboxCredentials, Sigv4Error};

use crate::seam::{BodyPlan, CredentialInjector, Destination, InjectionReport, Resign};

const SIGV4_PREFIX: &str = "AWS4-HMAC-SHA256 ";
const CONTENT_SHA256: &str = "x-amz-content-sha256";
const DEFAULT_AWS_SERVICE: &str = "aws";

fn secrets_dest<'a>(dest: &Destination<'a>) -> sbx_secrets::Destination<'a> {
    sbx_secrets::Destination {
        connect_host: Some(dest.connect_host),
        sni: dest.sni,
        authority: Some(dest.authority),
    }
}

fn report(r: sbx_secrets::InjectionReport) -> InjectionReport {
    InjectionReport {
        injected: r.injected,
        blocked: r.blocked,
    }
}

fn aws_key_id(creds: &SandboxCredentials) -> Option<String> {
    creds
        .placeholders_env()
        .into_iter()
        .find_map(|(k, v)| (k == "AWS_ACCESS_KEY_ID").then_some(v))
}

/// A header-signed AWS request made with `key_id` that lacks `x-amz-content-sha256` (every SDK but S3's omits it).
fn header_signed_without_hash(head: &http::request::Parts, key_id: &str) -> bool {
    let signed_by_us = head
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix(SIGV4_PREFIX))
        .is_some_and(|rest| rest.contains(&format!("Credential={key_id}/")));
    signed_by_us && !head.headers.contains_key(CONTENT_SHA256)
}

/// The host value hyper's client sends for the request URI (the port only when it is not the scheme's default): the
/// signature must cover exactly the `Host` the upstream sees.
fn wire_host(uri: &http::Uri) -> Option<String> {
    let host = uri.host()?;
    let default = match uri.scheme_str() {
        Some("https") => 443,
        _ => 80,
    };
    Some(match uri.port_u16() {
        Some(p) if p != default => format!("{host}:{p}"),
        _ => host.to_owned(),
    })
}

fn resign_with(
    creds: &SandboxCredentials,
    service: &str,
    dest: &Destination<'_>,
    head: &mut http::request::Parts,
    payload_sha256: Option<&str>,
) -> Resign {
    // The proxy strips Host and lets hyper write it from the URI; sign the value hyper will write, then leave the
    // header out again so the pooled client sets it the same way.
    let had_host = head.headers.contains_key(http::header::HOST);
    if !had_host
        && let Some(value) = wire_host(&head.uri).and_then(|h| HeaderValue::from_str(&h).ok())
    {
        head.headers.insert(http::header::HOST, value);
    }
    let outcome = creds.resign_sigv4(&secrets_dest(dest), head, payload_sha256);
    if !had_host {
        head.headers.remove(http::header::HOST);
    }
    match outcome {
        Ok(o) if o.chunk_signer.is_some() => Resign::Refused {
            reason: "sigv4-refused (STREAMING-AWS4-HMAC-SHA256-PAYLOAD uploads are not re-signed by the proxy; \
                     send the payload hash or UNSIGNED-PAYLOAD)"
                .into(),
        },
        Ok(o) => Resign::Resigned {
            service: service.to_owned(),
            host: o.host,
        },
        Err(Sigv4Error::NotSigned | Sigv4Error::NoCredentials | Sigv4Error::NotBound { .. }) => {
            Resign::NotApplicable
        }
        Err(e) => Resign::Refused {
            reason: format!("sigv4-refused ({e})"),
        },
    }
}

impl CredentialInjector for SandboxCredentials {
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport {
        report(SandboxCredentials::inject(self, &secrets_dest(dest), head))
    }

    fn needs_payload_hash(&self, _dest: &Destination<'_>, head: &http::request::Parts) -> bool {
        aws_key_id(self).is_some_and(|k| header_signed_without_hash(head, &k))
    }

    fn resign(
        &self,
        dest: &Destination<'_>,
        head: &mut http::request::Parts,
        payload_sha256: Option<&str>,
    ) -> Resign {
        resign_with(self, DEFAULT_AWS_SERVICE, dest, head, payload_sha256)
    }
}

/// One custom secret that asked for body substitution (`apply = [{ kind = "anywhere", body = true }]`).
#[derive(Debug)]
struct BodySecret {
    service: String,
    placeholder: String,
    provider: sbx_secrets::Provider,
}

/// sbx-secrets' credentials plus what the catalog says about them: header injection, body substitution for custom
/// secrets that ask for it (bounded buffering, bound hosts only; a placeholder in a body headed elsewhere is left
/// alone and audited as `placeholder_blocked`) and AWS SigV4 re-signing.
///
/// ```
/// use sbx_netproxy::SecretsInjector;
/// use sbx_secrets::{Catalog, Provider, SandboxCredentials};
///
/// let mut catalog = Catalog::builtin();
/// catalog.add(Provider::custom("internal", "INTERNAL_TOKEN", &["api.internal.example"], true).unwrap());
/// let creds = SandboxCredentials::new("sb-1", &catalog, [("internal".to_owned(), "real-token".into())]).unwrap();
/// let injector = SecretsInjector::new(creds, &catalog);
/// assert!(injector.credentials().placeholder_for("internal").is_some());
/// ```
#[derive(Debug)]
pub struct SecretsInjector {
    creds: SandboxCredentials,
    body_secrets: Vec<BodySecret>,
    aws: Option<(String, String)>,
}

impl SecretsInjector {
    /// Wrap `creds`, made from `catalog` (the same catalog: it names each secret's hosts and how it applies).
    #[must_use]
    pub fn new(creds: SandboxCredentials, catalog: &Catalog) -> Self {
        let body_secrets = catalog
            .providers()
            .filter(|p| {
                p.apply
                    .iter()
                    .any(|a| matches!(a, Apply::Anywhere { body: true }))
            })
            .filter_map(|p| {
                Some(BodySecret {
                    service: p.name.clone(),
                    placeholder: creds.placeholder_for(&p.name)?.to_owned(),
                    provider: p.clone(),
                })
            })
            .collect();
        let aws = catalog
            .providers()
            .filter(|p| p.is_sigv4())
            .find(|p| creds.placeholder_for(&p.name).is_some())
            .and_then(|p| Some((p.name.clone(), aws_key_id(&creds)?)));
        Self {
            creds,
            body_secrets,
            aws,
        }
    }

    /// The wrapped credentials (placeholders for the sandbox's environment).
    #[must_use]
    pub fn credentials(&self) -> &SandboxCredentials {
        &self.creds
    }
}

impl CredentialInjector for SecretsInjector {
    fn inject(&self, dest: &Destination<'_>, head: &mut http::request::Parts) -> InjectionReport {
        CredentialInjector::inject(&self.creds, dest, head)
    }

    fn body_plan(&self, dest: &Destination<'_>, _head: &http::request::Parts) -> BodyPlan {
        if self.body_secrets.is_empty() {
            return BodyPlan::Stream;
        }
        // Buffer only when the destination is one unambiguous host bound to a body secret; otherwise watch.
        let host = sbx_secrets::host::resolve_names(&secrets_dest(dest)).ok();
        let bound = |s: &&BodySecret| host.as_deref().is_some_and(|h| s.provider.is_bound_to(h));
        if self.body_secrets.iter().any(|s| bound(&s)) {
            return BodyPlan::Buffer;
        }
        BodyPlan::Watch(
            self.body_secrets
                .iter()
                .map(|s| (s.service.clone(), s.placeholder.clone()))
                .collect(),
        )
    }

    fn inject_body(&self, dest: &Destination<'_>, body: &mut Vec<u8>) -> InjectionReport {
        report(self.creds.inject_body(&secrets_dest(dest), body))
    }

    fn needs_payload_hash(&self, _dest: &Destination<'_>, head: &http::request::Parts) -> bool {
        self.aws
            .as_ref()
            .is_some_and(|(_, key_id)| header_signed_without_hash(head, key_id))
    }

    fn resign(
        &self,
        dest: &Destination<'_>,
        head: &mut http::request::Parts,
        payload_sha256: Option<&str>,
    ) -> Resign {
        match &self.aws {
            Some((service, _)) => resign_with(&self.creds, service, dest, head, payload_sha256),
            None => Resign::NotApplicable,
        }
    }
}
