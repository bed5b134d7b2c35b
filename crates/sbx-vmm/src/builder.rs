//! The VM configuration: a builder that validates everything before any KVM state exists.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sbx_virtiofs::virtio::config_space;
use sbx_virtiofs::{FileServer, ShareConfig};

use crate::arch::x86_64::elf::ElfKernel;
use crate::arch::{BootProtocol, layout};
use crate::devices::virtio::VirtioDevice;
use crate::error::ConfigError;

/// Smallest guest memory accepted, in MiB (the boot structures and a tiny kernel fit well within it).
pub const MIN_MEMORY_MIB: u64 = 16;
/// Largest vCPU count (the MP table and the 8-bit APIC IDs allow more, but a sandbox never needs it).
pub const MAX_VCPUS: u8 = 32;
/// Default kernel command line when none is given.
pub const DEFAULT_CMDLINE: &str = "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux";

/// A writer shared with the embedding program (e.g. a socket or a pipe to a log collector).
pub type SharedWriter = Arc<Mutex<dyn std::io::Write + Send>>;

/// Where the guest's serial console output goes.
#[derive(Clone, Default)]
pub enum SerialOutput {
    /// Discard it.
    #[default]
    Sink,
    /// This process's standard output.
    Stdout,
    /// Append to this file (created when missing).
    File(PathBuf),
    /// A shared in-memory buffer (used by tests and by embedders that parse the console).
    Buffer(Arc<Mutex<Vec<u8>>>),
    /// Any stream the embedder provides.
    Writer(SharedWriter),
}

impl std::fmt::Debug for SerialOutput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sink => f.write_str("Sink"),
            Self::Stdout => f.write_str("Stdout"),
            Self::File(p) => f.debug_tuple("File").field(p).finish(),
            Self::Buffer(_) => f.write_str("Buffer"),
            Self::Writer(_) => f.write_str("Writer"),
        }
    }
}

/// Input for the guest's serial console (e.g. stdin), read by a VMM thread.
pub struct SerialInput(pub(crate) Box<dyn std::io::Read + Send>);

impl std::fmt::Debug for SerialInput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SerialInput")
    }
}

/// A virtio-blk disk backed by a raw image file.
#[derive(Debug, Clone)]
pub struct DiskConfig {
    /// Path of the raw image.
    pub path: PathBuf,
    /// Whether the guest may only read it.
    pub read_only: bool,
}

/// The virtio-vsock device and its host-side Unix socket (Firecracker's hybrid vsock convention).
#[derive(Debug, Clone)]
pub struct VsockConfig {
    /// The guest's context ID (3 or more).
    pub guest_cid: u32,
    /// Host-initiated connections: connect here and send `CONNECT <port>\n`. Guest-initiated connections to port P
    /// land on a listener at `<uds_path>_<P>`.
    pub uds_path: PathBuf,
}

/// A host directory shared with the guest over virtio-fs.
#[derive(Debug, Clone)]
pub struct SharedDirConfig {
    /// The host directory, read-only flag, owner mapping and cache policy.
    pub share: ShareConfig,
    /// The mount tag the guest names it by (`mount -t virtiofs <tag> <dir>`): 1 to 36 bytes, no NUL.
    pub tag: String,
}

/// A validated VM configuration, produced by [`VmBuilder::build`].
#[derive(Debug)]
pub struct VmConfig {
    pub(crate) kvm: kvm_ioctls::Kvm,
    pub(crate) kernel_path: PathBuf,
    pub(crate) kernel: File,
    /// The parsed headers when the kernel is an ELF vmlinux.
    pub(crate) kernel_elf: Option<ElfKernel>,
    pub(crate) initrd: Option<(PathBuf, File)>,
    pub(crate) cmdline: String,
    pub(crate) memory_mib: u64,
    pub(crate) vcpus: u8,
    pub(crate) serial: SerialOutput,
    pub(crate) serial_input: Option<SerialInput>,
    pub(crate) disks: Vec<(DiskConfig, File)>,
    pub(crate) vsock: Option<VsockConfig>,
    pub(crate) rng: bool,
    pub(crate) shared_dirs: Vec<(SharedDirConfig, Arc<FileServer>)>,
    pub(crate) extra_devices: Vec<NamedDevice>,
    pub(crate) handle_signals: bool,
    pub(crate) boot_protocol: BootProtocol,
}

