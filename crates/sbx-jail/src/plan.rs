//! The setup steps run inside the new namespaces, prepared on the host side so the child only makes syscalls.
//!
//! After `clone` the child of a multi-threaded host process may not allocate (another thread could have held the
//! allocator lock), so every path, option string and argument vector is built here, before the clone.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::config::JailConfig;
use crate::error::JailError;
use crate::idmap::UserMapping;
use crate::state::StateDir;

/// Path of the agent binary inside the sandbox.
pub const GUEST_PATH: &str = "/run/sbx/sbx-guest";
/// The host proxy socket inside the sandbox.
pub const PROXY_PATH: &str = "/run/sbx/proxy.sock";
/// The directory shared with the host (agent socket).
pub const HOST_DIR: &str = "/run/sbx/host";
/// The sandbox CA inside.
pub const CA_PATH: &str = "/run/sbx/ca.pem";

/// One step of the in-namespace setup.
#[derive(Debug)]
pub enum Op {
    /// `mkdir` (existing directories are fine).
    Mkdir(CString),
    /// Create an empty file to bind a file onto.
    Touch(CString),
    /// `mount(2)`.
    Mount {
        /// Source.
        source: Option<CString>,
        /// Target.
        target: CString,
        /// File system type.
        fstype: Option<CString>,
        /// Flags.
        flags: libc::c_ulong,
        /// Options.
        data: Option<CString>,
        /// Skip on failure (e.g. sysfs where the host forbids it).
        optional: bool,
    },
    /// `symlink(target, link)`.
    Symlink(CString, CString),
    /// `chdir(new_root); pivot_root(".", "."); umount2(".", MNT_DETACH); chdir("/")`.
    PivotRoot(CString),
    /// `sethostname`.
    Hostname(CString),
    /// `lchown` (ids as seen inside the new user namespace).
    Chown {
        /// The path (not followed if a symlink).
        path: CString,
        /// New owner.
        uid: u32,
        /// New group.
        gid: u32,
    },
    /// `chmod`.
    Chmod {
        /// The path.
        path: CString,
        /// The mode bits (including setuid/setgid/sticky).
        mode: u32,
    },
}

impl Op {
    /// A short description for error messages.
    pub fn describe(&self) -> String {
        let s = |c: &CString| c.to_string_lossy().into_owned();
        match self {
            Op::Mkdir(p) => format!("mkdir {}", s(p)),
            Op::Touch(p) => format!("create {}", s(p)),
            Op::Mount {
                source,
                target,
                fstype,
                ..
            } => format!(
                "mount {} ({}) on {}",
                source.as_ref().map_or("-".into(), s),
                fstype.as_ref().map_or("bind".into(), s),
                s(target)
            ),
            Op::Symlink(t, l) => format!("symlink {} -> {}", s(l), s(t)),
            Op::PivotRoot(p) => format!("pivot_root into {}", s(p)),
            Op::Hostname(h) => format!("sethostname {}", s(h)),
            Op::Chown { path, uid, gid } => format!("chown {uid}:{gid} {}", s(path)),
            Op::Chmod { path, mode } => format!("chmod {mode:o} {}", s(path)),
        }
    }
}

/// How the root is assembled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RootMode {
    /// overlay: template (lower, read-only) + state upper.
    Overlay,
    /// Bind of a private copy of the template in the state dir (kernel refused overlay in a user namespace).
    Copy,
}

/// Everything the child needs.
#[derive(Debug)]
pub struct Plan {
    /// Setup steps in order.
    pub ops: Vec<Op>,
    /// Program to exec (inside the new root).
    pub exec_path: CString,
    /// Its argv.
    pub argv: Vec<CString>,
    /// Its environment.
    pub envp: Vec<CString>,
}

pub(crate) fn cstr(p: impl AsRef<Path>) -> Result<CString, JailError> {
    let p = p.as_ref();
    CString::new(p.as_os_str().as_bytes()).map_err(|_| JailError::BadPath {
        what: "path",
        path: p.to_path_buf(),
        reason: "contains a NUL byte".into(),
    })
}

fn text(s: &str) -> Result<CString, JailError> {
    cstr(Path::new(s))
}

