//! The microVM backend of sbx: one sandbox, one KVM microVM running the `sbx-guest` agent.
//!
//! [`MicroVmConfig`] describes a sandbox (guest kernel, the template's ext4 image, the static agent, its state
//! directory, workspaces, vCPUs, memory); [`MicroVm::start`] turns it into an [`sbx_vmm`] machine and boots it:
//!
//! * **root**: the template image is the first virtio-blk disk, attached read-only; a sparse per-sandbox state disk
//!   ([`state_disk`], created on the first start and kept across stop/start) is the second. The agent, PID 1 from a
//!   small [`initramfs`], mounts them as an overlay (template below, state above) and switches into it.
//! * **workspaces**: virtio-fs shares (tags `ws0`, `ws1`, ...) that the agent mounts at the same absolute path,
//!   read-only where asked.
//! * **exec**: the agent listens on vsock port [`sbx_proto::VSOCK_AGENT_PORT`]; the host reaches it through the VMM's
//!   hybrid-vsock socket (`CONNECT 1024`), and [`MicroVm::connect`] speaks the sbx-proto protocol over that stream.
//! * **egress**: the agent's forwarder (`127.0.0.1:3128` inside) connects to host port
//!   [`sbx_proto::VSOCK_EGRESS_PORT`], which the VMM connects to the Unix socket
//!   [`MicroVmConfig::egress_socket_path`]: the sandbox's egress proxy listens there.
//! * **stop**: [`MicroVm::stop`] asks the agent to stop everything, sync and power off, and reports how the VM
//!   ended.
//!
//! * **guest kernel**: [`guest_kernel`] finds, checks and builds (from Debian's `linux-source`) the kernel the VM
//!   boots, cached in `~/.cache/sbx/guest-kernel`; `sbx` builds it on the first microVM start, `cargo xtask
//!   guest-kernel` and `cargo xtask ci` through the same code.
//!
//! Booting needs hardware virtualization (`kvm_intel`/`kvm_amd`); see [`sbx_vmm::kvm_hardware_virtualization`].
//!
//! ```no_run
//! use sbx_microvm::{MicroVm, MicroVmConfig, Workspace};
//!
//! let mut config = MicroVmConfig::new("demo", "/home/me/.cache/sbx/guest-kernel/vmlinux",
//!     "/home/me/.local/state/sbx/templates/default/rootfs.ext4", "/usr/libexec/sbx/sbx-guest",
//!     "/home/me/.local/state/sbx/sandboxes/demo/vm");
//! config.workspaces.push(Workspace { path: "/home/me/project".into(), read_only: false });
//! println!("start the egress proxy on {}", config.egress_socket_path().display());
//! let vm = MicroVm::start(config, sbx_microvm::READY_TIMEOUT)?;
//! let out = vm.connect()?.run(&["sh", "-c", "id; cat /proc/cmdline"])?;
//! print!("{}", out.stdout_text());
//! println!("ended: {}", vm.stop(std::time::Duration::from_secs(10)));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod config;
mod error;
pub mod guest_kernel;
pub mod initramfs;
pub mod state_disk;
mod vm;
pub mod vsock;

pub use config::{
    BASE_CMDLINE, DEFAULT_STATE_DISK_BYTES, MicroVmConfig, ROOT_DEVICE, STATE_DEVICE, Workspace,
};
pub use error::MicroVmError;
pub use sbx_vmm::{ExitReason, KvmFlavor, StartupReport, kvm_hardware_virtualization};
pub use vm::{MicroVm, READY_TIMEOUT, connect_agent};

/// Whether this host can boot a microVM to userspace (hardware virtualization: `kvm_intel` or `kvm_amd`).
pub fn hardware_virtualization() -> bool {
    matches!(
        kvm_hardware_virtualization(),
        KvmFlavor::Intel | KvmFlavor::Amd
    )
}
