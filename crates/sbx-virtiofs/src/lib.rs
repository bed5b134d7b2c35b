//! A confined FUSE passthrough file server and its virtio-fs framing for sbx microVMs.
//!
//! Status: planned. It will serve one host directory to a guest over virtio-fs, resolving every path beneath the shared root.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
