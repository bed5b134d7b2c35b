//! Virtio devices over the MMIO transport.
//!
//! # Writing a device (the plug-in contract)
//!
//! A device implements [`VirtioDevice`]; the [`mmio::MmioTransport`] does the rest — registers, feature
//! negotiation, queue setup, reset, interrupts — and the VMM's event loop calls the device when the guest notifies a
//! queue or when one of the device's host-side file descriptors is ready. The rules:
//!
//! * [`VirtioDevice::activate`] hands the device its queues, the guest memory and an [`Interrupt`] once the driver
//!   sets `DRIVER_OK`. Queues have been checked to lie in guest memory; descriptor contents have not.
//! * Everything read from guest memory is hostile: descriptor chains may loop, point outside guest memory, have zero
//!   or huge lengths or the wrong direction. Answer with an error status in the request when the protocol has one;
//!   return a [`DeviceError`] when it does not — the transport then marks the device `DEVICE_NEEDS_RESET` and stops
//!   calling it until the driver resets it. Never panic, never loop unboundedly.
//! * [`VirtioDevice::backend_fds`] lists host fds to watch (e.g. sockets); the event loop re-reads the list after
//!   every call into the device, so it may change at any time.
//! * Calls come from the single event-loop thread, with the transport locked; keep them short and non-blocking.

pub mod blk;
pub mod fs;
pub mod mmio;
pub mod rng;
pub mod vsock;

#[cfg(test)]
pub(crate) mod test_utils;

use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use virtio_queue::Queue;
use vmm_sys_util::eventfd::EventFd;

use crate::vstate::memory::GuestMemory;

/// Feature bit: the device follows virtio 1.x (the only mode the transport offers).
pub const VIRTIO_F_VERSION_1: u64 = 1 << 32;
/// Interrupt status bit: a used buffer was added.
pub const INTERRUPT_VRING: u32 = 1;
/// Interrupt status bit: the configuration (or device status) changed.
pub const INTERRUPT_CONFIG: u32 = 2;

/// Device type IDs from the virtio specification.
pub mod device_type {
    /// Block device.
    pub const BLOCK: u32 = 2;
    /// Entropy source.
    pub const RNG: u32 = 4;
    /// Socket device.
    pub const VSOCK: u32 = 19;
    /// File system device.
    pub const FS: u32 = 26;
}

/// A device fault that leaves the device unusable until the driver resets it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DeviceError {
    /// A queue's rings are malformed (e.g. an available index beyond the queue size).
    #[error("queue {queue}: {reason}")]
    Queue {
        /// Queue index.
        queue: usize,
        /// What is wrong.
        reason: String,
    },
    /// Activation failed (e.g. a missing queue).
    #[error("activation failed: {0}")]
    Activate(String),
    /// The host side failed in a way the device cannot report to the guest.
    #[error("backend: {0}")]
    Backend(String),
}

/// Raises the device's interrupt: sets a bit in the transport's interrupt status and signals the irqfd.
#[derive(Debug, Clone)]
pub struct Interrupt {
    status: Arc<AtomicU32>,
    evt: Arc<EventFd>,
}

impl Interrupt {
    /// An interrupt sharing `status` with a transport and signalling `evt`.
    pub fn new(status: Arc<AtomicU32>, evt: Arc<EventFd>) -> Self {
        Self { status, evt }
    }
    /// Tells the driver that used buffers are available.
    pub fn signal_used_queue(&self) {
        self.signal(INTERRUPT_VRING);
    }
    /// Tells the driver that the configuration or status changed.
    pub fn signal_config_change(&self) {
        self.signal(INTERRUPT_CONFIG);
    }
    fn signal(&self, bit: u32) {
        self.status.fetch_or(bit, Ordering::SeqCst);
        // A failed eventfd write means the counter is saturated: an interrupt is already pending.
        let _ = self.evt.write(1);
    }
    /// The current interrupt status bits.
    pub fn status(&self) -> u32 {
        self.status.load(Ordering::SeqCst)
    }
}

