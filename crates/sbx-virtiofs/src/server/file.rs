//! File I/O: OPEN, CREATE, READ, WRITE, FSYNC, FALLOCATE, LSEEK, COPY_FILE_RANGE.

use std::ffi::CStr;
use std::os::fd::AsFd;
use std::sync::Arc;

use rustix::fs::{FallocateFlags, Mode, OFlags, SeekFrom};
use rustix::io::Errno;

use super::FileServer;
use crate::abi::{encode_open_out, encode_write_out, fopen, open_in_flags, write_flags};
use crate::confine::{self, check_name, sanitize_mode};
use crate::handle::{Handle, HandleKind};
use crate::inode::{FileVersion, Inode};
use crate::request::{CopyFileRangeIn, ReadIn, WriteIn};

/// Largest single COPY_FILE_RANGE chunk (the reply counts bytes in a u32).
const MAX_COPY_CHUNK: u64 = 1 << 30;

impl FileServer {
    /// The open flags passed to the host: access mode and the data-integrity flags the guest asked for. `O_DIRECT` is
    /// dropped (our buffers are not aligned), creation flags are the server's business, `O_NOFOLLOW` is always added.
    fn host_open_flags(&self, guest_flags: u32) -> Result<OFlags, Errno> {
        let guest = OFlags::from_bits_retain(guest_flags);
        let mut access = guest & OFlags::RWMODE;
        if access == OFlags::RWMODE {
            return Err(Errno::INVAL);
        }
        let writes = access != OFlags::RDONLY || guest.contains(OFlags::TRUNC);
        if writes {
            self.check_writable()?;
        }
        let mut keep = OFlags::TRUNC | OFlags::SYNC | OFlags::DSYNC | OFlags::APPEND;
        if self.config.cache.writeback_cache {
            // With writeback caching the kernel reads pages of write-only files and appends itself.
            keep.remove(OFlags::APPEND);
            if access == OFlags::WRONLY {
                access = OFlags::RDWR;
            }
        }
        Ok(access | (guest & keep))
    }

    pub(super) fn open(
        &self,
        node: u64,
        flags: u32,
        open_flags: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let inode = self.inode(node)?;
        if !confine::is_reg(inode.file_type) {
            // The kernel opens special files itself; a guest asking us to open a FIFO or device is refused.
            return Err(if inode.is_dir() {
                Errno::ISDIR
            } else {
                Errno::ACCESS
            });
        }
        let (fd, st) = inode.reopen_with_stat(self.host_open_flags(flags)?)?;
        // A mode change here changes ctime after `st` was taken: the next open then sees another version and drops
        // the cache once more than needed, never less.
        kill_suidgid_on_trunc(&fd, flags, open_flags)?;
        // The guest kernel does its own readahead in modest windows; let the host read ahead further so large
        // sequential reads stream from disk. Advice only: failure changes nothing.
        let _ = rustix::fs::fadvise(&fd, 0, None, rustix::fs::Advice::Sequential);
        let open_flags = self.keep_cache_flag(&inode, &st) | self.direct_io_flag(flags);
        let fd = Arc::new(fd);
        inode.remember_open(&fd);
        let fh = self.handles.insert(Handle {
            inode,
            kind: HandleKind::File(fd),
        })?;
        encode_open_out(out, fh, open_flags);
        Ok(())
    }

    /// `FOPEN_KEEP_CACHE` when the policy allows it and the file is at the version it had when the guest last opened
    /// it; otherwise 0, and the guest kernel drops the file's cached pages (close-to-open consistency with host edits).
    pub(super) fn keep_cache_flag(&self, inode: &Inode, st: &rustix::fs::Stat) -> u32 {
        if self.config.cache.keep_cache && inode.page_cache_still_valid(FileVersion::of(st)) {
            fopen::KEEP_CACHE
        } else {
            0
        }
    }

