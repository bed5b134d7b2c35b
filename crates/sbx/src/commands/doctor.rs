//! `sbx doctor`: what this host can run, and what is missing.

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::home::Home;
use crate::output;

/// Which KVM this host offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum KvmKind {
    /// No /dev/kvm.
    Absent,
    /// Intel VT-x.
    Intel,
    /// AMD-V.
    Amd,
    /// Nested PVM: no hardware virtualization; only PVM-enabled guest kernels run at speed.
    Pvm,
    /// /dev/kvm exists but the backing module could not be identified.
    Unknown,
}

impl KvmKind {
    pub(crate) fn detect(sys_module: &Path, dev_kvm: &Path) -> KvmKind {
        if !dev_kvm.exists() {
            return KvmKind::Absent;
        }
        // The loaded vendor module says which KVM this is; never guess from CPU flags (a nested guest may show vmx).
        for (module, kind) in [
            ("kvm_intel", KvmKind::Intel),
            ("kvm_amd", KvmKind::Amd),
            ("kvm_pvm", KvmKind::Pvm),
        ] {
            if sys_module.join(module).exists() {
                return kind;
            }
        }
        KvmKind::Unknown
    }

    pub(crate) fn is_hardware(self) -> bool {
        matches!(self, KvmKind::Intel | KvmKind::Amd)
    }
}

#[derive(Debug, Serialize)]
struct Report {
    kvm: KvmKind,
    kvm_accessible: bool,
    hardware_virtualization: bool,
    user_namespaces: bool,
    isolation_backends: Vec<&'static str>,
    secret_store: SecretStoreReport,
    proxy_ca: ProxyCaReport,
    config_dir: String,
    state_dir: String,
    templates: TemplateReport,
    guest_kernel: Result<String, String>,
}

/// Built templates and whether the default one (with its microVM image) is there.
#[derive(Debug, Serialize)]
struct TemplateReport {
    built: Vec<String>,
    default_built: bool,
    default_has_image: bool,
    error: Option<String>,
}

impl TemplateReport {
    fn probe(home: &Home) -> TemplateReport {
        match super::template::store(home).list() {
            Ok(list) => {
                let default = list
                    .iter()
                    .find(|t| t.manifest.name == sbx_template::DEFAULT_NAME);
                TemplateReport {
                    built: list.iter().map(|t| t.manifest.name.clone()).collect(),
                    default_built: default.is_some(),
                    default_has_image: default.is_some_and(|t| t.image().is_some()),
                    error: None,
                }
            }
            Err(e) => TemplateReport {
                built: Vec::new(),
                default_built: false,
                default_has_image: false,
                error: Some(e.to_string()),
            },
        }
    }
}

/// Which secret store backend opens here and why (from sbx-secrets' `BackendReport`), or why none does.
#[derive(Debug, Serialize)]
struct SecretStoreReport {
    backend: Option<String>,
    location: Option<String>,
    reason: String,
    passed_over: Vec<PassedOver>,
}

#[derive(Debug, Serialize)]
struct PassedOver {
    backend: String,
    why: String,
}

impl SecretStoreReport {
    fn probe(home: &Home) -> SecretStoreReport {
        match super::secret::open_store(home) {
            Ok((_, r)) => SecretStoreReport {
                backend: Some(r.kind.to_string()),
                location: Some(r.location),
                reason: r.reason,
                passed_over: r
                    .passed_over
                    .into_iter()
                    .map(|(kind, why)| PassedOver {
                        backend: kind.to_string(),
                        why,
                    })
                    .collect(),
            },
            Err(e) => SecretStoreReport {
                backend: None,
                location: None,
                reason: format!("{e:#}"),
                passed_over: Vec::new(),
            },
        }
    }
}

/// The installation CA the egress proxy intercepts TLS with, and the proxy's own configuration.
#[derive(Debug, Serialize)]
struct ProxyCaReport {
    /// The CA certificate every sandbox trusts.
    file: String,
    /// Whether it exists yet (it is made when the first sandbox starts).
    present: bool,
    /// `$CONFIG/proxy.toml`'s extra upstream CAs, or the error reading that file.
    extra_ca: Vec<String>,
    settings_error: Option<String>,
}

