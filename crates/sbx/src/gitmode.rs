//! Branch mode and clone mode: the sandbox works on its own branch of the user's repository instead of the user's
//! working tree (sbx-worktree does the git work; this module decides what the sandbox sees).
//!
//! **What the sandbox sees.** Every mount keeps its host path inside, so paths an agent prints are the paths the
//! user opens on the host, and git's absolute links (a linked worktree's `.git` file, its `commondir`) resolve the
//! same inside and out:
//!
//! - branch mode: the worktree `<repo>/.sbx/<name>-worktrees/<branch>` read-write, where the agent starts; the
//!   repository's git directory `<repo>/.git` **read-only** (config, hooks, other branches cannot be changed from
//!   inside, so nothing the agent does runs code on the host's next `git` command); and read-write only what a
//!   commit on the sandbox branch writes: `objects/`, the directory of the branch ref and of its reflog, and the
//!   worktree's own admin directory `worktrees/<id>/`. The user's working tree is not mounted at all.
//! - clone mode: the private clone `<repo>/.sbx/<name>-clone` read-write, and nothing of the user's repository.
//!
//! The sandbox's working tree is still under its control: treat it as untrusted (review with `sbx diff`, merge
//! with `sbx merge`) rather than running git commands inside it on the host.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use sbx_worktree::{Host, Mode};
use serde::{Deserialize, Serialize};

use crate::sandboxes::Workspace;

/// How a sandbox uses a git repository.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct GitSandbox {
    /// `branch` or `clone`.
    pub(crate) mode: GitMode,
    /// The user's repository (its main working tree).
    pub(crate) repo: PathBuf,
    /// The sandbox's branch.
    pub(crate) branch: String,
    /// The sandbox's working tree (worktree or clone), where the agent works.
    pub(crate) worktree: PathBuf,
    /// Where inside the working tree the agent starts (the directory the user named, relative to the repo root).
    #[serde(default)]
    pub(crate) subdir: PathBuf,
    /// Mounts that exist only so git works inside; not shown as workspaces.
    #[serde(default)]
    pub(crate) support_mounts: Vec<PathBuf>,
}

/// Branch or clone mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum GitMode {
    Branch,
    Clone,
}

/// What `--branch` / `--clone` asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Request {
    /// `--branch auto` (or `--clone`): `sbx/<name>`.
    Branch(Option<String>),
    Clone,
}

impl Request {
    /// From the command-line flags; `None` when the workspace is shared directly.
    pub(crate) fn from_flags(branch: Option<&str>, clone: bool) -> Option<Request> {
        match (branch, clone) {
            (_, true) => Some(Request::Clone),
            (Some("auto"), false) => Some(Request::Branch(None)),
            (Some(name), false) => Some(Request::Branch(Some(name.to_owned()))),
            (None, false) => None,
        }
    }
}

impl GitSandbox {
    /// The directory the agent starts in.
    pub(crate) fn workdir(&self) -> PathBuf {
        self.worktree.join(&self.subdir)
    }
}

/// Creates the sandbox's branch and worktree (or clone) for the repository containing `workspace`, and returns it
/// with the mounts that replace the workspace.
pub(crate) fn setup(
    name: &str,
    workspace: &Workspace,
    request: &Request,
) -> Result<(GitSandbox, Vec<Workspace>)> {
    if workspace.read_only {
        bail!(
            "--branch/--clone need a writable workspace, but {} is `:ro`",
            workspace.path.display()
        );
    }
    let host = Host::open(&workspace.path).with_context(|| {
        format!(
            "--branch/--clone need a git repository, and {} is not in one; drop the flag to share the directory \
             directly, or run `git init` there first",
            workspace.path.display()
        )
    })?;
    let subdir = workspace
        .path
        .strip_prefix(host.workdir())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let created = match request {
        Request::Branch(branch) => host.create(name, branch.as_deref()),
        Request::Clone => host.create_clone(name),
    }
    .with_context(|| {
        format!(
            "cannot create the sandbox's {} of {}",
            if *request == Request::Clone {
                "clone"
            } else {
                "branch and worktree"
            },
            host.workdir().display()
        )
    })?;
    let mut sandbox = GitSandbox {
        mode: match created.mode {
            Mode::Clone => GitMode::Clone,
            _ => GitMode::Branch,
        },
        repo: host.workdir().to_owned(),
        branch: created.branch.clone(),
        worktree: created.path.clone(),
        subdir,
        support_mounts: Vec::new(),
    };
    let mounts = match mounts_for(&host, &sandbox) {
        Ok(m) => m,
        Err(e) => {
            let _ = host.remove(name, true);
            return Err(e);
        }
    };
    sandbox.support_mounts = mounts.iter().skip(1).map(|m| m.path.clone()).collect();
    Ok((sandbox, mounts))
}

/// The mounts of a branch- or clone-mode sandbox; the working tree first.
fn mounts_for(host: &Host, sandbox: &GitSandbox) -> Result<Vec<Workspace>> {
    let rw = |path: PathBuf| Workspace {
        path,
        read_only: false,
    };
    let mut mounts = vec![rw(sandbox.worktree.clone())];
    if sandbox.mode == GitMode::Clone {
        return Ok(mounts);
    }
    let common = host.common_dir().to_owned();
    mounts.push(Workspace {
        path: common.clone(),
        read_only: true,
    });
    mounts.push(rw(common.join("objects")));
    let branch_parent = Path::new(&sandbox.branch)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    for base in ["refs/heads", "logs/refs/heads"] {
        let dir = common.join(base).join(&branch_parent);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        mounts.push(rw(dir));
    }
    mounts.push(rw(worktree_admin_dir(&sandbox.worktree, &common)?));
    Ok(mounts)
}

