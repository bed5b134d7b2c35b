//! x86_64 boot: memory layout and e820, boot_params, GDT, identity page tables, registers, CPUID, MSRs, MP table.
//!
//! The facade is three calls: [`setup_vm`] (in-kernel irqchip, PIT, TSS), [`load_guest`] (kernel, initrd, command
//! line and every boot structure into guest memory) and [`configure_vcpu`] (CPUID, MSRs, registers, LAPIC).

pub mod boot;
pub mod cpuid;
pub mod elf;
pub mod gdt;
pub mod layout;
pub mod mptable;
pub mod msrs;
pub mod regs;

pub use boot::{BootInfo, BootProtocol, e820_map, load_guest};

use kvm_bindings::kvm_pit_config;
use kvm_ioctls::{Kvm, VcpuFd, VmFd};

use crate::error::StartError;

fn kvm_err(step: &'static str) -> impl FnOnce(kvm_ioctls::Error) -> StartError {
    move |source| StartError::Kvm { step, source }
}

/// VM-wide setup: TSS address, in-kernel IOAPIC/PIC/LAPIC and the PIT.
pub fn setup_vm(vm: &VmFd) -> Result<(), StartError> {
    vm.set_tss_address(layout::KVM_TSS_ADDRESS)
        .map_err(kvm_err("KVM_SET_TSS_ADDR"))?;
    vm.create_irq_chip()
        .map_err(kvm_err("KVM_CREATE_IRQCHIP"))?;
    let pit = kvm_pit_config {
        // KVM_PIT_SPEAKER_DUMMY: the PC speaker port reads without exiting.
        flags: kvm_bindings::KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit).map_err(kvm_err("KVM_CREATE_PIT2"))?;
    Ok(())
}

/// Per-vCPU setup: CPUID (hypervisor bit, topology), MSRs, general and segment registers, FPU, LAPIC LINT pins.
pub fn configure_vcpu(
    kvm: &Kvm,
    vcpu: &VcpuFd,
    id: u8,
    count: u8,
    boot: &BootInfo,
) -> Result<(), StartError> {
    let cpuid = cpuid::for_vcpu(kvm, id, count)?;
    vcpu.set_cpuid2(&cpuid).map_err(kvm_err("KVM_SET_CPUID2"))?;
    msrs::setup(vcpu)?;
    regs::setup_regs(vcpu, boot, id == 0)?;
    regs::setup_sregs(vcpu, boot.pvh)?;
    regs::setup_fpu(vcpu)?;
    regs::setup_lapic(vcpu)?;
    Ok(())
}
