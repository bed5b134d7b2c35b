//! Decoding one FUSE request from the bytes a guest (or the host kernel) sent.
//!
//! [`Request::decode`] is the only entry point for untrusted bytes. It checks the header's length against the buffer,
//! every fixed-size argument against what is left, that names are NUL-terminated, and that payload sizes match what the
//! header claims. It never allocates more than the message holds (batch forgets are iterated lazily) and never panics;
//! the fuzz target `virtiofs_fuse_request` holds it to that.

use std::ffi::CStr;

use crate::abi::{IN_HEADER_LEN, InHeader, opcode};
use crate::wire::ByteReader;

/// Largest request accepted: a maximal WRITE (`max_pages` = 256 → 1 MiB) plus headers, with headroom.
pub const MAX_REQUEST_LEN: usize = (1 << 20) + 64 * 1024;

/// Why a request could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// A field needed more bytes than the message had.
    #[error(
        "FUSE request truncated reading {what} at byte {offset}: needed {needed}, {available} left"
    )]
    Truncated {
        /// Which field.
        what: &'static str,
        /// Offset of the field inside the request body.
        offset: usize,
        /// Bytes needed.
        needed: usize,
        /// Bytes left.
        available: usize,
    },
    /// A name was not NUL-terminated inside the message.
    #[error("FUSE request field {what} at byte {offset} is not NUL-terminated")]
    Unterminated {
        /// Which field.
        what: &'static str,
        /// Offset of the field.
        offset: usize,
    },
    /// The header's `len` disagrees with the buffer.
    #[error("FUSE header says the request is {header_len} bytes, but {buffer_len} bytes arrived")]
    BadLength {
        /// `in_header.len`.
        header_len: u32,
        /// Bytes available.
        buffer_len: usize,
    },
    /// A size field disagrees with the payload it describes.
    #[error("FUSE {what} says {claimed} bytes follow, but {actual} do")]
    SizeMismatch {
        /// Which field.
        what: &'static str,
        /// The value of the size field.
        claimed: u64,
        /// Bytes actually present.
        actual: u64,
    },
}

/// A decoded request: its header and the operation with borrowed arguments.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The header.
    pub header: InHeader,
    /// The operation and its arguments.
    pub op: Operation<'a>,
}

/// `fuse_setattr_in`, the fields that matter to a passthrough server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct SetattrIn {
    pub valid: u32,
    pub fh: u64,
    pub size: u64,
    pub atime: u64,
    pub mtime: u64,
    pub atimensec: u32,
    pub mtimensec: u32,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// `fuse_read_in` (also READDIR / READDIRPLUS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct ReadIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
}

/// `fuse_write_in` without the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct WriteIn {
    pub fh: u64,
    pub offset: u64,
    pub size: u32,
    pub write_flags: u32,
}

/// `fuse_copy_file_range_in`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub struct CopyFileRangeIn {
    pub fh_in: u64,
    pub off_in: u64,
    pub nodeid_out: u64,
    pub fh_out: u64,
    pub off_out: u64,
    pub len: u64,
    pub flags: u64,
}

/// The batch of a BATCH_FORGET, decoded lazily (its length was checked against the message).
#[derive(Debug, Clone)]
pub struct ForgetBatch<'a> {
    bytes: &'a [u8],
}

impl<'a> ForgetBatch<'a> {
    /// `(nodeid, nlookup)` pairs.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + 'a {
        self.bytes.chunks_exact(16).map(|c| {
            let mut r = ByteReader::new(c);
            (r.u64("nodeid").unwrap_or(0), r.u64("nlookup").unwrap_or(0))
        })
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.bytes.len() / 16
    }

    /// Whether the batch is empty.
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }
}