    /// CREATE: create-and-open in one step, confined like every other name.
    pub(super) fn create(
        &self,
        parent: u64,
        name: &CStr,
        flags: u32,
        mode: u32,
        open_flags: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let parent = self.inode(parent)?;
        let name = check_name(name)?;
        let mut oflags = self.host_open_flags(flags)? | OFlags::CREATE;
        if OFlags::from_bits_retain(flags).contains(OFlags::EXCL) {
            oflags |= OFlags::EXCL;
        }
        let fd = confine::open_beneath(
            parent.dir_fd()?,
            name,
            oflags,
            Mode::from_raw_mode(sanitize_mode(mode)),
        )?;
        self.adopt(&fd)?;
        kill_suidgid_on_trunc(&fd, flags, open_flags)?;
        let st = rustix::fs::fstat(&fd)?;
        if !confine::is_reg(st.st_mode) {
            return Err(Errno::ISDIR);
        }
        // The node is the created file itself (its descriptor's identity); should the host swap the name meanwhile,
        // operations through the name find another file and are refused (`Inode::by_name`), while the handle and
        // its descriptor stay this file's.
        let inode: Arc<Inode> = self.inodes.insert_lookup(None, &st, &parent, name)?;
        self.entry_out(inode.nodeid, &st).encode(out);
        let fd = Arc::new(fd);
        inode.remember_open(&fd);
        let fh = self.handles.insert(Handle {
            inode,
            kind: HandleKind::File(fd),
        })?;
        encode_open_out(out, fh, self.direct_io_flag(flags));
        Ok(())
    }

    /// `FOPEN_DIRECT_IO` for a write-only open without the writeback cache: such writes are write-through anyway
    /// (one WRITE per `write(2)`), and nothing can read or map the guest's copy through a write-only descriptor, so
    /// the guest kernel sends the caller's own pages instead of first copying them into its page cache (sequential
    /// writes +35 %, see `docs/benchmarks.md`). Only for guest kernels that then invalidate what other openers cached
    /// (`DIRECT_WRITE_COHERENT_MINOR`; tested by `cache_consistency`).
    fn direct_io_flag(&self, guest_flags: u32) -> u32 {
        let write_only = OFlags::from_bits_retain(guest_flags) & OFlags::RWMODE == OFlags::WRONLY;
        let coherent = self
            .direct_writes
            .load(std::sync::atomic::Ordering::Relaxed);
        if write_only && coherent && !self.config.cache.writeback_cache {
            fopen::DIRECT_IO
        } else {
            0
        }
    }

