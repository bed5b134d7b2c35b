//! The passthrough file server: one host directory served over the FUSE protocol, confined beneath its root.
//!
//! [`FileServer::handle`] takes one raw FUSE request and writes the raw reply; the transports (host `/dev/fuse` in
//! [`crate::host_fuse`], virtio-fs queues in [`crate::virtio`]) only move bytes. The server is `Sync`: transports may
//! call it from several threads at once.

mod attr;
mod dir;
mod entry;
mod file;
mod xattr;

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::abi::{Attr, EntryOut, InitOut, OUT_HEADER_LEN, Validity, write_out_header};
use crate::handle::HandleTable;
use crate::idmap::IdMapping;
use crate::init::{KernelInit, Negotiation, negotiate};
use crate::inode::{Inode, InodeTable};
use crate::request::{Operation, Request};

/// How long the guest kernel may cache names and attributes, and whether it may cache writes.
///
/// The defaults are chosen for a workspace the host edits at the same time (see the README's consistency model):
/// one-second entry and attribute timeouts, no negative caching, no writeback cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CachePolicy {
    /// How long a name → inode binding is trusted before the guest looks it up again.
    pub entry_timeout: Duration,
    /// How long attributes (size, mtime, mode) are trusted before the guest asks again.
    pub attr_timeout: Duration,
    /// Let the guest kernel buffer writes and own size/mtime (`FUSE_WRITEBACK_CACHE`). Faster small writes, but host
    /// edits to a file the guest has cached can be overwritten; off by default.
    pub writeback_cache: bool,
    /// Let the guest keep a file's cached pages across opens while the file's version (size, mtime, ctime) is what
    /// it was at the previous open (`FOPEN_KEEP_CACHE`); any change, by the host or the guest, drops them at the next
    /// open. On by default: re-reading unchanged files (headers, sources, tools) then costs no requests at all.
    /// The same check governs directory listings (`FOPEN_CACHE_DIR`): kept while the directory's version (mtime,
    /// ctime: every entry created, removed or renamed changes them) is unchanged.
    pub keep_cache: bool,
}

impl Default for CachePolicy {
    fn default() -> Self {
        Self {
            entry_timeout: Duration::from_secs(1),
            attr_timeout: Duration::from_secs(1),
            writeback_cache: false,
            keep_cache: true,
        }
    }
}

/// What to share and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareConfig {
    /// The host directory served as the guest's root of this share.
    pub root: PathBuf,
    /// Refuse every modification with `EROFS`.
    pub read_only: bool,
    /// Owner mapping between guest and host.
    pub ids: IdMapping,
    /// Guest-side caching.
    pub cache: CachePolicy,
    /// Largest request in 4 KiB pages (`max_pages`); 256 gives 1 MiB reads and writes.
    pub max_pages: u16,
}

impl ShareConfig {
    /// Shares `root` read-write with the identity owner mapping and the default cache policy.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            read_only: false,
            ids: IdMapping::identity(),
            cache: CachePolicy::default(),
            max_pages: 256,
        }
    }

    /// Sets read-only (`:ro`) mode.
    #[must_use]
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets the owner mapping.
    #[must_use]
    pub fn ids(mut self, ids: IdMapping) -> Self {
        self.ids = ids;
        self
    }

    /// Sets the cache policy.
    #[must_use]
    pub fn cache(mut self, cache: CachePolicy) -> Self {
        self.cache = cache;
        self
    }
}

/// Errors setting up a share.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The root could not be opened.
    #[error("cannot open the shared directory {path}: {source}")]
    OpenRoot {
        /// The configured root.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root is not a directory.
    #[error("the shared path {path} is not a directory; share a directory")]
    NotADirectory {
        /// The configured root.
        path: PathBuf,
    },
}

/// What the transport should do after [`FileServer::handle`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Outcome {
    /// Send the reply buffer.
    Reply,
    /// The operation has no reply (FORGET, BATCH_FORGET, INTERRUPT, undecodable header).
    NoReply,
    /// The kernel ended the session (DESTROY); send the reply, then stop.
    Destroyed,
}

