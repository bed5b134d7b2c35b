//! The microVM guest kernel: where a build is cached, whether it is usable, and how to build it.
//!
//! Source: Debian's `linux-source` package (`/usr/src/linux-source-*.tar.xz`). Config: `make tinyconfig` plus
//! [`CONFIG_FRAGMENT`] (kept in `crates/sbx-vmm/guest/kernel.config`); every `=y`/`=n` line of the fragment is
//! checked after `make olddefconfig`, so a dropped option fails loudly.
//!
//! A build is cached under [`default_cache_dir`] (`$SBX_KERNEL_CACHE`, else `$XDG_CACHE_HOME/sbx/guest-kernel`, else
//! `~/.cache/sbx/guest-kernel`) in a directory keyed by the source tarball, the fragment and the recipe version,
//! holding `vmlinux` and the `config` it was built with; `<cache>/vmlinux` links to the latest build. Both
//! `cargo xtask guest-kernel` (and `cargo xtask ci`) and the `sbx` binary (on the first microVM start) build through
//! [`build_cached`]; [`inspect`] tells whether the linked build is usable with today's fragment.
//!
//! ```no_run
//! use sbx_microvm::guest_kernel::{self, BuildOptions, KernelState};
//!
//! let cache = guest_kernel::default_cache_dir()?;
//! let vmlinux = match guest_kernel::inspect(&cache, guest_kernel::CONFIG_FRAGMENT) {
//!     KernelState::Ready(path) => path,
//!     _ => guest_kernel::build_cached(&BuildOptions::new(cache), &mut |p| eprintln!("{p}"))?,
//! };
//! println!("{}", vmlinux.display());
//! # Ok::<(), sbx_microvm::guest_kernel::KernelBuildError>(())
//! ```

use std::ffi::OsString;
use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The kernel config fragment merged over `tinyconfig` (virtio, vsock, virtio-fs, ext4, overlayfs, ...).
pub const CONFIG_FRAGMENT: &str = sbx_vmm::GUEST_KERNEL_CONFIG;

/// Where the fragment lives in the source tree, for messages.
pub const CONFIG_FRAGMENT_PATH: &str = "crates/sbx-vmm/guest/kernel.config";

/// Bump when the build procedure changes in a way that changes the output.
pub const RECIPE_VERSION: u32 = 1;

/// How long a build takes, for the line printed before one starts.
pub const BUILD_ESTIMATE: &str = "about 6-10 minutes on 2 cores";

