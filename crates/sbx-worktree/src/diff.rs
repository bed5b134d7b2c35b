//! The diff of a sandbox against the commit it started from, including uncommitted and untracked changes.

use std::collections::BTreeMap;
use std::fmt;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use gix::bstr::{BString, ByteSlice};
use gix::diff::blob::unified_diff::{ConsumeHunk, ContextSize, DiffLineKind, HunkHeader};
use gix::diff::blob::{Algorithm, InternedInput, UnifiedDiff, diff_with_slider_heuristics};
use gix::objs::tree::EntryKind;
use serde::Serialize;

use crate::error::{GitError, IoError, ReviewError};
use crate::host::Host;
use crate::list::{parse_id, require_sandbox};
use crate::name::SandboxName;
use crate::record;
use crate::status::{changed_paths, tree_of};

/// What happened to a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// New file.
    Added,
    /// Content or mode changed.
    Modified,
    /// File removed.
    Deleted,
    /// Moved with identical content.
    Renamed,
}

/// One changed file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// The path now (for deletions: the removed path).
    pub path: String,
    /// The path before a rename.
    pub old_path: Option<String>,
    /// What happened.
    pub kind: ChangeKind,
    /// Lines added.
    pub insertions: u32,
    /// Lines removed.
    pub deletions: u32,
    /// Binary content: no line counts.
    pub binary: bool,
}

/// Counts over all changed files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiffSummary {
    /// Every changed file, sorted by path.
    pub files: Vec<FileChange>,
    /// Files added.
    pub added: usize,
    /// Files modified.
    pub modified: usize,
    /// Files deleted.
    pub deleted: usize,
    /// Files renamed.
    pub renamed: usize,
    /// Lines added in total.
    pub insertions: u64,
    /// Lines removed in total.
    pub deletions: u64,
}

/// A sandbox's changes against its base commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diff {
    /// The per-file summary (like `git diff --stat`).
    pub summary: DiffSummary,
    /// The full unified diff (like `git diff`).
    pub patch: String,
}

impl fmt::Display for DiffSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            let path = match &file.old_path {
                Some(old) => format!("{old} => {}", file.path),
                None => file.path.clone(),
            };
            let kind = match file.kind {
                ChangeKind::Added => "A",
                ChangeKind::Modified => "M",
                ChangeKind::Deleted => "D",
                ChangeKind::Renamed => "R",
            };
            if file.binary {
                writeln!(f, "{kind} {path} | binary")?;
            } else {
                writeln!(
                    f,
                    "{kind} {path} | +{} -{}",
                    file.insertions, file.deletions
                )?;
            }
        }
        writeln!(
            f,
            "{} file(s) changed: {} added, {} modified, {} deleted, {} renamed; {} insertion(s)(+), {} deletion(s)(-)",
            self.files.len(),
            self.added,
            self.modified,
            self.deleted,
            self.renamed,
            self.insertions,
            self.deletions
        )
    }
}

/// Worktree files larger than this are not read into memory; they show as binary changes.
const MAX_DIFF_FILE_BYTES: u64 = 64 << 20;

/// One side of a change: file mode and content.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Side {
    kind: EntryKind,
    id: gix::ObjectId,
    data: Vec<u8>,
}

impl Host {
    /// The sandbox's changes against the commit it started from: committed, staged, unstaged and untracked.
    pub fn diff(&self, sandbox: &str) -> Result<Diff, ReviewError> {
        let name = SandboxName::new(sandbox)?;
        let record = record::load(&self.common_dir, &self.main_workdir, &name)?;
        let repo = require_sandbox(&self.common_dir, &record)?;
        let base = parse_id(&record.base)?;
        let base_tree = tree_of(&repo, base)?;
        let mut sides = BTreeMap::new();
        for path in changed_paths(&repo, base_tree)? {
            let old = base_side(&repo, base_tree, &path)?;
            let new = worktree_side(&repo, &record.path, &path)?;
            if old != new && !is_gitlink(&old) && !is_gitlink(&new) {
                sides.insert(path, (old, new));
            }
        }
        Ok(render(pair_renames(sides)))
    }
}

fn is_gitlink(side: &Option<Side>) -> bool {
    side.as_ref().is_some_and(|s| s.kind == EntryKind::Commit)
}

fn base_side(
    repo: &gix::Repository,
    tree: gix::ObjectId,
    path: &BString,
) -> Result<Option<Side>, GitError> {
    let action = || format!("reading {path} at the base commit");
    let tree = repo
        .find_tree(tree)
        .map_err(|e| GitError::new(action(), e))?;
    let Some(entry) = tree
        .lookup_entry_by_path(rel_path(path))
        .map_err(|e| GitError::new(action(), e))?
    else {
        return Ok(None);
    };
    let kind = entry.mode().kind();
    if kind == EntryKind::Tree {
        // A directory replaced by a file or symlink: its files are listed (as deleted) on their own.
        return Ok(None);
    }
    if kind == EntryKind::Commit {
        return Ok(Some(Side {
            kind,
            id: entry.object_id(),
            data: Vec::new(),
        }));
    }
    let data = repo
        .find_blob(entry.object_id())
        .map_err(|e| GitError::new(action(), e))?
        .data
        .clone();
    Ok(Some(Side {
        kind,
        id: entry.object_id(),
        data,
    }))
}

