//! Attributes: GETATTR, SETATTR, READLINK, STATFS.

use rustix::fs::{AtFlags, Gid, OFlags, Timespec, Timestamps, Uid};
use rustix::io::Errno;

use super::FileServer;
use crate::abi::{StatfsOut, Validity, encode_attr_out, fattr};
use crate::confine::{self, sanitize_mode};
use crate::inode::Inode;
use crate::request::SetattrIn;

impl FileServer {
    pub(super) fn getattr(
        &self,
        node: u64,
        fh: Option<u64>,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let st = match fh.map(|fh| self.handles.get(fh)).transpose()? {
            Some(h) => match &h.kind {
                crate::handle::HandleKind::File(fd) => rustix::fs::fstat(fd)?,
                crate::handle::HandleKind::Dir(_) => h.inode.stat()?,
            },
            None => self.inode(node)?.stat()?,
        };
        encode_attr_out(
            out,
            Validity::from(self.config.cache.attr_timeout),
            &self.to_attr(&st),
        );
        Ok(())
    }

    /// SETATTR: each requested change is applied to the inode itself (never through a path), then the new attributes
    /// are returned. Mode changes lose setuid/setgid; owner changes are limited to the mapped guest owner.
    pub(super) fn setattr(
        &self,
        node: u64,
        arg: &SetattrIn,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let inode = self.inode(node)?;
        let handle = if arg.valid & fattr::FH != 0 {
            let handle = self.handles.get(arg.fh)?;
            // A handle only speaks for the inode it was opened on.
            if handle.inode.nodeid != inode.nodeid {
                return Err(Errno::BADF);
            }
            Some(handle)
        } else {
            None
        };
        let handle_fd = handle.as_ref().and_then(|h| h.file().ok());
        if arg.valid & fattr::MODE != 0 {
            set_mode(&inode, sanitize_mode(arg.mode))?;
        }
        if arg.valid & (fattr::UID | fattr::GID) != 0 {
            self.set_owner(&inode, arg)?;
        }
        if arg.valid & fattr::SIZE != 0 {
            if !confine::is_reg(inode.file_type) {
                return Err(if inode.is_dir() {
                    Errno::ISDIR
                } else {
                    Errno::INVAL
                });
            }
            match handle_fd.map(|fd| rustix::fs::ftruncate(fd, arg.size)) {
                Some(Ok(())) => {}
                // No handle, or one opened read-only: open for writing just for this.
                _ => rustix::fs::ftruncate(
                    inode.reopen(OFlags::WRONLY | OFlags::NONBLOCK)?,
                    arg.size,
                )?,
            }
        }
        if arg.valid & fattr::KILL_SUIDGID != 0 && confine::is_reg(inode.file_type) {
            // A truncation (or chown) by a caller without CAP_FSETID, under HANDLE_KILLPRIV_V2.
            super::file::kill_suidgid(&inode.io_fd()?)?;
        }
        if arg.valid & (fattr::ATIME | fattr::MTIME | fattr::ATIME_NOW | fattr::MTIME_NOW) != 0 {
            let times = Timestamps {
                last_access: timespec(
                    arg.valid,
                    fattr::ATIME,
                    fattr::ATIME_NOW,
                    arg.atime,
                    arg.atimensec,
                ),
                last_modification: timespec(
                    arg.valid,
                    fattr::MTIME,
                    fattr::MTIME_NOW,
                    arg.mtime,
                    arg.mtimensec,
                ),
            };
            rustix::fs::utimensat(
                inode.path_fd()?,
                c"",
                &times,
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        let st = inode.stat()?;
        encode_attr_out(
            out,
            Validity::from(self.config.cache.attr_timeout),
            &self.to_attr(&st),
        );
        Ok(())
    }

    fn set_owner(&self, inode: &Inode, arg: &SetattrIn) -> Result<(), Errno> {
        let ids = &self.config.ids;
        let uid = if arg.valid & fattr::UID != 0 {
            Some(ids.uid_to_host(arg.uid).ok_or(Errno::PERM)?)
        } else {
            None
        };
        let gid = if arg.valid & fattr::GID != 0 {
            Some(ids.gid_to_host(arg.gid).ok_or(Errno::PERM)?)
        } else {
            None
        };
        rustix::fs::chownat(
            inode.path_fd()?,
            c"",
            uid.map(Uid::from_raw),
            gid.map(Gid::from_raw),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
    }

    pub(super) fn readlink(&self, node: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        if inode.file_type != libc::S_IFLNK {
            return Err(Errno::INVAL);
        }
        let target = rustix::fs::readlinkat(inode.path_fd()?, c"", Vec::new())?;
        out.extend_from_slice(target.as_bytes());
        Ok(())
    }

    pub(super) fn statfs(&self, node: u64, out: &mut Vec<u8>) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        let s = rustix::fs::fstatvfs(inode.path_fd()?)?;
        StatfsOut {
            blocks: s.f_blocks,
            bfree: s.f_bfree,
            bavail: s.f_bavail,
            files: s.f_files,
            ffree: s.f_ffree,
            bsize: s.f_bsize as u32,
            namelen: s.f_namemax as u32,
            frsize: s.f_frsize as u32,
        }
        .encode(out);
        Ok(())
    }
}

/// Changes the mode of the inode itself: `fchmodat2(AT_EMPTY_PATH)`, or on kernels before 6.6 through a descriptor
/// reopened for the purpose. Symlinks have no mode of their own (`EOPNOTSUPP`, as on Linux).
fn set_mode(inode: &Inode, mode: u32) -> Result<(), Errno> {
    if inode.file_type == libc::S_IFLNK {
        return Err(Errno::OPNOTSUPP);
    }
    match crate::sys::fchmod_empty_path(std::os::fd::AsFd::as_fd(&inode.path_fd()?), mode) {
        Err(Errno::NOSYS) if confine::is_reg(inode.file_type) || inode.is_dir() => {
            rustix::fs::fchmod(inode.io_fd()?, rustix::fs::Mode::from_raw_mode(mode))
        }
        other => other,
    }
}

fn timespec(valid: u32, set: u32, now: u32, secs: u64, nsecs: u32) -> Timespec {
    if valid & now != 0 {
        Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_NOW,
        }
    } else if valid & set != 0 {
        Timespec {
            tv_sec: secs as i64,
            tv_nsec: i64::from(nsecs.min(999_999_999)),
        }
    } else {
        Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        }
    }
}
