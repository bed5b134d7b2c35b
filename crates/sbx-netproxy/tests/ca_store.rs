//! The CA key kept through a store: first-time creation raced by several processes ends with one CA, whether the key
//! lives in `ca-bundle.pem` or in an sbx-secrets age-encrypted file store.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use sbx_netproxy::{CertificateAuthority, SecretCaStore};
use sbx_secrets::{FileStore, Protection};

const CHILD_DIR: &str = "SBX_NETPROXY_CA_RACE_DIR";
const CHILD_KIND: &str = "SBX_NETPROXY_CA_RACE_KIND";
const TEST_NAME: &str = "concurrent_first_time_creation_by_several_processes_ends_with_one_ca";

fn secret_store_ca(dir: &Path) -> SecretCaStore {
    let store = FileStore::open(&dir.join("secrets"), Protection::KeyFile).unwrap();
    SecretCaStore::new(
        Arc::new(store),
        SecretCaStore::default_key().unwrap(),
        dir.join("ca.lock"),
    )
}

fn load(kind: &str, dir: &Path) -> CertificateAuthority {
    match kind {
        "file" => CertificateAuthority::load_or_create(dir).unwrap(),
        _ => CertificateAuthority::load_or_create_in(&secret_store_ca(dir), dir).unwrap(),
    }
}

#[test]
fn concurrent_first_time_creation_by_several_processes_ends_with_one_ca() {
    if let (Ok(dir), Ok(kind)) = (std::env::var(CHILD_DIR), std::env::var(CHILD_KIND)) {
        // Child: create-or-load and report the certificate.
        let ca = load(&kind, Path::new(&dir));
        println!("CA[{}]", ca.cert_pem().replace('\n', "|"));
        return;
    }
    let exe = std::env::current_exe().unwrap();
    for kind in ["file", "secrets"] {
        let dir = tempfile::tempdir().unwrap();
        let children: Vec<_> = (0..4)
            .map(|_| {
                Command::new(&exe)
                    .args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
                    .env(CHILD_DIR, dir.path())
                    .env(CHILD_KIND, kind)
                    .stdout(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        let mut certs = Vec::new();
        for child in children {
            let out = child.wait_with_output().unwrap();
            assert!(out.status.success(), "{kind}: child failed");
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            let cert = text
                .split("CA[")
                .nth(1)
                .and_then(|t| t.split(']').next())
                .unwrap_or_else(|| panic!("{kind}: no certificate in {text}"))
                .to_owned();
            certs.push(cert);
        }
        certs.dedup();
        assert_eq!(certs.len(), 1, "{kind}: the processes made different CAs");
        // And this process, coming later, loads the same one; ca.pem is the public half only.
        let ca = load(kind, dir.path());
        assert_eq!(ca.cert_pem().replace('\n', "|"), certs[0]);
        let exported = std::fs::read_to_string(dir.path().join("ca.pem")).unwrap();
        assert_eq!(exported, ca.cert_pem());
        assert!(!exported.contains("PRIVATE KEY"));
        let bundle_file = dir.path().join("ca-bundle.pem").exists();
        assert_eq!(bundle_file, kind == "file", "{kind}: where the key lives");
    }
}

#[test]
fn the_ca_key_in_a_secret_store_is_encrypted_at_rest_and_reused() {
    let dir = tempfile::tempdir().unwrap();
    let a =
        CertificateAuthority::load_or_create_in(&secret_store_ca(dir.path()), dir.path()).unwrap();
    let b =
        CertificateAuthority::load_or_create_in(&secret_store_ca(dir.path()), dir.path()).unwrap();
    assert_eq!(a.cert_pem(), b.cert_pem());
    // No file under the directory holds the key in the clear.
    for entry in walk(dir.path()) {
        let bytes = std::fs::read(&entry).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("BEGIN PRIVATE KEY"),
            "{} holds the CA key in the clear",
            entry.display()
        );
    }
    // A damaged store is an error naming the store, never a silently replaced CA.
    let store = secret_store_ca(dir.path());
    use sbx_secrets::SecretStore as _;
    let store_inner = FileStore::open(&dir.path().join("secrets"), Protection::KeyFile).unwrap();
    store_inner
        .set(&SecretCaStore::default_key().unwrap(), &"not a CA".into())
        .unwrap();
    let err = CertificateAuthority::load_or_create_in(&store, dir.path())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("malformed") && err.contains("secret store"),
        "{err}"
    );
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}
