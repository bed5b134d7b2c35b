//! Error types, one enum per operation area. Each names the repository, sandbox, file or value involved and,
//! where the user can do something about it, what to do.

use std::path::PathBuf;

/// A boxed error from gix or another library, kept as the `source` of our own errors.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An invalid sandbox or branch name.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    /// The sandbox name breaks a rule.
    #[error("invalid sandbox name {name:?}: {reason}")]
    Sandbox {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// The branch name breaks a `git check-ref-format --branch` rule.
    #[error("invalid branch name {name:?}: {reason}")]
    Branch {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
}

/// Opening the host repository failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// No git repository at or above the path.
    #[error("{path}: not a git repository: {source}")]
    NotARepository {
        /// The path given.
        path: PathBuf,
        /// What gix reported.
        #[source]
        source: BoxError,
    },
    /// A bare repository has no working tree to branch from.
    #[error(
        "{path} is a bare repository; sandboxes need a repository with a working tree \
         (make one with `git clone {path} <dir>` and use that)"
    )]
    Bare {
        /// The repository's git directory.
        path: PathBuf,
    },
}

/// A failed git operation: what we were doing and what gix (or `git`) said.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct GitError {
    /// What we were doing, e.g. "creating branch sbx/a".
    pub action: String,
    /// The underlying error.
    #[source]
    pub source: BoxError,
}

impl GitError {
    pub(crate) fn new(action: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self {
            action: action.into(),
            source: source.into(),
        }
    }
}

/// A failed file-system operation on `path`.
#[derive(Debug, thiserror::Error)]
#[error("{action} {path}: {source}")]
pub struct IoError {
    /// What we were doing, e.g. "writing".
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    #[source]
    pub source: std::io::Error,
}

impl IoError {
    pub(crate) fn new(
        action: &'static str,
        path: impl Into<PathBuf>,
        source: std::io::Error,
    ) -> Self {
        Self {
            action,
            path: path.into(),
            source,
        }
    }
}

/// A `git` command we shelled out to failed.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed ({status}): {stderr}")]
pub struct CommandError {
    /// The command line, for the user to re-run by hand.
    pub command: String,
    /// Exit status or spawn error.
    pub status: String,
    /// What git printed on stderr.
    pub stderr: String,
}

