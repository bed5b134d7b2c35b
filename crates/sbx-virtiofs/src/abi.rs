//! The FUSE kernel ABI: opcodes, flags and the packed structs exchanged with the kernel (protocol 7.x).
//!
//! This is our own rendering of `<linux/fuse.h>`: the field layout is the kernel's, the names follow it so the header
//! can be read side by side. Request structs decode through [`ByteReader`] (bounds-checked); reply structs encode by
//! appending to a `Vec<u8>`.

use crate::request::DecodeError;
use crate::wire::{ByteReader, PutExt};

/// The protocol major version this server speaks.
pub const KERNEL_VERSION: u32 = 7;
/// The highest protocol minor version this server speaks.
pub const KERNEL_MINOR_VERSION: u32 = 31;
/// The lowest kernel minor version accepted (7.27: `copy_file_range`, `max_pages` arrive by 7.28; 7.27 is Linux 4.18).
pub const MIN_KERNEL_MINOR_VERSION: u32 = 27;
/// The node id of the root directory.
pub const ROOT_ID: u64 = 1;

/// Size of `fuse_in_header`.
pub const IN_HEADER_LEN: usize = 40;
/// Size of `fuse_out_header`.
pub const OUT_HEADER_LEN: usize = 16;
/// Size of `fuse_attr`.
pub const ATTR_LEN: usize = 88;
/// Size of `fuse_entry_out`.
pub const ENTRY_OUT_LEN: usize = 40 + ATTR_LEN;
/// Size of `fuse_dirent` without its name.
pub const DIRENT_LEN: usize = 24;
/// Size of `fuse_direntplus` without its name.
pub const DIRENTPLUS_LEN: usize = ENTRY_OUT_LEN + DIRENT_LEN;
/// Size of `fuse_write_in` (the payload of a WRITE follows it).
pub const WRITE_IN_LEN: usize = 40;

/// FUSE opcodes (`enum fuse_opcode`).
#[allow(missing_docs)]
pub mod opcode {
    pub const LOOKUP: u32 = 1;
    pub const FORGET: u32 = 2;
    pub const GETATTR: u32 = 3;
    pub const SETATTR: u32 = 4;
    pub const READLINK: u32 = 5;
    pub const SYMLINK: u32 = 6;
    pub const MKNOD: u32 = 8;
    pub const MKDIR: u32 = 9;
    pub const UNLINK: u32 = 10;
    pub const RMDIR: u32 = 11;
    pub const RENAME: u32 = 12;
    pub const LINK: u32 = 13;
    pub const OPEN: u32 = 14;
    pub const READ: u32 = 15;
    pub const WRITE: u32 = 16;
    pub const STATFS: u32 = 17;
    pub const RELEASE: u32 = 18;
    pub const FSYNC: u32 = 20;
    pub const SETXATTR: u32 = 21;
    pub const GETXATTR: u32 = 22;
    pub const LISTXATTR: u32 = 23;
    pub const REMOVEXATTR: u32 = 24;
    pub const FLUSH: u32 = 25;
    pub const INIT: u32 = 26;
    pub const OPENDIR: u32 = 27;
    pub const READDIR: u32 = 28;
    pub const RELEASEDIR: u32 = 29;
    pub const FSYNCDIR: u32 = 30;
    pub const GETLK: u32 = 31;
    pub const SETLK: u32 = 32;
    pub const SETLKW: u32 = 33;
    pub const ACCESS: u32 = 34;
    pub const CREATE: u32 = 35;
    pub const INTERRUPT: u32 = 36;
    pub const BMAP: u32 = 37;
    pub const DESTROY: u32 = 38;
    pub const IOCTL: u32 = 39;
    pub const POLL: u32 = 40;
    pub const NOTIFY_REPLY: u32 = 41;
    pub const BATCH_FORGET: u32 = 42;
    pub const FALLOCATE: u32 = 43;
    pub const READDIRPLUS: u32 = 44;
    pub const RENAME2: u32 = 45;
    pub const LSEEK: u32 = 46;
    pub const COPY_FILE_RANGE: u32 = 47;
    pub const SETUPMAPPING: u32 = 48;
    pub const REMOVEMAPPING: u32 = 49;
    pub const SYNCFS: u32 = 50;
    pub const TMPFILE: u32 = 51;
    pub const STATX: u32 = 52;
}

