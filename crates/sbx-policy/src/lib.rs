//! Network and mount policy engine for sbx sandboxes: layered rules, presets and explained
//! decisions. Semantics follow Docker Sandboxes' policy model, so rules written for it carry over.
//!
//! # The model
//!
//! A [`PolicyLayer`] is one TOML file (or a [`Preset`]). A [`Policy`] combines layers by
//! [`LayerLevel`], highest authority first: company, org, team, user, sandbox. Then:
//!
//! * a matching **deny** beats every allow, from any layer;
//! * an **allow** grants unless a layer above it is `enforced = true` (then it grants nothing:
//!   reason `enforced-by-<level>`);
//! * with **no match** the request is denied (`default-deny`), unless a layer uses the `open`
//!   preset and none uses a stricter one (`default-allow`).
//!
//! Every answer is a [`Decision`] with an [`Explanation`]: the rule as written (with its file,
//! line and column), the layer's name and a [`Reason`] code.
//!
//! # Example
//!
//! ```
//! use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer, Preset, Protocol, Reason};
//!
//! let team = PolicyLayer::parse("team.toml", r#"
//!     name = "team-payments"
//!     [[network]]
//!     action = "allow"
//!     hosts = ["api.github.com"]
//!     methods = ["GET"]
//!     paths = ["/repos/acme/**"]
//!
//!     [[network]]
//!     action = "deny"
//!     hosts = ["**.pastebin.com"]
//! "#)?;
//! let policy = Policy::new(vec![
//!     (LayerLevel::Team, team),
//!     (LayerLevel::User, PolicyLayer::preset(Preset::Balanced)),
//! ]);
//!
//! // Allowed by the team's rule; the path is normalised before matching.
//! let ok = policy.check_network(&NetworkRequest::https("api.github.com", "GET", "/repos/acme/x/../y"));
//! assert!(ok.allowed);
//! assert_eq!(ok.explanation.layer.as_deref(), Some("team-payments"));
//!
//! // Allowed by the balanced preset's package-managers group.
//! assert!(policy.check_network(&NetworkRequest::https("registry.npmjs.org", "GET", "/left-pad")).allowed);
//!
//! // Not listed anywhere: denied by default, with the command that would allow it.
//! let no = policy.check_network(&NetworkRequest::new("example.org", 443, Protocol::Https));
//! assert_eq!(no.reason(), Reason::DefaultDeny);
//! assert_eq!(no.hint("example.org", 443).as_deref(), Some("sbx policy allow network example.org"));
//!
//! // The deny wins, and says where it was written.
//! let bad = policy.check_network(&NetworkRequest::https("x.pastebin.com", "GET", "/"));
//! assert_eq!(bad.to_string(),
//!     "deny\tmatched-deny rule=\"deny **.pastebin.com (team.toml:11:14)\" layer=\"team-payments\"");
//! # Ok::<(), sbx_policy::ParseError>(())
//! ```
//!
//! # Other checks
//!
//! * [`Policy::allows_address`]: the proxy's exception for private and loopback addresses.
//! * [`Policy::check_model`]: `[[model]]` allow/deny globs on AI model names.
//! * [`Policy::check_setting`]: tri-state named settings ([`SETTINGS`]); the most restrictive wins.
//! * [`Policy::check_mount`] / [`Policy::check_mount_within`]: which host paths may be mounted.
//! * [`batch`]: the `policy_check` tool's line format.
//!
//! The crate's README documents the full TOML format.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod batch;
mod decision;
mod error;
mod file;
mod glob;
mod host;
mod index;
mod ip;
mod layer;
mod model;
mod mount;
mod path;
mod policy;
mod preset;
mod settings;
mod target;

pub use decision::{Decision, Explanation, Reason};
pub use error::{LoadError, ParseError};
pub use layer::{Action, LayerLevel, MAX_FILE_SIZE, PolicyLayer, Preset, SETTINGS, SettingValue};
pub use mount::PROTECTED_HOME_DIRS;
pub use path::normalize_path;
pub use policy::{NetworkRequest, Policy, Protocol};
