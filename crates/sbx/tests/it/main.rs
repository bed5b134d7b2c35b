//! Integration tests: the real `sbx` binary in a temp `SBX_HOME`.

mod context;
mod egress;
mod lifecycle;
mod policy;
mod secret;
