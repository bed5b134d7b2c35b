//! The initramfs the guest kernel starts: the static agent as `/init`, the sandbox CA, `/dev/console`. Written in the
//! cpio "newc" format the kernel unpacks. Keeping the agent out of the template means a template never has to be
//! rebuilt when sbx is updated.

use std::io::Write;
use std::path::Path;

use crate::error::{MicroVmError, io};

/// Where the sandbox CA sits in the initramfs (the agent installs it into the root's trust stores).
pub const CA_PATH: &str = "/sbx/ca.pem";

const DIR: u32 = 0o040_755;
const FILE_EXEC: u32 = 0o100_755;
const FILE: u32 = 0o100_644;
const CHAR_DEV: u32 = 0o020_600;

/// A cpio newc archive being written.
#[derive(Debug, Default)]
pub struct Cpio {
    out: Vec<u8>,
    next_ino: u32,
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Cpio {
        Cpio {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170_000 == 0o040_000 { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0,
            0,
            nlink,
            0,
            u32::try_from(data.len()).unwrap_or(u32::MAX),
            0,
            0,
            rdev.0,
            rdev.1,
            u32::try_from(name.len() + 1).unwrap_or(u32::MAX),
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    /// Adds a directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, DIR, (0, 0), &[]);
    }

    /// Adds a regular file (`executable` gives mode 0755, otherwise 0644).
    pub fn file(&mut self, name: &str, data: &[u8], executable: bool) {
        self.entry(
            name,
            if executable { FILE_EXEC } else { FILE },
            (0, 0),
            data,
        );
    }

    /// Adds a character device node.
    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) {
        self.entry(name, CHAR_DEV, (major, minor), &[]);
    }

    /// Ends the archive and returns its bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel reads initramfs in 512-byte blocks; pad like cpio(1) does.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

/// Writes the initramfs for `agent` (and the CA, when given) to `dest`, atomically.
pub fn write(dest: &Path, agent: &Path, ca: Option<&Path>) -> Result<(), MicroVmError> {
    let agent_bytes = std::fs::read(agent).map_err(io("read the agent", agent))?;
    let mut cpio = Cpio::new();
    for dir in [
        "dev",
        "proc",
        "sys",
        "run",
        "tmp",
        "sbx",
        "sbx/lower",
        "sbx/state",
        "sbx/root",
    ] {
        cpio.dir(dir);
    }
    cpio.char_dev("dev/console", 5, 1);
    cpio.file("init", &agent_bytes, true);
    if let Some(ca) = ca {
        let pem = std::fs::read(ca).map_err(io("read the sandbox CA", ca))?;
        cpio.file(CA_PATH.trim_start_matches('/'), &pem, false);
    }
    let bytes = cpio.finish();
    let tmp = dest.with_extension(format!("cpio.tmp.{}", std::process::id()));
    let mut file = std::fs::File::create(&tmp).map_err(io("create", &tmp))?;
    file.write_all(&bytes)
        .and_then(|()| file.sync_all())
        .map_err(io("write", &tmp))?;
    std::fs::rename(&tmp, dest).map_err(io("rename into place", dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpio_lists_and_extracts_with_the_system_tool() {
        let Some(cpio_tool) = ["/usr/bin/cpio", "/bin/cpio"]
            .into_iter()
            .find(|p| Path::new(p).exists())
        else {
            println!(
                "skipped: cpio(1) is not installed (apt-get install cpio), so the archive cannot be cross-checked"
            );
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let agent = dir.path().join("agent");
        std::fs::write(&agent, b"#!/bin/sh\necho agent\n").unwrap();
        let ca = dir.path().join("ca.pem");
        std::fs::write(&ca, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let archive = dir.path().join("agent.cpio");
        write(&archive, &agent, Some(&ca)).unwrap();
        assert!(
            std::fs::metadata(&archive)
                .unwrap()
                .len()
                .is_multiple_of(512)
        );
        let out = std::process::Command::new(cpio_tool)
            .args(["-t", "-v", "-F"])
            .arg(&archive)
            .output()
            .unwrap();
        let listing = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        for name in ["init", "sbx/ca.pem", "dev/console", "sbx/lower"] {
            assert!(
                listing.lines().any(|l| l.ends_with(name)),
                "{name} missing from:\n{listing}"
            );
        }
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(" init")),
            "{listing}"
        );
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("crw-------") && l.ends_with("dev/console")),
            "{listing}"
        );
        let x = dir.path().join("x");
        std::fs::create_dir(&x).unwrap();
        let status = std::process::Command::new(cpio_tool)
            .current_dir(&x)
            .args(["-i", "-d", "--no-absolute-filenames", "-F"])
            .arg(&archive)
            .args(["init", "sbx/ca.pem"])
            .status()
            .unwrap();
        assert!(status.success());
        assert_eq!(
            std::fs::read(x.join("init")).unwrap(),
            b"#!/bin/sh\necho agent\n"
        );
        assert_eq!(
            std::fs::read_to_string(x.join("sbx/ca.pem")).unwrap(),
            "-----BEGIN CERTIFICATE-----\n"
        );
    }

    #[test]
    fn entries_are_aligned_and_the_trailer_ends_the_archive() {
        let mut c = Cpio::new();
        c.file("a", b"123", false);
        let bytes = c.finish();
        assert!(bytes.starts_with(b"070701"));
        // Header (110) + "a\0" padded to 112, data "123" padded to 4 → the trailer starts at 116.
        assert_eq!(&bytes[116..122], b"070701");
        assert_eq!(&bytes[116 + 110..116 + 120], b"TRAILER!!!");
    }
}
