//! The open-file limit: every intercepted connection holds two descriptors (client and upstream), so the common soft
//! limit of 1,024 caps a proxy at a few hundred connections. The proxy raises the soft limit to the hard limit once
//! per process, when the first [`crate::Proxy`] is made.

use std::sync::OnceLock;

/// The open-file limit before and after [`raise_fd_limit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FdLimit {
    /// The soft limit found.
    pub before: u64,
    /// The soft limit now in force (the hard limit, unless raising failed).
    pub after: u64,
}

/// Raise this process's `RLIMIT_NOFILE` soft limit to its hard limit (idempotent; done once per process, later calls
/// return the first result). Never lowers a limit; `None` when the limit cannot be read or set.
pub fn raise_fd_limit() -> Option<FdLimit> {
    static RAISED: OnceLock<Option<FdLimit>> = OnceLock::new();
    *RAISED.get_or_init(|| {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let mut limit = getrlimit(Resource::Nofile);
        let before = limit.current?;
        let Some(hard) = limit.maximum else {
            // Unlimited hard limit: leave the soft one as it is rather than guess a number.
            return Some(FdLimit {
                before,
                after: before,
            });
        };
        if hard <= before {
            return Some(FdLimit {
                before,
                after: before,
            });
        }
        limit.current = Some(hard);
        match setrlimit(Resource::Nofile, limit) {
            Ok(()) => Some(FdLimit {
                before,
                after: hard,
            }),
            Err(e) => {
                tracing::warn!(error = %e, "could not raise the open-file limit");
                Some(FdLimit {
                    before,
                    after: before,
                })
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() {
        let limit = raise_fd_limit().expect("RLIMIT_NOFILE is readable on Linux");
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, Some(limit.after));
        assert!(limit.after >= limit.before);
        if let Some(hard) = now.maximum {
            assert_eq!(limit.after, hard);
        }
        assert_eq!(raise_fd_limit(), Some(limit), "idempotent");
    }
}
