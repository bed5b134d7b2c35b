//! Level-1 KVM tests of the virtio-mmio devices: tiny guests run the driver side of the register protocol, write
//! descriptors into their own memory, notify through the (ioeventfd-backed) QueueNotify register and poll the used
//! ring — a real round trip through KVM, the event loop, the device and the host file or socket.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::FileExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::time::{Duration, Instant};

use common::asm::Asm;
use common::{Console, run_with_limit, skip_without_kvm, write_guest};
use sbx_vmm::arch::layout;
use sbx_vmm::devices::virtio::mmio::reg;
use sbx_vmm::{ExitReason, VmBuilder};

const NEXT: u32 = 1;
const WRITE: u32 = 2;

/// A split virtqueue laid out by the guest at `base`: descriptors, then the available ring, then the used ring.
#[derive(Clone, Copy)]
struct GuestQueue {
    desc: u64,
    avail: u64,
    used: u64,
}

impl GuestQueue {
    fn at(base: u64) -> Self {
        Self {
            desc: base,
            avail: base + 0x1000,
            used: base + 0x2000,
        }
    }
    fn set_desc(&self, a: &mut Asm, i: u64, addr: u64, len: u32, flags: u32, next: u32) {
        let d = self.desc + 16 * i;
        a.store64(d, addr)
            .store32(d + 8, len)
            .store32(d + 12, flags | (next << 16));
    }
    /// Publishes descriptor `head` as the `n`-th available entry (n from 0) and makes idx n+1.
    fn publish(&self, a: &mut Asm, n: u16, head: u16) {
        // Ring entries are u16; write this entry with a dword store whose upper half is the next (unused) slot.
        a.store32(self.avail + 4 + 2 * u64::from(n), u32::from(head));
        a.store32(self.avail, u32::from(n + 1) << 16);
    }
}

/// The driver side of device initialisation, with a check printed at each step.
fn init_device(a: &mut Asm, base: u64, device_id: u32, queues: &[(u32, GuestQueue)]) {
    a.check32(
        base + reg::MAGIC,
        u32::MAX,
        0x7472_6976,
        "magic ",
        "FAIL magic\n",
    );
    a.check32(base + reg::VERSION, u32::MAX, 2, "v2 ", "FAIL version\n");
    a.check32(
        base + reg::DEVICE_ID,
        u32::MAX,
        device_id,
        "id ",
        "FAIL device id\n",
    );
    a.store32(base + reg::STATUS, 1)
        .store32(base + reg::STATUS, 3);
    a.store32(base + reg::DEVICE_FEATURES_SEL, 1);
    a.check32(
        base + reg::DEVICE_FEATURES,
        1,
        1,
        "version1 ",
        "FAIL features\n",
    );
    a.store32(base + reg::DRIVER_FEATURES_SEL, 1)
        .store32(base + reg::DRIVER_FEATURES, 1);
    a.store32(base + reg::DRIVER_FEATURES_SEL, 0)
        .store32(base + reg::DRIVER_FEATURES, 0);
    a.store32(base + reg::STATUS, 0xb);
    a.check32(
        base + reg::STATUS,
        0xff,
        0xb,
        "features-ok ",
        "FAIL features-ok\n",
    );
    for (index, q) in queues {
        a.store32(base + reg::QUEUE_SEL, *index);
        a.check32(
            base + reg::QUEUE_NUM_MAX,
            u32::MAX,
            256,
            "",
            "FAIL queue max\n",
        );
        a.store32(base + reg::QUEUE_NUM, 8);
        a.store32(base + reg::QUEUE_DESC_LOW, q.desc as u32)
            .store32(base + reg::QUEUE_DESC_HIGH, 0);
        a.store32(base + reg::QUEUE_DRIVER_LOW, q.avail as u32)
            .store32(base + reg::QUEUE_DRIVER_HIGH, 0);
        a.store32(base + reg::QUEUE_DEVICE_LOW, q.used as u32)
            .store32(base + reg::QUEUE_DEVICE_HIGH, 0);
        a.store32(base + reg::QUEUE_READY, 1);
    }
    a.store32(base + reg::STATUS, 0xf);
    a.check32(
        base + reg::STATUS,
        0xff,
        0xf,
        "driver-ok\n",
        "FAIL driver-ok\n",
    );
}

fn notify(a: &mut Asm, base: u64, queue: u32) {
    a.store32(base + reg::QUEUE_NOTIFY, queue);
}

