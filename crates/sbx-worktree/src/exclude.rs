//! Keeping `.sbx/` out of `git status` through `.git/info/exclude`, never the user's `.gitignore`.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use crate::error::{CreateError, GitError, IoError};

/// The line added to `info/exclude`; anchored so only the top-level `.sbx` directory is excluded.
const EXCLUDE_LINE: &str = "/.sbx/";

/// Add `/.sbx/` to `<common_dir>/info/exclude` unless present. Takes git's `exclude.lock` for the update, so
/// concurrent sbx processes (and git) never lose each other's lines.
pub(crate) fn ensure_sbx_excluded(common_dir: &Path) -> Result<(), CreateError> {
    let path = common_dir.join("info").join("exclude");
    if has_line(&path)? {
        return Ok(());
    }
    let info = common_dir.join("info");
    std::fs::create_dir_all(&info).map_err(|e| IoError::new("creating", &info, e))?;
    let mut lock = gix::lock::File::acquire_to_update_resource(
        &path,
        gix::lock::acquire::Fail::AfterDurationWithBackoff(Duration::from_secs(5)),
        None,
        0,
    )
    .map_err(|e| GitError::new(format!("locking {}", path.display()), e))?;
    // Re-read under the lock: another process may have added the line meanwhile.
    let current = read(&path)?;
    if contains_line(&current) {
        return Ok(());
    }
    let mut updated = current;
    if !updated.is_empty() && !updated.ends_with(b"\n") {
        updated.push(b'\n');
    }
    updated.extend_from_slice(b"# sandbox worktrees and clones of sbx\n");
    updated.extend_from_slice(EXCLUDE_LINE.as_bytes());
    updated.push(b'\n');
    lock.write_all(&updated)
        .map_err(|e| IoError::new("writing", &path, e))?;
    lock.commit()
        .map_err(|e| GitError::new(format!("committing {}", path.display()), e.error))?;
    Ok(())
}

fn read(path: &Path) -> Result<Vec<u8>, IoError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(bytes),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(IoError::new("reading", path, e)),
    }
}

fn has_line(path: &Path) -> Result<bool, IoError> {
    Ok(contains_line(&read(path)?))
}

fn contains_line(bytes: &[u8]) -> bool {
    bytes
        .split(|&b| b == b'\n')
        .any(|line| line.trim_ascii() == EXCLUDE_LINE.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adds_once_and_keeps_existing_lines() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("info")).unwrap();
        std::fs::write(dir.path().join("info/exclude"), "*.log").unwrap();
        ensure_sbx_excluded(dir.path()).unwrap();
        ensure_sbx_excluded(dir.path()).unwrap();
        let text = std::fs::read_to_string(dir.path().join("info/exclude")).unwrap();
        assert!(text.starts_with("*.log\n"), "{text}");
        assert_eq!(text.matches(EXCLUDE_LINE).count(), 1, "{text}");
    }
}
