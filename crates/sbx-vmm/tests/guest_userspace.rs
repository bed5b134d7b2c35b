//! Level 3: boot the real guest kernel to userspace. An initramfs made by the test holds `/init`, a static x86-64
//! program assembled by the test, which prints on the console, connects to the host over vsock and reboots.
//!
//! This needs hardware virtualization: on `kvm_pvm` hosts the kernel runs under KVM's instruction emulator, which
//! fails on some instructions long before userspace. The test detects the KVM flavour from `/sys/module` and the CPU's
//! `vmx`/`svm` flag, and prints one line saying why it was skipped.

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

/// A newc cpio archive with `/dev`, `/dev/console`, `/init`, and `/mnt` and `/ro` (where the virtio-fs
/// test mounts its shares).
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
    entry(&mut out, 4, "mnt", 0o040755, (0, 0), &[]);
    entry(&mut out, 5, "ro", 0o040755, (0, 0), &[]);
    entry(&mut out, 6, "TRAILER!!!", 0, (0, 0), &[]);
    out
}

/// The guest kernel, when this host can boot it to userspace; otherwise prints why `test` is skipped.
fn userspace_kernel_or_skip(test: &str) -> Option<std::path::PathBuf> {
    if skip_without_kvm(test) {
        return None;
    }
    let flavor = kvm_hardware_virtualization();
    if !matches!(flavor, KvmFlavor::Intel | KvmFlavor::Amd) {
        println!(
            "SKIPPED {test}: this host's KVM is {flavor:?} (from /sys/module and /proc/cpuinfo), not hardware \
             virtualization (kvm_intel with vmx, kvm_amd with svm); a non-PVM guest kernel runs under KVM's \
             instruction emulator here"
        );
        return None;
    }
    let kernel = std::env::var_os("SBX_TEST_KERNEL")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .map(|h| std::path::PathBuf::from(h).join(".cache/sbx/guest-kernel/vmlinux"))
        })
        .filter(|p| p.exists());
    if kernel.is_none() {
        println!(
            "SKIPPED {test}: no guest kernel; run `cargo xtask guest-kernel` or set SBX_TEST_KERNEL"
        );
    }
    kernel
}

