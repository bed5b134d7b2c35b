//! Starting one command: on a new pseudo-terminal or with pipes, as the requested user, in its own process group.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{Winsize, tcsetwinsize};
use sbx_proto::{ExecRequest, WindowSize};

use crate::users::UserInfo;

/// Which stream an output reader carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    /// stdout, or everything a pty shows.
    Stdout,
    /// stderr (pipe sessions).
    Stderr,
}

/// A started command and its plumbing.
pub struct Spawned {
    /// Pid (also the process group id).
    pub pid: i32,
    /// Where stdin bytes go.
    pub stdin: Box<dyn Write + Send>,
    /// Output streams to pump.
    pub outputs: Vec<(OutputKind, Box<dyn Read + Send>)>,
    /// The pty master, for resize and EOF; `None` for pipes.
    pub pty: Option<File>,
}

impl std::fmt::Debug for Spawned {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spawned")
            .field("pid", &self.pid)
            .field("pty", &self.pty.is_some())
            .finish_non_exhaustive()
    }
}

/// Finds `program` in `path` (a `PATH` value) unless it contains a slash; the error names what was searched.
pub fn resolve_program(program: &str, path: &str) -> io::Result<PathBuf> {
    let is_exec = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        let p = PathBuf::from(program);
        return if is_exec(&p) {
            Ok(p)
        } else {
            Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{program}: no such executable in the sandbox"),
            ))
        };
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_exec(p))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::NotFound,
                format!("{program}: command not found in PATH={path}"),
            )
        })
}

/// Starts `req` with the merged environment `env` as `user` (or as the agent's own user).
pub fn spawn(
    req: &ExecRequest,
    env: &[(String, String)],
    user: Option<&UserInfo>,
) -> io::Result<Spawned> {
    let (program, args) = req.argv.split_first().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "exec request has an empty argv",
        )
    })?;
    let path_var = env
        .iter()
        .rev()
        .find(|(k, _)| k == "PATH")
        .map_or("/usr/bin:/bin", |(_, v)| v.as_str());
    let resolved = resolve_program(program, path_var)?;
    let mut cmd = Command::new(&resolved);
    cmd.arg0(program)
        .args(args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v)));
    let cwd = req
        .cwd
        .clone()
        .or_else(|| user.map(|u| u.home.clone()))
        .unwrap_or_else(|| "/".into());
    cmd.current_dir(&cwd);
    let switch = user
        .filter(|u| u.uid != rustix::process::geteuid().as_raw())
        .cloned();
    match req.tty {
        Some(size) => spawn_pty(cmd, size, switch),
        None => spawn_pipes(cmd, switch),
    }
}

/// Gives the command's end of a pipe or its terminal to the user it runs as. Opening `/dev/stdout`, `/dev/stderr`
/// or `/proc/self/fd/N` re-opens the object with a permission check, and a pipe or pty made by the agent (root)
/// is root's, mode 0600/0620: without this, `curl -o /dev/stderr` as the agent user fails.
fn give_to(fd: &impl std::os::fd::AsFd, user: Option<&UserInfo>) -> io::Result<()> {
    if let Some(u) = user {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(u.uid)),
            Some(rustix::fs::Gid::from_raw(u.gid)),
        )?;
    }
    Ok(())
}

fn spawn_pipes(mut cmd: Command, user: Option<UserInfo>) -> io::Result<Spawned> {
    let (stdin_r, stdin_w) = io::pipe()?;
    let (stdout_r, stdout_w) = io::pipe()?;
    let (stderr_r, stderr_w) = io::pipe()?;
    for end in [
        OwnedFd::from(stdin_r.try_clone()?),
        OwnedFd::from(stdout_w.try_clone()?),
        OwnedFd::from(stderr_w.try_clone()?),
    ] {
        give_to(&end, user.as_ref())?;
    }
    cmd.stdin(Stdio::from(stdin_r))
        .stdout(Stdio::from(stdout_w))
        .stderr(Stdio::from(stderr_w))
        .process_group(0);
    install_user_switch(&mut cmd, user, false);
    let child = cmd.spawn()?;
    // The child's ends were moved into `cmd`; dropping it closes our copies, so EOF arrives when the command (and
    // whatever inherited its output) is done.
    drop(cmd);
    Ok(Spawned {
        pid: child.id() as i32,
        stdin: Box::new(stdin_w),
        outputs: vec![
            (OutputKind::Stdout, Box::new(stdout_r)),
            (OutputKind::Stderr, Box::new(stderr_r)),
        ],
        pty: None,
    })
}

