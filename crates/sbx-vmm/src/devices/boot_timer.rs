//! The boot timer: the guest's init writes [`MAGIC`] to offset 0 of this MMIO page once it is ready, and the VMM
//! records the time since it started (reported by [`crate::Vm::startup_report`]).

use std::sync::Arc;

use super::BusDevice;
use crate::control::Control;

/// The value init writes (the same convention as Firecracker's boot timer).
pub const MAGIC: u8 = 123;

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
        if offset == 0 && data.first() == Some(&MAGIC) {
            let elapsed = self.control.started.elapsed();
            self.control.boot_ready.get_or_init(|| elapsed);
        }
    }
}