    /// READ straight into the reply buffer's spare capacity: no zero-fill, no second copy, and (the buffer being
    /// reused across requests) no allocation once warm.
    pub(super) fn read(&self, arg: &ReadIn, out: &mut Vec<u8>) -> Result<(), Errno> {
        let handle = self.handles.get(arg.fh)?;
        let fd = handle.file()?;
        let size = (arg.size as usize).min(self.max_request_len());
        let start = out.len();
        while out.len() - start < size {
            let done = out.len() - start;
            match crate::sys::pread_append(fd.as_fd(), out, size - done, arg.offset + done as u64) {
                Ok(0) => break,
                Ok(_) | Err(Errno::INTR) => {}
                Err(e) => {
                    out.truncate(start);
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    pub(super) fn write(&self, arg: &WriteIn, data: &[u8], out: &mut Vec<u8>) -> Result<(), Errno> {
        self.check_writable()?;
        let handle = self.handles.get(arg.fh)?;
        let fd = handle.file()?;
        if arg.write_flags & write_flags::KILL_SUIDGID != 0 {
            kill_suidgid(fd)?;
        }
        let mut done = 0;
        while done < data.len() {
            match rustix::io::pwrite(fd, &data[done..], arg.offset + done as u64) {
                Ok(0) => return Err(Errno::IO),
                Ok(n) => done += n,
                Err(Errno::INTR) => continue,
                Err(e) if done == 0 => return Err(e),
                Err(_) => break,
            }
        }
        encode_write_out(out, u32::try_from(done).unwrap_or(u32::MAX));
        Ok(())
    }

    pub(super) fn fsync(&self, fh: u64, datasync: bool) -> Result<(), Errno> {
        let handle = self.handles.get(fh)?;
        let guard;
        let fd = match &handle.kind {
            HandleKind::File(fd) => fd,
            HandleKind::Dir(m) => {
                guard = m.lock().map_err(|_| Errno::IO)?;
                &*guard
            }
        };
        if datasync {
            rustix::fs::fdatasync(fd)
        } else {
            rustix::fs::fsync(fd)
        }
    }

    pub(super) fn fallocate(
        &self,
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        let handle = self.handles.get(fh)?;
        let flags = FallocateFlags::from_bits(mode).ok_or(Errno::OPNOTSUPP)?;
        rustix::fs::fallocate(handle.file()?, flags, offset, length)
    }

    /// LSEEK: the kernel only forwards `SEEK_DATA` and `SEEK_HOLE`; the others are answered for completeness.
    pub(super) fn lseek(
        &self,
        fh: u64,
        offset: u64,
        whence: u32,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        let handle = self.handles.get(fh)?;
        let pos = match whence {
            0 => SeekFrom::Start(offset),
            1 | 2 => return Err(Errno::INVAL), // positions are the kernel's; it never forwards these
            3 => SeekFrom::Data(offset),
            4 => SeekFrom::Hole(offset),
            _ => return Err(Errno::INVAL),
        };
        // Seeking a shared descriptor is harmless here: all I/O on it is positional.
        let at = rustix::fs::seek(handle.file()?, pos)?;
        out.extend_from_slice(&at.to_ne_bytes());
        Ok(())
    }

    pub(super) fn copy_file_range(
        &self,
        arg: &CopyFileRangeIn,
        out: &mut Vec<u8>,
    ) -> Result<(), Errno> {
        self.check_writable()?;
        if arg.flags != 0 {
            return Err(Errno::INVAL);
        }
        let src = self.handles.get(arg.fh_in)?;
        let dst = self.handles.get(arg.fh_out)?;
        if dst.inode.nodeid != arg.nodeid_out {
            return Err(Errno::BADF);
        }
        let (mut off_in, mut off_out) = (arg.off_in, arg.off_out);
        let len = arg.len.min(MAX_COPY_CHUNK) as usize;
        let n = rustix::fs::copy_file_range(
            src.file()?,
            Some(&mut off_in),
            dst.file()?,
            Some(&mut off_out),
            len,
        )?;
        encode_write_out(out, u32::try_from(n).unwrap_or(u32::MAX));
        Ok(())
    }
}

/// Clears setuid, and setgid when group-executable, as the kernel does when a caller without `CAP_FSETID` writes or
/// truncates a file. With `HANDLE_KILLPRIV_V2` this is the server's job: the host kernel would skip it, because the
/// server itself may run with `CAP_FSETID`.
pub(super) fn kill_suidgid(fd: &impl AsFd) -> Result<(), Errno> {
    let mode = rustix::fs::fstat(fd)?.st_mode;
    let mut kill = libc::S_ISUID;
    if mode & libc::S_IXGRP != 0 {
        kill |= libc::S_ISGID;
    }
    if mode & kill == 0 {
        return Ok(());
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode & 0o7777 & !kill))
}

/// [`kill_suidgid`] for an `O_TRUNC` open the kernel flagged.
fn kill_suidgid_on_trunc(fd: &impl AsFd, flags: u32, open_flags: u32) -> Result<(), Errno> {
    let truncates = OFlags::from_bits_retain(flags).contains(OFlags::TRUNC);
    if truncates && open_flags & open_in_flags::KILL_SUIDGID != 0 {
        kill_suidgid(fd)?;
    }
    Ok(())
}
