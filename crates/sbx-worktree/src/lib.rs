//! Branch mode, clone mode and review for sbx sandboxes, built on gix.
//!
//! Status: planned. It will give each sandbox its own git branch and linked worktree (or a private clone), list them, show the diff against the base, merge back and remove them.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
