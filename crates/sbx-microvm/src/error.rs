//! Errors of preparing, starting and stopping a microVM sandbox.

use std::path::PathBuf;

/// A microVM sandbox could not be prepared, started, reached or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MicroVmError {
    /// The configuration is unusable; the message names the field and the fix.
    #[error("microVM config: {field}: {detail}")]
    Config {
        /// The field.
        field: &'static str,
        /// What is wrong and what to do.
        detail: String,
    },
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// `mkfs.ext4` failed or is missing.
    #[error("cannot format the state disk {path}: {detail}")]
    StateDisk {
        /// The state disk.
        path: PathBuf,
        /// What happened (and how to install e2fsprogs when missing).
        detail: String,
    },
    /// sbx-vmm refused the machine description.
    #[error(transparent)]
    Vmm(#[from] sbx_vmm::ConfigError),
    /// sbx-vmm could not start the VM.
    #[error(transparent)]
    Start(#[from] sbx_vmm::StartError),
    /// The guest agent did not answer in time.
    #[error(
        "the guest agent did not answer within {seconds}s ({detail}); the console log is {console}"
    )]
    NotReady {
        /// How long we waited.
        seconds: u64,
        /// The last connection error or how the VM ended.
        detail: String,
        /// The guest console log.
        console: PathBuf,
    },
    /// Talking to the guest agent failed.
    #[error("guest agent: {0}")]
    Agent(#[from] sbx_proto::ClientError),
}

pub(crate) fn io(
    action: &'static str,
    path: &std::path::Path,
) -> impl FnOnce(std::io::Error) -> MicroVmError {
    let path = path.to_path_buf();
    move |source| MicroVmError::Io {
        action,
        path,
        source,
    }
}