#[test]
fn boot_to_userspace_with_vsock() {
    let Some(kernel) = userspace_kernel_or_skip("boot_to_userspace_with_vsock") else {
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

/// `/init` for the virtio-fs test: mount("workspace", "/mnt", "virtiofs"); create /mnt/from-guest.txt and write a
/// line; print /mnt/from-host.txt on the console; try to create a file on the read-only share "docs" at /ro and print "ro-refused" when that fails; reboot.
fn virtio_fs_init_program() -> Vec<u8> {
    const S: u64 = INIT_BASE + 0x800;
    let (tag, mnt, fstype) = (S, S + 0x20, S + 0x30);
    let (guest_file, host_file, msg) = (S + 0x40, S + 0x60, S + 0x80);
    let (ro_tag, ro_mnt, ro_file, refused, buf) =
        (S + 0xa0, S + 0xb0, S + 0xc0, S + 0xe0, S + 0x100);
    let guest_msg = b"written-by-guest\n";
    let mut a = Asm::new();
    // mount(tag, "/mnt", "virtiofs", 0, NULL): r10 and r8 are zero at process start and syscalls preserve them.
    a.mov_rax(165)
        .mov_rdi(tag)
        .mov_rsi(mnt)
        .mov_rdx(fstype)
        .syscall();
    a.mov_rax(165)
        .mov_rdi(ro_tag)
        .mov_rsi(ro_mnt)
        .mov_rdx(fstype)
        .syscall();
    // fd = open("/mnt/from-guest.txt", O_WRONLY | O_CREAT, 0644); write(fd, msg); close(fd)
    a.mov_rax(2)
        .mov_rdi(guest_file)
        .mov_rsi(0o101)
        .mov_rdx(0o644)
        .syscall();
    a.mov_rdi_rax()
        .mov_rax(1)
        .mov_rsi(msg)
        .mov_rdx(guest_msg.len() as u64)
        .syscall();
    a.mov_rax(3).syscall();
    // fd = open("/mnt/from-host.txt", O_RDONLY); n = read(fd, buf, 64); write(1, buf, n)
    a.mov_rax(2)
        .mov_rdi(host_file)
        .mov_rsi(0)
        .mov_rdx(0)
        .syscall();
    a.mov_rdi_rax()
        .mov_rax(0)
        .mov_rsi(buf)
        .mov_rdx(64)
        .syscall();
    a.raw(&[0x48, 0x89, 0xc2]); // mov rdx, rax
    a.mov_rax(1).mov_rdi(1).mov_rsi(buf).syscall();
    // open("/ro/new.txt", O_WRONLY | O_CREAT, 0644) must fail (EROFS): print "ro-refused" when rax is negative.
    a.mov_rax(2)
        .mov_rdi(ro_file)
        .mov_rsi(0o101)
        .mov_rdx(0o644)
        .syscall();
    a.raw(&[0x48, 0xc1, 0xe8, 0x3f]); // shr rax, 63: 1 when the open failed
    let done = a.label();
    a.cmp_eax(1).jne(done);
    a.mov_rax(1)
        .mov_rdi(1)
        .mov_rsi(refused)
        .mov_rdx(11)
        .syscall();
    a.bind(done);
    a.mov_rax(169)
        .mov_rdi(0xfee1_dead)
        .mov_rsi(672_274_793)
        .mov_rdx(0x0123_4567)
        .syscall();
    let top = a.label();
    a.bind(top).jmp(top);
    let mut code = a.finish();
    code.resize(0x800, 0x90);
    let mut put = |at: u64, bytes: &[u8]| {
        let off = (at - INIT_BASE) as usize;
        code.resize(code.len().max(off + bytes.len() + 1), 0);
        code[off..off + bytes.len()].copy_from_slice(bytes);
    };
    put(tag, b"workspace");
    put(mnt, b"/mnt");
    put(fstype, b"virtiofs");
    put(guest_file, b"/mnt/from-guest.txt");
    put(host_file, b"/mnt/from-host.txt");
    put(msg, guest_msg);
    put(ro_tag, b"docs");
    put(ro_mnt, b"/ro");
    put(ro_file, b"/ro/new.txt");
    put(refused, b"ro-refused\n");
    code.resize(0x200 + 0x800, 0);
    code
}

/// Level 3: the real guest kernel mounts two virtio-fs shares from `/init`, writes through one, reads a host file,
/// and is refused a write on the read-only one.
#[test]
fn guest_mounts_virtio_fs_shares() {
    let Some(kernel) = userspace_kernel_or_skip("guest_mounts_virtio_fs_shares") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (share, ro_share) = (dir.path().join("share"), dir.path().join("ro"));
    std::fs::create_dir(&share).unwrap();
    std::fs::create_dir(&ro_share).unwrap();
    std::fs::write(share.join("from-host.txt"), "host-says-hello\n").unwrap();
    let initrd = dir.path().join("initramfs.cpio");
    std::fs::write(
        &initrd,
        initramfs(&elf_image_at(&virtio_fs_init_program(), INIT_BASE)),
    )
    .unwrap();
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(&kernel)
        .initrd(&initrd)
        .cmdline("console=ttyS0 reboot=k panic=-1 pci=off nomodule quiet")
        .memory_mib(256)
        .serial(console.output())
        .shared_dir(&share, "workspace", false)
        .shared_dir(&ro_share, "docs", true)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console:\n{text}");
    assert!(text.contains("host-says-hello"), "console:\n{text}");
    assert!(text.contains("ro-refused"), "console:\n{text}");
    assert_eq!(
        std::fs::read_to_string(share.join("from-guest.txt")).unwrap(),
        "written-by-guest\n"
    );
    assert_eq!(std::fs::read_dir(&ro_share).unwrap().count(), 0);
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

/// The virtio-fs test's `/init` (which only runs on hardware KVM) is checked here: its strings sit where the code
/// points, and the disassembly has the expected syscalls in order (2 mounts, open/write/close, open/read/write,
/// open, the conditional write, reboot).
#[test]
fn virtio_fs_init_is_well_formed() {
    let code = virtio_fs_init_program();
    let string_at = |off: usize| {
        let end = code[off..].iter().position(|&b| b == 0).unwrap();
        String::from_utf8_lossy(&code[off..off + end]).into_owned()
    };
    assert_eq!(string_at(0x800), "workspace");
    assert_eq!(string_at(0x820), "/mnt");
    assert_eq!(string_at(0x830), "virtiofs");
    assert_eq!(string_at(0x840), "/mnt/from-guest.txt");
    assert_eq!(string_at(0x860), "/mnt/from-host.txt");
    assert_eq!(string_at(0x8a0), "docs");
    assert_eq!(string_at(0x8b0), "/ro");
    assert_eq!(string_at(0x8c0), "/ro/new.txt");
    assert_eq!(string_at(0x8e0), "ro-refused\n");
    let dir = tempfile::tempdir().unwrap();
    let bin = dir.path().join("init.bin");
    std::fs::write(&bin, &code[..0x800]).unwrap();
    let Ok(out) = std::process::Command::new("objdump")
        .args(["-D", "-b", "binary", "-m", "i386:x86-64"])
        .arg(&bin)
        .output()
    else {
        println!("SKIPPED virtio_fs_init_is_well_formed (disassembly): `objdump` is not installed");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let syscalls = text.lines().filter(|l| l.contains("syscall")).count();
    assert_eq!(syscalls, 11, "{text}");
    assert!(text.contains("shr    $0x3f,%rax"), "{text}");
    assert!(!text.contains("(bad)"), "{text}");
}
