//! Error types, one per operation area: configuring, starting, running.

use std::path::PathBuf;

/// Why a [`crate::VmBuilder`] rejected the configuration. Every variant says what to change.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// `/dev/kvm` does not exist.
    #[error(
        "{path} does not exist: KVM is not available on this host; enable virtualization in the firmware and load the \
         kvm module (`modprobe kvm_intel` or `modprobe kvm_amd`), or run on a host or VM type with nested virtualization"
    )]
    KvmMissing {
        /// The device path that was checked.
        path: PathBuf,
    },
    /// `/dev/kvm` exists but cannot be opened read-write.
    #[error(
        "cannot open {path} read-write ({source}): add your user to the group that owns it \
         (`sudo usermod -aG kvm $USER`, then log in again) or grant access with `sudo setfacl -m u:$USER:rw {path}`"
    )]
    KvmPermission {
        /// The device path.
        path: PathBuf,
        /// The error from `open`.
        source: std::io::Error,
    },
    /// `/dev/kvm` opened but the KVM API is unusable.
    #[error("KVM at {path} is unusable: {reason}")]
    KvmUnusable {
        /// The device path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// No kernel was given.
    #[error(
        "no kernel image configured: call VmBuilder::kernel(PATH) (build one with `cargo xtask guest-kernel`)"
    )]
    KernelNotSet,
    /// The kernel file cannot be read.
    #[error("kernel image {path}: {source}")]
    KernelUnreadable {
        /// The kernel path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The kernel file is neither an ELF vmlinux nor a bzImage.
    #[error(
        "{path} is not a Linux kernel: expected an uncompressed x86_64 ELF vmlinux or a bzImage ({detail}); build one \
         with `cargo xtask guest-kernel`"
    )]
    NotAKernel {
        /// The kernel path.
        path: PathBuf,
        /// What was found instead.
        detail: String,
    },
    /// The initrd file cannot be read.
    #[error("initrd {path}: {source}")]
    InitrdUnreadable {
        /// The initrd path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Memory below the minimum.
    #[error("memory size {mib} MiB is too small: a microVM needs at least {min} MiB")]
    MemoryTooSmall {
        /// Requested size.
        mib: u64,
        /// The minimum.
        min: u64,
    },
    /// Memory larger than the host has.
    #[error("memory size {mib} MiB is larger than this host's {host_mib} MiB of RAM; ask for less")]
    MemoryTooLarge {
        /// Requested size.
        mib: u64,
        /// Host RAM.
        host_mib: u64,
    },
    /// vCPU count out of range.
    #[error("vcpu count {count} is out of range: use 1..={max}")]
    BadVcpuCount {
        /// Requested count.
        count: u8,
        /// The maximum supported.
        max: u8,
    },
    /// The kernel command line is invalid.
    #[error("kernel command line {cmdline:?} is invalid: {reason}")]
    BadCmdline {
        /// The offending command line (or fragment).
        cmdline: String,
        /// Why.
        reason: String,
    },
    /// A disk image cannot be opened.
    #[error("disk image {path}: {source}")]
    DiskUnusable {
        /// The image path.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A disk image's size is not a multiple of 512 bytes.
    #[error(
        "disk image {path} is {size} bytes, not a multiple of 512; resize it (e.g. `truncate -s 64M {path}`)"
    )]
    DiskSize {
        /// The image path.
        path: PathBuf,
        /// Its size.
        size: u64,
    },
    /// The vsock configuration is invalid.
    #[error("vsock: {reason}")]
    BadVsock {
        /// Why.
        reason: String,
    },
    /// Too many virtio devices for the MMIO window / interrupt lines.
    #[error("too many virtio devices ({count}); at most {max} are supported")]
    TooManyDevices {
        /// Requested.
        count: usize,
        /// Maximum.
        max: usize,
    },
}

/// Why a configured VM could not be started.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// A KVM ioctl failed during setup.
    #[error("KVM setup failed at {step}: {source}")]
    Kvm {
        /// The setup step.
        step: &'static str,
        /// The KVM error.
        source: kvm_ioctls::Error,
    },
    /// Guest memory could not be allocated.
    #[error("cannot allocate {mib} MiB of guest memory: {reason}")]
    Memory {
        /// Size asked for.
        mib: u64,
        /// Why.
        reason: String,
    },
    /// The kernel could not be loaded into guest memory.
    #[error("loading kernel {path}: {reason}")]
    KernelLoad {
        /// The kernel path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The initrd could not be loaded.
    #[error("loading initrd {path}: {reason}")]
    InitrdLoad {
        /// The initrd path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// Writing boot structures (boot_params, page tables, MP table, ...) failed.
    #[error("writing boot structures ({what}): {reason}")]
    BootSetup {
        /// Which structure.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// A device could not be created.
    #[error("creating device {device}: {reason}")]
    Device {
        /// The device.
        device: String,
        /// Why.
        reason: String,
    },
    /// A thread could not be spawned, or an eventfd/signal setup failed.
    #[error("{what}: {source}")]
    Os {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

/// Why waiting for a running VM failed (as opposed to how the guest ended, which is an [`crate::ExitReason`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RunError {
    /// A VMM thread panicked (a bug in sbx-vmm).
    #[error("the VMM thread `{thread}` panicked")]
    ThreadPanicked {
        /// The thread's name.
        thread: String,
    },
}
