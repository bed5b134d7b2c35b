//! The boot GDT: null, 64-bit code, data and TSS descriptors, and their `kvm_segment` forms.

use kvm_bindings::kvm_segment;

/// Selector of the code segment.
pub const CODE_SELECTOR: u16 = 0x08;
/// Selector of the data segments.
pub const DATA_SELECTOR: u16 = 0x10;
/// Selector of the TSS.
pub const TSS_SELECTOR: u16 = 0x18;

/// Encodes a descriptor from flags (access byte in bits 0..8, flags nibble in 12..16), base and limit.
pub const fn entry(flags: u16, base: u32, limit: u32) -> u64 {
    ((base as u64 & 0xff00_0000) << 32)
        | ((flags as u64 & 0xf0ff) << 40)
        | ((limit as u64 & 0x000f_0000) << 32)
        | ((base as u64 & 0x00ff_ffff) << 16)
        | (limit as u64 & 0x0000_ffff)
}

/// The four GDT entries the boot CPU starts with.
pub const TABLE: [u64; 4] = [
    0,
    entry(0xa09b, 0, 0xfffff), // code: present, DPL0, exec/read, accessed; L=1, G=1
    entry(0xc093, 0, 0xfffff), // data: present, DPL0, read/write, accessed; D/B=1, G=1
    entry(0x808b, 0, 0xfffff), // TSS: present, busy 64-bit TSS
];

/// The GDT for PVH entry: the CPU starts in 32-bit protected mode, so the code segment is 32-bit.
pub const TABLE_PVH: [u64; 4] = [
    0,
    entry(0xc09b, 0, 0xfffff), // code: present, DPL0, exec/read, accessed; D=1, G=1
    entry(0xc093, 0, 0xfffff), // data
    entry(0x008b, 0, 0x67),    // TSS: present, busy 32-bit TSS, byte granular
];

/// The `kvm_segment` matching GDT entry `index` of the 64-bit boot table.
pub fn segment(index: usize) -> kvm_segment {
    segment_of(&TABLE, index)
}

/// The `kvm_segment` matching entry `index` of `table`.
pub fn segment_of(table: &[u64; 4], index: usize) -> kvm_segment {
    let raw = table[index];
    let base = ((raw >> 16) & 0x00ff_ffff) | ((raw >> 32) & 0xff00_0000);
    let limit_raw = ((raw & 0xffff) | ((raw >> 32) & 0x000f_0000)) as u32;
    let granular = (raw >> 55) & 1 == 1;
    let limit = if granular {
        (limit_raw << 12) | 0xfff
    } else {
        limit_raw
    };
    kvm_segment {
        base,
        limit,
        selector: (index * 8) as u16,
        type_: ((raw >> 40) & 0xf) as u8,
        present: ((raw >> 47) & 1) as u8,
        dpl: ((raw >> 45) & 3) as u8,
        db: ((raw >> 54) & 1) as u8,
        s: ((raw >> 44) & 1) as u8,
        l: ((raw >> 53) & 1) as u8,
        g: granular as u8,
        avl: ((raw >> 52) & 1) as u8,
        unusable: 0,
        padding: 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn code_segment_is_64_bit_ring_0() {
        let code = segment(1);
        assert_eq!(code.selector, CODE_SELECTOR);
        assert_eq!(
            (code.l, code.db, code.dpl, code.present, code.s),
            (1, 0, 0, 1, 1)
        );
        assert_eq!(code.type_, 0xb);
        assert_eq!(code.limit, 0xffff_ffff);
        let data = segment(2);
        assert_eq!((data.db, data.l, data.type_), (1, 0, 3));
        let tss = segment(3);
        assert_eq!((tss.s, tss.type_, tss.selector), (0, 0xb, TSS_SELECTOR));
        let pvh_code = segment_of(&TABLE_PVH, 1);
        assert_eq!((pvh_code.l, pvh_code.db, pvh_code.type_), (0, 1, 0xb));
        let pvh_tss = segment_of(&TABLE_PVH, 3);
        assert_eq!((pvh_tss.present, pvh_tss.limit, pvh_tss.g), (1, 0x67, 0));
    }
}