/// A sandbox record could not be read.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// No sandbox of that name in this repository.
    #[error("no sandbox named {sandbox:?} in {repo} (see `list`)")]
    NotFound {
        /// The sandbox asked for.
        sandbox: String,
        /// The repository searched.
        repo: PathBuf,
    },
    /// The record file is not valid.
    #[error(
        "sandbox record {path} is corrupt ({source}); remove it with `remove --force` or delete the file"
    )]
    Corrupt {
        /// The record file.
        path: PathBuf,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// The record names or points at something `create` never writes: it was edited by hand or forged (the shared
    /// git dir may be writable from a sandbox). Nothing is done with it.
    #[error(
        "sandbox record {path} is not one sbx wrote: {reason}; refusing to act on it (delete the file if you did not expect it)"
    )]
    Tampered {
        /// The record file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The record file could not be read or written.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Creating a sandbox failed. Nothing is left behind: a partial sandbox is rolled back.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The repository could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The repository has no commit to branch from.
    #[error(
        "{repo}: HEAD points to the unborn branch {branch:?}, there is no commit to branch from yet; make a first commit"
    )]
    UnbornHead {
        /// The repository.
        repo: PathBuf,
        /// The unborn branch.
        branch: String,
    },
    /// A sandbox of that name exists already.
    #[error("sandbox {sandbox:?} already exists in {repo}; pick another name or remove it first")]
    SandboxExists {
        /// The sandbox name.
        sandbox: String,
        /// The repository.
        repo: PathBuf,
    },
    /// The requested branch exists already.
    #[error(
        "branch {branch:?} already exists; pick another name or omit it to get `sbx/<sandbox>`"
    )]
    BranchExists {
        /// The branch.
        branch: String,
    },
    /// A path we would write through is not what it must be (e.g. `.sbx` is a symlink).
    #[error("refusing to use {path}: {reason}")]
    UnsafePath {
        /// The offending path.
        path: PathBuf,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The checkout reported files it could not write.
    #[error("checking out into {path} failed for: {}", files.join(", "))]
    Checkout {
        /// The worktree.
        path: PathBuf,
        /// The files and why.
        files: Vec<String>,
    },
    /// A record operation failed.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// A git operation failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A `git` command failed.
    #[error(transparent)]
    Command(#[from] CommandError),
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Listing or diffing sandboxes failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The repository could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The sandbox's record is missing or unreadable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The sandbox's worktree is gone (e.g. removed with `git worktree remove`).
    #[error(
        "the worktree of sandbox {sandbox:?} at {path} is missing; `remove {sandbox}` cleans up the rest"
    )]
    WorktreeMissing {
        /// The sandbox.
        sandbox: String,
        /// Where the worktree was.
        path: PathBuf,
    },
    /// A git operation failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Merging a sandbox back failed; the user's branch, index and working tree are unchanged.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The repository could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The sandbox's record is missing or unreadable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Listing the sandbox's changes failed.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The sandbox was created from a detached HEAD, so there is no branch to go back to.
    #[error(
        "sandbox {sandbox:?} was created from a detached HEAD at {base}; there is no branch to merge into. \
         Merge it yourself with `git merge {branch}` on the branch of your choice"
    )]
    NoTargetBranch {
        /// The sandbox.
        sandbox: String,
        /// The sandbox's branch.
        branch: String,
        /// The base commit.
        base: String,
    },
    /// The branch to merge into no longer exists.
    #[error("branch {target:?} that sandbox {sandbox:?} was created from no longer exists")]
    TargetMissing {
        /// The sandbox.
        sandbox: String,
        /// The missing branch.
        target: String,
    },
    /// The sandbox has uncommitted changes that a merge would leave behind.
    #[error(
        "sandbox {sandbox:?} has uncommitted changes in {path} ({}); commit or discard them first",
        files.join(", ")
    )]
    SandboxDirty {
        /// The sandbox.
        sandbox: String,
        /// Its worktree.
        path: PathBuf,
        /// The changed files.
        files: Vec<String>,
    },
    /// The merge would conflict; nothing was changed.
    #[error(
        "merging {branch:?} into {target:?} would conflict in: {}; nothing was changed. \
         Resolve by merging {target:?} into the sandbox branch first",
        files.join(", ")
    )]
    Conflicts {
        /// The sandbox branch.
        branch: String,
        /// The branch merged into.
        target: String,
        /// The conflicting files.
        files: Vec<String>,
    },
    /// Updating the checked-out target branch was refused by git (e.g. local changes would be overwritten).
    #[error(
        "{target:?} is checked out in {worktree} and updating it was refused, nothing was changed: {source}"
    )]
    WorktreeUpdateRefused {
        /// The target branch.
        target: String,
        /// The worktree where it is checked out.
        worktree: PathBuf,
        /// What git said.
        #[source]
        source: CommandError,
    },
    /// A git operation failed.
    #[error(transparent)]
    Git(#[from] GitError),
}

/// Removing a sandbox failed.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// A name is invalid.
    #[error(transparent)]
    Name(#[from] NameError),
    /// The repository could not be opened.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// The sandbox's record is missing or unreadable.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Listing the sandbox's changes failed.
    #[error(transparent)]
    Review(#[from] ReviewError),
    /// The branch has commits that no other branch contains.
    #[error(
        "branch {branch:?} of sandbox {sandbox:?} has {commits} commit(s) not merged into any other branch; \
         merge it first or remove with --force to discard them"
    )]
    Unmerged {
        /// The sandbox.
        sandbox: String,
        /// Its branch.
        branch: String,
        /// How many commits would become unreachable.
        commits: usize,
    },
    /// The worktree has uncommitted changes.
    #[error(
        "sandbox {sandbox:?} has uncommitted changes in {path} ({}); commit them or remove with --force",
        files.join(", ")
    )]
    Dirty {
        /// The sandbox.
        sandbox: String,
        /// Its worktree.
        path: PathBuf,
        /// The changed files.
        files: Vec<String>,
    },
    /// A git operation failed.
    #[error(transparent)]
    Git(#[from] GitError),
    /// A file-system operation failed.
    #[error(transparent)]
    Io(#[from] IoError),
}
