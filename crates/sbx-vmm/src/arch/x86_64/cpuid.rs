//! CPUID for each vCPU: what KVM supports, with the hypervisor bit set and the topology of this VM.

use kvm_bindings::{CpuId, KVM_MAX_CPUID_ENTRIES};
use kvm_ioctls::Kvm;

use crate::error::StartError;

const ECX_HYPERVISOR: u32 = 1 << 31;
const EDX_HTT: u32 = 1 << 28;

/// `KVM_GET_SUPPORTED_CPUID`, adjusted for vCPU `id` of `count`.
pub fn for_vcpu(kvm: &Kvm, id: u8, count: u8) -> Result<CpuId, StartError> {
    let mut cpuid = kvm
        .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
        .map_err(|source| StartError::Kvm {
            step: "KVM_GET_SUPPORTED_CPUID",
            source,
        })?;
    adjust(cpuid.as_mut_slice(), id, count);
    Ok(cpuid)
}

/// Sets the APIC ID, logical CPU count and hypervisor bit (leaf 1), one thread per core and `count` cores (leaves 4
/// and 0xb).
pub fn adjust(entries: &mut [kvm_bindings::kvm_cpuid_entry2], id: u8, count: u8) {
    for entry in entries.iter_mut() {
        match entry.function {
            1 => {
                entry.ebx =
                    (entry.ebx & 0x0000_ffff) | (u32::from(id) << 24) | (u32::from(count) << 16);
                entry.ecx |= ECX_HYPERVISOR;
                if count > 1 {
                    entry.edx |= EDX_HTT;
                }
            }
            4 => {
                // EAX[31:26]: cores per package - 1; EAX[25:14]: threads sharing this cache - 1.
                entry.eax &= 0x0000_3fff;
                entry.eax |= u32::from(count.saturating_sub(1)) << 26;
            }
            0xb => {
                entry.edx = u32::from(id);
                match entry.index {
                    0 => {
                        // SMT level: one thread per core.
                        entry.eax = 0;
                        entry.ebx = 1;
                        entry.ecx = 0x100;
                    }
                    1 => {
                        // Core level: `count` cores; shift enough bits to hold the APIC IDs.
                        entry.eax = u32::BITS - u32::from(count.max(1) - 1).leading_zeros();
                        entry.ebx = u32::from(count);
                        entry.ecx = 0x201;
                    }
                    _ => {
                        entry.eax = 0;
                        entry.ebx = 0;
                        entry.ecx = entry.index;
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    #[test]
    fn leaf_one_gets_apic_id_count_and_hypervisor_bit() {
        let mut entries = [kvm_cpuid_entry2 {
            function: 1,
            ebx: 0xffff_ffff,
            ..Default::default()
        }];
        adjust(&mut entries, 3, 4);
        assert_eq!(entries[0].ebx >> 24, 3);
        assert_eq!((entries[0].ebx >> 16) & 0xff, 4);
        assert_ne!(entries[0].ecx & ECX_HYPERVISOR, 0);
        assert_ne!(entries[0].edx & EDX_HTT, 0);
    }

    #[test]
    fn leaf_b_reports_topology() {
        let mut entries = [
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 0,
                ..Default::default()
            },
            kvm_cpuid_entry2 {
                function: 0xb,
                index: 1,
                ..Default::default()
            },
        ];
        adjust(&mut entries, 2, 4);
        assert_eq!((entries[0].ebx, entries[0].edx), (1, 2));
        assert_eq!((entries[1].eax, entries[1].ebx), (2, 4));
    }
}