impl ProxyCaReport {
    fn probe(home: &Home) -> ProxyCaReport {
        let file = crate::egress::ca_cert_file(home);
        let (extra_ca, settings_error) = match crate::egress::ProxySettings::load(home) {
            Ok(s) => (
                s.extra_ca.iter().map(|p| p.display().to_string()).collect(),
                None,
            ),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        ProxyCaReport {
            present: file.is_file(),
            file: file.display().to_string(),
            extra_ca,
            settings_error,
        }
    }
}

fn user_namespaces_enabled() -> bool {
    let read = |p: &str| {
        std::fs::read_to_string(p)
            .ok()
            .map(|s| s.trim().to_string())
    };
    let max_ok = read("/proc/sys/user/max_user_namespaces").is_none_or(|v| v != "0");
    let clone_ok = read("/proc/sys/kernel/unprivileged_userns_clone").is_none_or(|v| v != "0");
    max_ok && clone_ok
}

fn kvm_accessible(dev_kvm: &Path) -> bool {
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(dev_kvm)
        .is_ok()
}

pub(crate) fn run(json: bool) -> Result<i32> {
    let home = Home::from_env()?;
    let dev_kvm = Path::new("/dev/kvm");
    let kvm = KvmKind::detect(Path::new("/sys/module"), dev_kvm);
    let accessible = kvm_accessible(dev_kvm);
    let userns = user_namespaces_enabled();
    let mut backends = Vec::new();
    if kvm.is_hardware() && accessible {
        backends.push("microvm");
    }
    if userns {
        backends.push("namespaces");
    }
    let report = Report {
        kvm,
        kvm_accessible: accessible,
        hardware_virtualization: kvm.is_hardware(),
        user_namespaces: userns,
        isolation_backends: backends,
        secret_store: SecretStoreReport::probe(&home),
        proxy_ca: ProxyCaReport::probe(&home),
        config_dir: home.config.display().to_string(),
        state_dir: home.state.display().to_string(),
        templates: TemplateReport::probe(&home),
        guest_kernel: crate::backend::guest_kernel()
            .map(|p| p.display().to_string())
            .map_err(|e| format!("{e:#}")),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_human(&report);
    }
    Ok(0)
}

fn print_human(r: &Report) {
    let kvm = match r.kvm {
        KvmKind::Absent => "absent (/dev/kvm does not exist)",
        KvmKind::Intel => "hardware virtualization (kvm_intel)",
        KvmKind::Amd => "hardware virtualization (kvm_amd)",
        KvmKind::Pvm => {
            "kvm_pvm (nested PVM, no hardware virtualization: microVMs would run under the instruction emulator)"
        }
        KvmKind::Unknown => "present, vendor module unknown",
    };
    println!("kvm:                {kvm}");
    if r.kvm != KvmKind::Absent && !r.kvm_accessible {
        println!(
            "                    /dev/kvm is not accessible: add yourself to the `kvm` group (sudo usermod -aG kvm $USER) and log in again"
        );
    }
    println!(
        "user namespaces:    {}",
        if r.user_namespaces {
            "enabled"
        } else {
            "disabled"
        }
    );
    println!(
        "isolation backends: {}",
        if r.isolation_backends.is_empty() {
            "none".to_string()
        } else {
            r.isolation_backends.join(", ")
        }
    );
    if !r.hardware_virtualization && r.user_namespaces {
        output::warning(
            "no hardware virtualization: sandboxes use namespace isolation, which shares the host kernel and is weaker than a microVM",
        );
    }
    let t = &r.templates;
    match (&t.error, t.default_built, t.default_has_image) {
        (Some(e), _, _) => println!("templates:          unreadable: {e}"),
        (None, true, true) => println!(
            "templates:          {} (default built, with its microVM image)",
            t.built.join(", ")
        ),
        (None, true, false) => println!(
            "templates:          {} (default built, no microVM image)",
            t.built.join(", ")
        ),
        (None, false, _) => println!(
            "templates:          {} (the default is built on first use, or now with `sudo sbx template build`)",
            if t.built.is_empty() {
                "none".to_owned()
            } else {
                t.built.join(", ")
            }
        ),
    }
    match &r.guest_kernel {
        Ok(p) => println!("guest kernel:       {p}"),
        Err(e) => println!("guest kernel:       missing: {e}"),
    }
    let store = &r.secret_store;
    match (&store.backend, &store.location) {
        (Some(kind), Some(location)) => println!(
            "secret store:       {kind} at {location} ({})",
            store.reason
        ),
        _ => println!("secret store:       unavailable: {}", store.reason),
    }
    for p in &store.passed_over {
        println!("                    not {}: {}", p.backend, p.why);
    }
    let ca = &r.proxy_ca;
    if ca.present {
        println!(
            "proxy CA:           {} (trusted inside every sandbox; HTTPS is intercepted with it)",
            ca.file
        );
    } else {
        println!(
            "proxy CA:           not created yet; made at {} when the first sandbox starts",
            ca.file
        );
    }
    for extra in &ca.extra_ca {
        println!("                    extra upstream CA: {extra}");
    }
    if let Some(e) = &ca.settings_error {
        output::warning(e);
    }
    println!("config:             {}", r.config_dir);
    println!("state:              {}", r.state_dir);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_kind_comes_from_the_loaded_vendor_module() {
        let dir = tempfile::tempdir().unwrap();
        let dev = dir.path().join("kvm");
        let sys = dir.path().join("module");
        std::fs::create_dir_all(&sys).unwrap();
        assert_eq!(KvmKind::detect(&sys, &dev), KvmKind::Absent);
        std::fs::write(&dev, "").unwrap();
        assert_eq!(KvmKind::detect(&sys, &dev), KvmKind::Unknown);
        std::fs::create_dir(sys.join("kvm_pvm")).unwrap();
        assert_eq!(KvmKind::detect(&sys, &dev), KvmKind::Pvm);
        assert!(!KvmKind::Pvm.is_hardware());
        std::fs::create_dir(sys.join("kvm_intel")).unwrap();
        assert_eq!(KvmKind::detect(&sys, &dev), KvmKind::Intel);
        assert!(KvmKind::Intel.is_hardware());
    }
}
