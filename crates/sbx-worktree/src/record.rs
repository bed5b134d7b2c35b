//! The per-sandbox record: what `merge`, `diff` and `remove` need to know later (base commit, the branch the user
//! had checked out, where the worktree is). Stored as JSON in `<git common dir>/sbx/sandboxes/<sandbox>.json`.
//!
//! The record doubles as the claim on a sandbox name: it is created with `O_EXCL` before anything else, so two
//! processes creating the same sandbox cannot both proceed. Later updates are atomic (temp file, fsync, rename).

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{IoError, RecordError};
use crate::name::{BranchName, SandboxName};

/// How the sandbox gets its files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// A branch and a linked worktree of the host repository.
    Branch,
    /// A private clone, exposed to the host as remote `sandbox-<name>`.
    Clone,
}

/// Whether creation finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// A process is creating the sandbox (or died doing so).
    Creating,
    /// The sandbox is complete.
    Ready,
}

/// What is stored about one sandbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Record {
    /// Format version of this record.
    pub(crate) version: u32,
    /// The sandbox name.
    pub(crate) sandbox: String,
    /// Branch or clone mode.
    pub(crate) mode: Mode,
    /// Creation state.
    pub(crate) state: State,
    /// The sandbox's branch (short name), once created.
    pub(crate) branch: Option<String>,
    /// The commit the sandbox started from (hex).
    pub(crate) base: String,
    /// The branch the user had checked out at creation (full ref name), `None` for a detached HEAD.
    pub(crate) base_branch: Option<String>,
    /// The sandbox's working tree.
    pub(crate) path: PathBuf,
}

const RECORD_VERSION: u32 = 1;

impl Record {
    pub(crate) fn new(
        sandbox: &SandboxName,
        mode: Mode,
        base: String,
        base_branch: Option<String>,
        path: PathBuf,
    ) -> Self {
        Self {
            version: RECORD_VERSION,
            sandbox: sandbox.as_str().to_owned(),
            mode,
            state: State::Creating,
            branch: None,
            base,
            base_branch,
            path,
        }
    }
}

/// The directory holding all records of a repository.
pub(crate) fn records_dir(common_dir: &Path) -> PathBuf {
    common_dir.join("sbx").join("sandboxes")
}

fn record_path(common_dir: &Path, sandbox: &str) -> PathBuf {
    records_dir(common_dir).join(format!("{sandbox}.json"))
}

/// Create the record, failing with `Ok(false)` if one exists already.
pub(crate) fn claim(common_dir: &Path, record: &Record) -> Result<bool, IoError> {
    let dir = records_dir(common_dir);
    std::fs::create_dir_all(&dir).map_err(|e| IoError::new("creating", &dir, e))?;
    let path = record_path(common_dir, &record.sandbox);
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(IoError::new("creating", &path, e)),
    };
    let bytes = to_json(record);
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(|e| IoError::new("writing", &path, e))?;
    Ok(true)
}

/// Replace the record atomically.
pub(crate) fn store(common_dir: &Path, record: &Record) -> Result<(), IoError> {
    let path = record_path(common_dir, &record.sandbox);
    let tmp = path.with_extension(format!("json.tmp{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&to_json(record))?;
        file.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        if let Some(dir) = path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        IoError::new("writing", &path, e)
    })
}

/// Delete the record; a missing record is not an error.
pub(crate) fn delete(common_dir: &Path, sandbox: &str) -> Result<(), IoError> {
    let path = record_path(common_dir, sandbox);
    match std::fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(IoError::new("removing", &path, e)),
    }
}

/// Load the record of `sandbox`.
pub(crate) fn load(
    common_dir: &Path,
    repo: &Path,
    sandbox: &SandboxName,
) -> Result<Record, RecordError> {
    let path = record_path(common_dir, sandbox.as_str());
    match std::fs::read(&path) {
        Ok(bytes) => parse(&path, &bytes).and_then(|r| check_layout(&path, r, repo)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(RecordError::NotFound {
            sandbox: sandbox.as_str().to_owned(),
            repo: repo.to_owned(),
        }),
        Err(e) => Err(IoError::new("reading", &path, e).into()),
    }
}

/// Load every record, sorted by sandbox name. Unreadable records are returned as errors in place.
pub(crate) fn load_all(
    common_dir: &Path,
    repo: &Path,
) -> Result<Vec<Result<Record, RecordError>>, IoError> {
    let dir = records_dir(common_dir);
    let entries = match std::fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("reading", &dir, e)),
    };
    let mut paths = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| IoError::new("reading", &dir, e))?;
        let path = entry.path();
        if path.extension().is_some_and(|ext| ext == "json") {
            paths.push(path);
        }
    }
    paths.sort();
    Ok(paths
        .into_iter()
        .filter_map(|path| match std::fs::read(&path) {
            Ok(bytes) => Some(parse(&path, &bytes).and_then(|r| check_layout(&path, r, repo))),
            // Removed by a concurrent `remove` between listing and reading.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(Err(IoError::new("reading", &path, e).into())),
        })
        .collect())
}

