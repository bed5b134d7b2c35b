//! The guest physical memory map.
//!
//! ```text
//! 0x0000_0500  GDT              0x0000_6000  PVH start info            0x0000_7000  boot_params / PVH memory map
//! 0x0000_8ff0  boot stack (grows down)
//! 0x0000_9000  PML4             0x0000_a000  PDPT                      0x0000_b000  4 page directories (4 GiB, 2 MiB pages)
//! 0x0002_0000  command line     0x0009_fc00  MP table (EBDA)           0x0010_0000  high memory (kernel, initrd)
//! 0xd000_0000  MMIO gap: boot timer, then one 4 KiB window per virtio device   0x1_0000_0000  RAM above 4 GiB
//! ```

/// GDT location.
pub const GDT_START: u64 = 0x500;
/// Zero page (`boot_params`) for the Linux 64-bit boot protocol; also the PVH start info area.
pub const ZERO_PAGE_START: u64 = 0x7000;
/// Initial stack pointer.
pub const BOOT_STACK_POINTER: u64 = 0x8ff0;
/// PML4 of the identity page tables.
pub const PML4_START: u64 = 0x9000;
/// PDPT of the identity page tables.
pub const PDPTE_START: u64 = 0xa000;
/// First of the four page directories.
pub const PDE_START: u64 = 0xb000;
/// PVH start info (`hvm_start_info`).
pub const PVH_INFO_START: u64 = 0x6000;
/// PVH module list (the initrd).
pub const PVH_MODLIST_START: u64 = 0x6040;
/// PVH memory map (`hvm_memmap_table_entry` array); PVH boots do not use the zero page, so the map reuses it.
pub const PVH_MEMMAP_START: u64 = ZERO_PAGE_START;
/// Kernel command line.
pub const CMDLINE_START: u64 = 0x20000;
/// Largest command line, including the NUL.
pub const CMDLINE_MAX_SIZE: usize = 4096;
/// Start of the EBDA, where the MP table goes.
pub const EBDA_START: u64 = 0x9fc00;
/// Start of high memory, where kernels load.
pub const HIMEM_START: u64 = 0x10_0000;
/// Start of the 32-bit MMIO gap.
pub const MMIO_GAP_START: u64 = 0xd000_0000;
/// End of the 32-bit MMIO gap (4 GiB).
pub const MMIO_GAP_END: u64 = 0x1_0000_0000;
/// The boot timer's MMIO page.
pub const BOOT_TIMER_START: u64 = MMIO_GAP_START;
/// First virtio-mmio device window.
pub const VIRTIO_MMIO_START: u64 = MMIO_GAP_START + 0x1000;
/// Size of each virtio-mmio window.
pub const VIRTIO_MMIO_SIZE: u64 = 0x1000;
/// First GSI used for virtio devices (IOAPIC pins 5..=23).
pub const VIRTIO_IRQ_BASE: u32 = 5;
/// Number of virtio devices (limited by the free IOAPIC pins).
pub const MAX_VIRTIO_DEVICES: usize = 19;
/// IOAPIC address.
pub const IOAPIC_ADDR: u32 = 0xfec0_0000;
/// Local APIC address.
pub const APIC_ADDR: u32 = 0xfee0_0000;
/// TSS address KVM needs on Intel (three pages just below the IOAPIC... placed in the MMIO gap, unused by devices).
pub const KVM_TSS_ADDRESS: usize = 0xfffb_d000;
/// Serial port COM1 and its IRQ.
pub const COM1_PORT: u16 = 0x3f8;
/// COM1's interrupt line.
pub const COM1_IRQ: u32 = 4;
/// i8042 data and command ports.
pub const I8042_PORT: u16 = 0x60;
/// i8042's interrupt line.
pub const I8042_IRQ: u32 = 1;

/// Base address and GSI of the `index`-th virtio device.
pub fn virtio_slot(index: usize) -> (u64, u32) {
    (
        VIRTIO_MMIO_START + VIRTIO_MMIO_SIZE * index as u64,
        VIRTIO_IRQ_BASE + index as u32,
    )
}

/// Guest RAM regions for `mem_bytes` of memory: below the MMIO gap, and the rest above 4 GiB.
pub fn ram_regions(mem_bytes: u64) -> Vec<(u64, u64)> {
    if mem_bytes <= MMIO_GAP_START {
        vec![(0, mem_bytes)]
    } else {
        vec![
            (0, MMIO_GAP_START),
            (MMIO_GAP_END, mem_bytes - MMIO_GAP_START),
        ]
    }
}
