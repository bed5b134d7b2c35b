//! Clone mode: a private clone of the host repository for one sandbox, exposed to the host as remote
//! `sandbox-<name>`. The clone has no remote pointing back at the host, so the sandbox cannot push into it.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;

use gix::refs::transaction::PreviousValue;

use crate::create::{Sandbox, head_state};
use crate::error::{CreateError, GitError, IoError};
use crate::gitcli;
use crate::host::Host;
use crate::name::SandboxName;
use crate::record::{self, Mode, Record, State};

impl Host {
    /// Create a sandbox in clone mode at `<repo>/.sbx/<sandbox>-clone`, on a new branch `sbx/<sandbox>` at the
    /// current HEAD commit, and add the remote `sandbox-<sandbox>` to the host so `git fetch sandbox-<sandbox>`
    /// brings the agent's commits.
    pub fn create_clone(&self, sandbox: &str) -> Result<Sandbox, CreateError> {
        let name = SandboxName::new(sandbox)?;
        let repo = self.fresh()?;
        let (base, base_branch) = head_state(&repo, &self.main_workdir)?;
        let dest = self.sbx_dir().join(format!("{name}-clone"));
        let mut record = Record::new(
            &name,
            Mode::Clone,
            base.to_string(),
            base_branch,
            dest.clone(),
        );
        if !record::claim(&self.common_dir, &record)? {
            return Err(CreateError::SandboxExists {
                sandbox: name.to_string(),
                repo: self.main_workdir.clone(),
            });
        }
        match self.populate_clone(&name, &dest, base) {
            Ok(branch) => {
                record.branch = Some(branch.clone());
                record.state = State::Ready;
                record::store(&self.common_dir, &record)?;
                Ok(Sandbox {
                    name: record.sandbox,
                    mode: Mode::Clone,
                    branch,
                    base: record.base,
                    base_branch: record.base_branch,
                    path: dest,
                    included: Vec::new(),
                })
            }
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dest);
                let _ = remove_remote(&self.common_dir, &remote_name(&name));
                let _ = record::delete(&self.common_dir, name.as_str());
                Err(e)
            }
        }
    }

    fn populate_clone(
        &self,
        name: &SandboxName,
        dest: &Path,
        base: gix::ObjectId,
    ) -> Result<String, CreateError> {
        self.prepare_sbx_dir(&format!("{name}-clone"))?;
        // gix clones only through a transport, which for a local path spawns `git-upload-pack` anyway; a local
        // `git clone` copies the object files directly. `--no-hardlinks`: the sandbox must not share inodes with
        // the host's object files, or writing through one would change the other.
        let (src, dst) = (self.common_dir.as_os_str(), dest.as_os_str());
        let args: [&OsStr; 6] = [
            "clone".as_ref(),
            "--no-hardlinks".as_ref(),
            "--no-checkout".as_ref(),
            "--quiet".as_ref(),
            "--".as_ref(),
            src,
        ];
        let mut args = args.to_vec();
        args.push(dst);
        gitcli::run(&self.main_workdir, &args)?;
        let clone = gix::open(dest)
            .map_err(|e| GitError::new(format!("opening the clone {}", dest.display()), e))?;
        let branch = format!("sbx/{name}");
        clone
            .reference(
                format!("refs/heads/{branch}").as_str(),
                base,
                PreviousValue::Any,
                "sbx: create sandbox branch",
            )
            .map_err(|e| GitError::new(format!("creating branch {branch} in the clone"), e))?;
        let head = clone.git_dir().join("HEAD");
        std::fs::write(&head, format!("ref: refs/heads/{branch}\n"))
            .map_err(|e| IoError::new("writing", &head, e))?;
        remove_remote(clone.git_dir(), "origin")?;
        checkout(&clone, base)?;
        add_remote(&self.common_dir, &remote_name(name), dest)?;
        Ok(branch)
    }
}

/// `sandbox-<name>`.
pub(crate) fn remote_name(name: &impl std::fmt::Display) -> String {
    format!("sandbox-{name}")
}

