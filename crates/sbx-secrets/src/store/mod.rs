//! Secret stores: the [`SecretStore`] trait, its backends, and [`open_default`], which picks
//! one and says why ([`BackendReport`]).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use secrecy::SecretString;

use crate::error::StoreError;
use crate::value::{Scope, SecretKey, SecretValue};

pub mod file;
pub mod format;
mod fsutil;
#[cfg(feature = "keychain")]
pub mod keychain;
pub mod memory;

pub use file::{FileStore, Protection};
pub use memory::MemoryStore;

/// A place secrets are kept. Every backend is safe to share between threads; the file backend
/// is also safe between concurrent sbx processes (updates are read-modify-write under a lock).
pub trait SecretStore: Send + Sync + fmt::Debug {
    /// The value stored under `key`, if any.
    fn get(&self, key: &SecretKey) -> Result<Option<SecretValue>, StoreError>;
    /// Stores `value` under `key`, replacing any previous value.
    fn set(&self, key: &SecretKey, value: &SecretValue) -> Result<(), StoreError>;
    /// Removes `key`; returns whether it was present.
    fn delete(&self, key: &SecretKey) -> Result<bool, StoreError>;
    /// Every stored key (never the values), sorted.
    fn list(&self) -> Result<Vec<SecretKey>, StoreError>;
    /// Which backend this is.
    fn kind(&self) -> BackendKind;

    /// The secrets in force for `sandbox`: every global secret, overridden service by service by
    /// the sandbox's own.
    fn effective_for(&self, sandbox: &str) -> Result<BTreeMap<String, SecretValue>, StoreError> {
        let mut out = BTreeMap::new();
        let keys = self.list()?;
        let ordered = keys.iter().filter(|k| k.scope == Scope::Global).chain(
            keys.iter()
                .filter(|k| matches!(&k.scope, Scope::Sandbox(s) if s == sandbox)),
        );
        for key in ordered {
            if let Some(value) = self.get(key)? {
                out.insert(key.service.clone(), value);
            }
        }
        Ok(out)
    }
}

/// The kind of backend in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum BackendKind {
    /// The OS keychain (macOS Keychain, Windows Credential Manager, Secret Service).
    Keychain,
    /// An age-encrypted file whose X25519 identity lives in a separate 0600 key file.
    EncryptedFile,
    /// An age-encrypted file protected by a passphrase (scrypt).
    PassphraseFile,
    /// Process memory only; nothing persists.
    Memory,
}

impl fmt::Display for BackendKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            BackendKind::Keychain => "keychain",
            BackendKind::EncryptedFile => "encrypted-file",
            BackendKind::PassphraseFile => "passphrase-file",
            BackendKind::Memory => "memory",
        })
    }
}

/// Which backend [`open`] chose, where it keeps secrets, and why (`sbx doctor` prints this).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendReport {
    /// The backend in use.
    pub kind: BackendKind,
    /// Where secrets live (a file path, or a keychain description).
    pub location: String,
    /// Why this backend was chosen.
    pub reason: String,
    /// Backends considered and not used, each with why.
    pub passed_over: Vec<(BackendKind, String)>,
}

impl fmt::Display for BackendReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "secret store: {} at {} ({})",
            self.kind, self.location, self.reason
        )?;
        for (kind, why) in &self.passed_over {
            write!(f, "; not {kind}: {why}")?;
        }
        Ok(())
    }
}

/// Which backend to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Preference {
    /// An existing store wins; else the OS keychain if one answers; else the encrypted file.
    #[default]
    Auto,
    /// The OS keychain or an error.
    Keychain,
    /// The encrypted file (key file, or passphrase when one is given).
    File,
    /// In memory (tests, throwaway sessions).
    Memory,
}

/// Options for [`open`].
#[derive(Debug, Default)]
pub struct OpenOptions {
    /// Which backend to use.
    pub preference: Preference,
    /// A passphrase: selects (or unlocks) the passphrase-protected file store.
    pub passphrase: Option<SecretString>,
    /// scrypt work factor (log2 N) for new passphrase encryptions; `None`: age's default
    /// (about one second of work).
    pub scrypt_work_factor: Option<u8>,
}

/// Name of the file recording that this directory's secrets live in the OS keychain, so a
/// later run with no keychain reachable fails loudly instead of silently using an empty file.
const KEYCHAIN_MARKER: &str = "keychain-in-use";

/// Opens the store in `dir` with default options; see [`open`].
pub fn open_default(dir: &Path) -> Result<(Box<dyn SecretStore>, BackendReport), StoreError> {
    open(dir, &OpenOptions::default())
}

