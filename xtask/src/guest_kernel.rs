//! `cargo xtask guest-kernel`: builds the minimal microVM guest kernel that sbx-vmm boots.
//!
//! Source: Debian's `linux-source` package (`/usr/src/linux-source-*.tar.xz`, installed with apt when missing and
//! running as root). Config: `make tinyconfig` plus the fragment kept in `crates/sbx-vmm/guest/kernel.config`; every
//! `=y`/`=n` line of the fragment is checked after `make olddefconfig`, so a dropped option fails loudly.
//!
//! The result is cached under `$SBX_KERNEL_CACHE` (default `$XDG_CACHE_HOME/sbx/guest-kernel`, else
//! `~/.cache/sbx/guest-kernel`) keyed by the source tarball and the fragment, and linked as `<cache>/vmlinux`, where
//! sbx-vmm's tests look for it. The last line printed is the vmlinux path.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use anyhow::{Context, Result, bail};

/// Packages the build needs besides the compiler: the source and the kernel's host tools.
const BUILD_PACKAGES: &[(&str, &str)] = &[
    ("linux-source", "/usr/src"),
    ("flex", "flex"),
    ("bison", "bison"),
    ("bc", "bc"),
    ("libelf-dev", "/usr/include/libelf.h"),
    ("libssl-dev", "/usr/include/openssl/ssl.h"),
    ("xz-utils", "xz"),
    ("make", "make"),
    ("gcc", "gcc"),
];

/// Bump when the build procedure changes in a way that changes the output.
const RECIPE_VERSION: u32 = 1;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

