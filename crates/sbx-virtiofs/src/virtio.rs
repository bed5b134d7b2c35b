//! virtio-fs framing: FUSE requests and replies carried in virtqueue descriptor chains (virtio 1.x, device type 26).
//!
//! A virtio-fs device has one high-priority queue (queue 0: FORGET and INTERRUPT, which have no reply) followed by one
//! or more request queues. Each request is one descriptor chain: device-readable descriptors hold the FUSE request
//! (header, arguments, WRITE payload), then device-writable descriptors receive the reply.
//!
//! # The seam for sbx-vmm
//!
//! The virtio-mmio device in `sbx-vmm` owns the transport (MMIO registers, feature negotiation, queue setup,
//! interrupts, the eventfds). It holds one [`VirtioFsQueueHandler`] per share and, whenever the driver notifies a queue,
//! calls [`VirtioFsQueueHandler::process_queue`] with that queue and the guest memory, then raises the used-buffer
//! interrupt if it returns `true`. Its config space is [`config_space`]; its device features are [`DEVICE_FEATURES`].
//! Nothing here knows about MMIO, KVM or threads, so the handler is tested with `virtio-queue`'s mock queues.
//!
//! Every chain is validated before the server sees it: descriptors must lie inside guest memory (vm-memory checks each
//! access), readable descriptors must all precede writable ones, totals must not overflow, the request must fit
//! [`FileServer::max_request_len`], and the chain length is bounded by the queue size (so a looped chain ends). A bad
//! chain is completed with zero bytes written and never reaches the file server.

use std::ops::Deref;
use std::sync::Arc;

use virtio_queue::{DescriptorChain, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemory};

use crate::abi::{OUT_HEADER_LEN, write_out_header};
use crate::server::{FileServer, Outcome};

/// The virtio device id of a file system device.
pub const VIRTIO_ID_FS: u32 = 26;
/// Device feature bits offered: `VIRTIO_F_VERSION_1` only (no notification queue, no DAX window).
pub const DEVICE_FEATURES: u64 = 1 << 32;
/// Index of the high-priority queue.
pub const HIPRIO_QUEUE: usize = 0;
/// Longest mount tag (bytes, not NUL-terminated when it uses all 36).
pub const TAG_LEN: usize = 36;

/// Why a descriptor chain was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// A device-readable descriptor came after a device-writable one.
    #[error("descriptor chain {head}: readable descriptor after a writable one")]
    ReadableAfterWritable {
        /// Head index of the chain.
        head: u16,
    },
    /// The readable part is too short to hold a FUSE header, or longer than any request may be.
    #[error("descriptor chain {head}: request of {len} bytes is outside 40..={max}")]
    BadRequestLength {
        /// Head index.
        head: u16,
        /// Readable bytes.
        len: u64,
        /// Largest accepted.
        max: usize,
    },
    /// The chain loops or links to a descriptor outside the table.
    #[error("descriptor chain {head}: does not terminate (loop or next index out of range)")]
    Unterminated {
        /// Head index.
        head: u16,
    },
    /// A descriptor points outside guest memory.
    #[error("descriptor chain {head}: descriptor at {addr:#x} (+{len}) is outside guest memory")]
    OutOfRange {
        /// Head index.
        head: u16,
        /// Guest address.
        addr: u64,
        /// Length.
        len: u32,
    },
    /// The writable part cannot hold the reply.
    #[error(
        "descriptor chain {head}: reply of {needed} bytes does not fit {available} writable bytes"
    )]
    ReplyTooLarge {
        /// Head index.
        head: u16,
        /// Reply size.
        needed: usize,
        /// Writable bytes.
        available: u64,
    },
}

/// Errors of a whole queue pass.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The used ring could not be updated (bad ring address from the driver).
    #[error("cannot update the used ring of the virtio-fs queue: {0}")]
    UsedRing(virtio_queue::Error),
}

