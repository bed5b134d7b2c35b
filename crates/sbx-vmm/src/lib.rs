//! A small KVM microVM monitor for sbx sandboxes, built on the rust-vmm crates.
//!
//! Status: planned. It will boot a Linux guest on KVM with a serial console, i8042, virtio-mmio block, vsock and rng devices and a boot timer.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