#[test]
fn virtio_blk_round_trip_reads_and_writes_the_image() {
    if skip_without_kvm("virtio_blk_round_trip_reads_and_writes_the_image") {
        return;
    }
    let (base, _gsi) = layout::virtio_slot(0);
    let q = GuestQueue::at(0x10000);
    let (header, data, status) = (0x13000u64, 0x14000u64, 0x15000u64);
    let mut a = Asm::new();
    init_device(&mut a, base, 2, &[(0, q)]);
    a.check32(
        base + reg::CONFIG,
        u32::MAX,
        16,
        "capacity=16\n",
        "FAIL capacity\n",
    );

    // 1. OUT: write sector 1 with 0x5a bytes.
    a.store32(header, 1)
        .store32(header + 4, 0)
        .store64(header + 8, 1);
    a.mov_rdi(data)
        .mov_eax(0x5a5a_5a5a)
        .mov_ecx(128)
        .rep_stosd();
    a.store32(status, 0xff);
    q.set_desc(&mut a, 0, header, 16, NEXT, 1);
    q.set_desc(&mut a, 1, data, 512, NEXT, 2);
    q.set_desc(&mut a, 2, status, 1, WRITE, 0);
    q.publish(&mut a, 0, 0);
    notify(&mut a, base, 0);
    a.wait_u16(q.used + 2, 1);
    a.check32(status, 0xff, 0, "write-ok\n", "FAIL write\n");

    // 2. IN: read sector 2 into the (device-writable) data buffer.
    a.store32(header, 0)
        .store64(header + 8, 2)
        .store32(status, 0xff);
    q.set_desc(&mut a, 1, data, 512, NEXT | WRITE, 2);
    q.publish(&mut a, 1, 0);
    notify(&mut a, base, 0);
    a.wait_u16(q.used + 2, 2);
    a.check32(status, 0xff, 0, "read-ok ", "FAIL read\n");
    a.print_mem(data, 16).print("\n");

    // 3. A hostile request: the data buffer lies outside guest memory. The device must answer IOERR.
    a.store32(status, 0xff);
    q.set_desc(&mut a, 1, 0x7fff_0000_0000, 512, NEXT | WRITE, 2);
    q.publish(&mut a, 2, 0);
    notify(&mut a, base, 0);
    a.wait_u16(q.used + 2, 3);
    a.check32(status, 0xff, 1, "bad-address-ioerr\n", "FAIL bad address\n");

    // 4. Beyond the end of the disk: IOERR too.
    a.store32(status, 0xff).store64(header + 8, 16);
    q.set_desc(&mut a, 1, data, 512, NEXT | WRITE, 2);
    q.publish(&mut a, 3, 0);
    notify(&mut a, base, 0);
    a.wait_u16(q.used + 2, 4);
    a.check32(status, 0xff, 1, "past-end-ioerr\n", "FAIL past end\n");
    a.reset();

    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("disk.img");
    let file = std::fs::File::create(&image).unwrap();
    file.set_len(16 * 512).unwrap();
    file.write_all_at(b"sector-two-data!", 2 * 512).unwrap();
    drop(file);
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .disk(&image, false)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(120));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert!(
        text.contains("magic v2 id version1 features-ok driver-ok\ncapacity=16\n"),
        "console: {text}"
    );
    assert!(
        text.contains("write-ok\nread-ok sector-two-data!\n"),
        "console: {text}"
    );
    assert!(
        text.contains("bad-address-ioerr\npast-end-ioerr\n"),
        "console: {text}"
    );
    let written = std::fs::read(&image).unwrap();
    assert_eq!(
        &written[512..1024],
        &[0x5a; 512][..],
        "sector 1 holds what the guest wrote"
    );
    assert_eq!(&written[..512], &[0; 512][..], "sector 0 untouched");
}

