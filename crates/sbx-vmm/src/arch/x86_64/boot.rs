//! Loading the kernel, initrd and command line, and writing the boot information: boot_params with the e820 map for
//! the Linux 64-bit boot protocol (vmlinux or bzImage), or `hvm_start_info` with a memory map for PVH (a vmlinux
//! with a PVH entry note).

use std::fs::File;
use std::path::Path;

use linux_loader::configurator::linux::LinuxBootConfigurator;
use linux_loader::configurator::pvh::PvhBootConfigurator;
use linux_loader::configurator::{BootConfigurator, BootParams};
use linux_loader::loader::bootparam::{boot_e820_entry, boot_params};
use linux_loader::loader::elf::start_info::{
    hvm_memmap_table_entry, hvm_modlist_entry, hvm_start_info,
};
use linux_loader::loader::{BzImage, KernelLoader, KernelLoaderResult};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, ReadVolatile};

use super::{elf, layout, mptable, regs};
use crate::builder::{KernelKind, kernel_kind};
use crate::error::StartError;
use crate::vstate::memory::GuestMemory;

const E820_RAM: u32 = 1;
const E820_RESERVED: u32 = 2;
const KERNEL_BOOT_FLAG_MAGIC: u16 = 0xaa55;
const KERNEL_HDR_MAGIC: u32 = 0x5372_6448; // "HdrS"
const KERNEL_LOADER_OTHER: u8 = 0xff;
const KERNEL_MIN_ALIGNMENT: u32 = 0x0100_0000;
/// Offset of the 64-bit entry point from a bzImage's protected-mode load address.
const BZIMAGE_64BIT_ENTRY_OFFSET: u64 = 0x200;

const PVH_MAGIC: u32 = 0x336e_c578;

/// Which boot protocol to use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum BootProtocol {
    /// PVH when the kernel is an ELF with a PVH entry note, else the Linux 64-bit boot protocol.
    #[default]
    Auto,
    /// The Linux 64-bit boot protocol (boot_params, entered in long mode).
    Linux64,
    /// PVH (`hvm_start_info`, entered in 32-bit protected mode); needs a vmlinux with a PVH note.
    Pvh,
}

/// Where the boot CPU starts.
#[derive(Debug, Clone, Copy)]
pub struct BootInfo {
    /// The entry point.
    pub entry: u64,
    /// Entered through PVH (32-bit, RBX = start info) rather than the 64-bit protocol.
    pub pvh: bool,
}

/// What [`load_guest`] needs.
#[derive(Debug)]
pub struct GuestImage<'a> {
    /// Kernel file and path.
    pub kernel: (&'a Path, &'a File),
    /// The kernel's ELF headers, when already parsed (by the builder); parsed here otherwise.
    pub elf: Option<&'a elf::ElfKernel>,
    /// Initrd file and path.
    pub initrd: Option<(&'a Path, &'a File)>,
    /// Complete kernel command line.
    pub cmdline: &'a str,
    /// vCPU count (for the MP table).
    pub vcpus: u8,
    /// Requested boot protocol.
    pub protocol: BootProtocol,
}

