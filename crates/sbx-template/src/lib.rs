//! Sandbox templates for sbx: the read-only root every sandbox starts from.
//!
//! A [`TemplateStore`] is a directory of templates. [`TemplateStore::build`] makes one from a [`Variant`]:
//!
//! * [`Variant::Default`]: Debian trixie (debootstrap; its nodejs 20 runs every agent CLI) with ca-certificates, curl, git, openssh-client, python3,
//!   nodejs/npm, sudo, nftables, a non-root `agent` user (uid 1000) with passwordless sudo and the agent CLIs from npm
//!   (`@anthropic-ai/claude-code`, `@openai/codex`, `@google/gemini-cli`). Needs root, debootstrap, e2fsprogs and the
//!   network (a Debian mirror and the npm registry); takes minutes.
//! * [`Variant::Docker`]: the default plus docker.io, for a private dockerd inside the microVM.
//! * [`Variant::Host`]: a few megabytes of this host's own programs and their libraries; under a second, no network.
//!   Tests and the first-run fallback use it.
//!
//! Each template is a directory (`rootfs/`, for the namespace backend's overlay) and, unless asked not to, an ext4
//! image (`rootfs.ext4`, made with `mkfs.ext4 -d`, for the microVM's read-only root disk), described by a
//! [`Manifest`]. A second build of the same name and variant returns the cached template at once. Progress is
//! reported through the [`Progress`] callback; a missing tool is an error naming it and the command to install it.
//!
//! ```no_run
//! use sbx_template::{BuildOptions, NoProgress, TemplateStore, Variant};
//!
//! let store = TemplateStore::new("/var/lib/sbx/templates");
//! let built = store.build("host", Variant::Host, &BuildOptions::default(), &mut NoProgress)?;
//! println!("{} at {} (cached: {})", built.template.manifest.name, built.template.rootfs().display(), built.cached);
//! for t in store.list()? {
//!     println!("{} {:?} {} bytes", t.manifest.name, t.manifest.variant, t.manifest.rootfs_bytes);
//! }
//! store.remove("host")?;
//! # Ok::<(), sbx_template::TemplateError>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod debian;
mod engines;
mod error;
pub mod host;
pub mod image;
mod manifest;
mod store;
mod tools;

use serde::{Deserialize, Serialize};

pub use error::TemplateError;
pub use host::host_template;
pub use manifest::{MANIFEST_FORMAT, Manifest};
pub use store::{BuildOptions, Built, Template, TemplateStore, check_name, recipe};
pub use tools::{disk_usage, which};

/// The name `sbx run` looks for first.
pub const DEFAULT_NAME: &str = "default";

/// Which recipe builds a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Variant {
    /// Debian with the agent CLIs.
    Default,
    /// Debian with the agent CLIs and docker.io.
    Docker,
    /// This host's own programs (tests, offline fallback).
    Host,
}

impl Variant {
    /// The name a template of this variant gets when none is given.
    pub fn default_name(self) -> &'static str {
        match self {
            Variant::Default => DEFAULT_NAME,
            Variant::Docker => "default-docker",
            Variant::Host => "host",
        }
    }

    /// Roughly how long a build takes on a typical connection (for the line printed before a first-run build).
    pub fn typical_duration(self) -> &'static str {
        match self {
            Variant::Default => "5-10 minutes",
            Variant::Docker => "6-12 minutes",
            Variant::Host => "about a second",
        }
    }
}

impl std::fmt::Display for Variant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Variant::Default => "default",
            Variant::Docker => "docker",
            Variant::Host => "host",
        })
    }
}

/// Progress of a template build.
pub trait Progress {
    /// Step `index` (1-based) of `total` started.
    fn step(&mut self, index: usize, total: usize, what: &str);
    /// A line of a tool's output.
    fn line(&mut self, _line: &str) {}
}

/// Progress that discards everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn step(&mut self, _: usize, _: usize, _: &str) {}
}

impl<F: FnMut(usize, usize, &str)> Progress for F {
    fn step(&mut self, index: usize, total: usize, what: &str) {
        self(index, total, what);
    }
}
