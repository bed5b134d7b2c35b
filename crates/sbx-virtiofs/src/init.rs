//! FUSE_INIT negotiation: which protocol version and features the session uses.

use crate::abi::{
    InitOut, KERNEL_MINOR_VERSION, KERNEL_VERSION, MIN_KERNEL_MINOR_VERSION, init_flags as f,
};
use crate::server::CachePolicy;

/// Page size the kernel counts `max_pages` in.
const PAGE_SIZE: u32 = 4096;
/// The kernel's `max_pages` when the MAX_PAGES feature is not negotiated.
const DEFAULT_MAX_PAGES: u32 = 32;

/// The first FUSE protocol minor version (7.39, Linux 6.6) of kernels known to drop a file's cached pages (and
/// mappings) when a `FOPEN_DIRECT_IO` descriptor writes it, so that other openers in the guest stay coherent; the
/// server opens write-only files with direct I/O only for such kernels, older ones keep the page cache.
pub const DIRECT_WRITE_COHERENT_MINOR: u32 = 39;

/// What the kernel offered in FUSE_INIT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelInit {
    /// Kernel protocol major version.
    pub major: u32,
    /// Kernel protocol minor version.
    pub minor: u32,
    /// Kernel's readahead limit.
    pub max_readahead: u32,
    /// Kernel capability flags.
    pub flags: u32,
}

impl KernelInit {
    /// The kernel's offer carried by an INIT request; `None` for every other operation.
    pub fn of(op: &crate::request::Operation<'_>) -> Option<Self> {
        match *op {
            crate::request::Operation::Init {
                major,
                minor,
                max_readahead,
                flags,
            } => Some(Self {
                major,
                minor,
                max_readahead,
                flags,
            }),
            _ => None,
        }
    }
}

/// Outcome of the negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Negotiation {
    /// The session is set up with this reply.
    Accepted(InitOut),
    /// The kernel speaks a newer major version: answer with ours only and wait for it to retry.
    RetryWithOurMajor(InitOut),
    /// The kernel is too old (or a different protocol); the session cannot start.
    Refused {
        /// Kernel major version.
        major: u32,
        /// Kernel minor version.
        minor: u32,
    },
}

/// Features this server asks for when the kernel offers them.
///
/// `HANDLE_KILLPRIV_V2` makes the server responsible for clearing setuid/setgid on writes, truncations and `O_TRUNC`
/// opens by callers without `CAP_FSETID` (the kernel says so with a flag in each request); in exchange the kernel
/// stops asking for `security.capability` before every `write(2)` — without it each 1 MiB WRITE costs an extra
/// GETXATTR round trip.
///
/// Not requested: `EXPORT_SUPPORT` (no `..` lookups are served), POSIX/flock locks (the kernel keeps them locally),
/// `CACHE_SYMLINKS` (the host may retarget a symlink), `DONT_MASK` (the guest kernel applies the umask), and
/// `WRITEBACK_CACHE` unless [`CachePolicy::writeback_cache`] asks for it (see the crate README's consistency model).
fn wanted_flags(policy: &CachePolicy) -> u32 {
    let mut wanted = f::ASYNC_READ
        | f::ATOMIC_O_TRUNC
        | f::BIG_WRITES
        | f::AUTO_INVAL_DATA
        | f::DO_READDIRPLUS
        | f::READDIRPLUS_AUTO
        | f::ASYNC_DIO
        | f::PARALLEL_DIROPS
        | f::ABORT_ERROR
        | f::MAX_PAGES
        | f::HANDLE_KILLPRIV_V2;
    if policy.writeback_cache {
        wanted |= f::WRITEBACK_CACHE;
    }
    wanted
}

