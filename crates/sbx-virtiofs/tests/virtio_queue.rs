//! The virtio-fs framing driven through `virtio-queue`'s mock split queues, including chains a malicious driver builds.

mod common;

use std::sync::Arc;

use common::{cstr, init_body, message};
use sbx_virtiofs::abi::{ROOT_ID, opcode};
use sbx_virtiofs::virtio::{VirtioFsQueueHandler, config_space};
use sbx_virtiofs::{FileServer, ShareConfig};
use virtio_queue::Queue;
use virtio_queue::desc::{RawDescriptor, split::Descriptor as SplitDescriptor};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress, GuestMemoryMmap};

const NEXT: u16 = 1;
const WRITE: u16 = 2;
const MEM_SIZE: usize = 0x40_0000;
const QUEUE_SIZE: u16 = 16;

/// Guest memory, a mock queue at address 0, a handler on a fresh share, and a bump allocator for buffers.
struct Rig {
    mem: GuestMemoryMmap,
    handler: VirtioFsQueueHandler,
    tmp: tempfile::TempDir,
}

impl Rig {
    fn new() -> Self {
        let mem = GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0), MEM_SIZE)]).unwrap();
        let tmp = tempfile::tempdir().unwrap();
        let server = Arc::new(FileServer::new(ShareConfig::new(tmp.path())).unwrap());
        Self {
            mem,
            handler: VirtioFsQueueHandler::new(server),
            tmp,
        }
    }
}

fn desc(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(SplitDescriptor::new(addr, len, flags, next))
}

/// Used-ring entry `i` as (head id, length).
fn used(vq: &MockSplitQueue<'_, GuestMemoryMmap>, i: usize) -> (u32, u32) {
    let e = vq.used().ring().ref_at(i).unwrap().load();
    (e.id(), e.len())
}

fn reply_at(mem: &GuestMemoryMmap, addr: u64, len: usize) -> (i32, Vec<u8>) {
    let mut buf = vec![0u8; len];
    mem.read_slice(&mut buf, GuestAddress(addr)).unwrap();
    let error = i32::from_ne_bytes(buf[4..8].try_into().unwrap());
    (error, buf[16..].to_vec())
}

/// Posts `request` as one readable descriptor and a writable one of `reply_len`, at table slot `slot`.
fn post_simple(
    rig: &Rig,
    vq: &MockSplitQueue<'_, GuestMemoryMmap>,
    slot: u16,
    request: &[u8],
    reply_len: u32,
) -> u64 {
    let req_addr = 0x10_0000 + u64::from(slot) * 0x1_0000;
    let reply_addr = req_addr + 0x8000;
    rig.mem
        .write_slice(request, GuestAddress(req_addr))
        .unwrap();
    vq.add_desc_chains(
        &[
            desc(req_addr, request.len() as u32, NEXT, slot + 1),
            desc(reply_addr, reply_len, WRITE, 0),
        ],
        slot,
    )
    .unwrap();
    reply_addr
}

#[test]
fn init_and_lookup_through_a_request_queue() {
    let rig = Rig::new();
    std::fs::write(rig.tmp.path().join("hello"), b"hi").unwrap();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    let r0 = post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    let r1 = post_simple(
        &rig,
        &vq,
        2,
        &message(opcode::LOOKUP, ROOT_ID, 2, &cstr("hello")),
        4096,
    );
    let notify = rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert!(notify, "the driver is told about completed requests");
    assert_eq!(vq.used().idx().load(), 2);
    assert_eq!(
        used(&vq, 0),
        (0, 16 + 64),
        "INIT reply is header + fuse_init_out"
    );
    assert_eq!(
        used(&vq, 1),
        (2, 16 + 128),
        "LOOKUP reply is header + fuse_entry_out"
    );
    let (err, body) = reply_at(&rig.mem, r0, 80);
    assert_eq!(err, 0);
    assert_eq!(u32::from_ne_bytes(body[0..4].try_into().unwrap()), 7);
    let (err, body) = reply_at(&rig.mem, r1, 144);
    assert_eq!(err, 0);
    assert_eq!(
        u64::from_ne_bytes(body[40 + 8..40 + 16].try_into().unwrap()),
        2,
        "size of `hello`"
    );
}