/// `FUSE_INIT` capability flags.
#[allow(missing_docs)]
pub mod init_flags {
    pub const ASYNC_READ: u32 = 1 << 0;
    pub const POSIX_LOCKS: u32 = 1 << 1;
    pub const ATOMIC_O_TRUNC: u32 = 1 << 3;
    pub const EXPORT_SUPPORT: u32 = 1 << 4;
    pub const BIG_WRITES: u32 = 1 << 5;
    pub const DONT_MASK: u32 = 1 << 6;
    pub const FLOCK_LOCKS: u32 = 1 << 10;
    pub const AUTO_INVAL_DATA: u32 = 1 << 12;
    pub const DO_READDIRPLUS: u32 = 1 << 13;
    pub const READDIRPLUS_AUTO: u32 = 1 << 14;
    pub const ASYNC_DIO: u32 = 1 << 15;
    pub const WRITEBACK_CACHE: u32 = 1 << 16;
    pub const PARALLEL_DIROPS: u32 = 1 << 18;
    pub const HANDLE_KILLPRIV: u32 = 1 << 19;
    pub const POSIX_ACL: u32 = 1 << 20;
    pub const ABORT_ERROR: u32 = 1 << 21;
    pub const MAX_PAGES: u32 = 1 << 22;
    pub const CACHE_SYMLINKS: u32 = 1 << 23;
    pub const EXPLICIT_INVAL_DATA: u32 = 1 << 25;
    pub const HANDLE_KILLPRIV_V2: u32 = 1 << 28;
    pub const INIT_EXT: u32 = 1 << 30;
}

/// `fuse_setattr_in.valid` bits.
#[allow(missing_docs)]
pub mod fattr {
    pub const MODE: u32 = 1 << 0;
    pub const UID: u32 = 1 << 1;
    pub const GID: u32 = 1 << 2;
    pub const SIZE: u32 = 1 << 3;
    pub const ATIME: u32 = 1 << 4;
    pub const MTIME: u32 = 1 << 5;
    pub const FH: u32 = 1 << 6;
    pub const ATIME_NOW: u32 = 1 << 7;
    pub const MTIME_NOW: u32 = 1 << 8;
    pub const LOCKOWNER: u32 = 1 << 9;
    pub const CTIME: u32 = 1 << 10;
    pub const KILL_SUIDGID: u32 = 1 << 11;
}

/// `fuse_write_in.write_flags` bits.
#[allow(missing_docs)]
pub mod write_flags {
    pub const CACHE: u32 = 1 << 0;
    pub const LOCKOWNER: u32 = 1 << 1;
    /// The writer lacks `CAP_FSETID`: clear setuid/setgid (with `HANDLE_KILLPRIV_V2`).
    pub const KILL_SUIDGID: u32 = 1 << 2;
}

/// `fuse_open_in.open_flags` / `fuse_create_in.open_flags` bits.
#[allow(missing_docs)]
pub mod open_in_flags {
    /// An `O_TRUNC` open by a caller without `CAP_FSETID`: clear setuid/setgid (with `HANDLE_KILLPRIV_V2`).
    pub const KILL_SUIDGID: u32 = 1 << 0;
}

/// `fuse_open_out.open_flags` bits.
#[allow(missing_docs)]
pub mod fopen {
    pub const DIRECT_IO: u32 = 1 << 0;
    pub const KEEP_CACHE: u32 = 1 << 1;
    pub const NONSEEKABLE: u32 = 1 << 2;
    pub const CACHE_DIR: u32 = 1 << 3;
}

/// `fuse_getattr_in.getattr_flags`: the `fh` field is valid.
pub const GETATTR_FH: u32 = 1 << 0;
/// `fuse_write_in.write_flags`: the write comes from the page cache (`fh` may not be the opener's).
pub const WRITE_CACHE: u32 = 1 << 0;

