//! The host-FUSE frontend: the same [`FileServer`] serving the host kernel's `/dev/fuse`, mounted on a host directory.
//!
//! This is how the server is exercised without a microVM (tests, benchmarks, and a namespace sandbox could use it
//! too): open `/dev/fuse`, `mount(2)` a `fuse.sbx-virtiofs` file system with `fd=N`, and serve requests from a few
//! worker threads. `mount(2)` needs `CAP_SYS_ADMIN`; without it the setuid helper `fusermount3` (or `fusermount`) does
//! the mount and hands back the `/dev/fuse` descriptor over a socket ([`MountMethod`]).

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags};

use crate::server::{FileServer, Outcome};

/// What a [`HostMount`] serves: raw FUSE requests in, raw replies out. [`FileServer`] is the one that matters; the
/// seam exists so the same transport (workers, descriptor clones, readahead) can be measured with a handler that
/// does no file-system work at all (`examples/null_server.rs`, the transport floor of `cargo xtask bench-virtiofs`).
pub trait FuseHandler: Send + Sync + 'static {
    /// Handles one raw request, writing the raw reply (header included) into `reply`.
    fn handle(&self, request: &[u8], reply: &mut Vec<u8>) -> Outcome;
    /// The largest request the handler accepts (the size of each worker's read buffer).
    fn max_request_len(&self) -> usize;
}

impl FuseHandler for FileServer {
    fn handle(&self, request: &[u8], reply: &mut Vec<u8>) -> Outcome {
        FileServer::handle(self, request, reply)
    }

    fn max_request_len(&self) -> usize {
        FileServer::max_request_len(self)
    }
}

/// Default readahead window of a host mount: 8 requests of 1 MiB.
pub const DEFAULT_READ_AHEAD_KB: u32 = 8192;

/// How to mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    /// Worker threads reading `/dev/fuse`.
    pub threads: usize,
    /// Let users other than the mounting one use the mount (`allow_other`).
    pub allow_other: bool,
    /// Have the kernel check permissions from the attributes (`default_permissions`).
    pub default_permissions: bool,
    /// How to mount.
    pub method: MountMethod,
    /// Readahead window of the mount in KiB (`/sys/class/bdi/<dev>/read_ahead_kb`), set after mounting when the
    /// process may write sysfs (root). The kernel starts a FUSE mount at 128 KiB, which caps a cold sequential read at
    /// one 128 KiB request in flight; a window of several `max_pages` requests keeps the workers and the disk busy.
    /// `None` leaves the kernel's default.
    pub read_ahead_kb: Option<u32>,
}

/// How the file system gets mounted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MountMethod {
    /// `mount(2)` directly, falling back to the fusermount helper when that is not permitted.
    Auto,
    /// `mount(2)` only (needs `CAP_SYS_ADMIN`).
    Syscall,
    /// The setuid helper `fusermount3` (or `fusermount`) only; unprivileged users need `user_allow_other` in
    /// `/etc/fuse.conf` for `allow_other`.
    Fusermount,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            threads: 4,
            allow_other: true,
            default_permissions: true,
            method: MountMethod::Auto,
            read_ahead_kb: Some(DEFAULT_READ_AHEAD_KB),
        }
    }
}