/// A FUSE operation with its arguments.
#[derive(Debug, Clone)]
#[allow(missing_docs)]
#[non_exhaustive]
pub enum Operation<'a> {
    Init {
        major: u32,
        minor: u32,
        max_readahead: u32,
        flags: u32,
    },
    Destroy,
    Lookup {
        name: &'a CStr,
    },
    Forget {
        nlookup: u64,
    },
    BatchForget {
        batch: ForgetBatch<'a>,
    },
    Getattr {
        fh: Option<u64>,
    },
    Setattr(SetattrIn),
    Readlink,
    Symlink {
        name: &'a CStr,
        target: &'a CStr,
    },
    Mknod {
        mode: u32,
        rdev: u32,
        umask: u32,
        name: &'a CStr,
    },
    Mkdir {
        mode: u32,
        umask: u32,
        name: &'a CStr,
    },
    Unlink {
        name: &'a CStr,
    },
    Rmdir {
        name: &'a CStr,
    },
    Rename {
        newdir: u64,
        flags: u32,
        oldname: &'a CStr,
        newname: &'a CStr,
    },
    Link {
        oldnodeid: u64,
        newname: &'a CStr,
    },
    Open {
        flags: u32,
        /// `FUSE_OPEN_*` bits (`open_in_flags`).
        open_flags: u32,
    },
    Read(ReadIn),
    Write {
        arg: WriteIn,
        data: &'a [u8],
    },
    Statfs,
    Release {
        fh: u64,
    },
    Fsync {
        fh: u64,
        datasync: bool,
    },
    Setxattr {
        flags: u32,
        name: &'a CStr,
        value: &'a [u8],
    },
    Getxattr {
        size: u32,
        name: &'a CStr,
    },
    Listxattr {
        size: u32,
    },
    Removexattr {
        name: &'a CStr,
    },
    Flush {
        fh: u64,
    },
    Opendir {
        flags: u32,
    },
    Readdir(ReadIn),
    Readdirplus(ReadIn),
    Releasedir {
        fh: u64,
    },
    Fsyncdir {
        fh: u64,
        datasync: bool,
    },
    Access {
        mask: u32,
    },
    Create {
        flags: u32,
        mode: u32,
        umask: u32,
        /// `FUSE_OPEN_*` bits (`open_in_flags`).
        open_flags: u32,
        name: &'a CStr,
    },
    Interrupt {
        unique: u64,
    },
    Fallocate {
        fh: u64,
        offset: u64,
        length: u64,
        mode: u32,
    },
    Lseek {
        fh: u64,
        offset: u64,
        whence: u32,
    },
    CopyFileRange(CopyFileRangeIn),
    /// An opcode this server does not implement (answered with ENOSYS).
    Unsupported {
        opcode: u32,
    },
}

impl<'a> Request<'a> {
    /// Decodes one request. `bytes` may be longer than the request (trailing bytes are ignored), never shorter.
    pub fn decode(bytes: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = ByteReader::new(bytes);
        let header = InHeader::decode(&mut r)?;
        let len = header.len as usize;
        if len < IN_HEADER_LEN || len > bytes.len() || len > MAX_REQUEST_LEN {
            return Err(DecodeError::BadLength {
                header_len: header.len,
                buffer_len: bytes.len(),
            });
        }
        let ext = usize::from(header.total_extlen) * 8;
        let body_len = len - IN_HEADER_LEN;
        if ext > body_len {
            return Err(DecodeError::SizeMismatch {
                what: "in_header.total_extlen",
                claimed: ext as u64,
                actual: body_len as u64,
            });
        }
        // Extensions (security context, supplementary groups) trail the arguments; none are negotiated, so skip them.
        let body = &bytes[IN_HEADER_LEN..len - ext];
        let op = decode_operation(header.opcode, &mut ByteReader::new(body))?;
        Ok(Self { header, op })
    }
}