/// Debian packages the build needs besides the source's own compiler, each with what shows it is installed (an
/// absolute path that must exist, `/usr/src` meaning "a linux-source tarball", or a command name).
pub const BUILD_PACKAGES: &[(&str, &str)] = &[
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

/// Overrides the cache directory.
pub const CACHE_ENV: &str = "SBX_KERNEL_CACHE";

/// Why the guest kernel could not be found or built. Messages say what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KernelBuildError {
    /// No cache directory can be derived from the environment.
    #[error(
        "neither SBX_KERNEL_CACHE, XDG_CACHE_HOME nor HOME is set; set SBX_KERNEL_CACHE to a directory"
    )]
    NoCacheDir,
    /// Build packages are missing and installing them was not allowed (or not possible without root).
    #[error(
        "building the guest kernel needs these Debian packages: {list}; install them with `sudo apt-get install -y {list}` and run again",
        list = .packages.join(" ")
    )]
    MissingPackages {
        /// The packages.
        packages: Vec<String>,
    },
    /// No `linux-source` tarball in `/usr/src`.
    #[error(
        "no /usr/src/linux-source-*.tar.xz; install it with `sudo apt-get install -y linux-source`"
    )]
    NoSource,
    /// A file operation failed.
    #[error("cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The path.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A build step (tar, make, merge_config.sh, apt-get) failed; `output` is what it printed.
    #[error("{command} failed ({status}){output}")]
    Step {
        /// The command line.
        command: String,
        /// How it ended.
        status: String,
        /// Its output, prefixed by a newline when not empty.
        output: String,
    },
    /// Kconfig dropped options the fragment asks for.
    #[error(
        "Kconfig dropped these options of {CONFIG_FRAGMENT_PATH} (a missing dependency?): {}",
        .options.join(", ")
    )]
    Dropped {
        /// The fragment lines that did not survive.
        options: Vec<String>,
    },
    /// `make vmlinux` failed; the log has the details.
    #[error("make vmlinux failed ({status}); see {log}; its last lines:\n{tail}")]
    Make {
        /// How make ended.
        status: String,
        /// make's error output.
        log: PathBuf,
        /// The last lines of that log.
        tail: String,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> KernelBuildError {
    let path = path.to_path_buf();
    move |source| KernelBuildError::Io {
        action,
        path,
        source,
    }
}

/// The cache directory from the process environment (see the module docs).
pub fn default_cache_dir() -> Result<PathBuf, KernelBuildError> {
    cache_dir_from(|name| std::env::var_os(name))
}

/// The cache directory given a way to read environment variables (empty values count as unset).
pub fn cache_dir_from(var: impl Fn(&str) -> Option<OsString>) -> Result<PathBuf, KernelBuildError> {
    let var = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(dir) = var(CACHE_ENV) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(dir) = var("XDG_CACHE_HOME") {
        return Ok(PathBuf::from(dir).join("sbx/guest-kernel"));
    }
    let home = var("HOME").ok_or(KernelBuildError::NoCacheDir)?;
    Ok(PathBuf::from(home).join(".cache/sbx/guest-kernel"))
}

/// What the cache holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelState {
    /// A build whose recorded config has every option of the fragment: this `vmlinux` (the cache's link).
    Ready(PathBuf),
    /// Nothing built yet.
    Missing,
    /// A build made with another fragment (or without a recorded config): it must be rebuilt.
    Stale {
        /// The cached vmlinux.
        vmlinux: PathBuf,
        /// Why it cannot be used, e.g. the fragment options its config lacks.
        reason: String,
    },
}

/// Looks at `<cache>/vmlinux` and the `config` recorded next to the build it links to, against `fragment`.
pub fn inspect(cache: &Path, fragment: &str) -> KernelState {
    let link = cache.join("vmlinux");
    if !link.is_file() {
        return KernelState::Missing;
    }
    let build_dir = fs::canonicalize(&link)
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
        .unwrap_or_else(|| cache.to_path_buf());
    let config_path = build_dir.join("config");
    let Ok(config) = fs::read_to_string(&config_path) else {
        return KernelState::Stale {
            vmlinux: link,
            reason: format!("no build config recorded at {}", config_path.display()),
        };
    };
    let dropped = dropped_options(fragment, &config);
    if dropped.is_empty() {
        KernelState::Ready(link)
    } else {
        KernelState::Stale {
            vmlinux: link,
            reason: format!(
                "it was built without {} (the config fragment changed)",
                dropped.join(", ")
            ),
        }
    }
}

/// A step of a build, reported as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Progress {
    /// The cache already holds this build.
    UpToDate {
        /// The cache key.
        key: String,
    },
    /// Installing missing build packages with apt-get.
    Installing {
        /// The packages.
        packages: Vec<String>,
    },
    /// Step 1/4: unpacking the source.
    Unpacking {
        /// The source tarball.
        tarball: PathBuf,
        /// Where.
        into: PathBuf,
    },
    /// Step 1/4: an earlier unpack is reused.
    ReusingSource {
        /// The source tree.
        source: PathBuf,
    },
    /// Step 2/4: `tinyconfig` plus the fragment.
    Configuring,
    /// Step 3/4: `make vmlinux` started.
    Compiling {
        /// Parallel jobs.
        jobs: usize,
    },
    /// Step 3/4: every 100 compiled objects.
    Compiled {
        /// Objects compiled so far.
        objects: u32,
        /// Since compiling started.
        elapsed: Duration,
    },
    /// Step 3/4: the final link.
    Linking,
    /// Step 4/4: copying the result into the cache.
    Storing,
    /// Done.
    Built {
        /// The whole build.
        elapsed: Duration,
    },
}

