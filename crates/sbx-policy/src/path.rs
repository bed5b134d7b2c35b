//! URL paths: the canonical form requests are matched in, and compiled path globs.
//!
//! Normalisation exists so that no spelling of a path can dodge a deny: `/a/../b`, `/%2e%2e/b`,
//! `//b`, `/b;x` and `/b/` all become `/b`. It follows RFC 3986 §6.2.2: percent-escapes of
//! unreserved characters are decoded, every other escape is kept (upper-case hex) so `%2F` stays
//! distinct from `/`, stray characters are escaped, and dot-segments are removed. In addition,
//! `;parameters` are cut from each segment (servers such as Tomcat ignore them, so `/admin;x` is
//! `/admin` there), empty segments are dropped and a trailing `/` is removed.

use crate::glob::Wildcard;

/// Longest path pattern accepted.
const MAX_PATTERN_LEN: usize = 4096;

/// Brings a raw request path (as sent, possibly with `?query` or `#fragment`) to canonical form.
/// The result starts with `/`, has no empty, `.` or `..` segments and no trailing `/`, and
/// normalising it again returns it unchanged.
pub fn normalize_path(raw: &str) -> String {
    let path = raw.split(['?', '#']).next().unwrap_or("");
    let mut segments: Vec<String> = Vec::new();
    for raw_segment in path.split('/') {
        let segment = canonical_segment(raw_segment, true);
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            _ => segments.push(segment),
        }
    }
    let mut out = String::with_capacity(path.len() + 1);
    if segments.is_empty() {
        out.push('/');
    }
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    out
}

/// Canonical spelling of one segment; `strip_params` cuts a `;parameter` tail.
fn canonical_segment(raw: &str, strip_params: bool) -> String {
    let bytes = raw.as_bytes();
    let mut out = String::with_capacity(raw.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            match (
                bytes.get(i + 1).and_then(hex),
                bytes.get(i + 2).and_then(hex),
            ) {
                (Some(hi), Some(lo)) => {
                    let decoded = hi << 4 | lo;
                    if is_unreserved(decoded) {
                        out.push(char::from(decoded));
                    } else {
                        push_escaped(&mut out, decoded);
                    }
                    i += 3;
                }
                _ => {
                    push_escaped(&mut out, b'%');
                    i += 1;
                }
            }
            continue;
        }
        if b == b';' && strip_params {
            break;
        }
        if is_unreserved(b) || is_sub_delim(b) || matches!(b, b':' | b'@') {
            out.push(char::from(b));
        } else {
            push_escaped(&mut out, b);
        }
        i += 1;
    }
    out
}

fn hex(b: &u8) -> Option<u8> {
    char::from(*b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

fn push_escaped(out: &mut String, b: u8) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    out.push('%');
    out.push(char::from(HEX[usize::from(b >> 4)]));
    out.push(char::from(HEX[usize::from(b & 0xF)]));
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn is_sub_delim(b: u8) -> bool {
    matches!(
        b,
        b'!' | b'$' | b'&' | b'\'' | b'(' | b')' | b'*' | b'+' | b',' | b'='
    )
}

/// One segment of a path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SegmentMatcher {
    /// `**`: zero or more whole segments.
    AnySegments,
    /// A literal segment or one with `*` inside (never crossing `/`).
    Glob(Wildcard),
}

/// A compiled path glob (`/repos/acme/**`, `/v1/*/files`).
///
/// `*` matches within one segment, `**` (a whole segment) matches any number of segments, so
/// `/repos/acme/**` covers `/repos/acme` itself and everything below it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PathPattern {
    segments: Vec<SegmentMatcher>,
}

impl PathPattern {
    /// Compiles a path pattern; literal parts are canonicalised like request paths.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.len() > MAX_PATTERN_LEN {
            return Err(format!(
                "path pattern is longer than {MAX_PATTERN_LEN} characters"
            ));
        }
        if !text.starts_with('/') {
            return Err(format!("path pattern `{text}` must start with `/`"));
        }
        if text.contains('?') {
            return Err(format!(
                "path pattern `{text}` contains `?`: patterns match the path only, never a query"
            ));
        }
        if text.contains('#') {
            return Err(format!(
                "path pattern `{text}` contains `#`: a fragment is never sent to a server"
            ));
        }
        if text.contains(';') {
            return Err(format!(
                "path pattern `{text}` contains `;`: path parameters are removed before matching"
            ));
        }
        let mut segments = Vec::new();
        for raw in text.split('/') {
            let segment = canonical_segment(raw, false);
            match segment.as_str() {
                "" => {}
                "." | ".." => {
                    return Err(format!(
                        "path pattern `{text}` contains a `{segment}` segment; write the path it leads to"
                    ));
                }
                "**" => {
                    if segments.last() != Some(&SegmentMatcher::AnySegments) {
                        segments.push(SegmentMatcher::AnySegments);
                    }
                }
                s if s.contains("**") => {
                    return Err(format!(
                        "`**` must be a whole segment in path pattern `{text}`; use `*` inside a segment"
                    ));
                }
                s => segments.push(SegmentMatcher::Glob(Wildcard::new(s))),
            }
        }
        Ok(PathPattern { segments })
    }

    /// Matches a path already in canonical form (see [`normalize_path`]).
    pub(crate) fn matches(&self, normalized: &str) -> bool {
        let trimmed = normalized.strip_prefix('/').unwrap_or(normalized);
        let segments: Vec<&str> = if trimmed.is_empty() {
            Vec::new()
        } else {
            trimmed.split('/').collect()
        };
        match_segments(&self.segments, &segments)
    }
}

