//! PID 1 duties specific to the microVM: assemble the root from the two disks, switch into it, mount the workspace
//! shares, write the boot timer, fence the network with nftables and power off.
//!
//! The kernel starts the agent from a tiny initramfs (see `sbx-microvm`). The root is an overlay: the template's
//! ext4 image (read-only, `/dev/vda`) below, the sandbox's state disk (`/dev/vdb`, ext4, `upper/` and `work/`) above.
//! The agent moves the overlay onto `/` and chroots into it, so the initramfs stays behind, unreachable.

use std::ffi::CString;
use std::io;
use std::path::{Path, PathBuf};

use rustix::mount::{MountFlags, UnmountFlags, mount, mount_move, unmount};
use sbx_proto::vm::Share;

/// Physical address of sbx-vmm's boot-timer page.
pub const BOOT_TIMER_ADDR: u64 = 0xd000_0000;
/// The byte that reports "ready" (offset 0).
pub const BOOT_TIMER_MAGIC: u8 = 123;
/// Offset and value of the power-off register on the same page.
pub const POWER_OFF: (usize, u32) = (8, u32::from_le_bytes(*b"OFF!"));
/// Where the transparent listener takes TCP that ignored the proxy variables.
pub const TRANSPARENT_PORT: u16 = 3129;

/// Where the root is assembled inside the initramfs.
const LOWER: &str = "/sbx/lower";
const STATE: &str = "/sbx/state";
const NEW_ROOT: &str = "/sbx/root";

/// The disks and shares of the microVM, from the agent's command line.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VmLayout {
    /// The template device (read-only lower layer).
    pub root_disk: Option<PathBuf>,
    /// The state device (upper layer).
    pub state_disk: Option<PathBuf>,
    /// Workspace shares.
    pub shares: Vec<Share>,
}

fn err(what: String) -> impl FnOnce(rustix::io::Errno) -> String {
    move |e| format!("{what}: {e}")
}

/// The overlay options for a lower and a state directory.
pub fn overlay_options(lower: &str, state: &str) -> String {
    format!("lowerdir={lower},upperdir={state}/upper,workdir={state}/work")
}

/// Mounts the template and state disks as an overlay and makes it the root (the initramfs's /dev must be mounted).
pub fn switch_root(layout: &VmLayout) -> Result<(), String> {
    let (Some(root), Some(state)) = (&layout.root_disk, &layout.state_disk) else {
        return Err("microvm mode needs --root-disk and --state-disk".into());
    };
    for dir in [LOWER, STATE, NEW_ROOT] {
        std::fs::create_dir_all(dir).map_err(|e| format!("create {dir}: {e}"))?;
    }
    mount(root, LOWER, "ext4", MountFlags::RDONLY, None).map_err(err(format!(
        "mount the template {} on {LOWER}",
        root.display()
    )))?;
    mount(state, STATE, "ext4", MountFlags::NOATIME, None).map_err(err(format!(
        "mount the state disk {} on {STATE}",
        state.display()
    )))?;
    for dir in ["upper", "work"] {
        let p = Path::new(STATE).join(dir);
        std::fs::create_dir_all(&p).map_err(|e| format!("create {}: {e}", p.display()))?;
    }
    let options = CString::new(overlay_options(LOWER, STATE)).map_err(|e| e.to_string())?;
    mount(
        "overlay",
        NEW_ROOT,
        "overlay",
        MountFlags::empty(),
        Some(options.as_c_str()),
    )
    .map_err(err(format!("mount the root overlay on {NEW_ROOT}")))?;
    // The initramfs's own pseudo file systems go; the new root gets fresh ones.
    for dir in ["/dev/pts", "/dev", "/proc", "/sys", "/tmp", "/run"] {
        let _ = unmount(dir, UnmountFlags::DETACH);
    }
    std::env::set_current_dir(NEW_ROOT).map_err(|e| format!("chdir {NEW_ROOT}: {e}"))?;
    mount_move(".", "/").map_err(err("move the new root onto /".into()))?;
    rustix::process::chroot(".").map_err(err("chroot into the new root".into()))?;
    std::env::set_current_dir("/").map_err(|e| format!("chdir /: {e}"))
}

/// Mounts each virtio-fs share at its path (created when missing), read-only where asked.
pub fn mount_shares(shares: &[Share]) -> Result<(), String> {
    for share in shares {
        std::fs::create_dir_all(&share.path).map_err(|e| format!("create {}: {e}", share.path))?;
        let mut flags = MountFlags::NOSUID | MountFlags::NODEV;
        if share.read_only {
            flags |= MountFlags::RDONLY;
        }
        mount(
            share.tag.as_str(),
            share.path.as_str(),
            "virtiofs",
            flags,
            None,
        )
        .map_err(err(format!("mount share {} on {}", share.tag, share.path)))?;
    }
    Ok(())
}

