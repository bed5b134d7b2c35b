//! The virtio-mmio transport (virtio 1.x, "version 2" register layout) and its register state machine.
//!
//! The state machine follows the specification's driver initialisation sequence (ACKNOWLEDGE → DRIVER → feature
//! negotiation → FEATURES_OK → queue setup → DRIVER_OK) and refuses anything out of order: feature writes after
//! FEATURES_OK, queue setup outside the negotiation window, FEATURES_OK with features the device did not offer, or
//! DRIVER_OK with queues outside guest memory. A device fault sets DEVICE_NEEDS_RESET; writing 0 resets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::{Queue, QueueT};
use vmm_sys_util::eventfd::EventFd;

use super::{
    ActivateContext, DeviceError, INTERRUPT_CONFIG, Interrupt, VIRTIO_F_VERSION_1, VirtioDevice,
};
use crate::devices::BusDevice;
use crate::vstate::memory::GuestMemory;

/// Register offsets.
pub mod reg {
    #![allow(missing_docs)]
    pub const MAGIC: u64 = 0x000;
    pub const VERSION: u64 = 0x004;
    pub const DEVICE_ID: u64 = 0x008;
    pub const VENDOR_ID: u64 = 0x00c;
    pub const DEVICE_FEATURES: u64 = 0x010;
    pub const DEVICE_FEATURES_SEL: u64 = 0x014;
    pub const DRIVER_FEATURES: u64 = 0x020;
    pub const DRIVER_FEATURES_SEL: u64 = 0x024;
    pub const QUEUE_SEL: u64 = 0x030;
    pub const QUEUE_NUM_MAX: u64 = 0x034;
    pub const QUEUE_NUM: u64 = 0x038;
    pub const QUEUE_READY: u64 = 0x044;
    pub const QUEUE_NOTIFY: u64 = 0x050;
    pub const INTERRUPT_STATUS: u64 = 0x060;
    pub const INTERRUPT_ACK: u64 = 0x064;
    pub const STATUS: u64 = 0x070;
    pub const QUEUE_DESC_LOW: u64 = 0x080;
    pub const QUEUE_DESC_HIGH: u64 = 0x084;
    pub const QUEUE_DRIVER_LOW: u64 = 0x090;
    pub const QUEUE_DRIVER_HIGH: u64 = 0x094;
    pub const QUEUE_DEVICE_LOW: u64 = 0x0a0;
    pub const QUEUE_DEVICE_HIGH: u64 = 0x0a4;
    pub const CONFIG_GENERATION: u64 = 0x0fc;
    pub const CONFIG: u64 = 0x100;
}

/// Device status bits.
pub mod status {
    #![allow(missing_docs)]
    pub const ACKNOWLEDGE: u32 = 1;
    pub const DRIVER: u32 = 2;
    pub const DRIVER_OK: u32 = 4;
    pub const FEATURES_OK: u32 = 8;
    pub const DEVICE_NEEDS_RESET: u32 = 64;
    pub const FAILED: u32 = 128;
}

/// "virt" in little endian.
pub const MAGIC_VALUE: u32 = 0x7472_6976;
/// Vendor ID reported to the guest ("SBX\0").
pub const VENDOR_ID: u32 = 0x0058_4253;

/// One virtio device behind its MMIO registers.
pub struct MmioTransport {
    device: Box<dyn VirtioDevice>,
    mem: GuestMemory,
    queues: Vec<Queue>,
    /// Per queue: the driver wrote a size the queue cannot take (0, above the maximum, not a power of two).
    bad_size: Vec<bool>,
    queue_evts: Vec<Arc<EventFd>>,
    interrupt: Interrupt,
    interrupt_status: Arc<AtomicU32>,
    status: u32,
    device_features_sel: u32,
    driver_features_sel: u32,
    driver_features: u64,
    queue_sel: u32,
    config_generation: u32,
    activated: bool,
    failed: bool,
}

impl std::fmt::Debug for MmioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmioTransport")
            .field("device_type", &self.device.device_type())
            .field("status", &self.status)
            .field("activated", &self.activated)
            .finish_non_exhaustive()
    }
}

