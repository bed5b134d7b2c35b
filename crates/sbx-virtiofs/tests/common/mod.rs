//! Shared fixtures: a share mounted through the host kernel's FUSE, and raw-protocol request builders.
#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sbx_virtiofs::abi::{InHeader, opcode};
use sbx_virtiofs::{FileServer, HostMount, MountError, MountOptions, Outcome, ShareConfig};

/// A temp dir holding `share/` (served), `mnt/` (mount point) and `outside/` (must never change).
pub struct Mounted {
    pub tmp: tempfile::TempDir,
    pub share: PathBuf,
    pub mnt: PathBuf,
    pub outside: PathBuf,
    pub server: Arc<FileServer>,
    mount: Option<HostMount>,
}

impl Mounted {
    pub fn unmount(mut self) {
        if let Some(m) = self.mount.take() {
            m.unmount().expect("unmount");
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if let Some(m) = self.mount.take() {
            let _ = m.unmount();
        }
    }
}

/// Mounts a fresh share; `None` (after printing why) where FUSE mounts are impossible.
pub fn mount(test: &str, configure: impl FnOnce(ShareConfig) -> ShareConfig) -> Option<Mounted> {
    let tmp = tempfile::tempdir().expect("tempdir");
    let share = tmp.path().join("share");
    let mnt = tmp.path().join("m").join("mnt");
    let outside = tmp.path().join("outside");
    for d in [&share, &mnt, &outside] {
        std::fs::create_dir_all(d).expect("mkdir");
    }
    std::fs::write(outside.join("secret"), b"outside data").expect("write");
    std::fs::set_permissions(
        outside.join("secret"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    )
    .expect("chmod");
    let server = Arc::new(FileServer::new(configure(ShareConfig::new(&share))).expect("server"));
    match HostMount::mount(Arc::clone(&server), &mnt, &MountOptions::default()) {
        Ok(m) => Some(Mounted {
            tmp,
            share,
            mnt,
            outside,
            server,
            mount: Some(m),
        }),
        Err(e @ (MountError::OpenDevice { .. } | MountError::NotPermitted { .. })) => {
            eprintln!("SKIPPED {test}: host FUSE mount unavailable here: {e}");
            None
        }
        Err(e) => panic!("mount failed: {e}"),
    }
}

/// Snapshot of a tree: relative path → (kind, mode bits, content or link target).
pub fn snapshot(root: &Path) -> Vec<(String, char, u32, Vec<u8>)> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).expect("read_dir") {
            let e = e.expect("entry");
            let p = e.path();
            let md = std::fs::symlink_metadata(&p).expect("lstat");
            let rel = p
                .strip_prefix(root)
                .expect("prefix")
                .to_string_lossy()
                .into_owned();
            let mode = md.permissions().mode() & 0o7777;
            if md.file_type().is_symlink() {
                out.push((
                    rel,
                    'l',
                    0,
                    std::fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_encoded_bytes(),
                ));
            } else if md.is_dir() {
                out.push((rel, 'd', mode, Vec::new()));
                stack.push(p);
            } else {
                out.push((rel, 'f', mode, std::fs::read(&p).expect("read")));
            }
        }
    }
    out.sort();
    out
}

/// Builds raw FUSE requests for a server driven without a kernel.
pub struct Client {
    pub server: Arc<FileServer>,
    unique: u64,
}

/// A decoded reply: errno (0 = success) and payload.
#[derive(Debug)]
pub struct Reply {
    pub error: i32,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn u64_at(&self, off: usize) -> u64 {
        u64::from_ne_bytes(self.body[off..off + 8].try_into().unwrap())
    }
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_ne_bytes(self.body[off..off + 4].try_into().unwrap())
    }
    /// Node id of an entry reply.
    pub fn nodeid(&self) -> u64 {
        assert_eq!(self.error, 0, "expected success, got errno {}", -self.error);
        self.u64_at(0)
    }
    /// `fh` of an open reply (or of the open part of a create reply at `offset`).
    pub fn fh_at(&self, offset: usize) -> u64 {
        assert_eq!(self.error, 0, "expected success, got errno {}", -self.error);
        self.u64_at(offset)
    }
}

pub fn cstr(s: &str) -> Vec<u8> {
    let mut v = s.as_bytes().to_vec();
    v.push(0);
    v
}

/// Builds a request message.
pub fn message(op: u32, nodeid: u64, unique: u64, body: &[u8]) -> Vec<u8> {
    let header = InHeader {
        len: (40 + body.len()) as u32,
        opcode: op,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
    };
    let mut msg = Vec::new();
    header.encode(&mut msg);
    msg.extend_from_slice(body);
    msg
}

/// An INIT body offering everything, from a kernel speaking protocol 7.38 (Linux 6.2–6.5).
pub fn init_body() -> Vec<u8> {
    init_body_minor(38)
}

/// An INIT body offering everything, from a kernel speaking protocol 7.`minor`.
pub fn init_body_minor(minor: u32) -> Vec<u8> {
    let mut b = Vec::new();
    for v in [7u32, minor, 1 << 20, u32::MAX] {
        b.extend_from_slice(&v.to_ne_bytes());
    }
    b.extend_from_slice(&[0u8; 48]);
    b
}

impl Client {
    pub fn new(config: ShareConfig) -> Self {
        Self::with_kernel_minor(config, 38)
    }

    /// A client whose INIT says it is a kernel speaking protocol 7.`minor`.
    pub fn with_kernel_minor(config: ShareConfig, minor: u32) -> Self {
        let server = Arc::new(FileServer::new(config).expect("server"));
        let mut c = Self { server, unique: 0 };
        let r = c.call(opcode::INIT, 0, &init_body_minor(minor));
        assert_eq!(r.error, 0);
        c
    }