#[test]
fn virtio_vsock_round_trip_both_directions() {
    if skip_without_kvm("virtio_vsock_round_trip_both_directions") {
        return;
    }
    let (base, _gsi) = layout::virtio_slot(0);
    let rx = GuestQueue::at(0x20000);
    let tx = GuestQueue::at(0x23000);
    let (rxbuf, txhdr, txdata) = (0x26000u64, 0x27000u64, 0x28000u64);
    let mut a = Asm::new();
    init_device(&mut a, base, 19, &[(0, rx), (1, tx)]);
    a.check32(base + reg::CONFIG, u32::MAX, 3, "cid=3\n", "FAIL cid\n");
    // Post one receive buffer (header and data in a single descriptor).
    rx.set_desc(&mut a, 0, rxbuf, 44 + 64, WRITE, 0);
    rx.publish(&mut a, 0, 0);
    notify(&mut a, base, 0);

    // Guest → host: REQUEST to (CID 2, port 5000) from port 1234.
    a.store64(txhdr, 3)
        .store64(txhdr + 8, 2)
        .store32(txhdr + 16, 1234)
        .store32(txhdr + 20, 5000);
    a.store32(txhdr + 24, 0)
        .store32(txhdr + 28, 1 | (1 << 16))
        .store32(txhdr + 32, 0);
    a.store32(txhdr + 36, 65536).store32(txhdr + 40, 0);
    tx.set_desc(&mut a, 0, txhdr, 44, 0, 0);
    tx.publish(&mut a, 0, 0);
    notify(&mut a, base, 1);
    a.wait_u16(rx.used + 2, 1);
    a.check32(
        rxbuf + 28,
        0xffff_0000,
        2 << 16,
        "response ",
        "FAIL response\n",
    );
    rx.publish(&mut a, 1, 0);
    notify(&mut a, base, 0);

    // Send "ping" as RW, header and payload in two descriptors.
    a.store32(txhdr + 24, 4).store32(txhdr + 28, 1 | (5 << 16));
    a.store32(txdata, u32::from_le_bytes(*b"ping"));
    tx.set_desc(&mut a, 0, txhdr, 44, NEXT, 1);
    tx.set_desc(&mut a, 1, txdata, 4, 0, 0);
    tx.publish(&mut a, 1, 0);
    notify(&mut a, base, 1);
    a.wait_u16(rx.used + 2, 2);
    a.check32(rxbuf + 28, 0xffff_0000, 5 << 16, "rw ", "FAIL rw\n");
    a.print_mem(rxbuf + 44, 4).print("\n");

    // Host → guest: wait for the REQUEST the host's `CONNECT 6000` produces and accept it.
    rx.publish(&mut a, 2, 0);
    notify(&mut a, base, 0);
    a.print("ready\n");
    a.wait_u16(rx.used + 2, 3);
    a.check32(
        rxbuf + 28,
        0xffff_0000,
        1 << 16,
        "request ",
        "FAIL request\n",
    );
    a.check32(rxbuf + 20, u32::MAX, 6000, "port=6000 ", "FAIL port\n");
    // Reply RESPONSE to the host port the VMM chose (the request's source port).
    a.load32(rxbuf + 16).mov_rbx(txhdr + 20).store_eax_rbx();
    a.store32(txhdr + 16, 6000)
        .store32(txhdr + 24, 0)
        .store32(txhdr + 28, 1 | (2 << 16));
    tx.set_desc(&mut a, 0, txhdr, 44, 0, 0);
    tx.publish(&mut a, 2, 0);
    notify(&mut a, base, 1);
    // Wait until the device consumed it, then end.
    a.wait_u16(tx.used + 2, 3);
    a.print("accepted\n").reset();

    let dir = tempfile::tempdir().unwrap();
    let uds = dir.path().join("v.sock");
    let listener = UnixListener::bind(format!("{}_5000", uds.display())).unwrap();
    let host_side = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut got = [0u8; 4];
        stream.read_exact(&mut got).unwrap();
        stream.write_all(b"pong").unwrap();
        // Keep the stream open: closing it would (correctly) send the guest a SHUTDOWN.
        (got, stream)
    });
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .vsock(3, &uds)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let handle = vm.handle();
    let waiter = std::thread::spawn(move || run_with_limit(vm, Duration::from_secs(120)));

    let start = Instant::now();
    while !console.text().contains("ready\n") {
        assert!(handle.is_running(), "VM ended early: {}", console.text());
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "console: {}",
            console.text()
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut stream = UnixStream::connect(&uds).unwrap();
    stream.write_all(b"CONNECT 6000\n").unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(120)))
        .unwrap();
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line).unwrap();

    let reason = waiter.join().unwrap();
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    let (got, _stream) = host_side.join().unwrap();
    assert_eq!(&got, b"ping");
    assert!(
        text.contains("cid=3\nresponse rw pong\n"),
        "console: {text}"
    );
    assert!(
        text.contains("request port=6000 accepted\n"),
        "console: {text}"
    );
    assert!(
        line.starts_with("OK ") && line.ends_with('\n'),
        "handshake reply {line:?}"
    );
    let port: u32 = line[3..].trim().parse().unwrap();
    assert!(port >= 1 << 30, "host port {port}");
    assert!(
        !uds.exists(),
        "the device removes its socket when the VM ends"
    );
}

