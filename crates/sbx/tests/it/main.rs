//! Integration tests: the real `sbx` binary in a temp `SBX_HOME`.

mod attach;
mod branch;
mod context;
mod cp;
mod dashboard;
mod egress;
mod kernel;
mod lifecycle;
mod policy;
mod secret;
mod template;