/// Decides the session parameters from the kernel's offer, our cache policy and our largest request size.
pub fn negotiate(kernel: KernelInit, policy: &CachePolicy, max_pages: u16) -> Negotiation {
    if kernel.major > KERNEL_VERSION {
        return Negotiation::RetryWithOurMajor(InitOut {
            major: KERNEL_VERSION,
            minor: KERNEL_MINOR_VERSION,
            ..InitOut::default()
        });
    }
    if kernel.major < KERNEL_VERSION || kernel.minor < MIN_KERNEL_MINOR_VERSION {
        return Negotiation::Refused {
            major: kernel.major,
            minor: kernel.minor,
        };
    }
    let flags = kernel.flags & wanted_flags(policy);
    let pages = if flags & f::MAX_PAGES != 0 {
        u32::from(max_pages.max(1))
    } else {
        DEFAULT_MAX_PAGES
    };
    let max_write = pages * PAGE_SIZE;
    Negotiation::Accepted(InitOut {
        major: KERNEL_VERSION,
        minor: kernel.minor.min(KERNEL_MINOR_VERSION),
        max_readahead: kernel.max_readahead.min(max_write),
        flags,
        max_background: 64,
        congestion_threshold: 48,
        max_write,
        time_gran: 1,
        max_pages: if flags & f::MAX_PAGES != 0 {
            max_pages.max(1)
        } else {
            0
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(minor: u32, flags: u32) -> KernelInit {
        KernelInit {
            major: 7,
            minor,
            max_readahead: 1 << 20,
            flags,
        }
    }

    #[test]
    fn modern_kernel_gets_large_requests_readdirplus_and_no_writeback_cache_by_default() {
        let Negotiation::Accepted(out) =
            negotiate(offer(41, u32::MAX), &CachePolicy::default(), 256)
        else {
            panic!("refused")
        };
        assert_eq!(out.minor, KERNEL_MINOR_VERSION);
        assert_eq!(out.max_pages, 256);
        assert_eq!(out.max_write, 1 << 20);
        assert_ne!(out.flags & f::DO_READDIRPLUS, 0);
        assert_ne!(out.flags & f::AUTO_INVAL_DATA, 0);
        // The server clears setuid itself, so the kernel skips a GETXATTR before every write.
        assert_ne!(out.flags & f::HANDLE_KILLPRIV_V2, 0);
        assert_eq!(out.flags & f::WRITEBACK_CACHE, 0);
        assert_eq!(out.flags & f::EXPORT_SUPPORT, 0);
        assert_eq!(out.flags & f::POSIX_LOCKS, 0);
    }

    #[test]
    fn writeback_cache_only_on_request_and_only_if_offered() {
        let policy = CachePolicy {
            writeback_cache: true,
            ..CachePolicy::default()
        };
        let Negotiation::Accepted(out) = negotiate(offer(31, f::WRITEBACK_CACHE), &policy, 256)
        else {
            panic!()
        };
        assert_eq!(out.flags, f::WRITEBACK_CACHE);
        let Negotiation::Accepted(out) = negotiate(offer(31, 0), &policy, 256) else {
            panic!()
        };
        assert_eq!(out.flags, 0);
        // Without MAX_PAGES the kernel's default of 32 pages bounds writes.
        assert_eq!(out.max_write, 32 * 4096);
        assert_eq!(out.max_pages, 0);
    }

    #[test]
    fn old_or_foreign_kernels_are_refused_and_newer_majors_retry() {
        assert_eq!(
            negotiate(offer(26, 0), &CachePolicy::default(), 256),
            Negotiation::Refused {
                major: 7,
                minor: 26
            }
        );
        let k = KernelInit {
            major: 6,
            minor: 40,
            max_readahead: 0,
            flags: 0,
        };
        assert!(matches!(
            negotiate(k, &CachePolicy::default(), 256),
            Negotiation::Refused { .. }
        ));
        let k = KernelInit {
            major: 8,
            minor: 0,
            max_readahead: 0,
            flags: 0,
        };
        let Negotiation::RetryWithOurMajor(out) = negotiate(k, &CachePolicy::default(), 256) else {
            panic!()
        };
        assert_eq!(out.major, 7);
    }

    #[test]
    fn newer_minor_is_capped_to_ours_and_older_minor_kept() {
        let Negotiation::Accepted(out) = negotiate(offer(28, 0), &CachePolicy::default(), 256)
        else {
            panic!()
        };
        assert_eq!(out.minor, 28);
    }
}
