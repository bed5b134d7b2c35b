//! Randomised hostile inputs for the guest-facing device code (the same harnesses as the fuzz targets, run with a
//! fixed seed so every test run covers a few thousand cases): descriptor tables, rings and register accesses from a
//! guest that lies about everything. The devices may fail, but must not panic, hang or touch memory outside the
//! guest's (all guest accesses go through bounds-checked vm-memory calls).

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use sbx_vmm::devices::BusDevice;
use sbx_vmm::devices::virtio::blk::{self, Disk};
use sbx_vmm::devices::virtio::mmio::MmioTransport;
use sbx_vmm::devices::virtio::rng::Rng;
use sbx_vmm::devices::virtio::vsock::Vsock;
use sbx_vmm::devices::virtio::{ActivateContext, Interrupt, VirtioDevice};
use sbx_vmm::vstate::memory::GuestMemory;
use virtio_queue::{Queue, QueueT};
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

const MEM: u64 = 0x20000;
const QUEUE_SIZE: u16 = 16;

/// xorshift64*: deterministic, no dependency.
struct Rand(u64);

impl Rand {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Mostly plausible values (inside guest memory, small lengths), sometimes extreme ones.
    fn addr(&mut self) -> u64 {
        match self.next() % 8 {
            0 => self.next(),
            1 => MEM - (self.next() % 64),
            2 => u64::MAX - (self.next() % 64),
            _ => 0x8000 + self.next() % 0x10000,
        }
    }
    fn len(&mut self) -> u32 {
        match self.next() % 8 {
            0 => 0,
            1 => u32::MAX - (self.next() % 16) as u32,
            2 => self.next() as u32,
            _ => (self.next() % 1024) as u32,
        }
    }
}

fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM as usize)]).unwrap()
}

/// Writes a random descriptor table and available ring for a queue at `base` and returns the queue.
fn hostile_queue(mem: &GuestMemory, r: &mut Rand, base: u64) -> Queue {
    for i in 0..u64::from(QUEUE_SIZE) {
        let d = base + 16 * i;
        mem.write_obj(r.addr(), GuestAddress(d)).unwrap();
        mem.write_obj(r.len(), GuestAddress(d + 8)).unwrap();
        mem.write_obj((r.next() % 8) as u16, GuestAddress(d + 12))
            .unwrap();
        let next = if r.next().is_multiple_of(4) {
            r.next() as u16
        } else {
            (r.next() % u64::from(QUEUE_SIZE)) as u16
        };
        mem.write_obj(next, GuestAddress(d + 14)).unwrap();
    }
    let avail = base + 0x1000;
    let idx = if r.next().is_multiple_of(8) {
        r.next() as u16
    } else {
        (r.next() % 20) as u16
    };
    mem.write_obj(idx, GuestAddress(avail + 2)).unwrap();
    for i in 0..u64::from(QUEUE_SIZE) {
        let head = if r.next().is_multiple_of(8) {
            r.next() as u16
        } else {
            (r.next() % 16) as u16
        };
        mem.write_obj(head, GuestAddress(avail + 4 + 2 * i))
            .unwrap();
    }
    // Random bytes where the descriptors usually point.
    let noise: Vec<u8> = (0..0x2000).flat_map(|_| r.next().to_le_bytes()).collect();
    mem.write_slice(&noise, GuestAddress(0x8000)).unwrap();
    let mut q = Queue::new(QUEUE_SIZE).unwrap();
    q.set_size(QUEUE_SIZE);
    q.set_ready(true);
    q.set_desc_table_address(Some(base as u32), Some(0));
    q.set_avail_ring_address(Some(avail as u32), Some(0));
    q.set_used_ring_address(Some((base + 0x2000) as u32), Some(0));
    q
}

fn ctx(mem: &GuestMemory, queues: Vec<Queue>) -> ActivateContext {
    ActivateContext {
        mem: mem.clone(),
        queues,
        acked_features: 1 << 32,
        interrupt: Interrupt::new(
            Arc::new(AtomicU32::new(0)),
            Arc::new(EventFd::new(0).unwrap()),
        ),
    }
}

#[test]
fn virtio_blk_survives_random_queues() {
    let mut r = Rand(0x5bd1_e995);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    std::fs::File::create(&path)
        .unwrap()
        .set_len(64 * 512)
        .unwrap();
    for i in 0..800 {
        let mem = memory();
        let q = hostile_queue(&mem, &mut r, 0);
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .unwrap();
        // The worker thread's queue routine, driven synchronously.
        let disk = Disk::new(file, i % 3 == 0, "fuzz").unwrap();
        let mut q = q;
        let interrupt = ctx(&mem, Vec::new()).interrupt;
        let _ = blk::serve_queue(&mem, &mut q, &disk, &interrupt);
    }
}

#[test]
fn vsock_survives_random_queues() {
    let mut r = Rand(0x9e37_79b9_7f4a_7c15);
    let dir = tempfile::tempdir().unwrap();
    for i in 0..500 {
        let mem = memory();
        let rx = hostile_queue(&mem, &mut r, 0);
        let tx = hostile_queue(&mem, &mut r, 0x4000);
        let mut dev = Vsock::new(3, &dir.path().join(format!("v{i}.sock"))).unwrap();
        dev.activate(ctx(&mem, vec![rx, tx, Queue::new(QUEUE_SIZE).unwrap()]))
            .unwrap();
        let _ = dev.queue_notify(1);
        let _ = dev.queue_notify(0);
    }
}

#[test]
fn mmio_register_state_machine_survives_random_accesses() {
    let mut r = Rand(0xdead_beef_cafe_f00d);
    for _ in 0..300 {
        let mem = memory();
        let _ = hostile_queue(&mem, &mut r, 0);
        let irq = Arc::new(EventFd::new(0).unwrap());
        let mut t = MmioTransport::new(Box::new(Rng::new().unwrap()), mem, irq).unwrap();
        for _ in 0..200 {
            // Bias towards the registers and values of a real initialisation sequence.
            let offset = match r.next() % 4 {
                0 => r.next() % 0x200,
                _ => [
                    0x70, 0x70, 0x20, 0x24, 0x30, 0x38, 0x44, 0x50, 0x80, 0x90, 0xa0, 0x100,
                ][(r.next() % 12) as usize],
            };
            let value = match r.next() % 3 {
                0 => r.next() as u32,
                1 => [0, 1, 3, 0xb, 0xf, 16, 0x8000][(r.next() % 7) as usize],
                _ => (r.next() % 0x20000) as u32,
            };
            let width = [1usize, 2, 4, 4, 4, 8][(r.next() % 6) as usize];
            let mut buf = [0u8; 8];
            if r.next().is_multiple_of(2) {
                t.read(offset, &mut buf[..width]);
            } else {
                buf[..4].copy_from_slice(&value.to_le_bytes());
                t.write(offset, &buf[..width]);
            }
            if r.next().is_multiple_of(8) {
                t.process_queue((r.next() % 3) as usize);
            }
        }
    }
}
