//! The default template: a Debian root made with debootstrap, the agent user, the agent CLIs from npm.

use std::path::Path;
use std::process::Command;

use crate::engines::{Version, parse_node_version, satisfies};
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
/// Extra packages of the `-docker` variant (a private dockerd inside the microVM). Since trixie the `docker` client
/// is its own package, only recommended by docker.io, and recommends are not installed.
pub const DOCKER_PACKAGES: &[&str] = &["docker.io", "docker-cli", "iptables"];
/// Programs the `-docker` variant must contain, each checked with `--version` at build time.
const DOCKER_PROGRAMS: &[&str] = &["docker", "dockerd", "containerd", "runc"];
/// Agent CLIs installed from npm into the default template.
pub const AGENT_CLIS: &[&str] = &[
    "@anthropic-ai/claude-code",
    "@openai/codex",
    "@google/gemini-cli",
];
/// Debian suite of the default template: trixie (Debian 13, stable) ships nodejs 20, which @google/gemini-cli needs
/// (bookworm's nodejs 18 cannot run it). The build checks every CLI's `engines.node` against the installed node, so a
/// suite or CLI change that breaks this fails the build instead of shipping a CLI that cannot start.
pub const SUITE: &str = "trixie";
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
    // The checks run before cleaning: npm and the CLIs write logs and state under $HOME, which the clean removes.
    let check = match variant {
        Variant::Docker => "check the agent CLIs and docker (node version, each program starts)",
        _ => "check the agent CLIs (node version, each one starts)",
    };
    progress.step(5, total, check);
    check_node_for_clis(root, progress)?;
    run_step(
        progress,
        "check the template's programs",
        &mut in_root(root, &check_programs_script(variant)),
    )?;
    progress.step(6, total, "clean caches");
    run_step(
        progress,
        "clean",
        &mut in_root(
            root,
            "apt-get clean; rm -rf /var/lib/apt/lists/* /root/.npm /var/cache/debconf/*-old /tmp/* \
             /etc/resolv.conf; : > /etc/machine-id",
        ),
    )
}

/// A script that fails naming the first program of the template that is missing or does not start.
fn check_programs_script(variant: Variant) -> String {
    let mut programs = vec!["claude", "codex", "gemini"];
    if variant == Variant::Docker {
        programs.extend_from_slice(DOCKER_PROGRAMS);
    }
    format!(
        "export HOME=/tmp/sbx-cli-check; mkdir -p \"$HOME\"; \
         for c in {}; do command -v $c >/dev/null || {{ echo \"$c missing\" >&2; exit 1; }}; \
         timeout 120 $c --version </dev/null || {{ echo \"$c --version failed: $c does not start\" >&2; exit 1; }}; \
         done",
        programs.join(" ")
    )
}

/// The step name of the node version check (in its errors).
const NODE_CHECK: &str = "check node against the agent CLIs' engines.node";

