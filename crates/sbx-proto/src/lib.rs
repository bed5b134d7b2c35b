//! The versioned host-to-sandbox protocol spoken between sbx and its in-sandbox agent.
//!
//! Status: planned. It will define length-limited frames with a version handshake for the exec service, readiness and shutdown, over any reliable byte stream.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
