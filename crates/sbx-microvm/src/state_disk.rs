//! The per-sandbox state disk: a sparse ext4 image holding the upper layer of the root overlay. Created on the first
//! start, kept across stop/start, deleted with the sandbox.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::error::{MicroVmError, io};

fn mkfs() -> Option<PathBuf> {
    [
        "/usr/sbin/mkfs.ext4",
        "/sbin/mkfs.ext4",
        "/usr/bin/mkfs.ext4",
    ]
    .into_iter()
    .map(PathBuf::from)
    .find(|p| p.is_file())
}

/// Creates the state disk at `path` (`bytes` apparent size, sparse, ext4 labelled `sbx-state`) unless it exists.
/// Returns whether it was created. Creation is atomic: a crash leaves either no disk or a complete one.
pub fn ensure(path: &Path, bytes: u64) -> Result<bool, MicroVmError> {
    if path.is_file() {
        return Ok(false);
    }
    let mkfs = mkfs().ok_or_else(|| MicroVmError::StateDisk {
        path: path.to_path_buf(),
        detail: "mkfs.ext4 is missing; install it with `apt-get install e2fsprogs`".into(),
    })?;
    let tmp = path.with_extension(format!("ext4.tmp.{}", std::process::id()));
    let file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    // set_len makes a hole, not zeroes: the disk uses only what the guest writes.
    file.set_len(bytes).map_err(io("size", &tmp))?;
    drop(file);
    let out = Command::new(mkfs)
        .args([
            "-q",
            "-F",
            "-L",
            "sbx-state",
            "-E",
            "lazy_itable_init=1,lazy_journal_init=1,root_owner=0:0",
        ])
        .arg(&tmp)
        .output()
        .map_err(|e| MicroVmError::StateDisk {
            path: path.to_path_buf(),
            detail: e.to_string(),
        })?;
    if !out.status.success() {
        let _ = std::fs::remove_file(&tmp);
        return Err(MicroVmError::StateDisk {
            path: path.to_path_buf(),
            detail: format!(
                "mkfs.ext4 {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    std::fs::File::open(&tmp)
        .and_then(|f| f.sync_all())
        .map_err(io("sync", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io("rename into place", path))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn debugfs(image: &Path, write: bool, request: &str) -> String {
        let mut cmd = Command::new("debugfs");
        if write {
            cmd.arg("-w");
        }
        let out = cmd.args(["-R", request]).arg(image).output().unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    #[test]
    fn the_state_disk_is_sparse_and_survives_a_restart() {
        if mkfs().is_none() || Command::new("debugfs").arg("-V").output().is_err() {
            println!("skipped: mkfs.ext4/debugfs missing (apt-get install e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("state.ext4");
        assert!(ensure(&disk, 8 << 30).unwrap(), "created on first start");
        let meta = std::fs::metadata(&disk).unwrap();
        assert_eq!(meta.len(), 8 << 30);
        assert!(
            meta.blocks() * 512 < 256 << 20,
            "sparse: {} bytes allocated",
            meta.blocks() * 512
        );
        // What the sandbox wrote stays: a second start finds the disk and leaves it alone.
        debugfs(&disk, true, "mkdir upper");
        assert!(!ensure(&disk, 8 << 30).unwrap(), "kept on the next start");
        assert!(debugfs(&disk, false, "ls -l /").contains("upper"));
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(leftovers, ["state.ext4"]);
    }

    #[test]
    fn a_failed_format_leaves_no_disk() {
        if mkfs().is_none() {
            println!("skipped: mkfs.ext4 missing (apt-get install e2fsprogs)");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("state.ext4");
        // Too small for ext4: mkfs fails, and no half-made disk is left for the next start to trust.
        let err = ensure(&disk, 4096).unwrap_err().to_string();
        assert!(err.contains("mkfs.ext4"), "{err}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
