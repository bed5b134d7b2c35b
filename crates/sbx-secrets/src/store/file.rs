//! The age-encrypted file store.
//!
//! Layout of the store directory:
//!
//! | file | content | mode |
//! | --- | --- | --- |
//! | `secrets.age` | the entries ([`format`](super::format)), age-encrypted | 0600 |
//! | `secrets.key` | the age X25519 identity (key-file mode only) | 0600 |
//! | `secrets.lock` | empty; `flock`ed around every read-modify-write | 0600 |
//!
//! In passphrase mode there is no key file: the file is encrypted to an age scrypt recipient.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use secrecy::SecretString;
use zeroize::Zeroizing;

use super::format::{self, Entries};
use super::fsutil::{self, LockGuard};
use super::{BackendKind, SecretStore};
use crate::error::StoreError;
use crate::value::{SecretKey, SecretValue};

/// File name of the encrypted store inside its directory.
pub const STORE_FILE: &str = "secrets.age";
/// File name of the age identity inside the store directory.
pub const KEY_FILE: &str = "secrets.key";
/// File name of the lock file inside the store directory.
pub const LOCK_FILE: &str = "secrets.lock";

/// How the store file is protected.
#[derive(Debug, Clone)]
pub enum Protection {
    /// Encrypted to an age X25519 identity kept in [`KEY_FILE`] (created on first write).
    KeyFile,
    /// Encrypted with a passphrase through age's scrypt recipient.
    Passphrase {
        /// The passphrase.
        passphrase: SecretString,
        /// scrypt log2(N) for new encryptions; `None`: age's default (about 1 s of work).
        work_factor: Option<u8>,
    },
}

impl Protection {
    /// Passphrase protection with age's default work factor.
    pub fn passphrase(passphrase: SecretString) -> Self {
        Protection::Passphrase {
            passphrase,
            work_factor: None,
        }
    }

    /// Sets the scrypt work factor (log2 N) used when writing; tests use a small one.
    pub fn with_work_factor(self, log_n: u8) -> Self {
        match self {
            Protection::Passphrase { passphrase, .. } => Protection::Passphrase {
                passphrase,
                work_factor: Some(log_n),
            },
            other => other,
        }
    }
}

/// An age-encrypted secret store in a directory. See the module docs for the layout.
#[derive(Debug)]
pub struct FileStore {
    store_path: PathBuf,
    key_path: PathBuf,
    lock_path: PathBuf,
    protection: Protection,
}

impl FileStore {
    /// Opens (without reading) the store in `dir`, creating `dir` 0700 if missing. Nothing is
    /// written until the first [`set`](SecretStore::set).
    pub fn open(dir: &Path, protection: Protection) -> Result<Self, StoreError> {
        fsutil::create_private_dir(dir)?;
        let store = Self {
            store_path: dir.join(STORE_FILE),
            key_path: dir.join(KEY_FILE),
            lock_path: dir.join(LOCK_FILE),
            protection,
        };
        store.check_protection_matches()?;
        Ok(store)
    }

    /// Opens the store in `dir` in key-file mode, failing with
    /// [`StoreError::PassphraseRequired`] if the existing file is passphrase-protected.
    pub fn open_detect(dir: &Path) -> Result<Self, StoreError> {
        Self::open(dir, Protection::KeyFile)
    }

    /// The encrypted store file.
    pub fn path(&self) -> &Path {
        &self.store_path
    }

    /// The key file (used in key-file mode only).
    pub fn key_path(&self) -> &Path {
        &self.key_path
    }

    /// Reads and decrypts every entry.
    pub fn load(&self) -> Result<Entries, StoreError> {
        let Some(ciphertext) = fsutil::read_private(&self.store_path)? else {
            return Ok(Entries::new());
        };
        self.decode(&ciphertext)
    }

    /// Decrypts and parses store file bytes as read from disk (what [`load`](Self::load)
    /// does after reading). Never panics, whatever the bytes (it is fuzzed).
    pub fn decode(&self, ciphertext: &[u8]) -> Result<Entries, StoreError> {
        let plaintext = self.decrypt(ciphertext)?;
        format::parse(&plaintext).map_err(|e| StoreError::Corrupt {
            path: self.store_path.clone(),
            line: e.line,
            message: e.message,
        })
    }

    /// Runs `change` on the entries under the lock and writes the result back atomically.
    /// If the current file cannot be read (corrupt, wrong key, bad permissions) nothing is
    /// written.
    pub fn update<T>(&self, change: impl FnOnce(&mut Entries) -> T) -> Result<T, StoreError> {
        let _lock = LockGuard::acquire(&self.lock_path)?;
        let mut entries = self.load()?;
        let result = change(&mut entries);
        let plaintext = format::serialize(&entries);
        let ciphertext = self.encrypt(&plaintext)?;
        fsutil::write_atomic(&self.store_path, &ciphertext)?;
        Ok(result)
    }

    /// Fails early when the file on disk is protected differently from what was asked.
    fn check_protection_matches(&self) -> Result<(), StoreError> {
        let Ok(head) = read_head(&self.store_path) else {
            return Ok(());
        };
        let on_disk_scrypt = is_scrypt(&head);
        match (&self.protection, on_disk_scrypt) {
            (Protection::KeyFile, Some(true)) => Err(StoreError::PassphraseRequired {
                path: self.store_path.clone(),
            }),
            (Protection::Passphrase { .. }, Some(false)) => {
                Err(StoreError::NotPassphraseProtected {
                    path: self.store_path.clone(),
                    key_file: self.key_path.clone(),
                })
            }
            _ => Ok(()),
        }
    }

