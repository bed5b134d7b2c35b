//! The Intel MultiProcessor table (MP spec 1.4) that tells a guest without ACPI about its CPUs and IOAPIC.

use vm_memory::{Bytes, GuestAddress};

use super::layout;
use crate::error::StartError;
use crate::vstate::memory::GuestMemory;

const APIC_VERSION: u8 = 0x14;
const IOAPIC_VERSION: u8 = 0x11;
const IOAPIC_PINS: u8 = 24;
const CPU_ENABLED: u8 = 1;
const CPU_BOOT_PROCESSOR: u8 = 2;
/// CPU signature (family 6) and feature flags (FPU, APIC) for processor entries.
const CPU_SIGNATURE: u32 = 0x600;
const CPU_FEATURES: u32 = 0x201;

/// Builds the table bytes for `cpus` processors; the table starts at guest address `base`.
pub fn build(cpus: u8, base: u64) -> Vec<u8> {
    let mut entries = Vec::new();
    let mut count: u16 = 0;
    for id in 0..cpus {
        let flags = CPU_ENABLED | if id == 0 { CPU_BOOT_PROCESSOR } else { 0 };
        entries.extend_from_slice(&[0, id, APIC_VERSION, flags]);
        entries.extend_from_slice(&CPU_SIGNATURE.to_le_bytes());
        entries.extend_from_slice(&CPU_FEATURES.to_le_bytes());
        entries.extend_from_slice(&[0; 8]);
        count += 1;
    }
    entries.extend_from_slice(&[1, 0]);
    entries.extend_from_slice(b"ISA   ");
    count += 1;
    let ioapic_id = cpus.saturating_add(1);
    entries.extend_from_slice(&[2, ioapic_id, IOAPIC_VERSION, 1]);
    entries.extend_from_slice(&layout::IOAPIC_ADDR.to_le_bytes());
    count += 1;
    for irq in 0..IOAPIC_PINS {
        // INT, conforming polarity/trigger, from ISA bus irq N to IOAPIC pin N.
        entries.extend_from_slice(&[3, 0, 0, 0, 0, irq, ioapic_id, irq]);
        count += 1;
    }
    // LINT0 as ExtINT and LINT1 as NMI on every local APIC.
    entries.extend_from_slice(&[4, 3, 0, 0, 0, 0, 0xff, 0]);
    entries.extend_from_slice(&[4, 1, 0, 0, 0, 0, 0xff, 1]);
    count += 2;

    let table_addr = base + 16;
    let mut header = Vec::with_capacity(44);
    header.extend_from_slice(b"PCMP");
    header.extend_from_slice(&((44 + entries.len()) as u16).to_le_bytes());
    header.extend_from_slice(&[4, 0]);
    header.extend_from_slice(b"SBX-VMM ");
    header.extend_from_slice(b"MICROVM     ");
    header.extend_from_slice(&0u32.to_le_bytes());
    header.extend_from_slice(&0u16.to_le_bytes());
    header.extend_from_slice(&count.to_le_bytes());
    header.extend_from_slice(&layout::APIC_ADDR.to_le_bytes());
    header.extend_from_slice(&0u32.to_le_bytes());
    let mut table = header;
    table.extend_from_slice(&entries);
    table[7] = checksum(&table);

    let mut floating = Vec::with_capacity(16);
    floating.extend_from_slice(b"_MP_");
    floating.extend_from_slice(&(table_addr as u32).to_le_bytes());
    floating.extend_from_slice(&[1, 4, 0, 0, 0, 0, 0, 0]);
    floating[10] = checksum(&floating);

    let mut out = floating;
    out.extend_from_slice(&table);
    out
}

/// The byte that makes `bytes` sum to zero (mod 256).
fn checksum(bytes: &[u8]) -> u8 {
    0u8.wrapping_sub(bytes.iter().fold(0u8, |acc, b| acc.wrapping_add(*b)))
}

/// Writes the MP table into the EBDA.
pub fn write(mem: &GuestMemory, cpus: u8) -> Result<(), StartError> {
    let bytes = build(cpus, layout::EBDA_START);
    if layout::EBDA_START + bytes.len() as u64 > 0xa0000 {
        return Err(StartError::BootSetup {
            what: "MP table",
            reason: format!("{} bytes do not fit in the EBDA", bytes.len()),
        });
    }
    mem.write_slice(&bytes, GuestAddress(layout::EBDA_START))
        .map_err(|e| StartError::BootSetup {
            what: "MP table",
            reason: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checksums_and_counts_are_consistent() {
        let bytes = build(4, layout::EBDA_START);
        assert_eq!(&bytes[..4], b"_MP_");
        assert_eq!(bytes[..16].iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let table = &bytes[16..];
        assert_eq!(&table[..4], b"PCMP");
        let len = u16::from_le_bytes([table[4], table[5]]) as usize;
        assert_eq!(len, table.len());
        assert_eq!(table.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
        let count = u16::from_le_bytes([table[34], table[35]]);
        assert_eq!(count, 4 + 1 + 1 + 24 + 2);
        let pointer = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
        assert_eq!(u64::from(pointer), layout::EBDA_START + 16);
        // Fits below the 640 KiB boundary even at the vCPU maximum.
        assert!(build(32, layout::EBDA_START).len() as u64 <= 0xa0000 - layout::EBDA_START);
    }
}