/// Frames the reply to one raw FUSE request: decodes it, lets `body` append the reply's body after the reserved
/// `fuse_out_header`, and fills the header in (length, error, the request's `unique`). `body` returns the outcome, or
/// a positive errno (`libc::ENOENT`), which becomes a header-only error reply. An undecodable request is answered
/// with `EINVAL` when its header can be read, and not at all when even that is missing. Every
/// [`FuseHandler`](crate::host_fuse::FuseHandler) can use it; [`FileServer::handle`] does.
pub fn frame_reply(
    request: &[u8],
    reply: &mut Vec<u8>,
    body: impl FnOnce(&Request<'_>, &mut Vec<u8>) -> Result<Outcome, i32>,
) -> Outcome {
    reply.clear();
    let req = match Request::decode(request) {
        Ok(req) => req,
        Err(e) => {
            tracing::debug!(error = %e, "undecodable FUSE request");
            return match request.get(8..16) {
                Some(u) if request.len() >= crate::abi::IN_HEADER_LEN => {
                    let unique = u64::from_ne_bytes(u.try_into().unwrap_or([0; 8]));
                    reply.resize(OUT_HEADER_LEN, 0);
                    write_out_header(reply, -Errno::INVAL.raw_os_error(), unique);
                    Outcome::Reply
                }
                _ => Outcome::NoReply,
            };
        }
    };
    let unique = req.header.unique;
    reply.resize(OUT_HEADER_LEN, 0);
    match body(&req, reply) {
        Ok(outcome) => {
            write_out_header(reply, 0, unique);
            outcome
        }
        Err(errno) => {
            reply.truncate(OUT_HEADER_LEN);
            write_out_header(reply, -errno, unique);
            Outcome::Reply
        }
    }
}

/// Counters useful to tests and diagnostics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerStats {
    /// Node ids the guest holds (root included).
    pub inodes: usize,
    /// Open file and directory handles.
    pub handles: usize,
}

/// The passthrough file server for one share.
#[derive(Debug)]
pub struct FileServer {
    config: ShareConfig,
    inodes: InodeTable,
    handles: HandleTable,
    session: Mutex<Option<InitOut>>,
    /// Whether new files must be chowned to the mapped host owner (the server runs as someone else, e.g. root).
    chown_new: bool,
    /// Whether write-only opens may bypass the guest's page cache (see `FileServer::direct_io_flag`): decided at
    /// INIT from the guest kernel's protocol version.
    direct_writes: std::sync::atomic::AtomicBool,
}