/// Check out `commit` into the clone's (empty) worktree with gix, in parallel, and write the index.
fn checkout(clone: &gix::Repository, commit: gix::ObjectId) -> Result<(), CreateError> {
    let action = || format!("checking out the clone {}", clone.git_dir().display());
    let tree = crate::status::tree_of(clone, commit)?;
    let workdir = clone
        .workdir()
        .ok_or_else(|| GitError::new(action(), "the clone has no working tree"))?
        .to_owned();
    let mut index = clone
        .index_from_tree(&tree)
        .map_err(|e| GitError::new(action(), e))?;
    let mut options = clone
        .checkout_options(gix::worktree::stack::state::attributes::Source::IdMapping)
        .map_err(|e| GitError::new(action(), e))?;
    options.destination_is_initially_empty = true;
    let objects = clone
        .objects
        .clone()
        .into_arc()
        .map_err(|e| GitError::new(action(), e))?;
    let outcome = gix::worktree::state::checkout(
        &mut index,
        &workdir,
        objects,
        &gix::progress::Discard,
        &gix::progress::Discard,
        &AtomicBool::new(false),
        options,
    )
    .map_err(|e| GitError::new(action(), e))?;
    if !outcome.errors.is_empty() {
        return Err(CreateError::Checkout {
            path: workdir,
            files: outcome
                .errors
                .iter()
                .map(|e| format!("{} ({})", e.path, e.error))
                .collect(),
        });
    }
    index
        .write(Default::default())
        .map_err(|e| GitError::new(action(), e))?;
    Ok(())
}

/// Add `[remote "<name>"]` with a fetch refspec to the config in `git_dir`, under git's config lock.
fn add_remote(git_dir: &Path, name: &str, url: &Path) -> Result<(), CreateError> {
    let action = || {
        format!(
            "adding remote {name} to {}",
            git_dir.join("config").display()
        )
    };
    let repo = gix::open(git_dir).map_err(|e| GitError::new(action(), e))?;
    let mut config = repo
        .config_file_mut(git_dir.join("config"))
        .map_err(|e| GitError::new(action(), e))?;
    let url = url.to_string_lossy().into_owned();
    let fetch = format!("+refs/heads/*:refs/remotes/{name}/*");
    let mut section = config
        .new_section("remote", Some(gix::bstr::BString::from(name)))
        .map_err(|e| GitError::new(action(), e))?;
    section
        .push("url", Some(url.as_str().into()))
        .and_then(|section| section.push("fetch", Some(fetch.as_str().into())))
        .map_err(|e| GitError::new(action(), e))?;
    config.commit().map_err(|e| GitError::new(action(), e))?;
    Ok(())
}

/// Remove `[remote "<name>"]` from the config in `git_dir`, if present.
fn remove_remote(git_dir: &Path, name: &str) -> Result<(), GitError> {
    let action = || {
        format!(
            "removing remote {name} from {}",
            git_dir.join("config").display()
        )
    };
    let repo = gix::open(git_dir).map_err(|e| GitError::new(action(), e))?;
    let mut config = repo
        .config_file_mut(git_dir.join("config"))
        .map_err(|e| GitError::new(action(), e))?;
    while config.remove_section("remote", Some(name.into())).is_some() {}
    config.commit().map_err(|e| GitError::new(action(), e))?;
    Ok(())
}

/// Fetch the clone's branches into `refs/remotes/sandbox-<name>/` of the host.
pub(crate) fn fetch_into_host(
    host: &gix::Repository,
    record: &Record,
) -> Result<(), crate::error::MergeError> {
    // gix fetches only with its network-client features, whose file:// transport spawns `git-upload-pack`
    // anyway; the CLI fetch is the same operation without pulling in a transport stack.
    let remote = remote_name(&record.sandbox);
    let dir: PathBuf = host.common_dir().to_owned();
    let args: [&OsStr; 4] = [
        "fetch".as_ref(),
        "--quiet".as_ref(),
        "--".as_ref(),
        remote.as_ref(),
    ];
    gitcli::run(&dir, &args).map_err(|e| GitError::new(format!("fetching from {remote}"), e))?;
    Ok(())
}

/// Delete the clone, the host's `sandbox-<name>` remote and its remote-tracking refs.
pub(crate) fn remove_clone(
    host: &gix::Repository,
    record: &Record,
) -> Result<(), crate::error::RemoveError> {
    let remote = remote_name(&record.sandbox);
    remove_remote(host.common_dir(), &remote)?;
    let prefix = format!("refs/remotes/{remote}/");
    let platform = host
        .references()
        .map_err(|e| GitError::new("listing refs", e))?;
    let names: Vec<_> = platform
        .prefixed(prefix.as_str())
        .map_err(|e| GitError::new("listing refs", e))?
        .filter_map(Result::ok)
        .map(|r| r.name().to_owned())
        .collect();
    for name in names {
        let edit = gix::refs::transaction::RefEdit {
            change: gix::refs::transaction::Change::Delete {
                expected: PreviousValue::Any,
                log: gix::refs::transaction::RefLog::AndReference,
            },
            name,
            deref: false,
        };
        host.edit_reference(edit)
            .map_err(|e| GitError::new(format!("deleting refs under {prefix}"), e))?;
    }
    match std::fs::remove_dir_all(&record.path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("removing", &record.path, e).into()),
    }
}