impl VmConfig {
    /// The kernel command line the guest will get, before the VMM appends its `virtio_mmio.device=` entries.
    pub fn cmdline(&self) -> &str {
        &self.cmdline
    }
    /// Guest memory in MiB.
    pub fn memory_mib(&self) -> u64 {
        self.memory_mib
    }
    /// Number of vCPUs.
    pub fn vcpus(&self) -> u8 {
        self.vcpus
    }
}

/// A virtio device supplied by another crate, with a name for error messages.
pub(crate) struct NamedDevice {
    pub(crate) name: String,
    pub(crate) device: Box<dyn VirtioDevice>,
}

impl std::fmt::Debug for NamedDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NamedDevice")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Describes a microVM; [`VmBuilder::build`] validates it into a [`VmConfig`].
#[derive(Debug)]
pub struct VmBuilder {
    kvm_path: PathBuf,
    kernel: Option<PathBuf>,
    initrd: Option<PathBuf>,
    cmdline: String,
    memory_mib: u64,
    vcpus: u8,
    serial: SerialOutput,
    serial_input: Option<SerialInput>,
    disks: Vec<DiskConfig>,
    vsock: Option<VsockConfig>,
    rng: bool,
    shared_dirs: Vec<SharedDirConfig>,
    extra_devices: Vec<NamedDevice>,
    handle_signals: bool,
    boot_protocol: BootProtocol,
}

