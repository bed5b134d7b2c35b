//! `*`-only wildcard matching, shared by host labels, path segments and model names.
//!
//! A `*` matches any run of characters (possibly empty) inside the text it is given; callers hand it
//! one host label or one path segment, which is how `*` never crosses `.` or `/`.

/// A compiled `*` wildcard: the literal pieces between the stars.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Wildcard {
    /// Literal pieces; `pieces.len() == stars + 1`.
    pieces: Vec<String>,
}

impl Wildcard {
    /// Compiles `pattern`; every `*` is a wildcard, everything else literal.
    pub(crate) fn new(pattern: &str) -> Self {
        Wildcard {
            pieces: pattern.split('*').map(str::to_owned).collect(),
        }
    }

    /// True when the pattern has no `*` (a plain literal).
    pub(crate) fn is_literal(&self) -> bool {
        self.pieces.len() == 1
    }

    /// Matches `text` against the pattern. Greedy leftmost search is exact for `*`-only globs and
    /// runs in O(len(text) × len(pattern)) at worst, so hostile input cannot blow it up.
    pub(crate) fn matches(&self, text: &str) -> bool {
        let (first, rest) = match self.pieces.split_first() {
            Some(split) => split,
            None => return text.is_empty(),
        };
        let Some((last, middle)) = rest.split_last() else {
            return text == first;
        };
        let Some(mut remaining) = text.strip_prefix(first.as_str()) else {
            return false;
        };
        for piece in middle {
            match remaining.find(piece.as_str()) {
                Some(at) => remaining = &remaining[at + piece.len()..],
                None => return false,
            }
        }
        remaining.len() >= last.len() && remaining.ends_with(last.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::Wildcard;

    #[test]
    fn literal_matches_only_itself() {
        let w = Wildcard::new("crl");
        assert!(w.is_literal());
        assert!(w.matches("crl"));
        assert!(!w.matches("crl3"));
        assert!(!w.matches(""));
    }

    #[test]
    fn stars_match_runs() {
        let w = Wildcard::new("crl*");
        assert!(w.matches("crl"));
        assert!(w.matches("crl3"));
        assert!(!w.matches("xcrl3"));
        let w = Wildcard::new("claude-*-opus-*");
        assert!(w.matches("claude-3-opus-20240229"));
        assert!(w.matches("claude-x-opus-"));
        assert!(!w.matches("claude-3-sonnet-1"));
        let w = Wildcard::new("a*a");
        assert!(!w.matches("a"), "prefix and suffix must not overlap");
        assert!(w.matches("aa"));
        assert!(Wildcard::new("*").matches(""));
        assert!(Wildcard::new("**").matches("anything"));
    }
}