/// Errors mounting or unmounting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MountError {
    /// `/dev/fuse` is missing or cannot be opened.
    #[error(
        "cannot open /dev/fuse: {source}; load the fuse module or give the process access to /dev/fuse"
    )]
    OpenDevice {
        /// Why.
        source: std::io::Error,
    },
    /// The caller lacks the privilege to mount.
    #[error(
        "mounting FUSE on {mountpoint} is not permitted ({source}); run as root or with CAP_SYS_ADMIN"
    )]
    NotPermitted {
        /// The mount point.
        mountpoint: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// `mount(2)` failed otherwise.
    #[error("mounting FUSE on {mountpoint} failed: {source}")]
    Mount {
        /// The mount point.
        mountpoint: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// `umount2(2)` failed.
    #[error("unmounting {mountpoint} failed: {source}")]
    Unmount {
        /// The mount point.
        mountpoint: PathBuf,
        /// The kernel's answer.
        source: std::io::Error,
    },
    /// A worker thread could not be started.
    #[error("cannot start a FUSE worker thread: {source}")]
    Spawn {
        /// Why.
        source: std::io::Error,
    },
}

/// A live host mount of a [`FileServer`] (or any [`FuseHandler`]); unmounted on [`HostMount::unmount`] or drop.
#[derive(Debug)]
pub struct HostMount {
    mountpoint: PathBuf,
    workers: Vec<JoinHandle<()>>,
    mounted: bool,
    /// The fusermount helper that mounted it (and unmounts it when we may not), if one did.
    helper: Option<&'static str>,
}

impl HostMount {
    /// Mounts `server` on `mountpoint` (an existing directory) and starts serving.
    pub fn mount<H: FuseHandler>(
        server: Arc<H>,
        mountpoint: &Path,
        options: &MountOptions,
    ) -> Result<Self, MountError> {
        let (dev, helper) = match options.method {
            MountMethod::Syscall => (mount_syscall(mountpoint, options)?, None),
            MountMethod::Fusermount => mount_fusermount(mountpoint, options)?,
            MountMethod::Auto => match mount_syscall(mountpoint, options) {
                Ok(dev) => (dev, None),
                Err(e @ MountError::NotPermitted { .. }) => {
                    mount_fusermount(mountpoint, options).map_err(|_| e)?
                }
                Err(e) => return Err(e),
            },
        };
        let mut mount = Self {
            mountpoint: mountpoint.to_owned(),
            workers: Vec::new(),
            mounted: true,
            helper,
        };
        let dev = Arc::new(dev);
        for i in 0..options.threads.max(1) {
            // Each worker beyond the first reads its own clone of the session's descriptor when the kernel allows it
            // (`FUSE_DEV_IOC_CLONE`); otherwise they share the one descriptor, which works, with more contention.
            let own = if i == 0 {
                None
            } else {
                match crate::sys::fuse_dev_clone(dev.as_fd()) {
                    Ok(clone) => Some(clone),
                    Err(e) => {
                        tracing::debug!(error = %e, "cannot clone the /dev/fuse session; workers share one descriptor");
                        None
                    }
                }
            };
            let dev = own.map_or_else(|| Arc::clone(&dev), Arc::new);
            let server = Arc::clone(&server);
            let worker = std::thread::Builder::new()
                .name(format!("sbx-fuse-{i}"))
                .spawn(move || serve(&dev, &*server))
                .map_err(|source| MountError::Spawn { source })?;
            mount.workers.push(worker);
        }
        if let Some(kb) = options.read_ahead_kb {
            set_read_ahead(mountpoint, kb);
        }
        Ok(mount)
    }

    /// The mount point.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Unmounts and waits for the workers to finish.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), MountError> {
        if !self.mounted {
            return Ok(());
        }
        self.mounted = false;
        // Lazy unmount: open files keep the connection alive until closed; the workers end when it is torn down.
        match rustix::mount::unmount(&self.mountpoint, UnmountFlags::DETACH) {
            Ok(()) => {}
            Err(Errno::PERM) if self.helper.is_some() => {
                let helper = self.helper.unwrap_or("fusermount");
                let status = Command::new(helper)
                    .args(["-u", "-z", "--"])
                    .arg(&self.mountpoint)
                    .status();
                if !status.is_ok_and(|s| s.success()) {
                    return Err(MountError::Unmount {
                        mountpoint: self.mountpoint.clone(),
                        source: std::io::Error::other(format!("{helper} -u failed")),
                    });
                }
            }
            Err(e) => {
                return Err(MountError::Unmount {
                    mountpoint: self.mountpoint.clone(),
                    source: e.into(),
                });
            }
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.workers.iter().any(|w| !w.is_finished()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        for worker in std::mem::take(&mut self.workers) {
            if worker.is_finished() {
                let _ = worker.join();
            } else {
                tracing::warn!(mountpoint = %self.mountpoint.display(), "FUSE worker still busy after unmount; detaching it");
            }
        }
        Ok(())
    }
}

impl Drop for HostMount {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_inner() {
            tracing::warn!(error = %e, "unmount on drop failed");
        }
    }
}

/// `mount(2)` with a freshly opened `/dev/fuse`.
fn mount_syscall(mountpoint: &Path, options: &MountOptions) -> Result<OwnedFd, MountError> {
    let dev = rustix::fs::open("/dev/fuse", OFlags::RDWR | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| MountError::OpenDevice { source: e.into() })?;
    let data = mount_data(&dev, options);
    rustix::mount::mount(
        "sbx-virtiofs",
        mountpoint,
        "fuse.sbx-virtiofs",
        MountFlags::NOSUID | MountFlags::NODEV,
        data.as_c_str(),
    )
    .map_err(|e| {
        let source = std::io::Error::from(e);
        if e == Errno::PERM || e == Errno::ACCESS {
            MountError::NotPermitted {
                mountpoint: mountpoint.to_owned(),
                source,
            }
        } else {
            MountError::Mount {
                mountpoint: mountpoint.to_owned(),
                source,
            }
        }
    })?;
    Ok(dev)
}

/// Mounts through the setuid helper: it opens `/dev/fuse`, mounts, and sends the descriptor back over the socket
/// named by `_FUSE_COMMFD` (`SCM_RIGHTS`).
fn mount_fusermount(
    mountpoint: &Path,
    options: &MountOptions,
) -> Result<(OwnedFd, Option<&'static str>), MountError> {
    use rustix::net::{
        AddressFamily, RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SocketFlags,
        SocketType,
    };
    let failed = |source: std::io::Error| MountError::Mount {
        mountpoint: mountpoint.to_owned(),
        source,
    };
    let helper = ["fusermount3", "fusermount"]
        .into_iter()
        .find(|h| {
            Command::new(h)
                .arg("-V")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok()
        })
        .ok_or_else(|| MountError::NotPermitted {
            mountpoint: mountpoint.to_owned(),
            source: std::io::Error::other("neither fusermount3 nor fusermount is installed"),
        })?;
    let (ours, theirs) = rustix::net::socketpair(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC,
        None,
    )
    .map_err(|e| failed(e.into()))?;
    // The helper inherits its end of the socket.
    rustix::io::fcntl_setfd(&theirs, rustix::io::FdFlags::empty()).map_err(|e| failed(e.into()))?;
    let mut opts = String::from("fsname=sbx-virtiofs,subtype=sbx-virtiofs,nosuid,nodev");
    if options.allow_other {
        opts.push_str(",allow_other");
    }
    if options.default_permissions {
        opts.push_str(",default_permissions");
    }
    let output = Command::new(helper)
        .args(["-o", &opts, "--"])
        .arg(mountpoint)
        .env("_FUSE_COMMFD", theirs.as_raw_fd().to_string())
        .stdin(Stdio::null())
        .output()
        .map_err(failed)?;
    drop(theirs);
    if !output.status.success() {
        let msg = String::from_utf8_lossy(&output.stderr).trim().to_owned();
        return Err(failed(std::io::Error::other(format!("{helper}: {msg}"))));
    }
    let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    rustix::net::recvmsg(
        &ours,
        &mut [std::io::IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::CMSG_CLOEXEC,
    )
    .map_err(|e| failed(e.into()))?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok((fd, Some(helper)));
        }
    }
    Err(failed(std::io::Error::other(format!(
        "{helper} mounted but sent no /dev/fuse descriptor"
    ))))
}

