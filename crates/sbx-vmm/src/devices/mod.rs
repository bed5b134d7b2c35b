//! Emulated devices: the port-I/O and MMIO buses, a 16550 serial console, an i8042 (reset only), a boot timer, and
//! virtio-mmio devices (block, vsock, rng, and any [`virtio::VirtioDevice`] from another crate).

pub mod boot_timer;
pub mod bus;
pub mod i8042;
pub mod serial;
pub mod virtio;

pub use bus::{Bus, BusDevice};
