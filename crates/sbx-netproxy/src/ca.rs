//! The sandbox CA: an ECDSA P-256 certificate authority made once per state directory, and the per-host leaf
//! certificates it signs on demand (cached in an LRU as ready-to-use TLS server configurations).
//!
//! Where the CA's private key lives is a [`CaStore`]: [`FileCaStore`] keeps `ca-bundle.pem` (private key +
//! certificate, mode 0600) in the state directory, [`SecretCaStore`] keeps the bundle in an sbx-secrets
//! [`SecretStore`](sbx_secrets::SecretStore) (keychain or age-encrypted file). Both create atomically and never
//! replace, so concurrent sbx processes agree on one CA. The public certificate is always exported as `ca.pem` in the
//! state directory, for guest trust stores.

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
    /// The secret store holding the CA key failed.
    #[error("CA key in {store}: {detail}")]
    Store {
        /// Which store and key.
        store: String,
        /// What went wrong (never key material).
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
    /// Load the CA from `state_dir` (`ca-bundle.pem`), creating it (and the directory, mode 0700) on first use;
    /// (re)writes `ca.pem`.
    ///
    /// # Errors
    /// [`CaError`] when the files cannot be read/written or are malformed.
    pub fn load_or_create(state_dir: &Path) -> Result<Self, CaError> {
        Self::load_or_create_in(&FileCaStore::new(state_dir), state_dir)
    }

    /// Load the CA from `store`, creating it there on first use (atomically: when several processes race, all end
    /// up with the one CA that was stored first); writes the public certificate to `cert_dir/ca.pem`.
    ///
    /// # Errors
    /// [`CaError`] when the store fails, holds a malformed bundle, or `ca.pem` cannot be written.
    pub fn load_or_create_in(store: &dyn CaStore, cert_dir: &Path) -> Result<Self, CaError> {
        create_private_dir(cert_dir)?;
        let bundle = match store.load()? {
            Some(text) => text,
            None => store.create(&new_bundle()?)?,
        };
        let ca = Self::from_bundle(&bundle, Path::new(&store.describe()))?;
        write_atomic(
            &cert_dir.join(CERT_FILE),
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

/// A fresh CA: PEM private key followed by the PEM certificate.
fn new_bundle() -> Result<String, CaError> {
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
    Ok(format!("{}{}", key.serialize_pem(), cert.pem()))
}

/// Where the CA bundle (PEM private key + certificate) is kept.
pub trait CaStore: Send + Sync + std::fmt::Debug {
    /// The stored bundle, if one exists.
    ///
    /// # Errors
    /// [`CaError`] when the store cannot be read.
    fn load(&self) -> Result<Option<String>, CaError>;
    /// Store `bundle` unless a bundle exists already, atomically across processes; returns the bundle stored
    /// afterwards (`bundle`, or the one another process stored first).
    ///
    /// # Errors
    /// [`CaError`] when the store cannot be written.
    fn create(&self, bundle: &str) -> Result<String, CaError>;
    /// Names the store in errors (a path, or a secret store and key).
    fn describe(&self) -> String;
}

/// The CA bundle as `DIR/ca-bundle.pem` (mode 0600), published with a no-replace hard link.
#[derive(Debug, Clone)]
pub struct FileCaStore {
    dir: PathBuf,
}

impl FileCaStore {
    /// A store in `dir` (created 0700 on first write).
    #[must_use]
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.join(BUNDLE_FILE)
    }
}

impl CaStore for FileCaStore {
    fn load(&self) -> Result<Option<String>, CaError> {
        let path = self.path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn create(&self, bundle: &str) -> Result<String, CaError> {
        create_private_dir(&self.dir)?;
        let path = self.path();
        let tmp = write_temp(&self.dir, bundle.as_bytes(), 0o600)?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir)?;
                Ok(bundle.to_owned())
            }
            // Another process won the race: use its CA.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                std::fs::read_to_string(&path).map_err(io_err(&path))
            }
            Err(e) => Err(io_err(&path)(e)),
        }
    }

    fn describe(&self) -> String {
        self.path().display().to_string()
    }
}

/// The CA bundle as one secret in an sbx-secrets store (keychain, age-encrypted file, memory), so the CA private
/// key is protected like every other credential. First-time creation holds an exclusive lock on `lock_file`, so two
/// processes cannot both create a CA.
///
/// The default key ([`SecretCaStore::default_key`]) is scoped to a reserved sandbox name, so the bundle never shows
/// up among the secrets a real sandbox gets.
#[derive(Debug, Clone)]
pub struct SecretCaStore {
    store: Arc<dyn sbx_secrets::SecretStore>,
    key: sbx_secrets::SecretKey,
    lock_file: PathBuf,
}

impl SecretCaStore {
    /// Keep the CA under `key` in `store`; `lock_file` (created on first use) serialises first-time creation.
    #[must_use]
    pub fn new(
        store: Arc<dyn sbx_secrets::SecretStore>,
        key: sbx_secrets::SecretKey,
        lock_file: PathBuf,
    ) -> Self {
        Self {
            store,
            key,
            lock_file,
        }
    }

    /// `sbx-proxy` / `ca-bundle`: a sandbox scope no sandbox is given (sandbox ids are generated, not this name).
    ///
    /// # Errors
    /// Never in practice (the name is valid); typed for the store's key validation.
    pub fn default_key() -> Result<sbx_secrets::SecretKey, sbx_secrets::KeyError> {
        sbx_secrets::SecretKey::sandbox("sbx-proxy", "ca-bundle")
    }

    fn store_err(&self, e: &dyn std::fmt::Display) -> CaError {
        CaError::Store {
            store: self.describe(),
            detail: e.to_string(),
        }
    }
}

impl CaStore for SecretCaStore {
    fn load(&self) -> Result<Option<String>, CaError> {
        let value = self.store.get(&self.key).map_err(|e| self.store_err(&e))?;
        Ok(value.map(|v| v.expose().to_owned()))
    }

    fn create(&self, bundle: &str) -> Result<String, CaError> {
        if let Some(dir) = self.lock_file.parent() {
            create_private_dir(dir)?;
        }
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock_file)
            .map_err(io_err(&self.lock_file))?;
        lock.lock().map_err(io_err(&self.lock_file))?;
        // Under the lock: whoever stored first wins, everyone else reads theirs.
        let result = match self.load()? {
            Some(existing) => Ok(existing),
            None => self
                .store
                .set(&self.key, &sbx_secrets::SecretValue::from(bundle))
                .map(|()| bundle.to_owned())
                .map_err(|e| self.store_err(&e)),
        };
        let _ = lock.unlock();
        result
    }

    fn describe(&self) -> String {
        format!("secret store {:?} key {}", self.store.kind(), self.key)
    }
}

fn sync_dir(dir: &Path) -> Result<(), CaError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(dir))
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
    std::fs::rename(&tmp, path).map_err(io_err(path))?;
    sync_dir(dir)
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