fn winsize(size: WindowSize) -> Winsize {
    Winsize {
        ws_row: size.rows,
        ws_col: size.cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    }
}

/// Sets the terminal size of a pty master.
pub fn resize(master: &File, size: WindowSize) -> io::Result<()> {
    tcsetwinsize(master, winsize(size)).map_err(io::Error::from)
}

fn open_pty(size: WindowSize) -> io::Result<(File, OwnedFd)> {
    let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY | OpenptFlags::CLOEXEC)?;
    grantpt(&master)?;
    unlockpt(&master)?;
    let name = ptsname(&master, Vec::new())?;
    let slave = rustix::fs::open(
        name.as_c_str(),
        rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )?;
    let master = File::from(master);
    resize(&master, size)?;
    Ok((master, slave))
}

fn spawn_pty(mut cmd: Command, size: WindowSize, user: Option<UserInfo>) -> io::Result<Spawned> {
    let (master, slave) = open_pty(size)?;
    give_to(&slave, user.as_ref())?;
    cmd.stdin(Stdio::from(slave.try_clone()?))
        .stdout(Stdio::from(slave.try_clone()?))
        .stderr(Stdio::from(slave));
    install_user_switch(&mut cmd, user, true);
    let child = cmd.spawn()?;
    // Our copies of the slave were moved into `cmd` and are closed when it drops, so the master reads EIO once the
    // command and everything it started have closed the terminal.
    drop(cmd);
    Ok(Spawned {
        pid: child.id() as i32,
        stdin: Box::new(master.try_clone()?),
        outputs: vec![(OutputKind::Stdout, Box::new(PtyReader(master.try_clone()?)))],
        pty: Some(master),
    })
}

/// Reads a pty master, turning the EIO that signals "all slave ends closed" into end of file.
#[derive(Debug)]
struct PtyReader(File);

impl Read for PtyReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self.0.read(buf) {
            Err(e) if e.raw_os_error() == Some(libc::EIO) => Ok(0),
            other => other,
        }
    }
}

/// Runs in the child between fork and exec: new session + controlling terminal for a pty, then the user switch.
/// std's own `uid`/`gid` cannot be used because supplementary groups must be set before dropping root.
fn install_user_switch(cmd: &mut Command, user: Option<UserInfo>, pty: bool) {
    let groups: Vec<libc::gid_t> = user.as_ref().map(|u| u.groups.clone()).unwrap_or_default();
    let ids = user.map(|u| (u.uid, u.gid));
    let hook = move || -> io::Result<()> {
        if pty {
            rustix::process::setsid()?;
            rustix::process::ioctl_tiocsctty(rustix::stdio::stdin())?;
        }
        if let Some((uid, gid)) = ids {
            set_groups(&groups)?;
            set_ids(uid, gid)?;
        }
        Ok(())
    };
    // SAFETY: the hook only makes raw syscalls (setsid, ioctl, setgroups, setresgid, setresuid) on data captured
    // before the fork; it allocates nothing and takes no locks, so it is async-signal-safe.
    unsafe {
        cmd.pre_exec(hook);
    }
}

fn set_groups(groups: &[libc::gid_t]) -> io::Result<()> {
    // SAFETY: the pointer and length describe the live `groups` slice.
    if unsafe { libc::setgroups(groups.len(), groups.as_ptr()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn set_ids(uid: u32, gid: u32) -> io::Result<()> {
    // SAFETY: setresgid takes plain integers.
    if unsafe { libc::setresgid(gid, gid, gid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: setresuid takes plain integers.
    if unsafe { libc::setresuid(uid, uid, uid) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}
