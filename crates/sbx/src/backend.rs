//! Choosing the isolation backend and finding what it needs: the static guest agent and a template.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};

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
        IsolationChoice::Microvm => bail!(
            "the microVM backend is not wired into the sbx command yet; use `--isolation namespaces` for now"
        ),
        IsolationChoice::Auto if hardware => {
            output::warning(
                "hardware virtualization is present, but the microVM backend is not wired into the sbx command \
                 yet; using namespace isolation",
            );
            namespaces_warning();
            Ok(Isolation::Namespaces)
        }
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

/// The template root for a new namespace sandbox: the default template when built, otherwise the host template
/// (built from this host's programs on first use; a line says so).
pub(crate) fn template(home: &Home) -> Result<PathBuf> {
    let templates = home.state.join("templates");
    let default = templates.join("default/rootfs");
    if default.is_dir() {
        return Ok(default);
    }
    let host = templates.join("host");
    let _lock = FileLock::acquire(&host)?;
    if !host.is_dir() {
        output::warning(&format!(
            "the default template is not built (`sbx template build`); using a small template made from this \
             host's programs instead (building it at {}, about a second)",
            host.display()
        ));
        let tmp = templates.join(format!("host.tmp.{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&tmp);
        sbx_template::host_template(&tmp)
            .with_context(|| format!("cannot build the host template at {}", tmp.display()))?;
        std::fs::rename(&tmp, &host)
            .with_context(|| format!("cannot move the host template to {}", host.display()))?;
    } else {
        output::warning(&format!(
            "the default template is not built; using the host template at {}",
            host.display()
        ));
    }
    Ok(host)
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
