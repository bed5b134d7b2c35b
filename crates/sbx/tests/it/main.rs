//! Integration tests: the real `sbx` binary in a temp `SBX_HOME`.

mod context;
mod lifecycle;
mod policy;
mod secret;
mod template;
