//! The default template: a Debian root made with debootstrap, the agent user, the agent CLIs from npm.

use std::path::Path;
use std::process::Command;

use crate::error::{TemplateError, io};
use crate::tools::{reachable, run_step, url_endpoint, which};
use crate::{Progress, Variant};

/// Packages of the default template.
pub const DEFAULT_PACKAGES: &[&str] = &[
    "ca-certificates",
    "curl",
    "git",
    "openssh-client",
    "python3",
    "nodejs",
    "npm",
    "sudo",
    "procps",
    "less",
    "nftables",
    "iproute2",
    "e2fsprogs",
];
/// Extra packages of the `-docker` variant (a private dockerd inside the microVM).
pub const DOCKER_PACKAGES: &[&str] = &["docker.io", "iptables"];
/// Agent CLIs installed from npm into the default template.
pub const AGENT_CLIS: &[&str] = &[
    "@anthropic-ai/claude-code",
    "@openai/codex",
    "@google/gemini-cli",
];
/// Debian suite of the default template.
pub const SUITE: &str = "bookworm";
/// Debian mirror used when none is given.
pub const DEFAULT_MIRROR: &str = "http://deb.debian.org/debian";
/// The npm registry the agent CLIs come from.
pub const NPM_REGISTRY: &str = "https://registry.npmjs.org/";
/// The host's CA bundles, first found wins (Debian/Ubuntu, Fedora/RHEL).
const HOST_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
];
/// Uid and gid of the non-root `agent` user (the same in every template, so state disks and workspaces agree).
pub const AGENT_UID: u32 = 1000;

/// The tools a Debian build needs, with the command that installs each.
const BUILD_TOOLS: &[(&str, &str)] = &[
    ("debootstrap", "apt-get install debootstrap e2fsprogs"),
    ("mkfs.ext4", "apt-get install debootstrap e2fsprogs"),
    ("chroot", "apt-get install coreutils"),
    ("unshare", "apt-get install util-linux"),
];

/// Checks the tools, privileges and network a Debian build needs, naming what is missing and how to fix it.
pub fn preflight(mirror: &str) -> Result<(), TemplateError> {
    for (tool, install) in BUILD_TOOLS {
        if which(tool).is_none() {
            return Err(TemplateError::MissingTool {
                tool,
                what: "Debian sandbox template",
                install,
            });
        }
    }
    if !rustix::process::geteuid().is_root() {
        return Err(TemplateError::NeedsRoot);
    }
    let (host, port) = url_endpoint(mirror).ok_or_else(|| TemplateError::Step {
        step: "check the Debian mirror".into(),
        detail: format!("`{mirror}` is not an http:// or https:// URL"),
    })?;
    reachable("Debian mirror", &host, port)?;
    let (host, port) = url_endpoint(NPM_REGISTRY).ok_or_else(|| TemplateError::Step {
        step: "check the npm registry".into(),
        detail: NPM_REGISTRY.into(),
    })?;
    reachable("npm registry", &host, port)
}

/// The packages of `variant`.
pub fn packages(variant: Variant) -> Vec<&'static str> {
    let mut list = DEFAULT_PACKAGES.to_vec();
    if variant == Variant::Docker {
        list.extend_from_slice(DOCKER_PACKAGES);
    }
    list
}

/// A shell script run in the new root with /proc mounted in a private mount namespace (nothing leaks to the host's
/// mount table, even when the build is interrupted).
fn in_root(root: &Path, script: &str) -> Command {
    let mut c = Command::new("unshare");
    c.args(["--mount", "--propagation", "private", "--fork", "chroot"])
        .arg(root)
        .args([
            "/bin/sh",
            "-euc",
            &format!("mount -t proc proc /proc; {script}"),
        ])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .env("HOME", "/root");
    c
}

/// apt and npm resolve names inside the new root: give it the host's resolver (removed again when cleaning) and a
/// hosts file.
fn use_host_resolver(root: &Path) -> Result<(), TemplateError> {
    let resolv = root.join("etc/resolv.conf");
    let _ = std::fs::remove_file(&resolv);
    std::fs::copy("/etc/resolv.conf", &resolv)
        .map_err(io("copy the host's resolv.conf to", &resolv))?;
    let hosts = root.join("etc/hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost sbx\n::1 localhost\n").map_err(io("write", &hosts))
}

/// Number of [`Progress::step`]s of [`build_rootfs`] (the image step comes after).
pub(crate) const STEPS: usize = 6;

