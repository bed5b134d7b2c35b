//! Level-1 KVM tests: tiny guests assembled by the test enter long mode, talk to the serial port, the boot timer and
//! the i8042, and end the VM in every way the VMM distinguishes.

mod common;

use std::time::Duration;

use common::asm::Asm;
use common::{Console, run_with_limit, skip_without_kvm, write_guest};
use sbx_vmm::{ConfigError, ExitReason, VmBuilder};

const EFER: u32 = 0xc000_0080;
const EFER_LMA: u32 = 1 << 10;

fn boot(code: &[u8], console: &Console) -> (tempfile::TempDir, sbx_vmm::Vm) {
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), code);
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .build()
        .expect("valid config");
    (dir, sbx_vmm::Vm::start(config).expect("VM starts"))
}

#[test]
fn long_mode_serial_pio_mmio_and_i8042_reset() {
    if skip_without_kvm("long_mode_serial_pio_mmio_and_i8042_reset") {
        return;
    }
    let mut a = Asm::new();
    a.print("hello from long mode\n");
    // EFER.LMA proves the VMM's page tables, GDT and control registers put the CPU in 64-bit mode.
    let not_long = a.label();
    let after = a.label();
    a.mov_ecx(EFER)
        .rdmsr()
        .and_eax(EFER_LMA)
        .cmp_eax(EFER_LMA)
        .jne(not_long);
    a.print("LMA=1\n").jmp(after);
    a.bind(not_long).print("LMA=0\n");
    a.bind(after);
    // An unclaimed port reads as 0xff (a PIO exit answered by the empty bus).
    a.mov_dx(0x510).in_al_dx().print_al();
    // MMIO write exit: the boot timer.
    a.store32(
        sbx_vmm::arch::layout::BOOT_TIMER_START,
        u32::from(sbx_vmm::devices::boot_timer::MAGIC),
    );
    a.print("\nbye\n").reset();
    let console = Console::default();
    let (_dir, vm) = boot(&a.finish(), &console);
    let handle = vm.handle();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert_eq!(reason.exit_code(), 0);
    assert!(
        text.contains("hello from long mode\nLMA=1\n\u{fffd}\nbye\n"),
        "console: {text:?}"
    );
    let report = handle.startup_report();
    assert!(report.to_first_kvm_run.is_some());
    assert!(
        report.to_boot_ready.is_some(),
        "the boot timer saw the guest's write"
    );
}

#[test]
fn console_goes_to_a_stream_and_a_file() {
    if skip_without_kvm("console_goes_to_a_stream_and_a_file") {
        return;
    }
    let mut a = Asm::new();
    a.print("to the stream\n").reset();
    let code = a.finish();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &code);
    let (mut reader, writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let shared: sbx_vmm::SharedWriter = std::sync::Arc::new(std::sync::Mutex::new(writer));
    let config = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(32)
        .serial(sbx_vmm::SerialOutput::Writer(shared))
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(60)),
        ExitReason::GuestReset
    );
    let mut got = [0u8; 14];
    std::io::Read::read_exact(&mut reader, &mut got).unwrap();
    assert_eq!(&got, b"to the stream\n");

    let log = dir.path().join("console.log");
    std::fs::write(&log, "earlier\n").unwrap();
    let config = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(32)
        .serial(sbx_vmm::SerialOutput::File(log.clone()))
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(60)),
        ExitReason::GuestReset
    );
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "earlier\nto the stream\n",
        "appended"
    );
}

#[test]
fn serial_input_reaches_the_guest() {
    if skip_without_kvm("serial_input_reaches_the_guest") {
        return;
    }
    // Echo five bytes: poll LSR.DR (port 0x3fd bit 0), read RBR, write THR.
    let mut a = Asm::new();
    for _ in 0..5 {
        let poll = a.label();
        a.bind(poll)
            .mov_dx(0x3fd)
            .in_al_dx()
            .and_eax(1)
            .cmp_eax(1)
            .jne(poll);
        a.mov_dx(0x3f8).in_al_dx().out_dx_al();
    }
    a.print("\n").reset();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .serial_input(std::io::Cursor::new(b"hello".to_vec()))
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(60)),
        ExitReason::GuestReset
    );
    assert_eq!(console.text(), "hello\n");
}