#[test]
fn virtio_rng_fills_the_guest_buffer() {
    if skip_without_kvm("virtio_rng_fills_the_guest_buffer") {
        return;
    }
    let (base, _gsi) = layout::virtio_slot(0);
    let q = GuestQueue::at(0x10000);
    let buf = 0x13000u64;
    let mut a = Asm::new();
    init_device(&mut a, base, 4, &[(0, q)]);
    q.set_desc(&mut a, 0, buf, 64, WRITE, 0);
    q.publish(&mut a, 0, 0);
    notify(&mut a, base, 0);
    a.wait_u16(q.used + 2, 1);
    // The used element's length (at used ring + 8) reports the 64 bytes written.
    a.check32(q.used + 8, u32::MAX, 64, "rng-64\n", "FAIL rng length\n");
    a.reset();
    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .rng(true)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert!(text.contains("driver-ok\nrng-64\n"), "console: {text}");
}

/// The interrupt path real drivers depend on: the device's irqfd raises IOAPIC pin `gsi`, which the guest routes to
/// a vector whose handler checks and acknowledges the transport's interrupt status.
#[test]
fn used_buffer_interrupt_reaches_the_guest() {
    if skip_without_kvm("used_buffer_interrupt_reaches_the_guest") {
        return;
    }
    const VECTOR: u64 = 0x30;
    const IDT: u64 = 0x1000;
    const IDTR: u64 = 0x2ff0;
    const FLAG: u64 = 0x3000;
    const IOAPIC: u64 = 0xfec0_0000;
    const LAPIC: u64 = 0xfee0_0000;
    let (base, gsi) = layout::virtio_slot(0);
    let q = GuestQueue::at(0x10000);
    let mut a = Asm::new();
    let main = a.label();
    a.jmp(main);
    // The handler sits right after the 5-byte jump.
    let handler = common::LOAD_ADDR + a.pos() as u64;
    a.check32(
        base + reg::INTERRUPT_STATUS,
        3,
        1,
        "irq vring\n",
        "FAIL interrupt status\n",
    );
    a.store32(base + reg::INTERRUPT_ACK, 1);
    a.store32(FLAG, 1);
    a.store32(LAPIC + 0xb0, 0); // EOI
    a.iretq();

    a.bind(main);
    // IDT gate for VECTOR: 64-bit interrupt gate to `handler` in the code segment.
    let gate = IDT + VECTOR * 16;
    a.store32(gate, (0x08 << 16) | (handler as u32 & 0xffff));
    a.store32(gate + 4, (handler as u32 & 0xffff_0000) | 0x8e00);
    a.store32(gate + 8, (handler >> 32) as u32)
        .store32(gate + 12, 0);
    a.store32(IDTR, 0xfff << 16).store64(IDTR + 4, IDT);
    // lidt takes limit:u16 then base:u64; IDTR+2 holds the limit, IDTR+4 the base.
    a.mov_rbx(IDTR + 2).lidt_rbx();
    // Mask the legacy PICs, enable the local APIC, route IOAPIC pin `gsi` to VECTOR on APIC 0.
    a.mov_al(0xff).out_imm_al(0x21).out_imm_al(0xa1);
    a.store32(LAPIC + 0xf0, 0x1ff);
    a.store32(IOAPIC, 0x10 + 2 * gsi)
        .store32(IOAPIC + 0x10, VECTOR as u32);
    a.store32(IOAPIC, 0x11 + 2 * gsi).store32(IOAPIC + 0x10, 0);
    a.store32(FLAG, 0);
    init_device(&mut a, base, 4, &[(0, q)]);
    q.set_desc(&mut a, 0, 0x13000, 16, WRITE, 0);
    q.publish(&mut a, 0, 0);
    notify(&mut a, base, 0);
    a.sti();
    let wait = a.label();
    a.bind(wait).hlt().load32(FLAG).cmp_eax(1).jne(wait);
    a.print("woke\n").reset();

    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .rng(true)
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert!(
        text.contains("driver-ok\nirq vring\nwoke\n"),
        "console: {text}"
    );
}