/// Builds the Debian root of `variant` into the empty directory `root`.
pub(crate) fn build_rootfs(
    root: &Path,
    variant: Variant,
    mirror: &str,
    progress: &mut dyn Progress,
    total: usize,
) -> Result<(), TemplateError> {
    preflight(mirror)?;
    progress.step(
        1,
        total,
        &format!("debootstrap Debian {SUITE} (minimal base)"),
    );
    // debootstrap only bootstraps a minimal base: its own dependency resolver fails to configure large trees such as
    // npm's, so the packages come from apt inside the new root (step 2).
    run_step(
        progress,
        "debootstrap",
        Command::new("debootstrap")
            .args(["--variant=minbase", SUITE])
            .arg(root)
            .arg(mirror),
    )?;
    use_host_resolver(root)?;
    // No service may start inside the build root (docker.io's postinst would try).
    let policy = root.join("usr/sbin/policy-rc.d");
    std::fs::write(&policy, "#!/bin/sh\nexit 101\n").map_err(io("write", &policy))?;
    progress.step(
        2,
        total,
        &format!(
            "install {} Debian packages with apt",
            packages(variant).len()
        ),
    );
    run_step(
        progress,
        "apt-get install",
        &mut in_root(
            root,
            &format!(
                "apt-get update -q; apt-get install -y -q --no-install-recommends {}; rm -f /usr/sbin/policy-rc.d",
                packages(variant).join(" ")
            ),
        ),
    )?;
    progress.step(3, total, "create the agent user (passwordless sudo)");
    run_step(
        progress,
        "create the agent user",
        &mut in_root(
            root,
            &format!(
                "id agent >/dev/null 2>&1 || useradd --create-home --uid {AGENT_UID} --user-group \
                 --shell /bin/bash --groups sudo agent; \
                 echo 'agent ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/agent; chmod 0440 /etc/sudoers.d/agent; \
                 if getent group docker >/dev/null; then usermod -aG docker agent; fi; \
                 echo sbx > /etc/hostname"
            ),
        ),
    )?;
    progress.step(4, total, "install the agent CLIs from npm");
    let mut npm = in_root(
        root,
        &format!(
            "npm install -g --no-audit --no-fund --registry {NPM_REGISTRY} {}",
            AGENT_CLIS.join(" ")
        ),
    );
    // Hosts behind a TLS-intercepting proxy trust its CA in their system store; node only trusts its own bundle, so
    // the host's store goes in for the build (removed again when cleaning /tmp).
    if let Some(bundle) = HOST_CA_BUNDLES.iter().map(Path::new).find(|p| p.is_file()) {
        let inside = root.join("tmp/sbx-host-ca.pem");
        std::fs::copy(bundle, &inside).map_err(io("copy the host's CA bundle to", &inside))?;
        npm.env("NODE_EXTRA_CA_CERTS", "/tmp/sbx-host-ca.pem");
    }
    run_step(progress, "npm install", &mut npm)?;
    progress.step(5, total, "clean caches");
    run_step(
        progress,
        "clean",
        &mut in_root(
            root,
            "apt-get clean; rm -rf /var/lib/apt/lists/* /root/.npm /var/cache/debconf/*-old /tmp/* \
             /etc/resolv.conf; : > /etc/machine-id",
        ),
    )?;
    progress.step(6, total, "check the agent CLIs");
    run_step(
        progress,
        "check the agent CLIs",
        &mut in_root(
            root,
            "for c in claude codex gemini; do command -v $c >/dev/null || { echo \"$c missing\" >&2; exit 1; }; \
             done; node --version",
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_variant_adds_docker_io() {
        assert!(!packages(Variant::Default).contains(&"docker.io"));
        let docker = packages(Variant::Docker);
        assert!(docker.contains(&"docker.io"));
        for p in [
            "ca-certificates",
            "curl",
            "git",
            "openssh-client",
            "python3",
            "nodejs",
            "npm",
            "sudo",
        ] {
            assert!(docker.contains(&p), "{p}");
        }
    }

    #[test]
    fn a_bad_mirror_url_is_named() {
        if which("debootstrap").is_none() || !rustix::process::geteuid().is_root() {
            let err = preflight("http://deb.debian.org/debian")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("apt-get install debootstrap") || err.contains("root"),
                "{err}"
            );
            return;
        }
        let err = preflight("ftp://mirror/").unwrap_err().to_string();
        assert!(err.contains("ftp://mirror/"), "{err}");
    }
}
