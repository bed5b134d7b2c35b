//! Boot MSRs: SYSENTER/SYSCALL state cleared, TSC zeroed, fast strings enabled.

use kvm_bindings::{Msrs, kvm_msr_entry};
use kvm_ioctls::VcpuFd;

use crate::error::StartError;

const MSR_IA32_SYSENTER_CS: u32 = 0x174;
const MSR_IA32_SYSENTER_ESP: u32 = 0x175;
const MSR_IA32_SYSENTER_EIP: u32 = 0x176;
const MSR_STAR: u32 = 0xc000_0081;
const MSR_LSTAR: u32 = 0xc000_0082;
const MSR_CSTAR: u32 = 0xc000_0083;
const MSR_SYSCALL_MASK: u32 = 0xc000_0084;
const MSR_KERNEL_GS_BASE: u32 = 0xc000_0102;
const MSR_IA32_TSC: u32 = 0x10;
const MSR_IA32_MISC_ENABLE: u32 = 0x1a0;
const MISC_ENABLE_FAST_STRING: u64 = 1;

/// The MSR values every vCPU starts with.
pub fn boot_entries() -> Vec<kvm_msr_entry> {
    [
        (MSR_IA32_SYSENTER_CS, 0),
        (MSR_IA32_SYSENTER_ESP, 0),
        (MSR_IA32_SYSENTER_EIP, 0),
        (MSR_STAR, 0),
        (MSR_CSTAR, 0),
        (MSR_KERNEL_GS_BASE, 0),
        (MSR_SYSCALL_MASK, 0),
        (MSR_LSTAR, 0),
        (MSR_IA32_TSC, 0),
        (MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING),
    ]
    .into_iter()
    .map(|(index, data)| kvm_msr_entry {
        index,
        data,
        ..Default::default()
    })
    .collect()
}

/// Writes [`boot_entries`]; every one must be accepted.
pub fn setup(vcpu: &VcpuFd) -> Result<(), StartError> {
    let entries = boot_entries();
    let msrs = Msrs::from_entries(&entries).map_err(|e| StartError::BootSetup {
        what: "MSR list",
        reason: format!("{e:?}"),
    })?;
    let written = vcpu.set_msrs(&msrs).map_err(|source| StartError::Kvm {
        step: "KVM_SET_MSRS",
        source,
    })?;
    if written != entries.len() {
        return Err(StartError::BootSetup {
            what: "MSRs",
            reason: format!(
                "KVM accepted {written} of {} boot MSRs (first rejected: {:#x})",
                entries.len(),
                entries[written].index
            ),
        });
    }
    Ok(())
}
