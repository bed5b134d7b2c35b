//! File-system primitives for stores: private directories, 0600 files, atomic replacement,
//! permission checks and the inter-process lock.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::error::StoreError;

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io {
        action,
        path,
        source,
    }
}

/// Creates `dir` (and parents) if missing; a directory we create is 0700.
pub(crate) fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    if dir.is_dir() {
        return Ok(());
    }
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir).map_err(io_err("create directory", dir))
}

/// Opens a new file for writing that only the owner can read (0600 on Unix).
fn create_private_file(path: &Path) -> io::Result<File> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

/// Replaces `path` with `bytes` atomically: a reader sees the old or the new content, never a
/// mix, and after a crash the file is one or the other. Temp file in the same directory,
/// fsync, rename over, fsync the directory so the rename itself is durable.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        unique_suffix()
    ));
    let result = write_then_rename(&tmp, path, bytes);
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_dir(dir)
}

fn write_then_rename(tmp: &Path, path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let mut file = create_private_file(tmp).map_err(io_err("create", tmp))?;
    file.write_all(bytes).map_err(io_err("write", tmp))?;
    file.sync_all().map_err(io_err("fsync", tmp))?;
    drop(file);
    fs::rename(tmp, path).map_err(io_err("rename into place", path))
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        let handle = File::open(dir).map_err(io_err("open directory", dir))?;
        handle.sync_all().map_err(io_err("fsync directory", dir))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

fn unique_suffix() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Refuses a file that group or others can read or write (Unix), naming the `chmod` fix.
pub(crate) fn check_private(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path).map_err(io_err("stat", path))?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(StoreError::InsecurePermissions {
                path: path.to_path_buf(),
                mode,
            });
        }
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
}

/// Reads a file after checking its permissions; `None` if it does not exist.
pub(crate) fn read_private(path: &Path) -> Result<Option<Vec<u8>>, StoreError> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("stat", path)(e)),
        Ok(_) => {}
    }
    check_private(path)?;
    fs::read(path).map(Some).map_err(io_err("read", path))
}

/// An exclusive lock on a lock file (flock on Unix, LockFileEx on Windows), held until drop.
/// Every read-modify-write of a store happens under it, so concurrent sbx processes never
/// lose each other's updates.
#[derive(Debug)]
pub(crate) struct LockGuard {
    file: File,
    path: PathBuf,
}

impl LockGuard {
    pub(crate) fn acquire(path: &Path) -> Result<Self, StoreError> {
        let mut options = OpenOptions::new();
        options.read(true).write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(path).map_err(io_err("open lock file", path))?;
        file.lock().map_err(io_err("lock", path))?;
        Ok(Self {
            file,
            path: path.to_path_buf(),
        })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Closing the descriptor releases the lock too; unlocking first makes it prompt.
        if self.file.unlock().is_err() {
            tracing::debug!(path = %self.path.display(), "unlocking store lock failed; closing releases it");
        }
    }
}