/// Opens a store rooted at `dir` (created 0700 if missing) and reports which backend and why.
///
/// With [`Preference::Auto`]: a passphrase selects the passphrase file store; an existing file
/// store is kept (so secrets never silently move); a directory whose secrets are in the
/// keychain stays there; otherwise the OS keychain is used when one answers (on Linux: only
/// when a D-Bus session bus and a Secret Service respond), else the encrypted file.
pub fn open(
    dir: &Path,
    options: &OpenOptions,
) -> Result<(Box<dyn SecretStore>, BackendReport), StoreError> {
    match options.preference {
        Preference::Memory => Ok(memory_with_report()),
        Preference::File => open_file(dir, options, "file backend requested".into(), Vec::new()),
        Preference::Keychain => open_keychain(dir).map_err(|why| StoreError::Keychain {
            backend: "OS keychain".into(),
            message: why,
        }),
        Preference::Auto => open_auto(dir, options),
    }
}

fn open_auto(
    dir: &Path,
    options: &OpenOptions,
) -> Result<(Box<dyn SecretStore>, BackendReport), StoreError> {
    let store_file = dir.join(file::STORE_FILE);
    if options.passphrase.is_some() {
        return open_file(dir, options, "a passphrase was given".into(), Vec::new());
    }
    if store_file.exists() {
        let reason = format!(
            "an encrypted store already exists at {}",
            store_file.display()
        );
        return open_file(dir, options, reason, Vec::new());
    }
    if dir.join(KEYCHAIN_MARKER).exists() {
        return open_keychain(dir).map_err(|why| StoreError::Keychain {
            backend: "OS keychain".into(),
            message: format!(
                "this store's secrets are in the OS keychain ({} exists) but it is not reachable: {why}",
                dir.join(KEYCHAIN_MARKER).display()
            ),
        });
    }
    match open_keychain(dir) {
        Ok(found) => Ok(found),
        Err(why) => open_file(
            dir,
            options,
            "no usable OS keychain".into(),
            vec![(BackendKind::Keychain, why)],
        ),
    }
}

fn memory_with_report() -> (Box<dyn SecretStore>, BackendReport) {
    let report = BackendReport {
        kind: BackendKind::Memory,
        location: "process memory".into(),
        reason: "memory backend requested; nothing persists".into(),
        passed_over: Vec::new(),
    };
    (Box::new(MemoryStore::new()), report)
}

fn open_file(
    dir: &Path,
    options: &OpenOptions,
    reason: String,
    passed_over: Vec<(BackendKind, String)>,
) -> Result<(Box<dyn SecretStore>, BackendReport), StoreError> {
    let store = match &options.passphrase {
        Some(passphrase) => {
            let mut p = Protection::passphrase(passphrase.clone());
            if let Some(log_n) = options.scrypt_work_factor {
                p = p.with_work_factor(log_n);
            }
            FileStore::open(dir, p)?
        }
        None => FileStore::open_detect(dir)?,
    };
    let report = BackendReport {
        kind: store.kind(),
        location: store.path().display().to_string(),
        reason,
        passed_over,
    };
    Ok((Box::new(store), report))
}

#[cfg(feature = "keychain")]
fn open_keychain(dir: &Path) -> Result<(Box<dyn SecretStore>, BackendReport), String> {
    let (store, description) = keychain::KeychainStore::open_platform(dir)?;
    fsutil::create_private_dir(dir).map_err(|e| e.to_string())?;
    let marker = dir.join(KEYCHAIN_MARKER);
    if !marker.exists() {
        fsutil::write_atomic(&marker, description.as_bytes()).map_err(|e| e.to_string())?;
    }
    let report = BackendReport {
        kind: BackendKind::Keychain,
        location: description.clone(),
        reason: format!("{description} answered"),
        passed_over: Vec::new(),
    };
    Ok((Box::new(store), report))
}

#[cfg(not(feature = "keychain"))]
fn open_keychain(_dir: &Path) -> Result<(Box<dyn SecretStore>, BackendReport), String> {
    Err("sbx-secrets was built without the `keychain` feature".into())
}

/// The default store directory: `$SBX_HOME/secrets`, else `$XDG_DATA_HOME/sbx/secrets`, else
/// `~/.local/share/sbx/secrets`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |name| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(home) = env("SBX_HOME") {
        return Some(home.join("secrets"));
    }
    if let Some(data) = env("XDG_DATA_HOME") {
        return Some(data.join("sbx").join("secrets"));
    }
    env("HOME").map(|h| h.join(".local/share/sbx/secrets"))
}
