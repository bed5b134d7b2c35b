//! The device driven through the virtio-mmio register protocol, with rings laid out by `virtio-queue`'s mocks.

use std::sync::Arc;

use sbx_virtiofs::abi::{InHeader, opcode};
use sbx_virtiofs::{FileServer, ShareConfig};
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::*;
use crate::devices::bus::BusDevice;
use crate::devices::virtio::mmio::{MmioTransport, reg, status};
use crate::devices::virtio::test_utils::{NEXT, WRITE, memory, raw, used, used_idx};

/// Request and reply buffers, above the rings.
const REQ: u64 = 0x10000;
const REPLY: u64 = 0x30000;
const REPLY_LEN: u32 = 0x1000;

fn r(t: &mut MmioTransport, off: u64) -> u32 {
    let mut b = [0u8; 4];
    t.read(off, &mut b);
    u32::from_le_bytes(b)
}

fn w(t: &mut MmioTransport, off: u64, v: u32) {
    t.write(off, &v.to_le_bytes());
}

struct Rig<'a> {
    transport: MmioTransport,
    mocks: Vec<MockSplitQueue<'a, GuestMemory>>,
    mem: &'a GuestMemory,
    server: Arc<FileServer>,
    next_desc: u16,
    unique: u64,
}

impl<'a> Rig<'a> {
    /// A transport around a device for `root`, negotiated and activated as a Linux driver does.
    fn new(mem: &'a GuestMemory, root: &std::path::Path, read_only: bool) -> Self {
        let server =
            Arc::new(FileServer::new(ShareConfig::new(root).read_only(read_only)).unwrap());
        let dev = VirtioFs::new(server.clone(), "workspace").unwrap();
        let irq = Arc::new(EventFd::new(0).unwrap());
        let mut t = MmioTransport::new(Box::new(dev), mem.clone(), irq).unwrap();
        let mocks: Vec<_> = (0..2)
            .map(|i| MockSplitQueue::create(mem, GuestAddress(0x4000 * i as u64), 16))
            .collect();
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE);
        w(&mut t, reg::STATUS, status::ACKNOWLEDGE | status::DRIVER);
        w(&mut t, reg::DRIVER_FEATURES_SEL, 1);
        w(&mut t, reg::DRIVER_FEATURES, 1);
        let features_ok = status::ACKNOWLEDGE | status::DRIVER | status::FEATURES_OK;
        w(&mut t, reg::STATUS, features_ok);
        assert_eq!(r(&mut t, reg::STATUS), features_ok, "features accepted");
        for (i, m) in mocks.iter().enumerate() {
            w(&mut t, reg::QUEUE_SEL, i as u32);
            w(&mut t, reg::QUEUE_NUM, 16);
            w(&mut t, reg::QUEUE_DESC_LOW, m.desc_table_addr().0 as u32);
            w(&mut t, reg::QUEUE_DRIVER_LOW, m.avail_addr().0 as u32);
            w(&mut t, reg::QUEUE_DEVICE_LOW, m.used_addr().0 as u32);
            w(&mut t, reg::QUEUE_READY, 1);
        }
        w(&mut t, reg::STATUS, features_ok | status::DRIVER_OK);
        assert!(t.is_activated());
        Self {
            transport: t,
            mocks,
            mem,
            server,
            next_desc: 0,
            unique: 0,
        }
    }

    /// Sends one FUSE request on the request queue; returns the reply bytes (as many as the device wrote).
    fn call(&mut self, op: u32, nodeid: u64, body: &[u8]) -> Vec<u8> {
        self.unique += 1;
        let mut req = Vec::new();
        InHeader {
            len: (40 + body.len()) as u32,
            opcode: op,
            unique: self.unique,
            nodeid,
            uid: 0,
            gid: 0,
            pid: 1,
            total_extlen: 0,
        }
        .encode(&mut req);
        req.extend_from_slice(body);
        self.mem.write_slice(&req, GuestAddress(REQ)).unwrap();
        let d = self.next_desc;
        self.submit(&[
            raw(REQ, req.len() as u32, NEXT, d + 1),
            raw(REPLY, REPLY_LEN, WRITE, 0),
        ]);
        let n = used_idx(&self.mocks[REQUEST_QUEUE]);
        let (id, len) = used(&self.mocks[REQUEST_QUEUE], usize::from(n) - 1);
        assert_eq!(id, u32::from(d), "the request's chain was completed");
        let mut reply = vec![0u8; len as usize];
        self.mem
            .read_slice(&mut reply, GuestAddress(REPLY))
            .unwrap();
        if len >= 16 {
            assert_eq!(
                u64::from_ne_bytes(reply[8..16].try_into().unwrap()),
                self.unique
            );
        }
        reply
    }

    /// Places `descs` as one or more chains on the request queue and notifies it through QUEUE_NOTIFY.
    fn submit(&mut self, descs: &[virtio_queue::desc::RawDescriptor]) {
        self.mocks[REQUEST_QUEUE]
            .add_desc_chains(descs, self.next_desc)
            .unwrap();
        self.next_desc += descs.len() as u16;
        w(&mut self.transport, reg::QUEUE_NOTIFY, REQUEST_QUEUE as u32);
        self.transport.process_queue(REQUEST_QUEUE);
    }

    fn init(&mut self) {
        let body: Vec<u8> = [7u32, 38, 1 << 20, u32::MAX]
            .iter()
            .flat_map(|v| v.to_ne_bytes())
            .chain([0; 48])
            .collect();
        let reply = self.call(opcode::INIT, 0, &body);
        assert_eq!(error(&reply), 0, "FUSE_INIT succeeds");
        assert_eq!(u32_at(&reply, 16), 7, "major version 7");
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().unwrap())
}