/// Loads everything into guest memory and returns the entry point.
pub fn load_guest(mem: &GuestMemory, image: GuestImage<'_>) -> Result<BootInfo, StartError> {
    let (kernel_path, kernel_file) = image.kernel;
    let load_err = |reason: String| StartError::KernelLoad {
        path: kernel_path.to_path_buf(),
        reason,
    };
    let mut kernel = kernel_file
        .try_clone()
        .map_err(|e| load_err(e.to_string()))?;
    let kind = if image.elf.is_some() {
        KernelKind::Elf
    } else {
        let mut head = [0u8; 0x206];
        let read = read_head(&mut kernel, &mut head).map_err(|e| load_err(e.to_string()))?;
        kernel_kind(&head[..read]).map_err(load_err)?
    };
    let highmem = Some(GuestAddress(layout::HIMEM_START));
    let (loaded, entry, pvh) = match kind {
        KernelKind::Elf => {
            let parsed;
            let elf = match image.elf {
                Some(elf) => elf,
                None => {
                    let len = kernel_file
                        .metadata()
                        .map_err(|e| load_err(e.to_string()))?
                        .len();
                    parsed = elf::parse(kernel_file, len).map_err(load_err)?;
                    &parsed
                }
            };
            elf::load(mem, kernel_file, elf).map_err(load_err)?;
            let loaded = KernelLoaderResult {
                kernel_load: GuestAddress(elf.entry),
                kernel_end: elf.end,
                ..Default::default()
            };
            match (image.protocol, elf.pvh_entry) {
                (BootProtocol::Auto | BootProtocol::Pvh, Some(pvh)) => (loaded, pvh, true),
                (BootProtocol::Pvh, None) => {
                    return Err(load_err(
                        "PVH boot requested but the kernel has no PVH entry note (build it with CONFIG_PVH=y)".into(),
                    ));
                }
                // vmlinux's e_entry is the physical address of startup_64, the 64-bit boot protocol entry.
                _ => (loaded, elf.entry, false),
            }
        }
        KernelKind::BzImage => {
            if image.protocol == BootProtocol::Pvh {
                return Err(load_err(
                    "PVH boot needs an ELF vmlinux, not a bzImage".into(),
                ));
            }
            let r = BzImage::load(mem, None, &mut kernel, highmem)
                .map_err(|e| load_err(e.to_string()))?;
            let entry = r.kernel_load.0 + BZIMAGE_64BIT_ENTRY_OFFSET;
            (r, entry, false)
        }
    };
    write_cmdline(mem, image.cmdline)?;
    let initrd = match image.initrd {
        Some((path, file)) => Some(load_initrd(mem, path, file, loaded.kernel_end)?),
        None => None,
    };
    let map = e820_map(mem.last_addr().0 + 1);
    if pvh {
        write_pvh_info(mem, &map, initrd)?;
    } else {
        write_boot_params(mem, &loaded, image.cmdline, &map, initrd)?;
    }
    regs::write_gdt_and_page_tables(mem, pvh)?;
    mptable::write(mem, image.vcpus)?;
    Ok(BootInfo { entry, pvh })
}

fn bootparams_err(what: &'static str) -> impl Fn(linux_loader::configurator::Error) -> StartError {
    move |e| StartError::BootSetup {
        what,
        reason: e.to_string(),
    }
}

/// PVH: `hvm_start_info`, the memory map and the initrd as module 0.
fn write_pvh_info(
    mem: &GuestMemory,
    map: &[(u64, u64, u32)],
    initrd: Option<(u64, u64)>,
) -> Result<(), StartError> {
    let memmap: Vec<hvm_memmap_table_entry> = map
        .iter()
        .map(|(addr, size, kind)| hvm_memmap_table_entry {
            addr: *addr,
            size: *size,
            type_: *kind,
            reserved: 0,
        })
        .collect();
    let mut info = hvm_start_info {
        magic: PVH_MAGIC,
        version: 1,
        cmdline_paddr: layout::CMDLINE_START,
        memmap_paddr: layout::PVH_MEMMAP_START,
        memmap_entries: memmap.len() as u32,
        ..Default::default()
    };
    if initrd.is_some() {
        info.nr_modules = 1;
        info.modlist_paddr = layout::PVH_MODLIST_START;
    }
    let mut params = BootParams::new(&info, GuestAddress(layout::PVH_INFO_START));
    if let Some((addr, size)) = initrd {
        let module = hvm_modlist_entry {
            paddr: addr,
            size,
            ..Default::default()
        };
        params.set_modules(&[module], GuestAddress(layout::PVH_MODLIST_START));
    }
    params.set_sections(&memmap, GuestAddress(layout::PVH_MEMMAP_START));
    PvhBootConfigurator::write_bootparams(&params, mem).map_err(bootparams_err("PVH start info"))
}

/// The Linux 64-bit boot protocol's zero page.
fn write_boot_params(
    mem: &GuestMemory,
    loaded: &KernelLoaderResult,
    cmdline: &str,
    map: &[(u64, u64, u32)],
    initrd: Option<(u64, u64)>,
) -> Result<(), StartError> {
    let mut params = boot_params::default();
    if let Some(hdr) = loaded.setup_header {
        params.hdr = hdr;
    }
    params.hdr.boot_flag = KERNEL_BOOT_FLAG_MAGIC;
    params.hdr.header = KERNEL_HDR_MAGIC;
    params.hdr.type_of_loader = KERNEL_LOADER_OTHER;
    if params.hdr.kernel_alignment == 0 {
        params.hdr.kernel_alignment = KERNEL_MIN_ALIGNMENT;
    }
    params.hdr.cmd_line_ptr = layout::CMDLINE_START as u32;
    params.hdr.cmdline_size = cmdline.len() as u32;
    if let Some((addr, size)) = initrd {
        params.hdr.ramdisk_image = addr as u32;
        params.hdr.ramdisk_size = size as u32;
    }
    if map.len() > params.e820_table.len() {
        return Err(StartError::BootSetup {
            what: "e820 map",
            reason: format!("{} entries do not fit", map.len()),
        });
    }
    for (slot, (addr, size, kind)) in params.e820_table.iter_mut().zip(map) {
        *slot = boot_e820_entry {
            addr: *addr,
            size: *size,
            r#type: *kind,
        };
    }
    params.e820_entries = map.len() as u8;
    let boot = BootParams::new(&params, GuestAddress(layout::ZERO_PAGE_START));
    LinuxBootConfigurator::write_bootparams(&boot, mem).map_err(bootparams_err("boot_params"))
}

