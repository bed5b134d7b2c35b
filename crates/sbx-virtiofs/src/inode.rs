//! The inode table: node ids handed to the guest, keyed by the host's `(st_dev, st_ino)`.
//!
//! Hard links and repeated lookups share one node id; entries are counted by the kernel's lookup references
//! (`nlookup`): LOOKUP/CREATE/MKDIR/... add one, FORGET subtracts. Node ids are never reused, so the generation is
//! always 0. Directories keep an `O_PATH` descriptor (every name is resolved beneath one); other files keep only the
//! `(parent, name)` pairs under which they were last seen (several for hard links) and are opened through one of those
//! names for each operation — confined, symlinks refused, identity re-checked — because an `O_PATH` descriptor cannot
//! be upgraded to a readable one without `/proc/self/fd`, and because holding one per file would exhaust the
//! descriptor limit on large trees. While the guest holds a file open, its handle's descriptor stands in for the name.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use rustix::fs::{AtFlags, Mode, OFlags};
use rustix::io::Errno;

use crate::abi::ROOT_ID;
use crate::confine;

/// How many names per inode are remembered for reopening (hard links beyond this fall back to the others).
const MAX_LOCATIONS: usize = 8;

/// A name of a file: its parent directory and the name in it.
pub(crate) type Location = (Arc<Inode>, CString);

/// A descriptor for one operation on an inode: borrowed when held, opened for the occasion otherwise.
#[derive(Debug)]
pub(crate) enum PathFd<'a> {
    Held(BorrowedFd<'a>),
    Opened(OwnedFd),
    /// The descriptor of a handle the guest has open on this very file.
    Open(Arc<OwnedFd>),
}

impl AsFd for PathFd<'_> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        match self {
            PathFd::Held(fd) => *fd,
            PathFd::Opened(fd) => fd.as_fd(),
            PathFd::Open(fd) => fd.as_fd(),
        }
    }
}

/// Host identity of a file.
pub(crate) type InodeKey = (u64, u64);

/// One file the guest holds a node id for.
#[derive(Debug)]
pub(crate) struct Inode {
    pub(crate) nodeid: u64,
    /// `O_PATH` descriptor held for directories only: they are the parents every name is resolved beneath. Other
    /// files are reached through their names (see [`Inode::path_fd`]), so a guest holding 100,000 files costs
    /// descriptors only for their directories.
    held: Option<OwnedFd>,
    pub(crate) key: InodeKey,
    /// File type bits (`S_IFMT`) at lookup time; the type of an inode never changes.
    pub(crate) file_type: u32,
    /// Names the file was last seen under, most recent first (empty only for the root).
    locations: Mutex<Vec<Location>>,
    /// The file's version when the guest last opened it: pages the guest kernel cached since then are still valid
    /// while the version is unchanged (see [`Inode::page_cache_still_valid`]).
    cached_version: Mutex<Option<FileVersion>>,
    /// The descriptor of the most recently opened handle on this file while it is open: a descriptor of this very
    /// inode, so metadata operations (SETATTR, xattrs, GETATTR) use it instead of reopening a name. `tar` and
    /// compilers set times, owner and mode on files they still hold open; each saves an `openat2` + `fstatat` +
    /// `close`.
    open_file: Mutex<Weak<OwnedFd>>,
    /// The kernel's lookup references. Incremented under the table's *read* lock (a repeated lookup of a known file,
    /// the common case of `git status` and builds, must not serialise the workers), decremented and found zero only
    /// under its write lock, so a reader never sees a node that is being removed.
    nlookup: AtomicU64,
}

/// What changes whenever a file's contents change, on whichever side: size, mtime and ctime (ctime cannot be set by
/// `utimensat`, so a host writer restoring mtime still changes the version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileVersion {
    size: i64,
    mtime: (i64, u64),
    ctime: (i64, u64),
}

impl FileVersion {
    pub(crate) fn of(st: &rustix::fs::Stat) -> Self {
        Self {
            size: st.st_size,
            mtime: (st.st_mtime, st.st_mtime_nsec),
            ctime: (st.st_ctime, st.st_ctime_nsec),
        }
    }
}