#[test]
fn stop_on_request_ends_a_halted_guest() {
    if skip_without_kvm("stop_on_request_ends_a_halted_guest") {
        return;
    }
    let mut a = Asm::new();
    a.print("halting\n");
    let top = a.label();
    a.bind(top).cli().hlt().jmp(top);
    let console = Console::default();
    let (_dir, vm) = boot(&a.finish(), &console);
    let handle = vm.handle();
    let waiter = std::thread::spawn(move || vm.wait());
    // Wait until the guest is halted, then stop it from another thread.
    let start = std::time::Instant::now();
    while !console.text().contains("halting") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "guest never printed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    assert!(handle.is_running());
    handle.stop();
    let reason = waiter.join().unwrap().unwrap();
    assert!(
        matches!(reason, ExitReason::Requested | ExitReason::GuestPowerOff),
        "{reason}"
    );
    assert!(!handle.is_running());
}

#[test]
fn dropping_a_running_vm_stops_it() {
    if skip_without_kvm("dropping_a_running_vm_stops_it") {
        return;
    }
    let mut a = Asm::new();
    a.print("running\n");
    let top = a.label();
    a.bind(top).jmp(top);
    let console = Console::default();
    let (_dir, vm) = boot(&a.finish(), &console);
    let handle = vm.handle();
    let start = std::time::Instant::now();
    while !console.text().contains("running") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "guest never printed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    drop(vm);
    assert!(
        !handle.is_running(),
        "drop stopped the VM and joined its threads"
    );
}

#[test]
fn busy_guest_is_stopped_on_request() {
    if skip_without_kvm("busy_guest_is_stopped_on_request") {
        return;
    }
    let mut a = Asm::new();
    a.print("spinning\n");
    let top = a.label();
    a.bind(top).jmp(top);
    let console = Console::default();
    let (_dir, vm) = boot(&a.finish(), &console);
    let handle = vm.handle();
    let start = std::time::Instant::now();
    while !console.text().contains("spinning") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "guest never printed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    handle.stop();
    assert_eq!(vm.wait().unwrap(), ExitReason::Requested);
}

#[test]
fn power_off_register_ends_the_vm_as_power_off() {
    if skip_without_kvm("power_off_register_ends_the_vm_as_power_off") {
        return;
    }
    use sbx_vmm::devices::boot_timer::{POWER_OFF_MAGIC, POWER_OFF_OFFSET};
    let mut a = Asm::new();
    // A wrong value is ignored; the magic one powers off.
    a.store32(layout_boot_timer() + POWER_OFF_OFFSET, 0x1234);
    a.print("still here\n");
    a.store32(layout_boot_timer() + POWER_OFF_OFFSET, POWER_OFF_MAGIC);
    a.print("not reached\n");
    let top = a.label();
    a.bind(top).jmp(top);
    let console = Console::default();
    let (_dir, vm) = boot(&a.finish(), &console);
    let reason = run_with_limit(vm, Duration::from_secs(60));
    assert_eq!(reason, ExitReason::GuestPowerOff);
    assert_eq!(reason.exit_code(), 0);
    assert_eq!(console.text(), "still here\n");
}

fn layout_boot_timer() -> u64 {
    sbx_vmm::arch::layout::BOOT_TIMER_START
}

#[test]
fn pvh_entry_gets_start_info_in_32_bit_protected_mode() {
    if skip_without_kvm("pvh_entry_gets_start_info_in_32_bit_protected_mode") {
        return;
    }
    // 32-bit code: only instructions that encode the same in protected mode (no REX prefixes).
    let mut a = Asm::new();
    let fail = a.label();
    a.raw(&[0x8b, 0x03]).cmp_eax(0x336e_c578).jne(fail); // mov eax, [ebx]: hvm_start_info.magic
    a.print("magic ");
    a.raw(&[0x0f, 0x20, 0xc0])
        .and_eax(0x8000_0001)
        .cmp_eax(1)
        .jne(fail); // CR0: PE set, PG clear
    a.print("protected-no-paging ");
    a.raw(&[0x8b, 0x43, 0x30]).cmp_eax(3).jne(fail); // memmap_entries (offset 48)
    a.raw(&[0x8b, 0x43, 0x18])
        .cmp_eax(layout_cmdline())
        .jne(fail); // cmdline_paddr (offset 24)
    a.print("memmap cmdline\n").reset();
    a.bind(fail).print("FAIL\n").reset();
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("pvh.elf");
    std::fs::write(&kernel, common::elf_image_pvh(&a.finish())).unwrap();
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(32)
        .serial(console.output())
        .boot_protocol(sbx_vmm::BootProtocol::Pvh)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    assert_eq!(
        reason,
        ExitReason::GuestReset,
        "console: {}",
        console.text()
    );
    assert_eq!(console.text(), "magic protected-no-paging memmap cmdline\n");

    // Asking for PVH with a kernel that has no PVH note is a clear error.
    let plain = write_guest(dir.path(), &[0xf4]);
    let config = VmBuilder::new()
        .kernel(&plain)
        .memory_mib(32)
        .boot_protocol(sbx_vmm::BootProtocol::Pvh)
        .build()
        .unwrap();
    let err = sbx_vmm::Vm::start(config).unwrap_err().to_string();
    assert!(err.contains("no PVH entry note"), "{err}");
}

