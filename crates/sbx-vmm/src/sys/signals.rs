//! Signal handling. SIGTERM/SIGINT are turned into a write on an eventfd the event loop watches; a real-time signal
//! interrupts `KVM_RUN` so vCPU threads notice a stop request.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};
use vmm_sys_util::signal::{SIGRTMIN, register_signal_handler};

/// The eventfd the shutdown handler writes, as a raw fd the handler can use (-1 before installation).
static SHUTDOWN_FD: AtomicI32 = AtomicI32::new(-1);
/// The last shutdown signal received.
static LAST_SIGNAL: AtomicI32 = AtomicI32::new(0);
static SHUTDOWN_EVT: OnceLock<Arc<EventFd>> = OnceLock::new();
static INSTALL: Mutex<()> = Mutex::new(());

extern "C" fn on_shutdown_signal(
    num: libc::c_int,
    _info: *mut libc::siginfo_t,
    _ctx: *mut libc::c_void,
) {
    LAST_SIGNAL.store(num, Ordering::SeqCst);
    let fd = SHUTDOWN_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        write_one(fd);
    }
}

/// Adds 1 to the eventfd `fd` from a signal handler.
fn write_one(fd: RawFd) {
    let one: u64 = 1;
    // SAFETY: `fd` is the eventfd owned by SHUTDOWN_EVT, which lives for the rest of the process; `write` is
    // async-signal-safe and reads exactly 8 bytes from `one`, which outlives the call.
    let _ = unsafe { libc::write(fd, std::ptr::addr_of!(one).cast(), 8) };
}

/// Installs SIGTERM/SIGINT handlers (once per process) and returns the eventfd they signal.
pub(crate) fn install_shutdown_handlers() -> std::io::Result<Arc<EventFd>> {
    let _guard = INSTALL
        .lock()
        .map_err(|_| std::io::Error::other("signal setup lock poisoned"))?;
    if let Some(evt) = SHUTDOWN_EVT.get() {
        return Ok(evt.clone());
    }
    let evt = Arc::new(EventFd::new(EFD_NONBLOCK)?);
    SHUTDOWN_FD.store(evt.as_raw_fd(), Ordering::SeqCst);
    for sig in [libc::SIGTERM, libc::SIGINT] {
        register_signal_handler(sig, on_shutdown_signal)
            .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    }
    let _ = SHUTDOWN_EVT.set(evt.clone());
    Ok(evt)
}

/// The signal that last triggered the shutdown eventfd.
pub(crate) fn last_shutdown_signal() -> i32 {
    LAST_SIGNAL.load(Ordering::SeqCst)
}

extern "C" fn on_kick(_num: libc::c_int, _info: *mut libc::siginfo_t, _ctx: *mut libc::c_void) {}

/// The signal used to interrupt `KVM_RUN`; its handler does nothing, the point is the `EINTR`.
pub(crate) fn kick_signal() -> libc::c_int {
    SIGRTMIN() + 1
}

/// Installs the no-op handler for [`kick_signal`] (idempotent).
pub(crate) fn install_kick_handler() -> std::io::Result<()> {
    static DONE: OnceLock<()> = OnceLock::new();
    if DONE.get().is_some() {
        return Ok(());
    }
    register_signal_handler(kick_signal(), on_kick)
        .map_err(|e| std::io::Error::from_raw_os_error(e.errno()))?;
    let _ = DONE.set(());
    Ok(())
}
