//! virtio-blk requests from a hostile guest: the input becomes the descriptor table, the available ring and the
//! contents of guest memory; the device must answer or fail, never panic, hang or touch memory outside the guest's.
#![no_main]

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use libfuzzer_sys::fuzz_target;
use sbx_vmm::devices::virtio::Interrupt;
use sbx_vmm::devices::virtio::blk::{self, Disk};
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};
use vmm_sys_util::eventfd::EventFd;

const QUEUE_SIZE: u16 = 16;

fuzz_target!(|data: &[u8]| {
    let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), 0x10000)]).unwrap();
    // Layout: descriptor table at 0, available ring at 0x1000, used ring at 0x2000, the rest of the input from 0x3000.
    let (table, rest) = data.split_at(data.len().min(16 * usize::from(QUEUE_SIZE)));
    let (avail, rest) = rest.split_at(rest.len().min(4 + 2 * usize::from(QUEUE_SIZE)));
    mem.write_slice(table, GuestAddress(0)).unwrap();
    mem.write_slice(avail, GuestAddress(0x1000)).unwrap();
    let n = rest.len().min(0xd000);
    mem.write_slice(&rest[..n], GuestAddress(0x3000)).unwrap();

    let mut queue = Queue::new(QUEUE_SIZE).unwrap();
    queue.set_size(QUEUE_SIZE);
    queue.set_ready(true);
    queue.set_desc_table_address(Some(0), Some(0));
    queue.set_avail_ring_address(Some(0x1000), Some(0));
    queue.set_used_ring_address(Some(0x2000), Some(0));

    let file = tempfile::tempfile().unwrap();
    file.set_len(64 * 512).unwrap();
    let read_only = data.first().is_some_and(|b| b & 1 == 1);
    let disk = Disk::new(file, read_only, "fuzz").unwrap();
    let interrupt = Interrupt::new(Arc::new(AtomicU32::new(0)), Arc::new(EventFd::new(0).unwrap()));
    // The routine the device's I/O thread runs on every notification, driven synchronously.
    let _ = blk::serve_queue(&mem, &mut queue, &disk, &interrupt);
});
