//! Shared run-state of one VM: who asked it to stop and why, and the start-up timestamps.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EFD_NONBLOCK, EventFd};

use crate::runtime::ExitReason;

/// Process CPU time (user + system) so far.
pub(crate) fn process_cpu_time() -> Duration {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Stop requests and timestamps shared by the vCPU threads, the event loop, devices and handles.
#[derive(Debug)]
pub(crate) struct Control {
    reason: Mutex<Option<ExitReason>>,
    stopping: AtomicBool,
    /// Written once when the VM must stop; the event loop watches it.
    pub(crate) stop_evt: EventFd,
    pub(crate) started: Instant,
    pub(crate) started_cpu: Duration,
    /// Wall and process CPU time from [`Control::started`] to the first `KVM_RUN`, and the process's total CPU time
    /// at that moment.
    pub(crate) first_run: OnceLock<(Duration, Duration, Duration)>,
    /// Wall time from start to the guest's boot-timer write.
    pub(crate) boot_ready: OnceLock<Duration>,
}

impl Control {
    pub(crate) fn new(started: Instant, started_cpu: Duration) -> std::io::Result<Self> {
        Ok(Self {
            reason: Mutex::new(None),
            stopping: AtomicBool::new(false),
            stop_evt: EventFd::new(EFD_NONBLOCK)?,
            started,
            started_cpu,
            first_run: OnceLock::new(),
            boot_ready: OnceLock::new(),
        })
    }

    /// Asks the VM to stop; the first reason wins.
    pub(crate) fn request_exit(&self, reason: ExitReason) {
        if let Ok(mut slot) = self.reason.lock()
            && slot.is_none()
        {
            *slot = Some(reason);
        }
        self.stopping.store(true, Ordering::SeqCst);
        // A full counter only means a wake-up is already pending.
        let _ = self.stop_evt.write(1);
    }

    pub(crate) fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    pub(crate) fn reason(&self) -> Option<ExitReason> {
        self.reason.lock().ok().and_then(|r| r.clone())
    }

    pub(crate) fn mark_first_run(&self) {
        self.first_run.get_or_init(|| {
            let cpu = process_cpu_time();
            (
                self.started.elapsed(),
                cpu.saturating_sub(self.started_cpu),
                cpu,
            )
        });
    }
}