/// `inner` (absolute, inside the sandbox) under the new root on the host side.
fn under(root: &Path, inner: &Path) -> PathBuf {
    root.join(inner.strip_prefix("/").unwrap_or(inner))
}

fn bind(source: &Path, target: &Path, extra: libc::c_ulong) -> Result<Vec<Op>, JailError> {
    let mut ops = vec![Op::Mount {
        source: Some(cstr(source)?),
        target: cstr(target)?,
        fstype: None,
        flags: libc::MS_BIND | libc::MS_REC,
        data: None,
        optional: false,
    }];
    if extra != 0 {
        // Read-only (or nosuid…) needs a remount; flags the host mount had locked (nodev, nosuid, noexec) must be
        // kept or the kernel refuses the remount in a user namespace.
        ops.push(Op::Mount {
            source: None,
            target: cstr(target)?,
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REMOUNT | extra | locked_flags(source),
            data: None,
            optional: false,
        });
    }
    Ok(ops)
}

fn locked_flags(path: &Path) -> libc::c_ulong {
    use rustix::fs::StatVfsMountFlags as F;
    let Ok(st) = rustix::fs::statvfs(path) else {
        return 0;
    };
    let mut flags = 0;
    for (have, want) in [
        (F::NOSUID, libc::MS_NOSUID),
        (F::NODEV, libc::MS_NODEV),
        (F::NOEXEC, libc::MS_NOEXEC),
    ] {
        if st.f_flag.contains(have) {
            flags |= want;
        }
    }
    flags
}

fn mkdirs(root: &Path, inner: &Path) -> Result<Vec<Op>, JailError> {
    let mut out = Vec::new();
    let mut cur = root.to_path_buf();
    for comp in inner.strip_prefix("/").unwrap_or(inner).components() {
        cur.push(comp);
        out.push(Op::Mkdir(cstr(&cur)?));
    }
    Ok(out)
}

fn overlay_option(p: &Path, what: &'static str) -> Result<String, JailError> {
    let s = p.to_str().ok_or_else(|| JailError::BadPath {
        what,
        path: p.into(),
        reason: "is not UTF-8".into(),
    })?;
    if s.contains([',', ':', '\\']) {
        return Err(JailError::BadPath {
            what,
            path: p.into(),
            reason:
                "contains ',' ':' or '\\', which overlayfs options cannot carry; use a simpler path"
                    .into(),
        });
    }
    Ok(s.to_owned())
}

fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: &str,
    optional: bool,
) -> Result<Op, JailError> {
    Ok(Op::Mount {
        source: Some(text(source)?),
        target: cstr(target)?,
        fstype: Some(text(fstype)?),
        flags,
        data: (!data.is_empty()).then(|| text(data)).transpose()?,
        optional,
    })
}

/// Builds the setup plan for `config` with the root assembled as `mode` and the single id mapping.
pub fn build(config: &JailConfig, mode: &RootMode) -> Result<Plan, JailError> {
    let mapping = crate::idmap::choose(crate::idmap::MappingChoice::Single, &config.template);
    build_for(config, mode, &mapping)
}

