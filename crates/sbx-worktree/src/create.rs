//! Branch mode: a new branch at the user's HEAD commit and a linked worktree for it under `.sbx/`.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use gix::refs::transaction::PreviousValue;

use crate::error::{CreateError, GitError, IoError};
use crate::host::Host;
use crate::name::{BranchName, SandboxName};
use crate::record::{self, Mode, Record, State};
use crate::{exclude, include};

/// A created sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sandbox {
    /// The sandbox name.
    pub name: String,
    /// Branch or clone mode.
    pub mode: Mode,
    /// The sandbox's branch.
    pub branch: String,
    /// The commit it starts from (hex).
    pub base: String,
    /// The branch the user had checked out (full ref name), where `merge` goes back to.
    pub base_branch: Option<String>,
    /// The sandbox's working tree.
    pub path: PathBuf,
    /// Files copied because `.worktreeinclude` named them.
    pub included: Vec<String>,
}

/// How many numbered auto branches (`sbx/<sandbox>-2`, …) to try before giving up.
const MAX_AUTO_BRANCHES: u32 = 100;
/// Attempts at registering the worktree; a concurrent create or remove can make gix read a half-written
/// registration of another worktree, which fails the attempt without harm (it is rolled back).
const ADD_ATTEMPTS: u32 = 5;

impl Host {
    /// Create a sandbox in branch mode: branch `branch` (or `sbx/<sandbox>`, numbered if taken) at the current
    /// HEAD commit, checked out in a linked worktree at `<repo>/.sbx/<sandbox>-worktrees/<branch>`.
    ///
    /// The worktree is registered exactly like `git worktree add` does, so `git worktree list`, `git status` and
    /// `git worktree remove` work in both trees. On any failure everything created so far is removed again.
    pub fn create(&self, sandbox: &str, branch: Option<&str>) -> Result<Sandbox, CreateError> {
        let name = SandboxName::new(sandbox)?;
        let wanted = branch.map(BranchName::new).transpose()?;
        let repo = self.fresh()?;
        let (base, base_branch) = head_state(&repo, &self.main_workdir)?;
        let sandbox_dir = self.prepare_sbx_dir(&format!("{name}-worktrees"))?;

        let mut record = Record::new(
            &name,
            Mode::Branch,
            base.to_string(),
            base_branch,
            PathBuf::new(),
        );
        let mut undo = Undo::new(self.common_dir.clone(), name.clone());
        if !record::claim(&self.common_dir, &record)? {
            undo.disarm();
            return Err(CreateError::SandboxExists {
                sandbox: name.to_string(),
                repo: self.main_workdir.clone(),
            });
        }
        let branch = create_branch(&repo, &name, wanted, base)?;
        undo.branch = Some((branch.clone(), base));
        let dest = sandbox_dir.join(branch.as_str());
        record.branch = Some(branch.as_str().to_owned());
        record.path.clone_from(&dest);
        record::store(&self.common_dir, &record)?;

        ensure_no_symlinks(&sandbox_dir, &dest)?;
        undo.worktree = Some(dest.clone());
        add_worktree(&repo, &dest, base, &branch)?;
        let included = include::copy_included(&repo, &self.main_workdir, &dest)?;

        record.state = State::Ready;
        record::store(&self.common_dir, &record)?;
        undo.disarm();
        Ok(Sandbox {
            name: record.sandbox,
            mode: Mode::Branch,
            branch: branch.as_str().to_owned(),
            base: record.base,
            base_branch: record.base_branch,
            path: dest,
            included,
        })
    }

    /// Create `.sbx/` (excluded from git status) and `.sbx/<leaf>`, refusing symlinks anywhere on the way.
    pub(crate) fn prepare_sbx_dir(&self, leaf: &str) -> Result<PathBuf, CreateError> {
        let sbx = self.sbx_dir();
        create_real_dir(&sbx)?;
        exclude::ensure_sbx_excluded(&self.common_dir)?;
        let dir = sbx.join(leaf);
        create_real_dir(&dir)?;
        Ok(dir)
    }
}