fn parse(path: &Path, bytes: &[u8]) -> Result<Record, RecordError> {
    serde_json::from_slice(bytes).map_err(|source| RecordError::Corrupt {
        path: path.to_owned(),
        source,
    })
}

/// Records live in the shared git dir, which a sandbox may be able to write. Before the host acts on one, its names
/// and path must be exactly what `create` writes, so a forged record cannot aim `remove` (which deletes the path)
/// at anything outside `<repo>/.sbx/`, or `merge` at a ref outside `refs/heads/`.
fn check_layout(path: &Path, record: Record, repo: &Path) -> Result<Record, RecordError> {
    let tampered = |reason: String| RecordError::Tampered {
        path: path.to_owned(),
        reason,
    };
    let name = SandboxName::new(&record.sandbox).map_err(|e| tampered(e.to_string()))?;
    if path.file_stem() != Some(std::ffi::OsStr::new(name.as_str())) {
        return Err(tampered(format!(
            "it is for sandbox {:?}, not the one its file name says",
            record.sandbox
        )));
    }
    let branch = record
        .branch
        .as_deref()
        .map(BranchName::new)
        .transpose()
        .map_err(|e| tampered(e.to_string()))?;
    if let Some(target) = &record.base_branch {
        let short = target
            .strip_prefix("refs/heads/")
            .ok_or_else(|| tampered(format!("its base branch {target:?} is not a local branch")))?;
        BranchName::new(short).map_err(|e| tampered(e.to_string()))?;
    }
    let sbx = repo.join(".sbx");
    let expected = match (record.mode, &branch) {
        (Mode::Clone, _) => sbx.join(format!("{name}-clone")),
        (Mode::Branch, Some(branch)) => sbx.join(format!("{name}-worktrees")).join(branch.as_str()),
        // Still being created: no branch and no path yet.
        (Mode::Branch, None) => PathBuf::new(),
    };
    if record.path != expected {
        return Err(tampered(format!(
            "its path {} is not {}",
            record.path.display(),
            expected.display()
        )));
    }
    Ok(record)
}

fn to_json(record: &Record) -> Vec<u8> {
    // Serialising a struct of strings and paths cannot fail.
    let mut bytes = serde_json::to_vec_pretty(record).unwrap_or_default();
    bytes.push(b'\n');
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_is_exclusive_and_store_replaces() {
        let dir = tempfile::tempdir().unwrap();
        let name = SandboxName::new("a").unwrap();
        let mut record = Record::new(&name, Mode::Branch, "00".into(), None, PathBuf::new());
        assert!(claim(dir.path(), &record).unwrap());
        assert!(!claim(dir.path(), &record).unwrap());
        record.state = State::Ready;
        store(dir.path(), &record).unwrap();
        assert_eq!(load(dir.path(), dir.path(), &name).unwrap(), record);
        delete(dir.path(), "a").unwrap();
        assert!(matches!(
            load(dir.path(), dir.path(), &name),
            Err(RecordError::NotFound { .. })
        ));
    }

    #[test]
    fn forged_paths_and_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new("/repo");
        let name = SandboxName::new("c").unwrap();
        let good = |record: &mut Record| {
            record.branch = Some("sbx/c".into());
            record.path = repo.join(".sbx/c-worktrees/sbx/c");
        };
        let mut record = Record::new(&name, Mode::Branch, "00".into(), None, PathBuf::new());
        good(&mut record);
        assert!(claim(dir.path(), &record).unwrap());
        assert_eq!(load(dir.path(), repo, &name).unwrap(), record);
        let forgeries: [&dyn Fn(&mut Record); 5] = [
            &|r| r.path = "/home/user".into(),
            &|r| r.path = repo.join(".sbx/c-worktrees/sbx/../../../x"),
            &|r| r.branch = Some("../x".into()),
            &|r| r.base_branch = Some("refs/remotes/origin/main".into()),
            &|r| r.sandbox = "other".into(),
        ];
        for forge in forgeries {
            let mut forged = record.clone();
            forge(&mut forged);
            std::fs::write(record_path(dir.path(), "c"), to_json(&forged)).unwrap();
            let err = load(dir.path(), repo, &name).unwrap_err();
            assert!(
                matches!(err, RecordError::Tampered { .. }),
                "{forged:?}: {err}"
            );
            assert!(err.to_string().contains("c.json"), "{err}");
        }
    }

    #[test]
    fn corrupt_record_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let name = SandboxName::new("b").unwrap();
        std::fs::create_dir_all(records_dir(dir.path())).unwrap();
        std::fs::write(record_path(dir.path(), "b"), b"{not json").unwrap();
        let err = load(dir.path(), dir.path(), &name).unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("corrupt"), "{err}");
    }
}
