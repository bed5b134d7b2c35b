//! Choosing the isolation backend and finding what it needs: the static guest agent and a template.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};

use crate::commands::KvmKind;
use crate::env_vars;
use crate::fsutil::FileLock;
use crate::home::Home;
use crate::output;
use crate::sandboxes::Isolation;

/// What `--isolation` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum IsolationChoice {
    /// The microVM where hardware virtualization is present, otherwise namespaces (with a warning).
    Auto,
    /// A KVM microVM; an error without hardware virtualization.
    Microvm,
    /// Linux namespaces; shares the host kernel.
    Namespaces,
}

/// Resolves `--isolation` for this host, printing what is weaker when namespaces are chosen.
pub(crate) fn choose(choice: IsolationChoice, kvm: KvmKind) -> Result<Isolation> {
    let hardware = kvm.is_hardware();
    match choice {
        IsolationChoice::Microvm if !hardware => bail!(
            "--isolation microvm needs hardware virtualization, but this host's KVM is {} ; \
             use `--isolation namespaces` (weaker: it shares the host kernel), or run on a host with VT-x/AMD-V \
             (`sbx doctor` shows what this host has)",
            kvm_label(kvm)
        ),
        IsolationChoice::Microvm => {
            guest_kernel()?;
            Ok(Isolation::Microvm)
        }
        IsolationChoice::Auto if hardware => match guest_kernel() {
            Ok(_) => Ok(Isolation::Microvm),
            Err(e) => {
                output::warning(&format!(
                    "hardware virtualization is present, but {e:#}; using namespace isolation until it is built"
                ));
                namespaces_warning();
                Ok(Isolation::Namespaces)
            }
        },
        IsolationChoice::Auto => {
            output::warning(&format!(
                "no hardware virtualization on this host (KVM: {}); using namespace isolation",
                kvm_label(kvm)
            ));
            namespaces_warning();
            Ok(Isolation::Namespaces)
        }
        IsolationChoice::Namespaces => {
            namespaces_warning();
            Ok(Isolation::Namespaces)
        }
    }
}

fn namespaces_warning() {
    let text = sbx_jail::ISOLATION_WARNING;
    output::warning(text.strip_prefix("warning: ").unwrap_or(text));
}

fn kvm_label(kvm: KvmKind) -> &'static str {
    match kvm {
        KvmKind::Absent => "absent",
        KvmKind::Intel => "kvm_intel",
        KvmKind::Amd => "kvm_amd",
        KvmKind::Pvm => "kvm_pvm (nested, not hardware)",
        KvmKind::Unknown => "of an unknown kind",
    }
}

/// The host's KVM kind.
pub(crate) fn host_kvm() -> KvmKind {
    KvmKind::detect(Path::new("/sys/module"), Path::new("/dev/kvm"))
}

/// The static `sbx-guest` agent: `$SBX_GUEST_BIN`, next to `sbx`, `../libexec/sbx/` from it, the
/// `cargo xtask guest-agent` output when `sbx` runs from a cargo target dir, or `/usr/libexec/sbx/`.
pub(crate) fn guest_binary() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_vars::SBX_GUEST_BIN).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "{} points at {}, which is not a file",
                env_vars::SBX_GUEST_BIN,
                p.display()
            );
        }
        return Ok(p);
    }
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        // Run from a cargo target dir (`<target>/<profile>/sbx`): `cargo xtask guest-agent` puts the static agent
        // under the explicit target triple. It goes first: a plain workspace build also leaves a dynamically
        // linked `sbx-guest` next to `sbx`, which cannot run inside a template without the host's libraries.
        if let Some(profile) = dir.file_name() {
            candidates.push(
                dir.join("../x86_64-unknown-linux-gnu")
                    .join(profile)
                    .join("sbx-guest"),
            );
        }
        candidates.push(dir.join("sbx-guest"));
        candidates.push(dir.join("../libexec/sbx/sbx-guest"));
    }
    candidates.push(PathBuf::from("/usr/libexec/sbx/sbx-guest"));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the in-sandbox agent sbx-guest was not found (looked at {}); build it with `cargo xtask guest-agent` and \
         put it next to sbx, or set {}=/path/to/sbx-guest",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        env_vars::SBX_GUEST_BIN
    )
}

