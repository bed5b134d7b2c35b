//! A FUSE server that does no file-system work: the transport floor of a host mount.
//!
//! It serves an in-memory tree (the files listed in a manifest, one relative path per line) through the very transport
//! the real server uses — [`HostMount`] with the same worker threads, `/dev/fuse` clones, readahead window, negotiated
//! features, timeouts and open flags (direct I/O for write-only opens, cached pages kept for readers) — and answers
//! every request from memory: a LOOKUP is a hash-map probe, a WRITE is acknowledged and its bytes dropped, an FSYNC
//! does nothing. Whatever a workload costs through this mount is what the host kernel's FUSE round trips cost on this
//! machine; no passthrough server, which must also do the host's work, can be faster. `cargo xtask bench-virtiofs` measures it next to sbx-virtiofs and bindfs.
//!
//! ```sh
//! sudo cargo run --release -p sbx-virtiofs --example null_server -- MANIFEST MOUNTPOINT [--seconds N | --until-eof]
//! ```
//! Files are empty until written; only lookups, attributes, opens, reads (zeros), writes, truncation, flush and fsync
//! are served. Listings are empty and creations are refused: the workloads it exists for do neither.

use std::collections::HashMap;
use std::ffi::{CStr, CString};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use sbx_virtiofs::abi::{
    Attr, EntryOut, ROOT_ID, Validity, encode_attr_out, encode_open_out, encode_write_out, fattr,
    fopen,
};
use sbx_virtiofs::init::{DIRECT_WRITE_COHERENT_MINOR, KernelInit, Negotiation, negotiate};
use sbx_virtiofs::request::MAX_REQUEST_LEN;
use sbx_virtiofs::{
    CachePolicy, FuseHandler, HostMount, MountOptions, Operation, Outcome, Request, frame_reply,
};

/// `max_pages` of the real server's default share (1 MiB requests, `request::MAX_REQUEST_LEN` with headers).
const MAX_PAGES: u16 = 256;

struct Node {
    dir: bool,
    size: AtomicU64,
    children: HashMap<CString, u64>,
}

/// The in-memory tree; node ids are indices + `ROOT_ID` (the root is the first node).
struct NullServer {
    nodes: Vec<Node>,
    timeout: Validity,
    kernel_minor: AtomicU32,
}

impl NullServer {
    fn from_manifest(manifest: &str) -> Result<Self, String> {
        let mut nodes = vec![Node {
            dir: true,
            size: AtomicU64::new(0),
            children: HashMap::new(),
        }];
        for (line_no, path) in manifest.lines().enumerate() {
            let mut parent = 0usize;
            let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
            for (i, part) in parts.iter().enumerate() {
                let name = CString::new(*part)
                    .map_err(|_| format!("manifest line {}: NUL in {path:?}", line_no + 1))?;
                let leaf = i + 1 == parts.len();
                let next = nodes.len();
                let new_id = next as u64 + ROOT_ID;
                let id = *nodes[parent].children.entry(name).or_insert(new_id);
                if id == new_id {
                    nodes.push(Node {
                        dir: !leaf,
                        size: AtomicU64::new(0),
                        children: HashMap::new(),
                    });
                }
                parent = (id - ROOT_ID) as usize;
                if !leaf && !nodes[parent].dir {
                    return Err(format!(
                        "manifest line {}: {part:?} in {path:?} is also a file",
                        line_no + 1
                    ));
                }
            }
        }
        Ok(Self {
            nodes,
            timeout: CachePolicy::default().attr_timeout.into(),
            kernel_minor: AtomicU32::new(0),
        })
    }

    fn node(&self, id: u64) -> Option<&Node> {
        self.nodes
            .get(usize::try_from(id.checked_sub(ROOT_ID)?).ok()?)
    }

    fn attr(&self, id: u64, node: &Node) -> Attr {
        let size = node.size.load(Ordering::Relaxed);
        Attr {
            ino: id,
            size,
            blocks: size.div_ceil(512),
            mode: if node.dir { 0o40755 } else { 0o100644 },
            nlink: if node.dir { 2 } else { 1 },
            blksize: 4096,
            ..Attr::default()
        }
    }

