//! Namespace operations: lookup and everything that creates, removes or renames a name.

use std::ffi::CStr;
use std::sync::Arc;

use rustix::fs::{AtFlags, FileType, Mode, RenameFlags};
use rustix::io::Errno;

use super::FileServer;
use crate::confine::{self, check_name, sanitize_mode};
use crate::inode::{Inode, open_child};

/// Longest symlink target accepted (Linux `PATH_MAX`).
const PATH_MAX: usize = 4096;

impl FileServer {
    /// Looks `name` up in directory `parent`, takes one lookup reference and returns the inode with its attributes.
    ///
    /// A file the guest already holds (the common case: `git status`, builds and READDIRPLUS revisit the same names)
    /// costs one `fstatat` and the table's read lock: its node is found by `(dev, ino)` and, for a directory, the
    /// descriptor it already holds is the same directory (held descriptors pin their inode numbers). Only a new
    /// directory is opened (`O_PATH`) to be held.
    pub(super) fn lookup_inode(
        &self,
        parent: &Arc<Inode>,
        name: &CStr,
    ) -> Result<(Arc<Inode>, rustix::fs::Stat), Errno> {
        let dir = parent.dir_fd()?;
        let name = check_name(name)?;
        let st = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
        if let Some(inode) = self.inodes.lookup_known(&st, parent, name) {
            return Ok((inode, st));
        }
        // Only a directory needs opening (to be held); its descriptor's own attributes win if the name was swapped.
        let (fd, st) = if confine::is_dir(st.st_mode) {
            open_child(dir, name)?
        } else {
            (None, st)
        };
        let inode = self.inodes.insert_lookup(fd, &st, parent, name)?;
        Ok((inode, st))
    }

    pub(super) fn lookup(&self, parent: u64, name: &CStr, out: &mut Vec<u8>) -> Result<(), Errno> {
        let parent = self.inode(parent)?;
        let (inode, st) = self.lookup_inode(&parent, name)?;
        self.entry_out(inode.nodeid, &st).encode(out);
        Ok(())
    }

    /// Finishes a creation: hands the new file to the host owner and replies with its entry.
    fn created(&self, parent: &Arc<Inode>, name: &CStr, out: &mut Vec<u8>) -> Result<(), Errno> {
        let (fd, st) = open_child(parent.dir_fd()?, name)?;
        let inode = self.inodes.insert_lookup(fd, &st, parent, name)?;
        let st = if self.chown_new {
            let fd = inode.path_fd()?;
            self.adopt(&fd)?;
            confine::stat_fd(&fd)?
        } else {
            st
        };
        self.entry_out(inode.nodeid, &st).encode(out);
        Ok(())
    }

    pub(super) fn mkdir(
        &self,
        parent: u64,
        name: &CStr,
        mode: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let parent = self.inode(parent)?;
        rustix::fs::mkdirat(
            parent.dir_fd()?,
            check_name(name)?,
            Mode::from_raw_mode(sanitize_mode(mode)),
        )?;
        self.created(&parent, name, out)
    }

    /// MKNOD: regular files, FIFOs and sockets only; device nodes are refused with `EPERM`.
    pub(super) fn mknod(
        &self,
        parent: u64,
        name: &CStr,
        mode: u32,
        rdev: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let kind = match confine::file_type(mode) {
            libc::S_IFREG => FileType::RegularFile,
            libc::S_IFIFO => FileType::Fifo,
            libc::S_IFSOCK => FileType::Socket,
            _ => return Err(Errno::PERM),
        };
        let _ = rdev; // only meaningful for device nodes, which are refused
        let parent = self.inode(parent)?;
        rustix::fs::mknodat(
            parent.dir_fd()?,
            check_name(name)?,
            kind,
            Mode::from_raw_mode(sanitize_mode(mode)),
            0,
        )?;
        self.created(&parent, name, out)
    }

    /// SYMLINK: the target is stored verbatim; it is resolved by the guest in the guest, never by the server.
    pub(super) fn symlink(
        &self,
        parent: u64,
        name: &CStr,
        target: &CStr,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let len = target.to_bytes().len();
        if len == 0 {
            return Err(Errno::NOENT);
        }
        if len >= PATH_MAX {
            return Err(Errno::NAMETOOLONG);
        }
        let parent = self.inode(parent)?;
        rustix::fs::symlinkat(target, parent.dir_fd()?, check_name(name)?)?;
        self.created(&parent, name, out)
    }

