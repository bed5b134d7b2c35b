//! Initial vCPU register state for the Linux 64-bit boot protocol: long mode, paging on, flat segments.

use kvm_bindings::{kvm_fpu, kvm_regs};
use kvm_ioctls::VcpuFd;
use vm_memory::{Bytes, GuestAddress};

use super::{BootInfo, gdt, kvm_err, layout};
use crate::error::StartError;
use crate::vstate::memory::GuestMemory;

const CR0_PE: u64 = 1;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// Page-table entry flags: present, writable; PS marks a 2 MiB page in a page directory.
const PTE_PRESENT_RW: u64 = 0x3;
const PDE_LARGE: u64 = 0x80;

/// RIP at the kernel entry; for the 64-bit protocol RSP on the boot stack and RSI at the zero page, for PVH RBX at
/// the start info. Boot CPU only: APs wait for INIT/SIPI.
pub fn setup_regs(vcpu: &VcpuFd, boot: &BootInfo, boot_cpu: bool) -> Result<(), StartError> {
    if !boot_cpu {
        return Ok(());
    }
    let regs = if boot.pvh {
        kvm_regs {
            rflags: 0x2,
            rip: boot.entry,
            rbx: layout::PVH_INFO_START,
            ..Default::default()
        }
    } else {
        kvm_regs {
            rflags: 0x2,
            rip: boot.entry,
            rsp: layout::BOOT_STACK_POINTER,
            rbp: layout::BOOT_STACK_POINTER,
            rsi: layout::ZERO_PAGE_START,
            ..Default::default()
        }
    };
    vcpu.set_regs(&regs).map_err(kvm_err("KVM_SET_REGS"))
}

/// 64-bit protocol: flat 64-bit segments, paging with the identity tables, long mode enabled. PVH: flat 32-bit
/// protected mode, paging off.
pub fn setup_sregs(vcpu: &VcpuFd, pvh: bool) -> Result<(), StartError> {
    let mut sregs = vcpu.get_sregs().map_err(kvm_err("KVM_GET_SREGS"))?;
    let table = if pvh { &gdt::TABLE_PVH } else { &gdt::TABLE };
    let code = gdt::segment_of(table, 1);
    let data = gdt::segment_of(table, 2);
    let tss = gdt::segment_of(table, 3);
    sregs.gdt.base = layout::GDT_START;
    sregs.gdt.limit = (std::mem::size_of_val(&gdt::TABLE) - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cs = code;
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.tr = tss;
    if pvh {
        sregs.cr0 = CR0_PE | CR0_ET;
        sregs.cr3 = 0;
        sregs.cr4 = 0;
        sregs.efer = 0;
    } else {
        sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
        sregs.cr3 = layout::PML4_START;
        sregs.cr4 = CR4_PAE;
        sregs.efer = EFER_LME | EFER_LMA;
    }
    vcpu.set_sregs(&sregs).map_err(kvm_err("KVM_SET_SREGS"))
}

/// x87 control word and MXCSR at their reset values.
pub fn setup_fpu(vcpu: &VcpuFd) -> Result<(), StartError> {
    let fpu = kvm_fpu {
        fcw: 0x37f,
        mxcsr: 0x1f80,
        ..Default::default()
    };
    vcpu.set_fpu(&fpu).map_err(kvm_err("KVM_SET_FPU"))
}

/// LINT0 as ExtINT (the PIC) and LINT1 as NMI, as firmware would leave them.
pub fn setup_lapic(vcpu: &VcpuFd) -> Result<(), StartError> {
    const LVT_LINT0: usize = 0x350;
    const LVT_LINT1: usize = 0x360;
    const MODE_EXTINT: u32 = 0x7;
    const MODE_NMI: u32 = 0x4;
    let mut lapic = vcpu.get_lapic().map_err(kvm_err("KVM_GET_LAPIC"))?;
    for (offset, mode) in [(LVT_LINT0, MODE_EXTINT), (LVT_LINT1, MODE_NMI)] {
        let bytes: Vec<u8> = lapic.regs[offset..offset + 4]
            .iter()
            .map(|b| *b as u8)
            .collect();
        let value = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
        let value = (value & !0x700) | (mode << 8);
        for (i, b) in value.to_le_bytes().iter().enumerate() {
            lapic.regs[offset + i] = *b as _;
        }
    }
    vcpu.set_lapic(&lapic).map_err(kvm_err("KVM_SET_LAPIC"))
}

/// Writes the GDT (for the chosen protocol) and identity page tables mapping the first 4 GiB with 2 MiB pages.
pub fn write_gdt_and_page_tables(mem: &GuestMemory, pvh: bool) -> Result<(), StartError> {
    let fail = |what: &'static str| {
        move |e: vm_memory::GuestMemoryError| StartError::BootSetup {
            what,
            reason: e.to_string(),
        }
    };
    let table = if pvh { &gdt::TABLE_PVH } else { &gdt::TABLE };
    for (i, entry) in table.iter().enumerate() {
        mem.write_obj(*entry, GuestAddress(layout::GDT_START + 8 * i as u64))
            .map_err(fail("GDT"))?;
    }
    mem.write_obj(
        layout::PDPTE_START | PTE_PRESENT_RW,
        GuestAddress(layout::PML4_START),
    )
    .map_err(fail("PML4"))?;
    for dir in 0..4u64 {
        let pd = layout::PDE_START + dir * 0x1000;
        mem.write_obj(
            pd | PTE_PRESENT_RW,
            GuestAddress(layout::PDPTE_START + dir * 8),
        )
        .map_err(fail("PDPT"))?;
        for i in 0..512u64 {
            let frame = ((dir << 9) + i) << 21;
            mem.write_obj(frame | PTE_PRESENT_RW | PDE_LARGE, GuestAddress(pd + i * 8))
                .map_err(fail("page directory"))?;
        }
    }
    Ok(())
}