fn worktree_side(
    repo: &gix::Repository,
    root: &Path,
    path: &BString,
) -> Result<Option<Side>, IoError> {
    let rel = rel_path(path);
    if crate::untrusted::leaves_tree(root, rel) {
        // A parent directory was replaced by a symlink (or vanished): the file is not in the worktree, and
        // whatever the link leads to on the host is none of the diff's business.
        return Ok(None);
    }
    let abs = root.join(rel);
    let meta = match std::fs::symlink_metadata(&abs) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(IoError::new("reading", &abs, e)),
    };
    let (kind, data) = if meta.file_type().is_symlink() {
        let target = std::fs::read_link(&abs).map_err(|e| IoError::new("reading", &abs, e))?;
        (
            EntryKind::Link,
            target.into_os_string().into_encoded_bytes(),
        )
    } else if meta.is_dir() {
        // A directory where a file was, or a submodule checkout: its contents are listed separately.
        return Ok(Some(Side {
            kind: EntryKind::Commit,
            id: repo.object_hash().null(),
            data: Vec::new(),
        }));
    } else if !meta.is_file() {
        return Ok(None); // fifos, sockets, devices: git does not track them, and reading a fifo would block
    } else {
        let Some(data) = crate::untrusted::read_regular_file(&abs, MAX_DIFF_FILE_BYTES)
            .map_err(|e| IoError::new("reading", &abs, e))?
        else {
            return Ok(None); // swapped for something else since the check above
        };
        let executable = meta.permissions().mode() & 0o111 != 0;
        let kind = if executable {
            EntryKind::BlobExecutable
        } else {
            EntryKind::Blob
        };
        (kind, data)
    };
    let id = gix::objs::compute_hash(repo.object_hash(), gix::objs::Kind::Blob, &data)
        .map_err(|e| IoError::new("hashing", &abs, std::io::Error::other(e)))?;
    Ok(Some(Side { kind, id, data }))
}

/// A repository-relative path as a file-system path (paths are bytes on Unix).
fn rel_path(path: &BString) -> &Path {
    Path::new(std::ffi::OsStr::from_bytes(path.as_slice()))
}

type Sides = BTreeMap<BString, (Option<Side>, Option<Side>)>;
/// Path, path before a rename, old side, new side.
type Change = (BString, Option<BString>, Option<Side>, Option<Side>);

/// A deleted and an added file with identical content and mode are a rename.
fn pair_renames(mut sides: Sides) -> Vec<Change> {
    let mut out = Vec::new();
    let deleted: Vec<BString> = sides
        .iter()
        .filter(|(_, (old, new))| old.is_some() && new.is_none())
        .map(|(path, _)| path.clone())
        .collect();
    for old_path in deleted {
        let Some(old_side) = sides.get(&old_path).and_then(|(old, _)| old.clone()) else {
            continue;
        };
        let target = sides
            .iter()
            .find(|(_, (old, new))| old.is_none() && new.as_ref() == Some(&old_side))
            .map(|(path, _)| path.clone());
        if let Some(new_path) = target {
            sides.remove(&old_path);
            if let Some((_, new)) = sides.remove(&new_path) {
                out.push((new_path, Some(old_path), Some(old_side), new));
            }
        }
    }
    out.extend(
        sides
            .into_iter()
            .map(|(path, (old, new))| (path, None, old, new)),
    );
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn render(changes: Vec<Change>) -> Diff {
    let mut summary = DiffSummary::default();
    let mut patch = String::new();
    for (path, old_path, old, new) in changes {
        let kind = match (&old_path, &old, &new) {
            (Some(_), _, _) => ChangeKind::Renamed,
            (None, None, _) => ChangeKind::Added,
            (None, _, None) => ChangeKind::Deleted,
            _ => ChangeKind::Modified,
        };
        let old_data = old.as_ref().map_or(&[][..], |s| &s.data[..]);
        let new_data = new.as_ref().map_or(&[][..], |s| &s.data[..]);
        let binary = is_binary(old_data) || is_binary(new_data);
        let (insertions, deletions, hunks) = if binary || old_data == new_data {
            (0, 0, String::new())
        } else {
            line_diff(old_data, new_data)
        };
        let old_name = old_path.as_ref().unwrap_or(&path);
        write_header(
            &mut patch,
            old_name,
            &path,
            kind,
            old.as_ref(),
            new.as_ref(),
        );
        if binary && old_data != new_data {
            patch.push_str(&format!(
                "Binary files {} and {} differ\n",
                side_name("a", old_name, &old),
                side_name("b", &path, &new)
            ));
        } else if !hunks.is_empty() {
            patch.push_str(&format!(
                "--- {}\n+++ {}\n",
                side_name("a", old_name, &old),
                side_name("b", &path, &new)
            ));
            patch.push_str(&hunks);
        }
        match kind {
            ChangeKind::Added => summary.added += 1,
            ChangeKind::Modified => summary.modified += 1,
            ChangeKind::Deleted => summary.deleted += 1,
            ChangeKind::Renamed => summary.renamed += 1,
        }
        summary.insertions += u64::from(insertions);
        summary.deletions += u64::from(deletions);
        summary.files.push(FileChange {
            path: path.to_string(),
            old_path: old_path.map(|p| p.to_string()),
            kind,
            insertions,
            deletions,
            binary,
        });
    }
    Diff { summary, patch }
}

fn side_name(prefix: &str, path: &BString, side: &Option<Side>) -> String {
    match side {
        Some(_) => format!("{prefix}/{path}"),
        None => "/dev/null".to_owned(),
    }
}

fn mode_of(side: &Side) -> &'static str {
    match side.kind {
        EntryKind::BlobExecutable => "100755",
        EntryKind::Link => "120000",
        EntryKind::Commit => "160000",
        EntryKind::Tree => "040000",
        EntryKind::Blob => "100644",
    }
}

