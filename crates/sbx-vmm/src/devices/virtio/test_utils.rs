//! Helpers for device unit tests: guest memory, mock split queues, activation and used-ring inspection.

use std::sync::Arc;
use std::sync::atomic::AtomicU32;

use virtio_queue::Queue;
use virtio_queue::desc::RawDescriptor;
use virtio_queue::desc::split::Descriptor;
use virtio_queue::mock::MockSplitQueue;
use vm_memory::{Bytes, GuestAddress};
use vmm_sys_util::eventfd::EventFd;

use super::{ActivateContext, Interrupt};
use crate::vstate::memory::GuestMemory;

/// 1 MiB of guest memory starting at 0.
pub(crate) const MEM_SIZE: u64 = 1 << 20;
/// Flags.
pub(crate) const NEXT: u16 = 1;
pub(crate) const WRITE: u16 = 2;
pub(crate) const INDIRECT: u16 = 4;

pub(crate) fn memory() -> GuestMemory {
    GuestMemory::from_ranges(&[(GuestAddress(0), MEM_SIZE as usize)]).unwrap()
}

pub(crate) fn raw(addr: u64, len: u32, flags: u16, next: u16) -> RawDescriptor {
    RawDescriptor::from(Descriptor::new(addr, len, flags, next))
}

/// Mock queues (each 16 entries) at distinct addresses below 0x10000, and an activation context for them.
pub(crate) fn activate_ctx<'a>(
    mem: &'a GuestMemory,
    count: usize,
) -> (Vec<MockSplitQueue<'a, GuestMemory>>, ActivateContext) {
    let mocks: Vec<_> = (0..count)
        .map(|i| MockSplitQueue::create(mem, GuestAddress(0x4000 * i as u64), 16))
        .collect();
    let queues: Vec<Queue> = mocks.iter().map(|m| m.create_queue().unwrap()).collect();
    let interrupt = Interrupt::new(
        Arc::new(AtomicU32::new(0)),
        Arc::new(EventFd::new(0).unwrap()),
    );
    let ctx = ActivateContext {
        mem: mem.clone(),
        queues,
        acked_features: super::VIRTIO_F_VERSION_1,
        interrupt,
    };
    (mocks, ctx)
}

/// (id, len) of used element `i`.
pub(crate) fn used(mock: &MockSplitQueue<'_, GuestMemory>, i: usize) -> (u32, u32) {
    let elem = mock.used().ring().ref_at(i).unwrap().load();
    (elem.id(), elem.len())
}

pub(crate) fn used_idx(mock: &MockSplitQueue<'_, GuestMemory>) -> u16 {
    mock.used().idx().load()
}

pub(crate) fn byte_at(mem: &GuestMemory, addr: u64) -> u8 {
    mem.read_obj(GuestAddress(addr)).unwrap()
}
