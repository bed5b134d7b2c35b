//! virtio-rng: fills the guest's writable buffers from the host's `getrandom`.

use virtio_queue::{DescriptorChain, Queue};
use vm_memory::{Address, Bytes};

use super::{
    ActivateContext, DeviceError, Interrupt, VirtioDevice, complete, device_type, next_chain,
    notify_driver,
};
use crate::vstate::memory::GuestMemory;

/// Largest number of bytes served per request (a guest asking for 4 GiB gets this much).
pub const MAX_REQUEST_BYTES: usize = 64 * 1024;
const QUEUE_SIZES: [u16; 1] = [256];

/// The entropy device.
#[derive(Debug, Default)]
pub struct Rng {
    active: Option<(GuestMemory, Queue, Interrupt)>,
}

impl Rng {
    /// A new, inactive device.
    pub fn new() -> std::io::Result<Self> {
        Ok(Self::default())
    }
}

/// Fills the writable descriptors of `chain` with random bytes; returns how many were written.
pub fn fill_chain(mem: &GuestMemory, chain: DescriptorChain<&GuestMemory>) -> u32 {
    let mut written = 0usize;
    let mut buf = vec![0u8; 4096];
    for desc in chain.writable() {
        let mut remaining = (desc.len() as usize).min(MAX_REQUEST_BYTES - written);
        let mut addr = desc.addr();
        while remaining > 0 {
            let n = remaining.min(buf.len());
            if rustix::rand::getrandom(&mut buf[..n], rustix::rand::GetRandomFlags::empty())
                .is_err()
            {
                return written as u32;
            }
            // An address outside guest memory ends the request with what was written so far.
            if mem.write_slice(&buf[..n], addr).is_err() {
                return written as u32;
            }
            written += n;
            remaining -= n;
            addr = match addr.checked_add(n as u64) {
                Some(a) => a,
                None => return written as u32,
            };
        }
        if written >= MAX_REQUEST_BYTES {
            break;
        }
    }
    written as u32
}

impl VirtioDevice for Rng {
    fn device_type(&self) -> u32 {
        device_type::RNG
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, _offset: u64, data: &mut [u8]) {
        data.fill(0);
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError> {
        let queue = ctx
            .queues
            .into_iter()
            .next()
            .ok_or_else(|| DeviceError::Activate("no request queue".into()))?;
        self.active = Some((ctx.mem, queue, ctx.interrupt));
        Ok(())
    }
    fn queue_notify(&mut self, _queue: usize) -> Result<(), DeviceError> {
        let Some((mem, queue, interrupt)) = &mut self.active else {
            return Ok(());
        };
        let mut used = false;
        while let Some(chain) = next_chain(queue, mem, 0)? {
            let head = chain.head_index();
            let len = fill_chain(mem, chain);
            complete(queue, mem, 0, head, len)?;
            used = true;
        }
        if used {
            notify_driver(queue, mem, interrupt);
        }
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
}