fn error(reply: &[u8]) -> i32 {
    i32::from_ne_bytes(reply[4..8].try_into().unwrap())
}

fn name(n: &str) -> Vec<u8> {
    let mut v = n.as_bytes().to_vec();
    v.push(0);
    v
}

#[test]
fn identification_and_config_space() {
    let dir = tempfile::tempdir().unwrap();
    let mem = memory();
    let server = FileServer::new(ShareConfig::new(dir.path())).unwrap();
    let dev = VirtioFs::new(Arc::new(server), "workspace").unwrap();
    let irq = Arc::new(EventFd::new(0).unwrap());
    let mut t = MmioTransport::new(Box::new(dev), mem, irq).unwrap();
    assert_eq!(r(&mut t, reg::DEVICE_ID), 26);
    w(&mut t, reg::DEVICE_FEATURES_SEL, 1);
    assert_eq!(r(&mut t, reg::DEVICE_FEATURES), 1, "VERSION_1 only");
    w(&mut t, reg::DEVICE_FEATURES_SEL, 0);
    assert_eq!(
        r(&mut t, reg::DEVICE_FEATURES),
        0,
        "no notification queue, no DAX"
    );
    for (i, max) in [128, 1024].into_iter().enumerate() {
        w(&mut t, reg::QUEUE_SEL, i as u32);
        assert_eq!(r(&mut t, reg::QUEUE_NUM_MAX), max);
    }
    let mut tag = [0u8; 36];
    t.read(reg::CONFIG, &mut tag);
    assert_eq!(&tag[..10], b"workspace\0");
    assert!(tag[9..].iter().all(|&b| b == 0));
    assert_eq!(r(&mut t, reg::CONFIG + 36), NUM_REQUEST_QUEUES);
    // Reads past the config space are zero, not a panic.
    assert_eq!(r(&mut t, reg::CONFIG + 40), 0);
    assert_eq!(r(&mut t, reg::CONFIG + u64::from(u32::MAX)), 0);
}

#[test]
fn bad_tags_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(FileServer::new(ShareConfig::new(dir.path())).unwrap());
    for tag in ["", "a\0b", &"t".repeat(37)] {
        let err = VirtioFs::new(server.clone(), tag).unwrap_err();
        assert!(err.to_string().contains("1 to 36 bytes"), "{err}");
    }
    assert!(VirtioFs::new(server, &"t".repeat(36)).is_ok());
}

