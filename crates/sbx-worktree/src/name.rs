//! Validation of sandbox and branch names.
//!
//! Both kinds of name end up in ref names, file paths and `git` command lines, so they are checked against the
//! rules of `git check-ref-format --branch` plus stricter rules of our own: no path traversal (`..`, leading `.`),
//! nothing that a command line could read as an option (leading `-`), no control characters.

use crate::error::NameError;

/// The longest sandbox name accepted; it becomes part of file names and ref names.
const MAX_SANDBOX_LEN: usize = 64;
/// The longest branch name accepted.
const MAX_BRANCH_LEN: usize = 200;

/// A validated sandbox name: ASCII letters, digits, `.`, `_` and `-`, starting with a letter or digit.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SandboxName(String);

impl SandboxName {
    /// Validate `name` as a sandbox name.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let bad = |reason: &'static str| NameError::Sandbox {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_SANDBOX_LEN {
            return Err(bad("it is longer than 64 characters"));
        }
        if !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        {
            return Err(bad(
                "only ASCII letters, digits, '.', '_' and '-' are allowed",
            ));
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(bad("it must start with a letter or digit"));
        }
        if name.ends_with('.') {
            // git refuses ref names ending in '.', and the name becomes the last part of `sbx/<sandbox>`.
            return Err(bad("it must not end with '.'"));
        }
        check_ref_component(name).map_err(bad)?;
        Ok(Self(name.to_owned()))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for SandboxName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated short branch name (without `refs/heads/`), following `git check-ref-format --branch`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BranchName(String);

impl BranchName {
    /// Validate `name` as a branch name, e.g. `feature/login` or `sbx/agent-1`.
    pub fn new(name: &str) -> Result<Self, NameError> {
        let bad = |reason: &'static str| NameError::Branch {
            name: name.to_owned(),
            reason,
        };
        if name.is_empty() {
            return Err(bad("it is empty"));
        }
        if name.len() > MAX_BRANCH_LEN {
            return Err(bad("it is longer than 200 characters"));
        }
        if name.starts_with('-') {
            return Err(bad("it must not start with '-'"));
        }
        if name == "HEAD" || name == "@" {
            return Err(bad("'HEAD' and '@' are reserved"));
        }
        if name.ends_with('/') || name.starts_with('/') || name.contains("//") {
            return Err(bad("it must not start or end with '/' or contain '//'"));
        }
        if name.ends_with('.') {
            return Err(bad("it must not end with '.'"));
        }
        if name.contains("@{") {
            return Err(bad("it must not contain '@{'"));
        }
        for component in name.split('/') {
            check_ref_component(component).map_err(bad)?;
        }
        Ok(Self(name.to_owned()))
    }

    /// The short name, e.g. `sbx/agent-1`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The full ref name, e.g. `refs/heads/sbx/agent-1`.
    pub fn full_ref(&self) -> String {
        format!("refs/heads/{}", self.0)
    }
}

impl std::fmt::Display for BranchName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The rules `git check-ref-format` applies to every slash-separated component.
fn check_ref_component(component: &str) -> Result<(), &'static str> {
    if component.is_empty() {
        return Err("a path component is empty");
    }
    if component.starts_with('.') {
        return Err("a path component must not start with '.'");
    }
    if component.ends_with(".lock") {
        return Err("a path component must not end with '.lock'");
    }
    if component.contains("..") {
        return Err("it must not contain '..'");
    }
    if component
        .chars()
        .any(|c| c.is_control() || matches!(c, ' ' | '~' | '^' | ':' | '?' | '*' | '[' | '\\'))
    {
        return Err("it must not contain spaces, control characters or any of ~ ^ : ? * [ \\");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_ordinary_names() {
        for name in ["agent", "agent-1", "a.b_c", "7up"] {
            assert_eq!(SandboxName::new(name).map(|n| n.0), Ok(name.to_owned()));
        }
        for name in [
            "sbx/agent",
            "feature/login-form",
            "v1.2",
            "a/b/c",
            "ünïcode",
        ] {
            assert_eq!(BranchName::new(name).map(|n| n.0), Ok(name.to_owned()));
        }
    }

    #[test]
    fn rejects_what_an_attacker_would_try() {
        let sandbox_attacks = [
            "",
            "-rf",
            "--upload-pack=evil",
            "../x",
            "..",
            ".hidden",
            "a/b",
            "a b",
            "a\nb",
            "x.lock",
            "a..b",
            "a:b",
            "a\\b",
            "a;rm",
            "$(id)",
            "a\0b",
            "HEAD.",
            "a.",
        ];
        for name in sandbox_attacks {
            assert!(
                SandboxName::new(name).is_err(),
                "sandbox name {name:?} must be rejected"
            );
        }
        let too_long = "a".repeat(65);
        assert!(SandboxName::new(&too_long).is_err());
        let branch_attacks = [
            "",
            "-b",
            "--orphan",
            "../../etc",
            "a/../b",
            "a/./b",
            "/abs",
            "trailing/",
            "a//b",
            "a.",
            "x.lock",
            "x.lock/y",
            "a@{1}",
            "HEAD",
            "@",
            "a b",
            "a~1",
            "a^",
            "a:b",
            "a?",
            "a*",
            "a[",
            "a\\b",
            "a\u{7f}b",
            ".git/config",
            "a/.b",
        ];
        for name in branch_attacks {
            assert!(
                BranchName::new(name).is_err(),
                "branch name {name:?} must be rejected"
            );
        }
    }

    #[test]
    fn error_names_the_value_and_reason() {
        let err = BranchName::new("a..b").unwrap_err().to_string();
        assert!(err.contains("a..b") && err.contains(".."), "{err}");
    }

    #[test]
    fn full_ref_prefixes_heads() {
        assert_eq!(
            BranchName::new("sbx/x").unwrap().full_ref(),
            "refs/heads/sbx/x"
        );
    }
}