/// `fuse_in_header`: the fixed prefix of every request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InHeader {
    /// Total length of the request, header included.
    pub len: u32,
    /// The operation.
    pub opcode: u32,
    /// Request id, echoed in the reply.
    pub unique: u64,
    /// The inode the operation applies to.
    pub nodeid: u64,
    /// Caller's uid (in the guest).
    pub uid: u32,
    /// Caller's gid (in the guest).
    pub gid: u32,
    /// Caller's pid (in the guest).
    pub pid: u32,
    /// Length of request extensions in 8-byte units (7.38+; zero unless negotiated).
    pub total_extlen: u16,
}

impl InHeader {
    pub(crate) fn decode(r: &mut ByteReader<'_>) -> Result<Self, DecodeError> {
        let h = Self {
            len: r.u32("in_header.len")?,
            opcode: r.u32("in_header.opcode")?,
            unique: r.u64("in_header.unique")?,
            nodeid: r.u64("in_header.nodeid")?,
            uid: r.u32("in_header.uid")?,
            gid: r.u32("in_header.gid")?,
            pid: r.u32("in_header.pid")?,
            total_extlen: r.u16("in_header.total_extlen")?,
        };
        r.u16("in_header.padding")?;
        Ok(h)
    }

    /// Encodes the header (used by tests and clients that build requests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.len);
        out.put_u32(self.opcode);
        out.put_u64(self.unique);
        out.put_u64(self.nodeid);
        out.put_u32(self.uid);
        out.put_u32(self.gid);
        out.put_u32(self.pid);
        out.put_u16(self.total_extlen);
        out.put_u16(0);
    }
}

/// Writes a `fuse_out_header` at the start of `out` (which must already hold `OUT_HEADER_LEN` reserved bytes).
pub fn write_out_header(out: &mut [u8], error: i32, unique: u64) {
    let len = u32::try_from(out.len()).unwrap_or(u32::MAX);
    if out.len() >= OUT_HEADER_LEN {
        out[0..4].copy_from_slice(&len.to_ne_bytes());
        out[4..8].copy_from_slice(&error.to_ne_bytes());
        out[8..16].copy_from_slice(&unique.to_ne_bytes());
    }
}

/// `fuse_attr`: file attributes as the guest sees them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct Attr {
    pub ino: u64,
    pub size: u64,
    pub blocks: u64,
    pub atime: u64,
    pub mtime: u64,
    pub ctime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub ctimensec: u32,
    pub mode: u32,
    pub nlink: u32,
    pub uid: u32,
    pub gid: u32,
    pub rdev: u32,
    pub blksize: u32,
}

impl Attr {
    /// Appends the wire form (`fuse_attr`, 88 bytes).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.ino);
        out.put_u64(self.size);
        out.put_u64(self.blocks);
        out.put_u64(self.atime);
        out.put_u64(self.mtime);
        out.put_u64(self.ctime);
        out.put_u32(self.atimensec);
        out.put_u32(self.mtimensec);
        out.put_u32(self.ctimensec);
        out.put_u32(self.mode);
        out.put_u32(self.nlink);
        out.put_u32(self.uid);
        out.put_u32(self.gid);
        out.put_u32(self.rdev);
        out.put_u32(self.blksize);
        out.put_u32(0); // flags
    }
}

/// A cache validity period as FUSE encodes it (seconds + nanoseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Validity {
    /// Whole seconds.
    pub secs: u64,
    /// Nanoseconds on top.
    pub nsecs: u32,
}

impl From<std::time::Duration> for Validity {
    fn from(d: std::time::Duration) -> Self {
        Self {
            secs: d.as_secs(),
            nsecs: d.subsec_nanos(),
        }
    }
}

/// `fuse_entry_out`: the answer to LOOKUP, MKDIR, CREATE, ...
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EntryOut {
    /// The node id the kernel uses from now on (one lookup reference taken).
    pub nodeid: u64,
    /// Generation number (node ids are never reused, so always 0).
    pub generation: u64,
    /// How long the name → node binding may be cached.
    pub entry_valid: Validity,
    /// How long the attributes may be cached.
    pub attr_valid: Validity,
    /// The attributes.
    pub attr: Attr,
}

