//! Error types, one per operation area. None of them ever carries a secret value.

use std::io;
use std::path::PathBuf;

/// A secret key (scope or service name) is malformed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The service name is outside `[a-z0-9][a-z0-9._-]{0,63}`.
    #[error(
        "invalid service name {value:?}: use 1-64 characters of a-z, 0-9, '.', '_', '-', starting with a letter or digit"
    )]
    BadService {
        /// The rejected name.
        value: String,
    },
    /// A sandbox name is outside `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`.
    #[error(
        "invalid {what} {value:?}: use 1-128 characters of A-Z, a-z, 0-9, '.', '_', '-', starting with a letter or digit"
    )]
    BadName {
        /// What the name names.
        what: &'static str,
        /// The rejected name.
        value: String,
    },
    /// A scope is neither `global` nor `sandbox:NAME`.
    #[error("invalid scope {value:?}: expected `global` or `sandbox:NAME`")]
    BadScope {
        /// The rejected text.
        value: String,
    },
}

/// Reading or writing a secret store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done (`read`, `write`, `rename`, ...).
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A store or key file is readable or writable by group or others.
    #[error(
        "refusing to use {path}: its permissions are {mode:04o}, so other users can read it; run `chmod 600 {path}` (and check nobody copied it)"
    )]
    InsecurePermissions {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The decrypted store does not parse.
    #[error(
        "secret store {path} is corrupt at line {line}: {message}; restore it from a backup or move it away"
    )]
    Corrupt {
        /// The store file.
        path: PathBuf,
        /// 1-based line of the decrypted content (0: the file as a whole).
        line: usize,
        /// What is wrong.
        message: String,
    },
    /// The store file cannot be decrypted (truncated, damaged, or encrypted to another key).
    #[error("cannot decrypt secret store {path}: {reason}")]
    Decrypt {
        /// The store file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The passphrase does not decrypt the store.
    #[error("wrong passphrase for secret store {path}")]
    WrongPassphrase {
        /// The store file.
        path: PathBuf,
    },
    /// The store is passphrase-protected but no passphrase was given.
    #[error(
        "secret store {path} is protected by a passphrase; pass one (e.g. `sbx secrets --passphrase` or SBX_SECRETS_PASSPHRASE)"
    )]
    PassphraseRequired {
        /// The store file.
        path: PathBuf,
    },
    /// A passphrase was given for a store that uses a key file.
    #[error("secret store {path} is encrypted to the key file {key_file}, not a passphrase")]
    NotPassphraseProtected {
        /// The store file.
        path: PathBuf,
        /// Its key file.
        key_file: PathBuf,
    },
    /// The store exists but its key file does not: generating a new key would lose every secret.
    #[error(
        "secret store {store} exists but its key file {key_file} is missing; restore the key file (without it the store cannot be decrypted)"
    )]
    MissingKeyFile {
        /// The store file.
        store: PathBuf,
        /// The expected key file.
        key_file: PathBuf,
    },
    /// The key file does not hold an age X25519 identity.
    #[error("key file {path} is not a valid age identity: {message}")]
    BadKeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong (never the key).
        message: String,
    },
    /// Encrypting the store failed.
    #[error("cannot encrypt secret store {path}: {message}")]
    Encrypt {
        /// The store file.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// The OS keychain refused or failed.
    #[error("keychain ({backend}): {message}")]
    Keychain {
        /// Which keychain.
        backend: String,
        /// Its error (never the value).
        message: String,
    },
    /// A key is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// A provider catalog could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CatalogError {
    /// The catalog file could not be read.
    #[error("cannot read provider catalog {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// The TOML does not parse or does not match the schema.
    #[error("provider catalog {source_name}: {message}")]
    Parse {
        /// File name or `built-in`.
        source_name: String,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A provider entry is inconsistent.
    #[error("provider catalog {source_name}, provider {provider:?}: {message}")]
    Invalid {
        /// File name or `built-in`.
        source_name: String,
        /// The provider's name.
        provider: String,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// Building a sandbox's credentials failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    /// The OS random source failed.
    #[error("cannot generate placeholders: the OS random source failed: {0}")]
    Random(String),
    /// A secret names a service that is not in the catalog and is not a custom secret.
    #[error(
        "secret {service:?} is not a catalog provider; add it to the catalog or define it as a custom secret with its env var and hosts"
    )]
    UnknownService {
        /// The service.
        service: String,
    },
    /// AWS credentials are not in the `ACCESS_KEY_ID:SECRET_ACCESS_KEY[:SESSION_TOKEN]` form.
    #[error(
        "the aws secret must be `ACCESS_KEY_ID:SECRET_ACCESS_KEY` or `ACCESS_KEY_ID:SECRET_ACCESS_KEY:SESSION_TOKEN`"
    )]
    BadAwsCredentials,
    /// A sandbox or service name is malformed.
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Re-signing an AWS request failed; the request must not be forwarded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Sigv4Error {
    /// The request carries no SigV4 authentication (neither header nor presigned query).
    #[error("request has no AWS SigV4 authentication")]
    NotSigned,
    /// The Authorization header or presigned query is malformed.
    #[error("malformed SigV4 authentication: {0}")]
    Malformed(String),
    /// The request is signed with an access key id that is not this sandbox's placeholder.
    #[error(
        "request is signed with access key id {key_id:?}, not this sandbox's placeholder; refusing to re-sign"
    )]
    ForeignKeyId {
        /// The key id found (a placeholder or a key the agent brought itself; not a secret).
        key_id: String,
    },
    /// The sandbox has no AWS credentials.
    #[error("this sandbox has no aws credentials")]
    NoCredentials,
    /// The destination is not an AWS host the credentials are bound to.
    #[error("destination {host:?} is not bound to the aws credentials")]
    NotBound {
        /// The destination host (normalised), or `?` if ambiguous.
        host: String,
    },
    /// The payload hash is unknown (no `x-amz-content-sha256` header and none given).
    #[error(
        "payload hash needed: the request has no x-amz-content-sha256 header; hash the body and pass it"
    )]
    PayloadHashNeeded,
}