impl std::fmt::Display for Progress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Progress::UpToDate { key } => {
                write!(
                    f,
                    "cached build {key} is up to date (pass --force to rebuild)"
                )
            }
            Progress::Installing { packages } => write!(f, "installing {}", packages.join(" ")),
            Progress::Unpacking { tarball, into } => write!(
                f,
                "[1/4] unpacking {} into {}",
                tarball.display(),
                into.display()
            ),
            Progress::ReusingSource { source } => {
                write!(f, "[1/4] reusing unpacked source in {}", source.display())
            }
            Progress::Configuring => {
                write!(f, "[2/4] configuring (tinyconfig + {CONFIG_FRAGMENT_PATH})")
            }
            Progress::Compiling { jobs } => write!(
                f,
                "[3/4] compiling vmlinux with {jobs} jobs ({BUILD_ESTIMATE})"
            ),
            Progress::Compiled { objects, elapsed } => {
                write!(f, "  {objects} objects compiled ({}s)", elapsed.as_secs())
            }
            Progress::Linking => f.write_str("  linking vmlinux"),
            Progress::Storing => f.write_str("[4/4] storing the result"),
            Progress::Built { elapsed } => write!(f, "built in {}s", elapsed.as_secs()),
        }
    }
}

/// What [`build_cached`] is asked to do.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// The cache directory (see [`default_cache_dir`]).
    pub cache: PathBuf,
    /// The config fragment; [`CONFIG_FRAGMENT`] unless testing another.
    pub fragment: String,
    /// Rebuild even when the cache holds this build.
    pub force: bool,
    /// Install missing build packages with apt-get when running as root (CI); otherwise a missing package is an
    /// error naming the `apt-get install` to run.
    pub install_packages: bool,
}

impl BuildOptions {
    /// Build [`CONFIG_FRAGMENT`] into `cache`, reusing a cached build, installing nothing.
    pub fn new(cache: impl Into<PathBuf>) -> BuildOptions {
        BuildOptions {
            cache: cache.into(),
            fragment: CONFIG_FRAGMENT.to_owned(),
            force: false,
            install_packages: false,
        }
    }
}

/// Builds the kernel unless the cache holds a build of the same source, fragment and recipe (or `force`), links it
/// as `<cache>/vmlinux` and returns the build's own path (`<cache>/<key>/vmlinux`, never rewritten in place). Progress goes to `progress`; compiler output to `build.log` in the
/// source tree (errors point at it).
pub fn build_cached(
    options: &BuildOptions,
    progress: &mut dyn FnMut(&Progress),
) -> Result<PathBuf, KernelBuildError> {
    ensure_build_packages(options.install_packages, progress)?;
    let tarball = find_source_tarball()?;
    let key = cache_key(&tarball, &options.fragment);
    let out_dir = options.cache.join(&key);
    let vmlinux = out_dir.join("vmlinux");
    if vmlinux.is_file() && !options.force {
        progress(&Progress::UpToDate { key });
    } else {
        build(
            &tarball,
            &options.fragment,
            &options.cache,
            &out_dir,
            progress,
        )?;
    }
    link_latest(&options.cache, &vmlinux)?;
    Ok(vmlinux)
}

/// The packages of [`BUILD_PACKAGES`] that are not installed.
pub fn missing_packages() -> Vec<String> {
    BUILD_PACKAGES
        .iter()
        .filter(|(_, probe)| !probe_present(probe))
        .map(|(pkg, _)| (*pkg).to_owned())
        .collect()
}

