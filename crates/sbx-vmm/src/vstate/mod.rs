//! KVM state: the VM file descriptor with its memory slots, and the vCPUs with their run loops.

pub mod memory;
pub mod vcpu;
pub mod vm;
