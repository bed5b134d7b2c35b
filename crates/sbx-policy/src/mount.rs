//! Mount paths: lexical normalisation, `[[mount]]` patterns and the built-in protected paths.

use std::path::{Component, Path};

use crate::glob::Wildcard;
use crate::path::{SegmentMatcher, match_segments};

/// Directories under the home directory that hold credentials: never mounted unless a `[[mount]]`
/// allow rule names them.
pub const PROTECTED_HOME_DIRS: &[&str] = &[
    ".ssh",
    ".aws",
    ".gnupg",
    ".config/gcloud",
    ".kube",
    ".docker",
];

/// A `[[mount]]` path pattern: absolute (`/srv/data/**`) or home-relative (`~/src/*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountPattern {
    home_relative: bool,
    segments: Vec<SegmentMatcher>,
    /// Literal segments up to the first wildcard, for "this mount would contain it" checks.
    literal_prefix: Vec<String>,
}

impl MountPattern {
    /// Compiles a mount pattern.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let (home_relative, rest) = if text == "~" {
            (true, "")
        } else if let Some(rest) = text.strip_prefix("~/") {
            (true, rest)
        } else if text.starts_with('/') {
            (false, text)
        } else {
            return Err(format!(
                "mount path `{text}` must be absolute (`/...`) or start with `~/`"
            ));
        };
        let mut segments = Vec::new();
        let mut literal_prefix = Vec::new();
        let mut literal = true;
        for segment in rest.split('/').filter(|s| !s.is_empty()) {
            match segment {
                "." | ".." => {
                    return Err(format!(
                        "mount path `{text}` contains a `{segment}` segment"
                    ));
                }
                "**" => {
                    literal = false;
                    segments.push(SegmentMatcher::AnySegments);
                }
                s if s.contains("**") => {
                    return Err(format!(
                        "`**` must be a whole segment in mount path `{text}`"
                    ));
                }
                s => {
                    literal &= !s.contains('*');
                    if literal {
                        literal_prefix.push(s.to_owned());
                    }
                    segments.push(SegmentMatcher::Glob(Wildcard::new(s)));
                }
            }
        }
        Ok(MountPattern {
            home_relative,
            segments,
            literal_prefix,
        })
    }

    /// The pattern's segments with `~` expanded to `home`.
    fn expanded(&self, home: &[String]) -> (Vec<SegmentMatcher>, Vec<String>) {
        if !self.home_relative {
            return (self.segments.clone(), self.literal_prefix.clone());
        }
        let base = home
            .iter()
            .map(|h| SegmentMatcher::Glob(Wildcard::new(&escape_stars(h))));
        let segments = base.chain(self.segments.iter().cloned()).collect();
        let prefix = home.iter().chain(&self.literal_prefix).cloned().collect();
        (segments, prefix)
    }

    /// True when the pattern matches `path` itself.
    pub(crate) fn matches(&self, path: &[String], home: &[String]) -> bool {
        let (segments, _) = self.expanded(home);
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        match_segments(&segments, &refs)
    }

    /// True when mounting `path` would expose something the pattern matches: the path itself, a
    /// directory above it, or (for a path above the pattern's literal part) something below it.
    pub(crate) fn overlaps(&self, path: &[String], home: &[String]) -> bool {
        let (segments, prefix) = self.expanded(home);
        let refs: Vec<&str> = path.iter().map(String::as_str).collect();
        let inside = (0..=refs.len()).any(|k| match_segments(&segments, &refs[..k]));
        inside || is_strict_ancestor(path, &prefix)
    }
}

/// Home paths are literal; a `*` in a user name must not act as a wildcard. `Wildcard` has no
/// escape, so such a segment is replaced by one that can match nothing a path holds.
fn escape_stars(segment: &str) -> String {
    if segment.contains('*') {
        "\u{0}unmatchable".into()
    } else {
        segment.to_owned()
    }
}

/// Lexically normalised segments of an absolute path (`.` dropped, `..` applied); `None` when the
/// path is relative. Symlinks are not resolved: callers pass canonicalised paths.
pub(crate) fn path_segments(path: &Path) -> Option<Vec<String>> {
    if !path.is_absolute() {
        return None;
    }
    let mut out: Vec<String> = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => out.push(name.to_string_lossy().into_owned()),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    Some(out)
}

/// `a` is a proper ancestor of `b`.
pub(crate) fn is_strict_ancestor(a: &[String], b: &[String]) -> bool {
    a.len() < b.len() && b.starts_with(a)
}

/// `a` is `b` or inside it.
pub(crate) fn is_within(a: &[String], b: &[String]) -> bool {
    a.starts_with(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segs(p: &str) -> Vec<String> {
        path_segments(Path::new(p)).unwrap()
    }

    #[test]
    fn normalises_lexically() {
        assert_eq!(segs("/home/u/./src/../.ssh"), segs("/home/u/.ssh"));
        assert_eq!(segs("/../.."), Vec::<String>::new());
        assert!(path_segments(Path::new("rel/x")).is_none());
    }

    #[test]
    fn patterns() {
        let home = segs("/home/u");
        let p = MountPattern::parse("~/src/**").unwrap();
        assert!(p.matches(&segs("/home/u/src"), &home));
        assert!(p.matches(&segs("/home/u/src/a/b"), &home));
        assert!(!p.matches(&segs("/home/u/other"), &home));
        let secret = MountPattern::parse("/srv/secrets").unwrap();
        assert!(secret.overlaps(&segs("/srv/secrets/x"), &home), "inside");
        assert!(secret.overlaps(&segs("/srv"), &home), "contains");
        assert!(
            secret.overlaps(&segs("/"), &home),
            "root contains everything"
        );
        assert!(!secret.overlaps(&segs("/srv/public"), &home));
        for bad in ["rel", "/a/../b", "/a**"] {
            assert!(MountPattern::parse(bad).is_err(), "{bad}");
        }
    }
}