impl MmioTransport {
    /// Wraps `device`; `irq` is the eventfd bound to its interrupt line.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestMemory,
        irq: Arc<EventFd>,
    ) -> std::io::Result<Self> {
        let queues = Self::fresh_queues(device.as_ref());
        let queue_evts = (0..queues.len())
            .map(|_| EventFd::new(vmm_sys_util::eventfd::EFD_NONBLOCK).map(Arc::new))
            .collect::<std::io::Result<Vec<_>>>()?;
        let interrupt_status = Arc::new(AtomicU32::new(0));
        Ok(Self {
            device,
            mem,
            bad_size: vec![false; queues.len()],
            queues,
            queue_evts,
            interrupt: Interrupt::new(interrupt_status.clone(), irq),
            interrupt_status,
            status: 0,
            device_features_sel: 0,
            driver_features_sel: 0,
            driver_features: 0,
            queue_sel: 0,
            config_generation: 0,
            activated: false,
            failed: false,
        })
    }

    fn fresh_queues(device: &dyn VirtioDevice) -> Vec<Queue> {
        device
            .queue_max_sizes()
            .iter()
            // A size the queue type rejects (zero or not a power of two) becomes the largest valid one.
            .map(|max| Queue::new(*max).or_else(|_| Queue::new(256)))
            .filter_map(Result::ok)
            .collect()
    }

    /// The eventfds the guest's queue notifications land on (registered as ioeventfds by the VMM).
    pub fn queue_evts(&self) -> &[Arc<EventFd>] {
        &self.queue_evts
    }

    /// The device status register.
    pub fn status(&self) -> u32 {
        self.status
    }

    /// Whether the driver set DRIVER_OK and the device accepted it.
    pub fn is_activated(&self) -> bool {
        self.activated
    }

    /// The wrapped device.
    pub fn device(&self) -> &dyn VirtioDevice {
        self.device.as_ref()
    }

    fn offered_features(&self) -> u64 {
        self.device.features() | VIRTIO_F_VERSION_1
    }

    fn selected_queue(&mut self) -> Option<&mut Queue> {
        self.queues.get_mut(self.queue_sel as usize)
    }

    fn queue_setup_allowed(&self) -> bool {
        self.status & status::FEATURES_OK != 0
            && self.status & status::DRIVER_OK == 0
            && !self.failed
    }

    /// Marks the device broken: DEVICE_NEEDS_RESET plus a configuration-change interrupt.
    fn fail(&mut self, _err: &DeviceError) {
        self.failed = true;
        self.status |= status::DEVICE_NEEDS_RESET;
        self.interrupt.signal_config_change();
    }

    /// The event loop calls this when queue `index` was notified.
    pub fn process_queue(&mut self, index: usize) {
        if !self.activated || self.failed {
            return;
        }
        if let Err(e) = self.device.queue_notify(index) {
            self.fail(&e);
        }
    }

    /// The event loop calls this when a backend fd is ready.
    pub fn process_backend(&mut self, token: u32, readable: bool, writable: bool) {
        if !self.activated || self.failed {
            return;
        }
        if let Err(e) = self.device.backend_event(token, readable, writable) {
            self.fail(&e);
        }
    }

    /// Backend fds to watch (none unless active).
    pub fn backend_fds(&self) -> Vec<super::BackendFd> {
        if self.activated && !self.failed {
            self.device.backend_fds()
        } else {
            Vec::new()
        }
    }

    fn reset(&mut self) {
        if self.activated {
            self.device.reset();
        }
        self.queues = Self::fresh_queues(self.device.as_ref());
        self.bad_size = vec![false; self.queues.len()];
        self.status = 0;
        self.device_features_sel = 0;
        self.driver_features_sel = 0;
        self.driver_features = 0;
        self.queue_sel = 0;
        self.activated = false;
        self.failed = false;
        self.interrupt_status.store(0, Ordering::SeqCst);
    }

    fn write_status(&mut self, value: u32) {
        use status::*;
        if value == 0 {
            self.reset();
            return;
        }
        // Bits may only be added, one stage at a time; FAILED may be set at any point.
        if value & self.status != self.status {
            return;
        }
        let added = value & !self.status;
        match added {
            FAILED => self.status |= FAILED,
            ACKNOWLEDGE if self.status == 0 => self.status = value,
            DRIVER if self.status == ACKNOWLEDGE => self.status = value,
            FEATURES_OK if self.status == ACKNOWLEDGE | DRIVER => {
                let offered = self.offered_features();
                // The driver must accept VERSION_1 and nothing the device did not offer; otherwise FEATURES_OK does
                // not stick and the driver sees the negotiation failed.
                if self.driver_features & !offered == 0
                    && self.driver_features & VIRTIO_F_VERSION_1 != 0
                {
                    self.status = value;
                }
            }
            DRIVER_OK if self.status == ACKNOWLEDGE | DRIVER | FEATURES_OK => self.activate(value),
            _ => {}
        }
    }

    fn activate(&mut self, value: u32) {
        let all_valid = self
            .queues
            .iter()
            .zip(&self.bad_size)
            .all(|(q, bad)| !q.ready() || (!bad && q.is_valid(&self.mem)));
        if !all_valid {
            self.status = value | status::DEVICE_NEEDS_RESET;
            self.failed = true;
            self.interrupt.signal_config_change();
            return;
        }
        // The device takes the configured queues; the transport keeps fresh ones that mirror size and readiness for
        // register reads.
        let mut mirror = Self::fresh_queues(self.device.as_ref());
        for (m, q) in mirror.iter_mut().zip(&self.queues) {
            m.set_size(q.size());
            m.set_ready(q.ready());
        }
        let queues = std::mem::replace(&mut self.queues, mirror);
        let ctx = ActivateContext {
            mem: self.mem.clone(),
            queues,
            acked_features: self.driver_features,
            interrupt: self.interrupt.clone(),
        };
        self.status = value;
        match self.device.activate(ctx) {
            Ok(()) => self.activated = true,
            Err(e) => self.fail(&e),
        }
    }

    fn write_queue_reg(&mut self, offset: u64, value: u32) {
        if !self.queue_setup_allowed() {
            return;
        }
        let sel = self.queue_sel as usize;
        let Some(queue) = self.queues.get_mut(sel) else {
            return;
        };
        match offset {
            reg::QUEUE_NUM => {
                let ok = u16::try_from(value)
                    .is_ok_and(|v| v != 0 && v <= queue.max_size() && v.is_power_of_two());
                if ok {
                    queue.set_size(value as u16);
                }
                self.bad_size[sel] = !ok;
            }
            reg::QUEUE_READY => queue.set_ready(value == 1),
            reg::QUEUE_DESC_LOW => queue.set_desc_table_address(Some(value), None),
            reg::QUEUE_DESC_HIGH => queue.set_desc_table_address(None, Some(value)),
            reg::QUEUE_DRIVER_LOW => queue.set_avail_ring_address(Some(value), None),
            reg::QUEUE_DRIVER_HIGH => queue.set_avail_ring_address(None, Some(value)),
            reg::QUEUE_DEVICE_LOW => queue.set_used_ring_address(Some(value), None),
            reg::QUEUE_DEVICE_HIGH => queue.set_used_ring_address(None, Some(value)),
            _ => {}
        }
    }

    fn read_register(&mut self, offset: u64) -> u32 {
        match offset {
            reg::MAGIC => MAGIC_VALUE,
            reg::VERSION => 2,
            reg::DEVICE_ID => self.device.device_type(),
            reg::VENDOR_ID => VENDOR_ID,
            reg::DEVICE_FEATURES => match self.device_features_sel {
                0 => self.offered_features() as u32,
                1 => (self.offered_features() >> 32) as u32,
                _ => 0,
            },
            reg::QUEUE_NUM_MAX => self.selected_queue().map_or(0, |q| u32::from(q.max_size())),
            reg::QUEUE_READY => self.selected_queue().map_or(0, |q| u32::from(q.ready())),
            reg::INTERRUPT_STATUS => self.interrupt_status.load(Ordering::SeqCst),
            reg::STATUS => self.status,
            reg::CONFIG_GENERATION => self.config_generation,
            _ => 0,
        }
    }

    fn write_register(&mut self, offset: u64, value: u32) {
        let negotiating = self.status == status::ACKNOWLEDGE | status::DRIVER;
        match offset {
            reg::DEVICE_FEATURES_SEL => self.device_features_sel = value,
            reg::DRIVER_FEATURES_SEL => self.driver_features_sel = value,
            reg::DRIVER_FEATURES if negotiating => match self.driver_features_sel {
                0 => {
                    self.driver_features = (self.driver_features & !0xffff_ffff) | u64::from(value)
                }
                1 => {
                    self.driver_features =
                        (self.driver_features & 0xffff_ffff) | (u64::from(value) << 32)
                }
                _ => {}
            },
            reg::QUEUE_SEL => self.queue_sel = value,
            reg::QUEUE_NOTIFY => {
                // Reached only without an ioeventfd (KVM consumes the write otherwise): forward to the event loop.
                if let Some(evt) = self.queue_evts.get(value as usize) {
                    let _ = evt.write(1);
                }
            }
            reg::INTERRUPT_ACK => {
                self.interrupt_status.fetch_and(!value, Ordering::SeqCst);
            }
            reg::STATUS => self.write_status(value),
            reg::QUEUE_NUM
            | reg::QUEUE_READY
            | reg::QUEUE_DESC_LOW
            | reg::QUEUE_DESC_HIGH
            | reg::QUEUE_DRIVER_LOW
            | reg::QUEUE_DRIVER_HIGH
            | reg::QUEUE_DEVICE_LOW
            | reg::QUEUE_DEVICE_HIGH => self.write_queue_reg(offset, value),
            _ => {}
        }
    }
}