/// Writes to sbx-vmm's boot-timer page through `/dev/mem` (`value` at `offset`, 1 or 4 bytes wide).
fn write_boot_page(offset: usize, value: &[u8]) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mem = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags_sync()
        .open("/dev/mem")?;
    let len = 4096;
    // SAFETY: mapping one page of /dev/mem at the boot-timer address; the fd is valid for the call and the result is
    // checked before use.
    let base = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            mem.as_raw_fd(),
            BOOT_TIMER_ADDR as libc::off_t,
        )
    };
    if base == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    // wrapping_add is safe to compute; the stores below are what must stay inside the mapping.
    let at = base.cast::<u8>().wrapping_add(offset);
    match value {
        // SAFETY: `page` maps `len` bytes and offset < 12 < len: the store stays inside the mapping.
        [b] => unsafe { std::ptr::write_volatile(at, *b) },
        // SAFETY: as above, and offset is a multiple of 4 on a page-aligned mapping, so the u32 store is aligned
        // (MMIO registers want one store of the register's width).
        [a, b, c, d] => unsafe {
            std::ptr::write_volatile(at.cast::<u32>(), u32::from_le_bytes([*a, *b, *c, *d]))
        },
        _ => {}
    }
    // SAFETY: `base`/`len` are exactly the mapping made above, unmapped once.
    unsafe { libc::munmap(base, len) };
    Ok(())
}

trait SyncOpen {
    fn custom_flags_sync(&mut self) -> &mut Self;
}

impl SyncOpen for std::fs::OpenOptions {
    fn custom_flags_sync(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.custom_flags(libc::O_SYNC)
    }
}

/// Tells the VMM the guest is ready (boot timer).
pub fn report_boot() -> io::Result<()> {
    write_boot_page(0, &[BOOT_TIMER_MAGIC])
}

/// Ends the VM: the power-off register, then a reboot (`reboot=k` makes the VMM end the VM on the i8042 reset).
pub fn power_off() -> rustix::io::Errno {
    let _ = write_boot_page(POWER_OFF.0, &POWER_OFF.1.to_le_bytes());
    match rustix::system::reboot(rustix::system::RebootCommand::Restart) {
        Ok(()) => rustix::io::Errno::AGAIN,
        Err(e) => e,
    }
}

/// The nftables ruleset of the microVM: outbound TCP that did not use the proxy variables (anything not to
/// loopback) is redirected to the transparent listener, which hands it to the host proxy; everything else that is
/// not loopback — UDP (DNS included), ICMP — is dropped. The VM has no network device at all; a default route over
/// loopback only exists so such connections reach the redirect instead of failing with "network unreachable".
pub fn nft_ruleset() -> String {
    format!(
        "table inet sbx {{\n\
         \tchain nat_out {{\n\
         \t\ttype nat hook output priority -100; policy accept;\n\
         \t\tip daddr != 127.0.0.0/8 meta l4proto tcp redirect to :{TRANSPARENT_PORT}\n\
         \t}}\n\
         \tchain filter_out {{\n\
         \t\ttype filter hook output priority 0; policy drop;\n\
         \t\tip daddr 127.0.0.0/8 accept\n\
         \t\tip6 daddr ::1 accept\n\
         \t}}\n\
         }}\n"
    )
}

/// Loads [`nft_ruleset`] with the template's `nft` and adds the loopback default route with `ip`. Returns what was
/// skipped (a template without nftables still has no network device, so nothing leaves either way).
pub fn fence_network() -> Result<(), String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let nft = ["/usr/sbin/nft", "/sbin/nft"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    let Some(nft) = nft else {
        return Err("no nft in the template: outbound TCP fails with \"network unreachable\" instead of being \
                    redirected to the proxy"
            .into());
    };
    let mut child = Command::new(nft)
        .args(["-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .map_err(|e| format!("run {nft}: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(nft_ruleset().as_bytes())
            .map_err(|e| format!("write the ruleset to nft: {e}"))?;
    }
    let status = child.wait().map_err(|e| format!("wait for nft: {e}"))?;
    if !status.success() {
        return Err(format!("nft -f failed: {status}"));
    }
    let ip = ["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]
        .into_iter()
        .find(|p| Path::new(p).exists());
    if let Some(ip) = ip {
        let _ = Command::new(ip)
            .args(["route", "add", "default", "dev", "lo"])
            .status();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlay_options_put_the_template_below_the_state() {
        assert_eq!(
            overlay_options("/sbx/lower", "/sbx/state"),
            "lowerdir=/sbx/lower,upperdir=/sbx/state/upper,workdir=/sbx/state/work"
        );
    }

    #[test]
    fn the_ruleset_redirects_tcp_and_drops_everything_else_leaving() {
        let rules = nft_ruleset();
        assert!(rules.contains(&format!("meta l4proto tcp redirect to :{TRANSPARENT_PORT}")));
        assert!(rules.contains("policy drop"));
        assert!(rules.contains("ip daddr 127.0.0.0/8 accept"));
        // Nothing else is accepted: UDP (DNS) and ICMP fall to the drop policy.
        assert_eq!(rules.matches(" accept\n").count(), 2, "{rules}");
    }

    #[test]
    fn switching_root_without_disks_is_refused() {
        let err = switch_root(&VmLayout::default()).unwrap_err();
        assert!(err.contains("--root-disk"), "{err}");
    }
}
