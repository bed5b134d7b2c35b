//! Level 3: boot the real guest kernel to userspace. An initramfs made by the test holds `/init`, a static x86-64
//! program assembled by the test, which prints on the console, connects to the host over vsock and reboots.
//!
//! This needs hardware virtualization: on `kvm_pvm` hosts the kernel runs under KVM's instruction emulator, which
//! fails on some instructions long before userspace. The test detects the KVM flavour from `/sys/module` and prints
//! one line saying why it was skipped.

mod common;

use std::io::Read;
use std::os::unix::net::UnixListener;
use std::time::{Duration, Instant};

use common::asm::Asm;
use common::{Console, elf_image_at, run_with_limit, skip_without_kvm};
use sbx_vmm::{ExitReason, KvmFlavor, VmBuilder, kvm_hardware_virtualization};

const INIT_BASE: u64 = 0x40_0000;
const DATA: u64 = INIT_BASE + 0x800;
const VSOCK_PORT: u32 = 7000;

/// `/init`: write(1, msg); fd = socket(AF_VSOCK, SOCK_STREAM, 0); connect(fd, {cid 2, port}); write(fd, msg);
/// reboot(RESTART).
fn init_program() -> Vec<u8> {
    let msg = b"sbx-init-ready\n";
    let mut a = Asm::new();
    a.mov_rax(1)
        .mov_rdi(1)
        .mov_rsi(DATA)
        .mov_rdx(msg.len() as u64)
        .syscall();
    a.mov_rax(41).mov_rdi(40).mov_rsi(1).mov_rdx(0).syscall();
    a.mov_rdi_rax()
        .mov_rax(42)
        .mov_rsi(DATA + 0x40)
        .mov_rdx(16)
        .syscall();
    a.mov_rax(1)
        .mov_rsi(DATA)
        .mov_rdx(msg.len() as u64)
        .syscall();
    a.mov_rax(169)
        .mov_rdi(0xfee1_dead)
        .mov_rsi(672_274_793)
        .mov_rdx(0x0123_4567)
        .syscall();
    let top = a.label();
    a.bind(top).jmp(top);
    let mut code = a.finish();
    code.resize(0x800, 0x90);
    code.extend_from_slice(msg);
    code.resize(0x840, 0);
    // struct sockaddr_vm { family: u16 = AF_VSOCK, reserved: u16, port: u32, cid: u32, flags: u8, zero: [u8; 3] }
    code.extend_from_slice(&40u16.to_le_bytes());
    code.extend_from_slice(&0u16.to_le_bytes());
    code.extend_from_slice(&VSOCK_PORT.to_le_bytes());
    code.extend_from_slice(&2u32.to_le_bytes());
    code.extend_from_slice(&[0; 4]);
    code
}

/// A newc cpio archive with `/dev`, `/dev/console` and `/init`.
fn initramfs(init: &[u8]) -> Vec<u8> {
    fn entry(out: &mut Vec<u8>, ino: u32, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let fields = [
            ino,
            mode,
            0,
            0,
            1,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        out.extend_from_slice(b"070701");
        for f in fields {
            out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
        out.extend_from_slice(data);
        while !out.len().is_multiple_of(4) {
            out.push(0);
        }
    }
    let mut out = Vec::new();
    entry(&mut out, 1, "dev", 0o040755, (0, 0), &[]);
    entry(&mut out, 2, "dev/console", 0o020600, (5, 1), &[]);
    entry(&mut out, 3, "init", 0o100755, (0, 0), init);
    entry(&mut out, 4, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

#[test]
fn boot_to_userspace_with_vsock() {
    if skip_without_kvm("boot_to_userspace_with_vsock") {
        return;
    }
    let flavor = kvm_hardware_virtualization();
    if !matches!(flavor, KvmFlavor::Intel | KvmFlavor::Amd) {
        println!(
            "SKIPPED boot_to_userspace_with_vsock: this host's KVM is {flavor:?} (from /sys/module), not hardware \
             virtualization (kvm_intel/kvm_amd); a non-PVM guest kernel runs under KVM's instruction emulator here"
        );
        return;
    }
    let Some(kernel) = std::env::var_os("SBX_TEST_KERNEL")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/sbx/guest-kernel/vmlinux"))
        })
        .filter(|p| p.exists())
    else {
        println!(
            "SKIPPED boot_to_userspace_with_vsock: no guest kernel; run `cargo xtask guest-kernel` or set SBX_TEST_KERNEL"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let initrd = dir.path().join("initramfs.cpio");
    std::fs::write(
        &initrd,
        initramfs(&elf_image_at(&init_program(), INIT_BASE)),
    )
    .unwrap();
    let uds = dir.path().join("v.sock");
    let listener = UnixListener::bind(format!("{}_{VSOCK_PORT}", uds.display())).unwrap();
    let host = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        let _ = s.read_to_end(&mut got);
        got
    });
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(&kernel)
        .initrd(&initrd)
        .cmdline("console=ttyS0 reboot=k panic=-1 pci=off nomodule quiet")
        .memory_mib(256)
        .vcpus(2)
        .serial(console.output())
        .vsock(3, &uds)
        .build()
        .unwrap();
    let started = Instant::now();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console:\n{text}");
    assert!(text.contains("sbx-init-ready"), "console:\n{text}");
    assert_eq!(
        host.join().unwrap(),
        b"sbx-init-ready\n",
        "init's vsock message reached the host"
    );
    println!("boot to init and back: {:?}", started.elapsed());
}

/// The initramfs and `/init` are checked with the system's own tools where they exist, so the level-3 test's inputs
/// are known good even on hosts that cannot run it.
#[test]
fn initramfs_and_init_are_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let init = elf_image_at(&init_program(), INIT_BASE);
    let archive = dir.path().join("initramfs.cpio");
    std::fs::write(&archive, initramfs(&init)).unwrap();
    let Ok(out) = std::process::Command::new("cpio")
        .args(["-itv", "-F"])
        .arg(&archive)
        .output()
    else {
        println!("SKIPPED initramfs_and_init_are_well_formed: `cpio` is not installed");
        return;
    };
    let listing = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(listing.contains("dev/console"), "{listing}");
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("crw") && l.contains("5,")),
        "{listing}"
    );
    assert!(
        listing
            .lines()
            .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with("init")),
        "{listing}"
    );
    let elf = dir.path().join("init");
    std::fs::write(&elf, &init).unwrap();
    if let Ok(out) = std::process::Command::new("readelf")
        .arg("-lh")
        .arg(&elf)
        .output()
    {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("EXEC"), "{text}");
        assert!(
            text.contains("Entry point address:               0x400000"),
            "{text}"
        );
    }
}