fn decode_operation<'a>(opcode: u32, r: &mut ByteReader<'a>) -> Result<Operation<'a>, DecodeError> {
    use Operation as O;
    Ok(match opcode {
        opcode::INIT => {
            let major = r.u32("init_in.major")?;
            let minor = r.u32("init_in.minor")?;
            let max_readahead = r.u32("init_in.max_readahead")?;
            let flags = r.u32("init_in.flags")?;
            O::Init {
                major,
                minor,
                max_readahead,
                flags,
            }
        }
        opcode::DESTROY => O::Destroy,
        opcode::LOOKUP => O::Lookup {
            name: r.cstr("lookup.name")?,
        },
        opcode::FORGET => O::Forget {
            nlookup: r.u64("forget_in.nlookup")?,
        },
        opcode::BATCH_FORGET => {
            let count = r.u32("batch_forget_in.count")?;
            r.u32("batch_forget_in.dummy")?;
            let needed = (count as usize)
                .checked_mul(16)
                .ok_or(DecodeError::SizeMismatch {
                    what: "batch_forget_in.count",
                    claimed: u64::from(count),
                    actual: r.remaining() as u64 / 16,
                })?;
            if needed > r.remaining() {
                return Err(DecodeError::SizeMismatch {
                    what: "batch_forget_in.count",
                    claimed: u64::from(count),
                    actual: r.remaining() as u64 / 16,
                });
            }
            O::BatchForget {
                batch: ForgetBatch {
                    bytes: r.take(needed, "batch_forget entries")?,
                },
            }
        }
        opcode::GETATTR => {
            let flags = r.u32("getattr_in.getattr_flags")?;
            r.u32("getattr_in.dummy")?;
            let fh = r.u64("getattr_in.fh")?;
            O::Getattr {
                fh: (flags & crate::abi::GETATTR_FH != 0).then_some(fh),
            }
        }
        opcode::SETATTR => O::Setattr(decode_setattr(r)?),
        opcode::READLINK => O::Readlink,
        opcode::SYMLINK => {
            let name = r.cstr("symlink.name")?;
            let target = r.cstr("symlink.target")?;
            O::Symlink { name, target }
        }
        opcode::MKNOD => {
            let mode = r.u32("mknod_in.mode")?;
            let rdev = r.u32("mknod_in.rdev")?;
            let umask = r.u32("mknod_in.umask")?;
            r.u32("mknod_in.padding")?;
            O::Mknod {
                mode,
                rdev,
                umask,
                name: r.cstr("mknod.name")?,
            }
        }
        opcode::MKDIR => {
            let mode = r.u32("mkdir_in.mode")?;
            let umask = r.u32("mkdir_in.umask")?;
            O::Mkdir {
                mode,
                umask,
                name: r.cstr("mkdir.name")?,
            }
        }
        opcode::UNLINK => O::Unlink {
            name: r.cstr("unlink.name")?,
        },
        opcode::RMDIR => O::Rmdir {
            name: r.cstr("rmdir.name")?,
        },
        opcode::RENAME => {
            let newdir = r.u64("rename_in.newdir")?;
            let oldname = r.cstr("rename.oldname")?;
            let newname = r.cstr("rename.newname")?;
            O::Rename {
                newdir,
                flags: 0,
                oldname,
                newname,
            }
        }
        opcode::RENAME2 => {
            let newdir = r.u64("rename2_in.newdir")?;
            let flags = r.u32("rename2_in.flags")?;
            r.u32("rename2_in.padding")?;
            let oldname = r.cstr("rename2.oldname")?;
            let newname = r.cstr("rename2.newname")?;
            O::Rename {
                newdir,
                flags,
                oldname,
                newname,
            }
        }
        opcode::LINK => {
            let oldnodeid = r.u64("link_in.oldnodeid")?;
            O::Link {
                oldnodeid,
                newname: r.cstr("link.newname")?,
            }
        }
        opcode::OPEN | opcode::OPENDIR => {
            let flags = r.u32("open_in.flags")?;
            let open_flags = r.u32("open_in.open_flags")?;
            if opcode == opcode::OPEN {
                O::Open { flags, open_flags }
            } else {
                O::Opendir { flags }
            }
        }
        opcode::READ | opcode::READDIR | opcode::READDIRPLUS => {
            let arg = decode_read(r)?;
            match opcode {
                opcode::READ => O::Read(arg),
                opcode::READDIR => O::Readdir(arg),
                _ => O::Readdirplus(arg),
            }
        }
        opcode::WRITE => {
            let fh = r.u64("write_in.fh")?;
            let offset = r.u64("write_in.offset")?;
            let size = r.u32("write_in.size")?;
            let write_flags = r.u32("write_in.write_flags")?;
            r.u64("write_in.lock_owner")?;
            r.u32("write_in.flags")?;
            r.u32("write_in.padding")?;
            let data = r.rest();
            if data.len() != size as usize {
                return Err(DecodeError::SizeMismatch {
                    what: "write_in.size",
                    claimed: u64::from(size),
                    actual: data.len() as u64,
                });
            }
            O::Write {
                arg: WriteIn {
                    fh,
                    offset,
                    size,
                    write_flags,
                },
                data,
            }
        }
        opcode::STATFS => O::Statfs,
        opcode::RELEASE | opcode::RELEASEDIR => {
            let fh = r.u64("release_in.fh")?;
            r.u32("release_in.flags")?;
            r.u32("release_in.release_flags")?;
            r.u64("release_in.lock_owner")?;
            if opcode == opcode::RELEASE {
                O::Release { fh }
            } else {
                O::Releasedir { fh }
            }
        }
        opcode::FSYNC | opcode::FSYNCDIR => {
            let fh = r.u64("fsync_in.fh")?;
            let datasync = r.u32("fsync_in.fsync_flags")? & 1 != 0;
            r.u32("fsync_in.padding")?;
            if opcode == opcode::FSYNC {
                O::Fsync { fh, datasync }
            } else {
                O::Fsyncdir { fh, datasync }
            }
        }
        opcode::SETXATTR => {
            let size = r.u32("setxattr_in.size")?;
            let flags = r.u32("setxattr_in.flags")?;
            let name = r.cstr("setxattr.name")?;
            let value = r.rest();
            if value.len() != size as usize {
                return Err(DecodeError::SizeMismatch {
                    what: "setxattr_in.size",
                    claimed: u64::from(size),
                    actual: value.len() as u64,
                });
            }
            O::Setxattr { flags, name, value }
        }
        opcode::GETXATTR => {
            let size = r.u32("getxattr_in.size")?;
            r.u32("getxattr_in.padding")?;
            O::Getxattr {
                size,
                name: r.cstr("getxattr.name")?,
            }
        }
        opcode::LISTXATTR => {
            let size = r.u32("getxattr_in.size")?;
            r.u32("getxattr_in.padding")?;
            O::Listxattr { size }
        }
        opcode::REMOVEXATTR => O::Removexattr {
            name: r.cstr("removexattr.name")?,
        },
        opcode::FLUSH => {
            let fh = r.u64("flush_in.fh")?;
            r.u32("flush_in.unused")?;
            r.u32("flush_in.padding")?;
            r.u64("flush_in.lock_owner")?;
            O::Flush { fh }
        }
        opcode::ACCESS => {
            let mask = r.u32("access_in.mask")?;
            r.u32("access_in.padding")?;
            O::Access { mask }
        }
        opcode::CREATE => {
            let flags = r.u32("create_in.flags")?;
            let mode = r.u32("create_in.mode")?;
            let umask = r.u32("create_in.umask")?;
            let open_flags = r.u32("create_in.open_flags")?;
            O::Create {
                flags,
                mode,
                umask,
                open_flags,
                name: r.cstr("create.name")?,
            }
        }
        opcode::INTERRUPT => O::Interrupt {
            unique: r.u64("interrupt_in.unique")?,
        },
        opcode::FALLOCATE => {
            let fh = r.u64("fallocate_in.fh")?;
            let offset = r.u64("fallocate_in.offset")?;
            let length = r.u64("fallocate_in.length")?;
            let mode = r.u32("fallocate_in.mode")?;
            r.u32("fallocate_in.padding")?;
            O::Fallocate {
                fh,
                offset,
                length,
                mode,
            }
        }
        opcode::LSEEK => {
            let fh = r.u64("lseek_in.fh")?;
            let offset = r.u64("lseek_in.offset")?;
            let whence = r.u32("lseek_in.whence")?;
            r.u32("lseek_in.padding")?;
            O::Lseek { fh, offset, whence }
        }
        opcode::COPY_FILE_RANGE => O::CopyFileRange(CopyFileRangeIn {
            fh_in: r.u64("copy_file_range_in.fh_in")?,
            off_in: r.u64("copy_file_range_in.off_in")?,
            nodeid_out: r.u64("copy_file_range_in.nodeid_out")?,
            fh_out: r.u64("copy_file_range_in.fh_out")?,
            off_out: r.u64("copy_file_range_in.off_out")?,
            len: r.u64("copy_file_range_in.len")?,
            flags: r.u64("copy_file_range_in.flags")?,
        }),
        other => O::Unsupported { opcode: other },
    })
}