fn ensure_build_packages(
    install: bool,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), KernelBuildError> {
    let missing = missing_packages();
    if missing.is_empty() {
        return Ok(());
    }
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    if !install || !is_root {
        return Err(KernelBuildError::MissingPackages { packages: missing });
    }
    progress(&Progress::Installing {
        packages: missing.clone(),
    });
    run_checked(Command::new("apt-get").args(["update", "-q"]))?;
    run_checked(
        Command::new("apt-get")
            .args(["install", "-y", "-q", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

fn probe_present(probe: &str) -> bool {
    if probe == "/usr/src" {
        return find_source_tarball().is_ok();
    }
    if probe.starts_with('/') {
        return Path::new(probe).exists();
    }
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(probe).is_file()))
}

/// The newest `/usr/src/linux-source-X.Y.tar.xz`.
fn find_source_tarball() -> Result<PathBuf, KernelBuildError> {
    let entries = fs::read_dir("/usr/src").map_err(|_| KernelBuildError::NoSource)?;
    let mut found: Vec<(Vec<u32>, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let parts = source_version(&name)?;
            Some((parts, e.path()))
        })
        .collect();
    found.sort();
    found
        .pop()
        .map(|(_, p)| p)
        .ok_or(KernelBuildError::NoSource)
}

/// `linux-source-6.1.tar.xz` → `[6, 1]`.
fn source_version(file_name: &str) -> Option<Vec<u32>> {
    file_name
        .strip_prefix("linux-source-")?
        .strip_suffix(".tar.xz")?
        .split('.')
        .map(|p| p.parse().ok())
        .collect()
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
    format!("{}-{hash:016x}", tarball_stem(tarball))
}

fn tarball_stem(tarball: &Path) -> &str {
    tarball
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_suffix(".tar.xz"))
        .unwrap_or("linux")
}

fn build(
    tarball: &Path,
    fragment: &str,
    cache: &Path,
    out_dir: &Path,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), KernelBuildError> {
    let started = Instant::now();
    let work = cache.join("build");
    let src = work.join(tarball_stem(tarball));
    if src.join("Makefile").is_file() {
        progress(&Progress::ReusingSource {
            source: src.clone(),
        });
    } else {
        fs::create_dir_all(&work).map_err(io_err("create", &work))?;
        progress(&Progress::Unpacking {
            tarball: tarball.to_path_buf(),
            into: work.clone(),
        });
        run_checked(
            Command::new("tar")
                .arg("-xf")
                .arg(tarball)
                .arg("-C")
                .arg(&work),
        )?;
    }
    progress(&Progress::Configuring);
    configure(&src, fragment)?;
    let jobs = std::thread::available_parallelism().map_or(2, |n| n.get());
    progress(&Progress::Compiling { jobs });
    compile(&src, jobs, progress)?;
    progress(&Progress::Storing);
    fs::create_dir_all(out_dir).map_err(io_err("create", out_dir))?;
    let tmp = out_dir.join("vmlinux.tmp");
    fs::copy(src.join("vmlinux"), &tmp).map_err(io_err("copy vmlinux to", &tmp))?;
    let config = out_dir.join("config");
    fs::copy(src.join(".config"), &config).map_err(io_err("copy .config to", &config))?;
    let vmlinux = out_dir.join("vmlinux");
    fs::rename(&tmp, &vmlinux).map_err(io_err("rename vmlinux into", &vmlinux))?;
    progress(&Progress::Built {
        elapsed: started.elapsed(),
    });
    Ok(())
}

fn make(src: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(src).arg("ARCH=x86_64");
    cmd
}

fn configure(src: &Path, fragment: &str) -> Result<(), KernelBuildError> {
    run_quiet(make(src).arg("tinyconfig"))?;
    let fragment_file = src.join("sbx-fragment.config");
    fs::write(&fragment_file, fragment).map_err(io_err("write", &fragment_file))?;
    run_quiet(
        Command::new("scripts/kconfig/merge_config.sh")
            .current_dir(src)
            .env("ARCH", "x86_64")
            .args(["-m", ".config", "sbx-fragment.config"]),
    )?;
    run_quiet(make(src).arg("olddefconfig"))?;
    let config_path = src.join(".config");
    let config = fs::read_to_string(&config_path).map_err(io_err("read", &config_path))?;
    let dropped = dropped_options(fragment, &config);
    if !dropped.is_empty() {
        return Err(KernelBuildError::Dropped { options: dropped });
    }
    Ok(())
}

/// Lines of the fragment whose value is not in `config` (`=n` lines: set to anything else).
pub fn dropped_options(fragment: &str, config: &str) -> Vec<String> {
    fragment
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("CONFIG_"))
        .filter(|wanted| {
            let Some((name, value)) = wanted.split_once('=') else {
                return false;
            };
            if value == "n" {
                return config.lines().any(|l| {
                    l.split_once('=')
                        .is_some_and(|(n, v)| n == name && v != "n")
                });
            }
            !config.lines().any(|l| l.trim() == *wanted)
        })
        .map(str::to_string)
        .collect()
}