/// What a device receives when the driver sets `DRIVER_OK`.
#[derive(Debug)]
pub struct ActivateContext {
    /// Guest memory.
    pub mem: GuestMemory,
    /// The queues, in index order, as the driver configured them.
    pub queues: Vec<Queue>,
    /// Features the driver accepted.
    pub acked_features: u64,
    /// The device's interrupt.
    pub interrupt: Interrupt,
}

/// A host file descriptor the device wants the event loop to watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendFd {
    /// The fd (owned by the device; it stays open while listed).
    pub fd: RawFd,
    /// The device's name for it, passed back to [`VirtioDevice::backend_event`]; below 2^31.
    pub token: u32,
    /// Watch for readability.
    pub readable: bool,
    /// Watch for writability.
    pub writable: bool,
}

/// A virtio device behind the MMIO transport. See the [module documentation](self) for the contract.
pub trait VirtioDevice: Send {
    /// The virtio device type ([`device_type`]).
    fn device_type(&self) -> u32;
    /// Maximum size of each queue; the length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Feature bits offered; the transport adds [`VIRTIO_F_VERSION_1`].
    fn features(&self) -> u64;
    /// Reads the device-specific configuration space (out-of-range bytes read as zero).
    fn read_config(&self, offset: u64, data: &mut [u8]);
    /// Writes the configuration space (ignored by default).
    fn write_config(&mut self, _offset: u64, _data: &[u8]) {}
    /// Starts the device with its queues.
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError>;
    /// The driver notified queue `queue`.
    fn queue_notify(&mut self, queue: usize) -> Result<(), DeviceError>;
    /// Host fds to watch.
    fn backend_fds(&self) -> Vec<BackendFd> {
        Vec::new()
    }
    /// A watched fd is ready.
    fn backend_event(
        &mut self,
        _token: u32,
        _readable: bool,
        _writable: bool,
    ) -> Result<(), DeviceError> {
        Ok(())
    }
    /// The driver reset the device: drop the queues and return to the pre-activation state.
    fn reset(&mut self);
}

/// Pops the next available chain, turning a malformed available ring into a [`DeviceError`]. For device
/// implementations, here and in other crates.
pub fn next_chain<'a>(
    queue: &mut Queue,
    mem: &'a GuestMemory,
    index: usize,
) -> Result<Option<virtio_queue::DescriptorChain<&'a GuestMemory>>, DeviceError> {
    use virtio_queue::QueueOwnedT;
    let mut iter = queue.iter(mem).map_err(|e| DeviceError::Queue {
        queue: index,
        reason: e.to_string(),
    })?;
    Ok(iter.next())
}

/// Whether `chain` ends properly: its last descriptor has no NEXT flag. A chain that loops (cut off by the iterator
/// after queue-size descriptors), points past its table, has a broken indirect table or exceeds 4 GiB ends on a
/// descriptor that still says NEXT; devices return such chains unused instead of acting on part of them.
pub fn chain_is_complete<M>(chain: &virtio_queue::DescriptorChain<M>) -> bool
where
    M: std::ops::Deref + Clone,
    M::Target: vm_memory::GuestMemory,
{
    chain.clone().last().is_some_and(|d| !d.has_next())
}

/// Adds a used element (`len` = bytes the device wrote into the chain).
pub fn complete(
    queue: &mut Queue,
    mem: &GuestMemory,
    index: usize,
    head: u16,
    len: u32,
) -> Result<(), DeviceError> {
    use virtio_queue::QueueT;
    queue
        .add_used(mem, head, len)
        .map_err(|e| DeviceError::Queue {
            queue: index,
            reason: e.to_string(),
        })
}

/// Raises the used-buffer interrupt when the driver has not suppressed it.
pub fn notify_driver(queue: &mut Queue, mem: &GuestMemory, interrupt: &Interrupt) {
    use virtio_queue::QueueT;
    if queue.needs_notification(mem).unwrap_or(true) {
        interrupt.signal_used_queue();
    }
}
