//! Integration tests: the real `sbx` binary in a temp `SBX_HOME`.

mod context;
mod policy;
mod secret;