/// Builds the setup plan for `config` with the root assembled as `mode` and ids mapped by `mapping`.
pub fn build_for(
    config: &JailConfig,
    mode: &RootMode,
    mapping: &UserMapping,
) -> Result<Plan, JailError> {
    let state = StateDir::new(&config.state_dir);
    let root = state.mountpoint();
    let mut ops = vec![Op::Mount {
        source: None,
        target: text("/")?,
        fstype: None,
        flags: libc::MS_REC | libc::MS_PRIVATE,
        data: None,
        optional: false,
    }];
    match mode {
        RootMode::Overlay => {
            // The upper layer's own directory is the root directory inside: it must belong to root inside (the host
            // made it, so it is the host user's, which keep-id shows as the agent) and have the template root's mode.
            let template_mode = std::fs::metadata(&config.template)
                .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
                .map_err(|e| JailError::BadPath {
                    what: "template",
                    path: config.template.clone(),
                    reason: e.to_string(),
                })?;
            ops.push(Op::Chown {
                path: cstr(state.upper())?,
                uid: 0,
                gid: 0,
            });
            ops.push(Op::Chmod {
                path: cstr(state.upper())?,
                mode: template_mode,
            });
            let data = format!(
                "lowerdir={},upperdir={},workdir={}",
                overlay_option(&config.template, "template")?,
                overlay_option(&state.upper(), "state dir")?,
                overlay_option(&state.work(), "state dir")?
            );
            ops.push(mount("overlay", &root, "overlay", 0, &data, false)?);
        }
        RootMode::Copy => ops.extend(bind(&state.copy_root(), &root, 0)?),
    }
    let nosuid = libc::MS_NOSUID | libc::MS_NODEV;
    for (dir, fstype, src, flags, data, optional) in [
        ("/proc", "proc", "proc", nosuid | libc::MS_NOEXEC, "", false),
        (
            "/sys",
            "sysfs",
            "sysfs",
            nosuid | libc::MS_NOEXEC | libc::MS_RDONLY,
            "",
            true,
        ),
        (
            "/dev",
            "tmpfs",
            "tmpfs",
            libc::MS_NOSUID,
            "mode=0755,size=64k",
            false,
        ),
        ("/tmp", "tmpfs", "tmpfs", nosuid, "mode=1777", false),
        ("/run", "tmpfs", "tmpfs", nosuid, "mode=0755", false),
    ] {
        let target = under(&root, Path::new(dir));
        ops.push(Op::Mkdir(cstr(&target)?));
        ops.push(mount(src, &target, fstype, flags, data, optional)?);
    }
    ops.extend(proc_ops(&root)?);
    ops.extend(dev_ops(&root)?);
    ops.extend(run_ops(config, &state, &root)?);
    for ws in &config.workspaces {
        if !ws.path.is_absolute() || !ws.path.is_dir() {
            return Err(JailError::BadPath {
                what: "workspace",
                path: ws.path.clone(),
                reason: "must be an existing directory given by absolute path".into(),
            });
        }
        let target = under(&root, &ws.path);
        ops.extend(mkdirs(&root, &ws.path)?);
        ops.extend(bind(
            &ws.path,
            &target,
            if ws.read_only { libc::MS_RDONLY } else { 0 },
        )?);
    }
    ops.push(Op::Hostname(text(&config.name)?));
    ops.push(Op::PivotRoot(cstr(&root)?));
    let mut argv = vec![
        text("sbx-guest")?,
        text("--mode")?,
        text("namespace")?,
        text("--listen")?,
    ];
    argv.push(text(&format!("unix:{HOST_DIR}/agent.sock"))?);
    argv.push(text("--proxy")?);
    argv.push(text(if config.proxy_socket.is_some() {
        "unix:/run/sbx/proxy.sock"
    } else {
        "none"
    })?);
    if config.ca_file.is_some() {
        argv.push(text("--ca")?);
        argv.push(text(CA_PATH)?);
    }
    if let Some(user) = mapping.default_user() {
        argv.push(text("--user")?);
        argv.push(text(user)?);
    }
    Ok(Plan {
        ops,
        exec_path: text(GUEST_PATH)?,
        argv,
        envp: vec![text("PATH=/usr/sbin:/usr/bin:/sbin:/bin")?],
    })
}

