//! The sandbox CA: an ECDSA P-256 certificate authority made once per state directory, and the per-host leaf
//! certificates it signs on demand (cached in an LRU as ready-to-use TLS server configurations).
//!
//! Files in the state directory: `ca-bundle.pem` (private key + certificate, mode 0600, created atomically and never
//! replaced, so concurrent sbx processes agree on one CA) and `ca.pem` (the public certificate, for guest trust stores).

use std::io::Write;
use std::net::IpAddr;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::authority::Host;

/// Errors loading or creating the CA, or minting a leaf.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaError {
    /// Reading or writing a CA file failed.
    #[error("CA file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The CA bundle on disk is not what sbx wrote.
    #[error(
        "CA bundle {path} is malformed ({detail}); move it away to let sbx create a new CA (guests must then trust the new ca.pem)"
    )]
    Malformed {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// Certificate generation failed.
    #[error("certificate generation for {subject}: {source}")]
    Generate {
        /// The subject.
        subject: String,
        /// The rcgen error.
        source: rcgen::Error,
    },
    /// Building the TLS configuration failed.
    #[error("TLS configuration for {subject}: {source}")]
    Tls {
        /// The subject.
        subject: String,
        /// The rustls error.
        source: rustls::Error,
    },
}

const BUNDLE_FILE: &str = "ca-bundle.pem";
const CERT_FILE: &str = "ca.pem";
const CA_COMMON_NAME: &str = "sbx sandbox CA";
const LEAF_CACHE: usize = 1024;

/// The sandbox CA and its leaf cache.
pub struct CertificateAuthority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    leaf_key: KeyPair,
    cache: Mutex<lru::LruCache<String, Arc<ServerConfig>>>,
    provider: Arc<rustls::crypto::CryptoProvider>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("subject", &CA_COMMON_NAME)
            .finish_non_exhaustive()
    }
}

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_COMMON_NAME);
    dn.push(DnType::OrganizationName, "sbx");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(3650);
    params
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> CaError + '_ {
    move |source| CaError::Io {
        path: path.to_owned(),
        source,
    }
}

impl CertificateAuthority {
    /// Load the CA from `state_dir`, creating it (and the directory, mode 0700) on first use; (re)writes `ca.pem`.
    ///
    /// # Errors
    /// [`CaError`] when the files cannot be read/written or are malformed.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, CaError> {
        create_private_dir(state_dir)?;
        let bundle_path = state_dir.join(BUNDLE_FILE);
        let bundle = match std::fs::read_to_string(&bundle_path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                create_bundle(state_dir, &bundle_path)?
            }
            Err(e) => return Err(io_err(&bundle_path)(e)),
        };
        let ca = Self::from_bundle(&bundle, &bundle_path)?;
        write_atomic(
            &state_dir.join(CERT_FILE),
            ca.cert_pem.as_bytes(),
            0o644,
            true,
        )?;
        Ok(ca)
    }

    fn from_bundle(bundle: &str, path: &Path) -> Result<Self, CaError> {
        let malformed = |detail: &str| CaError::Malformed {
            path: path.to_owned(),
            detail: detail.to_owned(),
        };
        let key_start = bundle
            .find("-----BEGIN PRIVATE KEY-----")
            .ok_or_else(|| malformed("no private key"))?;
        let cert_start = bundle
            .find("-----BEGIN CERTIFICATE-----")
            .ok_or_else(|| malformed("no certificate"))?;
        let key_pem = &bundle[key_start..cert_start.max(key_start)];
        let cert_pem = bundle[cert_start..].to_owned();
        let key =
            KeyPair::from_pem(key_pem).map_err(|_| malformed("private key does not parse"))?;
        let cert_der = CertificateDer::from_pem_slice(cert_pem.as_bytes())
            .map_err(|_| malformed("certificate does not parse"))?;
        let leaf_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
            CaError::Generate {
                subject: "leaf key".into(),
                source,
            }
        })?;
        Ok(Self {
            issuer: Issuer::new(ca_params(), key),
            cert_pem,
            cert_der,
            leaf_key,
            cache: Mutex::new(lru::LruCache::new(
                NonZeroUsize::new(LEAF_CACHE).unwrap_or(NonZeroUsize::MIN),
            )),
            provider: Arc::new(rustls::crypto::ring::default_provider()),
        })
    }

    /// The CA certificate in PEM, for guest trust stores.
    #[must_use]
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA certificate in DER.
    #[must_use]
    pub fn cert_der(&self) -> &CertificateDer<'static> {
        &self.cert_der
    }

    /// A TLS server configuration presenting a leaf for `host` (ALPN h2 and http/1.1), from the cache when possible.
    ///
    /// # Errors
    /// [`CaError`] when signing fails.
    pub fn server_config(&self, host: &Host) -> Result<Arc<ServerConfig>, CaError> {
        let key = host.as_policy_str();
        if let Some(cfg) = self
            .cache
            .lock()
            .ok()
            .and_then(|mut c| c.get(&key).cloned())
        {
            return Ok(cfg);
        }
        let cfg = Arc::new(self.mint(host, &key)?);
        if let Ok(mut cache) = self.cache.lock() {
            cache.put(key, cfg.clone());
        }
        Ok(cfg)
    }

    fn mint(&self, host: &Host, subject: &str) -> Result<ServerConfig, CaError> {
        let gen_err = |source| CaError::Generate {
            subject: subject.to_owned(),
            source,
        };
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, subject);
        params.distinguished_name = dn;
        params.subject_alt_names = vec![match host {
            Host::Ip(ip) => SanType::IpAddress(*ip),
            Host::Name(n) => SanType::DnsName(n.clone().try_into().map_err(gen_err)?),
        }];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::days(1);
        params.not_after = now + time::Duration::days(365);
        let cert = params
            .signed_by(&self.leaf_key, &self.issuer)
            .map_err(gen_err)?;
        let chain = vec![cert.der().clone(), self.cert_der.clone()];
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.leaf_key.serialize_der()));
        let mut cfg = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .and_then(|b| b.with_no_client_auth().with_single_cert(chain, key))
            .map_err(|source| CaError::Tls {
                subject: subject.to_owned(),
                source,
            })?;
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(cfg)
    }

    /// Whether `ip` would get an IP SAN (always true; kept for documentation of the IP-host rule).
    #[doc(hidden)]
    #[must_use]
    pub fn uses_ip_san(_ip: IpAddr) -> bool {
        true
    }
}

