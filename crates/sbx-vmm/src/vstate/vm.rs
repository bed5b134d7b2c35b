//! The VM file descriptor: creation, architecture setup and memory slots.
#![allow(unsafe_code)]

use kvm_bindings::kvm_userspace_memory_region;
use kvm_ioctls::{Kvm, VmFd};
use vm_memory::{GuestMemoryBackend, GuestMemoryRegion, MemoryRegionAddress};

use super::memory::GuestMemory;
use crate::arch;
use crate::error::StartError;

/// Creates the VM, sets up the irqchip and PIT, and registers every guest memory region as a KVM slot.
pub fn create(kvm: &Kvm, mem: &GuestMemory) -> Result<VmFd, StartError> {
    let vm = kvm.create_vm().map_err(|source| StartError::Kvm {
        step: "KVM_CREATE_VM",
        source,
    })?;
    arch::setup_vm(&vm)?;
    for (slot, region) in mem.iter().enumerate() {
        let host = region
            .get_host_address(MemoryRegionAddress(0))
            .map_err(|e| StartError::Memory {
                mib: region.len() >> 20,
                reason: e.to_string(),
            })?;
        let entry = kvm_userspace_memory_region {
            slot: slot as u32,
            flags: 0,
            guest_phys_addr: region.start_addr().0,
            memory_size: region.len(),
            userspace_addr: host as u64,
        };
        set_region(&vm, entry)?;
    }
    Ok(vm)
}

fn set_region(vm: &VmFd, entry: kvm_userspace_memory_region) -> Result<(), StartError> {
    // SAFETY: `userspace_addr..+memory_size` is a live mapping owned by the `GuestMemory` passed to `create`, which the
    // VMM keeps alive (it is cloned into every device and the runtime) for as long as the VM fd exists.
    unsafe { vm.set_user_memory_region(entry) }.map_err(|source| StartError::Kvm {
        step: "KVM_SET_USER_MEMORY_REGION",
        source,
    })
}