    pub fn call(&mut self, op: u32, nodeid: u64, body: &[u8]) -> Reply {
        self.unique += 1;
        let msg = message(op, nodeid, self.unique, body);
        let mut out = Vec::new();
        match self.server.handle(&msg, &mut out) {
            Outcome::NoReply => Reply {
                error: 0,
                body: Vec::new(),
            },
            _ => {
                assert_eq!(
                    u32::from_ne_bytes(out[0..4].try_into().unwrap()) as usize,
                    out.len()
                );
                assert_eq!(
                    u64::from_ne_bytes(out[8..16].try_into().unwrap()),
                    self.unique
                );
                Reply {
                    error: i32::from_ne_bytes(out[4..8].try_into().unwrap()),
                    body: out[16..].to_vec(),
                }
            }
        }
    }

    pub fn lookup(&mut self, parent: u64, name: &str) -> Reply {
        self.call(opcode::LOOKUP, parent, &cstr(name))
    }

    pub fn mkdir(&mut self, parent: u64, name: &str, mode: u32) -> Reply {
        let mut b = Vec::new();
        b.extend_from_slice(&mode.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&cstr(name));
        self.call(opcode::MKDIR, parent, &b)
    }

    pub fn mknod(&mut self, parent: u64, name: &str, mode: u32, rdev: u32) -> Reply {
        let mut b = Vec::new();
        for v in [mode, rdev, 0, 0] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&cstr(name));
        self.call(opcode::MKNOD, parent, &b)
    }

    pub fn symlink(&mut self, parent: u64, name: &str, target: &str) -> Reply {
        let mut b = cstr(name);
        b.extend_from_slice(&cstr(target));
        self.call(opcode::SYMLINK, parent, &b)
    }

    pub fn create(&mut self, parent: u64, name: &str, flags: u32, mode: u32) -> Reply {
        let mut b = Vec::new();
        for v in [flags, mode, 0, 0] {
            b.extend_from_slice(&v.to_ne_bytes());
        }
        b.extend_from_slice(&cstr(name));
        self.call(opcode::CREATE, parent, &b)
    }

    pub fn open(&mut self, node: u64, flags: u32) -> Reply {
        let mut b = flags.to_ne_bytes().to_vec();
        b.extend_from_slice(&0u32.to_ne_bytes());
        self.call(opcode::OPEN, node, &b)
    }

    pub fn write(&mut self, node: u64, fh: u64, offset: u64, data: &[u8]) -> Reply {
        let mut b = Vec::new();
        b.extend_from_slice(&fh.to_ne_bytes());
        b.extend_from_slice(&offset.to_ne_bytes());
        b.extend_from_slice(&(data.len() as u32).to_ne_bytes());
        b.extend_from_slice(&[0u8; 20]);
        b.extend_from_slice(data);
        self.call(opcode::WRITE, node, &b)
    }

    pub fn read(&mut self, node: u64, fh: u64, offset: u64, size: u32) -> Reply {
        let mut b = Vec::new();
        b.extend_from_slice(&fh.to_ne_bytes());
        b.extend_from_slice(&offset.to_ne_bytes());
        b.extend_from_slice(&size.to_ne_bytes());
        b.extend_from_slice(&[0u8; 20]);
        self.call(opcode::READ, node, &b)
    }

    /// SETATTR with the given `valid` bits and values.
    pub fn setattr(
        &mut self,
        node: u64,
        valid: u32,
        mode: u32,
        uid: u32,
        gid: u32,
        size: u64,
    ) -> Reply {
        let mut b = Vec::new();
        b.extend_from_slice(&valid.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&0u64.to_ne_bytes()); // fh
        b.extend_from_slice(&size.to_ne_bytes());
        b.extend_from_slice(&[0u8; 8 * 4 + 4 * 3]); // lock_owner, a/m/ctime, nsecs
        b.extend_from_slice(&mode.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&uid.to_ne_bytes());
        b.extend_from_slice(&gid.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        self.call(opcode::SETATTR, node, &b)
    }

    pub fn rename(&mut self, olddir: u64, old: &str, newdir: u64, new: &str, flags: u32) -> Reply {
        let mut b = newdir.to_ne_bytes().to_vec();
        b.extend_from_slice(&flags.to_ne_bytes());
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&cstr(old));
        b.extend_from_slice(&cstr(new));
        self.call(opcode::RENAME2, olddir, &b)
    }

    pub fn link(&mut self, old: u64, newparent: u64, name: &str) -> Reply {
        let mut b = old.to_ne_bytes().to_vec();
        b.extend_from_slice(&cstr(name));
        self.call(opcode::LINK, newparent, &b)
    }

    pub fn setxattr(&mut self, node: u64, name: &str, value: &[u8]) -> Reply {
        let mut b = (value.len() as u32).to_ne_bytes().to_vec();
        b.extend_from_slice(&0u32.to_ne_bytes());
        b.extend_from_slice(&cstr(name));
        b.extend_from_slice(value);
        self.call(opcode::SETXATTR, node, &b)
    }

    pub fn forget(&mut self, node: u64, n: u64) -> Reply {
        self.call(opcode::FORGET, node, &n.to_ne_bytes())
    }
}

/// Fixed errno values used in assertions.
pub const EPERM: i32 = -1;
pub const ENOENT: i32 = -2;
pub const EACCES: i32 = -13;
pub const EXDEV: i32 = -18;
pub const ENOTDIR: i32 = -20;
pub const EINVAL: i32 = -22;
pub const EROFS: i32 = -30;
pub const ELOOP: i32 = -40;
pub const ESTALE: i32 = -116;
pub const EOPNOTSUPP: i32 = -95;
