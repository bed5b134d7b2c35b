//! Serves a host directory through the host kernel's FUSE, the way the microVM sees it over virtio-fs.
//!
//! ```sh
//! sudo cargo run -p sbx-virtiofs --example mount -- /path/to/share /mnt/point [--ro] [--seconds N | --until-eof]
//! ```
//! It unmounts after N seconds (default 60), or with `--until-eof` when its standard input closes (how
//! `cargo xtask bench-virtiofs` drives it).

use std::sync::Arc;
use std::time::Duration;

use sbx_virtiofs::{FileServer, HostMount, MountOptions, ShareConfig};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(root), Some(mountpoint)) = (args.first(), args.get(1)) else {
        eprintln!("usage: mount SHARE_DIR MOUNTPOINT [--ro] [--seconds N | --until-eof]");
        std::process::exit(2);
    };
    let read_only = args.iter().any(|a| a == "--ro");
    let seconds = args
        .iter()
        .position(|a| a == "--seconds")
        .and_then(|i| args.get(i + 1))
        .map(|s| s.parse::<u64>())
        .transpose()?
        .unwrap_or(60);
    let server = Arc::new(FileServer::new(
        ShareConfig::new(root).read_only(read_only),
    )?);
    let mount = HostMount::mount(server, mountpoint.as_ref(), &MountOptions::default())?;
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