fn read_head(file: &mut File, head: &mut [u8]) -> std::io::Result<usize> {
    use std::io::{Read, Seek, SeekFrom};
    file.seek(SeekFrom::Start(0))?;
    let mut filled = 0;
    while filled < head.len() {
        match file.read(&mut head[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    file.seek(SeekFrom::Start(0))?;
    Ok(filled)
}

fn write_cmdline(mem: &GuestMemory, cmdline: &str) -> Result<(), StartError> {
    if cmdline.len() >= layout::CMDLINE_MAX_SIZE {
        return Err(StartError::BootSetup {
            what: "command line",
            reason: format!(
                "{} bytes exceed {}",
                cmdline.len(),
                layout::CMDLINE_MAX_SIZE - 1
            ),
        });
    }
    let mut bytes = cmdline.as_bytes().to_vec();
    bytes.push(0);
    mem.write_slice(&bytes, GuestAddress(layout::CMDLINE_START))
        .map_err(|e| StartError::BootSetup {
            what: "command line",
            reason: e.to_string(),
        })
}

/// Places the initrd at the top of low RAM (page aligned), above the kernel.
fn load_initrd(
    mem: &GuestMemory,
    path: &Path,
    file: &File,
    kernel_end: u64,
) -> Result<(u64, u64), StartError> {
    let err = |reason: String| StartError::InitrdLoad {
        path: path.to_path_buf(),
        reason,
    };
    let size = file.metadata().map_err(|e| err(e.to_string()))?.len();
    let low_end = (mem.last_addr().0 + 1).min(layout::MMIO_GAP_START);
    let addr = low_end
        .checked_sub(size)
        .map(|a| a & !0xfff)
        .filter(|a| *a >= kernel_end.max(layout::HIMEM_START))
        .ok_or_else(|| {
            err(format!(
                "{size} bytes do not fit in guest memory above the kernel; add memory"
            ))
        })?;
    let mut reader = file.try_clone().map_err(|e| err(e.to_string()))?;
    let mut remaining = size as usize;
    let mut at = addr;
    while remaining > 0 {
        let slice = mem
            .get_slice(GuestAddress(at), remaining.min(1 << 20))
            .map_err(|e| err(e.to_string()))?;
        let n = reader
            .read_volatile(&mut slice.clone())
            .map_err(|e| err(e.to_string()))?;
        if n == 0 {
            return Err(err("file shrank while loading".into()));
        }
        remaining -= n;
        at += n as u64;
    }
    Ok((addr, size))
}

/// The e820 map for a guest whose RAM ends at `ram_end` (exclusive, counting the part above 4 GiB).
pub fn e820_map(ram_end: u64) -> Vec<(u64, u64, u32)> {
    let mut map = vec![
        (0, layout::EBDA_START, E820_RAM),
        (
            layout::EBDA_START,
            0x100000 - layout::EBDA_START,
            E820_RESERVED,
        ),
    ];
    let low_end = ram_end.min(layout::MMIO_GAP_START);
    map.push((layout::HIMEM_START, low_end - layout::HIMEM_START, E820_RAM));
    if ram_end > layout::MMIO_GAP_END {
        map.push((
            layout::MMIO_GAP_END,
            ram_end - layout::MMIO_GAP_END,
            E820_RAM,
        ));
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn e820_small_and_large() {
        let small = e820_map(128 << 20);
        assert_eq!(small.len(), 3);
        assert_eq!(small[2], (0x100000, (128 << 20) - 0x100000, E820_RAM));
        let large = e820_map(layout::MMIO_GAP_END + (1 << 30));
        assert_eq!(large.len(), 4);
        assert_eq!(large[2].0 + large[2].1, layout::MMIO_GAP_START);
        assert_eq!(large[3], (layout::MMIO_GAP_END, 1 << 30, E820_RAM));
    }
}