impl Default for VmBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl VmBuilder {
    /// A builder with 1 vCPU, 128 MiB, [`DEFAULT_CMDLINE`], no devices besides the console.
    pub fn new() -> Self {
        Self {
            kvm_path: PathBuf::from("/dev/kvm"),
            kernel: None,
            initrd: None,
            cmdline: DEFAULT_CMDLINE.to_string(),
            memory_mib: 128,
            vcpus: 1,
            serial: SerialOutput::Sink,
            serial_input: None,
            disks: Vec::new(),
            vsock: None,
            rng: false,
            shared_dirs: Vec::new(),
            extra_devices: Vec::new(),
            handle_signals: false,
            boot_protocol: BootProtocol::Auto,
        }
    }
    /// The boot protocol (default [`BootProtocol::Auto`]: PVH when the vmlinux has a PVH note).
    pub fn boot_protocol(mut self, protocol: BootProtocol) -> Self {
        self.boot_protocol = protocol;
        self
    }
    /// Use another KVM device node (default `/dev/kvm`).
    pub fn kvm_device(mut self, path: impl Into<PathBuf>) -> Self {
        self.kvm_path = path.into();
        self
    }
    /// The kernel: an uncompressed ELF `vmlinux` (preferred) or a bzImage.
    pub fn kernel(mut self, path: impl Into<PathBuf>) -> Self {
        self.kernel = Some(path.into());
        self
    }
    /// An initial ramdisk.
    pub fn initrd(mut self, path: impl Into<PathBuf>) -> Self {
        self.initrd = Some(path.into());
        self
    }
    /// The kernel command line (replaces [`DEFAULT_CMDLINE`]).
    pub fn cmdline(mut self, cmdline: impl Into<String>) -> Self {
        self.cmdline = cmdline.into();
        self
    }
    /// Guest memory size in MiB.
    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }
    /// Number of vCPUs.
    pub fn vcpus(mut self, count: u8) -> Self {
        self.vcpus = count;
        self
    }
    /// Where the serial console goes.
    pub fn serial(mut self, output: SerialOutput) -> Self {
        self.serial = output;
        self
    }
    /// Feeds `input` to the guest's serial console (a thread reads it until end of file).
    pub fn serial_input(mut self, input: impl std::io::Read + Send + 'static) -> Self {
        self.serial_input = Some(SerialInput(Box::new(input)));
        self
    }
    /// Adds a virtio-blk disk (the first one is `/dev/vda`).
    pub fn disk(mut self, path: impl Into<PathBuf>, read_only: bool) -> Self {
        self.disks.push(DiskConfig {
            path: path.into(),
            read_only,
        });
        self
    }
    /// Adds the virtio-vsock device with its host Unix socket.
    pub fn vsock(mut self, guest_cid: u32, uds_path: impl Into<PathBuf>) -> Self {
        self.vsock = Some(VsockConfig {
            guest_cid,
            uds_path: uds_path.into(),
        });
        self
    }
    /// Adds the virtio-rng device (entropy from the host's `getrandom`).
    pub fn rng(mut self, enabled: bool) -> Self {
        self.rng = enabled;
        self
    }
    /// Shares the host directory `host_path` with the guest over virtio-fs under the mount tag `tag`; the guest mounts
    /// it with `mount -t virtiofs <tag> <dir>`. The share is confined to `host_path` (no `..`, no symlink escapes, no
    /// device nodes or setuid bits), and a `read_only` share answers every write with `EROFS`.
    pub fn shared_dir(
        self,
        host_path: impl Into<PathBuf>,
        tag: impl Into<String>,
        read_only: bool,
    ) -> Self {
        self.shared_dir_with(ShareConfig::new(host_path).read_only(read_only), tag)
    }
    /// Like [`VmBuilder::shared_dir`] with every server setting: e.g. an [`sbx_virtiofs::IdMapping`] so files the
    /// guest's root creates belong to the host user, or a different [`sbx_virtiofs::CachePolicy`].
    pub fn shared_dir_with(mut self, share: ShareConfig, tag: impl Into<String>) -> Self {
        self.shared_dirs.push(SharedDirConfig {
            share,
            tag: tag.into(),
        });
        self
    }
    /// Adds a virtio device implemented elsewhere (e.g. virtio-fs from `sbx-virtiofs`).
    pub fn virtio_device(mut self, name: impl Into<String>, device: Box<dyn VirtioDevice>) -> Self {
        self.extra_devices.push(NamedDevice {
            name: name.into(),
            device,
        });
        self
    }
    /// Stop the VM cleanly on SIGTERM/SIGINT (process-wide handlers; for programs that run one VM).
    pub fn handle_signals(mut self, enabled: bool) -> Self {
        self.handle_signals = enabled;
        self
    }

    /// Validates the configuration: KVM access, the kernel image, memory, vCPUs, the command line, disks, vsock.
    pub fn build(self) -> Result<VmConfig, ConfigError> {
        let kvm = open_kvm(&self.kvm_path)?;
        let kernel_path = self.kernel.clone().ok_or(ConfigError::KernelNotSet)?;
        let (kernel, kernel_elf) = open_kernel(&kernel_path)?;
        let initrd = match &self.initrd {
            Some(path) => Some((
                path.clone(),
                File::open(path).map_err(|source| ConfigError::InitrdUnreadable {
                    path: path.clone(),
                    source,
                })?,
            )),
            None => None,
        };
        check_memory(self.memory_mib)?;
        if self.vcpus == 0 || self.vcpus > MAX_VCPUS {
            return Err(ConfigError::BadVcpuCount {
                count: self.vcpus,
                max: MAX_VCPUS,
            });
        }
        check_cmdline(&self.cmdline)?;
        let disks = self
            .disks
            .into_iter()
            .map(|disk| open_disk(&disk).map(|file| (disk, file)))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(vsock) = &self.vsock {
            check_vsock(vsock)?;
        }
        let shared_dirs = open_shared_dirs(self.shared_dirs)?;
        let count = disks.len()
            + shared_dirs.len()
            + usize::from(self.vsock.is_some())
            + usize::from(self.rng)
            + self.extra_devices.len();
        if count > layout::MAX_VIRTIO_DEVICES {
            return Err(ConfigError::TooManyDevices {
                count,
                max: layout::MAX_VIRTIO_DEVICES,
            });
        }
        Ok(VmConfig {
            kvm,
            kernel_path,
            kernel,
            kernel_elf,
            initrd,
            cmdline: self.cmdline,
            memory_mib: self.memory_mib,
            vcpus: self.vcpus,
            serial: self.serial,
            serial_input: self.serial_input,
            disks,
            vsock: self.vsock,
            rng: self.rng,
            shared_dirs,
            extra_devices: self.extra_devices,
            handle_signals: self.handle_signals,
            boot_protocol: self.boot_protocol,
        })
    }
}

