//! A durable, tamper-evident JSONL audit trail for sbx sandboxes.
//!
//! Status: planned. It will hold the typed audit events (network decisions, credential injections, lifecycle, exec, mount), a non-blocking writer with durability modes, rotation and a hash chain, and a reader with filters, follow mode and the aggregate view that `sbx policy log` prints.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
