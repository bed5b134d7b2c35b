//! A confined FUSE passthrough file server and its virtio-fs framing, for sharing a host workspace into sbx microVMs.
//!
//! The guest sees one host directory (the workspace) at the same path, read-write or read-only, and nothing else of
//! the host. The pieces:
//!
//! - [`abi`] and [`request`]: the FUSE kernel ABI (protocol 7.27–7.31) and a strict, bounds-checked decoder for the
//!   bytes a guest sends. [`init`] negotiates the session (large requests, readdirplus, no writeback cache).
//! - [`FileServer`]: the passthrough server for one [`ShareConfig`]. Every path operation is a single name resolved
//!   beneath a directory descriptor with `openat2(RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS)`;
//!   inodes are `O_PATH` descriptors keyed by `(dev, ino)`; `:ro` shares answer `EROFS`; device nodes, setuid/setgid
//!   bits and privileged xattrs never reach the host; [`IdMapping`] gives guest-created files to the host user.
//! - [`virtio`]: [`VirtioFsQueueHandler`] turns virtqueue descriptor chains into requests and replies; the virtio-mmio
//!   device in `sbx-vmm` wraps it (see that module for the seam).
//! - [`host_fuse`]: [`HostMount`] serves the same server on the host's `/dev/fuse`, so it can be mounted and tested
//!   (and benchmarked) without a VM.
//!
//! # Example
//!
//! Drive the server with raw FUSE messages, as a transport does:
//!
//! ```
//! use sbx_virtiofs::abi::{InHeader, opcode};
//! use sbx_virtiofs::{FileServer, Outcome, ShareConfig};
//!
//! let share = tempfile::tempdir()?;
//! std::fs::write(share.path().join("hello.txt"), "hi")?;
//! let server = FileServer::new(ShareConfig::new(share.path()).read_only(true))?;
//!
//! // A FUSE_INIT from a Linux 6.x kernel: protocol 7.38, 1 MiB readahead, all features offered.
//! let mut init = Vec::new();
//! let body: Vec<u8> = [7u32, 38, 1 << 20, u32::MAX].iter().flat_map(|v| v.to_ne_bytes()).chain([0; 48]).collect();
//! InHeader { len: 40 + body.len() as u32, opcode: opcode::INIT, unique: 1, nodeid: 0, uid: 0, gid: 0, pid: 0, total_extlen: 0 }
//!     .encode(&mut init);
//! init.extend_from_slice(&body);
//!
//! let mut reply = Vec::new();
//! assert_eq!(server.handle(&init, &mut reply), Outcome::Reply);
//! let session = server.session().expect("negotiated");
//! assert_eq!(session.max_write, 1 << 20);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! To mount it on the host (root needed): see `examples/mount.rs` and [`HostMount::mount`].
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod abi;
mod confine;
mod handle;
pub mod host_fuse;
pub mod idmap;
pub mod init;
mod inode;
pub mod request;
mod server;
mod sys;
pub mod virtio;
mod wire;

pub use host_fuse::{FuseHandler, HostMount, MountError, MountMethod, MountOptions};
pub use idmap::IdMapping;
pub use request::{DecodeError, Operation, Request};
pub use server::{
    CachePolicy, FileServer, Outcome, ServerError, ServerStats, ShareConfig, frame_reply,
};
pub use virtio::{ChainError, VirtioFsQueueHandler};
