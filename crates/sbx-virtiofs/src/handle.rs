//! Open file and directory handles (`fh` values handed to the guest).

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use rustix::io::Errno;

use crate::inode::Inode;

/// What a handle holds.
#[derive(Debug)]
pub(crate) enum HandleKind {
    /// A regular file opened for I/O (positional reads and writes only, so it is shared without a lock). Shared with
    /// the inode while open (see `Inode::remember_open`).
    File(Arc<OwnedFd>),
    /// A directory; reading entries moves its offset, so it is locked per READDIR.
    Dir(Mutex<OwnedFd>),
}

/// One open handle.
#[derive(Debug)]
pub(crate) struct Handle {
    pub(crate) inode: Arc<Inode>,
    pub(crate) kind: HandleKind,
}

impl Handle {
    pub(crate) fn file(&self) -> Result<&OwnedFd, Errno> {
        match &self.kind {
            HandleKind::File(fd) => Ok(fd),
            HandleKind::Dir(_) => Err(Errno::ISDIR),
        }
    }

    pub(crate) fn dir(&self) -> Result<&Mutex<OwnedFd>, Errno> {
        match &self.kind {
            HandleKind::Dir(fd) => Ok(fd),
            HandleKind::File(_) => Err(Errno::NOTDIR),
        }
    }
}

/// All open handles.
#[derive(Debug, Default)]
pub(crate) struct HandleTable {
    map: RwLock<HashMap<u64, Arc<Handle>>>,
    next: AtomicU64,
}

impl HandleTable {
    pub(crate) fn insert(&self, handle: Handle) -> Result<u64, Errno> {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.map
            .write()
            .map_err(|_| Errno::IO)?
            .insert(fh, Arc::new(handle));
        Ok(fh)
    }

    pub(crate) fn get(&self, fh: u64) -> Result<Arc<Handle>, Errno> {
        self.map
            .read()
            .map_err(|_| Errno::IO)?
            .get(&fh)
            .cloned()
            .ok_or(Errno::BADF)
    }

    pub(crate) fn remove(&self, fh: u64) -> Option<Arc<Handle>> {
        self.map.write().ok()?.remove(&fh)
    }

    pub(crate) fn len(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}
