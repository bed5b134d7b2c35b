//! Merging a sandbox branch back into the branch the user had checked out when the sandbox was created.

use std::ffi::OsStr;
use std::path::PathBuf;

use gix::refs::Target;
use gix::refs::transaction::{Change, LogChange, PreviousValue, RefEdit, RefLog};

use crate::error::{GitError, MergeError};
use crate::gitcli;
use crate::host::Host;
use crate::list::require_sandbox;
use crate::name::SandboxName;
use crate::record::{self, Mode, Record};
use crate::status::{changed_paths, ref_target, tree_of};

/// What `merge` did.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum MergeOutcome {
    /// The target already contains every sandbox commit.
    UpToDate {
        /// The target branch (full ref name).
        target: String,
    },
    /// The target was moved forward to the sandbox tip.
    FastForward {
        /// The target branch.
        target: String,
        /// Its previous commit.
        from: String,
        /// Its new commit.
        to: String,
    },
    /// A merge commit was created on the target.
    MergeCommit {
        /// The target branch.
        target: String,
        /// The merge commit.
        commit: String,
    },
}

impl Host {
    /// Merge the sandbox's branch into the branch the user had checked out when it was created: a fast-forward
    /// when possible, else a merge commit. Conflicts are detected in memory first and refused with the list of
    /// files, so nothing changes. If the target branch is checked out in a worktree, that worktree is updated
    /// without losing uncommitted changes (git refuses if it would have to overwrite them).
    pub fn merge(&self, sandbox: &str) -> Result<MergeOutcome, MergeError> {
        let name = SandboxName::new(sandbox)?;
        let record = record::load(&self.common_dir, &self.main_workdir, &name)?;
        let sandbox_repo = require_sandbox(&self.common_dir, &record)?;
        let branch = record.branch.clone().unwrap_or_default();
        let target = record
            .base_branch
            .clone()
            .ok_or_else(|| MergeError::NoTargetBranch {
                sandbox: record.sandbox.clone(),
                branch: branch.clone(),
                base: record.base.clone(),
            })?;
        refuse_uncommitted(&record, &sandbox_repo)?;
        let repo = self.fresh()?;
        let tip = sandbox_tip(&repo, &record, &branch)?;
        let target_tip = ref_target(&repo, &target)?.ok_or_else(|| MergeError::TargetMissing {
            sandbox: record.sandbox.clone(),
            target: target.clone(),
        })?;
        let merge_base = repo
            .merge_base(tip, target_tip)
            .map(|id| id.map(gix::Id::detach))
            .map_err(|e| {
                GitError::new(
                    format!("finding the merge base of {branch} and {target}"),
                    e,
                )
            })?;
        if merge_base == Some(tip) {
            return Ok(MergeOutcome::UpToDate { target });
        }
        let new_tip = if merge_base == Some(target_tip) {
            tip
        } else {
            merge_commit(&repo, &record, &branch, &target, target_tip, tip)?
        };
        self.move_target(&repo, &target, target_tip, new_tip, &record.sandbox)?;
        Ok(if new_tip == tip {
            MergeOutcome::FastForward {
                target,
                from: target_tip.to_string(),
                to: tip.to_string(),
            }
        } else {
            MergeOutcome::MergeCommit {
                target,
                commit: new_tip.to_string(),
            }
        })
    }

    /// Point `target` at `new_tip` (a descendant of `old_tip`): through `git merge --ff-only` in the worktree where
    /// it is checked out, so files and index follow safely, or as a plain ref update if it is checked out nowhere.
    fn move_target(
        &self,
        repo: &gix::Repository,
        target: &str,
        old_tip: gix::ObjectId,
        new_tip: gix::ObjectId,
        sandbox: &str,
    ) -> Result<(), MergeError> {
        if let Some((git_dir, worktree)) = checked_out_in(repo, target)? {
            // gix has no two-tree checkout that updates a populated worktree and index while keeping local
            // changes, so the CLI does the fast-forward; it refuses (changing nothing) if local changes are in the way.
            let hex = new_tip.to_string();
            let args: [&OsStr; 4] = [
                "merge".as_ref(),
                "--ff-only".as_ref(),
                "--quiet".as_ref(),
                hex.as_ref(),
            ];
            return gitcli::run_in_worktree(&git_dir, &worktree, &args)
                .map(drop)
                .map_err(|source| MergeError::WorktreeUpdateRefused {
                    target: target.to_owned(),
                    worktree,
                    source,
                });
        }
        let name: gix::refs::FullName = target
            .try_into()
            .map_err(|e| GitError::new(format!("parsing ref name {target}"), e))?;
        repo.edit_reference(RefEdit {
            change: Change::Update {
                log: LogChange {
                    mode: RefLog::AndReference,
                    force_create_reflog: false,
                    message: format!("sbx: merge sandbox {sandbox}").into(),
                },
                expected: PreviousValue::MustExistAndMatch(Target::Object(old_tip)),
                new: Target::Object(new_tip),
            },
            name,
            deref: false,
        })
        .map_err(|e| GitError::new(format!("updating {target}"), e))?;
        Ok(())
    }
}

