//! Loading an uncompressed ELF `vmlinux` without copying it.
//!
//! A 6.1 vmlinux carries ~12 MiB of `PT_LOAD` bytes. Copying them into fresh anonymous guest memory costs one page
//! fault per 4 KiB page plus the copy — most of the VMM's start-up CPU time on a nested host. Instead, every whole
//! page of a segment is mapped from the file *copy-on-write* (`MAP_PRIVATE | MAP_FIXED`) over the guest memory it
//! belongs to: one `mmap` per segment, no copy, and the kernel's text stays shared in the host page cache between all
//! VMs booting the same file. The guest's writes (its `.data`, and everything once it reuses the memory) go to private
//! copies; the file is never written. Only the partial pages at a segment's ends are read with `pread`, and the
//! zero-filled tail (`.bss`, `p_memsz > p_filesz`) is left to the fresh anonymous memory, which is already zero.
//!
//! Caveat, as for any mapped executable: the kernel file must not be truncated or rewritten in place while a VM
//! runs (replace it by renaming a new file over it, as `cargo xtask guest-kernel` does).
//!
//! Headers are validated before anything is loaded: 64-bit little-endian x86_64, program headers inside the file,
//! every loaded segment inside the file, at or above 1 MiB and inside guest memory. The PVH entry comes from the
//! `Xen` `XEN_ELFNOTE_PHYS32_ENTRY` note.

use std::fs::File;
use std::os::unix::fs::FileExt;

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::layout;
use crate::vstate::memory::{self, GuestMemory};

const EHDR_SIZE: usize = 64;
const PHDR_SIZE: usize = 56;
/// More program headers than any kernel has; bounds the header read.
const MAX_PHDRS: u16 = 128;
/// Notes larger than this are not searched for the PVH entry (a vmlinux's notes are a few hundred bytes).
const MAX_NOTES: u64 = 64 * 1024;
const PT_LOAD: u32 = 1;
const PT_NOTE: u32 = 4;
const EM_X86_64: u16 = 62;
const XEN_ELFNOTE_PHYS32_ENTRY: u32 = 18;
const PAGE: u64 = 4096;

/// A `PT_LOAD` segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// File offset of the segment's bytes.
    pub offset: u64,
    /// Guest physical load address.
    pub paddr: u64,
    /// Bytes taken from the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero).
    pub memsz: u64,
}

/// A validated vmlinux.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfKernel {
    /// `e_entry`: the physical address of `startup_64` (64-bit boot protocol entry).
    pub entry: u64,
    /// The PVH entry point, if the kernel has one.
    pub pvh_entry: Option<u64>,
    /// Segments to load.
    pub segments: Vec<Segment>,
    /// First byte after the highest segment.
    pub end: u64,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// Reads and validates the headers of `file` (`file_len` bytes long).
pub fn parse(file: &File, file_len: u64) -> Result<ElfKernel, String> {
    let mut ehdr = [0u8; EHDR_SIZE];
    file.read_exact_at(&mut ehdr, 0)
        .map_err(|e| format!("reading the ELF header: {e}"))?;
    let (phoff, phnum) = check_ehdr(&ehdr, file_len)?;
    let mut table = vec![0u8; usize::from(phnum) * PHDR_SIZE];
    file.read_exact_at(&mut table, phoff)
        .map_err(|e| format!("reading the program headers: {e}"))?;
    let mut kernel = ElfKernel {
        entry: u64_at(&ehdr, 24),
        pvh_entry: None,
        segments: Vec::new(),
        end: 0,
    };
    for phdr in table.chunks_exact(PHDR_SIZE) {
        let (kind, offset, filesz) = (u32_at(phdr, 0), u64_at(phdr, 8), u64_at(phdr, 32));
        match kind {
            PT_LOAD => {
                let segment = Segment {
                    offset,
                    paddr: u64_at(phdr, 24),
                    filesz,
                    memsz: u64_at(phdr, 40),
                };
                kernel.end = kernel.end.max(check_segment(&segment, file_len)?);
                kernel.segments.push(segment);
            }
            PT_NOTE if kernel.pvh_entry.is_none() && filesz <= MAX_NOTES => {
                if offset.checked_add(filesz).is_none_or(|end| end > file_len) {
                    return Err(format!(
                        "a PT_NOTE segment ({filesz} bytes at offset {offset:#x}) lies outside the file"
                    ));
                }
                let mut notes = vec![0u8; filesz as usize];
                file.read_exact_at(&mut notes, offset)
                    .map_err(|e| format!("reading the ELF notes: {e}"))?;
                kernel.pvh_entry = pvh_entry(&notes);
            }
            _ => {}
        }
    }
    if kernel.segments.is_empty() {
        return Err("the ELF file has no PT_LOAD segment".into());
    }
    Ok(kernel)
}

