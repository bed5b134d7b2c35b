//! A small KVM microVM monitor for sbx sandboxes, built on the rust-vmm crates.
//!
//! sbx-vmm boots a Linux guest on KVM with a 16550 serial console, an i8042 (guest reboot ends the VM), virtio-mmio
//! block, vsock, rng and virtio-fs (host directories shared through `sbx-virtiofs`'s confined FUSE server) devices and
//! a boot timer. It is a library: the embedding program describes the machine with
//! [`VmBuilder`], which validates everything up front (KVM access, kernel image, memory size, command line, disk
//! files) and reports problems with the fix, then [`Vm::start`] boots it and [`Vm::wait`] returns how it ended.
//!
//! ```no_run
//! use sbx_vmm::{SerialOutput, VmBuilder, Vm};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = VmBuilder::new()
//!     .kernel("/path/to/vmlinux")
//!     .cmdline("console=ttyS0 reboot=k panic=-1")
//!     .memory_mib(256)
//!     .vcpus(2)
//!     .serial(SerialOutput::Stdout)
//!     .disk("/path/to/rootfs.ext4", true)
//!     .vsock(3, "/tmp/sbx.vsock")
//!     .shared_dir("/home/me/project", "workspace", false) // guest: mount -t virtiofs workspace /workspace
//!     .build()?;
//! let vm = Vm::start(config)?;
//! let handle = vm.handle(); // clone it to another thread to stop the VM on request
//! let exit = vm.wait()?;
//! println!("guest ended: {exit}");
//! # drop(handle);
//! # Ok(())
//! # }
//! ```
//!
//! # Devices from other crates
//!
//! The virtio-mmio transport drives any [`devices::virtio::VirtioDevice`]; another crate implements that trait and
//! adds its device with [`VmBuilder::virtio_device`]. See the trait's documentation for the contract. (virtio-fs is
//! built in: [`VmBuilder::shared_dir`] wraps `sbx-virtiofs`'s server in [`devices::virtio::fs::VirtioFs`].)
//!
//! # Unsafe code
//!
//! The crate denies `unsafe_code`; the few modules that talk to KVM or to signals allow it locally, and every block
//! carries a `// SAFETY:` comment naming the invariant it relies on.
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod arch;
mod builder;
mod control;
pub mod devices;
mod error;
mod runtime;
mod sys;
pub mod vstate;

pub use arch::BootProtocol;
pub use builder::{
    DEFAULT_CMDLINE, DiskConfig, KvmFlavor, MAX_VCPUS, MIN_MEMORY_MIB, SerialInput, SerialOutput,
    SharedDirConfig, SharedWriter, VmBuilder, VmConfig, VsockConfig, kvm_hardware_virtualization,
};
pub use error::{ConfigError, RunError, StartError};
pub use runtime::{ExitReason, StartupReport, Vm, VmHandle};
/// The file server behind [`VmBuilder::shared_dir`], re-exported so its settings match this crate's version.
pub use sbx_virtiofs;

/// The kernel configuration fragment a guest kernel for this VMM needs (virtio-mmio devices on the command line,
/// virtio-blk/-vsock/-fs, the serial console, no modules): applied on top of `make tinyconfig`. Kept here, next to the
/// devices that need it, and embedded so that builders in other crates (sbx-microvm's guest-kernel build) and the
/// published crate carry the same text.
pub const GUEST_KERNEL_CONFIG: &str = include_str!("../guest/kernel.config");