impl Inode {
    pub(crate) fn is_dir(&self) -> bool {
        self.file_type == libc::S_IFDIR
    }

    /// Whether the guest kernel may keep the pages it cached for this file at an open that finds it at `version`
    /// (`FOPEN_KEEP_CACHE`): only when the file is at the same version as at the previous open. Anything else — a
    /// host edit, a write by the guest itself, a first open — makes the guest drop its pages, and the new version is
    /// remembered for the next open.
    pub(crate) fn page_cache_still_valid(&self, version: FileVersion) -> bool {
        match self.cached_version.lock() {
            Ok(mut last) => last.replace(version) == Some(version),
            Err(_) => false,
        }
    }

    /// Remembers that the file is reachable as `name` in `parent` (most recent first, bounded).
    pub(crate) fn add_location(&self, parent: &Arc<Inode>, name: &CStr) {
        if let Ok(mut locs) = self.locations.lock() {
            // A repeated lookup under the most recent name (the common case) changes nothing: no allocation.
            if locs
                .first()
                .is_some_and(|(p, n)| p.nodeid == parent.nodeid && n.as_c_str() == name)
            {
                return;
            }
            locs.retain(|(p, n)| !(p.nodeid == parent.nodeid && n.as_c_str() == name));
            locs.insert(0, (Arc::clone(parent), name.to_owned()));
            locs.truncate(MAX_LOCATIONS);
        }
    }

    /// Forgets that the file is reachable as `name` in `parent` (it was unlinked or renamed away).
    pub(crate) fn remove_location(&self, parent: &Inode, name: &CStr) {
        if let Ok(mut locs) = self.locations.lock() {
            locs.retain(|(p, n)| !(p.nodeid == parent.nodeid && n.as_c_str() == name));
        }
    }

    /// Records `fd`, a descriptor just opened on this very file for a guest handle (see [`Inode::path_fd`]).
    pub(crate) fn remember_open(&self, fd: &Arc<OwnedFd>) {
        if let Ok(mut open) = self.open_file.lock() {
            *open = Arc::downgrade(fd);
        }
    }

    /// The descriptor of a handle still open on this file, if any.
    fn open_fd(&self) -> Option<Arc<OwnedFd>> {
        self.open_file.lock().ok()?.upgrade()
    }