/// Validates the ELF header; returns the program header table's offset and entry count.
fn check_ehdr(ehdr: &[u8; EHDR_SIZE], file_len: u64) -> Result<(u64, u16), String> {
    if ehdr[..4] != *b"\x7fELF" {
        return Err("not an ELF file".into());
    }
    if ehdr[4] != 2 || ehdr[5] != 1 {
        return Err("not a 64-bit little-endian ELF file".into());
    }
    let machine = u16_at(ehdr, 18);
    if machine != EM_X86_64 {
        return Err(format!(
            "an ELF file for machine {machine}, not x86_64 ({EM_X86_64})"
        ));
    }
    let entry = u64_at(ehdr, 24);
    if entry < layout::HIMEM_START {
        return Err(format!(
            "entry point {entry:#x} lies below 1 MiB; is this a vmlinux (with physical addresses)?"
        ));
    }
    let (phoff, phentsize, phnum) = (u64_at(ehdr, 32), u16_at(ehdr, 54), u16_at(ehdr, 56));
    if usize::from(phentsize) != PHDR_SIZE {
        return Err(format!(
            "program header entries of {phentsize} bytes (expected {PHDR_SIZE})"
        ));
    }
    if phnum == 0 || phnum > MAX_PHDRS {
        return Err(format!(
            "{phnum} program headers (expected 1 to {MAX_PHDRS})"
        ));
    }
    let table_end = phoff.checked_add(u64::from(phnum) * PHDR_SIZE as u64);
    if table_end.is_none_or(|end| end > file_len) {
        return Err(format!(
            "the program header table (offset {phoff:#x}) runs past the end of the file ({file_len} bytes)"
        ));
    }
    Ok((phoff, phnum))
}

/// Validates a `PT_LOAD` segment against the file; returns its end address in guest memory.
fn check_segment(s: &Segment, file_len: u64) -> Result<u64, String> {
    let describe = || format!("PT_LOAD segment at {:#x}", s.paddr);
    if s.filesz > s.memsz {
        return Err(format!(
            "{}: p_filesz {:#x} exceeds p_memsz {:#x}",
            describe(),
            s.filesz,
            s.memsz
        ));
    }
    if s.offset.checked_add(s.filesz).is_none_or(|e| e > file_len) {
        return Err(format!(
            "{}: its {:#x} bytes at offset {:#x} run past the end of the file ({file_len} bytes)",
            describe(),
            s.filesz,
            s.offset
        ));
    }
    if s.paddr < layout::HIMEM_START {
        return Err(format!(
            "{} lies below 1 MiB, where the VMM keeps its boot structures",
            describe()
        ));
    }
    s.paddr
        .checked_add(s.memsz)
        .ok_or_else(|| format!("{}: address overflow", describe()))
}