/// Glob matching over segments with `**` as the star: the classic backtrack-to-last-star loop,
/// O(len(path) × len(pattern)) at worst.
pub(crate) fn match_segments(pattern: &[SegmentMatcher], path: &[&str]) -> bool {
    let (mut p, mut s) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while s < path.len() {
        match pattern.get(p) {
            Some(SegmentMatcher::AnySegments) => {
                backtrack = Some((p, s));
                p += 1;
                continue;
            }
            Some(SegmentMatcher::Glob(w)) if w.matches(path[s]) => {
                p += 1;
                s += 1;
                continue;
            }
            _ => {}
        }
        match backtrack {
            Some((star_p, star_s)) => {
                p = star_p + 1;
                s = star_s + 1;
                backtrack = Some((star_p, star_s + 1));
            }
            None => return false,
        }
    }
    pattern[p.min(pattern.len())..]
        .iter()
        .all(|m| *m == SegmentMatcher::AnySegments)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation_cases() {
        let cases = [
            ("", "/"),
            ("/", "/"),
            ("/a/../b", "/b"),
            ("/a/./b/", "/a/b"),
            ("//b", "/b"),
            ("/a//b///c", "/a/b/c"),
            ("/%2e%2e/b", "/b"),
            ("/a/%2E%2e/b", "/b"),
            ("/a/.%2e/b", "/b"),
            ("/../../etc/passwd", "/etc/passwd"),
            ("/a%2Fb", "/a%2Fb"),
            ("/a%2fb", "/a%2Fb"),
            ("/%41%62c", "/Abc"),
            ("/a b", "/a%20b"),
            ("/a%20b", "/a%20b"),
            ("/100%", "/100%25"),
            ("/%zz", "/%25zz"),
            ("/admin;jsessionid=1/x", "/admin/x"),
            ("/x/..;/admin", "/admin"),
            ("/search?q=/../admin", "/search"),
            ("/page#/../admin", "/page"),
            ("/caf\u{e9}", "/caf%C3%A9"),
            ("/a\\..\\b", "/a%5C..%5Cb"),
            ("relative/x", "/relative/x"),
        ];
        for (raw, want) in cases {
            assert_eq!(normalize_path(raw), want, "normalising {raw:?}");
            assert_eq!(normalize_path(want), want, "idempotent on {want:?}");
        }
    }

    fn matches(pattern: &str, path: &str) -> bool {
        PathPattern::parse(pattern)
            .unwrap()
            .matches(&normalize_path(path))
    }

    #[test]
    fn glob_semantics() {
        assert!(matches("/repos/acme/**", "/repos/acme"));
        assert!(matches("/repos/acme/**", "/repos/acme/x/y/z"));
        assert!(!matches("/repos/acme/**", "/repos/acmex"));
        assert!(matches("/v1/*/files", "/v1/abc/files"));
        assert!(
            !matches("/v1/*/files", "/v1/a/b/files"),
            "* must not cross /"
        );
        assert!(matches("/**", "/"));
        assert!(matches("/**", "/anything/at/all"));
        assert!(matches("/", "/"));
        assert!(!matches("/", "/a"));
        assert!(matches("/a/**/z", "/a/z"));
        assert!(matches("/a/**/z", "/a/b/c/z"));
        assert!(!matches("/a/**/z", "/a/b/c"));
        assert!(matches("/*.json", "/package.json"));
        assert!(matches("/Caf%c3%a9", "/Caf\u{e9}"));
        assert!(matches("/admin/**", "/x/../admin/users"));
        assert!(matches("/admin/**", "/%61dmin"));
    }

    #[test]
    fn percent_2f_stays_inside_segment() {
        // `%2F` is data, not a separator: one segment, so `*` covers it but a two-segment pattern does not.
        assert!(matches("/v1/*/files", "/v1/a%2Fb/files"));
        assert!(!matches("/v1/a/b/files", "/v1/a%2Fb/files"));
    }

    #[test]
    fn pattern_errors() {
        for bad in [
            "repos",
            "/a?b",
            "/a#b",
            "/a/../b",
            "/a/%2e%2e/b",
            "/./a",
            "/a**",
            "/a;b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }
}
