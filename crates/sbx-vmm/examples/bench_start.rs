//! Measures one VMM start: CPU time until the first `KVM_RUN` and the VMM's memory overhead (RSS outside guest
//! memory, from /proc/self/smaps, the way Firecracker measures it). Prints one `key=value` line for `cargo xtask
//! bench-vmm`, which runs it repeatedly in fresh processes.
//!
//! ```sh
//! cargo run --release -p sbx-vmm --example bench_start -- [--kernel PATH] [--mem-mib N]
//! ```
//! Without `--kernel` it boots a 3-instruction guest (print, halt) written to a temporary file.

use std::time::{Duration, Instant};

use sbx_vmm::{SerialOutput, Vm, VmBuilder};
use vm_memory::{GuestMemoryBackend as _, GuestMemoryRegion, MemoryRegionAddress};

/// out 0x3f8, 'R'; cli; hlt; jmp back to hlt — loaded at 2 MiB.
fn tiny_guest() -> Vec<u8> {
    let code: &[u8] = &[
        0x66, 0xba, 0xf8, 0x03, 0xb0, b'R', 0xee, 0xfa, 0xf4, 0xeb, 0xfd,
    ];
    let load: u64 = 0x20_0000;
    let mut elf = Vec::new();
    elf.extend_from_slice(b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0");
    elf.extend_from_slice(&2u16.to_le_bytes());
    elf.extend_from_slice(&62u16.to_le_bytes());
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&load.to_le_bytes());
    elf.extend_from_slice(&64u64.to_le_bytes());
    elf.extend_from_slice(&0u64.to_le_bytes());
    elf.extend_from_slice(&0u32.to_le_bytes());
    for v in [64u16, 56, 1, 64, 0, 0] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.extend_from_slice(&1u32.to_le_bytes());
    elf.extend_from_slice(&5u32.to_le_bytes());
    for v in [
        0x1000u64,
        load,
        load,
        code.len() as u64,
        code.len() as u64,
        0x1000,
    ] {
        elf.extend_from_slice(&v.to_le_bytes());
    }
    elf.resize(0x1000, 0);
    elf.extend_from_slice(code);
    elf
}

/// RSS (KiB) of all mappings that do not overlap guest memory.
fn rss_outside(guest: &[(u64, u64)]) -> u64 {
    let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap_or_default();
    let mut total = 0;
    let mut in_guest = false;
    for line in smaps.lines() {
        if let Some((range, _)) = line.split_once(' ')
            && let Some((start, end)) = range.split_once('-')
            && let (Ok(start), Ok(end)) =
                (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        {
            in_guest = guest.iter().any(|(gs, ge)| start < *ge && *gs < end);
            continue;
        }
        if let Some(rest) = line.strip_prefix("Rss:")
            && !in_guest
        {
            total += rest
                .trim()
                .trim_end_matches(" kB")
                .trim()
                .parse::<u64>()
                .unwrap_or(0);
        }
    }
    total
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut kernel = None;
    let mut mem_mib = 128;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--kernel" => kernel = it.next().cloned(),
            "--mem-mib" => mem_mib = it.next().and_then(|v| v.parse().ok()).unwrap_or(128),
            other => {
                eprintln!("unknown argument {other}");
                std::process::exit(64);
            }
        }
    }
    let dir = std::env::temp_dir().join(format!("sbx-bench-{}", std::process::id()));
    let kernel = kernel.unwrap_or_else(|| {
        std::fs::create_dir_all(&dir).expect("temp dir");
        let path = dir.join("guest.elf");
        std::fs::write(&path, tiny_guest()).expect("write guest");
        path.display().to_string()
    });
    let config = VmBuilder::new()
        .kernel(&kernel)
        .memory_mib(mem_mib)
        .serial(SerialOutput::Sink)
        .build()
        .unwrap_or_else(|e| panic!("{e}"));
    let vm = Vm::start(config).unwrap_or_else(|e| panic!("{e}"));
    let start = Instant::now();
    while vm.startup_report().to_first_kvm_run.is_none()
        && start.elapsed() < Duration::from_secs(10)
    {
        std::thread::sleep(Duration::from_millis(1));
    }
    // Let the guest run briefly so the measurement includes a running VMM, not just a built one.
    std::thread::sleep(Duration::from_millis(300));
    let guest: Vec<(u64, u64)> = vm
        .guest_memory()
        .iter()
        .filter_map(|r| {
            let host = r.get_host_address(MemoryRegionAddress(0)).ok()? as u64;
            Some((host, host + r.len()))
        })
        .collect();
    let overhead_kib = rss_outside(&guest);
    let report = vm.startup_report();
    vm.handle().stop();
    let _ = vm.wait();
    let _ = std::fs::remove_dir_all(&dir);
    let ms = |d: Option<Duration>| d.map_or(-1.0, |d| d.as_secs_f64() * 1e3);
    println!(
        "process_cpu_ms={:.3} start_cpu_ms={:.3} start_wall_ms={:.3} overhead_kib={overhead_kib}",
        ms(report.process_cpu_at_first_kvm_run),
        ms(report.cpu_to_first_kvm_run),
        ms(report.to_first_kvm_run),
    );
}