/// The PVH entry from a note segment: the first `Xen` note of type `XEN_ELFNOTE_PHYS32_ENTRY` with at least 4
/// descriptor bytes. Malformed notes end the search.
pub fn pvh_entry(notes: &[u8]) -> Option<u64> {
    let align4 = |n: u32| (u64::from(n) + 3) & !3;
    let mut at = 0u64;
    loop {
        let header = notes.get(at as usize..(at as usize).checked_add(12)?)?;
        let (namesz, descsz, kind) = (u32_at(header, 0), u32_at(header, 4), u32_at(header, 8));
        let name_at = at + 12;
        let desc_at = name_at + align4(namesz);
        if kind == XEN_ELFNOTE_PHYS32_ENTRY
            && notes.get(name_at as usize..name_at as usize + 4) == Some(b"Xen\0")
            && descsz >= 4
        {
            let desc = notes.get(desc_at as usize..desc_at as usize + 4)?;
            return Some(u64::from(u32_at(desc, 0)));
        }
        at = desc_at + align4(descsz);
    }
}

/// Loads every segment of `kernel` (parsed from `file`) into `mem`, which must be freshly allocated (zero).
pub fn load(mem: &GuestMemory, file: &File, kernel: &ElfKernel) -> Result<(), String> {
    for s in &kernel.segments {
        if !mem.check_range(GuestAddress(s.paddr), s.memsz as usize) {
            return Err(format!(
                "PT_LOAD segment {:#x}..{:#x} lies outside guest memory (which ends at {:#x}); give the VM more memory",
                s.paddr,
                s.paddr + s.memsz,
                mem.last_addr().0 + 1
            ));
        }
        load_segment(mem, file, s)?;
    }
    Ok(())
}

/// Maps the whole pages of a segment from the file and reads its partial first and last pages.
fn load_segment(mem: &GuestMemory, file: &File, s: &Segment) -> Result<(), String> {
    let file_end = s.paddr + s.filesz;
    // Mapping needs the file offset and the guest address to agree modulo the page size.
    let (map_start, map_end) = if (s.offset.wrapping_sub(s.paddr)).is_multiple_of(PAGE) {
        (s.paddr.next_multiple_of(PAGE), file_end & !(PAGE - 1))
    } else {
        (file_end, file_end)
    };
    if map_end > map_start {
        let offset = s.offset + (map_start - s.paddr);
        let len = map_end - map_start;
        match memory::map_file_private(mem, GuestAddress(map_start), len, file, offset) {
            Ok(()) => {}
            // A file system that cannot map files (or another mapping failure): copy instead.
            Err(e) if e.memory_intact => return copy_range(mem, file, s, s.paddr, file_end),
            Err(e) => {
                return Err(format!(
                    "mapping the kernel at {map_start:#x} failed and left guest memory unusable: {}",
                    e.error
                ));
            }
        }
        copy_range(mem, file, s, s.paddr, map_start)?;
        copy_range(mem, file, s, map_end, file_end)
    } else {
        copy_range(mem, file, s, s.paddr, file_end)
    }
}