    /// A descriptor of this very inode that xattr calls and `fchmod` accept (they refuse `O_PATH`): a handle's while
    /// the guest holds one open (only file handles are remembered), else the inode reopened read-only.
    pub(crate) fn io_fd(&self) -> Result<PathFd<'_>, Errno> {
        match self.open_fd() {
            Some(fd) => Ok(PathFd::Open(fd)),
            None => self
                .reopen(OFlags::RDONLY | OFlags::NONBLOCK)
                .map(PathFd::Opened),
        }
    }

    /// The held descriptor of a directory, for resolving names beneath it; `ENOTDIR` for anything else.
    pub(crate) fn dir_fd(&self) -> Result<BorrowedFd<'_>, Errno> {
        self.held.as_ref().map(AsFd::as_fd).ok_or(Errno::NOTDIR)
    }

    /// A descriptor of this very inode (never of whatever its name points to now): the held one for directories, a
    /// guest handle's while one is open, else an `O_PATH` one opened through a known name and checked to be the same
    /// `(dev, ino)`.
    pub(crate) fn path_fd(&self) -> Result<PathFd<'_>, Errno> {
        if let Some(fd) = &self.held {
            return Ok(PathFd::Held(fd.as_fd()));
        }
        match self.open_fd() {
            Some(fd) => Ok(PathFd::Open(fd)),
            None => self.open_by_name(OFlags::PATH).map(PathFd::Opened),
        }
    }

    /// Opens the file for I/O with `flags`. Directories reopen `.` of themselves; other files reopen their last known
    /// name beneath their parent and must still be the same `(dev, ino)`, else `ESTALE`.
    pub(crate) fn reopen(&self, flags: OFlags) -> Result<OwnedFd, Errno> {
        match &self.held {
            Some(fd) => confine::reopen_dir(fd, flags),
            None => self.open_by_name(flags),
        }
    }

    /// [`Inode::reopen`], also returning the opened file's attributes (taken from the check of its identity, so an
    /// open costs no separate `fstat`).
    pub(crate) fn reopen_with_stat(
        &self,
        flags: OFlags,
    ) -> Result<(OwnedFd, rustix::fs::Stat), Errno> {
        match &self.held {
            Some(fd) => {
                let fd = confine::reopen_dir(fd, flags)?;
                let st = rustix::fs::fstat(&fd)?;
                Ok((fd, st))
            }
            None => self.by_name(
                |dir, name| {
                    let fd = confine::open_beneath(dir, name, flags, Mode::empty())?;
                    let st = confine::stat_fd(&fd)?;
                    Ok((fd, st))
                },
                |(_, st)| Ok(*st),
            ),
        }
    }

    fn open_by_name(&self, flags: OFlags) -> Result<OwnedFd, Errno> {
        self.by_name(
            |dir, name| confine::open_beneath(dir, name, flags, Mode::empty()),
            |fd| confine::stat_fd(fd),
        )
    }

    /// The attributes of this very inode: `fstat` of the held descriptor for directories or of an open handle's; for
    /// other files one `fstatat` of a known name beneath its held parent (no symlink followed), accepted only if it is
    /// still the same `(dev, ino)` and file type. One system call, where opening the name first would take three.
    pub(crate) fn stat(&self) -> Result<rustix::fs::Stat, Errno> {
        if let Some(fd) = &self.held {
            return confine::stat_fd(fd);
        }
        match self.open_fd() {
            Some(fd) => rustix::fs::fstat(&*fd),
            None => self.by_name(
                |dir, name| rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW),
                |st| Ok(*st),
            ),
        }
    }

    /// Runs `op` on the names this file was last seen under, most recent first, until one yields this very file
    /// (`stat_of` its result has our `(dev, ino)` and our file type: a number the host recycled for a file of another
    /// type, e.g. a symlink replacing a deleted file, is another file). Names that are gone or now belong to another
    /// file (changed on the host) are forgotten on the way; `ESTALE` when none is left. The names are walked under
    /// their lock (no copy of the list per operation); `op` touches no other inode's names, so this cannot deadlock.
    fn by_name<T>(
        &self,
        op: impl Fn(BorrowedFd<'_>, &CStr) -> Result<T, Errno>,
        stat_of: impl Fn(&T) -> Result<rustix::fs::Stat, Errno>,
    ) -> Result<T, Errno> {
        let mut locs = self.locations.lock().map_err(|_| Errno::IO)?;
        let mut last_error = Errno::STALE;
        let mut i = 0;
        while let Some((parent, name)) = locs.get(i) {
            match op(parent.dir_fd()?, name) {
                Ok(found) => {
                    let st = stat_of(&found)?;
                    if (st.st_dev, st.st_ino) == self.key
                        && confine::file_type(st.st_mode) == self.file_type
                    {
                        return Ok(found);
                    }
                    locs.remove(i);
                }
                Err(e) if e == Errno::NOENT || e == Errno::LOOP || e == Errno::NOTDIR => {
                    locs.remove(i);
                }
                Err(e) => {
                    last_error = e;
                    i += 1;
                }
            }
        }
        Err(last_error)
    }

    /// The names this inode was last seen under, most recent first.
    pub(crate) fn locations(&self) -> Vec<Location> {
        self.locations.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

#[derive(Debug, Default)]
struct Tables {
    by_id: HashMap<u64, Arc<Inode>>,
    by_key: HashMap<InodeKey, u64>,
    next_id: u64,
}

/// All inodes the guest knows.
#[derive(Debug)]
pub(crate) struct InodeTable {
    tables: RwLock<Tables>,
}

impl InodeTable {
    /// A table holding only the root (which is never forgotten).
    pub(crate) fn new(root_fd: OwnedFd) -> Result<Self, Errno> {
        let st = confine::stat_fd(&root_fd)?;
        let key = (st.st_dev, st.st_ino);
        let root = Arc::new(Inode {
            nodeid: ROOT_ID,
            held: Some(root_fd),
            key,
            file_type: confine::file_type(st.st_mode),
            locations: Mutex::new(Vec::new()),
            cached_version: Mutex::new(None),
            open_file: Mutex::new(Weak::new()),
            nlookup: AtomicU64::new(1),
        });
        let mut t = Tables {
            next_id: ROOT_ID + 1,
            ..Tables::default()
        };
        t.by_id.insert(ROOT_ID, root);
        t.by_key.insert(key, ROOT_ID);
        Ok(Self {
            tables: RwLock::new(t),
        })
    }

    pub(crate) fn get(&self, nodeid: u64) -> Result<Arc<Inode>, Errno> {
        let t = self.tables.read().map_err(|_| Errno::IO)?;
        t.by_id.get(&nodeid).map(Arc::clone).ok_or(Errno::STALE)
    }

    /// The known inode of the file `st` describes, with one more lookup reference, if the guest holds it as the same
    /// file type (see `insert_lookup` for why the type matters). Takes only the read lock.
    pub(crate) fn lookup_known(
        &self,
        st: &rustix::fs::Stat,
        parent: &Arc<Inode>,
        name: &CStr,
    ) -> Option<Arc<Inode>> {
        let inode = {
            let t = self.tables.read().ok()?;
            let inode = t
                .by_key
                .get(&(st.st_dev, st.st_ino))
                .and_then(|id| t.by_id.get(id))?;
            if inode.file_type != confine::file_type(st.st_mode) {
                return None;
            }
            // Under the read lock no FORGET can drop the node (that takes the write lock), so counting up is safe.
            inode.nlookup.fetch_add(1, Ordering::Relaxed);
            Arc::clone(inode)
        };
        if inode.nodeid != ROOT_ID {
            inode.add_location(parent, name);
        }
        Some(inode)
    }

    /// Records one lookup reference to the file `st` describes (found as `name` in `parent`) and returns its inode.
    /// `fd` is the `O_PATH` descriptor of a directory (kept if the inode is new); `None` for other files.
    pub(crate) fn insert_lookup(
        &self,
        fd: Option<OwnedFd>,
        st: &rustix::fs::Stat,
        parent: &Arc<Inode>,
        name: &CStr,
    ) -> Result<Arc<Inode>, Errno> {
        let key = (st.st_dev, st.st_ino);
        let mut t = self.tables.write().map_err(|_| Errno::IO)?;
        // Only non-directories are kept by name, not by descriptor, so when the host deletes one its inode number
        // can come back as another file. A different file type means exactly that: the old node id must not be
        // reused (the kernel still holds it with the old type), so the number gets a fresh node below.
        if let Some(&id) = t.by_key.get(&key)
            && let Some(inode) = t.by_id.get(&id)
            && inode.file_type == confine::file_type(st.st_mode)
        {
            inode.nlookup.fetch_add(1, Ordering::Relaxed);
            let inode = Arc::clone(inode);
            drop(t);
            if inode.nodeid != ROOT_ID {
                inode.add_location(parent, name);
            }
            return Ok(inode);
        }
        let nodeid = t.next_id;
        t.next_id += 1;
        let held = if confine::is_dir(st.st_mode) {
            fd
        } else {
            None
        };
        let inode = Arc::new(Inode {
            nodeid,
            held,
            key,
            file_type: confine::file_type(st.st_mode),
            locations: Mutex::new(vec![(Arc::clone(parent), name.to_owned())]),
            cached_version: Mutex::new(None),
            open_file: Mutex::new(Weak::new()),
            nlookup: AtomicU64::new(1),
        });
        t.by_id.insert(nodeid, Arc::clone(&inode));
        t.by_key.insert(key, nodeid);
        Ok(inode)
    }

    /// Drops `nlookup` references; the entry (and its descriptor) goes when none are left. The root stays.
    pub(crate) fn forget(&self, nodeid: u64, nlookup: u64) {
        if nodeid == ROOT_ID {
            return;
        }
        let Ok(mut t) = self.tables.write() else {
            return;
        };
        let remove = match t.by_id.get(&nodeid) {
            Some(inode) => {
                // The write lock excludes every reader that could count up concurrently.
                let left = inode
                    .nlookup
                    .load(Ordering::Relaxed)
                    .saturating_sub(nlookup);
                inode.nlookup.store(left, Ordering::Relaxed);
                left == 0
            }
            None => false,
        };
        if remove && let Some(inode) = t.by_id.remove(&nodeid) {
            // The number may meanwhile belong to a newer node (see `insert_lookup`); leave that mapping alone.
            if t.by_key.get(&inode.key) == Some(&nodeid) {
                t.by_key.remove(&inode.key);
            }
        }
    }

    /// Number of live node ids (root included).
    pub(crate) fn len(&self) -> usize {
        self.tables.read().map(|t| t.by_id.len()).unwrap_or(0)
    }
}

/// Looks up `name` beneath `dir`: its attributes, plus an `O_PATH` descriptor when it is a directory (the only kind
/// of inode that keeps one). The name is one checked component and the final symlink is not followed, so nothing
/// outside `dir` can be reached.
pub(crate) fn open_child(
    dir: impl AsFd,
    name: &CStr,
) -> Result<(Option<OwnedFd>, rustix::fs::Stat), Errno> {
    let name = confine::check_name(name)?;
    let st = rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW)?;
    if !confine::is_dir(st.st_mode) {
        return Ok((None, st));
    }
    let fd = confine::open_beneath(&dir, name, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    // The descriptor's own attributes win if the name was swapped in between.
    let st = confine::stat_fd(&fd)?;
    Ok((confine::is_dir(st.st_mode).then_some(fd), st))
}

impl InodeTable {
    /// The known inode for host file `key`, if the guest holds one.
    pub(crate) fn by_key(&self, key: InodeKey) -> Option<Arc<Inode>> {
        let t = self.tables.read().ok()?;
        t.by_key
            .get(&key)
            .and_then(|id| t.by_id.get(id))
            .map(Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stat_of(dir: &std::path::Path, name: &str) -> rustix::fs::Stat {
        rustix::fs::stat(dir.join(name)).unwrap()
    }

    #[test]
    fn a_recycled_inode_number_of_another_type_gets_a_new_node() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("file"), b"x").unwrap();
        std::fs::create_dir(tmp.path().join("dir")).unwrap();
        let root_fd =
            rustix::fs::open(tmp.path(), OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
        let table = InodeTable::new(root_fd).unwrap();
        let root = table.get(ROOT_ID).unwrap();

        let file_st = stat_of(tmp.path(), "file");
        let old = table.insert_lookup(None, &file_st, &root, c"file").unwrap();
        // The host deleted the file and a new directory got its inode number.
        let mut dir_st = stat_of(tmp.path(), "dir");
        (dir_st.st_dev, dir_st.st_ino) = (file_st.st_dev, file_st.st_ino);
        let dir_fd = rustix::fs::open(
            tmp.path().join("dir"),
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .unwrap();
        let new = table
            .insert_lookup(Some(dir_fd), &dir_st, &root, c"dir")
            .unwrap();
        assert_ne!(
            old.nodeid, new.nodeid,
            "a directory must not inherit a file's node id"
        );
        assert!(new.is_dir());

        // Forgetting the old node leaves the number mapped to the new one.
        table.forget(old.nodeid, 1);
        assert_eq!(table.by_key(new.key).map(|i| i.nodeid), Some(new.nodeid));
        // The same type again is the same node (another lookup of the directory).
        let again = table.insert_lookup(None, &dir_st, &root, c"dir").unwrap();
        assert_eq!(again.nodeid, new.nodeid);
    }
}
