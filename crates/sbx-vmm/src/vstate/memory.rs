//! Guest memory: anonymous private mappings laid out by [`crate::arch::layout::ram_regions`].

use vm_memory::GuestAddress;

use crate::arch::layout;
use crate::error::StartError;

/// The guest memory type used throughout the crate.
pub type GuestMemory = vm_memory::GuestMemoryMmap<()>;

/// Allocates `mib` MiB of guest RAM (lazily backed: untouched pages cost nothing).
pub fn create(mib: u64) -> Result<GuestMemory, StartError> {
    let bytes = mib.checked_mul(1 << 20).ok_or_else(|| StartError::Memory {
        mib,
        reason: "size overflows".into(),
    })?;
    let ranges: Vec<(GuestAddress, usize)> = layout::ram_regions(bytes)
        .into_iter()
        .map(|(start, len)| (GuestAddress(start), len as usize))
        .collect();
    GuestMemory::from_ranges(&ranges).map_err(|e| StartError::Memory {
        mib,
        reason: e.to_string(),
    })
}
