//! The OS keychain store, through `keyring-core` and the platform's store crate: macOS
//! Keychain, Windows Credential Manager, or the Secret Service over D-Bus on Linux.
//!
//! Keychains have no portable "list" operation, so the store keeps an index entry (the
//! newline-separated list of keys, no values) next to the secrets, updated under the store
//! directory's file lock so concurrent sbx processes never lose an entry.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use keyring_core::{CredentialStore, Entry, Error as KeyringError};

use super::file::LOCK_FILE;
use super::fsutil::LockGuard;
use super::{BackendKind, SecretStore};
use crate::error::StoreError;
use crate::value::{Scope, SecretKey, SecretValue};

/// The keychain "service" under which every sbx entry is filed.
pub const KEYCHAIN_SERVICE: &str = "sbx";
/// The keychain "user" of the index entry.
const INDEX_USER: &str = "sbx-index";
/// How long the availability probe may take before the keychain counts as not answering.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

/// Secrets in an OS keychain.
pub struct KeychainStore {
    store: Arc<CredentialStore>,
    description: String,
    lock_path: PathBuf,
}

impl std::fmt::Debug for KeychainStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeychainStore")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

impl KeychainStore {
    /// Wraps any keyring-core store; `dir` holds the lock file for index updates.
    pub fn new(store: Arc<CredentialStore>, description: String, dir: &Path) -> Self {
        Self {
            store,
            description,
            lock_path: dir.join(LOCK_FILE),
        }
    }

    /// The platform's keychain if it answers a probe within a few seconds; else why not.
    pub fn open_platform(dir: &Path) -> Result<(Self, String), String> {
        let (store, description) = platform_store()?;
        let probe_store = store.clone();
        let probe = run_with_timeout(PROBE_TIMEOUT, move || {
            let entry = probe_store.build(KEYCHAIN_SERVICE, "sbx-probe", None)?;
            match entry.get_password() {
                Ok(_) | Err(KeyringError::NoEntry) => Ok(()),
                Err(e) => Err(e),
            }
        });
        match probe {
            Some(Ok(())) => Ok((Self::new(store, description.clone(), dir), description)),
            Some(Err(e)) => Err(format!("{description} did not work: {e}")),
            None => Err(format!(
                "{description} did not answer within {}s",
                PROBE_TIMEOUT.as_secs()
            )),
        }
    }

    fn entry(&self, user: &str) -> Result<Entry, StoreError> {
        self.store
            .build(KEYCHAIN_SERVICE, user, None)
            .map_err(|e| self.err(e))
    }

    fn err(&self, e: KeyringError) -> StoreError {
        // keyring errors can carry raw bytes of a badly encoded credential: never show them.
        let message = match e {
            KeyringError::BadEncoding(_) => "a stored value is not UTF-8".to_owned(),
            KeyringError::BadDataFormat(..) => "a stored value is malformed".to_owned(),
            other => other.to_string(),
        };
        StoreError::Keychain {
            backend: self.description.clone(),
            message,
        }
    }

    fn read_index(&self) -> Result<Vec<SecretKey>, StoreError> {
        let text = match self.entry(INDEX_USER)?.get_password() {
            Ok(text) => text,
            Err(KeyringError::NoEntry) => return Ok(Vec::new()),
            Err(e) => return Err(self.err(e)),
        };
        let mut keys: Vec<SecretKey> = text.lines().filter_map(parse_user).collect();
        keys.sort();
        keys.dedup();
        Ok(keys)
    }

    fn update_index(&self, change: impl FnOnce(&mut Vec<SecretKey>)) -> Result<(), StoreError> {
        let _lock = LockGuard::acquire(&self.lock_path)?;
        let mut keys = self.read_index()?;
        change(&mut keys);
        keys.sort();
        keys.dedup();
        let text: Vec<String> = keys.iter().map(user_for).collect();
        self.entry(INDEX_USER)?
            .set_password(&text.join("\n"))
            .map_err(|e| self.err(e))
    }
}

/// Keychain "user" for a key: `global/anthropic`, `sandbox:dev/github`.
fn user_for(key: &SecretKey) -> String {
    key.to_string()
}

fn parse_user(user: &str) -> Option<SecretKey> {
    let (scope, service) = user.rsplit_once('/')?;
    SecretKey::new(Scope::parse(scope).ok()?, service).ok()
}

