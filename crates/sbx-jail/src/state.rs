//! The layout of a sandbox's state directory on the host. It holds everything the sandbox wrote, so it survives
//! stop/start and removing it removes the sandbox.

use std::path::{Path, PathBuf};

use crate::error::JailError;

/// Paths inside a state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: PathBuf,
}

impl StateDir {
    /// The layout under `root` (nothing is created).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory itself.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Overlay upper layer: every file the sandbox changed.
    pub fn upper(&self) -> PathBuf {
        self.root.join("upper")
    }

    /// Overlay work directory.
    pub fn work(&self) -> PathBuf {
        self.root.join("work")
    }

    /// Full copy of the template, used instead of an overlay where the kernel refuses overlay in a user namespace.
    pub fn copy_root(&self) -> PathBuf {
        self.root.join("rootfs")
    }

    /// Mount point of the assembled root.
    pub fn mountpoint(&self) -> PathBuf {
        self.root.join("mnt")
    }

    /// Directory shared with the agent (`/run/sbx/host` inside); holds `agent.sock`.
    pub fn sock_dir(&self) -> PathBuf {
        self.root.join("sock")
    }

    /// The agent's socket as seen from the host.
    pub fn agent_socket(&self) -> PathBuf {
        self.sock_dir().join("agent.sock")
    }

    /// The agent's stderr.
    pub fn log(&self) -> PathBuf {
        self.root.join("agent.log")
    }

    /// Pid of the running sandbox init (host pid namespace).
    pub fn pid_file(&self) -> PathBuf {
        self.root.join("init.pid")
    }

    /// Creates the directories (idempotent).
    pub fn create(&self) -> Result<(), JailError> {
        for dir in [
            self.root.clone(),
            self.upper(),
            self.work(),
            self.mountpoint(),
            self.sock_dir(),
        ] {
            std::fs::create_dir_all(&dir).map_err(|source| JailError::Prepare {
                step: format!("create {}", dir.display()),
                source,
            })?;
        }
        Ok(())
    }

    /// Deletes the state (the sandbox must be stopped).
    pub fn remove(&self) -> Result<(), JailError> {
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(JailError::Prepare {
                step: format!("remove {}", self.root.display()),
                source,
            }),
        }
    }
}