    /// Appends the reply body; an error is a positive errno.
    fn dispatch(&self, req: &Request<'_>, out: &mut Vec<u8>) -> Result<Outcome, i32> {
        let id = req.header.nodeid;
        match &req.op {
            Operation::Init { .. } => {
                let kernel = KernelInit::of(&req.op).ok_or(libc::EPROTO)?;
                match negotiate(kernel, &CachePolicy::default(), MAX_PAGES) {
                    Negotiation::Accepted(init) | Negotiation::RetryWithOurMajor(init) => {
                        self.kernel_minor.store(kernel.minor, Ordering::Relaxed);
                        init.encode(out);
                    }
                    Negotiation::Refused { .. } => return Err(libc::EPROTO),
                }
            }
            Operation::Destroy => return Ok(Outcome::Destroyed),
            Operation::Forget { .. }
            | Operation::BatchForget { .. }
            | Operation::Interrupt { .. } => {
                return Ok(Outcome::NoReply);
            }
            Operation::Lookup { name } => self.lookup(id, name, out)?,
            Operation::Getattr { .. } => {
                let node = self.node(id).ok_or(libc::ESTALE)?;
                encode_attr_out(out, self.timeout, &self.attr(id, node));
            }
            Operation::Setattr(arg) => {
                let node = self.node(id).ok_or(libc::ESTALE)?;
                if arg.valid & fattr::SIZE != 0 {
                    node.size.store(arg.size, Ordering::Relaxed);
                }
                encode_attr_out(out, self.timeout, &self.attr(id, node));
            }
            Operation::Open { flags, .. } => {
                let node = self.node(id).ok_or(libc::ESTALE)?;
                if *flags as i32 & libc::O_TRUNC != 0 {
                    node.size.store(0, Ordering::Relaxed);
                }
                let write_only = *flags as i32 & libc::O_ACCMODE == libc::O_WRONLY;
                // The real server's rule, so that the floor sees the same request stream.
                let direct = write_only
                    && self.kernel_minor.load(Ordering::Relaxed) >= DIRECT_WRITE_COHERENT_MINOR;
                // Readers keep their cached pages across opens, as the real server grants for an unchanged file: the
                // warm read then measures the kernel's FUSE page cache alone.
                let flags = if direct {
                    fopen::DIRECT_IO
                } else if write_only {
                    0
                } else {
                    fopen::KEEP_CACHE
                };
                encode_open_out(out, 0, flags);
            }
            Operation::Opendir { .. } => encode_open_out(out, 0, 0),
            Operation::Read(arg) => {
                let node = self.node(id).ok_or(libc::ESTALE)?;
                let left = node.size.load(Ordering::Relaxed).saturating_sub(arg.offset);
                out.resize(out.len() + left.min(u64::from(arg.size)) as usize, 0);
            }
            Operation::Write { arg, data } => {
                let node = self.node(id).ok_or(libc::ESTALE)?;
                node.size
                    .fetch_max(arg.offset + data.len() as u64, Ordering::Relaxed);
                encode_write_out(out, data.len() as u32);
            }
            Operation::Readdir(_) | Operation::Readdirplus(_) => {} // empty listing
            Operation::Flush { .. }
            | Operation::Fsync { .. }
            | Operation::Fsyncdir { .. }
            | Operation::Release { .. }
            | Operation::Releasedir { .. }
            | Operation::Access { .. } => {}
            _ => return Err(libc::ENOSYS),
        }
        Ok(Outcome::Reply)
    }

    fn lookup(&self, parent: u64, name: &CStr, out: &mut Vec<u8>) -> Result<(), i32> {
        let dir = self.node(parent).ok_or(libc::ESTALE)?;
        let &id = dir.children.get(name).ok_or(libc::ENOENT)?;
        let node = self.node(id).ok_or(libc::ENOENT)?;
        EntryOut {
            nodeid: id,
            generation: 0,
            entry_valid: self.timeout,
            attr_valid: self.timeout,
            attr: self.attr(id, node),
        }
        .encode(out);
        Ok(())
    }
}

impl FuseHandler for NullServer {
    fn handle(&self, request: &[u8], reply: &mut Vec<u8>) -> Outcome {
        frame_reply(request, reply, |req, out| self.dispatch(req, out))
    }

    fn max_request_len(&self) -> usize {
        MAX_REQUEST_LEN
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(manifest), Some(mountpoint)) = (args.first(), args.get(1)) else {
        eprintln!("usage: null_server MANIFEST MOUNTPOINT [--seconds N | --until-eof]");
        std::process::exit(2);
    };
    let text = std::fs::read_to_string(manifest).map_err(|e| format!("reading {manifest}: {e}"))?;
    let server = NullServer::from_manifest(&text).map_err(|e| format!("{manifest}: {e}"))?;
    eprintln!("null server: {} nodes from {manifest}", server.nodes.len());
    let mount = HostMount::mount(
        Arc::new(server),
        mountpoint.as_ref(),
        &MountOptions::default(),
    )?;
    if args.iter().any(|a| a == "--until-eof") {
        std::io::copy(&mut std::io::stdin(), &mut std::io::sink())?;
    } else {
        let seconds = match args.iter().position(|a| a == "--seconds") {
            Some(i) => args.get(i + 1).ok_or("--seconds needs a number")?.parse()?,
            None => 60,
        };
        std::thread::sleep(Duration::from_secs(seconds));
    }
    mount.unmount()?;
    Ok(())
}
