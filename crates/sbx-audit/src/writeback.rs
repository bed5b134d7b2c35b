//! Starting the disk write of appended data early, without waiting for it.
//!
//! In buffered mode nothing is fsynced until a file rotates or the writer closes, so without help the kernel would
//! hold up to a whole file (64 MiB by default) of dirty pages and that fsync would wait for all of them at once.
//! Asking for write-back every few MiB keeps the disk busy alongside the writer and bounds what a rotation or close
//! still has to wait for. It is only a hint: durability still comes from the fsync at rotation and close.

use std::fs::File;

/// Starts writing `len` bytes of `file` from `offset` to disk and returns at once (Linux `sync_file_range` with
/// `SYNC_FILE_RANGE_WRITE`). Failures are ignored: the later fsync reports real I/O errors.
#[cfg(target_os = "linux")]
#[allow(unsafe_code)]
pub(crate) fn start(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: the descriptor is borrowed from `file`, so it stays open for the whole call; sync_file_range takes
    // only integers and touches no memory of this process.
    let _ = unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
    };
}

/// Elsewhere the kernel writes back on its own schedule.
#[cfg(not(target_os = "linux"))]
pub(crate) fn start(_file: &File, _offset: u64, _len: u64) {}
