//! The sandbox's description of a microVM and the machine (kernel command line, disks, shares) derived from it.

use std::path::{Path, PathBuf};

use sbx_proto::vm::{GUEST_CID, Share, VSOCK_AGENT_PORT, VSOCK_EGRESS_PORT, encode_share};

use crate::error::MicroVmError;

/// Kernel parameters before the agent's arguments: serial console, reboot through the i8042 ends the VM, no PCI, no
/// modules, the agent from the initramfs is init (`rdinit`), quiet so the console log stays readable.
pub const BASE_CMDLINE: &str =
    "console=ttyS0 reboot=k panic=1 pci=off nomodule i8042.noaux quiet rdinit=/init";
/// Default size of a new state disk (sparse: it uses what the sandbox writes).
pub const DEFAULT_STATE_DISK_BYTES: u64 = 16 << 30;
/// The guest device of the template image (first virtio-blk device).
pub const ROOT_DEVICE: &str = "/dev/vda";
/// The guest device of the state disk (second virtio-blk device).
pub const STATE_DEVICE: &str = "/dev/vdb";

/// A host directory shared into the sandbox at the same absolute path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Workspace {
    /// The absolute host path (also the path inside).
    pub path: PathBuf,
    /// Mounted read-only inside.
    pub read_only: bool,
}

/// Everything needed to boot one sandbox's microVM.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct MicroVmConfig {
    /// The sandbox name (logs and errors).
    pub name: String,
    /// The guest kernel (`vmlinux` from `cargo xtask guest-kernel`).
    pub kernel: PathBuf,
    /// The template's ext4 image, attached read-only as the lower layer of the root.
    pub template_image: PathBuf,
    /// The static `sbx-guest` agent, packed into the initramfs as `/init`.
    pub agent: PathBuf,
    /// The sandbox's own directory: state disk, vsock socket, initramfs, console log.
    pub state_dir: PathBuf,
    /// Shared directories.
    pub workspaces: Vec<Workspace>,
    /// The sandbox CA certificate (PEM) the agent installs, when TLS interception is on.
    pub ca_file: Option<PathBuf>,
    /// vCPUs.
    pub vcpus: u8,
    /// Memory in MiB.
    pub memory_mib: u64,
    /// Apparent size of the state disk when it is created.
    pub state_disk_bytes: u64,
}

impl MicroVmConfig {
    /// A config with 2 vCPUs, 2 GiB of memory, a 16 GiB sparse state disk and no workspaces.
    pub fn new(
        name: impl Into<String>,
        kernel: impl Into<PathBuf>,
        template_image: impl Into<PathBuf>,
        agent: impl Into<PathBuf>,
        state_dir: impl Into<PathBuf>,
    ) -> MicroVmConfig {
        MicroVmConfig {
            name: name.into(),
            kernel: kernel.into(),
            template_image: template_image.into(),
            agent: agent.into(),
            state_dir: state_dir.into(),
            workspaces: Vec::new(),
            ca_file: None,
            vcpus: 2,
            memory_mib: 2048,
            state_disk_bytes: DEFAULT_STATE_DISK_BYTES,
        }
    }

    /// The state disk (sparse ext4, created on first start, kept across stop/start).
    pub fn state_disk(&self) -> PathBuf {
        self.state_dir.join("state.ext4")
    }

    /// The hybrid-vsock Unix socket: host → guest connections (`CONNECT <port>`).
    pub fn vsock_socket(&self) -> PathBuf {
        self.state_dir.join("vsock.sock")
    }

    /// Where guest → host connections to [`VSOCK_EGRESS_PORT`] land: the VMM connects them to a listener at
    /// `<vsock socket>_<port>`. The sandbox's egress proxy must listen here.
    pub fn egress_socket_path(&self) -> PathBuf {
        let mut name = self.vsock_socket().into_os_string();
        name.push(format!("_{VSOCK_EGRESS_PORT}"));
        PathBuf::from(name)
    }

