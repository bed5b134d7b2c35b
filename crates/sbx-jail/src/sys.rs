//! The only unsafe part of the crate: `clone` into new namespaces and the child's setup, which may only make raw
//! system calls (no allocation, no locks) because the host process can be multi-threaded.

use std::ffi::{CStr, CString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use seccompiler::BpfProgram;

use crate::plan::{Op, Plan};

/// Namespaces created with the sandbox's init (cgroup is unshared by the child after the host moved it).
const CLONE_FLAGS: libc::c_int = libc::CLONE_NEWUSER
    | libc::CLONE_NEWNS
    | libc::CLONE_NEWPID
    | libc::CLONE_NEWIPC
    | libc::CLONE_NEWUTS
    | libc::CLONE_NEWNET;

/// What the child needs besides the plan.
#[derive(Debug)]
pub(crate) struct ChildFds {
    /// Read end: the host writes one byte once the id maps and cgroup are in place.
    pub(crate) go: OwnedFd,
    /// Write end (close-on-exec): the child reports `(op index, errno)` on failure; EOF means exec succeeded.
    pub(crate) report: OwnedFd,
    /// Where the agent's stdout/stderr go.
    pub(crate) log: OwnedFd,
    /// `/dev/null` for stdin.
    pub(crate) null: OwnedFd,
}

/// Failure codes for steps that are not plan ops.
pub(crate) const STEP_WAIT: u32 = 10_000;
/// unshare(CLONE_NEWCGROUP).
pub(crate) const STEP_CGROUP: u32 = 10_001;
/// Redirecting stdio.
pub(crate) const STEP_STDIO: u32 = 10_002;
/// Setting rlimits.
pub(crate) const STEP_RLIMIT: u32 = 10_003;
/// Installing seccomp.
pub(crate) const STEP_SECCOMP: u32 = 10_004;
/// execve.
pub(crate) const STEP_EXEC: u32 = 10_005;
/// Becoming root of the new user namespace.
pub(crate) const STEP_IDS: u32 = 10_006;

/// Clones the sandbox init. Returns its pid in the host's pid namespace.
pub(crate) fn clone_init(
    plan: &Plan,
    fds: &ChildFds,
    filters: &[BpfProgram],
    rlimits: &[(u32, u64)],
) -> io::Result<i32> {
    let argv: Vec<*const libc::c_char> = plan
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = plan
        .envp
        .iter()
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let progs: Vec<libc::sock_fprog> = filters
        .iter()
        .map(|p| libc::sock_fprog {
            len: p.len() as u16,
            filter: p.as_ptr().cast_mut().cast(),
        })
        .collect();
    // SAFETY: a raw clone with a NULL stack behaves like fork: the child continues on a copy of this stack. The
    // child only runs `child_main`, which makes raw system calls on data prepared above and never returns.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (CLONE_FLAGS | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        child_main(plan, fds, &progs, rlimits, &argv, &envp);
    }
    Ok(pid as i32)
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Reports a failed step to the host and exits. Async-signal-safe.
fn fail(report: RawFd, step: u32) -> ! {
    let mut msg = [0u8; 8];
    msg[..4].copy_from_slice(&step.to_ne_bytes());
    msg[4..].copy_from_slice(&errno().to_ne_bytes());
    // SAFETY: writes 8 bytes from a live stack buffer to a descriptor we own.
    unsafe { libc::write(report, msg.as_ptr().cast(), msg.len()) };
    // SAFETY: _exit ends the process at once, running no destructors or atexit handlers (none are safe here).
    unsafe { libc::_exit(127) }
}

fn ptr(c: &Option<CString>) -> *const libc::c_char {
    c.as_ref().map_or(std::ptr::null(), |c| c.as_ptr())
}

// Thin wrappers, one system call each. Every string argument is a NUL-terminated CString owned by the plan, which
// lives in the (copied) stack frame of `clone_init` for the whole life of the child; NULL where the call allows it.

fn sys_mkdir(p: &CStr) -> libc::c_int {
    // SAFETY: `p` is NUL-terminated (see above).
    unsafe { libc::mkdir(p.as_ptr(), 0o755) }
}

fn sys_touch(p: &CStr) -> libc::c_int {
    // SAFETY: `p` is NUL-terminated; the mode argument is required with O_CREAT.
    let fd = unsafe {
        libc::open(
            p.as_ptr(),
            libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
            0o644,
        )
    };
    if fd < 0 {
        return fd;
    }
    // SAFETY: `fd` was just opened by us and is closed once.
    unsafe { libc::close(fd) }
}

fn sys_mount(
    source: &Option<CString>,
    target: &CStr,
    fstype: &Option<CString>,
    flags: libc::c_ulong,
    data: &Option<CString>,
) -> libc::c_int {
    // SAFETY: all pointers are NUL-terminated strings or NULL, as mount(2) allows for source, fstype and data.
    unsafe {
        libc::mount(
            ptr(source),
            target.as_ptr(),
            ptr(fstype),
            flags,
            ptr(data).cast(),
        )
    }
}

fn sys_symlink(target: &CStr, link: &CStr) -> libc::c_int {
    // SAFETY: both are NUL-terminated.
    unsafe { libc::symlink(target.as_ptr(), link.as_ptr()) }
}

fn sys_lchown(p: &CStr, uid: u32, gid: u32) -> libc::c_int {
    // SAFETY: `p` is NUL-terminated; AT_FDCWD with AT_SYMLINK_NOFOLLOW changes the link itself, never its target.
    unsafe {
        libc::fchownat(
            libc::AT_FDCWD,
            p.as_ptr(),
            uid,
            gid,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    }
}

fn sys_chmod(p: &CStr, mode: u32) -> libc::c_int {
    // SAFETY: `p` is NUL-terminated.
    unsafe { libc::chmod(p.as_ptr(), mode) }
}

fn sys_sethostname(h: &CStr) -> libc::c_int {
    // SAFETY: pointer and length describe the live string.
    unsafe { libc::sethostname(h.as_ptr(), h.to_bytes().len()) }
}

fn sys_chdir(p: &CStr) -> libc::c_int {
    // SAFETY: `p` is NUL-terminated.
    unsafe { libc::chdir(p.as_ptr()) }
}

fn sys_pivot_root_dot() -> libc::c_long {
    // SAFETY: static NUL-terminated strings; pivot_root(".", ".") stacks the old root on top of the new one.
    unsafe { libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) }
}

fn sys_detach_dot() -> libc::c_int {
    // SAFETY: static NUL-terminated string; detaches the old root stacked on ".", so no host path stays reachable.
    unsafe { libc::umount2(c".".as_ptr(), libc::MNT_DETACH) }
}

fn sys_dup2(from: RawFd, to: RawFd) -> libc::c_int {
    // SAFETY: plain descriptor numbers; `from` is owned by the child's fds.
    unsafe { libc::dup2(from, to) }
}

fn sys_cloexec_from_3() {
    // SAFETY: plain integers; marks every descriptor >= 3 close-on-exec (the report pipe included, so its EOF tells
    // the host that exec succeeded).
    unsafe {
        libc::syscall(
            libc::SYS_close_range,
            3u32,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
}

/// Runs one plan step; `Err(())` means it failed and errno says why.
fn run_op(op: &Op) -> Result<(), ()> {
    let rc = match op {
        Op::Mkdir(p) => {
            let rc = sys_mkdir(p);
            if rc != 0 && errno() == libc::EEXIST {
                0
            } else {
                rc
            }
        }
        Op::Touch(p) => sys_touch(p),
        Op::Mount {
            source,
            target,
            fstype,
            flags,
            data,
            optional,
        } => {
            let rc = sys_mount(source, target, fstype, *flags, data);
            if rc != 0 && *optional { 0 } else { rc }
        }
        Op::Symlink(target, link) => {
            let rc = sys_symlink(target, link);
            if rc != 0 && errno() == libc::EEXIST {
                0
            } else {
                rc
            }
        }
        Op::PivotRoot(root) => return pivot(root),
        Op::Hostname(h) => sys_sethostname(h),
        Op::Chown { path, uid, gid } => sys_lchown(path, *uid, *gid),
        Op::Chmod { path, mode } => sys_chmod(path, *mode),
    };
    if rc == 0 { Ok(()) } else { Err(()) }
}

fn pivot(root: &CStr) -> Result<(), ()> {
    if sys_chdir(root) != 0
        || sys_pivot_root_dot() != 0
        || sys_detach_dot() != 0
        || sys_chdir(c"/") != 0
    {
        return Err(());
    }
    Ok(())
}

/// Makes the child root of its user namespace. With keep-id the host user is the agent inside, so the child starts
/// as the agent; the creator of a user namespace holds every capability in it, which lets it switch. Files the setup
/// creates (workspace mount points in the upper layer) then belong to root inside, and the agent execs as root.
///
/// Raw system calls, not glibc's wrappers: those broadcast the change to every thread glibc knows of (SIGSETXID)
/// and wait for each to acknowledge. This child is a fork-like clone of a multi-threaded process, so glibc's list
/// still names the parent's threads, which do not exist here: depending on what they were doing at the clone, the
/// child waited on that futex forever (seen under load, pre-exec, as an orphaned copy of the supervisor).
fn become_root() -> Result<(), ()> {
    // SAFETY: plain integer arguments; affects this (single-threaded) process only.
    if unsafe { libc::syscall(libc::SYS_setresgid, 0, 0, 0) } != 0 {
        return Err(());
    }
    // Drops the host user's supplementary groups (unmapped inside). The single mapping of an unprivileged caller
    // has setgroups denied, and it has no other groups to drop that could matter there.
    // SAFETY: an empty list with a NULL pointer is valid for setgroups.
    let _ = unsafe { libc::syscall(libc::SYS_setgroups, 0, std::ptr::null::<libc::gid_t>()) };
    // SAFETY: plain integer arguments.
    if unsafe { libc::syscall(libc::SYS_setresuid, 0, 0, 0) } != 0 {
        return Err(());
    }
    Ok(())
}

/// Clones a child into a new user namespace only, which waits for `go` (the host writes the maps first), runs `ops`
/// and exits 0 — or, given `exec` (program path, then argv from argv[0]), becomes root of the namespace and execs it with an empty
/// environment. A failed op is reported on `report` (exit 127). Returns its pid.
pub(crate) fn clone_userns_helper(
    ops: &[Op],
    exec: Option<&[CString]>,
    go: &OwnedFd,
    report: &OwnedFd,
) -> io::Result<i32> {
    let argv: Vec<*const libc::c_char> = exec
        .unwrap_or_default()
        .iter()
        .skip(1)
        .map(|a| a.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp = [std::ptr::null::<libc::c_char>()];
    // SAFETY: as in `clone_init`: fork-like clone; the child only makes raw system calls on prepared data.
    let pid = unsafe {
        libc::syscall(
            libc::SYS_clone,
            (libc::CLONE_NEWUSER | libc::SIGCHLD) as libc::c_ulong,
            0usize,
            0usize,
            0usize,
            0usize,
        )
    };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid == 0 {
        let report = report.as_raw_fd();
        let mut byte = 0u8;
        // SAFETY: reads one byte into a stack variable.
        if unsafe { libc::read(go.as_raw_fd(), (&raw mut byte).cast(), 1) } != 1 {
            fail(report, STEP_WAIT);
        }
        for (i, op) in ops.iter().enumerate() {
            if run_op(op).is_err() {
                fail(report, i as u32);
            }
        }
        if let Some(program) = exec.and_then(|e| e.first()) {
            if become_root().is_err() {
                fail(report, STEP_IDS);
            }
            // SAFETY: argv is a NULL-terminated array of pointers into the caller's CStrings, envp an empty one.
            unsafe { libc::execve(program.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
            fail(report, STEP_EXEC);
        }
        // SAFETY: ends the child at once without running the parent's destructors.
        unsafe { libc::_exit(0) }
    }
    Ok(pid as i32)
}

fn child_main(
    plan: &Plan,
    fds: &ChildFds,
    progs: &[libc::sock_fprog],
    rlimits: &[(u32, u64)],
    argv: &[*const libc::c_char],
    envp: &[*const libc::c_char],
) -> ! {
    let report = fds.report.as_raw_fd();
    let mut byte = 0u8;
    // SAFETY: reads one byte into a stack variable.
    if unsafe { libc::read(fds.go.as_raw_fd(), (&raw mut byte).cast(), 1) } != 1 {
        fail(report, STEP_WAIT);
    }
    if become_root().is_err() {
        fail(report, STEP_IDS);
    }
    // SAFETY: plain flag argument.
    if unsafe { libc::unshare(libc::CLONE_NEWCGROUP) } != 0 {
        fail(report, STEP_CGROUP);
    }
    for (i, op) in plan.ops.iter().enumerate() {
        if run_op(op).is_err() {
            fail(report, i as u32);
        }
    }
    let (null, log) = (fds.null.as_raw_fd(), fds.log.as_raw_fd());
    if sys_dup2(null, 0) < 0 || sys_dup2(log, 1) < 0 || sys_dup2(log, 2) < 0 {
        fail(report, STEP_STDIO);
    }
    sys_cloexec_from_3();
    for (resource, value) in rlimits {
        let lim = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        // SAFETY: `lim` is a valid rlimit on the stack.
        if unsafe { libc::setrlimit(*resource as _, &raw const lim) } != 0 {
            fail(report, STEP_RLIMIT);
        }
    }
    for prog in progs {
        // SAFETY: `prog` points at a BPF program owned by the caller's stack frame; the kernel copies it. No
        // NO_NEW_PRIVS: the init holds CAP_SYS_ADMIN in its user namespace, and sudo inside must keep working.
        if unsafe {
            libc::syscall(
                libc::SYS_seccomp,
                libc::SECCOMP_SET_MODE_FILTER,
                0,
                std::ptr::from_ref(prog),
            )
        } != 0
        {
            fail(report, STEP_SECCOMP);
        }
    }
    // SAFETY: argv/envp are NULL-terminated arrays of pointers into plan-owned CStrings.
    unsafe {
        libc::execve(plan.exec_path.as_ptr(), argv.as_ptr(), envp.as_ptr());
    }
    fail(report, STEP_EXEC)
}

#[cfg(test)]
mod tests {
    /// The clone children in this file run on a copy of a multi-threaded process: glibc wrappers that synchronise
    /// with other threads (the set*id family broadcasts SIGSETXID and waits for every thread it knows of) hang
    /// there. This keeps them out; the raw `SYS_` calls are used instead.
    #[test]
    fn clone_children_make_no_glibc_setxid_calls() {
        let source = include_str!("sys.rs");
        let code = source.split("#[cfg(test)]").next().unwrap_or(source);
        for wrapper in [
            "setuid",
            "setgid",
            "setresuid",
            "setresgid",
            "setreuid",
            "setregid",
            "setgroups",
        ] {
            let call = format!("libc::{wrapper}(");
            assert!(
                !code.contains(&call),
                "{call} in sys.rs: use libc::syscall(libc::SYS_{wrapper}, ...)"
            );
        }
    }
}
