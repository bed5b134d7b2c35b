//! Choosing the isolation backend and finding what it needs: the static guest agent and a template.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sbx_microvm::guest_kernel::{self, KernelState};

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

/// Resolves `--isolation` for this host, printing what is weaker when namespaces are chosen. A microVM needs the
/// guest kernel: it is built here on first use (one line saying so, then progress).
pub(crate) fn choose(choice: IsolationChoice, kvm: KvmKind) -> Result<Isolation> {
    choose_with(choice, kvm, &mut ensure_guest_kernel)
}

/// [`choose`] with the step that provides the guest kernel, which runs only once a microVM is possible at all.
fn choose_with(
    choice: IsolationChoice,
    kvm: KvmKind,
    ensure_kernel: &mut dyn FnMut() -> Result<PathBuf>,
) -> Result<Isolation> {
    let hardware = kvm.is_hardware();
    match choice {
        IsolationChoice::Microvm if !hardware => bail!(
            "--isolation microvm needs hardware virtualization, but this host's KVM is {} ; \
             use `--isolation namespaces` (weaker: it shares the host kernel), or run on a host with VT-x/AMD-V \
             (`sbx doctor` shows what this host has)",
            kvm_label(kvm)
        ),
        IsolationChoice::Microvm => {
            ensure_kernel()?;
            Ok(Isolation::Microvm)
        }
        IsolationChoice::Auto if hardware => match ensure_kernel() {
            Ok(_) => Ok(Isolation::Microvm),
            Err(e) => {
                output::warning(&format!(
                    "hardware virtualization is present, but the microVM guest kernel is not usable: {e:#}; \
                     using namespace isolation"
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

/// The packaged guest kernel, used when the cache holds no usable build.
const PACKAGED_KERNEL: &str = "/usr/libexec/sbx/vmlinux";

/// Where the microVM guest kernel comes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum KernelPlan {
    /// This vmlinux.
    Use(PathBuf),
    /// None is usable: build one into this cache (`reason` says why, for the line printed before the build).
    Build { cache: PathBuf, reason: String },
}

/// Decides where the guest kernel comes from: `$SBX_KERNEL` (which must be a file), a build in the cache made with
/// today's config fragment, the packaged [`PACKAGED_KERNEL`], or else a build into the cache.
pub(crate) fn plan_kernel(
    explicit: Option<PathBuf>,
    cache: Result<PathBuf, guest_kernel::KernelBuildError>,
    packaged: &Path,
    fragment: &str,
) -> Result<KernelPlan> {
    if let Some(p) = explicit {
        if !p.is_file() {
            bail!(
                "{} points at {}, which is not a file; unset it to have sbx build the guest kernel",
                env_vars::SBX_KERNEL,
                p.display()
            );
        }
        return Ok(KernelPlan::Use(p));
    }
    let cache = match cache {
        Ok(cache) => cache,
        Err(_) if packaged.is_file() => return Ok(KernelPlan::Use(packaged.to_owned())),
        Err(e) => return Err(e.into()),
    };
    let reason = match guest_kernel::inspect(&cache, fragment) {
        KernelState::Ready(vmlinux) => return Ok(KernelPlan::Use(vmlinux)),
        KernelState::Missing => "first use".to_owned(),
        KernelState::Stale { vmlinux, reason } => {
            format!("the cached {} is out of date: {reason}", vmlinux.display())
        }
    };
    if packaged.is_file() {
        return Ok(KernelPlan::Use(packaged.to_owned()));
    }
    Ok(KernelPlan::Build { cache, reason })
}

fn plan_from_env() -> Result<KernelPlan> {
    plan_kernel(
        std::env::var_os(env_vars::SBX_KERNEL)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from),
        guest_kernel::default_cache_dir(),
        Path::new(PACKAGED_KERNEL),
        guest_kernel::CONFIG_FRAGMENT,
    )
}

/// The microVM guest kernel, without building it: `$SBX_KERNEL`, a current build in
/// `~/.cache/sbx/guest-kernel` (`$SBX_KERNEL_CACHE`), or `/usr/libexec/sbx/vmlinux`.
pub(crate) fn guest_kernel() -> Result<PathBuf> {
    match plan_from_env()? {
        KernelPlan::Use(p) => Ok(p),
        KernelPlan::Build { cache, reason } => bail!(
            "the microVM guest kernel is not built ({reason}; cache: {}); the first microVM sandbox builds it \
             ({}), or build it now with `cargo xtask guest-kernel`, or set {}=/path/to/vmlinux",
            cache.display(),
            guest_kernel::BUILD_ESTIMATE,
            env_vars::SBX_KERNEL
        ),
    }
}

/// The line printed before a kernel build starts.
pub(crate) fn kernel_build_notice(reason: &str, cache: &Path) -> String {
    format!(
        "building the microVM guest kernel ({reason}): {}, once, into {}; progress follows",
        guest_kernel::BUILD_ESTIMATE,
        cache.display()
    )
}

/// The guest kernel, built first when none is usable (the one line from [`kernel_build_notice`], then a line per
/// build step). Two `sbx` commands at once build it once: the second waits for the first and uses its result.
pub(crate) fn ensure_guest_kernel() -> Result<PathBuf> {
    let KernelPlan::Build { cache, .. } = plan_from_env()? else {
        return guest_kernel();
    };
    let _lock = FileLock::acquire(&cache.join("build"))?;
    let KernelPlan::Build { cache, reason } = plan_from_env()? else {
        return guest_kernel();
    };
    eprintln!("sbx: {}", kernel_build_notice(&reason, &cache));
    let options = guest_kernel::BuildOptions::new(&cache);
    let vmlinux = guest_kernel::build_cached(&options, &mut |step| {
        eprintln!("sbx: guest kernel: {step}");
    })
    .context("cannot build the microVM guest kernel")?;
    Ok(vmlinux)
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
            let err = choose_with(IsolationChoice::Microvm, kvm, &mut no_kernel)
                .unwrap_err()
                .to_string();
            assert!(err.contains("hardware virtualization"), "{err}");
            assert!(err.contains("--isolation namespaces"), "{err}");
        }
    }

    fn no_kernel() -> Result<PathBuf> {
        panic!("no kernel may be looked for or built here")
    }

    #[test]
    fn microvm_without_hardware_fails_before_building_anything() {
        for kvm in [KvmKind::Absent, KvmKind::Pvm, KvmKind::Unknown] {
            let err = choose_with(IsolationChoice::Microvm, kvm, &mut no_kernel).unwrap_err();
            assert!(err.to_string().contains("hardware virtualization"), "{err}");
        }
    }

    #[test]
    fn microvm_with_hardware_builds_the_kernel_first() {
        let mut calls = 0;
        let mut fake = || {
            calls += 1;
            Ok(PathBuf::from("/k/vmlinux"))
        };
        assert_eq!(
            choose_with(IsolationChoice::Microvm, KvmKind::Intel, &mut fake).unwrap(),
            Isolation::Microvm
        );
        assert_eq!(calls, 1);
        let mut failing = || -> Result<PathBuf> { bail!("make failed") };
        let err = choose_with(IsolationChoice::Microvm, KvmKind::Amd, &mut failing).unwrap_err();
        assert!(err.to_string().contains("make failed"), "{err}");
        // `auto` falls back to namespaces when the kernel cannot be had.
        assert_eq!(
            choose_with(IsolationChoice::Auto, KvmKind::Intel, &mut failing).unwrap(),
            Isolation::Namespaces
        );
    }

    /// A cache with one build whose recorded config is `config`, linked as `<cache>/vmlinux`.
    fn cached(cache: &Path, config: &str) -> PathBuf {
        let dir = cache.join("linux-source-6.1-0123");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("vmlinux"), b"\x7fELF").unwrap();
        std::fs::write(dir.join("config"), config).unwrap();
        let link = cache.join("vmlinux");
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.join("vmlinux"), &link).unwrap();
        link
    }

    #[test]
    fn the_kernel_plan_uses_a_current_build_and_rebuilds_a_missing_or_stale_one() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let none = tmp.path().join("no-packaged-vmlinux");
        let fragment = "CONFIG_VIRTIO=y\nCONFIG_VSOCKETS=y\n";
        let plan =
            |packaged: &Path| plan_kernel(None, Ok(cache.clone()), packaged, fragment).unwrap();

        assert_eq!(
            plan(&none),
            KernelPlan::Build {
                cache: cache.clone(),
                reason: "first use".into()
            }
        );
        let link = cached(&cache, "CONFIG_VIRTIO=y\nCONFIG_VSOCKETS=y\n");
        assert_eq!(plan(&none), KernelPlan::Use(link.clone()));
        cached(&cache, "CONFIG_VIRTIO=y\n");
        match plan(&none) {
            KernelPlan::Build { reason, .. } => {
                assert!(
                    reason.contains("out of date") && reason.contains("CONFIG_VSOCKETS=y"),
                    "{reason}"
                )
            }
            other => panic!("a stale build must be rebuilt: {other:?}"),
        }
        // A packaged kernel beats a rebuild.
        let packaged = tmp.path().join("vmlinux");
        std::fs::write(&packaged, b"\x7fELF").unwrap();
        assert_eq!(plan(&packaged), KernelPlan::Use(packaged.clone()));
        // $SBX_KERNEL wins, and must name a file.
        assert_eq!(
            plan_kernel(Some(packaged.clone()), Ok(cache.clone()), &none, fragment).unwrap(),
            KernelPlan::Use(packaged)
        );
        let err = plan_kernel(
            Some(tmp.path().join("nope")),
            Ok(cache.clone()),
            &none,
            fragment,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("SBX_KERNEL") && err.contains("nope"), "{err}");
    }

    #[test]
    fn the_build_notice_says_what_and_how_long() {
        let line = kernel_build_notice("first use", Path::new("/c"));
        assert!(
            line.starts_with("building the microVM guest kernel (first use)"),
            "{line}"
        );
        assert!(
            line.contains(guest_kernel::BUILD_ESTIMATE) && line.contains("/c"),
            "{line}"
        );
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
