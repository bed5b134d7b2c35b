//! Sandbox names: they become directory names, socket names and branch names, so they are validated once here.

use anyhow::{Result, bail};

/// Longest sandbox name (it ends up in socket paths, which are limited to 108 bytes).
const MAX_LEN: usize = 40;

/// Checks that `name` is a valid sandbox name: lower-case letters, digits, `-`, `_` and `.`, starting with a
/// letter or digit, at most 40 characters.
pub(crate) fn validate_sandbox(name: &str) -> Result<()> {
    let ok_first = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    let ok_rest = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '_' | '.'));
    if !ok_first || !ok_rest || name.len() > MAX_LEN || name.contains("..") {
        bail!(
            "invalid sandbox name `{}`: use 1 to {MAX_LEN} lower-case letters, digits, `-`, `_` or `.`, starting with a letter or digit",
            name.escape_debug()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        for good in ["a", "my-box", "proj_2.dev", "0abc"] {
            validate_sandbox(good).unwrap();
        }
        for bad in [
            "",
            "-x",
            ".x",
            "../x",
            "a/b",
            "A",
            "a..b",
            "x y",
            &"a".repeat(41),
            "a\n",
        ] {
            assert!(validate_sandbox(bad).is_err(), "{bad:?}");
        }
    }
}