#[test]
fn requests_and_replies_split_across_many_descriptors() {
    let rig = Rig::new();
    std::fs::write(rig.tmp.path().join("f"), b"").unwrap();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    post_simple(
        &rig,
        &vq,
        2,
        &message(opcode::LOOKUP, ROOT_ID, 2, &cstr("f")),
        4096,
    );
    // OPEN for writing.
    let mut open = 2u32.to_ne_bytes().to_vec();
    open.extend_from_slice(&0u32.to_ne_bytes());
    let r_open = post_simple(&rig, &vq, 4, &message(opcode::OPEN, 2, 3, &open), 4096);
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    let (err, body) = reply_at(&rig.mem, r_open, 32);
    assert_eq!(err, 0);
    let fh = u64::from_ne_bytes(body[0..8].try_into().unwrap());

    // A WRITE whose header, arguments and payload are scattered over four readable descriptors.
    let payload: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
    let mut args = fh.to_ne_bytes().to_vec();
    args.extend_from_slice(&0u64.to_ne_bytes());
    args.extend_from_slice(&(payload.len() as u32).to_ne_bytes());
    args.extend_from_slice(&[0u8; 20]);
    args.extend_from_slice(&payload);
    let msg = message(opcode::WRITE, 2, 4, &args);
    let cuts = [0usize, 7, 45, 3000, msg.len()];
    let base = 0x20_0000u64;
    let mut descs = Vec::new();
    for (i, w) in cuts.windows(2).enumerate() {
        let addr = base + i as u64 * 0x4000;
        rig.mem
            .write_slice(&msg[w[0]..w[1]], GuestAddress(addr))
            .unwrap();
        descs.push(desc(addr, (w[1] - w[0]) as u32, NEXT, 6 + i as u16 + 1));
    }
    descs.push(desc(0x30_0000, 10, WRITE | NEXT, 11));
    descs.push(desc(0x30_1000, 100, WRITE, 0));
    vq.add_desc_chains(&descs, 6).unwrap();
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert_eq!(used(&vq, 3), (6, 24), "write_out reply");
    assert_eq!(std::fs::read(rig.tmp.path().join("f")).unwrap(), payload);
    // The 24-byte reply was split 10 + 14 across the two writable descriptors.
    let mut part = [0u8; 14];
    rig.mem
        .read_slice(&mut part, GuestAddress(0x30_1000))
        .unwrap();
    assert_eq!(
        u32::from_ne_bytes(part[6..10].try_into().unwrap()),
        payload.len() as u32
    );
}

/// Runs one malicious chain after INIT and checks it completes with length 0 and writes nothing.
fn assert_rejected(build: impl FnOnce(&Rig, &MockSplitQueue<'_, GuestMemoryMmap>)) {
    let rig = Rig::new();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    build(&rig, &vq);
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert_eq!(
        vq.used().idx().load(),
        2,
        "the bad chain is still completed (the driver is not left hanging)"
    );
    assert_eq!(used(&vq, 1).1, 0, "nothing written for a rejected chain");
    let mut reply = [0u8; 64];
    rig.mem
        .read_slice(&mut reply, GuestAddress(0x38_0000))
        .unwrap();
    assert!(reply.iter().all(|&b| b == 0), "reply area untouched");
}

#[test]
fn short_request_is_rejected() {
    assert_rejected(|rig, vq| {
        rig.mem
            .write_slice(&[0xAA; 20], GuestAddress(0x20_0000))
            .unwrap();
        vq.add_desc_chains(
            &[desc(0x20_0000, 20, NEXT, 3), desc(0x38_0000, 64, WRITE, 0)],
            2,
        )
        .unwrap();
    });
}

#[test]
fn descriptor_outside_guest_memory_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        vq.add_desc_chains(
            &[
                desc(0x20_0000, 40, NEXT, 3),
                desc(MEM_SIZE as u64 - 8, 16, NEXT, 4),
                desc(0x38_0000, 64, WRITE, 0),
            ],
            2,
        )
        .unwrap();
    });
}

#[test]
fn reply_buffer_outside_guest_memory_is_rejected() {
    let rig = Rig::new();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
    rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
    vq.add_desc_chains(
        &[
            desc(0x20_0000, msg.len() as u32, NEXT, 3),
            desc(u64::MAX - 100, 4096, WRITE, 0),
        ],
        2,
    )
    .unwrap();
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert_eq!(used(&vq, 1).1, 0);
}

#[test]
fn writable_only_chain_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        // The request bytes sit in a device-writable descriptor: they must not be read as a request.
        vq.add_desc_chains(
            &[
                desc(0x20_0000, msg.len() as u32, WRITE | NEXT, 3),
                desc(0x38_0000, 64, WRITE, 0),
            ],
            2,
        )
        .unwrap();
    });
}

#[test]
fn readable_after_writable_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        vq.add_desc_chains(
            &[
                desc(0x38_0000, 64, WRITE | NEXT, 3),
                desc(0x20_0000, msg.len() as u32, NEXT, 4),
                desc(0x38_1000, 64, WRITE, 0),
            ],
            2,
        )
        .unwrap();
    });
}

