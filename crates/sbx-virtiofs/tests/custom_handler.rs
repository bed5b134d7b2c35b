//! `HostMount` serves any `FuseHandler`: the transport (workers, descriptor clones, framing of replies and errors)
//! does not depend on `FileServer`. The benchmark's transport floor (`examples/null_server.rs`) relies on it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use sbx_virtiofs::abi::{Attr, EntryOut, ROOT_ID, Validity, encode_attr_out};
use sbx_virtiofs::init::{KernelInit, Negotiation, negotiate};
use sbx_virtiofs::{
    CachePolicy, FuseHandler, HostMount, MountError, MountOptions, Operation, Outcome, Request,
    frame_reply,
};

/// A root directory holding one file, `answer`, of 42 bytes; counts the LOOKUPs it answers.
#[derive(Default)]
struct OneFile {
    lookups: AtomicUsize,
}

const FILE_ID: u64 = ROOT_ID + 1;

fn attr(id: u64) -> Attr {
    let (mode, size) = if id == ROOT_ID {
        (0o40755, 0)
    } else {
        (0o100644, 42)
    };
    Attr {
        ino: id,
        size,
        mode,
        nlink: 1,
        blksize: 4096,
        ..Attr::default()
    }
}

impl OneFile {
    fn reply(&self, req: &Request<'_>, out: &mut Vec<u8>) -> Result<Outcome, i32> {
        // Zero timeouts: every stat below reaches the handler.
        let valid = Validity::default();
        match &req.op {
            Operation::Init { .. } => {
                let kernel = KernelInit::of(&req.op).ok_or(libc::EPROTO)?;
                match negotiate(kernel, &CachePolicy::default(), 32) {
                    Negotiation::Accepted(init) | Negotiation::RetryWithOurMajor(init) => {
                        init.encode(out)
                    }
                    Negotiation::Refused { .. } => return Err(libc::EPROTO),
                }
            }
            Operation::Lookup { name } => {
                self.lookups.fetch_add(1, Ordering::Relaxed);
                if req.header.nodeid != ROOT_ID || name.to_bytes() != b"answer" {
                    return Err(libc::ENOENT);
                }
                EntryOut {
                    nodeid: FILE_ID,
                    generation: 0,
                    entry_valid: valid,
                    attr_valid: valid,
                    attr: attr(FILE_ID),
                }
                .encode(out);
            }
            Operation::Getattr { .. } => encode_attr_out(out, valid, &attr(req.header.nodeid)),
            Operation::Forget { .. } | Operation::BatchForget { .. } => {
                return Ok(Outcome::NoReply);
            }
            Operation::Destroy => return Ok(Outcome::Destroyed),
            _ => return Err(libc::ENOSYS),
        }
        Ok(Outcome::Reply)
    }
}

impl FuseHandler for OneFile {
    fn handle(&self, request: &[u8], reply: &mut Vec<u8>) -> Outcome {
        frame_reply(request, reply, |req, out| self.reply(req, out))
    }

    fn max_request_len(&self) -> usize {
        sbx_virtiofs::request::MAX_REQUEST_LEN
    }
}

#[test]
fn host_mount_serves_a_handler_other_than_the_file_server() {
    let tmp = tempfile::tempdir().unwrap();
    let handler = Arc::new(OneFile::default());
    let mount = match HostMount::mount(Arc::clone(&handler), tmp.path(), &MountOptions::default()) {
        Ok(m) => m,
        Err(e @ (MountError::OpenDevice { .. } | MountError::NotPermitted { .. })) => {
            eprintln!(
                "SKIPPED host_mount_serves_a_handler_other_than_the_file_server: host FUSE mount unavailable here: {e}"
            );
            return;
        }
        Err(e) => panic!("mount failed: {e}"),
    };
    let file = tmp.path().join("answer");
    for _ in 0..3 {
        let meta = std::fs::symlink_metadata(&file).unwrap();
        assert_eq!((meta.len(), meta.is_file()), (42, true));
    }
    let err = std::fs::symlink_metadata(tmp.path().join("question")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    // Zero entry timeouts: each of the four stats was a LOOKUP answered by this handler, not by a cache.
    assert!(handler.lookups.load(Ordering::Relaxed) >= 4);
    // An operation the handler does not know comes back as its error, through the same framing.
    let err = std::fs::create_dir(tmp.path().join("new")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOSYS));
    mount.unmount().unwrap();
    std::thread::sleep(Duration::from_millis(50));
    assert!(std::fs::symlink_metadata(&file).is_err(), "still mounted");
}
