//! The boot timer: the guest's init writes [`MAGIC`] to offset 0 of this MMIO page once it is ready, and the VMM
//! records the time since it started (reported by [`crate::Vm::startup_report`]).
//!
//! The same page carries the power-off register: a microVM has no ACPI, so a Linux `poweroff` just halts the CPUs
//! where no VMM can see it. sbx's guest init writes [`POWER_OFF_MAGIC`] to [`POWER_OFF_OFFSET`] instead (through
//! `/dev/mem`), which ends the VM with [`ExitReason::GuestPowerOff`]. A guest `reboot` (i8042) ends it as well.

use std::sync::Arc;

use super::BusDevice;
use crate::control::Control;
use crate::runtime::ExitReason;

/// The value init writes (the same convention as Firecracker's boot timer).
pub const MAGIC: u8 = 123;
/// Offset of the power-off register.
pub const POWER_OFF_OFFSET: u64 = 8;
/// The 32-bit value that powers the VM off ("OFF!" in little endian).
pub const POWER_OFF_MAGIC: u32 = u32::from_le_bytes(*b"OFF!");

/// The boot-timer device.
#[derive(Debug)]
pub struct BootTimer {
    control: Arc<Control>,
}

impl BootTimer {
    pub(crate) fn new(control: Arc<Control>) -> Self {
        Self { control }
    }
}

impl BusDevice for BootTimer {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset == POWER_OFF_OFFSET && data == POWER_OFF_MAGIC.to_le_bytes() {
            self.control.request_exit(ExitReason::GuestPowerOff);
            return;
        }
        if offset == 0 && data.first() == Some(&MAGIC) {
            let elapsed = self.control.started.elapsed();
            self.control.boot_ready.get_or_init(|| elapsed);
        }
    }
}