impl BusDevice for MmioTransport {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if offset >= reg::CONFIG {
            data.fill(0);
            self.device.read_config(offset - reg::CONFIG, data);
            return;
        }
        // Registers are 32-bit and aligned; anything else reads as zero.
        if data.len() != 4 || !offset.is_multiple_of(4) {
            data.fill(0);
            return;
        }
        data.copy_from_slice(&self.read_register(offset).to_le_bytes());
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if offset >= reg::CONFIG {
            // Config writes are only meaningful while the driver is setting the device up or running it.
            if self.status & status::DRIVER != 0 && !self.failed {
                self.device.write_config(offset - reg::CONFIG, data);
                self.config_generation = self.config_generation.wrapping_add(1);
            }
            return;
        }
        let Ok(bytes) = <[u8; 4]>::try_from(data) else {
            return;
        };
        if offset.is_multiple_of(4) {
            self.write_register(offset, u32::from_le_bytes(bytes));
        }
    }
}

/// Whether [`INTERRUPT_CONFIG`] is pending (for tests and diagnostics).
pub fn config_interrupt_pending(transport: &MmioTransport) -> bool {
    transport.interrupt_status.load(Ordering::SeqCst) & INTERRUPT_CONFIG != 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::rng::Rng;
    use vm_memory::GuestAddress;

    fn transport() -> MmioTransport {
        let mem = GuestMemory::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap();
        let irq = Arc::new(EventFd::new(0).unwrap());
        MmioTransport::new(Box::new(Rng::new().unwrap()), mem, irq).unwrap()
    }

    fn r(t: &mut MmioTransport, off: u64) -> u32 {
        let mut b = [0u8; 4];
        t.read(off, &mut b);
        u32::from_le_bytes(b)
    }

    fn w(t: &mut MmioTransport, off: u64, v: u32) {
        t.write(off, &v.to_le_bytes());
    }

    fn negotiate(t: &mut MmioTransport) {
        w(t, reg::STATUS, status::ACKNOWLEDGE);
        w(t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(t, reg::DRIVER_FEATURES_SEL, 1);
        w(t, reg::DRIVER_FEATURES, 1);
        w(
            t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
    }

    fn setup_queue(t: &mut MmioTransport, desc: u64) {
        w(t, reg::QUEUE_SEL, 0);
        w(t, reg::QUEUE_NUM, 16);
        w(t, reg::QUEUE_DESC_LOW, desc as u32);
        w(t, reg::QUEUE_DESC_HIGH, (desc >> 32) as u32);
        w(t, reg::QUEUE_DRIVER_LOW, 0x2000);
        w(t, reg::QUEUE_DEVICE_LOW, 0x3000);
        w(t, reg::QUEUE_READY, 1);
    }

    #[test]
    fn identification_registers() {
        let mut t = transport();
        assert_eq!(r(&mut t, reg::MAGIC), MAGIC_VALUE);
        assert_eq!(r(&mut t, reg::VERSION), 2);
        assert_eq!(r(&mut t, reg::DEVICE_ID), super::super::device_type::RNG);
        w(&mut t, reg::DEVICE_FEATURES_SEL, 1);
        assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 1, "VERSION_1 is offered");
        // Unaligned and odd-sized accesses read zero and change nothing.
        let mut b = [0u8; 2];
        t.read(reg::MAGIC, &mut b);
        assert_eq!(b, [0, 0]);
        t.write(reg::STATUS + 1, &[1, 0, 0, 0]);
        assert_eq!(r(&mut t, reg::STATUS), 0);
    }

    #[test]
    fn full_negotiation_activates() {
        let mut t = transport();
        negotiate(&mut t);
        assert_eq!(
            r(&mut t, reg::STATUS) & status::FEATURES_OK,
            status::FEATURES_OK
        );
        setup_queue(&mut t, 0x1000);
        w(&mut t, reg::STATUS, 0xf);
        assert!(t.is_activated());
        assert_eq!(r(&mut t, reg::STATUS), 0xf);
        w(&mut t, reg::STATUS, 0);
        assert!(!t.is_activated());
        assert_eq!(r(&mut t, reg::STATUS), 0);
    }

    #[test]
    fn features_not_offered_are_refused() {
        let mut t = transport();
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 0);
        w(&mut t, reg::DRIVER_FEATURES, 1 << 20);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 1);
        w(&mut t, reg::DRIVER_FEATURES, 1);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn legacy_driver_without_version_1_is_refused() {
        let mut t = transport();
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK,
        );
        assert_eq!(r(&mut t, reg::STATUS) & status::FEATURES_OK, 0);
    }

    #[test]
    fn out_of_order_status_is_ignored() {
        let mut t = transport();
        w(&mut t, reg::STATUS, 0xf);
        assert_eq!(r(&mut t, reg::STATUS), 0);
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        w(
            &mut t,
            reg::STATUS,
            status::ACKNOWLEDGE | status::DRIVER | status::DRIVER_OK,
        );
        assert_eq!(r(&mut t, reg::STATUS), status::ACKNOWLEDGE);
        assert!(!t.is_activated());
    }

    #[test]
    fn queue_setup_outside_window_is_ignored() {
        let mut t = transport();
        w(&mut t, reg::QUEUE_NUM, 16);
        w(&mut t, reg::QUEUE_READY, 1);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
        // A queue selector beyond the device's queues reads zero and accepts nothing.
        negotiate(&mut t);
        w(&mut t, reg::QUEUE_SEL, 7);
        assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), 0);
        w(&mut t, reg::QUEUE_READY, 1);
        assert_eq!(r(&mut t, reg::QUEUE_READY), 0);
    }

    #[test]
    fn queue_outside_guest_memory_fails_activation() {
        let mut t = transport();
        negotiate(&mut t);
        setup_queue(&mut t, 0xffff_ffff_ffff_0000);
        w(&mut t, reg::STATUS, 0xf);
        assert!(!t.is_activated());
        assert_ne!(r(&mut t, reg::STATUS) & status::DEVICE_NEEDS_RESET, 0);
        assert!(config_interrupt_pending(&t));
        // Reset recovers.
        w(&mut t, reg::STATUS, 0);
        negotiate(&mut t);
        setup_queue(&mut t, 0x1000);
        w(&mut t, reg::STATUS, 0xf);
        assert!(t.is_activated());
    }

    #[test]
    fn bad_queue_sizes_fail_activation() {
        for size in [0u32, 3, 1 << 16, u32::MAX] {
            let mut t = transport();
            negotiate(&mut t);
            setup_queue(&mut t, 0x1000);
            w(&mut t, reg::QUEUE_NUM, size);
            w(&mut t, reg::STATUS, 0xf);
            assert!(!t.is_activated(), "queue size {size}");
        }
    }

    #[test]
    fn feature_writes_after_features_ok_are_ignored() {
        let mut t = transport();
        negotiate(&mut t);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 0);
        w(&mut t, reg::DRIVER_FEATURES, 0xffff_ffff);
        setup_queue(&mut t, 0x1000);
        w(&mut t, reg::STATUS, 0xf);
        assert!(t.is_activated());
    }
}
