//! Namespace isolation backend for sbx sandboxes on hosts without hardware virtualization.
//!
//! A namespace sandbox runs the `sbx-guest` agent as the init of new user, mount, PID, IPC, UTS, cgroup and network
//! namespaces. Its root is the template (read-only overlay lower layer) plus the sandbox's state directory (upper
//! layer), assembled and entered with `pivot_root`; the only host paths inside are the workspaces (bind-mounted at
//! the same absolute path) and the sandbox's own socket directory. The network namespace has only loopback, so the
//! one way out is the host proxy's Unix socket, bind-mounted in and reached through the agent's forwarder on
//! `127.0.0.1:3128`. A seccomp filter ([`seccomp::DENIED`]) and rlimits/cgroup v2 limits apply to everything inside.
//!
//! **It shares the host kernel.** A kernel bug reachable through the allowed system calls is a way out, which a
//! microVM would contain. Print [`ISOLATION_WARNING`] wherever this backend is chosen.
//!
//! ```no_run
//! use sbx_jail::{Jail, JailConfig, WorkspaceMount};
//!
//! let mut config = JailConfig::new("demo", "/var/lib/sbx/templates/host", "/var/lib/sbx/sandboxes/demo",
//!                                  "/usr/libexec/sbx/sbx-guest");
//! config.workspaces.push(WorkspaceMount { path: "/home/me/project".into(), read_only: false });
//! eprintln!("{}", sbx_jail::ISOLATION_WARNING);
//! let sandbox = Jail::spawn(&config)?;
//! let out = sandbox.connect()?.run(&["sh", "-c", "id -u; hostname"])?;
//! print!("{}", out.stdout_text());
//! sandbox.stop(std::time::Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod cgroup;
mod config;
mod error;
pub mod idmap;
pub mod plan;
pub mod seccomp;
pub mod shift;
mod spawn;
mod state;
mod sys;

pub use config::{JailConfig, Limits, WorkspaceMount};
pub use error::JailError;
pub use idmap::{MappingChoice, MappingMode, UserMapping};
pub use spawn::{Jail, READY_TIMEOUT, Sandbox, connect};
pub use state::StateDir;

/// What the CLI prints whenever the namespace backend is chosen.
pub const ISOLATION_WARNING: &str = "warning: namespace isolation shares the host kernel; it is weaker than a microVM \
(a kernel vulnerability reachable from inside the sandbox can compromise the host). Use the microVM backend where \
hardware virtualization is available, or forbid this mode with `isolation.namespaces = \"deny\"` in policy.";
