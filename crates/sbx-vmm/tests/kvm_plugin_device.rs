//! A virtio device defined outside sbx-vmm (as sbx-virtiofs does) plugs into the transport through
//! [`VirtioDevice`] and [`VmBuilder::virtio_device`], and a tiny guest drives it through KVM.

mod common;

use std::time::Duration;

use common::asm::Asm;
use common::{Console, run_with_limit, skip_without_kvm, write_guest};
use sbx_vmm::arch::layout;
use sbx_vmm::devices::virtio::mmio::reg;
use sbx_vmm::devices::virtio::{
    ActivateContext, DeviceError, Interrupt, VirtioDevice, complete, next_chain, notify_driver,
};
use sbx_vmm::vstate::memory::GuestMemory;
use sbx_vmm::{ExitReason, VmBuilder};
use virtio_queue::Queue;
use vm_memory::Bytes;

/// Device type of the test device (outside the range the specification assigns).
const UPPER_DEVICE: u32 = 0xff00;

/// Upper-cases what the driver sends: readable descriptors in, the same bytes upper-cased into writable ones.
#[derive(Default)]
struct Upper {
    active: Option<(GuestMemory, Queue, Interrupt)>,
}

impl VirtioDevice for Upper {
    fn device_type(&self) -> u32 {
        UPPER_DEVICE
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &[16]
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
            .ok_or_else(|| DeviceError::Activate("no queue".into()))?;
        self.active = Some((ctx.mem, queue, ctx.interrupt));
        Ok(())
    }
    fn queue_notify(&mut self, _queue: usize) -> Result<(), DeviceError> {
        let Some((mem, queue, interrupt)) = &mut self.active else {
            return Ok(());
        };
        while let Some(chain) = next_chain(queue, mem, 0)? {
            let head = chain.head_index();
            let descs: Vec<_> = chain.collect();
            let mut input = Vec::new();
            for d in descs.iter().filter(|d| !d.is_write_only()) {
                let mut buf = vec![0u8; (d.len() as usize).min(4096)];
                if mem.read_slice(&mut buf, d.addr()).is_ok() {
                    input.extend_from_slice(&buf);
                }
            }
            let output = input.to_ascii_uppercase();
            let mut written = 0usize;
            for d in descs.iter().filter(|d| d.is_write_only()) {
                let n = (d.len() as usize).min(output.len() - written);
                if mem
                    .write_slice(&output[written..written + n], d.addr())
                    .is_ok()
                {
                    written += n;
                }
            }
            complete(queue, mem, 0, head, written as u32)?;
        }
        notify_driver(queue, mem, interrupt);
        Ok(())
    }
    fn reset(&mut self) {
        self.active = None;
    }
}

#[test]
fn device_from_another_crate_serves_the_guest() {
    if skip_without_kvm("device_from_another_crate_serves_the_guest") {
        return;
    }
    let (base, _gsi) = layout::virtio_slot(0);
    let (desc, avail, used) = (0x10000u64, 0x11000u64, 0x12000u64);
    let (input, output) = (0x13000u64, 0x14000u64);
    let mut a = Asm::new();
    a.check32(
        base + reg::DEVICE_ID,
        u32::MAX,
        UPPER_DEVICE,
        "found ",
        "FAIL id\n",
    );
    a.store32(base + reg::STATUS, 1)
        .store32(base + reg::STATUS, 3);
    a.store32(base + reg::DRIVER_FEATURES_SEL, 1)
        .store32(base + reg::DRIVER_FEATURES, 1);
    a.store32(base + reg::STATUS, 0xb);
    a.store32(base + reg::QUEUE_SEL, 0)
        .store32(base + reg::QUEUE_NUM, 16);
    a.store32(base + reg::QUEUE_DESC_LOW, desc as u32);
    a.store32(base + reg::QUEUE_DRIVER_LOW, avail as u32);
    a.store32(base + reg::QUEUE_DEVICE_LOW, used as u32);
    a.store32(base + reg::QUEUE_READY, 1)
        .store32(base + reg::STATUS, 0xf);
    a.check32(
        base + reg::STATUS,
        0xff,
        0xf,
        "active\n",
        "FAIL activation\n",
    );
    a.store32(input, u32::from_le_bytes(*b"sbx "))
        .store32(input + 4, u32::from_le_bytes(*b"vmm\n"));
    a.store64(desc, input)
        .store32(desc + 8, 8)
        .store32(desc + 12, 1 | (1 << 16));
    a.store64(desc + 16, output)
        .store32(desc + 24, 8)
        .store32(desc + 28, 2);
    a.store32(avail + 4, 0).store32(avail, 1 << 16);
    a.store32(base + reg::QUEUE_NOTIFY, 0);
    a.wait_u16(used + 2, 1);
    a.print_mem(output, 8).reset();

    let dir = tempfile::tempdir().unwrap();
    let kernel = write_guest(dir.path(), &a.finish());
    let console = Console::default();
    let config = VmBuilder::new()
        .kernel(kernel)
        .memory_mib(32)
        .serial(console.output())
        .virtio_device("upper", Box::new(Upper::default()))
        .build()
        .unwrap();
    let vm = sbx_vmm::Vm::start(config).unwrap();
    let reason = run_with_limit(vm, Duration::from_secs(60));
    let text = console.text();
    assert_eq!(reason, ExitReason::GuestReset, "console: {text}");
    assert_eq!(text, "found active\nSBX VMM\n");
}