fn decode_read(r: &mut ByteReader<'_>) -> Result<ReadIn, DecodeError> {
    let fh = r.u64("read_in.fh")?;
    let offset = r.u64("read_in.offset")?;
    let size = r.u32("read_in.size")?;
    r.u32("read_in.read_flags")?;
    r.u64("read_in.lock_owner")?;
    r.u32("read_in.flags")?;
    r.u32("read_in.padding")?;
    Ok(ReadIn { fh, offset, size })
}

fn decode_setattr(r: &mut ByteReader<'_>) -> Result<SetattrIn, DecodeError> {
    let valid = r.u32("setattr_in.valid")?;
    r.u32("setattr_in.padding")?;
    let fh = r.u64("setattr_in.fh")?;
    let size = r.u64("setattr_in.size")?;
    r.u64("setattr_in.lock_owner")?;
    let atime = r.u64("setattr_in.atime")?;
    let mtime = r.u64("setattr_in.mtime")?;
    r.u64("setattr_in.ctime")?;
    let atimensec = r.u32("setattr_in.atimensec")?;
    let mtimensec = r.u32("setattr_in.mtimensec")?;
    r.u32("setattr_in.ctimensec")?;
    let mode = r.u32("setattr_in.mode")?;
    r.u32("setattr_in.unused4")?;
    let uid = r.u32("setattr_in.uid")?;
    let gid = r.u32("setattr_in.gid")?;
    r.u32("setattr_in.unused5")?;
    Ok(SetattrIn {
        valid,
        fh,
        size,
        atime,
        mtime,
        atimensec,
        mtimensec,
        mode,
        uid,
        gid,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::abi::InHeader;
    use proptest::prelude::*;

    fn msg(opcode: u32, body: &[u8]) -> Vec<u8> {
        let mut m = Vec::new();
        InHeader {
            len: (40 + body.len()) as u32,
            opcode,
            unique: 9,
            nodeid: 1,
            uid: 0,
            gid: 0,
            pid: 0,
            total_extlen: 0,
        }
        .encode(&mut m);
        m.extend_from_slice(body);
        m
    }

    #[test]
    fn header_length_must_match_the_buffer() {
        let mut m = msg(opcode::GETATTR, &[0u8; 16]);
        m[0..4].copy_from_slice(&1000u32.to_ne_bytes());
        assert!(matches!(
            Request::decode(&m),
            Err(DecodeError::BadLength {
                header_len: 1000,
                ..
            })
        ));
        m[0..4].copy_from_slice(&39u32.to_ne_bytes());
        assert!(matches!(
            Request::decode(&m),
            Err(DecodeError::BadLength { .. })
        ));
        assert!(matches!(
            Request::decode(&m[..30]),
            Err(DecodeError::Truncated { .. })
        ));
    }

    #[test]
    fn trailing_bytes_beyond_len_are_ignored() {
        let mut m = msg(opcode::LOOKUP, b"name\0");
        m.extend_from_slice(b"garbage");
        let req = Request::decode(&m).unwrap();
        assert!(matches!(req.op, Operation::Lookup { name } if name.to_bytes() == b"name"));
    }

    #[test]
    fn write_payload_must_match_its_size_field() {
        let mut body = vec![0u8; 40];
        body[16..20].copy_from_slice(&5u32.to_ne_bytes());
        body.extend_from_slice(b"abcd");
        assert!(matches!(
            Request::decode(&msg(opcode::WRITE, &body)),
            Err(DecodeError::SizeMismatch {
                claimed: 5,
                actual: 4,
                ..
            })
        ));
        body.push(b'e');
        let m = msg(opcode::WRITE, &body);
        let req = Request::decode(&m).unwrap();
        assert!(matches!(req.op, Operation::Write { data: b"abcde", .. }));
    }

    #[test]
    fn batch_forget_count_is_checked_against_the_payload() {
        let mut body = u32::MAX.to_ne_bytes().to_vec();
        body.extend_from_slice(&[0u8; 4 + 32]);
        assert!(matches!(
            Request::decode(&msg(opcode::BATCH_FORGET, &body)),
            Err(DecodeError::SizeMismatch { .. })
        ));
        body[0..4].copy_from_slice(&2u32.to_ne_bytes());
        let m = msg(opcode::BATCH_FORGET, &body);
        let req = Request::decode(&m).unwrap();
        let Operation::BatchForget { batch } = req.op else {
            panic!()
        };
        assert_eq!(batch.len(), 2);
    }

    #[test]
    fn names_must_be_terminated_and_extensions_fit() {
        assert!(matches!(
            Request::decode(&msg(opcode::LOOKUP, b"abc")),
            Err(DecodeError::Unterminated { .. })
        ));
        assert!(matches!(
            Request::decode(&msg(opcode::SYMLINK, b"a\0b")),
            Err(DecodeError::Unterminated { .. })
        ));
        let mut m = msg(opcode::LOOKUP, b"a\0");
        m[36..38].copy_from_slice(&100u16.to_ne_bytes());
        assert!(matches!(
            Request::decode(&m),
            Err(DecodeError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn unknown_opcodes_decode_as_unsupported() {
        let m = msg(9999, &[]);
        let req = Request::decode(&m).unwrap();
        assert!(matches!(req.op, Operation::Unsupported { opcode: 9999 }));
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = Request::decode(&data);
        }

        #[test]
        fn any_body_under_a_valid_header_never_panics(op in 0u32..60, body in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(req) = Request::decode(&msg(op, &body)) {
                prop_assert_eq!(req.header.opcode, op);
            }
        }
    }
}
