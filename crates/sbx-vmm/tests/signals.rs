//! SIGTERM and SIGINT reaching a VMM that handles signals stop the VM cleanly with `ExitReason::Signal` (exit codes
//! 143 and 130). Its own test binary: the handlers are process-wide, so both signals are tested in one test.

mod common;

use std::time::{Duration, Instant};

use common::asm::Asm;
use common::{Console, skip_without_kvm, write_guest};
use sbx_vmm::{ExitReason, VmBuilder};

#[test]
fn sigterm_and_sigint_stop_the_vm_with_a_signal_exit() {
    if skip_without_kvm("sigterm_and_sigint_stop_the_vm_with_a_signal_exit") {
        return;
    }
    for (name, number) in [("TERM", 15), ("INT", 2)] {
        let reason = run_until_signal(name);
        assert_eq!(reason, ExitReason::Signal(number), "SIG{name}");
        assert_eq!(reason.exit_code(), 128 + number, "SIG{name}");
    }
}

/// Boots a guest that spins forever, sends SIG`name` to this process once it runs, and returns how the VM ended.
fn run_until_signal(name: &str) -> ExitReason {
    let mut a = Asm::new();
    a.print("up\n");
    let top = a.label();
    a.bind(top).jmp(top);
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .handle_signals(true)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let start = Instant::now();
    while !console.text().contains("up") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "guest never printed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = std::process::Command::new("kill")
        .args([&format!("-{name}"), &std::process::id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    vm.wait().unwrap()
}