/// The commit HEAD points to and the local branch it is on, if any.
pub(crate) fn head_state(
    repo: &gix::Repository,
    workdir: &Path,
) -> Result<(gix::ObjectId, Option<String>), CreateError> {
    let head = repo.head().map_err(|e| GitError::new("reading HEAD", e))?;
    if head.is_unborn() {
        let branch = head
            .referent_name()
            .map(|n| n.shorten().to_string())
            .unwrap_or_else(|| "HEAD".into());
        return Err(CreateError::UnbornHead {
            repo: workdir.to_owned(),
            branch,
        });
    }
    let base_branch = head
        .referent_name()
        .filter(|n| n.category() == Some(gix::refs::Category::LocalBranch))
        .map(|n| n.as_bstr().to_string());
    let commit = repo
        .head_commit()
        .map_err(|e| GitError::new("resolving HEAD to a commit", e))?;
    Ok((commit.id, base_branch))
}

/// `mkdir` that accepts an existing directory but never a symlink (which could redirect our writes).
pub(crate) fn create_real_dir(dir: &Path) -> Result<(), CreateError> {
    match std::fs::create_dir(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(IoError::new("creating", dir, e).into()),
    }
    let meta = std::fs::symlink_metadata(dir).map_err(|e| IoError::new("reading", dir, e))?;
    if meta.file_type().is_symlink() || !meta.is_dir() {
        return Err(CreateError::UnsafePath {
            path: dir.to_owned(),
            reason: "it exists and is a symlink or not a directory",
        });
    }
    Ok(())
}

/// Create the directories between `root` and `dest`'s parent, refusing symlinks among them.
fn ensure_no_symlinks(root: &Path, dest: &Path) -> Result<(), CreateError> {
    let Ok(rel) = dest.strip_prefix(root) else {
        return Err(CreateError::UnsafePath {
            path: dest.to_owned(),
            reason: "it is not inside the sandbox directory",
        });
    };
    let mut dir = root.to_owned();
    let components: Vec<_> = rel.components().collect();
    for component in components.iter().take(components.len().saturating_sub(1)) {
        dir.push(component);
        create_real_dir(&dir)?;
    }
    Ok(())
}

/// Create the sandbox branch at `base`: the given name, or the first free of `sbx/<sandbox>`, `sbx/<sandbox>-2`, ….
fn create_branch(
    repo: &gix::Repository,
    sandbox: &SandboxName,
    wanted: Option<BranchName>,
    base: gix::ObjectId,
) -> Result<BranchName, CreateError> {
    if let Some(branch) = wanted {
        return if try_create_branch(repo, &branch, base)? {
            Ok(branch)
        } else {
            Err(CreateError::BranchExists {
                branch: branch.to_string(),
            })
        };
    }
    for n in 1..=MAX_AUTO_BRANCHES {
        let candidate = if n == 1 {
            format!("sbx/{sandbox}")
        } else {
            format!("sbx/{sandbox}-{n}")
        };
        let branch = BranchName::new(&candidate)?;
        if try_create_branch(repo, &branch, base)? {
            return Ok(branch);
        }
    }
    Err(CreateError::BranchExists {
        branch: format!("sbx/{sandbox} (and -2 … -{MAX_AUTO_BRANCHES})"),
    })
}

/// Create the branch unless it exists; `Ok(false)` if it does. Creation is atomic (lock file + `MustNotExist`).
fn try_create_branch(
    repo: &gix::Repository,
    branch: &BranchName,
    base: gix::ObjectId,
) -> Result<bool, CreateError> {
    let full = branch.full_ref();
    let exists = |repo: &gix::Repository| {
        repo.try_find_reference(full.as_str())
            .map(|r| r.is_some())
            .map_err(|e| GitError::new(format!("looking up {full}"), e))
    };
    if exists(repo)? {
        return Ok(false);
    }
    match repo.reference(
        full.as_str(),
        base,
        PreviousValue::MustNotExist,
        "sbx: create sandbox branch",
    ) {
        Ok(_) => Ok(true),
        // Lost a race with another process creating the same branch.
        Err(_) if exists(repo)? => Ok(false),
        Err(e) => Err(GitError::new(format!("creating branch {branch}"), e).into()),
    }
}

