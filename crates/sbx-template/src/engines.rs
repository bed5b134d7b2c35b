//! Does a node version satisfy a package's `engines.node` range?
//!
//! The agent CLIs declare the node they need in `package.json` (`"engines": {"node": ">=20"}`), but npm only warns
//! when the installed node is older, so a template whose Debian suite ships an old nodejs would silently contain a
//! CLI that fails at its first start. This module evaluates those ranges (npm's range grammar: `||` alternatives,
//! comparators `>= > <= < =`, caret `^`, tilde `~`, x-ranges `20.x`/`*` and hyphen ranges `18 - 20`) against the
//! `node --version` of the template. Pre-release and build tags are ignored: Debian's nodejs carries none, and
//! engine ranges practically never use them.

use std::fmt;

/// A release version `major.minor.patch`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Version {
    major: u64,
    minor: u64,
    patch: u64,
}

impl Version {
    pub(crate) const fn new(major: u64, minor: u64, patch: u64) -> Self {
        Version {
            major,
            minor,
            patch,
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The output of `node --version` (`v20.19.2`, a trailing newline allowed); `None` when it is not one.
pub(crate) fn parse_node_version(output: &str) -> Option<Version> {
    let text = output.trim();
    let text = text.strip_prefix('v').unwrap_or(text);
    match parse_partial(text)? {
        Partial {
            major: Some(major),
            minor: Some(minor),
            patch: Some(patch),
        } => Some(Version::new(major, minor, patch)),
        _ => None,
    }
}

/// Whether `version` satisfies the npm range `range`; `Err` names the part of the range that is not understood.
pub(crate) fn satisfies(range: &str, version: Version) -> Result<bool, String> {
    for alternative in range.split("||") {
        let bounds = parse_alternative(alternative)?;
        if bounds.iter().all(|b| b.admits(version)) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// A version with possibly missing (`x`, `*` or absent) trailing parts.
#[derive(Debug, Clone, Copy)]
struct Partial {
    major: Option<u64>,
    minor: Option<u64>,
    patch: Option<u64>,
}

impl Partial {
    /// The lowest version it covers (missing parts are 0).
    fn floor(self) -> Version {
        Version::new(
            self.major.unwrap_or(0),
            self.minor.unwrap_or(0),
            self.patch.unwrap_or(0),
        )
    }

    /// The first version above everything it covers (`20` → `21.0.0`, `20.1` → `20.2.0`), `None` for `*` and for
    /// complete versions.
    fn ceiling(self) -> Option<Version> {
        match (self.major, self.minor, self.patch) {
            (Some(major), None, _) => Some(Version::new(major + 1, 0, 0)),
            (Some(major), Some(minor), None) => Some(Version::new(major, minor + 1, 0)),
            _ => None,
        }
    }

    fn is_complete(self) -> bool {
        self.patch.is_some()
    }
}

/// One side of an interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    AtLeast(Version),
    Above(Version),
    AtMost(Version),
    Below(Version),
    /// `<*`, `>*`: nothing matches.
    Never,
}

impl Bound {
    fn admits(self, v: Version) -> bool {
        match self {
            Bound::AtLeast(b) => v >= b,
            Bound::Above(b) => v > b,
            Bound::AtMost(b) => v <= b,
            Bound::Below(b) => v < b,
            Bound::Never => false,
        }
    }
}

/// `20`, `20.1`, `20.1.3`, `20.x`, `*`, with an optional `v` and ignored `-pre`/`+build` tags.
fn parse_partial(text: &str) -> Option<Partial> {
    let text = text.strip_prefix(['v', 'V']).unwrap_or(text);
    let text = text.split(['-', '+']).next()?;
    let mut parts = text.split('.');
    let mut next = || -> Option<Option<u64>> {
        match parts.next() {
            None => Some(None),
            Some("x" | "X" | "*") => Some(None),
            Some(n) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
                n.parse().ok().map(Some)
            }
            Some(_) => None,
        }
    };
    let major = next()?;
    let minor = next()?;
    let patch = next()?;
    if parts.next().is_some() {
        return None;
    }
    // `20.x.3` is not a version: after a wildcard, everything is a wildcard.
    let (minor, patch) = match (major, minor) {
        (None, _) => (None, None),
        (_, None) => (None, None),
        _ => (minor, patch),
    };
    Some(Partial {
        major,
        minor,
        patch,
    })
}

/// The operator at the start of a comparator and the rest.
fn split_operator(token: &str) -> (&str, &str) {
    for op in [">=", "<=", "~>", ">", "<", "=", "^", "~"] {
        if let Some(rest) = token.strip_prefix(op) {
            return (op, rest);
        }
    }
    ("", token)
}

/// One `||` alternative: whitespace-separated comparators, or a hyphen range; all must hold.
fn parse_alternative(alternative: &str) -> Result<Vec<Bound>, String> {
    let words: Vec<&str> = alternative.split_whitespace().collect();
    if let [low, "-", high] = words.as_slice() {
        let bad = |w: &str| format!("`{w}` in the hyphen range `{}`", alternative.trim());
        let low = parse_partial(low).ok_or_else(|| bad(low))?;
        let high = parse_partial(high).ok_or_else(|| bad(high))?;
        let mut bounds = vec![Bound::AtLeast(low.floor())];
        if high.is_complete() {
            bounds.push(Bound::AtMost(high.floor()));
        } else if let Some(ceiling) = high.ceiling() {
            bounds.push(Bound::Below(ceiling));
        }
        return Ok(bounds);
    }
    // `>= 20` is written with a space as often as without.
    let mut comparators = Vec::new();
    let mut pending_op: Option<&str> = None;
    for word in words {
        let (op, rest) = split_operator(word);
        match (pending_op.take(), op, rest) {
            (None, op, "") if !op.is_empty() => pending_op = Some(op),
            (Some(op), "", rest) => comparators.push((op, rest)),
            (None, op, rest) => comparators.push((op, rest)),
            (Some(op), _, _) => return Err(format!("`{op} {word}`")),
        }
    }
    if let Some(op) = pending_op {
        return Err(format!("`{op}` without a version"));
    }
    let mut bounds = Vec::new();
    for (op, text) in comparators {
        let v = parse_partial(text).ok_or_else(|| format!("`{op}{text}`"))?;
        bounds.extend(comparator_bounds(op, v));
    }
    Ok(bounds)
}

/// The interval one comparator stands for.
fn comparator_bounds(op: &str, v: Partial) -> Vec<Bound> {
    let floor = v.floor();
    let wildcard = v.major.is_none();
    match op {
        ">=" if wildcard => vec![],
        ">=" => vec![Bound::AtLeast(floor)],
        ">" if wildcard => vec![Bound::Never],
        ">" => match v.ceiling() {
            Some(ceiling) => vec![Bound::AtLeast(ceiling)],
            None => vec![Bound::Above(floor)],
        },
        "<" if wildcard => vec![Bound::Never],
        "<" => vec![Bound::Below(floor)],
        "<=" if wildcard => vec![],
        "<=" => match v.ceiling() {
            Some(ceiling) => vec![Bound::Below(ceiling)],
            None => vec![Bound::AtMost(floor)],
        },
        "~" | "~>" if wildcard => vec![],
        "~" | "~>" => {
            let upper = match v.minor {
                Some(minor) => Version::new(floor.major, minor + 1, 0),
                None => Version::new(floor.major + 1, 0, 0),
            };
            vec![Bound::AtLeast(floor), Bound::Below(upper)]
        }
        "^" if wildcard => vec![],
        "^" => {
            // The first non-zero part may not change; a missing part counts as the one that may.
            let upper = match (floor.major, v.minor, v.patch) {
                (0, Some(0), Some(patch)) => Version::new(0, 0, patch + 1),
                (0, Some(minor), _) => Version::new(0, minor + 1, 0),
                (major, _, _) => Version::new(major + 1, 0, 0),
            };
            vec![Bound::AtLeast(floor), Bound::Below(upper)]
        }
        // Bare or `=`: exactly that version, or everything a partial version covers.
        _ if wildcard => vec![],
        _ => match v.ceiling() {
            Some(ceiling) => vec![Bound::AtLeast(floor), Bound::Below(ceiling)],
            None => vec![Bound::AtLeast(floor), Bound::AtMost(floor)],
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE_18: Version = Version::new(18, 20, 4);
    const NODE_20: Version = Version::new(20, 19, 2);
    const NODE_22: Version = Version::new(22, 12, 0);

    fn ok(range: &str, v: Version) -> bool {
        satisfies(range, v).unwrap_or_else(|e| panic!("{range}: {e}"))
    }

    #[test]
    fn node_version_output_is_parsed() {
        assert_eq!(parse_node_version("v20.19.2\n"), Some(NODE_20));
        assert_eq!(parse_node_version("v18.20.4"), Some(NODE_18));
        assert_eq!(parse_node_version("22.12.0"), Some(NODE_22));
        assert_eq!(parse_node_version(""), None);
        assert_eq!(parse_node_version("v20"), None);
        assert_eq!(parse_node_version("node: not found"), None);
        assert_eq!(parse_node_version("v20.19.2.1"), None);
    }

    #[test]
    fn lower_bounds_compare_numerically_not_as_text() {
        assert!(!ok(">=20", NODE_18));
        assert!(ok(">=20", NODE_20));
        assert!(ok(">=20.0.0", NODE_20));
        assert!(!ok(">=22.0.0", NODE_20));
        assert!(ok(">=22.0.0", NODE_22));
        assert!(ok(">=16", NODE_18));
        assert!(ok(">= 20", NODE_20), "a space after the operator");
        assert!(!ok(">= 20", NODE_18));
        assert!(ok(">=9", NODE_20), "9 < 20 although \"9\" > \"20\"");
        assert!(!ok(">=20.20", NODE_20));
        assert!(ok(">20", Version::new(21, 0, 0)));
        assert!(!ok(">20", NODE_20), ">20 means >=21.0.0");
        assert!(ok(">20.19.1", NODE_20));
    }

    #[test]
    fn upper_bounds_alternatives_and_sugar() {
        assert!(ok("^18.17.0 || >=20.5.0", NODE_18));
        assert!(!ok("^18.17.0 || >=20.5.0", Version::new(19, 0, 0)));
        assert!(ok("^18.17.0 || >=20.5.0", NODE_20));
        assert!(!ok("^18.21.0 || >=20.20.0", NODE_20));
        assert!(ok(">=18 <21", NODE_20));
        assert!(!ok(">=18 <20", NODE_20));
        assert!(!ok("<=19", NODE_20));
        assert!(ok("<=20", NODE_20), "<=20 covers all of 20.x");
        assert!(ok("20.x", NODE_20));
        assert!(!ok("20.x", NODE_22));
        assert!(ok("~20.19", NODE_20));
        assert!(!ok("~20.18", NODE_20));
        assert!(ok("^20.1.0", NODE_20));
        assert!(!ok("^20.1.0", NODE_22));
        assert!(ok("^0.2.3", Version::new(0, 2, 9)));
        assert!(!ok("^0.2.3", Version::new(0, 3, 0)));
        assert!(ok("18 - 20", NODE_20));
        assert!(!ok("18 - 20.1", NODE_20));
        assert!(ok("20.19.2", NODE_20));
        assert!(!ok("=20.19.1", NODE_20));
        assert!(ok("*", NODE_18));
        assert!(ok("", NODE_18));
        assert!(!ok("<*", NODE_18));
        assert!(ok(">=20.0.0-rc.1", NODE_20), "pre-release tags are ignored");
    }

    #[test]
    fn ranges_that_are_not_understood_are_named() {
        for (range, part) in [
            (">=twenty", ">=twenty"),
            ("node 20", "node"),
            (">=", ">="),
            ("20.1.2.3", "20.1.2.3"),
            ("18 - banana", "banana"),
        ] {
            let err = satisfies(range, NODE_20).unwrap_err();
            assert!(err.contains(part), "{range}: {err}");
        }
    }
}
