//! Serves a host directory through the host kernel's FUSE, the way the microVM sees it over virtio-fs.
//!
//! ```sh
//! sudo cargo run -p sbx-virtiofs --example mount -- /path/to/share /mnt/point [--ro] [--seconds N | --until-eof]
//!     [--threads N] [--read-ahead-kb N] [--writeback-cache] [--no-keep-cache] [--timeout-ms N]
//! ```
//! It unmounts after N seconds (default 60), or with `--until-eof` when its standard input closes (how
//! `cargo xtask bench-virtiofs` drives it).

use std::sync::Arc;
use std::time::Duration;

use sbx_virtiofs::{CachePolicy, FileServer, HostMount, MountOptions, ShareConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(mountpoint)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mount SHARE_DIR MOUNTPOINT [--ro] [--seconds N | --until-eof]");
        std::process::exit(2);
    };
    let read_only = args.iter().any(|a| a == "--ro");
    let value = |flag: &str| -> Result<Option<u64>, Box<dyn std::error::Error>> {
        match args.iter().position(|a| a == flag) {
            None => Ok(None),
            Some(i) => {
                let v = args.get(i + 1).ok_or(format!("{flag} needs a number"))?;
                Ok(Some(v.parse().map_err(|e| format!("{flag} {v}: {e}"))?))
            }
        }
    };
    let seconds = value("--seconds")?.unwrap_or(60);
    let defaults = MountOptions::default();
    let options = MountOptions {
        threads: value("--threads")?.map_or(defaults.threads, |n| n as usize),
        read_ahead_kb: value("--read-ahead-kb")?
            .map(|kb| kb as u32)
            .or(defaults.read_ahead_kb),
        ..defaults
    };
    let mut cache = CachePolicy {
        writeback_cache: args.iter().any(|a| a == "--writeback-cache"),
        keep_cache: !args.iter().any(|a| a == "--no-keep-cache"),
        ..CachePolicy::default()
    };
    // Entry and attribute timeout together (what the consistency model trades against request count).
    if let Some(ms) = value("--timeout-ms")? {
        cache.entry_timeout = Duration::from_millis(ms);
        cache.attr_timeout = Duration::from_millis(ms);
    }
    let server = Arc::new(FileServer::new(
        ShareConfig::new(root).read_only(read_only).cache(cache),
    )?);
    let mount = HostMount::mount(server, mountpoint.as_ref(), &options)?;
    if args.iter().any(|a| a == "--until-eof") {
        eprintln!("serving {root} on {mountpoint} until stdin closes (read-only: {read_only})");
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    } else {
        eprintln!("serving {root} on {mountpoint} for {seconds}s (read-only: {read_only})");
        std::thread::sleep(Duration::from_secs(seconds));
    }
    mount.unmount()?;
    Ok(())
}