/// The template root for a new sandbox (`-t`, `$SBX_TEMPLATE` or `default`, built on first use). A microVM needs
/// the template's ext4 image as well.
pub(crate) fn template(
    home: &Home,
    requested: Option<&str>,
    isolation: Isolation,
) -> Result<PathBuf> {
    let _lock = FileLock::acquire(&home.state.join("templates.first-run"))?;
    let root = crate::commands::template::resolve(home, requested)?;
    if isolation == Isolation::Microvm && !root.with_file_name("rootfs.ext4").is_file() {
        bail!(
            "template {} has no ext4 image for the microVM; rebuild it with `sbx template build --force {}` or use \
             `--isolation namespaces`",
            root.display(),
            root.parent()
                .and_then(|p| p.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        );
    }
    Ok(root)
}

/// The microVM guest kernel: `$SBX_KERNEL`, `~/.cache/sbx/guest-kernel/vmlinux` (`cargo xtask guest-kernel`) or
/// `/usr/libexec/sbx/vmlinux`.
pub(crate) fn guest_kernel() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(env_vars::SBX_KERNEL).filter(|v| !v.is_empty()) {
        let p = PathBuf::from(p);
        if !p.is_file() {
            bail!(
                "{} points at {}, which is not a file",
                env_vars::SBX_KERNEL,
                p.display()
            );
        }
        return Ok(p);
    }
    let mut candidates = Vec::new();
    if let Some(home) = std::env::var_os(env_vars::HOME) {
        candidates.push(PathBuf::from(home).join(".cache/sbx/guest-kernel/vmlinux"));
    }
    candidates.push(PathBuf::from("/usr/libexec/sbx/vmlinux"));
    if let Some(found) = candidates.iter().find(|p| p.is_file()) {
        return Ok(found.clone());
    }
    bail!(
        "the microVM guest kernel is not built (looked at {}); build it with `cargo xtask guest-kernel` (about 7 \
         minutes on 2 cores) or set {}=/path/to/vmlinux",
        candidates
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", "),
        env_vars::SBX_KERNEL
    )
}

/// Connects to the agent of a running sandbox, whichever backend runs it.
pub(crate) fn connect_agent(
    dir: &crate::sandboxes::SandboxDir,
    record: &crate::sandboxes::Record,
) -> Result<sbx_proto::Client> {
    match record.isolation {
        Isolation::Microvm => crate::microvm::connect(dir),
        Isolation::Namespaces => Ok(sbx_jail::connect(&sbx_jail::StateDir::new(dir.jail()))?),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn microvm_without_hardware_is_a_clear_error() {
        for kvm in [KvmKind::Absent, KvmKind::Pvm, KvmKind::Unknown] {
            let err = choose(IsolationChoice::Microvm, kvm)
                .unwrap_err()
                .to_string();
            assert!(err.contains("hardware virtualization"), "{err}");
            assert!(err.contains("--isolation namespaces"), "{err}");
        }
    }

    #[test]
    fn microvm_with_hardware_needs_the_guest_kernel() {
        // SAFETY-free env use: this test only reads SBX_KERNEL through guest_kernel(); point it at nothing.
        match choose(IsolationChoice::Microvm, KvmKind::Intel) {
            Ok(isolation) => assert_eq!(isolation, Isolation::Microvm),
            Err(e) => assert!(
                format!("{e:#}").contains("cargo xtask guest-kernel"),
                "{e:#}"
            ),
        }
    }

    #[test]
    fn auto_without_hardware_picks_namespaces() {
        assert_eq!(
            choose(IsolationChoice::Auto, KvmKind::Absent).unwrap(),
            Isolation::Namespaces
        );
        assert_eq!(
            choose(IsolationChoice::Namespaces, KvmKind::Intel).unwrap(),
            Isolation::Namespaces
        );
    }
}
