//! virtio-fs through KVM: a tiny guest finds the device, reads its mount tag, sets up both queues, sends FUSE_INIT
//! on the request queue and checks the reply; and `VmBuilder::shared_dir` rejects unusable shares up front.

mod common;

use std::time::Duration;

use common::asm::Asm;
use common::{Console, run_with_limit, skip_without_kvm, write_guest};
use sbx_vmm::arch::layout;
use sbx_vmm::devices::virtio::mmio::reg;
use sbx_vmm::sbx_virtiofs::ShareConfig;
use sbx_vmm::{ConfigError, ExitReason, VmBuilder};

/// Sets up queue `index` (16 entries) with its rings at `desc`, `desc + 0x1000` and `desc + 0x2000`.
fn setup_queue(a: &mut Asm, base: u64, index: u32, desc: u64) {
    a.store32(base + reg::QUEUE_SEL, index)
        .store32(base + reg::QUEUE_NUM, 16);
    a.store32(base + reg::QUEUE_DESC_LOW, desc as u32);
    a.store32(base + reg::QUEUE_DRIVER_LOW, (desc + 0x1000) as u32);
    a.store32(base + reg::QUEUE_DEVICE_LOW, (desc + 0x2000) as u32);
    a.store32(base + reg::QUEUE_READY, 1);
}

#[test]
fn guest_negotiates_fuse_init_over_the_request_queue() {
    if skip_without_kvm("guest_negotiates_fuse_init_over_the_request_queue") {
        return;
    }
    let (base, _gsi) = layout::virtio_slot(0);
    let (hiprio, request) = (0x10000u64, 0x20000u64);
    let (desc, avail, used) = (request, request + 0x1000, request + 0x2000);
    let (req, reply) = (0x30000u64, 0x31000u64);
    let mut a = Asm::new();
    a.check32(
        base + reg::DEVICE_ID,
        u32::MAX,
        26,
        "virtio-fs ",
        "FAIL id\n",
    );
    a.check32(
        base + reg::CONFIG,
        u32::MAX,
        u32::from_le_bytes(*b"work"),
        "tag ",
        "FAIL tag\n",
    );
    a.check32(
        base + reg::CONFIG + 36,
        u32::MAX,
        1,
        "1 queue ",
        "FAIL nrq\n",
    );
    a.store32(base + reg::STATUS, 1)
        .store32(base + reg::STATUS, 3);
    a.store32(base + reg::DRIVER_FEATURES_SEL, 1)
        .store32(base + reg::DRIVER_FEATURES, 1);
    a.store32(base + reg::STATUS, 0xb);
    setup_queue(&mut a, base, 0, hiprio);
    setup_queue(&mut a, base, 1, request);
    a.store32(base + reg::STATUS, 0xf);
    a.check32(
        base + reg::STATUS,
        0xff,
        0xf,
        "active\n",
        "FAIL activation\n",
    );
    // FUSE_INIT: a 40-byte header (len, opcode 26, unique 1, the rest zero) and a 64-byte body asking for 7.38.
    a.store32(req, 104).store32(req + 4, 26).store32(req + 8, 1);
    a.store32(req + 40, 7)
        .store32(req + 44, 38)
        .store32(req + 48, 1 << 20)
        .store32(req + 52, u32::MAX);
    a.store64(desc, req)
        .store32(desc + 8, 104)
        .store32(desc + 12, 1 | (1 << 16));
    a.store64(desc + 16, reply)
        .store32(desc + 24, 0x1000)
        .store32(desc + 28, 2);
    a.store32(avail + 4, 0).store32(avail, 1 << 16);
    a.store32(base + reg::QUEUE_NOTIFY, 1);
    a.wait_u16(used + 2, 1);
    a.check32(used + 4, u32::MAX, 0, "head 0 ", "FAIL used id\n");
    a.check32(reply + 4, u32::MAX, 0, "error 0 ", "FAIL init error\n");
    a.check32(reply + 8, u32::MAX, 1, "unique 1 ", "FAIL unique\n");
    a.check32(reply + 16, u32::MAX, 7, "major 7\n", "FAIL major\n");
    a.reset();

    let dir = tempfile::tempdir().unwrap();
    let share = dir.path().join("share");
    std::fs::create_dir(&share).unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .shared_dir(&share, "workspace", false)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert_eq!(
        text,
        "virtio-fs tag 1 queue active\nhead 0 error 0 unique 1 major 7\n"
    );
}

#[test]
fn unusable_shares_are_rejected_at_build_time() {
    if skip_without_kvm("unusable_shares_are_rejected_at_build_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &[0xf4]);
    let build = |path: &std::path::Path, tag: &str| {
        VmBuilder::new()
            .kernel(&kernel)
            .shared_dir(path, tag, false)
            .build()
    };
    let missing = dir.path().join("missing");
    let err = build(&missing, "ws").unwrap_err();
    assert!(matches!(err, ConfigError::BadSharedDir { .. }), "{err}");
    assert!(err.to_string().contains("missing"), "{err}");
    let err = build(&kernel, "ws").unwrap_err();
    assert!(err.to_string().contains("not a directory"), "{err}");
    for tag in ["", "a\0b", &"t".repeat(37)] {
        let err = build(dir.path(), tag).unwrap_err();
        assert!(err.to_string().contains("1 to 36 bytes"), "{tag:?}: {err}");
    }
    let err = VmBuilder::new()
        .kernel(&kernel)
        .shared_dir(dir.path(), "ws", false)
        .shared_dir(dir.path(), "ws", true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("already uses this tag"), "{err}");
    let config = VmBuilder::new()
        .kernel(&kernel)
        .shared_dir(dir.path(), "ws", false)
        .shared_dir(dir.path(), "ro", true)
        .build();
    assert!(config.is_ok(), "two shares with distinct tags are fine");
    let ids = sbx_vmm::sbx_virtiofs::IdMapping::identity();
    let err = VmBuilder::new()
        .kernel(&kernel)
        .shared_dir_with(ShareConfig::new(&missing).ids(ids), "ws")
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}
