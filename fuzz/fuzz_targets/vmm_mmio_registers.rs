//! The virtio-mmio register state machine driven by arbitrary guest register accesses: any order, offset, width and
//! value. It must never panic, and queue processing after a (possibly bogus) activation must stay safe.
#![no_main]

use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use sbx_vmm::devices::BusDevice;
use sbx_vmm::devices::virtio::mmio::MmioTransport;
use sbx_vmm::devices::virtio::rng::Rng;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    // The second half of the input seeds guest memory (queues the driver may point at).
    let (ops, memory) = data.split_at(data.len() / 2);
    let n = memory.len().min(0x10000);
    mem.write_slice(&memory[..n], GuestAddress(0)).unwrap();
    let irq = Arc::new(EventFd::new(0).unwrap());
    let mut t = MmioTransport::new(Box::new(Rng::new().unwrap()), mem, irq).unwrap();
    // Each access: kind (read/write/notify), offset (u16), width selector, value (u32) = 8 bytes.
    for op in ops.chunks_exact(8) {
        let offset = u64::from(u16::from_le_bytes([op[1], op[2]])) % 0x200;
        let width = [1usize, 2, 4, 8][usize::from(op[3] & 3)];
        let value = u32::from_le_bytes([op[4], op[5], op[6], op[7]]);
        match op[0] % 3 {
            0 => {
                let mut buf = [0u8; 8];
                t.read(offset, &mut buf[..width]);
            }
            1 => {
                let mut buf = [0u8; 8];
                buf[..4].copy_from_slice(&value.to_le_bytes());
                t.write(offset, &buf[..width]);
            }
            _ => t.process_queue(value as usize % 4),
        }
    }
});
