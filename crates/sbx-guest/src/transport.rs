//! Byte-stream transports between the sandbox and the host: Unix sockets (namespace sandbox) and vsock (microVM).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;

/// Where to listen or connect.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A vsock address (`cid` is ignored when listening: any CID).
    Vsock {
        /// Context id (2 = the host).
        cid: u32,
        /// Port.
        port: u32,
    },
}

/// The host's vsock context id.
pub const VSOCK_HOST_CID: u32 = 2;

impl Endpoint {
    /// Parses `unix:/path`, `vsock:PORT` (cid = any/host) or `vsock:CID:PORT`.
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if !path.starts_with('/') {
                return Err("unix socket path must be absolute".into());
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(rest) = s.strip_prefix("vsock:") {
            let num = |v: &str| {
                v.parse::<u32>()
                    .map_err(|e| format!("bad vsock number {v:?}: {e}"))
            };
            return match rest.split_once(':') {
                Some((cid, port)) => Ok(Endpoint::Vsock {
                    cid: num(cid)?,
                    port: num(port)?,
                }),
                None => Ok(Endpoint::Vsock {
                    cid: VSOCK_HOST_CID,
                    port: num(rest)?,
                }),
            };
        }
        Err("expected unix:/path or vsock:[CID:]PORT".into())
    }

    /// Connects to the endpoint.
    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Endpoint::Vsock { cid, port } => vsock::connect(*cid, *port).map(Stream::Vsock),
        }
    }

    /// Listens on the endpoint (a stale Unix socket file is replaced).
    pub fn listen(&self) -> io::Result<Listener> {
        match self {
            Endpoint::Unix(path) => {
                match std::fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e),
                }
                UnixListener::bind(path).map(Listener::Unix)
            }
            Endpoint::Vsock { port, .. } => vsock::listen(*port).map(Listener::Vsock),
        }
    }
}

/// A connected stream of either kind.
#[derive(Debug)]
pub enum Stream {
    /// Unix socket.
    Unix(UnixStream),
    /// vsock socket.
    Vsock(OwnedFd),
}

impl Stream {
    /// A second handle on the same connection (for a reader and a writer thread).
    pub fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Vsock(fd) => fd.try_clone().map(Stream::Vsock),
        }
    }

    /// Shuts down one or both directions.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        match self {
            Stream::Unix(s) => s.shutdown(how),
            Stream::Vsock(fd) => {
                let how = match how {
                    Shutdown::Read => rustix::net::Shutdown::Read,
                    Shutdown::Write => rustix::net::Shutdown::Write,
                    Shutdown::Both => rustix::net::Shutdown::Both,
                };
                rustix::net::shutdown(fd, how).map_err(io::Error::from)
            }
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.read(buf),
            Stream::Vsock(fd) => rustix::io::read(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Unix(s) => s.write(buf),
            Stream::Vsock(fd) => rustix::io::write(fd.as_fd(), buf).map_err(io::Error::from),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A listening socket of either kind.
#[derive(Debug)]
pub enum Listener {
    /// Unix socket.
    Unix(UnixListener),
    /// vsock socket.
    Vsock(OwnedFd),
}

impl Listener {
    /// Waits for the next connection.
    pub fn accept(&self) -> io::Result<Stream> {
        match self {
            Listener::Unix(l) => l.accept().map(|(s, _)| Stream::Unix(s)),
            Listener::Vsock(fd) => rustix::net::accept_with(fd, rustix::net::SocketFlags::CLOEXEC)
                .map_err(io::Error::from)
                .map(Stream::Vsock),
        }
    }
}

/// AF_VSOCK sockets. rustix and std have no vsock address type, so the address is built here from libc.
mod vsock {
    use super::*;

    fn socket() -> io::Result<OwnedFd> {
        // SAFETY: socket() has no memory preconditions; the returned descriptor is checked before being owned.
        let fd = unsafe { libc::socket(libc::AF_VSOCK, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: fd is a fresh, valid descriptor that nothing else owns.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    fn addr(cid: u32, port: u32) -> libc::sockaddr_vm {
        // SAFETY: sockaddr_vm is a plain C struct for which all-zero bytes are a valid value.
        let mut a: libc::sockaddr_vm = unsafe { std::mem::zeroed() };
        a.svm_family = libc::AF_VSOCK as libc::sa_family_t;
        a.svm_cid = cid;
        a.svm_port = port;
        a
    }

    const ADDR_LEN: libc::socklen_t = std::mem::size_of::<libc::sockaddr_vm>() as libc::socklen_t;

    pub(super) fn connect(cid: u32, port: u32) -> io::Result<OwnedFd> {
        let fd = socket()?;
        let a = addr(cid, port);
        // SAFETY: `a` is a valid sockaddr_vm that outlives the call and ADDR_LEN is its size.
        let rc = unsafe { libc::connect(fd.as_raw_fd(), (&raw const a).cast(), ADDR_LEN) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(fd)
    }

    pub(super) fn listen(port: u32) -> io::Result<OwnedFd> {
        let fd = socket()?;
        let a = addr(libc::VMADDR_CID_ANY, port);
        // SAFETY: `a` is a valid sockaddr_vm that outlives the call and ADDR_LEN is its size.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const a).cast(), ADDR_LEN) };
        if rc < 0 {
            return Err(io::Error::last_os_error());
        }
        rustix::net::listen(&fd, 64).map_err(io::Error::from)?;
        Ok(fd)
    }
}
