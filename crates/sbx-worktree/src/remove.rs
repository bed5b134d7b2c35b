//! Removing a sandbox: its worktree (or clone), its branch and its record.

use std::path::Path;

use gix::refs::Target;
use gix::refs::transaction::{Change, PreviousValue, RefEdit, RefLog};

use crate::error::{GitError, RemoveError};
use crate::host::Host;
use crate::list::parse_id;
use crate::name::SandboxName;
use crate::record::{self, Mode, Record};
use crate::status::{changed_paths, count_commits, ref_target, tree_of};
use crate::untrusted::{admin_dir_of, open_sandbox};

/// What `remove` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removed {
    /// The sandbox.
    pub sandbox: String,
    /// The branch that was deleted, if it still existed.
    pub branch: Option<String>,
    /// Commits that are no longer reachable from any branch (only non-zero with force).
    pub discarded_commits: usize,
}

impl Host {
    /// Remove the sandbox's worktree (or clone) and branch. Refuses when the branch has commits that no other
    /// branch contains, or when the worktree has uncommitted changes, unless `force` is set.
    pub fn remove(&self, sandbox: &str, force: bool) -> Result<Removed, RemoveError> {
        let name = SandboxName::new(sandbox)?;
        let record = record::load(&self.common_dir, &self.main_workdir, &name)?;
        let repo = self.fresh()?;
        let sandbox_repo = open_sandbox(&self.common_dir, &record);
        if let Some(sandbox_repo) = &sandbox_repo
            && !force
        {
            refuse_dirty(&record, sandbox_repo)?;
        }
        let (tip, unmerged) = match record.mode {
            Mode::Branch => branch_unmerged(&repo, &record)?,
            Mode::Clone => (None, clone_unmerged(&repo, sandbox_repo.as_ref(), &record)?),
        };
        if unmerged > 0 && !force {
            return Err(RemoveError::Unmerged {
                sandbox: record.sandbox.clone(),
                branch: record.branch.clone().unwrap_or_default(),
                commits: unmerged,
            });
        }
        match record.mode {
            Mode::Branch => remove_linked_worktree(&repo, &self.common_dir, &record.path, force)?,
            Mode::Clone => crate::clone::remove_clone(&repo, &record)?,
        }
        let mut deleted_branch = None;
        if let (Some(branch), Some(tip)) = (&record.branch, tip) {
            delete_branch(&repo, branch, tip)?;
            deleted_branch = Some(branch.clone());
        }
        remove_empty_parents(&self.sbx_dir(), &record.path);
        record::delete(&self.common_dir, &record.sandbox)?;
        Ok(Removed {
            sandbox: record.sandbox,
            branch: deleted_branch,
            discarded_commits: unmerged,
        })
    }
}

fn refuse_dirty(record: &Record, sandbox_repo: &gix::Repository) -> Result<(), RemoveError> {
    let head_tree = match sandbox_repo.head_commit() {
        Ok(commit) => tree_of(sandbox_repo, commit.id)?,
        Err(_) => tree_of(sandbox_repo, parse_id(&record.base)?)?,
    };
    let files = changed_paths(sandbox_repo, head_tree)?;
    if files.is_empty() {
        return Ok(());
    }
    Err(RemoveError::Dirty {
        sandbox: record.sandbox.clone(),
        path: record.path.clone(),
        files: files.iter().map(ToString::to_string).collect(),
    })
}

/// The branch tip and how many of its commits no other ref reaches.
fn branch_unmerged(
    repo: &gix::Repository,
    record: &Record,
) -> Result<(Option<gix::ObjectId>, usize), RemoveError> {
    let Some(branch) = &record.branch else {
        return Ok((None, 0));
    };
    let full = format!("refs/heads/{branch}");
    let Some(tip) = ref_target(repo, &full)? else {
        return Ok((None, 0));
    };
    let others = other_ref_tips(repo, |name| name == full.as_bytes())?;
    Ok((Some(tip), count_commits(repo, tip, &others)?))
}

/// Commits of the clone's branches that the host has in none of its refs (except this sandbox's remote refs).
fn clone_unmerged(
    host: &gix::Repository,
    clone: Option<&gix::Repository>,
    record: &Record,
) -> Result<usize, RemoveError> {
    let Some(clone) = clone else { return Ok(0) };
    // Refs fetched from this very sandbox disappear with it, so they do not count as "merged".
    let own_remote = format!("refs/remotes/sandbox-{}/", record.sandbox);
    let mut hidden = other_ref_tips(host, |name| name.starts_with(own_remote.as_bytes()))?;
    hidden.push(parse_id(&record.base)?);
    let branches = clone
        .references()
        .and_then(|r| {
            r.local_branches().map(|iter| {
                iter.filter_map(Result::ok)
                    .filter_map(|mut r| r.peel_to_id().ok())
                    .map(gix::Id::detach)
                    .collect::<Vec<_>>()
            })
        })
        .map_err(|e| GitError::new("listing the clone's branches", e))?;
    let mut total = 0;
    for tip in branches {
        total += count_commits(clone, tip, &hidden)?;
    }
    Ok(total)
}

