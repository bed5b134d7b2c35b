//! Extended attributes.
//!
//! Only the `user.` namespace can be written: `security.capability` would grant file capabilities on the host,
//! `trusted.` is root-only, and POSIX ACLs could grant host users access the share's owner did not give. Writes to
//! those answer `EOPNOTSUPP`, which tools such as `cp -a` treat as "not supported here" rather than as a failure.

use std::ffi::CStr;

use rustix::fs::XattrFlags;
use rustix::io::Errno;

use super::FileServer;
use crate::abi::encode_xattr_size;
use crate::confine;
use crate::inode::{Inode, PathFd};

/// Largest xattr value or list the server returns (the Linux limit).
const XATTR_SIZE_MAX: u32 = 64 * 1024;

impl FileServer {
    /// An I/O descriptor for xattr calls (xattr syscalls refuse `O_PATH` descriptors). `None` for symlinks and special
    /// files, which carry no user xattrs on Linux and must not be opened (a FIFO open would block).
    fn xattr_fd<'a>(&self, inode: &'a Inode) -> Result<Option<PathFd<'a>>, Errno> {
        if confine::is_reg(inode.file_type) || inode.is_dir() {
            inode.io_fd().map(Some)
        } else {
            Ok(None)
        }
    }

    pub(super) fn setxattr(
        &self,
        node: u64,
        name: &CStr,
        value: &[u8],
        flags: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        check_writable_name(name)?;
        let inode = self.inode(node)?;
        let fd = self.xattr_fd(&inode)?.ok_or(Errno::PERM)?;
        let flags = XattrFlags::from_bits(flags).ok_or(Errno::INVAL)?;
        rustix::fs::fsetxattr(fd, name, value, flags)
    }

    pub(super) fn removexattr(&self, node: u64, name: &CStr) -> Result<(), Errno> {
        self.check_writable()?;
        check_writable_name(name)?;
        let inode = self.inode(node)?;
        let fd = self.xattr_fd(&inode)?.ok_or(Errno::PERM)?;
        rustix::fs::fremovexattr(fd, name)
    }

    pub(super) fn getxattr(
        &self,
        node: u64,
        name: &CStr,
        size: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        let Some(fd) = self.xattr_fd(&inode)? else {
            return Err(Errno::NODATA);
        };
        if size == 0 {
            let len = rustix::fs::fgetxattr_query(&fd, name)?;
            encode_xattr_size(out, u32::try_from(len).unwrap_or(u32::MAX));
            return Ok(());
        }
        let mut buf = vec![0u8; size.min(XATTR_SIZE_MAX) as usize];
        let len = rustix::fs::fgetxattr(&fd, name, &mut buf[..])?;
        out.extend_from_slice(&buf[..len]);
        Ok(())
    }

    pub(super) fn listxattr(&self, node: u64, size: u32, out: &mut Vec<u8>) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        let Some(fd) = self.xattr_fd(&inode)? else {
            if size == 0 {
                encode_xattr_size(out, 0);
            }
            return Ok(());
        };
        if size == 0 {
            let len = rustix::fs::flistxattr_query(&fd)?;
            encode_xattr_size(out, u32::try_from(len).unwrap_or(u32::MAX));
            return Ok(());
        }
        let mut buf = vec![0u8; size.min(XATTR_SIZE_MAX) as usize];
        let len = rustix::fs::flistxattr(&fd, &mut buf[..])?;
        out.extend_from_slice(&buf[..len]);
        Ok(())
    }
}

fn check_writable_name(name: &CStr) -> Result<(), Errno> {
    let bytes = name.to_bytes();
    if bytes.starts_with(b"user.") && bytes.len() > 5 {
        Ok(())
    } else {
        Err(Errno::OPNOTSUPP)
    }
}
