//! The few system calls rustix does not wrap. Each is one small function with its safety argument.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::io::Errno;

/// `fchmodat2(fd, "", mode, AT_EMPTY_PATH)`: changes the mode of the inode an `O_PATH` descriptor refers to, without
/// a path lookup (so no symlink can be followed) and without `/proc/self/fd`. Linux 6.6+; older kernels get `ENOSYS`.
pub(crate) fn fchmod_empty_path(fd: BorrowedFd<'_>, mode: u32) -> Result<(), Errno> {
    const EMPTY: &[u8; 1] = b"\0";
    // SAFETY: fchmodat2 reads only the NUL-terminated path (a static empty string) and the scalar arguments; `fd` is a
    // live descriptor borrowed for the duration of the call.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            fd.as_raw_fd(),
            EMPTY.as_ptr().cast::<libc::c_char>(),
            libc::c_uint::from(mode as u16),
            libc::AT_EMPTY_PATH,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    }
}

/// `pread` of up to `len` bytes at `offset`, appended to `out` without zero-filling the space first (a 1 MiB READ
/// reply would otherwise be memset before every read). Returns the bytes read (0 at end of file).
pub(crate) fn pread_append(
    fd: BorrowedFd<'_>,
    out: &mut Vec<u8>,
    len: usize,
    offset: u64,
) -> Result<usize, Errno> {
    out.reserve(len);
    let start = out.len();
    let spare = &mut out.spare_capacity_mut()[..len];
    let (filled, _) = rustix::io::pread(fd, spare, offset)?;
    let n = filled.len();
    // SAFETY: `pread` initialised the first `n` bytes of the spare capacity (rustix returns exactly the initialised
    // prefix), `n <= len <= capacity - start`, so every byte up to the new length is initialised.
    unsafe { out.set_len(start + n) };
    Ok(n)
}

/// `FUSE_DEV_IOC_CLONE` (`_IOR(229, 0, uint32_t)`).
const FUSE_DEV_IOC_CLONE: libc::c_ulong = 0x8004_e500;

/// A second `/dev/fuse` descriptor attached to the session of `session` (`FUSE_DEV_IOC_CLONE`): each worker reading its
/// own clone gets its own processing queue in the kernel, so replies and reads of different workers do not contend on
/// one queue lock.
pub(crate) fn fuse_dev_clone(session: BorrowedFd<'_>) -> Result<std::os::fd::OwnedFd, Errno> {
    let clone = rustix::fs::open(
        "/dev/fuse",
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let source = session.as_raw_fd() as u32;
    // SAFETY: the ioctl reads one u32 (the session's descriptor number) from the pointer, which points at a live local
    // for the duration of the call; `clone` is a descriptor we own.
    let rc = unsafe {
        libc::ioctl(
            clone.as_raw_fd(),
            FUSE_DEV_IOC_CLONE as _,
            &source as *const u32,
        )
    };
    if rc == 0 {
        Ok(clone)
    } else {
        Err(Errno::from_raw_os_error(
            std::io::Error::last_os_error()
                .raw_os_error()
                .unwrap_or(libc::EIO),
        ))
    }
}
