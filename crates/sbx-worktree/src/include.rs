//! `.worktreeinclude`: gitignored files (e.g. `.env`, generated config) that a new worktree should get copies of.
//!
//! The file sits at the root of the main worktree and uses `.gitignore` syntax (`#` comments, `!` negation, last
//! match wins). A file is copied only if it is both matched by `.worktreeinclude` and ignored by git; tracked files
//! come from the checkout and other untracked files are never copied. Ignored directories are not descended into
//! unless a pattern names something inside them by path (e.g. `config/local/*.toml`) or matches the directory
//! itself, which keeps large ignored trees like `target/` or `node_modules/` from being walked.

use std::path::Path;

use gix::bstr::{BStr, BString, ByteSlice, ByteVec};
use gix::glob::Pattern;

use crate::error::{CreateError, GitError, IoError};

/// The file listing what to copy.
pub const WORKTREE_INCLUDE: &str = ".worktreeinclude";

/// Copy the included, ignored files from the host's main worktree into `dest`. Returns the copied paths.
pub(crate) fn copy_included(
    repo: &gix::Repository,
    src_root: &Path,
    dest: &Path,
) -> Result<Vec<String>, CreateError> {
    let file = src_root.join(WORKTREE_INCLUDE);
    let text = match std::fs::read(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(IoError::new("reading", &file, e).into()),
    };
    let patterns = WorktreeInclude::parse(&text);
    if patterns.is_empty() {
        return Ok(Vec::new());
    }
    let index = repo
        .index_or_empty()
        .map_err(|e| GitError::new("reading the index of the host repository", e))?;
    let excludes = repo
        .excludes(
            &index,
            None,
            gix::worktree::stack::state::ignore::Source::WorktreeThenIdMappingIfNotSkipped,
        )
        .map_err(|e| GitError::new("reading the ignore rules of the host repository", e))?;
    let mut walk = Walk {
        patterns,
        index: &index,
        excludes,
        src_root,
        dest,
        copied: Vec::new(),
    };
    walk.dir(BString::default())?;
    Ok(walk.copied)
}

/// The parsed patterns of a `.worktreeinclude` file.
///
/// ```
/// use sbx_worktree::WorktreeInclude;
///
/// let include = WorktreeInclude::parse(b"# local config\n.env*\n!.env.production\nconfig/local/*.toml\n");
/// assert!(include.includes(b".env.local", false));
/// assert!(!include.includes(b".env.production", false));
/// assert!(include.includes(b"config/local/db.toml", false));
/// assert!(include.reaches_inside(b"config"), "so the ignored `config/` directory is walked");
/// assert!(!include.reaches_inside(b"target"));
/// ```
#[derive(Debug, Clone, Default)]
pub struct WorktreeInclude {
    patterns: Vec<Pattern>,
}

impl WorktreeInclude {
    /// Parse `.gitignore`-syntax text: one pattern a line, `#` comments, `!` negation, trailing spaces and `\r`
    /// ignored. Lines that are not valid patterns are skipped, never an error: the file is the user's.
    pub fn parse(text: &[u8]) -> Self {
        let patterns = text
            .lines()
            .map(|line| line.trim_end_with(|c| c == '\r' || c == ' '))
            .filter(|line| !line.is_empty() && !line.starts_with(b"#"))
            .filter_map(Pattern::from_bytes)
            .collect();
        Self { patterns }
    }

    /// How many patterns the file has.
    pub fn len(&self) -> usize {
        self.patterns.len()
    }

    /// Whether the file has no patterns.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether the repository-relative path `rel` (`/`-separated) is included. Gitignore semantics: the last
    /// matching pattern decides, `!` patterns un-include.
    pub fn includes(&self, rel: &[u8], is_dir: bool) -> bool {
        let rel = rel.as_bstr();
        let basename_start = rel.rfind_byte(b'/').map(|pos| pos + 1);
        self.patterns
            .iter()
            .rev()
            .find(|p| {
                p.matches_repo_relative_path(
                    rel,
                    basename_start,
                    Some(is_dir),
                    gix::glob::pattern::Case::Sensitive,
                    gix::glob::wildmatch::Mode::NO_MATCH_SLASH_LITERAL,
                )
            })
            .is_some_and(|p| !p.is_negative())
    }

    /// Whether a path-anchored pattern could match below the directory `rel` (its literal prefix starts with
    /// `rel/`), so an ignored directory has to be walked into.
    pub fn reaches_inside(&self, rel: &[u8]) -> bool {
        let mut prefix = BString::from(rel);
        prefix.push(b'/');
        let anchored = |p: &&Pattern| !p.is_negative() && p.text.contains(&b'/');
        self.patterns.iter().filter(anchored).any(|p| {
            let text = p.text.as_bstr();
            let literal = &text[..p.first_wildcard_pos.unwrap_or(text.len()).min(text.len())];
            let literal = literal.strip_prefix(b"/").unwrap_or(literal);
            literal.starts_with(&prefix)
                || (p.first_wildcard_pos.is_some() && prefix.starts_with(literal))
        })
    }
}

struct Walk<'a> {
    patterns: WorktreeInclude,
    index: &'a gix::index::State,
    excludes: gix::AttributeStack<'a>,
    src_root: &'a Path,
    dest: &'a Path,
    copied: Vec<String>,
}