/// Kernel-wide knobs under `/proc` are read-only inside: files there are owned by host root and checked by owner
/// alone (sysctls, sysrq-trigger), and with keep-id run by root the agent is host uid 0.
fn proc_ops(root: &Path) -> Result<Vec<Op>, JailError> {
    let mut ops = Vec::new();
    for path in [
        "/proc/sys",
        "/proc/sysrq-trigger",
        "/proc/irq",
        "/proc/bus",
        "/proc/fs",
    ] {
        let target = cstr(under(root, Path::new(path)))?;
        // /proc/sys always exists; the others depend on the kernel's configuration.
        let optional = path != "/proc/sys";
        ops.push(Op::Mount {
            source: Some(target.clone()),
            target: target.clone(),
            fstype: None,
            flags: libc::MS_BIND | libc::MS_REC,
            data: None,
            optional,
        });
        ops.push(Op::Mount {
            source: None,
            target,
            fstype: None,
            flags: libc::MS_BIND
                | libc::MS_REMOUNT
                | libc::MS_RDONLY
                | libc::MS_NOSUID
                | libc::MS_NODEV
                | libc::MS_NOEXEC,
            data: None,
            optional,
        });
    }
    // Files readable by their owner alone that tell about the host's memory and kernel (physical page use, slab
    // and vmalloc layout, timers, the core image): /dev/null goes over them, as container runtimes do.
    for path in [
        "/proc/kcore",
        "/proc/kpagecount",
        "/proc/kpageflags",
        "/proc/kpagecgroup",
        "/proc/slabinfo",
        "/proc/vmallocinfo",
        "/proc/pagetypeinfo",
        "/proc/timer_list",
        "/proc/sched_debug",
    ] {
        ops.push(Op::Mount {
            source: Some(text("/dev/null")?),
            target: cstr(under(root, Path::new(path)))?,
            fstype: None,
            flags: libc::MS_BIND,
            data: None,
            optional: true,
        });
    }
    Ok(ops)
}

fn dev_ops(root: &Path) -> Result<Vec<Op>, JailError> {
    let dev = under(root, Path::new("/dev"));
    let mut ops = Vec::new();
    // Device nodes cannot be created in a user namespace; the harmless ones are bound from the host.
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        ops.push(Op::Touch(cstr(&target)?));
        // Read-only: writing to a device node works on a read-only mount, but chmod/chown/utimes of the host's node
        // do not (with keep-id as root the agent is host uid 0, the owner of /dev/null).
        ops.extend(bind(
            &Path::new("/dev").join(name),
            &target,
            libc::MS_RDONLY,
        )?);
    }
    let pts = dev.join("pts");
    ops.push(Op::Mkdir(cstr(&pts)?));
    ops.push(mount(
        "devpts",
        &pts,
        "devpts",
        libc::MS_NOSUID | libc::MS_NOEXEC,
        "newinstance,ptmxmode=0666,mode=0620",
        false,
    )?);
    ops.push(Op::Symlink(text("pts/ptmx")?, cstr(dev.join("ptmx"))?));
    let shm = dev.join("shm");
    ops.push(Op::Mkdir(cstr(&shm)?));
    ops.push(mount(
        "tmpfs",
        &shm,
        "tmpfs",
        libc::MS_NOSUID | libc::MS_NODEV,
        "mode=1777",
        false,
    )?);
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        ops.push(Op::Symlink(text(target)?, cstr(dev.join(link))?));
    }
    Ok(ops)
}

fn run_ops(config: &JailConfig, state: &StateDir, root: &Path) -> Result<Vec<Op>, JailError> {
    let sbx = under(root, Path::new("/run/sbx"));
    // Root only: it holds the agent's socket (whoever connects runs commands as any user) and the proxy socket; with
    // keep-id the agent user is the host user, so only the path can keep it out.
    let mut ops = vec![
        Op::Mkdir(cstr(&sbx)?),
        Op::Chmod {
            path: cstr(&sbx)?,
            mode: 0o700,
        },
    ];
    let guest = under(root, Path::new(GUEST_PATH));
    ops.push(Op::Touch(cstr(&guest)?));
    ops.extend(bind(&config.guest_binary, &guest, libc::MS_RDONLY)?);
    let host = under(root, Path::new(HOST_DIR));
    ops.push(Op::Mkdir(cstr(&host)?));
    ops.extend(bind(
        &state.sock_dir(),
        &host,
        libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
    )?);
    if let Some(proxy) = &config.proxy_socket {
        let target = under(root, Path::new(PROXY_PATH));
        ops.push(Op::Touch(cstr(&target)?));
        ops.extend(bind(proxy, &target, 0)?);
    }
    if let Some(ca) = &config.ca_file {
        let target = under(root, Path::new(CA_PATH));
        ops.push(Op::Touch(cstr(&target)?));
        ops.extend(bind(ca, &target, libc::MS_RDONLY)?);
    }
    Ok(ops)
}
