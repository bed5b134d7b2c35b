//! vsock packets from a hostile guest: the input becomes the TX and RX descriptor tables, rings and packet bytes;
//! the device must answer with RST, drop the packet or fail, never panic or hang.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use libfuzzer_sys::fuzz_target;
use sbx_vmm::devices::virtio::vsock::Vsock;
use sbx_vmm::devices::virtio::{ActivateContext, Interrupt, VirtioDevice};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const QUEUE_SIZE: u16 = 16;

fn queue(base: u64) -> Queue {
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(QUEUE_SIZE);
    q.set_ready(true);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some((base + 0x1000) as u32), Some(0));
    q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
    q
}

fuzz_target!(|data: &[u8]| {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x20000)]).unwrap();
    // RX queue at 0, TX queue at 0x4000 (tables and rings from the input), packet bytes from 0x8000.
    let mut rest = data;
    for base in [0u64, 0x4000] {
        let (table, r) = rest.split_at(rest.len().min(256));
        let (avail, r) = r.split_at(r.len().min(36));
        mem.write_slice(table, GuestAddress(base)).unwrap();
        mem.write_slice(avail, GuestAddress(base + 0x1000)).unwrap();
        rest = r;
    }
    let n = rest.len().min(0x18000);
    mem.write_slice(&rest[..n], GuestAddress(0x8000)).unwrap();

    let dir = std::env::temp_dir();
    let id = COUNTER.fetch_add(1, Ordering::Relaxed);
    let uds = dir.join(format!("sbx-fuzz-vsock-{}-{id}.sock", std::process::id()));
    let Ok(mut dev) = Vsock::new(3, &uds) else { return };
    let interrupt = Interrupt::new(Arc::new(AtomicU32::new(0)), Arc::new(EventFd::new(0).unwrap()));
    dev.activate(ActivateContext {
        mem: mem.clone(),
        queues: vec![queue(0), queue(0x4000), queue(0x8000)],
        acked_features: 1 << 32,
        interrupt,
    })
    .unwrap();
    let _ = dev.queue_notify(1);
    let _ = dev.queue_notify(0);
});
