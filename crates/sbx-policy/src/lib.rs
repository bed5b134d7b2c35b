//! Network and mount policy engine for sbx sandboxes: layered rules, presets and explained decisions.
//!
//! Status: being built (foundation issue). It will decide whether a sandbox may make a network request or mount a path, and explain why: presets open / balanced / locked-down, rules by host, wildcard, port, CIDR, method and path, layered company > org > team > user > sandbox with deny winning.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