/// The cache directory (see the module docs).
pub(crate) fn cache_dir() -> Result<PathBuf> {
    if let Some(dir) = std::env::var_os("SBX_KERNEL_CACHE") {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = std::env::var_os("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("sbx/guest-kernel"));
    }
    let home = std::env::var_os("HOME")
        .context("neither SBX_KERNEL_CACHE, XDG_CACHE_HOME nor HOME is set; set SBX_KERNEL_CACHE to a directory")?;
    Ok(PathBuf::from(home).join(".cache/sbx/guest-kernel"))
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
    let fragment_path = workspace_root().join("crates/sbx-vmm/guest/kernel.config");
    let fragment = fs::read_to_string(&fragment_path).with_context(|| {
        format!(
            "reading the kernel config fragment {}",
            fragment_path.display()
        )
    })?;
    ensure_build_packages()?;
    let tarball = find_source_tarball()?;
    let key = cache_key(&tarball, &fragment);
    let cache = cache_dir()?;
    let out_dir = cache.join(&key);
    let vmlinux = out_dir.join("vmlinux");
    if vmlinux.is_file() && !force {
        eprintln!("guest-kernel: cached build {key} is up to date (pass --force to rebuild)");
    } else {
        build(&tarball, &fragment, &cache, &out_dir)?;
    }
    link_latest(&cache, &vmlinux)?;
    Ok(vmlinux)
}

fn ensure_build_packages() -> Result<()> {
    let missing: Vec<&str> = BUILD_PACKAGES
        .iter()
        .filter(|(_, probe)| !probe_present(probe))
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !is_root {
        bail!(
            "building the guest kernel needs these Debian packages: {0}; install them with `sudo apt-get install -y {0}` and run again",
            missing.join(" ")
        );
    }
    eprintln!("guest-kernel: installing {}", missing.join(" "));
    run_checked(Command::new("apt-get").args(["update", "-q"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

/// A probe is an absolute path (a file that must exist; `/usr/src` means "a linux-source tarball") or a command.
fn probe_present(probe: &str) -> bool {
    if probe == "/usr/src" {
        return find_source_tarball().is_ok();
    }
    if probe.starts_with('/') {
        return Path::new(probe).exists();
    }
    Command::new("sh")
        .args(["-c", &format!("command -v {probe} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

/// The newest `/usr/src/linux-source-X.Y.tar.xz`.
fn find_source_tarball() -> Result<PathBuf> {
    let mut found: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/src")
        .context("reading /usr/src")?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let version = name
                .strip_prefix("linux-source-")?
                .strip_suffix(".tar.xz")?;
            let parts = version
                .split('.')
                .map(|p| p.parse().ok())
                .collect::<Option<Vec<u32>>>()?;
            Some((parts, e.path()))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).context(
        "no /usr/src/linux-source-*.tar.xz; install it with `apt-get install linux-source`",
    )
}

/// FNV-1a over the inputs that determine the output: stable across Rust versions, unlike `DefaultHasher`.
fn cache_key(tarball: &Path, fragment: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let size = fs::metadata(tarball).map(|m| m.len()).unwrap_or(0);
    let input = format!(
        "{RECIPE_VERSION}\0{}\0{size}\0{fragment}",
        tarball.display()
    );
    for byte in input.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let stem = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .unwrap_or("linux");
    format!("{stem}-{hash:016x}")
}

fn build(tarball: &Path, fragment: &str, cache: &Path, out_dir: &Path) -> Result<()> {
    let started = Instant::now();
    let work = cache.join("build");
    let stem = tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .context("source tarball name")?;
    let src = work.join(stem);
    if !src.join("Makefile").is_file() {
        fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
        eprintln!(
            "guest-kernel: [1/4] unpacking {} into {}",
            tarball.display(),
            work.display()
        );
        run_checked(
            Command::new("tar")
                .arg("-xf")
                .arg(tarball)
                .arg("-C")
                .arg(&work),
        )?;
    } else {
        eprintln!(
            "guest-kernel: [1/4] reusing unpacked source in {}",
            src.display()
        );
    }
    eprintln!("guest-kernel: [2/4] configuring (tinyconfig + crates/sbx-vmm/guest/kernel.config)");
    configure(&src, fragment)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    eprintln!(
        "guest-kernel: [3/4] compiling vmlinux with {jobs} jobs (about 6-10 minutes on 2 cores)"
    );
    compile(&src, jobs)?;
    eprintln!("guest-kernel: [4/4] storing the result");
    fs::create_dir_all(out_dir).with_context(|| format!("creating {}", out_dir.display()))?;
    let tmp = out_dir.join("vmlinux.tmp");
    fs::copy(src.join("vmlinux"), &tmp).context("copying vmlinux")?;
    fs::copy(src.join(".config"), out_dir.join("config")).context("copying .config")?;
    fs::rename(&tmp, out_dir.join("vmlinux")).context("renaming vmlinux into place")?;
    eprintln!("guest-kernel: built in {:.0?}", started.elapsed());
    Ok(())
}

fn make(src: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(src).arg("ARCH=x86_64");
    cmd
}

fn configure(src: &Path, fragment: &str) -> Result<()> {
    run_quiet(make(src).arg("tinyconfig"))?;
    let fragment_file = src.join("sbx-fragment.config");
    fs::write(&fragment_file, fragment).context("writing the config fragment")?;
    run_quiet(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(src)
            .env("ARCH", "x86_64")
            .args(["-m", ".config", "sbx-fragment.config"]),
    )?;
    run_quiet(make(src).arg("olddefconfig"))?;
    let config = fs::read_to_string(src.join(".config")).context("reading the merged .config")?;
    let dropped = dropped_options(fragment, &config);
    if !dropped.is_empty() {
        bail!(
            "Kconfig dropped these options of crates/sbx-vmm/guest/kernel.config (a missing dependency?): {}",
            dropped.join(", ")
        );
    }
    Ok(())
}

/// Lines of the fragment whose value did not survive `olddefconfig`.
fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|wanted| {
            let Some((name, value)) = wanted.split_once('=') else {
                return false;
            };
            if value == "n" {
                let set = config.lines().any(|l| {
                    l.split_once('=')
                        .is_some_and(|(n, v)| n == name && v != "n")
                });
                return set;
            }
            !config.lines().any(|l| l.trim() == *wanted)
        })
        .map(str::to_string)
        .collect()
}

/// Runs `make vmlinux`, printing a progress line every 100 compiled objects; the full log goes to `build.log`.
fn compile(src: &Path, jobs: usize) -> Result<()> {
    let log_path = src.join("build.log");
    let mut log = fs::File::create(&log_path).context("creating build.log")?;
    let mut child = make(src)
        .arg(format!("-j{jobs}"))
        .arg("vmlinux")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("starting make")?;
    let stdout = child.stdout.take().context("make stdout")?;
    let started = Instant::now();
    let mut compiled = 0u32;
    for line in BufReader::new(stdout).lines() {
        let line = line.context("reading make output")?;
        use std::io::Write as _;
        writeln!(log, "{line}").context("writing build.log")?;
        if line.trim_start().starts_with("CC ") {
            compiled += 1;
            if compiled.is_multiple_of(100) {
                eprintln!(
                    "guest-kernel:   {compiled} objects compiled ({:.0?})",
                    started.elapsed()
                );
            }
        } else if line.contains(" LD ") && line.contains("vmlinux") {
            eprintln!("guest-kernel:   linking vmlinux");
        }
    }
    let status = child.wait().context("waiting for make")?;
    if !status.success() {
        bail!("make vmlinux failed ({status}); see {}", log_path.display());
    }
    Ok(())
}

fn link_latest(cache: &Path, vmlinux: &Path) -> Result<()> {
    let link = cache.join("vmlinux");
    let tmp = cache.join("vmlinux.link-tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(vmlinux, &tmp).context("creating the vmlinux symlink")?;
    fs::rename(&tmp, &link).with_context(|| format!("updating {}", link.display()))
}

fn run_quiet(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("could not start {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed with {}:\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(())
}

fn run_checked(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("could not start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed with {status}");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropped_options_reports_missing_and_unwanted() {
        let fragment = "# c\nCONFIG_A=y\nCONFIG_B=y\nCONFIG_M=n\nCONFIG_N=n\n";
        let config = "CONFIG_A=y\n# CONFIG_B is not set\nCONFIG_M=y\n";
        assert_eq!(
            dropped_options(fragment, config),
            vec!["CONFIG_B=y", "CONFIG_M=n"]
        );
    }
}
