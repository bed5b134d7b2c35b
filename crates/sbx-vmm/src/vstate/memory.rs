//! Guest memory: anonymous private mappings laid out by [`crate::arch::layout::ram_regions`], and copy-on-write
//! file mappings placed over parts of them (the kernel image, see [`crate::arch::x86_64::elf`]).
#![allow(unsafe_code)]

use std::fs::File;
use std::os::fd::AsRawFd;

use vm_memory::{GuestAddress, GuestMemoryBackend};

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

/// Why [`map_file_private`] failed.
#[derive(Debug)]
pub struct MapError {
    /// The error from the kernel (or the argument check).
    pub error: std::io::Error,
    /// Whether the range is still backed by (fresh, zeroed) memory. When false, part of guest memory is unmapped
    /// and must not be touched: the VM cannot be started.
    pub memory_intact: bool,
}

/// Replaces guest memory `addr..addr+len` with a private (copy-on-write) mapping of `file` from `offset`.
///
/// `addr`, `len` and `offset` must be page aligned and the range must lie inside one region. The guest sees the
/// file's bytes; its writes go to private pages and never reach the file. Meant for memory nothing has used yet
/// (what was there is discarded).
pub fn map_file_private(
    mem: &GuestMemory,
    addr: GuestAddress,
    len: u64,
    file: &File,
    offset: u64,
) -> Result<(), MapError> {
    let intact = |error| MapError {
        error,
        memory_intact: true,
    };
    let page = 4096u64;
    let invalid =
        |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidInput, what.to_string());
    if !addr.0.is_multiple_of(page)
        || !len.is_multiple_of(page)
        || !offset.is_multiple_of(page)
        || len == 0
    {
        return Err(intact(invalid(
            "address, length and offset must be page aligned",
        )));
    }
    let len_usize = usize::try_from(len).map_err(|_| intact(invalid("length too large")))?;
    let offset = libc::off_t::try_from(offset).map_err(|_| intact(invalid("offset too large")))?;
    // `get_slice` fails unless the whole range lies inside a single region.
    let slice = mem
        .get_slice(addr, len_usize)
        .map_err(|e| intact(invalid(&e.to_string())))?;
    let host = slice.ptr_guard_mut().as_ptr();
    // SAFETY: `host..host+len` lies inside a mapping owned by `mem` (checked by `get_slice` above), so MAP_FIXED
    // replaces only guest memory, never memory Rust objects live in. The new mapping has the same size and
    // protection, so every pointer vm-memory and KVM hold stays valid; the region's own munmap on drop covers it.
    // Guest memory is only ever accessed through volatile accesses, and the caller maps only memory not yet in use.
    let mapped = unsafe {
        libc::mmap(
            host.cast(),
            len_usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
            file.as_raw_fd(),
            offset,
        )
    };
    if mapped == libc::MAP_FAILED {
        let error = std::io::Error::last_os_error();
        // A failed MAP_FIXED may have removed the old pages; put fresh anonymous memory back so the range stays
        // usable (the caller then copies instead).
        // SAFETY: as above: the same range inside guest memory, same size and protection.
        let restored = unsafe {
            libc::mmap(
                host.cast(),
                len_usize,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if restored == libc::MAP_FAILED {
            return Err(MapError {
                error: std::io::Error::other(format!(
                    "{error}; restoring anonymous memory failed too: {}",
                    std::io::Error::last_os_error()
                )),
                memory_intact: false,
            });
        }
        return Err(intact(error));
    }
    Ok(())
}
