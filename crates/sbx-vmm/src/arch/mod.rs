//! Architecture support. Only x86_64 is implemented; the rest of the crate uses this facade.

pub mod x86_64;

pub use x86_64::layout;
pub use x86_64::{BootInfo, BootProtocol, configure_vcpu, load_guest, setup_vm};