#[test]
fn init_lookup_getattr_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.txt"), b"hello, guest").unwrap();
    let mem = memory();
    let mut rig = Rig::new(&mem, dir.path(), false);
    rig.init();

    let entry = rig.call(opcode::LOOKUP, 1, &name("hello.txt"));
    assert_eq!(error(&entry), 0);
    let nodeid = u64_at(&entry, 16);
    assert!(nodeid > 1, "a fresh node id, not the root");
    assert_eq!(
        u64_at(&entry, 16 + 40 + 8),
        12,
        "entry attr carries the size"
    );

    let attr = rig.call(opcode::GETATTR, nodeid, &[0u8; 16]);
    assert_eq!(error(&attr), 0);
    assert_eq!(u64_at(&attr, 16 + 16 + 8), 12, "getattr size");

    let missing = rig.call(opcode::LOOKUP, 1, &name("absent"));
    assert_eq!(error(&missing), -libc::ENOENT);
    assert!(
        rig.transport.is_activated()
            && r(&mut rig.transport, reg::STATUS) & status::DEVICE_NEEDS_RESET == 0
    );
    assert_ne!(
        r(&mut rig.transport, reg::INTERRUPT_STATUS) & 1,
        0,
        "used-buffer interrupt raised"
    );
}

#[test]
fn malicious_chains_leave_device_alive_and_host_untouched() {
    let parent = tempfile::tempdir().unwrap();
    let share = parent.path().join("share");
    std::fs::create_dir(&share).unwrap();
    std::fs::write(parent.path().join("secret"), b"host only").unwrap();
    let mem = memory();
    let mut rig = Rig::new(&mem, &share, false);
    rig.init();

    let mut mkdir_escape = Vec::new();
    InHeader {
        len: 40 + 8 + 3,
        opcode: opcode::MKDIR,
        unique: 99,
        nodeid: 1,
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
    }
    .encode(&mut mkdir_escape);
    mkdir_escape.extend_from_slice(&0o755u32.to_ne_bytes());
    mkdir_escape.extend_from_slice(&0u32.to_ne_bytes());
    mkdir_escape.extend_from_slice(b"..\0");
    mem.write_slice(&mkdir_escape, GuestAddress(REQ)).unwrap();
    let base = rig.next_desc;
    // A chain that loops back on itself.
    rig.submit(&[
        raw(REQ, mkdir_escape.len() as u32, NEXT, base + 1),
        raw(REPLY, REPLY_LEN, WRITE | NEXT, base),
    ]);
    // A readable descriptor after a writable one.
    let base = rig.next_desc;
    rig.submit(&[
        raw(REPLY, REPLY_LEN, WRITE | NEXT, base + 1),
        raw(REQ, mkdir_escape.len() as u32, 0, 0),
    ]);
    // A request pointing outside guest memory.
    let base = rig.next_desc;
    rig.submit(&[
        raw(1 << 40, 64, NEXT, base + 1),
        raw(REPLY, REPLY_LEN, WRITE, 0),
    ]);
    // A request shorter than a FUSE header, and one with no room for a reply.
    let base = rig.next_desc;
    rig.submit(&[raw(REQ, 8, NEXT, base + 1), raw(REPLY, REPLY_LEN, WRITE, 0)]);
    rig.submit(&[raw(REQ, mkdir_escape.len() as u32, 0, 0)]);

    let q = &rig.mocks[REQUEST_QUEUE];
    let n = used_idx(q);
    assert_eq!(n, 6, "init plus every bad chain completed");
    for i in 1..usize::from(n) - 1 {
        assert_eq!(
            used(q, i).1,
            0,
            "bad chain {i} completed with nothing written"
        );
    }
    assert_eq!(
        r(&mut rig.transport, reg::STATUS) & status::DEVICE_NEEDS_RESET,
        0,
        "the device is still alive"
    );
    // The well-formed escape attempt itself is refused by the server, and the device still answers.
    let reply = rig.call(
        opcode::MKDIR,
        1,
        &[&0o755u32.to_ne_bytes()[..], &[0; 4], b"..\0"].concat(),
    );
    assert_ne!(error(&reply), 0, "mkdir .. is refused");
    let reply = rig.call(opcode::LOOKUP, 1, &name(".."));
    assert_ne!(error(&reply), 0, "lookup .. is refused");
    let mut names: Vec<_> = std::fs::read_dir(parent.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    assert_eq!(names, ["secret", "share"]);
    assert_eq!(
        std::fs::read(parent.path().join("secret")).unwrap(),
        b"host only"
    );
    assert_eq!(std::fs::read_dir(&share).unwrap().count(), 0);
}

#[test]
fn read_only_share_refuses_writes_with_erofs() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("keep.txt"), b"unchanged").unwrap();
    let mem = memory();
    let mut rig = Rig::new(&mem, dir.path(), true);
    rig.init();
    let body = [&0o755u32.to_ne_bytes()[..], &[0; 4], b"newdir\0"].concat();
    let reply = rig.call(opcode::MKDIR, 1, &body);
    assert_eq!(error(&reply), -libc::EROFS);
    let mut create = Vec::new();
    for v in [
        libc::O_WRONLY as u32 | libc::O_CREAT as u32,
        0o644,
        0o022,
        0,
    ] {
        create.extend_from_slice(&v.to_ne_bytes());
    }
    create.extend_from_slice(b"new.txt\0");
    let reply = rig.call(opcode::CREATE, 1, &create);
    assert_eq!(error(&reply), -libc::EROFS);
    assert!(!dir.path().join("newdir").exists());
    assert!(!dir.path().join("new.txt").exists());
    assert_eq!(
        std::fs::read(dir.path().join("keep.txt")).unwrap(),
        b"unchanged"
    );
}

