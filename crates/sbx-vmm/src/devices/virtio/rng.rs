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
    if !super::chain_is_complete(&chain) {
        return 0;
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::*;
    use virtio_queue::desc::RawDescriptor;
    use vm_memory::GuestAddress;

    const BUF: u64 = 0x10000;

    /// Runs one request made of `descs` on a fresh device; returns the used length.
    fn serve(mem: &GuestMemory, descs: &[RawDescriptor]) -> u32 {
        let mut dev = Rng::new().unwrap();
        let (mocks, ctx) = activate_ctx(mem, 1);
        mocks[0].add_desc_chains(descs, 0).unwrap();
        dev.activate(ctx).unwrap();
        dev.queue_notify(0).unwrap();
        assert_eq!(used_idx(&mocks[0]), 1, "the chain is returned");
        used(&mocks[0], 0).1
    }

    fn untouched(mem: &GuestMemory, at: u64, len: usize) -> bool {
        let mut buf = vec![0xffu8; len];
        mem.read_slice(&mut buf, GuestAddress(at)).unwrap();
        buf.iter().all(|b| *b == 0)
    }

    #[test]
    fn fills_writable_buffers() {
        let mem = memory();
        assert_eq!(serve(&mem, &[raw(BUF, 256, WRITE, 0)]), 256);
        assert!(!untouched(&mem, BUF, 256), "random bytes arrived");
    }

    #[test]
    fn hostile_descriptors_get_nothing_and_leave_memory_alone() {
        for (name, descs) in [
            ("readable-only buffer", vec![raw(BUF, 256, 0, 0)]),
            (
                "outside guest memory",
                vec![raw(0xffff_ffff_0000, 256, WRITE, 0)],
            ),
            ("zero length", vec![raw(BUF, 0, WRITE, 0)]),
            ("next index beyond the table", vec![raw(BUF, 16, NEXT, 500)]),
        ] {
            let mem = memory();
            assert_eq!(serve(&mem, &descs), 0, "{name}");
            assert!(untouched(&mem, BUF, 4096), "{name}");
        }
    }

    #[test]
    fn huge_lengths_are_capped_and_stay_inside_guest_memory() {
        let mem = memory();
        assert_eq!(
            serve(&mem, &[raw(BUF, u32::MAX, WRITE, 0)]),
            MAX_REQUEST_BYTES as u32
        );
        assert!(untouched(&mem, BUF + MAX_REQUEST_BYTES as u64, 4096));
        // A buffer running off the end of guest memory is refused; nothing is written past the end.
        let mem = memory();
        let near_end = MEM_SIZE - 100;
        assert_eq!(serve(&mem, &[raw(near_end, 4096, WRITE, 0)]), 0);
    }

    #[test]
    fn descriptor_loops_terminate() {
        let mem = memory();
        // 0 -> 1 -> 0 -> ...: the chain iterator stops after the queue size; the chain is returned unused.
        let len = serve(
            &mem,
            &[
                raw(BUF, 8192, WRITE | NEXT, 1),
                raw(BUF + 8192, 8192, WRITE | NEXT, 0),
            ],
        );
        assert_eq!(len, 0);
        assert!(untouched(&mem, BUF, 16384));
    }

    #[test]
    fn corrupt_available_index_fails_the_device() {
        let mem = memory();
        let mut dev = Rng::new().unwrap();
        let (mocks, ctx) = activate_ctx(&mem, 1);
        dev.activate(ctx).unwrap();
        mocks[0].avail().idx().store(1000);
        assert!(matches!(
            dev.queue_notify(0),
            Err(DeviceError::Queue { .. })
        ));
    }
}
