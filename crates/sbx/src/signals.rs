//! Turning termination signals into a flag that a loop polls: the supervisor stops its jail cleanly, `sbx exec`
//! forwards the signal to the command inside.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signals that ask a process to end.
pub(crate) const TERMINATION: &[libc::c_int] = &[libc::SIGTERM, libc::SIGINT, libc::SIGHUP];

/// The last caught signal not yet taken (0: none).
static CAUGHT: AtomicI32 = AtomicI32::new(0);

extern "C" fn record_signal(signal: libc::c_int) {
    CAUGHT.store(signal, Ordering::SeqCst);
}

/// From now on `signals` only set the flag read by [`take`].
pub(crate) fn catch(signals: &[libc::c_int]) {
    for &signal in signals {
        // SAFETY: `record_signal` only does an atomic store, which is async-signal-safe.
        let installed = unsafe { install_handler(signal) };
        if installed != 0 {
            eprintln!("sbx: cannot catch signal {signal}; it will end sbx abruptly");
        }
    }
}

/// The signal caught since the last call, if any (0: none).
pub(crate) fn take() -> i32 {
    CAUGHT.swap(0, Ordering::SeqCst)
}

/// Installs [`record_signal`] for `signal`; returns sigaction's result.
///
/// # Safety
/// Must only be used with [`record_signal`], whose body is async-signal-safe.
unsafe fn install_handler(signal: libc::c_int) -> libc::c_int {
    // SAFETY: sigaction is a plain C struct for which all-zero bytes is a valid value.
    let mut action: libc::sigaction = unsafe { std::mem::zeroed() };
    action.sa_sigaction = record_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: `action.sa_mask` is a valid, exclusively borrowed sigset_t.
    unsafe { libc::sigemptyset(&mut action.sa_mask) };
    // SAFETY: `action` is initialised and outlives the call; the old action is not requested.
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_caught_signal_is_taken_once() {
        super::catch(&[libc::SIGUSR2]);
        // SAFETY: raising a signal we installed a handler for is defined behaviour.
        let rc = unsafe { libc::raise(libc::SIGUSR2) };
        assert_eq!(rc, 0);
        assert_eq!(super::take(), libc::SIGUSR2);
        assert_eq!(super::take(), 0);
    }
}
