//! The host repository: the user's repository that sandboxes branch from.

use std::path::{Path, PathBuf};

use crate::error::{GitError, OpenError};

/// An opened, non-bare host repository.
#[derive(Debug, Clone)]
pub struct Host {
    /// The repository as opened at the user's path (their current checkout).
    pub(crate) repo: gix::Repository,
    /// The main worktree's root; `.sbx/` lives here.
    pub(crate) main_workdir: PathBuf,
    /// The shared git directory (`.git` of the main worktree).
    pub(crate) common_dir: PathBuf,
}

impl Host {
    /// Open the repository containing `path`. Bare repositories are refused with a clear error.
    pub fn open(path: &Path) -> Result<Self, OpenError> {
        let not_repo = |source: crate::error::BoxError| OpenError::NotARepository {
            path: path.to_owned(),
            source,
        };
        let repo = gix::discover(path).map_err(|e| not_repo(e.into()))?;
        if repo.is_bare() {
            return Err(OpenError::Bare {
                path: repo.git_dir().to_owned(),
            });
        }
        let main = repo.main_repo().map_err(|e| not_repo(e.into()))?;
        let main_workdir = match main.workdir() {
            Some(dir) => dir.to_owned(),
            None => {
                return Err(OpenError::Bare {
                    path: main.git_dir().to_owned(),
                });
            }
        };
        let main_workdir = std::fs::canonicalize(&main_workdir).map_err(|e| not_repo(e.into()))?;
        let common_dir =
            std::fs::canonicalize(repo.common_dir()).map_err(|e| not_repo(e.into()))?;
        Ok(Self {
            repo,
            main_workdir,
            common_dir,
        })
    }

    /// The root of the main worktree.
    pub fn workdir(&self) -> &Path {
        &self.main_workdir
    }

    /// The shared git directory.
    pub fn common_dir(&self) -> &Path {
        &self.common_dir
    }

    /// The `.sbx` directory holding sandbox worktrees and clones.
    pub(crate) fn sbx_dir(&self) -> PathBuf {
        self.main_workdir.join(".sbx")
    }

    /// A fresh handle with current refs and config (other processes may have changed them).
    pub(crate) fn fresh(&self) -> Result<gix::Repository, GitError> {
        gix::open(self.repo.git_dir()).map_err(|e| GitError::new("re-opening the repository", e))
    }
}
