//! The directory layout: which files exist, what their names mean, and whether their writer is alive.
//!
//! Each writer (one [`crate::AuditLog::open`], typically one per process) owns a *stream*: a random 64-bit id and a
//! sequence of files `audit-<start>-<stream>-<fileseq>.jsonl`, where `<start>` is the UTC time the file was opened in
//! the compact form `YYYYMMDDTHHMMSS.ffffffZ`. Names therefore sort by time. Only the owning writer appends to a
//! file, so lines of different processes never interleave. The writer holds an exclusive `flock` on its active
//! file for as long as it writes it; a file is *sealed* (complete, mode 0444) when it is rotated, when the writer
//! closes, or — for a writer that died — when the next writer opens the directory and finds the lock free.

use std::fs::{self, File, Permissions};
use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::time::Timestamp;

/// One log file, as named in the directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogFile {
    /// Full path.
    pub path: PathBuf,
    /// When the file was opened (from its name).
    pub start: Timestamp,
    /// The writer stream it belongs to.
    pub stream: u64,
    /// Its position in the stream (0 for the first file).
    pub file_seq: u32,
    /// Whether the file is sealed (read-only).
    pub sealed: bool,
}

impl LogFile {
    /// The stream id as written in file names (16 hex digits).
    pub fn stream_name(&self) -> String {
        format!("{:016x}", self.stream)
    }
}

/// The file name for a stream's file number `file_seq` opened at `start`.
pub(crate) fn file_name(start: Timestamp, stream: u64, file_seq: u32) -> String {
    format!(
        "audit-{}-{stream:016x}-{file_seq:06}.jsonl",
        start.to_compact()
    )
}

/// Parses a name written by [`file_name`]; `None` for anything else.
pub(crate) fn parse_name(name: &str) -> Option<(Timestamp, u64, u32)> {
    let rest = name.strip_prefix("audit-")?.strip_suffix(".jsonl")?;
    let mut parts = rest.split('-');
    let start = Timestamp::parse_compact(parts.next()?)?;
    let stream = parts.next().filter(|s| s.len() == 16)?;
    let stream = u64::from_str_radix(stream, 16).ok()?;
    let seq = parts.next().filter(|s| s.len() >= 6)?;
    let seq = seq.parse::<u32>().ok()?;
    if parts.next().is_some() {
        return None;
    }
    Some((start, stream, seq))
}

/// Every log file in `dir`, sorted by name (time, then stream, then file number).
pub fn list(dir: &Path) -> io::Result<Vec<LogFile>> {
    let mut files = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some((start, stream, file_seq)) = name.to_str().and_then(parse_name) else {
            continue;
        };
        let meta = match entry.metadata() {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        if !meta.is_file() {
            continue;
        }
        files.push(LogFile {
            path: entry.path(),
            start,
            stream,
            file_seq,
            sealed: meta.permissions().mode() & 0o222 == 0,
        });
    }
    files.sort_by(|a, b| a.path.file_name().cmp(&b.path.file_name()));
    Ok(files)
}

/// Whether some process holds the writer lock on `path` (i.e. a live writer is appending to it).
pub(crate) fn writer_alive(path: &Path) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    match file.try_lock() {
        Ok(()) => false,
        Err(fs::TryLockError::WouldBlock) => true,
        Err(fs::TryLockError::Error(_)) => false,
    }
}

/// Makes a file complete on disk and read-only.
pub(crate) fn seal(path: &Path) -> io::Result<()> {
    let file = File::open(path)?;
    file.sync_all()?;
    fs::set_permissions(path, Permissions::from_mode(0o444))
}

/// Seals the unsealed files of writers that are gone (crashed or killed); their content is left exactly as it is.
pub(crate) fn seal_orphans(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut sealed = Vec::new();
    for f in list(dir)? {
        if f.sealed {
            continue;
        }
        let file = File::open(&f.path)?;
        if file.try_lock().is_ok() {
            seal(&f.path)?;
            sealed.push(f.path);
        }
    }
    Ok(sealed)
}

/// Makes `dir`'s entries durable (after creating or renaming a file in it).
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_sort_by_time() {
        let t1 = Timestamp::parse("2026-11-23T12:00:00.000001Z").unwrap();
        let t2 = Timestamp::parse("2026-11-23T12:00:00.000002Z").unwrap();
        let a = file_name(t1, u64::MAX, 999_999);
        let b = file_name(t2, 0, 0);
        assert!(a < b);
        assert_eq!(parse_name(&a), Some((t1, u64::MAX, 999_999)));
        assert_eq!(parse_name("audit-x.jsonl"), None);
        assert_eq!(parse_name(&a.replace(".jsonl", ".tmp")), None);
        assert_eq!(parse_name(&format!(".{a}")), None);
    }
}