fn open_kvm(path: &Path) -> Result<kvm_ioctls::Kvm, ConfigError> {
    if !path.exists() {
        return Err(ConfigError::KvmMissing {
            path: path.to_path_buf(),
        });
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|source| ConfigError::KvmPermission {
            path: path.to_path_buf(),
            source,
        })?;
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| {
        ConfigError::KvmUnusable {
            path: path.to_path_buf(),
            reason: "the path contains a NUL byte".into(),
        }
    })?;
    let kvm = kvm_ioctls::Kvm::new_with_path(c_path).map_err(|e| ConfigError::KvmUnusable {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if kvm.get_api_version() != 12 {
        return Err(ConfigError::KvmUnusable {
            path: path.to_path_buf(),
            reason: format!("KVM API version {} (expected 12)", kvm.get_api_version()),
        });
    }
    for (cap, name) in [
        (kvm_ioctls::Cap::Irqchip, "in-kernel irqchip"),
        (kvm_ioctls::Cap::Ioeventfd, "ioeventfd"),
        (kvm_ioctls::Cap::Irqfd, "irqfd"),
        (kvm_ioctls::Cap::UserMemory, "user memory"),
    ] {
        if !kvm.check_extension(cap) {
            return Err(ConfigError::KvmUnusable {
                path: path.to_path_buf(),
                reason: format!("the KVM capability `{name}` is missing"),
            });
        }
    }
    Ok(kvm)
}

/// Opens the kernel and checks it is an x86_64 ELF or a bzImage (magic "HdrS" at 0x202). An ELF's headers are
/// validated and parsed here, once, so that a broken vmlinux is reported before anything starts and `Vm::start`
/// does not read them again.
fn open_kernel(path: &Path) -> Result<(File, Option<ElfKernel>), ConfigError> {
    let unreadable = |source| ConfigError::KernelUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(unreadable)?;
    let mut head = [0u8; 0x206];
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..]).map_err(unreadable)? {
            0 => break,
            n => filled += n,
        }
    }
    let not_kernel = |detail: &str| ConfigError::NotAKernel {
        path: path.to_path_buf(),
        detail: detail.to_string(),
    };
    match kernel_kind(&head[..filled]) {
        Ok(KernelKind::Elf) => {
            let len = file.metadata().map_err(unreadable)?.len();
            let elf = crate::arch::x86_64::elf::parse(&file, len).map_err(|d| not_kernel(&d))?;
            Ok((file, Some(elf)))
        }
        Ok(KernelKind::BzImage) => Ok((file, None)),
        Err(detail) => Err(not_kernel(&detail)),
    }
}

/// The kind of kernel image, or why the bytes are not one.
pub(crate) fn kernel_kind(head: &[u8]) -> Result<KernelKind, String> {
    if head.starts_with(b"\x7fELF") {
        // EI_CLASS 2 = 64-bit, e_machine 62 = x86_64.
        if head.get(4) != Some(&2) {
            return Err("a 32-bit ELF file".into());
        }
        let machine = head.get(18..20).map(|b| u16::from_le_bytes([b[0], b[1]]));
        if machine != Some(62) {
            return Err(format!(
                "an ELF file for machine {machine:?}, not x86_64 (62)"
            ));
        }
        return Ok(KernelKind::Elf);
    }
    if head.get(0x202..0x206) == Some(b"HdrS") {
        return Ok(KernelKind::BzImage);
    }
    if head.is_empty() {
        return Err("the file is empty".into());
    }
    Err("neither an ELF header nor the bzImage `HdrS` signature".into())
}

/// Kernel image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KernelKind {
    Elf,
    BzImage,
}

fn check_memory(mib: u64) -> Result<(), ConfigError> {
    if mib < MIN_MEMORY_MIB {
        return Err(ConfigError::MemoryTooSmall {
            mib,
            min: MIN_MEMORY_MIB,
        });
    }
    if let Some(host_mib) = host_memory_mib()
        && mib > host_mib
    {
        return Err(ConfigError::MemoryTooLarge { mib, host_mib });
    }
    Ok(())
}

/// Total host RAM from `/proc/meminfo`.
fn host_memory_mib() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024)
}

fn check_cmdline(cmdline: &str) -> Result<(), ConfigError> {
    let bad = |reason: String| ConfigError::BadCmdline {
        cmdline: cmdline.to_string(),
        reason,
    };
    if cmdline.contains('\0') {
        return Err(bad("it contains a NUL byte".into()));
    }
    if let Some(c) = cmdline
        .chars()
        .find(|c| !c.is_ascii() || (c.is_ascii_control() && *c != '\t'))
    {
        return Err(bad(format!(
            "it contains {c:?}; the kernel command line must be printable ASCII"
        )));
    }
    // Leave room for the virtio_mmio.device= entries the VMM appends.
    let budget = layout::CMDLINE_MAX_SIZE - 1024;
    if cmdline.len() > budget {
        return Err(bad(format!(
            "it is {} bytes; at most {budget} are allowed",
            cmdline.len()
        )));
    }
    linux_loader::cmdline::Cmdline::try_from(cmdline, layout::CMDLINE_MAX_SIZE)
        .map_err(|e| bad(e.to_string()))?;
    if cmdline.contains("virtio_mmio.device=") {
        return Err(bad(
            "it names virtio_mmio.device= itself; the VMM adds those entries for its devices"
                .into(),
        ));
    }
    Ok(())
}