/// Runs `make vmlinux`, reporting every 100 compiled objects; the full log goes to `build.log`.
fn compile(
    src: &Path,
    jobs: usize,
    progress: &mut dyn FnMut(&Progress),
) -> Result<(), KernelBuildError> {
    let log_path = src.join("build.log");
    let mut log = fs::File::create(&log_path).map_err(io_err("create", &log_path))?;
    let mut child = make(src)
        .arg(format!("-j{jobs}"))
        .arg("vmlinux")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("start make in", src))?;
    // make's stderr (warnings, errors) goes to the log too, from its own thread so neither pipe fills up.
    let stderr_log = log_path.with_file_name("build.stderr.log");
    let stderr_thread = child.stderr.take().map(|mut stderr| {
        let path = stderr_log.clone();
        std::thread::spawn(move || {
            if let Ok(mut file) = fs::File::create(&path) {
                let _ = std::io::copy(&mut stderr, &mut file);
            }
        })
    });
    let started = Instant::now();
    let mut compiled = 0u32;
    if let Some(stdout) = child.stdout.take() {
        for line in BufReader::new(stdout).lines() {
            let line = line.map_err(io_err("read the output of make in", src))?;
            writeln!(log, "{line}").map_err(io_err("write", &log_path))?;
            match classify_make_line(&line) {
                MakeLine::Compiled => {
                    compiled += 1;
                    if compiled.is_multiple_of(100) {
                        progress(&Progress::Compiled {
                            objects: compiled,
                            elapsed: started.elapsed(),
                        });
                    }
                }
                MakeLine::LinkingVmlinux => progress(&Progress::Linking),
                MakeLine::Other => {}
            }
        }
    }
    let status = child.wait().map_err(io_err("wait for make in", src))?;
    if let Some(thread) = stderr_thread {
        let _ = thread.join();
    }
    if !status.success() {
        let text = fs::read_to_string(&stderr_log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        return Err(KernelBuildError::Make {
            status: status.to_string(),
            log: stderr_log,
            tail,
        });
    }
    Ok(())
}

#[derive(Debug, PartialEq, Eq)]
enum MakeLine {
    Compiled,
    LinkingVmlinux,
    Other,
}

fn classify_make_line(line: &str) -> MakeLine {
    let line = line.trim_start();
    if line.starts_with("CC ") {
        MakeLine::Compiled
    } else if line.starts_with("LD ") && line.trim_end().ends_with("vmlinux") {
        MakeLine::LinkingVmlinux
    } else {
        MakeLine::Other
    }
}

fn link_latest(cache: &Path, vmlinux: &Path) -> Result<(), KernelBuildError> {
    let link = cache.join("vmlinux");
    let tmp = cache.join("vmlinux.link-tmp");
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(vmlinux, &tmp).map_err(io_err("create the symlink", &tmp))?;
    fs::rename(&tmp, &link).map_err(io_err("update", &link))
}

fn run_quiet(cmd: &mut Command) -> Result<(), KernelBuildError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|source| KernelBuildError::Step {
        command: shown.clone(),
        status: format!("could not start: {source}"),
        output: String::new(),
    })?;
    if !out.status.success() {
        return Err(KernelBuildError::Step {
            command: shown,
            status: out.status.to_string(),
            output: format!(
                ":\n{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
        });
    }
    Ok(())
}

