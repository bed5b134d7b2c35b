//! Host-side credential store, provider catalog and placeholder injection for sbx sandboxes.
//!
//! Status: planned. It will keep real API keys on the host (OS keychain or an age-encrypted file), hand sandboxes placeholders, and tell the proxy how to put the real value into requests bound for the hosts each secret belongs to, including AWS SigV4 re-signing.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