#[test]
fn looping_chain_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        // 2 → 3 → 2 → ... never ends.
        vq.add_desc_chains(
            &[
                desc(0x20_0000, msg.len() as u32, NEXT, 3),
                desc(0x20_0000, 8, NEXT, 2),
            ],
            2,
        )
        .unwrap();
    });
}

#[test]
fn next_index_outside_the_table_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        vq.add_desc_chains(&[desc(0x20_0000, msg.len() as u32, NEXT, 999)], 2)
            .unwrap();
    });
}

#[test]
fn oversized_request_is_rejected() {
    assert_rejected(|rig, vq| {
        let msg = message(opcode::GETATTR, ROOT_ID, 9, &[0u8; 16]);
        rig.mem.write_slice(&msg, GuestAddress(0x20_0000)).unwrap();
        // Claims 3 MiB of readable data: more than any FUSE request may be.
        vq.add_desc_chains(
            &[
                desc(0x10_0000, 3 << 20, NEXT, 3),
                desc(0x38_0000, 64, WRITE, 0),
            ],
            2,
        )
        .unwrap();
    });
}

#[test]
fn reply_too_large_for_the_buffer_gets_an_error_header() {
    let rig = Rig::new();
    std::fs::write(rig.tmp.path().join("f"), vec![7u8; 8192]).unwrap();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    post_simple(
        &rig,
        &vq,
        2,
        &message(opcode::LOOKUP, ROOT_ID, 2, &cstr("f")),
        4096,
    );
    let mut open = 0u32.to_ne_bytes().to_vec();
    open.extend_from_slice(&0u32.to_ne_bytes());
    let r = post_simple(&rig, &vq, 4, &message(opcode::OPEN, 2, 3, &open), 4096);
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    let fh = u64::from_ne_bytes(reply_at(&rig.mem, r, 32).1[0..8].try_into().unwrap());
    let mut read = fh.to_ne_bytes().to_vec();
    read.extend_from_slice(&0u64.to_ne_bytes());
    read.extend_from_slice(&8192u32.to_ne_bytes());
    read.extend_from_slice(&[0u8; 20]);
    // Only 100 writable bytes for an 8 KiB read.
    let r = post_simple(&rig, &vq, 6, &message(opcode::READ, 2, 4, &read), 100);
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert_eq!(used(&vq, 3).1, 16);
    assert_eq!(reply_at(&rig.mem, r, 16).0, -libc::EIO);
}

#[test]
fn hiprio_forget_has_no_reply_and_drops_the_inode() {
    let rig = Rig::new();
    std::fs::write(rig.tmp.path().join("f"), b"").unwrap();
    let vq = MockSplitQueue::new(&rig.mem, QUEUE_SIZE);
    let mut q: Queue = vq.create_queue().unwrap();
    post_simple(
        &rig,
        &vq,
        0,
        &message(opcode::INIT, 0, 1, &init_body()),
        4096,
    );
    post_simple(
        &rig,
        &vq,
        2,
        &message(opcode::LOOKUP, ROOT_ID, 2, &cstr("f")),
        4096,
    );
    rig.handler.process_queue(&mut q, &rig.mem).unwrap();
    assert_eq!(rig.handler.server().stats().inodes, 2);
    // The high-priority queue: a FORGET in one readable descriptor, no writable part.
    let hvq = MockSplitQueue::create(&rig.mem, GuestAddress(0x8000), QUEUE_SIZE);
    let mut hq: Queue = hvq.create_queue().unwrap();
    let msg = message(opcode::FORGET, 2, 0, &1u64.to_ne_bytes());
    rig.mem.write_slice(&msg, GuestAddress(0x28_0000)).unwrap();
    hvq.add_desc_chains(&[desc(0x28_0000, msg.len() as u32, 0, 0)], 0)
        .unwrap();
    rig.handler.process_queue(&mut hq, &rig.mem).unwrap();
    assert_eq!(hvq.used().idx().load(), 1);
    assert_eq!(used(&hvq, 0).1, 0);
    assert_eq!(rig.handler.server().stats().inodes, 1);
}

#[test]
fn config_space_holds_the_tag_and_queue_count() {
    let cfg = config_space("workspace", 1).unwrap();
    assert_eq!(&cfg[..9], b"workspace");
    assert!(cfg[9..36].iter().all(|&b| b == 0));
    assert_eq!(u32::from_le_bytes(cfg[36..40].try_into().unwrap()), 1);
    assert!(config_space("", 1).is_err());
    assert!(config_space(&"x".repeat(37), 1).is_err());
    assert!(config_space("a\0b", 1).is_err());
    assert!(config_space(&"x".repeat(36), 1).is_ok());
}
