//! Confinement: every path the server touches is one validated name component, resolved fd-relative beneath a
//! directory the server already holds, by `openat2` with `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS`.
//!
//! The guest never supplies a path, only single names; `/`, `.` and `..` are refused here before any syscall, and the
//! kernel's resolve flags refuse symlinks and `..` steps a second time. Symlinks in the share are opened as themselves
//! (`O_PATH | O_NOFOLLOW`) and returned to the guest as symlinks; the server never follows one.

use std::ffi::CStr;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{AtFlags, Mode, OFlags, ResolveFlags, Stat};
use rustix::io::Errno;

/// Longest name component accepted (Linux `NAME_MAX`).
pub(crate) const NAME_MAX: usize = 255;

/// The resolve flags of every lookup: stay beneath the directory, follow no symlink of any kind.
pub(crate) const RESOLVE: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_MAGICLINKS)
    .union(ResolveFlags::NO_SYMLINKS);

/// Checks that `name` is one plain path component: not empty, not `.`/`..`, no `/`, at most `NAME_MAX` bytes.
pub(crate) fn check_name(name: &CStr) -> Result<&CStr, Errno> {
    let bytes = name.to_bytes();
    if bytes.is_empty() || bytes.len() > NAME_MAX {
        return Err(if bytes.is_empty() {
            Errno::NOENT
        } else {
            Errno::NAMETOOLONG
        });
    }
    if bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(Errno::INVAL);
    }
    Ok(name)
}

/// Opens `name` inside `dir` with `flags`, confined beneath `dir`; never follows a symlink (with `O_PATH` a symlink
/// opens as itself).
pub(crate) fn open_beneath(
    dir: impl AsFd,
    name: &CStr,
    flags: OFlags,
    mode: Mode,
) -> Result<OwnedFd, Errno> {
    let name = check_name(name)?;
    let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    rustix::fs::openat2(dir, name, flags, mode, RESOLVE).map_err(map_resolve_error)
}

/// Opens the directory `dir` itself again (for reading entries), without a name.
pub(crate) fn reopen_dir(dir: impl AsFd, flags: OFlags) -> Result<OwnedFd, Errno> {
    rustix::fs::openat2(
        dir,
        c".",
        flags | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
        RESOLVE,
    )
    .map_err(map_resolve_error)
}

/// `RESOLVE_BENEATH` violations come back as `EXDEV`; the guest sees a plain permission error.
fn map_resolve_error(e: Errno) -> Errno {
    if e == Errno::XDEV { Errno::ACCESS } else { e }
}

/// `fstatat(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW)`: the attributes of what an `O_PATH` descriptor refers to.
pub(crate) fn stat_fd(fd: impl AsFd) -> Result<Stat, Errno> {
    rustix::fs::statat(fd, c"", AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW)
}

/// The file-type bits of a mode.
pub(crate) fn file_type(mode: u32) -> u32 {
    mode & libc::S_IFMT
}

/// Whether `mode` is a regular file.
pub(crate) fn is_reg(mode: u32) -> bool {
    file_type(mode) == libc::S_IFREG
}

/// Whether `mode` is a directory.
pub(crate) fn is_dir(mode: u32) -> bool {
    file_type(mode) == libc::S_IFDIR
}

/// Permission bits the guest may set: never setuid or setgid on the host.
pub(crate) fn sanitize_mode(mode: u32) -> u32 {
    mode & 0o1777
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_must_be_single_plain_components() {
        assert!(check_name(c"file.txt").is_ok());
        assert!(check_name(c"...").is_ok());
        assert_eq!(check_name(c".."), Err(Errno::INVAL));
        assert_eq!(check_name(c"."), Err(Errno::INVAL));
        assert_eq!(check_name(c"a/b"), Err(Errno::INVAL));
        assert_eq!(check_name(c"../../etc"), Err(Errno::INVAL));
        assert_eq!(check_name(c"/etc"), Err(Errno::INVAL));
        assert_eq!(check_name(c""), Err(Errno::NOENT));
        let long = std::ffi::CString::new(vec![b'a'; 256]).unwrap();
        assert_eq!(check_name(&long), Err(Errno::NAMETOOLONG));
    }

    #[test]
    fn setuid_and_setgid_bits_are_stripped() {
        assert_eq!(sanitize_mode(0o104755), 0o755);
        assert_eq!(sanitize_mode(0o6777), 0o777);
        assert_eq!(sanitize_mode(0o1777), 0o1777);
    }

    #[test]
    fn open_beneath_refuses_symlinks_and_escapes() {
        let tmp = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink("/etc", tmp.path().join("etc")).unwrap();
        let dir =
            rustix::fs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        // As O_PATH the symlink opens as itself...
        let fd = open_beneath(&dir, c"etc", OFlags::PATH, Mode::empty()).unwrap();
        assert_eq!(file_type(stat_fd(&fd).unwrap().st_mode), libc::S_IFLNK);
        // ...and any real open of it is refused rather than followed.
        assert_eq!(
            open_beneath(&dir, c"etc", OFlags::RDONLY, Mode::empty()).err(),
            Some(Errno::LOOP)
        );
        assert_eq!(
            open_beneath(&dir, c"..", OFlags::PATH, Mode::empty()).err(),
            Some(Errno::INVAL)
        );
    }
}