/// Reads the segment's file bytes for guest addresses `from..to` into guest memory.
fn copy_range(
    mem: &GuestMemory,
    file: &File,
    s: &Segment,
    from: u64,
    to: u64,
) -> Result<(), String> {
    const CHUNK: u64 = 64 * 1024;
    let mut buf = vec![0u8; (to.saturating_sub(from)).min(CHUNK) as usize];
    let mut at = from;
    while at < to {
        let n = (to - at).min(CHUNK) as usize;
        file.read_exact_at(&mut buf[..n], s.offset + (at - s.paddr))
            .map_err(|e| format!("reading the kernel at offset {:#x}: {e}", s.offset))?;
        mem.write_slice(&buf[..n], GuestAddress(at))
            .map_err(|e| format!("writing the kernel at {at:#x}: {e}"))?;
        at += n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// An ELF with the given (offset, paddr, filesz, memsz) segments, file bytes = offset-derived pattern.
    fn elf(entry: u64, segments: &[(u64, u64, u64, u64)], notes: Option<&[u8]>) -> Vec<u8> {
        let phnum = segments.len() + usize::from(notes.is_some());
        let mut f = vec![0u8; 64];
        f[..4].copy_from_slice(b"\x7fELF");
        f[4] = 2;
        f[5] = 1;
        f[18..20].copy_from_slice(&EM_X86_64.to_le_bytes());
        f[24..32].copy_from_slice(&entry.to_le_bytes());
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&(PHDR_SIZE as u16).to_le_bytes());
        f[56..58].copy_from_slice(&(phnum as u16).to_le_bytes());
        let notes_at = 0x800u64;
        for &(offset, paddr, filesz, memsz) in segments {
            let mut p = vec![0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&PT_LOAD.to_le_bytes());
            p[8..16].copy_from_slice(&offset.to_le_bytes());
            p[24..32].copy_from_slice(&paddr.to_le_bytes());
            p[32..40].copy_from_slice(&filesz.to_le_bytes());
            p[40..48].copy_from_slice(&memsz.to_le_bytes());
            f.extend_from_slice(&p);
        }
        if let Some(n) = notes {
            let mut p = vec![0u8; PHDR_SIZE];
            p[0..4].copy_from_slice(&PT_NOTE.to_le_bytes());
            p[8..16].copy_from_slice(&notes_at.to_le_bytes());
            p[32..40].copy_from_slice(&(n.len() as u64).to_le_bytes());
            f.extend_from_slice(&p);
        }
        let end = segments
            .iter()
            .map(|s| s.0 + s.2)
            .max()
            .unwrap_or(0)
            .max(0x1000);
        f.resize(end as usize, 0);
        for &(offset, _, filesz, _) in segments {
            for i in offset..offset + filesz {
                f[i as usize] = (i % 251) as u8 + 1;
            }
        }
        if let Some(n) = notes {
            f[notes_at as usize..notes_at as usize + n.len()].copy_from_slice(n);
        }
        f
    }

    fn note(name: &[u8], kind: u32, desc: &[u8]) -> Vec<u8> {
        let mut n = Vec::new();
        n.extend_from_slice(&(name.len() as u32).to_le_bytes());
        n.extend_from_slice(&(desc.len() as u32).to_le_bytes());
        n.extend_from_slice(&kind.to_le_bytes());
        n.extend_from_slice(name);
        n.resize(n.len().next_multiple_of(4), 0);
        n.extend_from_slice(desc);
        n.resize(n.len().next_multiple_of(4), 0);
        n
    }

    fn file(bytes: &[u8]) -> File {
        let mut f = tempfile::tempfile().unwrap();
        f.write_all(bytes).unwrap();
        f
    }

    fn parse_bytes(bytes: &[u8]) -> Result<ElfKernel, String> {
        parse(&file(bytes), bytes.len() as u64)
    }

    #[test]
    fn loads_mapped_and_partial_pages_and_leaves_bss_zero() {
        // Segment 1: page-congruent, partial first and last pages, a bss tail. Segment 2: not congruent (copied).
        let segs = [
            (0x1100, 0x20_0100, 0x3000, 0x5000),
            (0x5010, 0x30_0000, 0x1800, 0x1800),
        ];
        let bytes = elf(0x20_0100, &segs, None);
        let f = file(&bytes);
        let kernel = parse(&f, bytes.len() as u64).unwrap();
        assert_eq!(kernel.end, 0x30_1800);
        let mem = memory::create(8).unwrap();
        load(&mem, &f, &kernel).unwrap();
        for &(offset, paddr, filesz, memsz) in &segs {
            let mut got = vec![0u8; memsz as usize];
            mem.read_slice(&mut got, GuestAddress(paddr)).unwrap();
            let want = &bytes[offset as usize..(offset + filesz) as usize];
            assert_eq!(&got[..filesz as usize], want, "segment at {paddr:#x}");
            assert!(got[filesz as usize..].iter().all(|b| *b == 0), "bss zero");
        }
        // Guest writes to mapped pages stay private: the file is unchanged.
        mem.write_slice(&[0xee; 16], GuestAddress(0x20_1000))
            .unwrap();
        let mut on_disk = vec![0u8; 16];
        f.read_exact_at(&mut on_disk, 0x2000).unwrap();
        assert_eq!(on_disk, bytes[0x2000..0x2010]);
    }

    #[test]
    fn finds_the_pvh_note_among_others() {
        let mut notes = note(b"GNU\0", 3, &[1; 20]);
        notes.extend(note(b"Xen\0", 5, &[9; 8]));
        notes.extend(note(
            b"Xen\0",
            XEN_ELFNOTE_PHYS32_ENTRY,
            &0x0100_0abcu64.to_le_bytes(),
        ));
        let bytes = elf(0x20_0000, &[(0x1000, 0x20_0000, 16, 16)], Some(&notes));
        assert_eq!(parse_bytes(&bytes).unwrap().pvh_entry, Some(0x0100_0abc));
        assert_eq!(
            pvh_entry(&note(b"Xen\0", 18, &[1, 2])),
            None,
            "short descriptor"
        );
        assert_eq!(pvh_entry(&notes[..notes.len() - 6]), None, "truncated");
        let mut huge = note(b"GNU\0", 3, &[]);
        huge[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(pvh_entry(&huge), None, "huge name size ends the search");
    }

    #[test]
    fn rejects_bad_headers_with_the_reason() {
        let good = elf(0x20_0000, &[(0x1000, 0x20_0000, 16, 16)], None);
        type Corruption = Box<dyn Fn(&mut Vec<u8>)>;
        let cases: Vec<(&str, Corruption)> = vec![
            ("not an ELF", Box::new(|f| f[0] = 0)),
            ("64-bit little-endian", Box::new(|f| f[4] = 1)),
            ("machine 3", Box::new(|f| f[18] = 3)),
            (
                "below 1 MiB",
                Box::new(|f| f[24..32].copy_from_slice(&0x1000u64.to_le_bytes())),
            ),
            ("entries of 32 bytes", Box::new(|f| f[54] = 32)),
            ("0 program headers", Box::new(|f| f[56] = 0)),
            (
                "runs past the end",
                Box::new(|f| f[32..40].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            (
                "exceeds p_memsz",
                Box::new(|f| f[64 + 40..64 + 48].copy_from_slice(&1u64.to_le_bytes())),
            ),
            (
                "past the end of the file",
                Box::new(|f| f[64 + 8..64 + 16].copy_from_slice(&u64::MAX.to_le_bytes())),
            ),
            (
                "below 1 MiB",
                Box::new(|f| f[64 + 24..64 + 32].copy_from_slice(&0x1000u64.to_le_bytes())),
            ),
            (
                "overflow",
                Box::new(|f| {
                    f[64 + 24..64 + 32].copy_from_slice(&u64::MAX.to_le_bytes());
                }),
            ),
        ];
        for (want, corrupt) in cases {
            let mut bytes = good.clone();
            corrupt(&mut bytes);
            let err = parse_bytes(&bytes).unwrap_err();
            assert!(err.contains(want), "{want}: {err}");
        }
        let err = parse_bytes(&good[..40]).unwrap_err();
        assert!(err.contains("reading the ELF header"), "{err}");
    }

    #[test]
    fn segment_outside_guest_memory_is_refused() {
        let bytes = elf(0x20_0000, &[(0x1000, 0x7f_f000, 0x2000, 0x2000)], None);
        let f = file(&bytes);
        let kernel = parse(&f, bytes.len() as u64).unwrap();
        let mem = memory::create(8).unwrap();
        let err = load(&mem, &f, &kernel).unwrap_err();
        assert!(err.contains("outside guest memory"), "{err}");
    }
}
