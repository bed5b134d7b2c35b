//! Errors from reading policy files.

use std::path::PathBuf;

/// A policy file that is not valid: where (file, line, column) and what is wrong.
///
/// `Display` gives `file:line:column: message`, the form editors and `policy_check` print.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{column}: {message}")]
#[non_exhaustive]
pub struct ParseError {
    /// The source name given to [`crate::PolicyLayer::parse`] (usually the file path).
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong, and what to write instead where that is clear.
    pub message: String,
}

impl ParseError {
    /// Builds an error at byte offset `offset` of `text`.
    pub(crate) fn at(file: &str, text: &str, offset: usize, message: impl Into<String>) -> Self {
        let (line, column) = line_column(text, offset);
        ParseError {
            file: file.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and character column of byte `offset` (clamped to the text).
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

/// Failure to load a policy file from disk.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read policy file: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is larger than any policy file should be.
    #[error("{path}: policy file is {size} bytes, larger than the {limit}-byte limit")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// The file was read but is not a valid policy.
    #[error(transparent)]
    Parse(#[from] ParseError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions() {
        let text = "a = 1\nbé = 2\n";
        assert_eq!(line_column(text, 0), (1, 1));
        assert_eq!(line_column(text, 6), (2, 1));
        assert_eq!(
            line_column(text, 9),
            (2, 3),
            "columns count characters, not bytes"
        );
        assert_eq!(
            line_column(text, 8),
            (2, 2),
            "inside a character: clamp back"
        );
        assert_eq!(line_column(text, 999), (3, 1));
        let e = ParseError::at("f.toml", text, 6, "bad");
        assert_eq!(e.to_string(), "f.toml:2:1: bad");
    }
}
