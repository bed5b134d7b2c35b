//! Listing a repository's sandboxes with their review state.

use std::path::PathBuf;

use serde::Serialize;

use crate::error::{GitError, ReviewError};
use crate::host::Host;
use crate::record::{self, Mode, Record, State};
use crate::status::{changed_paths, count_commits, ref_target, tree_of};

/// One sandbox as `list` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SandboxStatus {
    /// The sandbox name.
    pub sandbox: String,
    /// Branch or clone mode.
    pub mode: Mode,
    /// `creating` while (or if) a create did not finish.
    pub state: State,
    /// The sandbox's branch.
    pub branch: Option<String>,
    /// The commit the sandbox started from.
    pub base: String,
    /// The branch `merge` goes back to (full ref name).
    pub base_branch: Option<String>,
    /// Commits on the sandbox branch that the base branch (or, without one, the base commit) lacks.
    pub ahead: usize,
    /// Commits on the base branch since the sandbox started that the sandbox branch lacks.
    pub behind: usize,
    /// Uncommitted changes (including untracked files) in the sandbox; `None` when the worktree is missing.
    pub dirty: Option<bool>,
    /// The sandbox's working tree.
    pub path: PathBuf,
}

impl Host {
    /// All sandboxes of this repository, sorted by name.
    pub fn list(&self) -> Result<Vec<SandboxStatus>, ReviewError> {
        let repo = self.fresh()?;
        let mut out = Vec::new();
        for record in record::load_all(&self.common_dir, &self.main_workdir)? {
            out.push(self.status_of(&repo, &record?)?);
        }
        Ok(out)
    }

    fn status_of(
        &self,
        repo: &gix::Repository,
        record: &Record,
    ) -> Result<SandboxStatus, ReviewError> {
        let base = parse_id(&record.base)?;
        let mut status = SandboxStatus {
            sandbox: record.sandbox.clone(),
            mode: record.mode,
            state: record.state,
            branch: record.branch.clone(),
            base: record.base.clone(),
            base_branch: record.base_branch.clone(),
            ahead: 0,
            behind: 0,
            dirty: None,
            path: record.path.clone(),
        };
        let Some(sandbox_repo) = crate::untrusted::open_sandbox(&self.common_dir, record) else {
            return Ok(status);
        };
        let target = match &record.base_branch {
            Some(name) => ref_target(repo, name)?,
            None => None,
        };
        if let Some(branch) = &record.branch
            && let Some(tip) = ref_target(&sandbox_repo, &format!("refs/heads/{branch}"))?
        {
            let mut hidden = vec![base];
            hidden.extend(target);
            status.ahead = count_commits(&sandbox_repo, tip, &hidden)?;
            if let Some(target) = target {
                status.behind = count_commits(repo, target, &[base, tip])?;
            }
        }
        if record.state == State::Ready {
            let head_tree = match sandbox_repo.head_commit() {
                Ok(commit) => tree_of(&sandbox_repo, commit.id)?,
                Err(_) => tree_of(&sandbox_repo, base)?,
            };
            status.dirty = Some(!changed_paths(&sandbox_repo, head_tree)?.is_empty());
        }
        Ok(status)
    }
}

pub(crate) fn parse_id(hex: &str) -> Result<gix::ObjectId, GitError> {
    gix::ObjectId::from_hex(hex.as_bytes())
        .map_err(|e| GitError::new(format!("parsing commit id {hex:?}"), e))
}

/// The sandbox opened for reading (see [`crate::untrusted::open_sandbox`]), or an error saying it is missing.
pub(crate) fn require_sandbox(
    common_dir: &std::path::Path,
    record: &Record,
) -> Result<gix::Repository, ReviewError> {
    crate::untrusted::open_sandbox(common_dir, record).ok_or_else(|| ReviewError::WorktreeMissing {
        sandbox: record.sandbox.clone(),
        path: record.path.clone(),
    })
}