impl Walk<'_> {
    fn dir(&mut self, rel_dir: BString) -> Result<(), CreateError> {
        let abs = self.src_root.join(rel_dir.to_path_lossy());
        let entries = std::fs::read_dir(&abs).map_err(|e| IoError::new("reading", &abs, e))?;
        let mut names: Vec<_> = entries
            .filter_map(Result::ok)
            .map(|e| e.file_name())
            .collect();
        names.sort();
        for name in names {
            let Some(name) = name.to_str() else { continue };
            if name == ".git" || (rel_dir.is_empty() && name == ".sbx") {
                continue;
            }
            let mut rel = rel_dir.clone();
            if !rel.is_empty() {
                rel.push(b'/');
            }
            rel.push_str(name);
            let abs_entry = self.src_root.join(rel.to_path_lossy());
            let Ok(meta) = std::fs::symlink_metadata(&abs_entry) else {
                continue;
            };
            if meta.is_dir() {
                self.visit_dir(rel, &abs_entry)?;
            } else {
                self.visit_file(rel.as_bstr())?;
            }
        }
        Ok(())
    }

    fn visit_dir(&mut self, rel: BString, abs: &Path) -> Result<(), CreateError> {
        if abs.join(".git").exists() {
            return Ok(()); // a nested repository or submodule: not ours to copy from
        }
        if !self.is_ignored(rel.as_bstr(), true)? {
            return self.dir(rel);
        }
        if self.patterns.includes(rel.as_bstr(), true) {
            return self.copy_tree(rel);
        }
        if self.patterns.reaches_inside(rel.as_bytes()) {
            return self.dir(rel);
        }
        Ok(())
    }

    fn visit_file(&mut self, rel: &BStr) -> Result<(), CreateError> {
        let tracked = self.index.entry_by_path(rel).is_some();
        if !tracked && self.patterns.includes(rel, false) && self.is_ignored(rel, false)? {
            self.copy_entry(rel)?;
        }
        Ok(())
    }

    fn copy_tree(&mut self, rel: BString) -> Result<(), CreateError> {
        let abs = self.src_root.join(rel.to_path_lossy());
        let entries = std::fs::read_dir(&abs).map_err(|e| IoError::new("reading", &abs, e))?;
        for entry in entries.filter_map(Result::ok) {
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let mut child = rel.clone();
            child.push(b'/');
            child.push_str(&name);
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                self.copy_tree(child)?;
            } else if self.index.entry_by_path(child.as_bstr()).is_none() {
                self.copy_entry(child.as_bstr())?;
            }
        }
        Ok(())
    }

    fn copy_entry(&mut self, rel: &BStr) -> Result<(), CreateError> {
        let from = self.src_root.join(rel.to_path_lossy());
        let rel_path = rel.to_path_lossy();
        let to = self.dest.join(&rel_path);
        if std::fs::symlink_metadata(&to).is_ok() {
            return Ok(()); // never overwrite what the checkout put there
        }
        if !self.create_parents(&rel_path)? {
            // The checkout has a symlink where the host has a directory: copying would write outside.
            return Ok(());
        }
        let meta =
            std::fs::symlink_metadata(&from).map_err(|e| IoError::new("reading", &from, e))?;
        if meta.file_type().is_symlink() {
            let target =
                std::fs::read_link(&from).map_err(|e| IoError::new("reading", &from, e))?;
            std::os::unix::fs::symlink(target, &to)
                .map_err(|e| IoError::new("creating", &to, e))?;
        } else if meta.is_file() {
            std::fs::copy(&from, &to).map_err(|e| IoError::new("copying to", &to, e))?;
        } else {
            return Ok(()); // sockets, fifos, devices: not copied
        }
        self.copied.push(rel.to_string());
        Ok(())
    }

    /// Create the directories leading to `rel` in the destination, one at a time and never through a symlink;
    /// `false` if one of them is a symlink or a file.
    fn create_parents(&self, rel: &Path) -> Result<bool, CreateError> {
        let mut dir = self.dest.to_owned();
        let Some(parent) = rel.parent() else {
            return Ok(true);
        };
        for component in parent.components() {
            dir.push(component);
            match crate::create::create_real_dir(&dir) {
                Ok(()) => {}
                Err(CreateError::UnsafePath { .. }) => return Ok(false),
                Err(e) => return Err(e),
            }
        }
        Ok(!crate::untrusted::leaves_tree(self.dest, rel))
    }

    fn is_ignored(&mut self, rel: &BStr, is_dir: bool) -> Result<bool, CreateError> {
        let mode = if is_dir {
            gix::index::entry::Mode::DIR
        } else {
            gix::index::entry::Mode::FILE
        };
        let platform = self
            .excludes
            .at_entry(rel, Some(mode))
            .map_err(|e| GitError::new(format!("checking whether {rel} is ignored"), e))?;
        Ok(platform.is_excluded())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_comments_blank_lines_and_negation() {
        let include = WorktreeInclude::parse(b"# comment\n\n.env\n!secret.env\r\nconfig/*.toml\n");
        assert_eq!(include.len(), 3);
        assert!(include.includes(b".env", false));
        assert!(
            include.includes(b"sub/.env", false),
            "unanchored patterns match at any depth"
        );
        assert!(!include.includes(b"secret.env", false));
        assert!(include.includes(b"config/a.toml", false));
        assert!(
            !include.includes(b"config/sub/a.toml", false),
            "`*` does not cross `/`"
        );
        assert!(include.reaches_inside(b"config"));
    }
}
