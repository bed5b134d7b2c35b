//! The host-side egress proxy every sbx sandbox connection goes through.
//!
//! Each sandbox reaches the proxy over its own ingress (a Unix domain socket, optionally a loopback TCP port), so every
//! connection is tagged with its sandbox. For every request the proxy decides with the sandbox's policy
//! ([`EgressPolicy`]), injects credentials bound to the destination ([`CredentialInjector`]) and records what
//! happened ([`AuditSink`]).
//!
//! What it serves:
//! - a forward proxy: absolute-form HTTP and CONNECT; HTTPS is intercepted with the installation's sandbox CA
//!   ([`CertificateAuthority`]: ECDSA P-256, made once per state dir, leaves per host cached in an LRU, IP SANs for IP
//!   hosts), HTTP/1.1 and HTTP/2 on both sides (ALPN), WebSocket upgrades, streamed bodies (nothing is buffered except
//!   model-gated request bodies and model lists, both bounded);
//! - transparent mode ([`Ingress::Transparent`]): a redirected connection is classified by its TLS SNI or HTTP Host;
//!   bytes that are neither are relayed only under an explicit `host:port` / `ip:port` rule, otherwise refused and
//!   audited — the same rule applies inside CONNECT tunnels, so an allowed CONNECT is never a raw-tunnel bypass;
//! - DNS on the host: the proxy resolves, refuses loopback/private/ULA/link-local (incl. 169.254.169.254)/multicast/
//!   unspecified and their IPv4-mapped/compatible/NAT64/6to4 IPv6 forms unless a rule names the address (reason
//!   `private-address`), and connects to exactly the address it checked (no DNS-rebinding window);
//! - upstream TLS verified against webpki + system roots + configured extra CAs; optional chaining through an upstream
//!   proxy with CONNECT;
//! - refusals as HTTP 403 whose body names the rule, the layer, the reason and the `sbx policy allow network ...`
//!   command that would allow the request;
//! - credentials from sbx-secrets through [`SecretsInjector`]: header injection, body substitution for custom secrets
//!   that ask for it (bounded buffering, bound hosts only; bodies elsewhere are watched and `placeholder_blocked` is
//!   audited) and AWS SigV4 re-signing with the real key ([`CredentialInjector::resign`]);
//! - the CA key kept in a [`CaStore`]: `ca-bundle.pem` ([`FileCaStore`]) or an sbx-secrets store
//!   ([`SecretCaStore`]), created atomically across processes; `ca.pem` is always exported to the state dir.
//!
//! Security properties (each has an adversarial integration test): no raw tunnel without a raw-TCP rule; every inner
//! request is checked by its own Host / `:authority`, which must agree with the CONNECT target and the SNI (domain
//! fronting is refused); placeholders are substituted only for bound hosts (`placeholder_blocked` otherwise); a request
//! carrying both Content-Length and Transfer-Encoding is refused (a framing watch sees the client's bytes before hyper
//! does), obs-fold and bad chunk sizes are rejected by hyper's parser, and every upstream request is re-framed by the
//! proxy, so bytes after a body can never become a second upstream request; header size/count, buffered body, idle/total time and
//! connections per sandbox are bounded ([`Limits`]); a request head must arrive within `header_read_timeout`
//! (slow-loris).
//!
//! Why not hudsucker: its CONNECT path relays non-TLS/non-HTTP bytes raw without asking, and declining interception
//! also opens a raw tunnel; the proxy needs to classify the first bytes itself, check SNI against the CONNECT target
//! before minting a leaf, and tag every connection with its sandbox. Built directly on hyper 1, tokio-rustls and
//! rcgen, the tunnel path has no raw fallback to wrap.
//!
//! ```no_run
//! use std::sync::Arc;
//! use sbx_netproxy::{Ingress, Proxy, ProxyConfig};
//! use sbx_netproxy::simple::{MemoryAudit, SimplePolicy, StaticCredential, StaticInjector};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let policy = SimplePolicy::parse(&[("user.toml", "[[network]]\naction = \"allow\"\nhosts = [\"api.anthropic.com\"]\n")])?;
//! let creds = StaticInjector::new(vec![StaticCredential::well_known("anthropic", "sk-ant-real-key")]);
//! let proxy = Proxy::new(ProxyConfig::new("/var/lib/sbx/proxy"), Arc::new(MemoryAudit::default()))?;
//! let sandbox = proxy.sandbox("sb-1", Arc::new(policy), Arc::new(creds));
//! let listener = proxy.listen_tcp(sandbox, "127.0.0.1:0".parse()?, Ingress::Forward).await?;
//! println!("listening on {}", listener.local_addr());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod addr;
mod audit_adapter;
mod authority;
mod body;
mod ca;
mod classify;
mod credentials;
mod deny;
mod fdlimit;
mod framing;
mod handler;
mod io;
mod model;
mod policy_adapter;
mod proxy;
mod seam;
mod secrets_adapter;
pub mod simple;
mod tunnel;
mod upstream;

pub use audit_adapter::to_audit_event;
pub use authority::{Authority, AuthorityError, Host};
pub use body::ProxyBody;
pub use ca::{CaError, CaStore, CertificateAuthority, FileCaStore, SecretCaStore};
pub use fdlimit::{FdLimit, raise_fd_limit};
pub use io::Io;
pub use proxy::{Ingress, Limits, Listener, Proxy, ProxyConfig, ProxyError, Sandbox};
pub use seam::{
    AuditAction, AuditDecision, AuditEvent, AuditSink, BodyPlan, CredentialInjector, Destination,
    EgressPolicy, InjectionReport, NetworkRequest, NoCredentials, Protocol, Resign, Verdict,
};
pub use secrets_adapter::SecretsInjector;
pub use upstream::{Connector, UpstreamConn, UpstreamError, UpstreamProxy};

/// Parsers exposed for the fuzz targets. Not a stable API.
#[doc(hidden)]
pub mod internal {
    pub use crate::addr::restricted_category;
    pub use crate::authority::{normalize_host, parse_authority, parse_authority_with_default};
    pub use crate::classify::{Classified, MAX_PEEK, classify, quick_kind};
}
