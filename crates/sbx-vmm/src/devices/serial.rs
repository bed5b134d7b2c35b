//! The 16550 UART console (vm-superio) on COM1, interrupting through an irqfd.

use std::io::Write;

use vm_superio::{Serial, Trigger};
use vmm_sys_util::eventfd::EventFd;

use super::BusDevice;

/// Triggers a guest interrupt by writing an irqfd.
#[derive(Debug)]
pub struct IrqTrigger(pub EventFd);

impl Trigger for IrqTrigger {
    type E = std::io::Error;
    fn trigger(&self) -> std::io::Result<()> {
        self.0.write(1)
    }
}

/// COM1 writing to `W`.
pub struct SerialConsole<W: Write + Send> {
    uart: Serial<IrqTrigger, vm_superio::serial::NoEvents, W>,
}

impl<W: Write + Send> std::fmt::Debug for SerialConsole<W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SerialConsole").finish_non_exhaustive()
    }
}

impl<W: Write + Send> SerialConsole<W> {
    /// A console whose output goes to `out` and whose interrupt is `irq`.
    pub fn new(irq: EventFd, out: W) -> Self {
        Self {
            uart: Serial::new(IrqTrigger(irq), out),
        }
    }
}

impl<W: Write + Send> SerialConsole<W> {
    /// Queues input for the guest (raising the receive interrupt); returns how many bytes fit in the FIFO.
    pub fn enqueue_input(&mut self, bytes: &[u8]) -> usize {
        self.uart.enqueue_raw_bytes(bytes).unwrap_or(0)
    }
}

impl<W: Write + Send> BusDevice for SerialConsole<W> {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (u8::try_from(offset), data) {
            (Ok(off), [only]) if off < 8 => *only = self.uart.read(off),
            (_, data) => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if let (Ok(off), [value]) = (u8::try_from(offset), data)
            && off < 8
        {
            // An interrupt that cannot be delivered or output that cannot be written must not stop the guest.
            let _ = self.uart.write(off, *value);
            let _ = self.uart.writer_mut().flush();
        }
    }
}