/// Sets the mount's readahead window through sysfs. Best effort: without root the kernel default stays.
///
/// Must run after FUSE_INIT has been answered (the kernel clamps the window to the negotiated `max_readahead` then);
/// the `stat` of the mount point below waits for that.
fn set_read_ahead(mountpoint: &Path, kb: u32) {
    use std::os::unix::fs::MetadataExt;
    let dev = match std::fs::metadata(mountpoint) {
        Ok(meta) => meta.dev(),
        Err(e) => {
            tracing::debug!(error = %e, "cannot stat the new mount; readahead left at the kernel default");
            return;
        }
    };
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, kb.to_string()) {
        tracing::debug!(error = %e, path, "cannot set the FUSE readahead window; kernel default kept");
    }
}

fn mount_data(dev: &OwnedFd, options: &MountOptions) -> CString {
    let mut data = format!(
        "fd={},rootmode=40000,user_id={},group_id={}",
        dev.as_raw_fd(),
        rustix::process::getuid().as_raw(),
        rustix::process::getgid().as_raw()
    );
    if options.allow_other {
        data.push_str(",allow_other");
    }
    if options.default_permissions {
        data.push_str(",default_permissions");
    }
    // The string is built from numbers and fixed words: it cannot contain NUL.
    CString::new(data).unwrap_or_default()
}

/// One worker: read a request, handle it, write the reply, until the connection goes away.
fn serve<H: FuseHandler>(dev: &OwnedFd, server: &H) {
    let mut buf = vec![0u8; server.max_request_len()];
    let mut reply = Vec::with_capacity(server.max_request_len());
    loop {
        let n = match rustix::io::read(dev, &mut buf) {
            Ok(n) => n,
            // Interrupted, or a request the kernel withdrew before we read it.
            Err(Errno::INTR | Errno::AGAIN | Errno::NOENT) => continue,
            Err(Errno::NODEV) => return, // unmounted
            Err(e) => {
                tracing::warn!(error = %e, "reading /dev/fuse failed; worker stops");
                return;
            }
        };
        let outcome = server.handle(&buf[..n], &mut reply);
        if matches!(outcome, Outcome::Reply | Outcome::Destroyed) {
            match rustix::io::write(dev, &reply) {
                // ENOENT: the request was interrupted and the kernel no longer waits for it.
                Ok(_) | Err(Errno::NOENT) => {}
                Err(Errno::NODEV) => return,
                Err(e) => tracing::warn!(error = %e, "writing a FUSE reply failed"),
            }
        }
        if outcome == Outcome::Destroyed {
            return;
        }
    }
}