impl SecretStore for KeychainStore {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretValue>, StoreError> {
        match self.entry(&user_for(key))?.get_password() {
            Ok(value) => Ok(Some(SecretValue::new(value))),
            Err(KeyringError::NoEntry) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    fn set(&self, key: &SecretKey, value: &SecretValue) -> Result<(), StoreError> {
        self.entry(&user_for(key))?
            .set_password(value.expose())
            .map_err(|e| self.err(e))?;
        self.update_index(|keys| keys.push(key.clone()))
    }

    fn delete(&self, key: &SecretKey) -> Result<bool, StoreError> {
        let existed = match self.entry(&user_for(key))?.delete_credential() {
            Ok(()) => true,
            Err(KeyringError::NoEntry) => false,
            Err(e) => return Err(self.err(e)),
        };
        self.update_index(|keys| keys.retain(|k| k != key))?;
        Ok(existed)
    }

    fn list(&self) -> Result<Vec<SecretKey>, StoreError> {
        self.read_index()
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Keychain
    }
}

/// Runs `f` on its own thread (keychain clients may start their own async runtime, which must
/// not nest inside a caller's) and gives up after `timeout`.
fn run_with_timeout<T: Send + 'static>(
    timeout: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("sbx-keychain-probe".into())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .ok()?;
    rx.recv_timeout(timeout).ok()
}

#[cfg(target_os = "linux")]
fn platform_store() -> Result<(Arc<CredentialStore>, String), String> {
    session_bus_present()?;
    let store: Arc<CredentialStore> =
        run_with_timeout(PROBE_TIMEOUT, zbus_secret_service_keyring_store::Store::new)
            .ok_or("the Secret Service did not answer on the D-Bus session bus")?
            .map_err(|e| format!("no Secret Service on the D-Bus session bus: {e}"))?;
    Ok((store, "Secret Service (D-Bus session bus)".into()))
}

/// The Secret Service is only worth trying when a session bus address is known.
#[cfg(target_os = "linux")]
fn session_bus_present() -> Result<(), String> {
    if std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty()) {
        return Ok(());
    }
    let runtime_bus = std::env::var_os("XDG_RUNTIME_DIR").map(|d| Path::new(&d).join("bus"));
    match runtime_bus {
        Some(path) if path.exists() => Ok(()),
        _ => Err(
            "no D-Bus session bus (DBUS_SESSION_BUS_ADDRESS is unset and $XDG_RUNTIME_DIR/bus does not exist)"
                .into(),
        ),
    }
}

#[cfg(target_os = "macos")]
fn platform_store() -> Result<(Arc<CredentialStore>, String), String> {
    let store: Arc<CredentialStore> = apple_native_keyring_store::keychain::Store::new()
        .map_err(|e| format!("macOS Keychain unavailable: {e}"))?;
    Ok((store, "macOS Keychain".into()))
}

#[cfg(target_os = "windows")]
fn platform_store() -> Result<(Arc<CredentialStore>, String), String> {
    let store: Arc<CredentialStore> = windows_native_keyring_store::Store::new()
        .map_err(|e| format!("Windows Credential Manager unavailable: {e}"))?;
    Ok((store, "Windows Credential Manager".into()))
}

#[cfg(not(any(target_os = "linux", target_os = "macos", target_os = "windows")))]
fn platform_store() -> Result<(Arc<CredentialStore>, String), String> {
    Err("no OS keychain support on this platform".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The OS keychains cannot be reached here, so the store logic (entry naming, the index,
    /// NoEntry handling) runs against keyring-core's in-memory mock store.
    #[test]
    fn round_trip_and_index_against_the_mock_keyring() {
        let dir = tempfile::tempdir().unwrap();
        let mock: Arc<CredentialStore> = keyring_core::mock::Store::new().unwrap();
        let store = Arc::new(KeychainStore::new(mock, "mock keyring".into(), dir.path()));
        let a = SecretKey::global("anthropic").unwrap();
        let b = SecretKey::sandbox("dev", "github").unwrap();
        assert_eq!(store.get(&a).unwrap(), None);
        store.set(&a, &"sk-1".into()).unwrap();
        store.set(&b, &"ghp".into()).unwrap();
        store.set(&a, &"sk-2".into()).unwrap();
        assert_eq!(store.get(&a).unwrap().unwrap().expose(), "sk-2");
        assert_eq!(store.list().unwrap(), vec![a.clone(), b.clone()]);
        assert_eq!(store.effective_for("dev").unwrap().len(), 2);
        assert!(store.delete(&a).unwrap());
        assert!(!store.delete(&a).unwrap());
        assert_eq!(store.list().unwrap(), vec![b]);
        assert_eq!(store.kind(), BackendKind::Keychain);
        assert!(!format!("{store:?}").contains("ghp"));

        // Concurrent writers keep every index entry (the index update is locked).
        std::thread::scope(|s| {
            for t in 0..4 {
                let store = store.clone();
                s.spawn(move || {
                    for i in 0..5 {
                        store
                            .set(
                                &SecretKey::global(&format!("t{t}-{i}")).unwrap(),
                                &"v".into(),
                            )
                            .unwrap();
                    }
                });
            }
        });
        assert_eq!(store.list().unwrap().len(), 21);
    }

    #[test]
    fn index_lines_round_trip() {
        for key in [
            SecretKey::global("x").unwrap(),
            SecretKey::sandbox("a.b-c", "y_z").unwrap(),
        ] {
            assert_eq!(parse_user(&user_for(&key)), Some(key));
        }
        assert_eq!(parse_user("garbage"), None);
    }
}
