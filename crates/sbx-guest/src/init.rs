//! Init duties: loopback, microVM mounts, shutdown.

use std::io;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use sbx_proto::ErrorReport;

use crate::config::Mode;
use crate::service::Service;

/// Brings the loopback interface up (a fresh network namespace or VM has it down), so the forwarder can listen.
pub fn loopback_up() -> io::Result<()> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0")
        .or_else(|_| std::net::UdpSocket::bind("127.0.0.1:0"));
    let sock = match sock {
        Ok(s) => s,
        // Binding can fail before lo is up in some kernels; a raw datagram socket needs no address.
        Err(_) => {
            return loopback_up_with(
                rustix::net::socket(
                    rustix::net::AddressFamily::INET,
                    rustix::net::SocketType::DGRAM,
                    None,
                )?
                .as_raw_fd(),
            );
        }
    };
    loopback_up_with(sock.as_raw_fd())
}

/// Makes the sandbox's own hostname resolve (to 127.0.1.1, as Debian does), since the sandbox has no DNS: without it
/// `sudo` and other programs that look up their host name stall, then warn.
pub fn name_host_in(etc_hosts: &std::path::Path) -> io::Result<()> {
    let uname = rustix::system::uname();
    let name = uname.nodename().to_string_lossy().into_owned();
    let existing = match std::fs::read_to_string(etc_hosts) {
        Ok(text) => text,
        Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    match hosts_naming(&existing, &name) {
        Some(text) => std::fs::write(etc_hosts, text),
        None => Ok(()),
    }
}

/// `hosts` with lines for localhost and `name` added where missing; `None` when nothing is missing (or `name` is
/// not a plain host name).
fn hosts_naming(hosts: &str, name: &str) -> Option<String> {
    let plain = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    let named = |wanted: &str| {
        hosts.lines().any(|line| {
            let line = line.split('#').next().unwrap_or_default();
            line.split_whitespace().skip(1).any(|n| n == wanted)
        })
    };
    let mut add = String::new();
    if !named("localhost") {
        add.push_str("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n");
    }
    if plain && !named(name) {
        add.push_str(&format!("127.0.1.1\t{name}\n"));
    }
    if add.is_empty() {
        return None;
    }
    let mut text = hosts.to_owned();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&add);
    Some(text)
}

fn loopback_up_with(fd: i32) -> io::Result<()> {
    // SAFETY: ifreq is a plain C struct; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: `req` is a valid ifreq naming "lo"; SIOCGIFFLAGS fills its flags member.
    if unsafe { libc::ioctl(fd, libc::SIOCGIFFLAGS, &raw mut req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFFLAGS succeeded, so the flags member of the union is the initialised one.
    let flags = unsafe { req.ifr_ifru.ifru_flags };
    req.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    // SAFETY: `req` is a valid ifreq with the flags member set.
    if unsafe { libc::ioctl(fd, libc::SIOCSIFFLAGS, &raw const req) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Mounts the pseudo filesystems a microVM init must provide itself. Errors name the mount point.
pub fn mount_pseudo_filesystems() -> Result<(), String> {
    use rustix::mount::{MountFlags, mount};
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV;
    let table: [(&str, &str, &str, MountFlags, &std::ffi::CStr); 6] = [
        ("proc", "/proc", "proc", nosuid | MountFlags::NOEXEC, c""),
        ("sysfs", "/sys", "sysfs", nosuid | MountFlags::NOEXEC, c""),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID,
            c"mode=0755",
        ),
        (
            "devpts",
            "/dev/pts",
            "devpts",
            MountFlags::NOSUID | MountFlags::NOEXEC,
            c"newinstance,ptmxmode=0666,mode=0620",
        ),
        ("tmpfs", "/tmp", "tmpfs", nosuid, c"mode=1777"),
        ("tmpfs", "/run", "tmpfs", nosuid, c"mode=0755"),
    ];
    for (source, target, fstype, flags, data) in table {
        let _ = std::fs::create_dir_all(target);
        match mount(source, target, fstype, flags, Some(data)) {
            Ok(()) => {}
            Err(rustix::io::Errno::BUSY) => {}
            Err(e) => return Err(format!("mount {fstype} on {target}: {e}")),
        }
    }
    let _ = std::os::unix::fs::symlink("pts/ptmx", "/dev/ptmx");
    Ok(())
}

/// Stops every process, syncs and ends the sandbox. Only returns on failure.
pub fn shutdown(service: &Service) -> Result<(), ErrorReport> {
    stop_processes(service);
    rustix::fs::sync();
    match service.mode {
        Mode::MicroVm => {
            let err = crate::microvm::power_off();
            Err(ErrorReport::new(
                "shutdown-failed",
                format!("power off: {err:?}"),
            ))
        }
        Mode::Namespace | Mode::Process => std::process::exit(0),
    }
}

fn stop_processes(service: &Service) {
    let sessions = service.table.all();
    for s in &sessions {
        let _ = s.signal(libc::SIGTERM);
    }
    // As init of its own pid namespace or VM, the agent may signal everything else; as a plain process it must not.
    let everything = service.mode != Mode::Process;
    if everything {
        signal_all(libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && sessions.iter().any(|s| !s.is_finished()) {
        std::thread::sleep(Duration::from_millis(20));
    }
    for s in &sessions {
        let _ = s.signal(libc::SIGKILL);
    }
    if everything {
        signal_all(libc::SIGKILL);
    }
}

fn signal_all(sig: i32) {
    // SAFETY: kill(-1, sig) takes plain integers; as init it reaches every other process of the sandbox only.
    unsafe {
        libc::kill(-1, sig);
    }
}

#[cfg(test)]
mod tests {
    use super::hosts_naming;

    #[test]
    fn the_sandbox_name_is_added_once_and_comments_do_not_count() {
        let debian =
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n# 127.0.1.1 box\n";
        let named = hosts_naming(debian, "box").unwrap();
        assert_eq!(named, format!("{debian}127.0.1.1\tbox\n"));
        assert_eq!(hosts_naming(&named, "box"), None);
    }

    #[test]
    fn an_empty_or_missing_file_gets_localhost_too() {
        let text = hosts_naming("", "box").unwrap();
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"), "{text}");
        assert!(text.ends_with("127.0.1.1\tbox\n"), "{text}");
        // A last line without its newline is completed, not joined.
        assert_eq!(
            hosts_naming("127.0.0.1 localhost", "b").unwrap(),
            "127.0.0.1 localhost\n127.0.1.1\tb\n"
        );
    }

    #[test]
    fn names_that_are_not_host_names_are_not_written() {
        assert_eq!(
            hosts_naming("127.0.0.1 localhost\n", "a b\n127.0.0.1 evil"),
            None
        );
        assert_eq!(hosts_naming("127.0.0.1 localhost\n", ""), None);
    }
}