fn create_private_dir(dir: &Path) -> Result<(), CaError> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
    {
        Ok(()) => Ok(()),
        Err(e) => Err(io_err(dir)(e)),
    }
}

/// Generate a CA and publish it with a no-replace link, so two racing processes end up with the same bundle.
fn create_bundle(dir: &Path, bundle_path: &Path) -> Result<String, CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|source| {
        CaError::Generate {
            subject: CA_COMMON_NAME.into(),
            source,
        }
    })?;
    let cert = ca_params()
        .self_signed(&key)
        .map_err(|source| CaError::Generate {
            subject: CA_COMMON_NAME.into(),
            source,
        })?;
    let text = format!("{}{}", key.serialize_pem(), cert.pem());
    let tmp = write_temp(dir, text.as_bytes(), 0o600)?;
    let linked = std::fs::hard_link(&tmp, bundle_path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(text),
        // Another process won the race: use its CA.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read_to_string(bundle_path).map_err(io_err(bundle_path))
        }
        Err(e) => Err(io_err(bundle_path)(e)),
    }
}

fn write_temp(dir: &Path, data: &[u8], mode: u32) -> Result<PathBuf, CaError> {
    use std::os::unix::fs::OpenOptionsExt;
    let tmp = dir.join(format!(".ca-tmp-{}-{}", std::process::id(), unique()));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io_err(&tmp))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(io_err(&tmp))?;
    Ok(tmp)
}

fn unique() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

fn write_atomic(path: &Path, data: &[u8], mode: u32, _replace: bool) -> Result<(), CaError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = write_temp(dir, data, mode)?;
    std::fs::rename(&tmp, path).map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn the_ca_is_made_once_and_its_key_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let a = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let b = CertificateAuthority::load_or_create(dir.path()).unwrap();
        assert_eq!(a.cert_pem(), b.cert_pem());
        let mode = std::fs::metadata(dir.path().join(BUNDLE_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(CERT_FILE)).unwrap(),
            a.cert_pem()
        );
    }

    #[test]
    fn a_malformed_bundle_is_reported_with_its_path() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(BUNDLE_FILE), "garbage").unwrap();
        let err = CertificateAuthority::load_or_create(dir.path())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ca-bundle.pem") && err.contains("malformed"),
            "{err}"
        );
    }

    #[test]
    fn leaves_are_cached_per_host() {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertificateAuthority::load_or_create(dir.path()).unwrap();
        let a = ca.server_config(&Host::Name("a.example".into())).unwrap();
        let a2 = ca.server_config(&Host::Name("a.example".into())).unwrap();
        let ip = ca
            .server_config(&Host::Ip("127.0.0.1".parse().unwrap()))
            .unwrap();
        assert!(Arc::ptr_eq(&a, &a2));
        assert!(!Arc::ptr_eq(&a, &ip));
    }
}