impl EntryOut {
    /// Appends the wire form (`fuse_entry_out`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.nodeid);
        out.put_u64(self.generation);
        out.put_u64(self.entry_valid.secs);
        out.put_u64(self.attr_valid.secs);
        out.put_u32(self.entry_valid.nsecs);
        out.put_u32(self.attr_valid.nsecs);
        self.attr.encode(out);
    }
}

/// `fuse_attr_out`.
pub fn encode_attr_out(out: &mut Vec<u8>, valid: Validity, attr: &Attr) {
    out.put_u64(valid.secs);
    out.put_u32(valid.nsecs);
    out.put_u32(0);
    attr.encode(out);
}

/// `fuse_open_out`.
pub fn encode_open_out(out: &mut Vec<u8>, fh: u64, open_flags: u32) {
    out.put_u64(fh);
    out.put_u32(open_flags);
    out.put_u32(0);
}

/// `fuse_write_out` (also the reply of COPY_FILE_RANGE).
pub fn encode_write_out(out: &mut Vec<u8>, size: u32) {
    out.put_u32(size);
    out.put_u32(0);
}

/// `fuse_getxattr_out` (size query of GETXATTR / LISTXATTR).
pub(crate) fn encode_xattr_size(out: &mut Vec<u8>, size: u32) {
    out.put_u32(size);
    out.put_u32(0);
}

/// `fuse_kstatfs` wrapped in `fuse_statfs_out`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct StatfsOut {
    pub blocks: u64,
    pub bfree: u64,
    pub bavail: u64,
    pub files: u64,
    pub ffree: u64,
    pub bsize: u32,
    pub namelen: u32,
    pub frsize: u32,
}

impl StatfsOut {
    pub(crate) fn encode(&self, out: &mut Vec<u8>) {
        out.put_u64(self.blocks);
        out.put_u64(self.bfree);
        out.put_u64(self.bavail);
        out.put_u64(self.files);
        out.put_u64(self.ffree);
        out.put_u32(self.bsize);
        out.put_u32(self.namelen);
        out.put_u32(self.frsize);
        out.put_zeros(4 + 24);
    }
}

/// `fuse_init_out`, the server's half of the negotiation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct InitOut {
    pub major: u32,
    pub minor: u32,
    pub max_readahead: u32,
    pub flags: u32,
    pub max_background: u16,
    pub congestion_threshold: u16,
    pub max_write: u32,
    pub time_gran: u32,
    pub max_pages: u16,
}

impl InitOut {
    /// Appends the wire form (`fuse_init_out`).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.put_u32(self.major);
        out.put_u32(self.minor);
        out.put_u32(self.max_readahead);
        out.put_u32(self.flags);
        out.put_u16(self.max_background);
        out.put_u16(self.congestion_threshold);
        out.put_u32(self.max_write);
        out.put_u32(self.time_gran);
        out.put_u16(self.max_pages);
        out.put_u16(0); // map_alignment
        out.put_u32(0); // flags2
        out.put_zeros(4 * 7);
    }
}

/// Appends one `fuse_dirent` (padded to 8 bytes). Returns false, appending nothing, if it would exceed `limit`.
pub(crate) fn push_dirent(
    out: &mut Vec<u8>,
    limit: usize,
    ino: u64,
    off: u64,
    typ: u32,
    name: &[u8],
) -> bool {
    let len = dirent_size(name.len());
    if out.len() + len > limit {
        return false;
    }
    let start = out.len();
    out.put_u64(ino);
    out.put_u64(off);
    out.put_u32(u32::try_from(name.len()).unwrap_or(u32::MAX));
    out.put_u32(typ);
    out.extend_from_slice(name);
    out.resize(start + len, 0);
    true
}

/// Size of a `fuse_dirent` carrying a name of `name_len` bytes, padded to 8.
pub(crate) fn dirent_size(name_len: usize) -> usize {
    (DIRENT_LEN + name_len).div_ceil(8) * 8
}