#[test]
fn forget_on_the_hiprio_queue_releases_the_node_without_a_reply() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a"), b"x").unwrap();
    let mem = memory();
    let mut rig = Rig::new(&mem, dir.path(), false);
    rig.init();
    let entry = rig.call(opcode::LOOKUP, 1, &name("a"));
    let nodeid = u64_at(&entry, 16);
    assert_eq!(rig.server.stats().inodes, 2, "root and the looked-up file");

    // Acknowledge the interrupts so far; an empty notification must not raise a new one.
    let pending = r(&mut rig.transport, reg::INTERRUPT_STATUS);
    w(&mut rig.transport, reg::INTERRUPT_ACK, pending);
    rig.transport.process_queue(HIPRIO_QUEUE);
    assert_eq!(
        r(&mut rig.transport, reg::INTERRUPT_STATUS),
        0,
        "nothing used, no interrupt"
    );

    let mut forget = Vec::new();
    InHeader {
        len: 40 + 8,
        opcode: opcode::FORGET,
        unique: 0,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 0,
        total_extlen: 0,
    }
    .encode(&mut forget);
    forget.extend_from_slice(&1u64.to_ne_bytes());
    mem.write_slice(&forget, GuestAddress(REQ)).unwrap();
    let hiprio = &rig.mocks[HIPRIO_QUEUE];
    hiprio
        .add_desc_chains(&[raw(REQ, forget.len() as u32, 0, 0)], 0)
        .unwrap();
    w(&mut rig.transport, reg::QUEUE_NOTIFY, HIPRIO_QUEUE as u32);
    rig.transport.process_queue(HIPRIO_QUEUE);
    assert_eq!(used_idx(hiprio), 1);
    assert_eq!(used(hiprio, 0), (0, 0), "FORGET has no reply");
    assert_eq!(rig.server.stats().inodes, 1, "the node was released");
    assert_ne!(r(&mut rig.transport, reg::INTERRUPT_STATUS) & 1, 0);
}