fn run_checked(cmd: &mut Command) -> Result<(), KernelBuildError> {
    let shown = format!("{cmd:?}");
    let status = cmd.status().map_err(|source| KernelBuildError::Step {
        command: shown.clone(),
        status: format!("could not start: {source}"),
        output: String::new(),
    })?;
    if !status.success() {
        return Err(KernelBuildError::Step {
            command: shown,
            status: status.to_string(),
            output: String::new(),
        });
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

    #[test]
    fn the_fragment_is_embedded_and_asks_for_virtio() {
        assert!(
            CONFIG_FRAGMENT.contains("CONFIG_VIRTIO"),
            "{CONFIG_FRAGMENT}"
        );
    }

    /// A cache holding one build under `key` (vmlinux + config), linked as `<cache>/vmlinux`.
    fn cached_build(cache: &Path, key: &str, config: Option<&str>) -> PathBuf {
        let dir = cache.join(key);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("vmlinux"), b"\x7fELF").unwrap();
        if let Some(config) = config {
            fs::write(dir.join("config"), config).unwrap();
        }
        link_latest(cache, &dir.join("vmlinux")).unwrap();
        cache.join("vmlinux")
    }

    #[test]
    fn inspect_tells_missing_ready_and_stale_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let fragment = "CONFIG_VIRTIO=y\nCONFIG_MODULES=n\n";
        assert_eq!(inspect(&cache, fragment), KernelState::Missing);

        let link = cached_build(&cache, "linux-source-6.1-1", Some("CONFIG_VIRTIO=y\n"));
        assert_eq!(inspect(&cache, fragment), KernelState::Ready(link.clone()));

        // The fragment grew an option the cached build lacks: stale, naming it.
        match inspect(&cache, "CONFIG_VIRTIO=y\nCONFIG_FUSE_FS=y\n") {
            KernelState::Stale { vmlinux, reason } => {
                assert_eq!(vmlinux, link);
                assert!(reason.contains("CONFIG_FUSE_FS=y"), "{reason}");
            }
            other => panic!("expected stale, got {other:?}"),
        }

        // A build without a recorded config cannot be trusted.
        cached_build(&cache, "linux-source-6.1-2", None);
        assert!(matches!(
            inspect(&cache, fragment),
            KernelState::Stale { ref reason, .. } if reason.contains("no build config")
        ));
    }

    #[test]
    fn cache_dir_follows_the_documented_order() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        assert_eq!(
            cache_dir_from(env(&[
                ("SBX_KERNEL_CACHE", "/k"),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ]))
            .unwrap(),
            PathBuf::from("/k")
        );
        assert_eq!(
            cache_dir_from(env(&[
                ("SBX_KERNEL_CACHE", ""),
                ("XDG_CACHE_HOME", "/x"),
                ("HOME", "/h")
            ]))
            .unwrap(),
            PathBuf::from("/x/sbx/guest-kernel")
        );
        assert_eq!(
            cache_dir_from(env(&[("HOME", "/h")])).unwrap(),
            PathBuf::from("/h/.cache/sbx/guest-kernel")
        );
        assert!(matches!(
            cache_dir_from(env(&[])),
            Err(KernelBuildError::NoCacheDir)
        ));
    }

    #[test]
    fn progress_lines_say_the_step_and_the_estimate() {
        assert_eq!(
            Progress::Compiling { jobs: 2 }.to_string(),
            format!("[3/4] compiling vmlinux with 2 jobs ({BUILD_ESTIMATE})")
        );
        assert_eq!(
            Progress::Compiled {
                objects: 300,
                elapsed: Duration::from_secs(75)
            }
            .to_string(),
            "  300 objects compiled (75s)"
        );
        assert_eq!(
            Progress::Configuring.to_string(),
            format!("[2/4] configuring (tinyconfig + {CONFIG_FRAGMENT_PATH})")
        );
    }

    #[test]
    fn make_output_is_classified_for_progress() {
        assert_eq!(
            classify_make_line("  CC      kernel/fork.o"),
            MakeLine::Compiled
        );
        assert_eq!(
            classify_make_line("  LD      vmlinux"),
            MakeLine::LinkingVmlinux
        );
        assert_eq!(classify_make_line("  LD      vmlinux.o"), MakeLine::Other);
        assert_eq!(classify_make_line("  AR      lib/lib.a"), MakeLine::Other);
    }

    #[test]
    fn source_tarball_names_give_versions() {
        assert_eq!(
            source_version("linux-source-6.12.tar.xz"),
            Some(vec![6, 12])
        );
        assert_eq!(source_version("linux-source-6.12.tar.bz2"), None);
        assert_eq!(source_version("linux-config-6.12"), None);
    }

    #[test]
    fn errors_say_what_to_install() {
        let e = KernelBuildError::MissingPackages {
            packages: vec!["linux-source".into(), "flex".into()],
        };
        assert!(
            e.to_string()
                .contains("sudo apt-get install -y linux-source flex"),
            "{e}"
        );
    }
}