    /// The initramfs holding the agent (rewritten on every start, so an updated agent takes effect).
    pub fn initramfs(&self) -> PathBuf {
        self.state_dir.join("agent.cpio")
    }

    /// The guest console log.
    pub fn console_log(&self) -> PathBuf {
        self.state_dir.join("console.log")
    }

    /// The virtio-fs shares: tag `ws<N>` for workspace N.
    pub fn shares(&self) -> Result<Vec<Share>, MicroVmError> {
        self.workspaces
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let path = w.path.to_str().ok_or_else(|| MicroVmError::Config {
                    field: "workspaces",
                    detail: format!("{} is not UTF-8; rename it to share it", w.path.display()),
                })?;
                if !w.path.is_absolute() {
                    return Err(MicroVmError::Config {
                        field: "workspaces",
                        detail: format!("{path} is not absolute"),
                    });
                }
                Ok(Share {
                    tag: format!("ws{i}"),
                    path: path.to_owned(),
                    read_only: w.read_only,
                })
            })
            .collect()
    }

    /// The kernel command line: [`BASE_CMDLINE`], then `--` and the agent's arguments (mode, vsock endpoints, the
    /// root and state devices, the shares, the CA).
    pub fn cmdline(&self) -> Result<String, MicroVmError> {
        let mut words = vec![
            BASE_CMDLINE.to_owned(),
            "--".into(),
            "--mode".into(),
            "microvm".into(),
            "--listen".into(),
            format!("vsock:{VSOCK_AGENT_PORT}"),
            "--proxy".into(),
            format!("vsock:2:{VSOCK_EGRESS_PORT}"),
            "--root-disk".into(),
            ROOT_DEVICE.into(),
            "--state-disk".into(),
            STATE_DEVICE.into(),
        ];
        for share in self.shares()? {
            words.push("--share".into());
            words.push(encode_share(&share));
        }
        if self.ca_file.is_some() {
            words.push("--ca".into());
            words.push(crate::initramfs::CA_PATH.into());
        }
        Ok(words.join(" "))
    }

    /// Checks the config, naming the first unusable field.
    pub fn validate(&self) -> Result<(), MicroVmError> {
        let file = |field: &'static str, path: &Path, fix: &str| {
            if path.is_file() {
                Ok(())
            } else {
                Err(MicroVmError::Config {
                    field,
                    detail: format!("{} does not exist; {fix}", path.display()),
                })
            }
        };
        file(
            "kernel",
            &self.kernel,
            "build it with `cargo xtask guest-kernel`",
        )?;
        file(
            "template_image",
            &self.template_image,
            "build it with `sbx template build`",
        )?;
        file(
            "agent",
            &self.agent,
            "build it with `cargo xtask guest-agent`",
        )?;
        if let Some(ca) = &self.ca_file {
            file(
                "ca_file",
                ca,
                "the sandbox CA is created by the proxy on first start",
            )?;
        }
        for w in &self.workspaces {
            if !w.path.is_dir() {
                return Err(MicroVmError::Config {
                    field: "workspaces",
                    detail: format!("{} is not a directory", w.path.display()),
                });
            }
        }
        if self.vcpus == 0 || self.vcpus > sbx_vmm::MAX_VCPUS {
            return Err(MicroVmError::Config {
                field: "vcpus",
                detail: format!("{} is outside 1..={}", self.vcpus, sbx_vmm::MAX_VCPUS),
            });
        }
        if self.memory_mib < 128 {
            return Err(MicroVmError::Config {
                field: "memory_mib",
                detail: format!(
                    "{} MiB is too little for Linux and the agent; give at least 128",
                    self.memory_mib
                ),
            });
        }
        self.shares().map(drop)
    }

    /// The sbx-vmm machine: kernel, initramfs, command line, template (read-only) and state disks, vsock, shares.
    pub fn vm_builder(&self) -> Result<sbx_vmm::VmBuilder, MicroVmError> {
        let mut builder = sbx_vmm::VmBuilder::new()
            .kernel(&self.kernel)
            .initrd(self.initramfs())
            .cmdline(self.cmdline()?)
            .memory_mib(self.memory_mib)
            .vcpus(self.vcpus)
            .serial(sbx_vmm::SerialOutput::File(self.console_log()))
            .disk(&self.template_image, true)
            .disk(self.state_disk(), false)
            .vsock(GUEST_CID, self.vsock_socket())
            .rng(true)
            .handle_signals(false);
        for (share, w) in self.shares()?.into_iter().zip(&self.workspaces) {
            builder = builder.shared_dir(&w.path, share.tag, share.read_only);
        }
        Ok(builder)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> MicroVmConfig {
        let mut c = MicroVmConfig::new(
            "demo",
            "/k/vmlinux",
            "/t/rootfs.ext4",
            "/a/sbx-guest",
            "/s/demo",
        );
        c.workspaces = vec![
            Workspace {
                path: "/home/me/my project".into(),
                read_only: false,
            },
            Workspace {
                path: "/data".into(),
                read_only: true,
            },
        ];
        c
    }

    #[test]
    fn cmdline_hands_the_agent_its_devices_ports_and_shares() {
        let line = config().cmdline().unwrap();
        let (kernel, agent) = line.split_once(" -- ").unwrap();
        assert_eq!(kernel, BASE_CMDLINE);
        assert_eq!(
            agent,
            "--mode microvm --listen vsock:1024 --proxy vsock:2:1025 --root-disk /dev/vda --state-disk /dev/vdb \
             --share ws0=/home/me/my%20project --share ws1=/data:ro"
        );
        // Each share survives the trip through the command line.
        let words: Vec<_> = agent.split(' ').collect();
        let shares: Vec<_> = words
            .windows(2)
            .filter(|w| w[0] == "--share")
            .map(|w| sbx_proto::vm::decode_share(w[1]).unwrap())
            .collect();
        assert_eq!(shares[0].path, "/home/me/my project");
        assert!(shares[1].read_only);
    }

    #[test]
    fn the_ca_is_passed_by_its_initramfs_path() {
        let mut c = config();
        c.ca_file = Some("/s/ca.pem".into());
        assert!(c.cmdline().unwrap().ends_with("--ca /sbx/ca.pem"));
    }

    #[test]
    fn egress_lands_on_the_vsock_listener_path() {
        let c = config();
        assert_eq!(c.vsock_socket(), Path::new("/s/demo/vsock.sock"));
        assert_eq!(c.egress_socket_path(), Path::new("/s/demo/vsock.sock_1025"));
    }

    #[test]
    fn validation_names_the_missing_piece_and_the_fix() {
        let err = config().validate().unwrap_err().to_string();
        assert!(
            err.contains("kernel") && err.contains("cargo xtask guest-kernel"),
            "{err}"
        );
        let dir = tempfile::tempdir().unwrap();
        let touch = |n: &str| {
            let p = dir.path().join(n);
            std::fs::write(&p, "x").unwrap();
            p
        };
        let mut c = MicroVmConfig::new(
            "d",
            touch("vmlinux"),
            dir.path().join("none.ext4"),
            touch("agent"),
            dir.path(),
        );
        let err = c.validate().unwrap_err().to_string();
        assert!(
            err.contains("template_image") && err.contains("sbx template build"),
            "{err}"
        );
        c.template_image = touch("rootfs.ext4");
        c.validate().unwrap();
        c.vcpus = 0;
        assert!(c.validate().unwrap_err().to_string().contains("vcpus"));
        c.vcpus = 1;
        c.memory_mib = 64;
        assert!(c.validate().unwrap_err().to_string().contains("memory_mib"));
        c.memory_mib = 256;
        c.workspaces.push(Workspace {
            path: "relative".into(),
            read_only: false,
        });
        assert!(c.validate().unwrap_err().to_string().contains("workspaces"));
    }
}
