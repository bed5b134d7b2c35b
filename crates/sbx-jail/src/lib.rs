//! Namespace isolation backend for sbx sandboxes on hosts without hardware virtualization.
//!
//! Status: planned. It will run a sandbox in user, mount, PID, IPC, UTS, cgroup and network namespaces with a seccomp filter. It shares the host kernel and is weaker than a microVM.
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]
