//! Reading what the agent can write. A sandbox's worktree or clone is writable from inside the sandbox, so the
//! host treats its contents as hostile: the worktree's `.git` file may point anywhere, a clone's `.git/config` may
//! name filter drivers or other programs, and any directory may have been replaced by a symlink leading out of
//! the tree. The helpers here are the only way the crate opens or reads such a tree.

use std::path::{Component, Path};

use crate::record::{Mode, Record};

/// Open options for repositories the agent may have written: configuration from repository-level files (a
/// clone's `.git/config`, a worktree's `config.worktree`) is ignored for every setting gix guards as sensitive,
/// among them filter drivers (`filter.<driver>.clean/smudge/process`), so a status or diff never runs a program
/// the agent chose. The user's own global and system configuration still applies.
pub(crate) fn open_options() -> gix::open::Options {
    gix::open::Options::default().filter_config_section(not_repository_config)
}

fn not_repository_config(meta: &gix::config::file::Metadata) -> bool {
    meta.source.kind() != gix::config::source::Kind::Repository
}

/// Open a sandbox for reading, `None` if it is gone.
///
/// A branch-mode worktree is found through the host's own registration (`<common>/worktrees/<id>/gitdir`), never
/// through the `.git` file inside the worktree, which the agent could point at another repository. A clone is
/// opened at its path, with [`open_options`].
pub(crate) fn open_sandbox(common_dir: &Path, record: &Record) -> Option<gix::Repository> {
    match record.mode {
        Mode::Branch => open_linked_worktree(common_dir, &record.path),
        Mode::Clone => {
            if std::fs::symlink_metadata(record.path.join(".git")).is_err() {
                return None;
            }
            let repo = gix::open_opts(&record.path, open_options()).ok()?;
            repo.workdir().is_some().then_some(repo)
        }
    }
}

/// The linked worktree registered with the host at `path`, opened from its administrative directory.
fn open_linked_worktree(common_dir: &Path, path: &Path) -> Option<gix::Repository> {
    let host = gix::open_opts(common_dir, open_options()).ok()?;
    let wanted = std::fs::canonicalize(path).ok()?;
    for proxy in host.worktrees().ok()? {
        let Ok(base) = proxy.base() else { continue };
        if std::fs::canonicalize(&base).is_ok_and(|base| base == wanted) {
            return proxy.into_repo().ok();
        }
    }
    None
}

/// The administrative directory `<common>/worktrees/<id>` whose `gitdir` file names `<worktree>/.git`: the host's
/// record of a linked worktree, found without reading anything inside the worktree.
pub(crate) fn admin_dir_of(common_dir: &Path, worktree: &Path) -> Option<std::path::PathBuf> {
    let wanted = worktree.join(".git");
    let entries = std::fs::read_dir(common_dir.join("worktrees")).ok()?;
    entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|admin| {
            std::fs::read_to_string(admin.join("gitdir"))
                .is_ok_and(|text| Path::new(text.trim_end_matches(['\n', '\r'])) == wanted)
        })
}

/// Whether a directory between `root` and `root/rel` is a symlink (or not a directory), i.e. whether opening
/// `root/rel` could lead out of the tree. `rel` must be relative; `..` components count as leaving it.
pub(crate) fn leaves_tree(root: &Path, rel: &Path) -> bool {
    let mut dir = root.to_owned();
    let components: Vec<_> = rel.components().collect();
    let Some((_, parents)) = components.split_last() else {
        return false;
    };
    for component in parents {
        match component {
            Component::Normal(name) => dir.push(name),
            _ => return true,
        }
        match std::fs::symlink_metadata(&dir) {
            Ok(meta) if meta.is_dir() => {}
            _ => return true,
        }
    }
    !matches!(components.last(), Some(Component::Normal(_)))
}

/// Read `path` if it is a regular file, without following a symlink in its last component and without blocking
/// on a fifo the agent may have swapped in; `None` if it is not a regular file. Files over `max` bytes are not
/// read: the result is a short binary stand-in naming the size, so they diff as "binary changed".
pub(crate) fn read_regular_file(path: &Path, max: u64) -> std::io::Result<Option<Vec<u8>>> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(e),
    };
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Ok(None);
    }
    if meta.len() > max {
        return Ok(Some(
            format!("\0sbx: file of {} bytes not read\n", meta.len()).into_bytes(),
        ));
    }
    let mut data = Vec::new();
    file.take(max).read_to_end(&mut data)?;
    Ok(Some(data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn symlinked_parents_and_dotdot_leave_the_tree() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("real")).unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        assert!(!leaves_tree(root.path(), Path::new("real/file")));
        assert!(!leaves_tree(root.path(), Path::new("top-level-file")));
        assert!(leaves_tree(root.path(), Path::new("link/file")));
        assert!(leaves_tree(root.path(), Path::new("../file")));
        assert!(leaves_tree(root.path(), Path::new("real/../../file")));
        assert!(leaves_tree(root.path(), Path::new("missing/file")));
    }

    #[test]
    fn only_regular_files_are_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "content").unwrap();
        std::os::unix::fs::symlink(&file, dir.path().join("link")).unwrap();
        let fifo = dir.path().join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(made.success());
        assert_eq!(read_regular_file(&file, 100).unwrap().unwrap(), b"content");
        assert_eq!(
            read_regular_file(&dir.path().join("link"), 100).unwrap(),
            None
        );
        assert_eq!(
            read_regular_file(&fifo, 100).unwrap(),
            None,
            "a fifo is neither read nor waited on"
        );
        let big = read_regular_file(&file, 3).unwrap().unwrap();
        assert!(
            big.starts_with(b"\0"),
            "oversized files become a binary stand-in"
        );
    }
}
