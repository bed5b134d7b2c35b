//! `cargo xtask guest-kernel`: builds the minimal microVM guest kernel that sbx-vmm boots.
//!
//! The build itself lives in `sbx_microvm::guest_kernel` (the `sbx` binary builds the kernel the same way on the
//! first microVM start): Debian's `linux-source`, `make tinyconfig` plus `crates/sbx-vmm/guest/kernel.config`,
//! cached under `$SBX_KERNEL_CACHE` (default `$XDG_CACHE_HOME/sbx/guest-kernel`, else `~/.cache/sbx/guest-kernel`)
//! and linked as `<cache>/vmlinux`, where sbx-vmm's tests look for it. Here, running as root, missing build packages
//! are installed with apt-get (CI). The last line printed is the vmlinux path.

use std::path::PathBuf;

use anyhow::Result;
use sbx_microvm::guest_kernel::{self, BuildOptions};

/// The cache directory (see the module docs).
pub(crate) fn cache_dir() -> Result<PathBuf> {
    Ok(guest_kernel::default_cache_dir()?)
}

/// Entry point of `cargo xtask guest-kernel [--force]`.
pub(crate) fn run(args: &[String]) -> Result<()> {
    let force = args.iter().any(|a| a == "--force");
    let vmlinux = build_cached(force)?;
    println!("{}", vmlinux.display());
    Ok(())
}

/// Builds the kernel unless the cache holds a build of the same source and config (or `force`); returns the path
/// of the cached vmlinux. `cargo xtask ci` calls this before the tests so that the level-2 test boots it.
pub(crate) fn build_cached(force: bool) -> Result<PathBuf> {
    let mut options = BuildOptions::new(cache_dir()?);
    options.force = force;
    options.install_packages = true;
    Ok(guest_kernel::build_cached(&options, &mut |step| {
        eprintln!("guest-kernel: {step}")
    })?)
}