    fn decrypt(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        let result = match &self.protection {
            Protection::KeyFile => {
                let identity = self
                    .read_identity()?
                    .ok_or_else(|| StoreError::MissingKeyFile {
                        store: self.store_path.clone(),
                        key_file: self.key_path.clone(),
                    })?;
                age::decrypt(&identity, ciphertext)
            }
            Protection::Passphrase { passphrase, .. } => {
                let identity = age::scrypt::Identity::new(passphrase.clone());
                age::decrypt(&identity, ciphertext)
            }
        };
        result
            .map(Zeroizing::new)
            .map_err(|e| self.decrypt_error(e))
    }

    fn decrypt_error(&self, err: age::DecryptError) -> StoreError {
        use age::DecryptError as E;
        let path = self.store_path.clone();
        let passphrase = matches!(self.protection, Protection::Passphrase { .. });
        match err {
            E::DecryptionFailed | E::KeyDecryptionFailed if passphrase => {
                StoreError::WrongPassphrase { path }
            }
            E::NoMatchingKeys if passphrase => StoreError::NotPassphraseProtected {
                path,
                key_file: self.key_path.clone(),
            },
            E::NoMatchingKeys => StoreError::Decrypt {
                path,
                reason: format!(
                    "it is not encrypted to the key in {} (was the key file replaced?)",
                    self.key_path.display()
                ),
            },
            E::ExcessiveWork { required, target } => StoreError::Decrypt {
                path,
                reason: format!(
                    "its scrypt work factor {required} is far above this machine's {target}"
                ),
            },
            E::InvalidHeader | E::UnknownFormat => StoreError::Decrypt {
                path,
                reason: "the age header is damaged or missing (corrupt or not an age file)".into(),
            },
            other => StoreError::Decrypt {
                path,
                reason: format!("{other} (the file is truncated or damaged)"),
            },
        }
    }

    fn encrypt(&self, plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let encrypt_err = |e: age::EncryptError| StoreError::Encrypt {
            path: self.store_path.clone(),
            message: e.to_string(),
        };
        match &self.protection {
            Protection::KeyFile => {
                let identity = self.identity_or_create()?;
                age::encrypt(&identity.to_public(), plaintext).map_err(encrypt_err)
            }
            Protection::Passphrase {
                passphrase,
                work_factor,
            } => {
                let mut recipient = age::scrypt::Recipient::new(passphrase.clone());
                if let Some(log_n) = work_factor {
                    recipient.set_work_factor(*log_n);
                }
                age::encrypt(&recipient, plaintext).map_err(encrypt_err)
            }
        }
    }

    fn read_identity(&self) -> Result<Option<age::x25519::Identity>, StoreError> {
        let Some(bytes) = fsutil::read_private(&self.key_path)? else {
            return Ok(None);
        };
        let bytes = Zeroizing::new(bytes);
        let bad = |message: &str| StoreError::BadKeyFile {
            path: self.key_path.clone(),
            message: message.into(),
        };
        let text = std::str::from_utf8(&bytes).map_err(|_| bad("not UTF-8"))?;
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or_else(|| bad("no AGE-SECRET-KEY-1... line"))?;
        age::x25519::Identity::from_str(line)
            .map(Some)
            .map_err(|_| bad("the AGE-SECRET-KEY-1... line does not decode"))
    }

    /// Called under the lock only, so two processes never both create a key.
    fn identity_or_create(&self) -> Result<age::x25519::Identity, StoreError> {
        if let Some(identity) = self.read_identity()? {
            return Ok(identity);
        }
        if self.store_path.exists() {
            return Err(StoreError::MissingKeyFile {
                store: self.store_path.clone(),
                key_file: self.key_path.clone(),
            });
        }
        let identity = age::x25519::Identity::generate();
        let secret = identity.to_string();
        let text = Zeroizing::new(format!(
            "# sbx secret store key: decrypts {STORE_FILE} next to it. Keep it 0600; never share it.\n{}\n",
            secret.expose_secret()
        ));
        fsutil::write_atomic(&self.key_path, text.as_bytes())?;
        Ok(identity)
    }
}

/// The first bytes of an age file name its recipient types in the text header.
fn read_head(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut head = vec![0u8; 256];
    let mut file = std::fs::File::open(path)?;
    let n = file.read(&mut head)?;
    head.truncate(n);
    Ok(head)
}

/// `Some(true)` for a passphrase (scrypt) file, `Some(false)` for another age file, `None`
/// when the header is unrecognisable (the decrypt step reports that properly).
fn is_scrypt(head: &[u8]) -> Option<bool> {
    let rest = head.strip_prefix(b"age-encryption.org/v1\n-> ")?;
    Some(rest.starts_with(b"scrypt "))
}

impl SecretStore for FileStore {
    fn get(&self, key: &SecretKey) -> Result<Option<SecretValue>, StoreError> {
        Ok(self.load()?.remove(key))
    }

    fn set(&self, key: &SecretKey, value: &SecretValue) -> Result<(), StoreError> {
        self.update(|entries| {
            entries.insert(key.clone(), value.clone());
        })
    }

    fn delete(&self, key: &SecretKey) -> Result<bool, StoreError> {
        if !self.store_path.exists() {
            return Ok(false);
        }
        self.update(|entries| entries.remove(key).is_some())
    }

    fn list(&self) -> Result<Vec<SecretKey>, StoreError> {
        Ok(self.load()?.into_keys().collect())
    }

    fn kind(&self) -> BackendKind {
        match self.protection {
            Protection::KeyFile => BackendKind::EncryptedFile,
            Protection::Passphrase { .. } => BackendKind::PassphraseFile,
        }
    }
}
