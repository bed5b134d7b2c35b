//! Process-level plumbing: signal handlers for clean shutdown and for kicking vCPU threads out of `KVM_RUN`.

pub(crate) mod signals;