/// The sandbox branch tip as the host sees it; for a clone, fetched first into `refs/remotes/sandbox-<name>/`.
fn sandbox_tip(
    repo: &gix::Repository,
    record: &Record,
    branch: &str,
) -> Result<gix::ObjectId, MergeError> {
    let full = match record.mode {
        Mode::Branch => format!("refs/heads/{branch}"),
        Mode::Clone => {
            crate::clone::fetch_into_host(repo, record)?;
            format!("refs/remotes/sandbox-{}/{branch}", record.sandbox)
        }
    };
    ref_target(repo, &full)?.ok_or_else(|| {
        GitError::new(
            format!("looking up {full}"),
            "the sandbox branch does not exist",
        )
        .into()
    })
}

/// Uncommitted work would silently stay behind; make the user decide.
fn refuse_uncommitted(record: &Record, sandbox_repo: &gix::Repository) -> Result<(), MergeError> {
    let head = sandbox_repo
        .head_commit()
        .map_err(|e| GitError::new("reading the sandbox HEAD", e))?;
    let files = changed_paths(sandbox_repo, tree_of(sandbox_repo, head.id)?)?;
    if files.is_empty() {
        return Ok(());
    }
    Err(MergeError::SandboxDirty {
        sandbox: record.sandbox.clone(),
        path: record.path.clone(),
        files: files.iter().map(ToString::to_string).collect(),
    })
}

/// Merge in memory; refuse on conflicts; otherwise write the merged tree and a merge commit (no ref moves yet).
fn merge_commit(
    repo: &gix::Repository,
    record: &Record,
    branch: &str,
    target: &str,
    ours: gix::ObjectId,
    theirs: gix::ObjectId,
) -> Result<gix::ObjectId, MergeError> {
    let action = || format!("merging {branch} into {target}");
    let labels = gix::merge::blob::builtin_driver::text::Labels {
        ancestor: Some("base".into()),
        current: Some(target.into()),
        other: Some(branch.into()),
    };
    let options: gix::merge::commit::Options = repo
        .tree_merge_options()
        .map_err(|e| GitError::new(action(), e))?
        .into();
    // Objects of the trial merge stay in memory, so a refused merge leaves no trace in the object database.
    let trial = repo.clone().with_object_memory();
    let outcome = trial
        .merge_commits(ours, theirs, labels, options)
        .map_err(|e| GitError::new(action(), e))?;
    let how = gix::merge::tree::TreatAsUnresolved::git();
    if outcome.tree_merge.has_unresolved_conflicts(how) {
        let mut files: Vec<String> = outcome
            .tree_merge
            .conflicts
            .iter()
            .filter(|c| c.is_unresolved(how))
            .flat_map(|c| {
                [
                    c.ours.location().to_string(),
                    c.theirs.location().to_string(),
                ]
            })
            .collect();
        files.sort();
        files.dedup();
        return Err(MergeError::Conflicts {
            branch: branch.to_owned(),
            target: target.to_owned(),
            files,
        });
    }
    let options: gix::merge::commit::Options = repo
        .tree_merge_options()
        .map_err(|e| GitError::new(action(), e))?
        .into();
    let labels = gix::merge::blob::builtin_driver::text::Labels {
        ancestor: Some("base".into()),
        current: Some(target.into()),
        other: Some(branch.into()),
    };
    let mut outcome = repo
        .merge_commits(ours, theirs, labels, options)
        .map_err(|e| GitError::new(action(), e))?;
    let tree = outcome
        .tree_merge
        .tree
        .write()
        .map_err(|e| GitError::new(action(), e))?;
    let short_target = target.strip_prefix("refs/heads/").unwrap_or(target);
    let message = format!(
        "Merge sandbox '{}' (branch '{branch}') into {short_target}\n",
        record.sandbox
    );
    let commit = repo
        .new_commit(message, tree.detach(), [ours, theirs])
        .map_err(|e| {
            GitError::new(
                format!("{} (is user.name/user.email configured?)", action()),
                e,
            )
        })?;
    Ok(commit.id)
}

/// The git dir and worktree (main or linked) where `target` is checked out, if any, as the host registered them.
fn checked_out_in(
    repo: &gix::Repository,
    target: &str,
) -> Result<Option<(PathBuf, PathBuf)>, GitError> {
    let worktrees = repo
        .worktrees_including_main()
        .map_err(|e| GitError::new("listing worktrees", e))?;
    for worktree in worktrees {
        let Ok(worktree) = worktree else { continue };
        let Ok(Some(head)) = worktree.head_name() else {
            continue;
        };
        if head.as_bstr() == target.as_bytes()
            && let Some(dir) = worktree.workdir()
        {
            return Ok(Some((worktree.git_dir().to_owned(), dir.to_owned())));
        }
    }
    Ok(None)
}