fn layout_cmdline() -> u32 {
    sbx_vmm::arch::layout::CMDLINE_START as u32
}

#[test]
fn triple_fault_is_a_guest_crash() {
    if skip_without_kvm("triple_fault_is_a_guest_crash") {
        return;
    }
    // The VMM starts the guest without an IDT, so an invalid opcode escalates to a triple fault.
    let mut a = Asm::new();
    a.print("crashing\n");
    let mut code = a.finish();
    code.extend_from_slice(&[0x0f, 0x0b]); // ud2
    let console = Console::default();
    let (_dir, vm) = boot(&code, &console);
    let reason = run_with_limit(vm, Duration::from_secs(60));
    assert_eq!(
        reason,
        ExitReason::GuestCrash,
        "console: {}",
        console.text()
    );
    assert_eq!(reason.exit_code(), 2);
}

#[test]
fn smp_guest_starts_and_stops_cleanly() {
    if skip_without_kvm("smp_guest_starts_and_stops_cleanly") {
        return;
    }
    // The boot CPU runs the guest; the application processors wait for INIT/SIPI inside KVM_RUN and must be
    // kicked out when the boot CPU resets the machine.
    let mut a = Asm::new();
    a.print("bsp\n").reset();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .vcpus(4)
        .serial(console.output())
        .build()
        .unwrap();
    assert_eq!(config.vcpus(), 4);
    let vm = sbx_vmm::Vm::start(config).unwrap();
    assert_eq!(
        run_with_limit(vm, Duration::from_secs(60)),
        ExitReason::GuestReset
    );
    assert_eq!(console.text(), "bsp\n");
}

#[test]
fn config_errors_name_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let err = VmBuilder::new()
        .kvm_device(dir.path().join("no-kvm"))
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::KvmMissing { .. }), "{err}");
    assert!(err.to_string().contains("modprobe"), "{err}");
    if common::kvm_unusable().is_some() {
        println!("SKIPPED config_errors_name_the_problem (kernel checks): /dev/kvm is not usable");
        return;
    }
    let err = VmBuilder::new().build().unwrap_err();
    assert!(matches!(err, ConfigError::KernelNotSet), "{err}");
    let err = VmBuilder::new()
        .kernel(dir.path().join("missing"))
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let err = VmBuilder::new().kernel(&script).build().unwrap_err();
    assert!(matches!(err, ConfigError::NotAKernel { .. }), "{err}");
    assert!(
        err.to_string().contains("cargo xtask guest-kernel"),
        "{err}"
    );
    let kernel = write_guest(dir.path(), &[0xf4]);
    // A vmlinux cut short (e.g. an interrupted copy) is caught by the builder, naming the segment.
    let truncated = dir.path().join("truncated-vmlinux");
    let bytes = std::fs::read(&kernel).unwrap();
    std::fs::write(&truncated, &bytes[..0x800]).unwrap();
    let err = VmBuilder::new().kernel(&truncated).build().unwrap_err();
    assert!(matches!(err, ConfigError::NotAKernel { .. }), "{err}");
    assert!(
        err.to_string().contains("past the end of the file"),
        "{err}"
    );
    let err = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(4)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::MemoryTooSmall { .. }), "{err}");
    let err = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(1 << 30)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::MemoryTooLarge { .. }), "{err}");
    let err = VmBuilder::new()
        .kernel(&kernel)
        .vcpus(0)
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::BadVcpuCount { .. }), "{err}");
    let err = VmBuilder::new()
        .kernel(&kernel)
        .cmdline("console=ttyS0\0")
        .build()
        .unwrap_err();
    assert!(matches!(err, ConfigError::BadCmdline { .. }), "{err}");
    let err = VmBuilder::new()
        .kernel(&kernel)
        .disk(dir.path().join("no.img"), false)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("no.img"), "{err}");
}
