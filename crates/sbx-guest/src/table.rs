//! All sessions of the agent, and the reaper that collects every child (the agent is init, so orphans land here too).

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::Duration;

use rustix::process::{Pid, WaitOptions, WaitStatus, waitpid};
use sbx_proto::{ExitStatus, SessionId};

use crate::session::{Session, lock};

/// The session table.
#[derive(Debug, Default)]
pub struct SessionTable {
    sessions: Mutex<HashMap<SessionId, Arc<Session>>>,
    by_pid: Mutex<HashMap<i32, SessionId>>,
    /// Held (shared) while a command is being spawned: std reaps a child whose exec failed itself, so the reaper
    /// must not collect a pid before its spawn returned.
    spawn_gate: RwLock<()>,
    children: Mutex<bool>,
    child_added: Condvar,
}

impl SessionTable {
    /// An empty table.
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether `id` is taken.
    pub fn contains(&self, id: SessionId) -> bool {
        lock(&self.sessions).contains_key(&id)
    }

    /// Runs `spawn` with the reaper held off, then registers the session it returns.
    pub fn spawn_with<E>(
        &self,
        spawn: impl FnOnce() -> Result<Arc<Session>, E>,
    ) -> Result<Arc<Session>, E> {
        let _gate = self.spawn_gate.read().unwrap_or_else(|p| p.into_inner());
        let session = spawn()?;
        lock(&self.sessions).insert(session.id(), Arc::clone(&session));
        lock(&self.by_pid).insert(session.pid(), session.id());
        *lock(&self.children) = true;
        self.child_added.notify_all();
        Ok(session)
    }

    /// The session `id`.
    pub fn get(&self, id: SessionId) -> Option<Arc<Session>> {
        lock(&self.sessions).get(&id).cloned()
    }

    /// Drops sessions whose `Exit` was delivered to a connection (detached ones wait for an attach).
    pub fn sweep(&self) {
        lock(&self.sessions).retain(|_, s| !s.is_finished() || s.is_detached());
    }

    /// Removes session `id`.
    pub fn remove(&self, id: SessionId) {
        lock(&self.sessions).remove(&id);
    }

    /// Every session.
    pub fn all(&self) -> Vec<Arc<Session>> {
        lock(&self.sessions).values().cloned().collect()
    }

    /// Reaps children forever (run on its own thread).
    pub fn reap_forever(&self) {
        loop {
            match peek_exited_child() {
                Some(pid) => self.reap(pid),
                None => {
                    let guard = lock(&self.children);
                    let (mut guard, _) = self
                        .child_added
                        .wait_timeout(guard, Duration::from_millis(200))
                        .unwrap_or_else(|p| p.into_inner());
                    *guard = false;
                }
            }
        }
    }

    fn reap(&self, pid: Pid) {
        let _gate = self.spawn_gate.write().unwrap_or_else(|p| p.into_inner());
        let Ok(Some((pid, status))) = waitpid(Some(pid), WaitOptions::NOHANG) else {
            return;
        };
        let session = lock(&self.by_pid)
            .remove(&pid.as_raw_nonzero().get())
            .and_then(|id| self.get(id));
        if let Some(session) = session {
            session.process_exited(exit_status(status));
        }
    }
}

/// Converts a wait status.
pub fn exit_status(status: WaitStatus) -> ExitStatus {
    match (status.exit_status(), status.terminating_signal()) {
        (Some(code), _) => ExitStatus::Code(code),
        (None, Some(sig)) => ExitStatus::Signal(sig),
        (None, None) => ExitStatus::Code(-1),
    }
}

/// Blocks until some child has exited and returns its pid without reaping it; `None` when there are no children.
fn peek_exited_child() -> Option<Pid> {
    // SAFETY: siginfo_t is a plain C struct; all-zero is a valid value.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: `info` is a valid, writable siginfo_t for the duration of the call.
        let rc =
            unsafe { libc::waitid(libc::P_ALL, 0, &raw mut info, libc::WEXITED | libc::WNOWAIT) };
        if rc == 0 {
            // SAFETY: waitid succeeded with WEXITED, so the kernel filled the child fields of the union.
            let pid = unsafe { info.si_pid() };
            return Pid::from_raw(pid);
        }
        if std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return None;
        }
    }
}