/// The linked worktree's admin directory `<common>/worktrees/<id>`, read from its `.git` file and checked to be
/// where git keeps it (the file was just written by sbx-worktree, but a path is never trusted blindly).
fn worktree_admin_dir(worktree: &Path, common: &Path) -> Result<PathBuf> {
    let dot_git = worktree.join(".git");
    let text = std::fs::read_to_string(&dot_git)
        .with_context(|| format!("cannot read {}", dot_git.display()))?;
    let target = text
        .trim()
        .strip_prefix("gitdir:")
        .map(|p| PathBuf::from(p.trim()))
        .with_context(|| format!("{} is not a `gitdir:` file", dot_git.display()))?;
    let target = std::fs::canonicalize(worktree.join(target)).with_context(|| {
        format!(
            "the git directory named in {} is missing",
            dot_git.display()
        )
    })?;
    if target.parent() != Some(common.join("worktrees").as_path()) {
        bail!(
            "{} points at {}, which is not under {}",
            dot_git.display(),
            target.display(),
            common.join("worktrees").display()
        );
    }
    Ok(target)
}

/// Removes the sandbox's worktree (or clone) and branch. Without `force`, unmerged commits or uncommitted changes
/// are refused (nothing is removed).
pub(crate) fn remove(name: &str, sandbox: &GitSandbox, force: bool) -> Result<()> {
    let host = match Host::open(&sandbox.repo) {
        Ok(h) => h,
        Err(_) if force => return Ok(()),
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot open the repository {} of sandbox {name}; `sbx rm -f {name}` removes the sandbox anyway",
                    sandbox.repo.display()
                )
            });
        }
    };
    match host.remove(name, force) {
        Ok(_) => Ok(()),
        Err(sbx_worktree::error::RemoveError::Record(_)) if force => Ok(()),
        Err(e) => Err(anyhow::Error::new(e)).with_context(|| {
            format!(
                "sandbox {name} keeps its branch {}: review with `sbx diff {name}`, merge with `sbx merge {name}`, \
                 or discard with `sbx rm -f {name}`",
                sandbox.branch
            )
        }),
    }
}

/// The workspaces a user would recognise: the repository instead of the worktree, without the git support mounts.
pub(crate) fn visible_workspaces(
    workspaces: &[Workspace],
    git: Option<&GitSandbox>,
) -> Vec<PathBuf> {
    workspaces
        .iter()
        .filter_map(|w| match git {
            Some(g) if w.path == g.worktree && g.subdir.as_os_str().is_empty() => {
                Some(g.repo.clone())
            }
            Some(g) if w.path == g.worktree => Some(g.repo.join(&g.subdir)),
            Some(g) if g.support_mounts.contains(&w.path) => None,
            _ => Some(w.path.clone()),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_map_to_requests() {
        assert_eq!(Request::from_flags(None, false), None);
        assert_eq!(
            Request::from_flags(Some("auto"), false),
            Some(Request::Branch(None))
        );
        assert_eq!(
            Request::from_flags(Some("feature/x"), false),
            Some(Request::Branch(Some("feature/x".into())))
        );
        assert_eq!(Request::from_flags(None, true), Some(Request::Clone));
    }

    #[test]
    fn visible_workspaces_hide_git_plumbing() {
        let git = GitSandbox {
            mode: GitMode::Branch,
            repo: "/r".into(),
            branch: "sbx/a".into(),
            worktree: "/r/.sbx/a-worktrees/sbx/a".into(),
            subdir: "src".into(),
            support_mounts: vec!["/r/.git".into()],
        };
        let ws = |p: &str| Workspace {
            path: p.into(),
            read_only: false,
        };
        let shown = visible_workspaces(
            &[ws("/r/.sbx/a-worktrees/sbx/a"), ws("/r/.git"), ws("/docs")],
            Some(&git),
        );
        assert_eq!(shown, [PathBuf::from("/r/src"), PathBuf::from("/docs")]);
        assert_eq!(git.workdir(), Path::new("/r/.sbx/a-worktrees/sbx/a/src"));
    }

    #[test]
    fn a_worktree_git_file_pointing_elsewhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let common = dir.path().join("repo/.git");
        std::fs::create_dir_all(common.join("worktrees/w")).unwrap();
        std::fs::create_dir_all(dir.path().join("evil")).unwrap();
        let wt = dir.path().join("wt");
        std::fs::create_dir_all(&wt).unwrap();
        std::fs::write(
            wt.join(".git"),
            format!("gitdir: {}\n", dir.path().join("evil").display()),
        )
        .unwrap();
        let err = worktree_admin_dir(&wt, &common).unwrap_err().to_string();
        assert!(err.contains("not under"), "{err}");
        std::fs::write(
            wt.join(".git"),
            format!("gitdir: {}\n", common.join("worktrees/w").display()),
        )
        .unwrap();
        let common = std::fs::canonicalize(&common).unwrap();
        assert_eq!(
            worktree_admin_dir(&wt, &common).unwrap(),
            common.join("worktrees/w")
        );
    }
}