/// Checks each share's tag (valid, unique) and opens its file server, so a bad share fails before any KVM state.
fn open_shared_dirs(
    shares: Vec<SharedDirConfig>,
) -> Result<Vec<(SharedDirConfig, Arc<FileServer>)>, ConfigError> {
    let mut out: Vec<(SharedDirConfig, Arc<FileServer>)> = Vec::with_capacity(shares.len());
    for share in shares {
        let err = |reason: String| ConfigError::BadSharedDir {
            path: share.share.root.clone(),
            tag: share.tag.clone(),
            reason,
        };
        config_space(&share.tag, 1).map_err(|e| err(e.to_string()))?;
        if out.iter().any(|(s, _)| s.tag == share.tag) {
            return Err(err(
                "another shared directory already uses this tag; give each share its own".into(),
            ));
        }
        let server = FileServer::new(share.share.clone()).map_err(|e| err(e.to_string()))?;
        out.push((share, Arc::new(server)));
    }
    Ok(out)
}

fn open_disk(disk: &DiskConfig) -> Result<File, ConfigError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!disk.read_only)
        .open(&disk.path)
        .map_err(|source| ConfigError::DiskUnusable {
            path: disk.path.clone(),
            source,
        })?;
    let size = file
        .metadata()
        .map_err(|source| ConfigError::DiskUnusable {
            path: disk.path.clone(),
            source,
        })?
        .len();
    if size % 512 != 0 {
        return Err(ConfigError::DiskSize {
            path: disk.path.clone(),
            size,
        });
    }
    Ok(file)
}

fn check_vsock(vsock: &VsockConfig) -> Result<(), ConfigError> {
    if vsock.guest_cid < 3 {
        return Err(ConfigError::BadVsock {
            reason: format!(
                "guest CID {} is reserved (0-2 are the hypervisor, local and host); use 3 or more",
                vsock.guest_cid
            ),
        });
    }
    // sun_path holds 108 bytes; `<path>_<port>` must fit too.
    let len = vsock.uds_path.as_os_str().len();
    if len + 11 >= 108 {
        return Err(ConfigError::BadVsock {
            reason: format!(
                "socket path {} is {len} bytes; Unix socket paths (plus `_<port>`) must stay under 97 bytes",
                vsock.uds_path.display()
            ),
        });
    }
    match vsock.uds_path.parent() {
        Some(parent) if parent.as_os_str().is_empty() || parent.is_dir() => Ok(()),
        _ => Err(ConfigError::BadVsock {
            reason: format!(
                "the directory of socket path {} does not exist",
                vsock.uds_path.display()
            ),
        }),
    }
}

/// Which KVM implementation the host runs: the vendor module in `/sys/module`, confirmed by the CPU feature flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmFlavor {
    /// Hardware virtualization: Intel VMX (`kvm_intel`).
    Intel,
    /// Hardware virtualization: AMD SVM (`kvm_amd`).
    Amd,
    /// PVM (`kvm_pvm`): guests that are not PVM-enabled run under KVM's instruction emulator.
    Pvm,
    /// No known KVM vendor module is loaded.
    Unknown,
}

/// Detects the KVM flavour: hardware virtualization ([`KvmFlavor::Intel`] or [`KvmFlavor::Amd`]) needs both the
/// vendor module (`/sys/module/kvm_intel` or `kvm_amd`) and the CPU feature (`vmx` or `svm` in `/proc/cpuinfo`);
/// `kvm_pvm` means [`KvmFlavor::Pvm`].
pub fn kvm_hardware_virtualization() -> KvmFlavor {
    let loaded = |m: &str| Path::new("/sys/module").join(m).exists();
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    classify_kvm(
        loaded("kvm_intel"),
        loaded("kvm_amd"),
        loaded("kvm_pvm"),
        &cpuinfo,
    )
}