/// Tips of all refs (branches, tags, remote-tracking refs) except those whose full name `skip` selects.
fn other_ref_tips(
    repo: &gix::Repository,
    skip: impl Fn(&[u8]) -> bool,
) -> Result<Vec<gix::ObjectId>, GitError> {
    let platform = repo
        .references()
        .map_err(|e| GitError::new("listing refs", e))?;
    let iter = platform
        .all()
        .map_err(|e| GitError::new("listing refs", e))?;
    let mut tips = Vec::new();
    for reference in iter.filter_map(Result::ok) {
        let mut reference = reference;
        if skip(reference.name().as_bstr()) {
            continue;
        }
        if let Ok(id) = reference.peel_to_id() {
            tips.push(id.detach());
        }
    }
    Ok(tips)
}

/// Delete `branch` if it still points at `expected` (so a concurrent update is never lost).
pub(crate) fn delete_branch(
    repo: &gix::Repository,
    branch: &str,
    expected: gix::ObjectId,
) -> Result<(), GitError> {
    let full = format!("refs/heads/{branch}");
    let name: gix::refs::FullName = full
        .as_str()
        .try_into()
        .map_err(|e| GitError::new(format!("parsing ref name {full}"), e))?;
    repo.edit_reference(RefEdit {
        change: Change::Delete {
            expected: PreviousValue::MustExistAndMatch(Target::Object(expected)),
            log: RefLog::AndReference,
        },
        name,
        deref: false,
    })
    .map_err(|e| GitError::new(format!("deleting branch {branch}"), e))?;
    Ok(())
}

/// Remove the registered linked worktree at `path` through gix (like `git worktree remove`); a worktree that is no
/// longer registered (e.g. removed with `git worktree remove`) only has its leftovers deleted.
fn remove_linked_worktree(
    repo: &gix::Repository,
    common_dir: &Path,
    path: &Path,
    force: bool,
) -> Result<(), GitError> {
    let wanted = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_owned());
    let proxies = repo
        .worktrees()
        .map_err(|e| GitError::new("listing worktrees", e))?;
    for proxy in proxies {
        let Ok(base) = proxy.base() else { continue };
        if std::fs::canonicalize(&base).unwrap_or(base) != wanted {
            continue;
        }
        // Uncommitted changes were checked above (and refused unless forced); a lock is only overridden by force.
        let mode = if force {
            gix::worktree::remove::Force::OverrideLock
        } else {
            gix::worktree::remove::Force::DiscardChanges
        };
        let admin = proxy.git_dir().to_owned();
        return match proxy.remove(mode, gix::progress::Discard) {
            Ok(()) => Ok(()),
            // E.g. the sandbox rewrote its `.git` file to point elsewhere: with force, delete the checkout and the
            // registration we know from the host side, never following the worktree's own pointer.
            Err(_) if force => {
                let _ = std::fs::remove_dir_all(path);
                let _ = std::fs::remove_dir_all(&admin);
                Ok(())
            }
            Err(e) => Err(GitError::new(
                format!("removing the worktree {}", path.display()),
                e,
            )),
        };
    }
    remove_worktree_files(common_dir, path);
    Ok(())
}

/// Delete a linked worktree and its administrative directory `<common>/worktrees/<id>`, as `git worktree remove
/// --force` does. Best effort: whatever is already gone (e.g. removed with git) is skipped. The administrative
/// directory is found from the host's side ([`admin_dir_of`]); the worktree's own `.git` file is never trusted,
/// since the sandbox could point it at another worktree's registration. Symlinks inside the worktree are deleted,
/// not followed.
pub(crate) fn remove_worktree_files(common_dir: &Path, worktree: &Path) {
    let admin = admin_dir_of(common_dir, worktree);
    let _ = std::fs::remove_dir_all(worktree);
    if let Some(admin) = admin {
        let _ = std::fs::remove_dir_all(admin);
    }
}

/// Remove the now-empty directories between `.sbx/<sandbox>-…/` and the removed worktree.
fn remove_empty_parents(sbx_dir: &Path, removed: &Path) {
    let mut dir = removed.parent();
    while let Some(current) = dir {
        if current == sbx_dir
            || !current.starts_with(sbx_dir)
            || std::fs::remove_dir(current).is_err()
        {
            break;
        }
        dir = current.parent();
    }
}
