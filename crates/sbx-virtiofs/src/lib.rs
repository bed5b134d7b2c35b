//! A confined FUSE passthrough file server and its virtio-fs framing, for sharing a host workspace into sbx microVMs.
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

pub use host_fuse::{HostMount, MountError, MountOptions};
pub use idmap::IdMapping;
pub use request::{DecodeError, Operation, Request};
pub use server::{CachePolicy, FileServer, Outcome, ServerError, ServerStats, ShareConfig};
pub use virtio::{ChainError, VirtioFsQueueHandler};