fn classify_kvm(intel: bool, amd: bool, pvm: bool, cpuinfo: &str) -> KvmFlavor {
    let has_flag = |flag: &str| {
        cpuinfo
            .lines()
            .filter(|l| l.starts_with("flags"))
            .any(|l| l.split_whitespace().any(|f| f == flag))
    };
    if intel && has_flag("vmx") {
        KvmFlavor::Intel
    } else if amd && has_flag("svm") {
        KvmFlavor::Amd
    } else if pvm {
        KvmFlavor::Pvm
    } else {
        KvmFlavor::Unknown
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kvm_flavor_needs_module_and_cpu_feature() {
        let vmx = "processor\t: 0\nflags\t\t: fpu vme vmx sse\n";
        let svm = "flags\t\t: fpu svm\n";
        let none = "flags\t\t: fpu hypervisor\n";
        assert_eq!(classify_kvm(true, false, false, vmx), KvmFlavor::Intel);
        assert_eq!(classify_kvm(false, true, false, svm), KvmFlavor::Amd);
        assert_eq!(classify_kvm(true, false, false, none), KvmFlavor::Unknown);
        assert_eq!(classify_kvm(true, false, true, none), KvmFlavor::Pvm);
        assert_eq!(classify_kvm(false, false, true, none), KvmFlavor::Pvm);
        assert_eq!(classify_kvm(false, false, false, vmx), KvmFlavor::Unknown);
    }

    #[test]
    fn kernel_kind_recognises_elf_and_bzimage() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[18] = 62;
        assert_eq!(kernel_kind(&elf), Ok(KernelKind::Elf));
        elf[4] = 1;
        assert!(kernel_kind(&elf).unwrap_err().contains("32-bit"));
        let mut bz = vec![0u8; 0x206];
        bz[0x202..0x206].copy_from_slice(b"HdrS");
        assert_eq!(kernel_kind(&bz), Ok(KernelKind::BzImage));
        assert!(kernel_kind(b"#!/bin/sh\n").unwrap_err().contains("neither"));
        assert!(kernel_kind(b"").unwrap_err().contains("empty"));
    }

    #[test]
    fn cmdline_validation_names_the_problem() {
        assert!(check_cmdline("console=ttyS0 reboot=k").is_ok());
        let err = check_cmdline("console=ttyS0\0").unwrap_err().to_string();
        assert!(err.contains("NUL"), "{err}");
        let err = check_cmdline(&"a".repeat(5000)).unwrap_err().to_string();
        assert!(err.contains("bytes"), "{err}");
        let err = check_cmdline("init=/bin/sh virtio_mmio.device=4K@0x1000:5")
            .unwrap_err()
            .to_string();
        assert!(err.contains("virtio_mmio.device="), "{err}");
        let err = check_cmdline("caf\u{e9}=1").unwrap_err().to_string();
        assert!(err.contains("printable ASCII"), "{err}");
        let err = check_cmdline("a=1\nb=2").unwrap_err().to_string();
        assert!(err.contains("printable ASCII"), "{err}");
    }

    #[test]
    fn memory_bounds() {
        assert!(matches!(
            check_memory(1),
            Err(ConfigError::MemoryTooSmall { .. })
        ));
        assert!(matches!(
            check_memory(1 << 40),
            Err(ConfigError::MemoryTooLarge { .. })
        ));
        assert!(check_memory(64).is_ok());
    }

    #[test]
    fn vsock_validation() {
        let ok = VsockConfig {
            guest_cid: 3,
            uds_path: std::env::temp_dir().join("v.sock"),
        };
        assert!(check_vsock(&ok).is_ok());
        let low_cid = VsockConfig {
            guest_cid: 2,
            ..ok.clone()
        };
        assert!(
            check_vsock(&low_cid)
                .unwrap_err()
                .to_string()
                .contains("reserved")
        );
        let long = VsockConfig {
            uds_path: PathBuf::from(format!("/tmp/{}", "x".repeat(120))),
            ..ok.clone()
        };
        assert!(
            check_vsock(&long)
                .unwrap_err()
                .to_string()
                .contains("under 97")
        );
        let missing_dir = VsockConfig {
            uds_path: PathBuf::from("/nonexistent-sbx-dir/v.sock"),
            ..ok
        };
        assert!(
            check_vsock(&missing_dir)
                .unwrap_err()
                .to_string()
                .contains("does not exist")
        );
    }

    #[test]
    fn disk_size_must_be_sector_multiple() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("odd.img");
        std::fs::write(&path, vec![0u8; 1000]).unwrap();
        let err = open_disk(&DiskConfig {
            path: path.clone(),
            read_only: true,
        })
        .unwrap_err();
        assert!(
            matches!(err, ConfigError::DiskSize { size: 1000, .. }),
            "{err}"
        );
        let missing = open_disk(&DiskConfig {
            path: dir.path().join("nope"),
            read_only: false,
        })
        .unwrap_err();
        assert!(missing.to_string().contains("nope"), "{missing}");
    }
}