fn write_header(
    out: &mut String,
    old_path: &BString,
    path: &BString,
    kind: ChangeKind,
    old: Option<&Side>,
    new: Option<&Side>,
) {
    out.push_str(&format!("diff --git a/{old_path} b/{path}\n"));
    match (kind, old, new) {
        (ChangeKind::Added, _, Some(new)) => {
            out.push_str(&format!("new file mode {}\n", mode_of(new)))
        }
        (ChangeKind::Deleted, Some(old), _) => {
            out.push_str(&format!("deleted file mode {}\n", mode_of(old)))
        }
        (ChangeKind::Renamed, _, _) => {
            out.push_str(&format!(
                "similarity index 100%\nrename from {old_path}\nrename to {path}\n"
            ));
        }
        (_, Some(old), Some(new)) if old.kind != new.kind => {
            out.push_str(&format!(
                "old mode {}\nnew mode {}\n",
                mode_of(old),
                mode_of(new)
            ));
        }
        _ => {}
    }
}

/// Like git: a NUL byte in the first 8000 bytes means binary.
fn is_binary(data: &[u8]) -> bool {
    data[..data.len().min(8000)].contains(&0)
}

/// Line counts and unified-diff hunks (3 lines of context) between two texts.
fn line_diff(old: &[u8], new: &[u8]) -> (u32, u32, String) {
    let input = InternedInput::new(old, new);
    let diff = diff_with_slider_heuristics(Algorithm::Histogram, &input);
    let (insertions, deletions) = (diff.count_additions(), diff.count_removals());
    let hunks = UnifiedDiff::new(
        &diff,
        &input,
        GitHunks::default(),
        ContextSize::symmetrical(3),
    )
    .consume()
    .unwrap_or_default();
    (insertions, deletions, hunks)
}

/// Renders hunks exactly as `git diff` does: `-0,0` for an empty side, `,1` omitted, and
/// `\ No newline at end of file` after a last line without one.
#[derive(Default)]
struct GitHunks(String);

impl ConsumeHunk for GitHunks {
    type Out = String;

    fn consume_hunk(
        &mut self,
        header: HunkHeader,
        lines: &[(DiffLineKind, &[u8])],
    ) -> std::io::Result<()> {
        let range = |start: u32, len: u32| match len {
            0 => format!("{},0", start.saturating_sub(1)),
            1 => start.to_string(),
            _ => format!("{start},{len}"),
        };
        let out = &mut self.0;
        out.push_str(&format!(
            "@@ -{} +{} @@\n",
            range(header.before_hunk_start, header.before_hunk_len),
            range(header.after_hunk_start, header.after_hunk_len)
        ));
        for (kind, line) in lines {
            out.push(match kind {
                DiffLineKind::Context => ' ',
                DiffLineKind::Add => '+',
                DiffLineKind::Remove => '-',
            });
            out.push_str(&line.to_str_lossy());
            if !line.ends_with(b"\n") {
                out.push_str("\n\\ No newline at end of file\n");
            }
        }
        Ok(())
    }

    fn finish(self) -> String {
        self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_diff_counts_and_renders_hunks() {
        let (ins, del, hunks) = line_diff(b"a\nb\nc\n", b"a\nB\nc\nd\n");
        assert_eq!((ins, del), (2, 1));
        assert!(hunks.starts_with("@@ -1,3 +1,4 @@\n"), "{hunks}");
        assert!(
            hunks.contains("-b\n+B\n") && hunks.contains("+d\n"),
            "{hunks}"
        );
    }

    #[test]
    fn hunk_headers_and_missing_newlines_look_like_git() {
        assert_eq!(line_diff(b"", b"a\n").2, "@@ -0,0 +1 @@\n+a\n");
        assert_eq!(line_diff(b"a\n", b"").2, "@@ -1 +0,0 @@\n-a\n");
        assert_eq!(
            line_diff(b"a", b"b").2,
            "@@ -1 +1 @@\n-a\n\\ No newline at end of file\n+b\n\\ No newline at end of file\n"
        );
    }

    #[test]
    fn nul_byte_means_binary() {
        assert!(is_binary(b"\x89PNG\0"));
        assert!(!is_binary(b"plain text"));
    }
}