/// Builds the virtio-fs config space: the mount tag (NUL-padded) and the number of request queues.
pub fn config_space(tag: &str, num_request_queues: u32) -> Result<[u8; TAG_LEN + 4], TagError> {
    let bytes = tag.as_bytes();
    if bytes.is_empty() || bytes.len() > TAG_LEN || bytes.contains(&0) {
        return Err(TagError {
            tag: tag.to_owned(),
        });
    }
    let mut cfg = [0u8; TAG_LEN + 4];
    cfg[..bytes.len()].copy_from_slice(bytes);
    cfg[TAG_LEN..].copy_from_slice(&num_request_queues.to_le_bytes());
    Ok(cfg)
}

/// A mount tag that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("virtio-fs mount tag {tag:?} must be 1 to 36 bytes without NUL")]
pub struct TagError {
    /// The rejected tag.
    pub tag: String,
}

/// One contiguous piece of guest memory named by a descriptor.
#[derive(Debug, Clone, Copy)]
struct Segment {
    addr: GuestAddress,
    len: u32,
}

/// The validated layout of one chain.
#[derive(Debug, Default)]
struct ChainLayout {
    readable: Vec<Segment>,
    writable: Vec<Segment>,
    readable_len: u64,
    writable_len: u64,
}

/// Serves FUSE requests arriving on virtio-fs queues with one [`FileServer`].
#[derive(Debug, Clone)]
pub struct VirtioFsQueueHandler {
    server: Arc<FileServer>,
}

impl VirtioFsQueueHandler {
    /// A handler for `server`; cheap to clone, one per queue thread is fine.
    pub fn new(server: Arc<FileServer>) -> Self {
        Self { server }
    }

    /// The file server behind this handler.
    pub fn server(&self) -> &Arc<FileServer> {
        &self.server
    }

    /// Handles every chain the driver made available on `queue`, completing each in the used ring. Returns whether the
    /// driver should be interrupted. Malformed chains are completed with length 0 (and logged), never served.
    pub fn process_queue<Q, M>(&self, queue: &mut Q, mem: &M) -> Result<bool, QueueError>
    where
        Q: QueueT,
        M: GuestMemory,
    {
        // The request and reply buffers of this thread, kept across notifications: a 1 MiB WRITE or READ must not cost
        // a fresh allocation, its page faults and a zero-fill every time the driver kicks the queue. A reentrant call
        // (none is expected) falls back to fresh buffers.
        thread_local! {
            static BUFFERS: std::cell::RefCell<(Vec<u8>, Vec<u8>)> =
                const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
        }
        BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
            Ok(mut buffers) => {
                let (request, reply) = &mut *buffers;
                self.drain_queue(queue, mem, request, reply)
            }
            Err(_) => self.drain_queue(queue, mem, &mut Vec::new(), &mut Vec::new()),
        })
    }

    fn drain_queue<Q, M>(
        &self,
        queue: &mut Q,
        mem: &M,
        request: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<bool, QueueError>
    where
        Q: QueueT,
        M: GuestMemory,
    {
        while let Some(chain) = queue.pop_descriptor_chain(mem) {
            let head = chain.head_index();
            let used = match self.process_chain_with(chain, request, reply) {
                Ok(n) => n,
                Err(e) => {
                    tracing::warn!(error = %e, "rejected virtio-fs descriptor chain");
                    0
                }
            };
            queue
                .add_used(mem, head, used)
                .map_err(QueueError::UsedRing)?;
        }
        queue.needs_notification(mem).map_err(QueueError::UsedRing)
    }

    /// Handles one chain: gathers the request, runs the server, scatters the reply. Returns the bytes written.
    pub fn process_chain<M>(
        &self,
        chain: DescriptorChain<M>,
        reply: &mut Vec<u8>,
    ) -> Result<u32, ChainError>
    where
        M: Deref + Clone,
        M::Target: GuestMemory,
    {
        self.process_chain_with(chain, &mut Vec::new(), reply)
    }

    /// [`Self::process_chain`] with a caller-owned request buffer, reused across chains.
    fn process_chain_with<M>(
        &self,
        chain: DescriptorChain<M>,
        request: &mut Vec<u8>,
        reply: &mut Vec<u8>,
    ) -> Result<u32, ChainError>
    where
        M: Deref + Clone,
        M::Target: GuestMemory,
    {
        let head = chain.head_index();
        let layout = layout(chain.clone(), self.server.max_request_len())?;
        let mem = chain.memory();
        gather(mem, head, &layout, request)?;
        match self.server.handle(request, reply) {
            Outcome::NoReply => Ok(0),
            Outcome::Reply | Outcome::Destroyed => match scatter(mem, head, &layout, reply) {
                // The driver left too little room: tell it so with a bare error header rather than a hung request.
                Err(e @ ChainError::ReplyTooLarge { .. })
                    if layout.writable_len >= OUT_HEADER_LEN as u64 =>
                {
                    tracing::warn!(error = %e, "virtio-fs reply does not fit; answering EIO");
                    let unique = reply
                        .get(8..16)
                        .and_then(|u| u.try_into().ok())
                        .map(u64::from_ne_bytes)
                        .unwrap_or(0);
                    reply.truncate(OUT_HEADER_LEN);
                    write_out_header(reply, -libc::EIO, unique);
                    scatter(mem, head, &layout, reply)
                }
                other => other,
            },
        }
    }
}

