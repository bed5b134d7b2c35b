//! What changed in a worktree against a tree, and commit counting: the shared pieces of list, diff, merge, remove.

use gix::bstr::BString;

use crate::error::GitError;

/// Paths (sorted, unique) whose worktree state differs from `against_tree`: committed, staged, unstaged and
/// untracked-but-not-ignored changes alike. Submodule contents are not inspected.
pub(crate) fn changed_paths(
    worktree: &gix::Repository,
    against_tree: gix::ObjectId,
) -> Result<Vec<BString>, GitError> {
    let action = || {
        format!(
            "reading the status of {}",
            worktree.workdir().unwrap_or(worktree.git_dir()).display()
        )
    };
    let iter = worktree
        .status(gix::progress::Discard)
        .map_err(|e| GitError::new(action(), e))?
        .head_tree(against_tree)
        .untracked_files(gix::status::UntrackedFiles::Files)
        .index_worktree_rewrites(None)
        .tree_index_track_renames(gix::status::tree_index::TrackRenames::Disabled)
        .index_worktree_submodules(gix::status::Submodule::Given {
            ignore: gix::submodule::config::Ignore::All,
            check_dirty: false,
        })
        .into_iter(None)
        .map_err(|e| GitError::new(action(), e))?;
    let mut paths = Vec::new();
    for item in iter {
        let item = item.map_err(|e| GitError::new(action(), e))?;
        paths.push(item.location().to_owned());
    }
    paths.sort();
    paths.dedup();
    Ok(paths)
}

/// The tree of `commit`.
pub(crate) fn tree_of(
    repo: &gix::Repository,
    commit: gix::ObjectId,
) -> Result<gix::ObjectId, GitError> {
    repo.find_commit(commit)
        .and_then(|c| c.tree_id())
        .map(gix::Id::detach)
        .map_err(|e| GitError::new(format!("reading the tree of commit {commit}"), e))
}

/// Commits reachable from `tip` but from none of `hidden` (`git rev-list --count tip ^hidden…`).
pub(crate) fn count_commits(
    repo: &gix::Repository,
    tip: gix::ObjectId,
    hidden: &[gix::ObjectId],
) -> Result<usize, GitError> {
    let present: Vec<_> = hidden
        .iter()
        .copied()
        .filter(|id| repo.has_object(id))
        .collect();
    let walk = repo
        .rev_walk([tip])
        .with_hidden(present)
        .all()
        .map_err(|e| GitError::new(format!("walking the history of {tip}"), e))?;
    let mut count = 0;
    for info in walk {
        info.map_err(|e| GitError::new(format!("walking the history of {tip}"), e))?;
        count += 1;
    }
    Ok(count)
}

/// The commit a full ref name points to, `None` if the ref does not exist.
pub(crate) fn ref_target(
    repo: &gix::Repository,
    full_name: &str,
) -> Result<Option<gix::ObjectId>, GitError> {
    let reference = repo
        .try_find_reference(full_name)
        .map_err(|e| GitError::new(format!("looking up {full_name}"), e))?;
    match reference {
        None => Ok(None),
        Some(mut reference) => reference
            .peel_to_id()
            .map(|id| Some(id.detach()))
            .map_err(|e| GitError::new(format!("resolving {full_name}"), e)),
    }
}
