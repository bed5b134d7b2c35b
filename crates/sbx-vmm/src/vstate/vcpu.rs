//! The vCPU run loop: one thread per vCPU, dispatching port I/O and MMIO exits to the buses.

use kvm_ioctls::{VcpuExit, VcpuFd};

use crate::control::Control;
use crate::devices::Bus;
use crate::runtime::ExitReason;

/// What a vCPU exit means for the VM.
fn handle_exit(exit: VcpuExit<'_>, pio: &Bus, mmio: &Bus, id: u8) -> Option<ExitReason> {
    const KVM_SYSTEM_EVENT_SHUTDOWN: u32 = 1;
    const KVM_SYSTEM_EVENT_RESET: u32 = 2;
    match exit {
        VcpuExit::IoIn(port, data) => {
            pio.read(u64::from(port), data);
            None
        }
        VcpuExit::IoOut(port, data) => {
            pio.write(u64::from(port), data);
            None
        }
        VcpuExit::MmioRead(addr, data) => {
            mmio.read(addr, data);
            None
        }
        VcpuExit::MmioWrite(addr, data) => {
            mmio.write(addr, data);
            None
        }
        VcpuExit::Shutdown => Some(ExitReason::GuestCrash),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_SHUTDOWN, _) => Some(ExitReason::GuestPowerOff),
        VcpuExit::SystemEvent(KVM_SYSTEM_EVENT_RESET, _) => Some(ExitReason::GuestReset),
        VcpuExit::SystemEvent(_, _) => Some(ExitReason::GuestCrash),
        // With the in-kernel irqchip KVM handles HLT itself; should a halt exit reach us, nothing can wake the vCPU.
        VcpuExit::Hlt => Some(ExitReason::GuestPowerOff),
        VcpuExit::FailEntry(reason, cpu) => Some(ExitReason::VcpuFailed {
            vcpu: id,
            reason: format!("KVM_EXIT_FAIL_ENTRY: hardware reason {reason:#x} on CPU {cpu}"),
        }),
        VcpuExit::InternalError => Some(ExitReason::VcpuFailed {
            vcpu: id,
            reason: "KVM internal error (instruction emulation failed)".into(),
        }),
        other => Some(ExitReason::VcpuFailed {
            vcpu: id,
            reason: format!("unexpected exit {other:?}"),
        }),
    }
}

/// Runs the vCPU until the VM stops; any exit that ends the VM records its reason.
pub(crate) fn run(mut vcpu: VcpuFd, id: u8, pio: &Bus, mmio: &Bus, control: &Control) {
    while !control.stopping() {
        control.mark_first_run();
        let outcome = match vcpu.run() {
            Ok(exit) => handle_exit(exit, pio, mmio, id),
            Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => None,
            Err(e) => Some(ExitReason::VcpuFailed {
                vcpu: id,
                reason: format!("KVM_RUN: {e}"),
            }),
        };
        if let Some(reason) = outcome {
            control.request_exit(reason);
        }
    }
}
