//! Errors of the namespace backend.

use std::path::PathBuf;

/// Starting, reaching or stopping a namespace sandbox failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JailError {
    /// A configured path is unusable.
    #[error("{what} {path}: {reason}")]
    BadPath {
        /// Which setting.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The template cannot be prepared for the sandbox's id mapping.
    #[error("template {template}: {detail}")]
    Template {
        /// The template directory.
        template: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },
    /// Host-side preparation failed (state dir, pipes, id maps).
    #[error("preparing the sandbox: {step}: {source}")]
    Prepare {
        /// The step.
        step: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The kernel refused to create the namespaces.
    #[error(
        "cannot create namespaces: {0}; user namespaces may be disabled \
         (check `sysctl user.max_user_namespaces` and `kernel.apparmor_restrict_unprivileged_userns`)"
    )]
    Namespaces(std::io::Error),
    /// A setup step inside the new namespaces failed.
    #[error("setting up the sandbox failed at `{step}`: {source}")]
    Setup {
        /// The step, e.g. `mount overlay on /…/root`.
        step: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// The seccomp filter could not be compiled.
    #[error("compiling the seccomp filter: {0}")]
    Seccomp(String),
    /// The agent did not come up.
    #[error(
        "the sandbox agent did not become ready within {waited_ms} ms: {detail} (agent log: {log})"
    )]
    NotReady {
        /// How long we waited.
        waited_ms: u128,
        /// Last error seen.
        detail: String,
        /// Where the agent's stderr went.
        log: PathBuf,
    },
    /// Talking to the agent failed.
    #[error(transparent)]
    Client(#[from] sbx_proto::ClientError),
    /// Stopping the sandbox failed.
    #[error("stopping the sandbox (pid {pid}): {detail}")]
    Stop {
        /// Pid of the sandbox init.
        pid: i32,
        /// What happened.
        detail: String,
    },
}