/// Runs `script` in the new root and returns its standard output.
fn output_in_root(root: &Path, script: &str) -> Result<String, TemplateError> {
    let out = in_root(root, script)
        .output()
        .map_err(|e| TemplateError::Step {
            step: NODE_CHECK.into(),
            detail: format!("cannot run `{script}` in {}: {e}", root.display()),
        })?;
    if !out.status.success() {
        return Err(TemplateError::Step {
            step: NODE_CHECK.into(),
            detail: format!(
                "`{script}` in {} failed ({}): {}",
                root.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// npm only warns when node is older than a package's `engines.node`, so a suite whose nodejs is too old would ship a
/// CLI that fails at its first start (bookworm's node 18 and @google/gemini-cli's `>=20`). Fails naming the CLI, its
/// range and the node found. CLIs whose commands are native executables (claude) need node only for their install
/// script, which has run by now, so their range is reported but not enforced.
fn check_node_for_clis(root: &Path, progress: &mut dyn Progress) -> Result<(), TemplateError> {
    let reported = output_in_root(root, "node --version")?;
    let node = parse_node_version(&reported).ok_or_else(|| TemplateError::Step {
        step: NODE_CHECK.into(),
        detail: format!(
            "`node --version` printed `{}`, not a version",
            reported.trim()
        ),
    })?;
    let global = output_in_root(root, "npm root -g")?;
    let modules = root.join(global.trim().trim_start_matches('/'));
    for cli in AGENT_CLIS {
        let manifest = modules.join(cli).join("package.json");
        let text = std::fs::read_to_string(&manifest).map_err(io("read", &manifest))?;
        let requirement =
            node_requirement(&text, &modules.join(cli)).map_err(|detail| TemplateError::Step {
                step: NODE_CHECK.into(),
                detail: format!("{}: {detail}", manifest.display()),
            })?;
        let Some((range, runs_on_node)) = requirement else {
            progress.line(&format!("{cli}: no engines.node, nothing to check"));
            continue;
        };
        check_range(cli, &range, runs_on_node, node, &manifest, progress)?;
    }
    Ok(())
}

/// Compares `node` with `cli`'s `engines.node` range (read from `manifest`).
fn check_range(
    cli: &str,
    range: &str,
    runs_on_node: bool,
    node: Version,
    manifest: &Path,
    progress: &mut dyn Progress,
) -> Result<(), TemplateError> {
    let fits = satisfies(range, node).map_err(|part| TemplateError::Step {
        step: NODE_CHECK.into(),
        detail: format!(
            "{}: engines.node `{range}` of {cli}: {part} is not an npm version range this check understands",
            manifest.display()
        ),
    })?;
    match (fits, runs_on_node) {
        (true, _) => progress.line(&format!("{cli}: node {node} satisfies engines.node `{range}`")),
        (false, false) => progress.line(&format!(
            "{cli}: engines.node `{range}` is not met by node {node}, but its command is a native executable \
             (node ran only its install script)"
        )),
        (false, true) => {
            return Err(TemplateError::Step {
                step: NODE_CHECK.into(),
                detail: format!(
                    "{cli} needs node `{range}` (engines.node in {}) but Debian {SUITE}'s nodejs is {node}, so its \
                     command would fail to start; build from a suite whose nodejs satisfies the range (change \
                     sbx_template::debian::SUITE) or pin an older {cli} release in AGENT_CLIS",
                    manifest.display()
                ),
            });
        }
    }
    Ok(())
}

/// `engines.node` of a `package.json`, and whether any of its commands (`bin`, resolved below `package_dir`) is a node
/// script rather than a native executable; `None` when the package declares no node range.
fn node_requirement(manifest: &str, package_dir: &Path) -> Result<Option<(String, bool)>, String> {
    let json: serde_json::Value =
        serde_json::from_str(manifest).map_err(|e| format!("not JSON: {e}"))?;
    let range = match json.pointer("/engines/node") {
        None => return Ok(None),
        Some(serde_json::Value::String(range)) => range.clone(),
        Some(other) => return Err(format!("engines.node is `{other}`, not a string")),
    };
    let bins: Vec<&str> = match json.get("bin") {
        Some(serde_json::Value::String(bin)) => vec![bin.as_str()],
        Some(serde_json::Value::Object(map)) => map.values().filter_map(|v| v.as_str()).collect(),
        _ => Vec::new(),
    };
    // A package without commands is a library: its range matters to whoever loads it, so enforce it.
    let runs_on_node = bins.is_empty()
        || bins
            .iter()
            .any(|bin| is_node_script(&package_dir.join(bin)));
    Ok(Some((range, runs_on_node)))
}

/// Whether `path` starts with a `#!` line naming node (an ELF binary or a missing file is not a node script).
fn is_node_script(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 128];
    let Ok(n) = std::fs::File::open(path).and_then(|mut f| f.read(&mut head)) else {
        return false;
    };
    let head = &head[..n];
    let first_line = head.split(|b| *b == b'\n').next().unwrap_or_default();
    first_line.starts_with(b"#!") && first_line.windows(4).any(|w| w == b"node")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NoProgress;

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
    fn the_docker_variant_checks_the_docker_client_and_daemon() {
        assert!(packages(Variant::Docker).contains(&"docker-cli"));
        let docker = check_programs_script(Variant::Docker);
        let default = check_programs_script(Variant::Default);
        for program in ["docker", "dockerd", "containerd", "runc"] {
            assert!(docker.contains(&format!(" {program}")), "{program}");
            assert!(!default.contains(&format!(" {program}")), "{program}");
        }
        assert!(default.contains("for c in claude codex gemini;"));
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

    fn package(files: &[(&str, &[u8])]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (name, content) in files {
            let path = dir.path().join(name);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, content).unwrap();
        }
        dir
    }

    #[test]
    fn a_node_script_cli_must_meet_its_engines_range() {
        let dir = package(&[(
            "bundle/gemini.js",
            b"#!/usr/bin/env node\nimport './x.js';\n",
        )]);
        let manifest = r#"{"name":"@google/gemini-cli","bin":{"gemini":"bundle/gemini.js"},"engines":{"node":">=20"}}"#;
        let (range, runs_on_node) = node_requirement(manifest, dir.path()).unwrap().unwrap();
        assert_eq!((range.as_str(), runs_on_node), (">=20", true));

        let path = Path::new("/usr/local/lib/node_modules/@google/gemini-cli/package.json");
        let err = check_range(
            "@google/gemini-cli",
            &range,
            true,
            Version::new(18, 20, 4),
            path,
            &mut NoProgress,
        )
        .unwrap_err()
        .to_string();
        for part in [
            "@google/gemini-cli",
            "`>=20`",
            "18.20.4",
            SUITE,
            "gemini-cli/package.json",
        ] {
            assert!(err.contains(part), "{part}: {err}");
        }
        check_range(
            "@google/gemini-cli",
            &range,
            true,
            Version::new(20, 19, 2),
            path,
            &mut NoProgress,
        )
        .unwrap();
    }

    #[test]
    fn a_native_cli_needs_node_only_to_install() {
        let dir = package(&[("bin/claude.exe", b"\x7fELF\x02\x01\x01\0")]);
        let manifest = r#"{"bin":{"claude":"bin/claude.exe"},"engines":{"node":">=22.0.0"}}"#;
        let (range, runs_on_node) = node_requirement(manifest, dir.path()).unwrap().unwrap();
        assert!(!runs_on_node);
        let path = Path::new("package.json");
        check_range(
            "@anthropic-ai/claude-code",
            &range,
            runs_on_node,
            Version::new(20, 19, 2),
            path,
            &mut NoProgress,
        )
        .unwrap();
    }

    #[test]
    fn odd_manifests_are_named_not_guessed() {
        let dir = package(&[]);
        assert_eq!(
            node_requirement(r#"{"bin":"cli.js"}"#, dir.path()),
            Ok(None)
        );
        let err = node_requirement(r#"{"engines":{"node":20}}"#, dir.path()).unwrap_err();
        assert!(err.contains("engines.node") && err.contains("20"), "{err}");
        assert!(
            node_requirement("{", dir.path())
                .unwrap_err()
                .contains("not JSON")
        );
        let err = check_range(
            "x",
            "twenty",
            true,
            Version::new(20, 0, 0),
            Path::new("/m/package.json"),
            &mut NoProgress,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("/m/package.json") && err.contains("twenty"),
            "{err}"
        );
    }
}