/// Register and check out the linked worktree (gix does the parallel checkout), then attach its HEAD to `branch`.
fn add_worktree(
    repo: &gix::Repository,
    dest: &Path,
    base: gix::ObjectId,
    branch: &BranchName,
) -> Result<(), CreateError> {
    let interrupt = AtomicBool::new(false);
    let mut attempt = 1;
    let (worktree, outcome) = loop {
        // Detached first: attaching through gix would scan every other worktree's HEAD for the branch, which
        // races with concurrent creates; our branch is brand new, so nobody else can have it checked out.
        match repo.add_worktree(
            dest,
            gix::worktree::add::Head::Detached(base),
            gix::progress::Discard,
            &interrupt,
        ) {
            Ok(done) => break done,
            Err(_)
                if attempt < ADD_ATTEMPTS
                    && std::fs::symlink_metadata(dest.join(".git")).is_err() =>
            {
                std::thread::sleep(Duration::from_millis(20 * u64::from(attempt)));
                attempt += 1;
            }
            Err(e) => {
                return Err(
                    GitError::new(format!("adding the worktree at {}", dest.display()), e).into(),
                );
            }
        }
    };
    let mut failed: Vec<String> = outcome
        .errors
        .iter()
        .map(|e| format!("{} ({})", e.path, e.error))
        .collect();
    failed.extend(
        outcome
            .collisions
            .iter()
            .map(|c| format!("{} (collides with another path)", c.path)),
    );
    if !failed.is_empty() {
        return Err(CreateError::Checkout {
            path: dest.to_owned(),
            files: failed,
        });
    }
    attach_head(&worktree, branch)?;
    // git (2.46+) gives every linked worktree an empty `refs/` for per-worktree refs; gix does not create it yet.
    let refs = worktree.git_dir().join("refs");
    std::fs::create_dir_all(&refs).map_err(|e| IoError::new("creating", &refs, e))?;
    Ok(())
}

/// Point the worktree's HEAD at `branch` (`ref: refs/heads/<branch>`), as `git worktree add -b` leaves it.
fn attach_head(worktree: &gix::Repository, branch: &BranchName) -> Result<(), CreateError> {
    let path = worktree.git_dir().join("HEAD");
    let tmp = worktree.git_dir().join("HEAD.sbx-tmp");
    let contents = format!("ref: {}\n", branch.full_ref());
    std::fs::write(&tmp, contents)
        .and_then(|()| std::fs::rename(&tmp, &path))
        .map_err(|e| IoError::new("writing", &path, e).into())
}

/// Undoes a half-finished create when dropped, unless disarmed.
struct Undo {
    common_dir: PathBuf,
    sandbox: SandboxName,
    branch: Option<(BranchName, gix::ObjectId)>,
    worktree: Option<PathBuf>,
    armed: bool,
}

impl Undo {
    fn new(common_dir: PathBuf, sandbox: SandboxName) -> Self {
        Self {
            common_dir,
            sandbox,
            branch: None,
            worktree: None,
            armed: true,
        }
    }

    fn disarm(&mut self) {
        self.armed = false;
    }
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(dest) = &self.worktree {
            crate::remove::remove_worktree_files(&self.common_dir, dest);
        }
        if let Some((branch, base)) = &self.branch
            && let Ok(repo) = gix::open(&self.common_dir)
        {
            let _ = crate::remove::delete_branch(&repo, branch.as_str(), *base);
        }
        let _ = record::delete(&self.common_dir, self.sandbox.as_str());
    }
}
