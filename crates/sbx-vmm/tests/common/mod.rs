//! Shared helpers for the KVM tests: a KVM usability check, a tiny x86-64 assembler, and an ELF writer, so each test
//! builds its own guest "kernel" from a few hundred instructions.
#![allow(dead_code, unreachable_pub)]

pub mod asm;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where tiny guests are loaded (and entered).
pub const LOAD_ADDR: u64 = 0x20_0000;

/// `Some(reason)` when /dev/kvm cannot be used here; tests then print one skip line.
pub fn kvm_unusable() -> Option<String> {
    match std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
    {
        Ok(_) => None,
        Err(e) => Some(format!("/dev/kvm is not usable ({e})")),
    }
}

/// Prints the skip line and returns true when KVM is unusable.
pub fn skip_without_kvm(test: &str) -> bool {
    match kvm_unusable() {
        Some(reason) => {
            println!("SKIPPED {test}: {reason}");
            true
        }
        None => false,
    }
}

/// A minimal ELF64 executable: one PT_LOAD segment holding `code` at `LOAD_ADDR`, entered at its first byte.
pub fn elf_image(code: &[u8]) -> Vec<u8> {
    elf_image_at(code, LOAD_ADDR)
}

/// [`elf_image`] loaded (and entered) at `load_addr`.
pub fn elf_image_at(code: &[u8], load_addr: u64) -> Vec<u8> {
    let mut out = Vec::new();
    let phoff = 64u64;
    let offset = 0x1000u64;
    out.extend_from_slice(b"\x7fELF");
    out.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    out.extend_from_slice(&62u16.to_le_bytes()); // x86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&load_addr.to_le_bytes()); // e_entry
    out.extend_from_slice(&phoff.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // e_shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // e_flags
    out.extend_from_slice(&64u16.to_le_bytes()); // e_ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // e_phentsize
    out.extend_from_slice(&1u16.to_le_bytes()); // e_phnum
    out.extend_from_slice(&64u16.to_le_bytes()); // e_shentsize
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shnum
    out.extend_from_slice(&0u16.to_le_bytes()); // e_shstrndx
    // Program header.
    out.extend_from_slice(&1u32.to_le_bytes()); // PT_LOAD
    out.extend_from_slice(&7u32.to_le_bytes()); // RWX
    out.extend_from_slice(&offset.to_le_bytes());
    out.extend_from_slice(&load_addr.to_le_bytes()); // vaddr
    out.extend_from_slice(&load_addr.to_le_bytes()); // paddr
    out.extend_from_slice(&(code.len() as u64).to_le_bytes());
    out.extend_from_slice(&(code.len() as u64).to_le_bytes());
    out.extend_from_slice(&0x1000u64.to_le_bytes());
    out.resize(offset as usize, 0);
    out.extend_from_slice(code);
    out
}

/// [`elf_image`] plus a PT_NOTE with a Xen PVH entry note pointing at the code.
pub fn elf_image_pvh(code: &[u8]) -> Vec<u8> {
    let mut out = elf_image(code);
    // Two program headers: bump e_phnum and append the PT_NOTE header after the PT_LOAD one (offset 64 + 56).
    out[56..58].copy_from_slice(&2u16.to_le_bytes());
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
    let note_offset = out.len() as u64;
    let mut note = Vec::new();
    note.extend_from_slice(&4u32.to_le_bytes()); // namesz
    note.extend_from_slice(&4u32.to_le_bytes()); // descsz
    note.extend_from_slice(&18u32.to_le_bytes()); // XEN_ELFNOTE_PHYS32_ENTRY
    note.extend_from_slice(b"Xen\0");
    note.extend_from_slice(&(LOAD_ADDR as u32).to_le_bytes());
    out.extend_from_slice(&note);
    let mut phdr = Vec::new();
    phdr.extend_from_slice(&4u32.to_le_bytes()); // PT_NOTE
    phdr.extend_from_slice(&4u32.to_le_bytes()); // R
    phdr.extend_from_slice(&note_offset.to_le_bytes());
    phdr.extend_from_slice(&0u64.to_le_bytes());
    phdr.extend_from_slice(&0u64.to_le_bytes());
    phdr.extend_from_slice(&(note.len() as u64).to_le_bytes());
    phdr.extend_from_slice(&(note.len() as u64).to_le_bytes());
    phdr.extend_from_slice(&4u64.to_le_bytes());
    out[120..176].copy_from_slice(&phdr);
    out
}

/// Writes the ELF for `code` into `dir` and returns its path.
pub fn write_guest(dir: &Path, code: &[u8]) -> PathBuf {
    let path = dir.join("guest.elf");
    std::fs::write(&path, elf_image(code)).expect("write guest image");
    path
}

/// A console buffer and a way to read it as text.
#[derive(Clone, Default)]
pub struct Console(pub Arc<Mutex<Vec<u8>>>);

impl Console {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
    pub fn output(&self) -> sbx_vmm::SerialOutput {
        sbx_vmm::SerialOutput::Buffer(self.0.clone())
    }
}

/// Runs a VM to completion with a watchdog: if it has not ended after `limit`, it is stopped and the test fails.
pub fn run_with_limit(vm: sbx_vmm::Vm, limit: Duration) -> sbx_vmm::ExitReason {
    let handle = vm.handle();
    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let watchdog = {
        let done = done.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < limit {
                if done.load(std::sync::atomic::Ordering::SeqCst) {
                    return false;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            handle.stop();
            true
        })
    };
    let reason = vm.wait().expect("VM threads");
    done.store(true, std::sync::atomic::Ordering::SeqCst);
    let fired = watchdog.join().unwrap();
    assert!(!fired, "the guest did not finish within {limit:?}");
    reason
}
