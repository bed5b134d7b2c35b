//! The base environment of every command in the sandbox, and the sandbox CA in the trust stores.

use std::path::{Path, PathBuf};

/// Where the combined bundle (system roots + sandbox CA) is written.
pub const CA_BUNDLE: &str = "/etc/ssl/certs/sbx-ca-bundle.pem";
/// The sandbox CA alone, in the Debian local trust directory.
pub const LOCAL_CA: &str = "/usr/local/share/ca-certificates/sbx-sandbox-ca.crt";
/// The system bundle read by curl, git, OpenSSL and dockerd on Debian.
pub const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// Paths of the installed CA, for the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledCa {
    /// The CA certificate alone (node's `NODE_EXTRA_CA_CERTS` adds it to its own roots).
    pub ca_only: PathBuf,
    /// System roots plus the CA (Python, curl, git replace their roots with this).
    pub bundle: PathBuf,
}

/// Installs `ca` (PEM) under `root`: into the local trust directory, appended to the system bundle when one exists,
/// and as a combined bundle. Idempotent across restarts.
pub fn install_ca(root: &Path, ca: &Path) -> std::io::Result<InstalledCa> {
    let pem = std::fs::read_to_string(ca)?;
    let under = |p: &str| root.join(p.trim_start_matches('/'));
    let local = under(LOCAL_CA);
    if let Some(dir) = local.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&local, &pem)?;
    let system = under(SYSTEM_BUNDLE);
    let mut roots = std::fs::read_to_string(&system).unwrap_or_default();
    if !roots.contains(pem.trim()) {
        if system.exists() {
            let mut appended = roots.clone();
            if !appended.is_empty() && !appended.ends_with('\n') {
                appended.push('\n');
            }
            appended.push_str(&pem);
            std::fs::write(&system, &appended)?;
        }
        if !roots.is_empty() && !roots.ends_with('\n') {
            roots.push('\n');
        }
        roots.push_str(&pem);
    }
    let bundle = under(CA_BUNDLE);
    if let Some(dir) = bundle.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&bundle, roots)?;
    Ok(InstalledCa {
        ca_only: PathBuf::from(LOCAL_CA),
        bundle: PathBuf::from(CA_BUNDLE),
    })
}

/// The variables every command gets before the exec request's own `env` is applied.
pub fn base_env(proxy_url: Option<&str>, ca: Option<&InstalledCa>) -> Vec<(String, String)> {
    let mut env = vec![
        (
            "PATH".to_owned(),
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".to_owned(),
        ),
        ("LANG".to_owned(), "C.UTF-8".to_owned()),
        ("SBX_SANDBOX".to_owned(), "1".to_owned()),
    ];
    if let Some(url) = proxy_url {
        let no_proxy = "localhost,127.0.0.1,::1";
        for (k, v) in [
            ("HTTP_PROXY", url),
            ("HTTPS_PROXY", url),
            ("NO_PROXY", no_proxy),
        ] {
            env.push((k.to_owned(), v.to_owned()));
            env.push((k.to_lowercase(), v.to_owned()));
        }
    }
    if let Some(ca) = ca {
        let bundle = ca.bundle.display().to_string();
        env.push((
            "NODE_EXTRA_CA_CERTS".to_owned(),
            ca.ca_only.display().to_string(),
        ));
        for k in [
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "GIT_SSL_CAINFO",
            "CURL_CA_BUNDLE",
        ] {
            env.push((k.to_owned(), bundle.clone()));
        }
    }
    env
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn proxy_and_ca_variables_are_set_in_both_cases() {
        let ca = InstalledCa {
            ca_only: LOCAL_CA.into(),
            bundle: CA_BUNDLE.into(),
        };
        let env = base_env(Some("http://127.0.0.1:3128"), Some(&ca));
        let get = |k: &str| env.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
        for k in ["HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy"] {
            assert_eq!(get(k), Some("http://127.0.0.1:3128"), "{k}");
        }
        assert_eq!(get("no_proxy"), get("NO_PROXY"));
        assert_eq!(get("NODE_EXTRA_CA_CERTS"), Some(LOCAL_CA));
        for k in [
            "REQUESTS_CA_BUNDLE",
            "SSL_CERT_FILE",
            "GIT_SSL_CAINFO",
            "CURL_CA_BUNDLE",
        ] {
            assert_eq!(get(k), Some(CA_BUNDLE), "{k}");
        }
        assert!(
            base_env(None, None)
                .iter()
                .all(|(k, _)| !k.to_lowercase().contains("proxy"))
        );
    }

    #[test]
    fn ca_install_appends_once_and_builds_a_bundle() {
        let root = tempfile::tempdir().unwrap();
        let ca = root.path().join("ca.pem");
        std::fs::write(&ca, PEM).unwrap();
        let system = root.path().join(SYSTEM_BUNDLE.trim_start_matches('/'));
        std::fs::create_dir_all(system.parent().unwrap()).unwrap();
        std::fs::write(&system, "SYSTEM ROOTS").unwrap();
        install_ca(root.path(), &ca).unwrap();
        install_ca(root.path(), &ca).unwrap();
        let sys = std::fs::read_to_string(&system).unwrap();
        assert_eq!(sys.matches("BEGIN CERTIFICATE").count(), 1, "{sys}");
        assert!(sys.starts_with("SYSTEM ROOTS\n"));
        let bundle =
            std::fs::read_to_string(root.path().join(CA_BUNDLE.trim_start_matches('/'))).unwrap();
        assert_eq!(bundle, sys);
        assert!(root.path().join(LOCAL_CA.trim_start_matches('/')).exists());
    }
}
