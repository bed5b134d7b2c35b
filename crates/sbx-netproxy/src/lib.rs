//! The host-side egress proxy every sbx sandbox connection goes through.
//!
//! Status: planned. It will be a TLS-intercepting forward and transparent proxy that decides every request with sbx-policy, injects credentials with sbx-secrets and records what happened with sbx-audit.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