    pub(super) fn unlink(&self, parent: u64, name: &CStr, flags: AtFlags) -> Result<(), Errno> {
        self.check_writable()?;
        let parent = self.inode(parent)?;
        let name = check_name(name)?;
        let gone = rustix::fs::statat(parent.dir_fd()?, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        rustix::fs::unlinkat(parent.dir_fd()?, name, flags)?;
        if let Some(inode) = gone.and_then(|st| self.inodes.by_key((st.st_dev, st.st_ino))) {
            inode.remove_location(&parent, name);
        }
        Ok(())
    }

    /// RENAME / RENAME2 with `RENAME_NOREPLACE` and `RENAME_EXCHANGE`. `RENAME_WHITEOUT` is refused: it creates a
    /// character device.
    pub(super) fn rename(
        &self,
        olddir: u64,
        oldname: &CStr,
        newdir: u64,
        newname: &CStr,
        flags: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let allowed = RenameFlags::NOREPLACE | RenameFlags::EXCHANGE;
        let flags = RenameFlags::from_bits(flags)
            .filter(|f| allowed.contains(*f))
            .ok_or(Errno::INVAL)?;
        let old_parent = self.inode(olddir)?;
        let new_parent = self.inode(newdir)?;
        let (oldname, newname) = (check_name(oldname)?, check_name(newname)?);
        let moved =
            rustix::fs::statat(old_parent.dir_fd()?, oldname, AtFlags::SYMLINK_NOFOLLOW).ok();
        let target =
            rustix::fs::statat(new_parent.dir_fd()?, newname, AtFlags::SYMLINK_NOFOLLOW).ok();
        rustix::fs::renameat_with(
            old_parent.dir_fd()?,
            oldname,
            new_parent.dir_fd()?,
            newname,
            flags,
        )?;
        // Keep the reopen names of known inodes in step: the moved file gains its new name and loses the old one; the
        // file at the target is swapped into the old name (EXCHANGE) or loses its name (replaced).
        let known = |st: Option<rustix::fs::Stat>| {
            st.and_then(|st| self.inodes.by_key((st.st_dev, st.st_ino)))
        };
        let (moved, target) = (known(moved), known(target));
        if let Some(inode) = &target {
            inode.remove_location(&new_parent, newname);
            if flags.contains(RenameFlags::EXCHANGE) {
                inode.add_location(&old_parent, oldname);
            }
        }
        if let Some(inode) = &moved {
            inode.remove_location(&old_parent, oldname);
            inode.add_location(&new_parent, newname);
        }
        Ok(())
    }

    /// LINK: a new name for an inode the guest already holds (so necessarily one beneath the root).
    pub(super) fn link(
        &self,
        oldnodeid: u64,
        newparent: u64,
        newname: &CStr,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let inode = self.inode(oldnodeid)?;
        if inode.is_dir() {
            return Err(Errno::PERM);
        }
        let parent = self.inode(newparent)?;
        let newname = check_name(newname)?;
        match rustix::fs::linkat(
            inode.path_fd()?,
            c"",
            parent.dir_fd()?,
            newname,
            AtFlags::EMPTY_PATH,
        ) {
            Ok(()) => {}
            // AT_EMPTY_PATH needs CAP_DAC_READ_SEARCH; without it, link through the last known name, checked first.
            Err(Errno::NOENT) => {
                let new_dir = parent.dir_fd()?;
                let linked = inode.locations().into_iter().any(|(old_parent, old_name)| {
                    let Ok(old_dir) = old_parent.dir_fd() else {
                        return false;
                    };
                    let same = rustix::fs::statat(old_dir, &old_name, AtFlags::SYMLINK_NOFOLLOW)
                        .is_ok_and(|st| (st.st_dev, st.st_ino) == inode.key);
                    same && rustix::fs::linkat(
                        old_dir,
                        &old_name,
                        new_dir,
                        newname,
                        AtFlags::empty(),
                    )
                    .is_ok()
                });
                if !linked {
                    return Err(Errno::STALE);
                }
            }
            Err(e) => return Err(e),
        }
        let (inode, st) = self.lookup_inode(&parent, newname)?;
        self.entry_out(inode.nodeid, &st).encode(out);
        Ok(())
    }
}