impl FileServer {
    /// Opens the share's root and prepares the server.
    ///
    /// Every inode the guest holds costs the server one `O_PATH` descriptor (that is what makes renames and symlink
    /// swaps harmless), so this also raises the process's soft `RLIMIT_NOFILE` as far as allowed: to
    /// `/proc/sys/fs/nr_open` when privileged, else to the hard limit.
    pub fn new(config: ShareConfig) -> Result<Self, ServerError> {
        raise_fd_limit();
        let root = open_root(&config.root)?;
        let inodes = InodeTable::new(root).map_err(|e| ServerError::OpenRoot {
            path: config.root.clone(),
            source: e.into(),
        })?;
        let euid = rustix::process::geteuid().as_raw();
        let egid = rustix::process::getegid().as_raw();
        let chown_new = euid == 0 && (config.ids.host_uid, config.ids.host_gid) != (euid, egid);
        Ok(Self {
            config,
            inodes,
            handles: HandleTable::default(),
            session: Mutex::new(None),
            chown_new,
            direct_writes: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The configuration this server was built with.
    pub fn config(&self) -> &ShareConfig {
        &self.config
    }

    /// Live node ids and handles.
    pub fn stats(&self) -> ServerStats {
        ServerStats {
            inodes: self.inodes.len(),
            handles: self.handles.len(),
        }
    }

    /// The negotiated session parameters, once FUSE_INIT has been answered.
    pub fn session(&self) -> Option<InitOut> {
        self.session.lock().ok().and_then(|s| *s)
    }

    /// Largest request this server accepts once negotiated (for transports sizing their buffers).
    pub fn max_request_len(&self) -> usize {
        usize::from(self.config.max_pages.max(32)) * 4096 + 64 * 1024
    }

    /// Handles one raw FUSE request, writing the raw reply (header included) into `reply`.
    pub fn handle(&self, request: &[u8], reply: &mut Vec<u8>) -> Outcome {
        frame_reply(request, reply, |req, out| {
            self.dispatch(req, out).map_err(|e| e.raw_os_error())
        })
    }

    fn dispatch(&self, req: &Request<'_>, out: &mut Vec<u8>) -> Result<Outcome, Errno> {
        let node = req.header.nodeid;
        if let Some(kernel) = KernelInit::of(&req.op) {
            return self.init(kernel, out);
        }
        if self.session().is_none() {
            return Err(Errno::IO);
        }
        use Operation as O;
        match &req.op {
            O::Init { .. } => Err(Errno::PROTO),
            O::Destroy => {
                self.session.lock().map_err(|_| Errno::IO)?.take();
                return Ok(Outcome::Destroyed);
            }
            O::Forget { nlookup } => {
                self.inodes.forget(node, *nlookup);
                return Ok(Outcome::NoReply);
            }
            O::BatchForget { batch } => {
                for (id, n) in batch.iter() {
                    self.inodes.forget(id, n);
                }
                return Ok(Outcome::NoReply);
            }
            O::Interrupt { .. } => return Ok(Outcome::NoReply),
            O::Lookup { name } => self.lookup(node, name, out),
            O::Getattr { fh } => self.getattr(node, *fh, out),
            O::Setattr(arg) => self.setattr(node, arg, out),
            O::Readlink => self.readlink(node, out),
            O::Symlink { name, target } => self.symlink(node, name, target, out),
            O::Mknod {
                mode, rdev, name, ..
            } => self.mknod(node, name, *mode, *rdev, out),
            O::Mkdir { mode, name, .. } => self.mkdir(node, name, *mode, out),
            O::Unlink { name } => self.unlink(node, name, AtFlags::empty()),
            O::Rmdir { name } => self.unlink(node, name, AtFlags::REMOVEDIR),
            O::Rename {
                newdir,
                flags,
                oldname,
                newname,
            } => self.rename(node, oldname, *newdir, newname, *flags),
            O::Link { oldnodeid, newname } => self.link(*oldnodeid, node, newname, out),
            O::Open { flags, open_flags } => self.open(node, *flags, *open_flags, out),
            O::Read(arg) => self.read(arg, out),
            O::Write { arg, data } => self.write(arg, data, out),
            O::Statfs => self.statfs(node, out),
            O::Release { fh } | O::Releasedir { fh } => {
                self.handles.remove(*fh);
                Ok(())
            }
            // Writes are write-through, so a close has nothing to flush: ENOSYS makes the kernel stop sending FLUSH
            // (one round trip less per close(2)). A forged handle still gets EBADF.
            O::Flush { fh } => self.handles.get(*fh).and(Err(Errno::NOSYS)),
            O::Fsync { fh, datasync } | O::Fsyncdir { fh, datasync } => self.fsync(*fh, *datasync),
            O::Setxattr { flags, name, value } => self.setxattr(node, name, value, *flags),
            O::Getxattr { size, name } => self.getxattr(node, name, *size, out),
            O::Listxattr { size } => self.listxattr(node, *size, out),
            O::Removexattr { name } => self.removexattr(node, name),
            O::Opendir { .. } => self.opendir(node, out),
            O::Readdir(arg) => self.readdir(arg, false, out),
            O::Readdirplus(arg) => self.readdir(arg, true, out),
            O::Create {
                flags,
                mode,
                open_flags,
                name,
                ..
            } => self.create(node, name, *flags, *mode, *open_flags, out),
            O::Fallocate {
                fh,
                offset,
                length,
                mode,
            } => self.fallocate(*fh, *offset, *length, *mode),
            O::Lseek { fh, offset, whence } => self.lseek(*fh, *offset, *whence, out),
            O::CopyFileRange(arg) => self.copy_file_range(arg, out),
            // The kernel falls back to local checks and locks for these.
            O::Access { .. } | O::Unsupported { .. } => Err(Errno::NOSYS),
        }?;
        Ok(Outcome::Reply)
    }

    fn init(&self, kernel: KernelInit, out: &mut Vec<u8>) -> Result<Outcome, Errno> {
        match negotiate(kernel, &self.config.cache, self.config.max_pages) {
            Negotiation::Accepted(init) => {
                self.direct_writes.store(
                    kernel.minor >= crate::init::DIRECT_WRITE_COHERENT_MINOR,
                    std::sync::atomic::Ordering::Relaxed,
                );
                *self.session.lock().map_err(|_| Errno::IO)? = Some(init);
                init.encode(out);
                Ok(Outcome::Reply)
            }
            Negotiation::RetryWithOurMajor(init) => {
                init.encode(out);
                Ok(Outcome::Reply)
            }
            Negotiation::Refused { major, minor } => {
                tracing::warn!(
                    major,
                    minor,
                    "refusing FUSE session: kernel protocol too old"
                );
                Err(Errno::PROTO)
            }
        }
    }

    /// `EROFS` for every modification of a read-only share.
    fn check_writable(&self) -> Result<(), Errno> {
        if self.config.read_only {
            Err(Errno::ROFS)
        } else {
            Ok(())
        }
    }

    fn inode(&self, nodeid: u64) -> Result<std::sync::Arc<Inode>, Errno> {
        self.inodes.get(nodeid)
    }

    fn to_attr(&self, st: &rustix::fs::Stat) -> Attr {
        Attr {
            ino: st.st_ino,
            size: st.st_size as u64,
            blocks: st.st_blocks as u64,
            atime: st.st_atime as u64,
            mtime: st.st_mtime as u64,
            ctime: st.st_ctime as u64,
            atimensec: st.st_atime_nsec as u32,
            mtimensec: st.st_mtime_nsec as u32,
            ctimensec: st.st_ctime_nsec as u32,
            mode: st.st_mode,
            nlink: st.st_nlink as u32,
            uid: self.config.ids.uid_to_guest(st.st_uid),
            gid: self.config.ids.gid_to_guest(st.st_gid),
            rdev: st.st_rdev as u32,
            blksize: st.st_blksize as u32,
        }
    }

    fn entry_out(&self, nodeid: u64, st: &rustix::fs::Stat) -> EntryOut {
        EntryOut {
            nodeid,
            generation: 0,
            entry_valid: Validity::from(self.config.cache.entry_timeout),
            attr_valid: Validity::from(self.config.cache.attr_timeout),
            attr: self.to_attr(st),
        }
    }

    /// Gives a file the guest just created to the mapped host owner (no-op unless the server runs as another user).
    fn adopt(&self, fd: impl AsFd) -> Result<(), Errno> {
        if !self.chown_new {
            return Ok(());
        }
        let uid = rustix::fs::Uid::from_raw(self.config.ids.host_uid);
        let gid = rustix::fs::Gid::from_raw(self.config.ids.host_gid);
        rustix::fs::chownat(
            fd,
            c"",
            Some(uid),
            Some(gid),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
    }
}

/// Raises the soft descriptor limit: to the kernel's ceiling when we may raise the hard limit, else to the hard limit.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok());
    if let Some(ceiling) = ceiling
        && current.maximum.is_some_and(|max| max < ceiling)
        && setrlimit(
            Resource::Nofile,
            Rlimit {
                current: Some(ceiling),
                maximum: Some(ceiling),
            },
        )
        .is_ok()
    {
        return;
    }
    if current.current != current.maximum {
        let _ = setrlimit(
            Resource::Nofile,
            Rlimit {
                current: current.maximum,
                maximum: current.maximum,
            },
        );
    }
}

fn open_root(path: &Path) -> Result<std::os::fd::OwnedFd, ServerError> {
    let fd =
        rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, Mode::empty()).map_err(|e| {
            ServerError::OpenRoot {
                path: path.to_owned(),
                source: e.into(),
            }
        })?;
    let st = crate::confine::stat_fd(&fd).map_err(|e| ServerError::OpenRoot {
        path: path.to_owned(),
        source: e.into(),
    })?;
    if !crate::confine::is_dir(st.st_mode) {
        return Err(ServerError::NotADirectory {
            path: path.to_owned(),
        });
    }
    Ok(fd)
}