/// Walks the chain once, checking order, lengths and overflow.
fn layout<M>(chain: DescriptorChain<M>, max_request: usize) -> Result<ChainLayout, ChainError>
where
    M: Deref,
    M::Target: GuestMemory,
{
    let head = chain.head_index();
    let mut out = ChainLayout::default();
    let mut ended = true;
    for desc in chain {
        // The chain iterator stops after queue-size descriptors or at an out-of-range index; a last descriptor that
        // still points onwards means the driver built a loop or a broken link.
        ended = !desc.has_next();
        let seg = Segment {
            addr: desc.addr(),
            len: desc.len(),
        };
        if desc.is_write_only() {
            out.writable_len += u64::from(seg.len);
            out.writable.push(seg);
        } else {
            if !out.writable.is_empty() {
                return Err(ChainError::ReadableAfterWritable { head });
            }
            out.readable_len += u64::from(seg.len);
            out.readable.push(seg);
        }
    }
    if !ended {
        return Err(ChainError::Unterminated { head });
    }
    let min = crate::abi::IN_HEADER_LEN as u64;
    if out.readable_len < min || out.readable_len > max_request as u64 {
        return Err(ChainError::BadRequestLength {
            head,
            len: out.readable_len,
            max: max_request,
        });
    }
    Ok(out)
}

/// Copies the readable descriptors into `request` (vm-memory bounds-checks every range).
fn gather<G: GuestMemory + ?Sized>(
    mem: &G,
    head: u16,
    layout: &ChainLayout,
    request: &mut Vec<u8>,
) -> Result<(), ChainError> {
    // Bounded by max_request_len in `layout`. Only growth is zeroed; every byte is overwritten below.
    request.resize(layout.readable_len as usize, 0);
    let mut at = 0usize;
    for seg in &layout.readable {
        let end = at + seg.len as usize;
        mem.read_slice(&mut request[at..end], seg.addr)
            .map_err(|_| ChainError::OutOfRange {
                head,
                addr: seg.addr.0,
                len: seg.len,
            })?;
        at = end;
    }
    Ok(())
}

/// Copies the reply into the writable descriptors.
fn scatter<G: GuestMemory + ?Sized>(
    mem: &G,
    head: u16,
    layout: &ChainLayout,
    reply: &[u8],
) -> Result<u32, ChainError> {
    if reply.len() as u64 > layout.writable_len {
        return Err(ChainError::ReplyTooLarge {
            head,
            needed: reply.len(),
            available: layout.writable_len,
        });
    }
    let mut rest = reply;
    for seg in &layout.writable {
        if rest.is_empty() {
            break;
        }
        let n = rest.len().min(seg.len as usize);
        mem.write_slice(&rest[..n], seg.addr)
            .map_err(|_| ChainError::OutOfRange {
                head,
                addr: seg.addr.0,
                len: seg.len,
            })?;
        rest = &rest[n..];
    }
    Ok(u32::try_from(reply.len()).unwrap_or(u32::MAX))
}
