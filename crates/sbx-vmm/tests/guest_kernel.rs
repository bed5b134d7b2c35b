//! Level 2: the real guest kernel's early boot under sbx-vmm. Boots the `cargo xtask guest-kernel` vmlinux and asserts
//! that "Linux version", the e820 map and "Hypervisor detected: KVM" arrive through sbx-vmm's own 16550 — which
//! checks the 64-bit boot protocol (boot_params, e820, page tables, GDT), CPUID and the console path.
//!
//! The 64-bit protocol test also waits for the kernel to parse sbx-vmm's MP table (both vCPUs) and for kvm-clock.
//!
//! On hosts without hardware virtualization (kvm_pvm here) the kernel runs under KVM's instruction emulator: the
//! early lines arrive within seconds, the MP table after ~20 s, and the kernel later dies in the emulator (e.g. at
//! `xrstor`); that is why the test stops the VM as soon as it has seen them, and gives up after 5 minutes.
//! `cargo xtask ci` builds the kernel (cached) and passes it in `SBX_TEST_KERNEL`; elsewhere, without a kernel, the
//! test prints one line saying it was skipped.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{Console, skip_without_kvm};
use sbx_vmm::{BootProtocol, ExitReason, VmBuilder};

/// The kernel to boot: `$SBX_TEST_KERNEL`, else the xtask cache's `vmlinux` link.
fn guest_kernel() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SBX_TEST_KERNEL") {
        return Some(PathBuf::from(path));
    }
    let cache = if let Some(dir) = std::env::var_os("SBX_KERNEL_CACHE") {
        PathBuf::from(dir)
    } else if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        PathBuf::from(dir).join("sbx/guest-kernel")
    } else {
        PathBuf::from(std::env::var_os("HOME")?).join(".cache/sbx/guest-kernel")
    };
    let link = cache.join("vmlinux");
    link.exists().then_some(link)
}

#[test]
fn real_kernel_early_boot_linux_64bit_protocol() {
    early_boot(
        "real_kernel_early_boot_linux_64bit_protocol",
        BootProtocol::Linux64,
        &[
            "MPTABLE: OEM ID: SBX-VMM",
            "Processor #0 (Bootup-CPU)",
            "Processor #1",
            "smpboot: Allowing 2 CPUs, 0 hotplug CPUs",
        ],
    );
}

#[test]
fn real_kernel_early_boot_pvh() {
    early_boot("real_kernel_early_boot_pvh", BootProtocol::Pvh, &[]);
}

fn early_boot(test: &str, protocol: BootProtocol, also_wanted: &[&str]) {
    if skip_without_kvm(test) {
        return;
    }
    let Some(kernel) = guest_kernel() else {
        println!(
            "SKIPPED {test}: no guest kernel; run `cargo xtask guest-kernel` (~7 min; `cargo xtask ci` does) or set \
             SBX_TEST_KERNEL=/path/to/vmlinux"
        );
        return;
    };
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(&kernel)
        .cmdline("console=ttyS0 earlyprintk=ttyS0 reboot=k panic=-1 pci=off nomodule")
        .memory_mib(128)
        .vcpus(2)
        .serial(console.output())
        .boot_protocol(protocol)
        .build()
        .unwrap_or_else(|e| panic!("{}: {e}", kernel.display()));
    let vm = sbx_vmm::Vm::start(config).expect("VM starts");
    let handle = vm.handle();
    let mut wanted = vec![
        "Linux version",
        "BIOS-e820: [mem 0x0000000000000000-0x000000000009fbff] usable",
        "Hypervisor detected: KVM",
        "kvm-clock: Using msrs",
    ];
    wanted.extend_from_slice(also_wanted);
    let limit = Duration::from_secs(300);
    let start = Instant::now();
    loop {
        let text = console.text();
        if wanted.iter().all(|w| text.contains(w))
            || !handle.is_running()
            || start.elapsed() > limit
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    handle.stop();
    let reason = vm.wait().expect("VM threads");
    let text = console.text();
    for w in &wanted {
        assert!(
            text.contains(w),
            "{w:?} missing after {:?} (VM ended: {reason}); console:\n{text}",
            start.elapsed()
        );
    }
    assert!(
        text.contains("BIOS-e820: [mem 0x0000000000100000-0x0000000007ffffff] usable"),
        "the e820 map shows the 128 MiB of RAM: {text}"
    );
    println!(
        "{test}: early boot lines arrived after {:?}; VM ended: {reason}",
        start.elapsed()
    );
    assert!(matches!(
        reason,
        ExitReason::Requested | ExitReason::VcpuFailed { .. } | ExitReason::GuestReset
    ));
}
