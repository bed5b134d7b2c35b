//! The layout of a sandbox's state directory on the host. It holds everything the sandbox wrote, so it survives
//! stop/start and removing it removes the sandbox.

use std::path::{Path, PathBuf};

use crate::error::JailError;
use crate::idmap::UserMapping;

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

    /// How the running (or last) sandbox mapped its ids ([`crate::idmap::UserMapping::to_text`]).
    pub fn user_mapping_file(&self) -> PathBuf {
        self.root.join("user-mapping")
    }

    /// The id mapping the sandbox was last started with (`None` before its first start). The CLI shows its
    /// [`UserMapping::summary`] and, for the fallback, its [`UserMapping::warning`].
    pub fn user_mapping(&self) -> Option<UserMapping> {
        let text = std::fs::read_to_string(self.user_mapping_file()).ok()?;
        UserMapping::from_text(&text)
    }

    pub(crate) fn store_user_mapping(&self, mapping: &UserMapping) -> Result<(), JailError> {
        let path = self.user_mapping_file();
        std::fs::write(&path, mapping.to_text()).map_err(|source| JailError::Prepare {
            step: format!("write {}", path.display()),
            source,
        })
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

    /// Deletes the state (the sandbox must be stopped). With keep-id an unprivileged caller does not own what root
    /// inside created (it belongs to its subordinate range), so what it cannot delete itself is deleted from a user
    /// namespace with the sandbox's mapping, where it may (as `podman unshare rm` would).
    pub fn remove(&self) -> Result<(), JailError> {
        let failed = |source| JailError::Prepare {
            step: format!("remove {}", self.root.display()),
            source,
        };
        // Read before deleting: removal may get as far as this file before it meets a directory it may not empty.
        let mapping = self
            .user_mapping()
            .filter(|m| m.writer == crate::idmap::MapWriter::NewIdMap);
        match std::fs::remove_dir_all(&self.root) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => match mapping {
                Some(mapping) => crate::shift::remove_tree(&self.root, &mapping),
                None => Err(failed(e)),
            },
            Err(source) => Err(failed(source)),
        }
    }
}
