//! virtio-vsock with the host side on Unix sockets, following Firecracker's hybrid-vsock convention:
//!
//! * host → guest: connect to the device's socket `<uds_path>`, send `CONNECT <port>\n`, receive `OK <host port>\n`,
//!   then the stream is connected to the guest's listener on `<port>`;
//! * guest → host: a guest connection to (CID 2, port P) is connected to the Unix listener at `<uds_path>_<P>`.
//!
//! Guest packets are validated (header in a readable descriptor, data within 64 KiB, CIDs, type STREAM, known
//! connection); anything else is answered with RST or dropped. The guest cannot make the VMM buffer more than the
//! credit it was given, or open more than [`MAX_CONNECTIONS`] connections.

mod conn;

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileTypeExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};

use virtio_queue::{DescriptorChain, Queue};
use virtio_vsock::packet::{PKT_HEADER_SIZE, VsockPacket};

pub use conn::{BUF_ALLOC, READ_CHUNK};
use conn::{Conn, State};

use super::{
    ActivateContext, BackendFd, DeviceError, Interrupt, VirtioDevice, complete, device_type,
    next_chain, notify_driver,
};
use crate::vstate::memory::GuestMemory;

/// The host's CID.
pub const HOST_CID: u64 = 2;
/// Largest payload accepted in one guest packet.
pub const MAX_PKT_DATA: u32 = 64 * 1024;
/// Most simultaneous connections per device.
pub const MAX_CONNECTIONS: usize = 1024;
/// Most control packets queued for a guest that does not post receive buffers; beyond it, TX processing pauses.
pub const MAX_PENDING_CONTROL: usize = 4096;
const QUEUE_SIZES: [u16; 3] = [256, 256, 256];
const RX: usize = 0;
const TX: usize = 1;
const TYPE_STREAM: u16 = 1;
const MAX_HANDSHAKE: usize = 32;
const HOST_PORT_BASE: u32 = 1 << 30;
const LISTENER_TOKEN: u32 = 0;

/// Packet operations.
pub mod op {
    #![allow(missing_docs)]
    pub const REQUEST: u16 = 1;
    pub const RESPONSE: u16 = 2;
    pub const RST: u16 = 3;
    pub const SHUTDOWN: u16 = 4;
    pub const RW: u16 = 5;
    pub const CREDIT_UPDATE: u16 = 6;
    pub const CREDIT_REQUEST: u16 = 7;
}
/// SHUTDOWN flags.
const SHUTDOWN_RCV: u32 = 1;
const SHUTDOWN_SEND: u32 = 2;

/// (host port, guest port).
type Key = (u32, u32);

/// A control packet waiting for a guest receive buffer.
#[derive(Debug, Clone, Copy)]
struct Control {
    op: u16,
    key: Key,
    flags: u32,
}

/// A host connection that has not sent its `CONNECT <port>\n` line yet.
#[derive(Debug)]
struct Handshake {
    stream: UnixStream,
    line: Vec<u8>,
}

struct Active {
    mem: GuestMemory,
    rx: Queue,
    tx: Queue,
    interrupt: Interrupt,
}

/// The vsock device.
pub struct Vsock {
    cid: u64,
    uds_path: PathBuf,
    listener: UnixListener,
    handshakes: HashMap<u32, Handshake>,
    conns: HashMap<Key, Conn>,
    tokens: HashMap<u32, Key>,
    control: VecDeque<Control>,
    next_token: u32,
    next_host_port: u32,
    rx_starved: bool,
    active: Option<Active>,
}

impl std::fmt::Debug for Vsock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vsock")
            .field("cid", &self.cid)
            .field("uds_path", &self.uds_path)
            .field("connections", &self.conns.len())
            .finish_non_exhaustive()
    }
}

impl Vsock {
    /// Creates the device and binds its host socket at `uds_path`. A stale socket file there (nobody listening) is
    /// replaced; a live one (another VMM) or any other file is an error.
    pub fn new(guest_cid: u32, uds_path: &Path) -> std::io::Result<Self> {
        if let Ok(meta) = std::fs::symlink_metadata(uds_path) {
            if !meta.file_type().is_socket() {
                return Err(std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    format!("{} exists and is not a socket", uds_path.display()),
                ));
            }
            if UnixStream::connect(uds_path).is_ok() {
                return Err(std::io::Error::new(
                    ErrorKind::AddrInUse,
                    format!(
                        "{} is in use by another process (a running VM?)",
                        uds_path.display()
                    ),
                ));
            }
            std::fs::remove_file(uds_path)?;
        }
        let listener = UnixListener::bind(uds_path)?;
        listener.set_nonblocking(true)?;
        Ok(Self {
            cid: u64::from(guest_cid),
            uds_path: uds_path.to_path_buf(),
            listener,
            handshakes: HashMap::new(),
            conns: HashMap::new(),
            tokens: HashMap::new(),
            control: VecDeque::new(),
            next_token: 1,
            next_host_port: HOST_PORT_BASE,
            rx_starved: false,
            active: None,
        })
    }

    /// Number of open connections.
    pub fn connection_count(&self) -> usize {
        self.conns.len()
    }

    fn alloc_token(&mut self) -> u32 {
        loop {
            let t = self.next_token;
            self.next_token = if t >= (1 << 30) { 1 } else { t + 1 };
            if !self.handshakes.contains_key(&t) && !self.tokens.contains_key(&t) {
                return t;
            }
        }
    }

    fn alloc_host_port(&mut self) -> u32 {
        loop {
            let p = self.next_host_port;
            self.next_host_port = p.checked_add(1).unwrap_or(HOST_PORT_BASE);
            if !self.conns.keys().any(|(h, _)| *h == p) {
                return p;
            }
        }
    }

    fn add_conn(&mut self, key: Key, stream: UnixStream, state: State) {
        let token = self.alloc_token();
        self.tokens.insert(token, key);
        self.conns.insert(key, Conn::new(stream, state, token));
    }

    fn remove_conn(&mut self, key: Key) {
        if let Some(c) = self.conns.remove(&key) {
            self.tokens.remove(&c.token);
        }
    }

    fn queue_control(&mut self, op: u16, key: Key, flags: u32) {
        self.control.push_back(Control { op, key, flags });
    }

    fn reset_conn(&mut self, key: Key) {
        self.remove_conn(key);
        self.queue_control(op::RST, key, 0);
    }

    /// Handles one guest packet's header fields and payload.
    fn handle_tx(&mut self, hdr: TxHeader, data: &[u8]) {
        let key = (hdr.dst_port, hdr.src_port);
        if hdr.src_cid != self.cid || hdr.dst_cid != HOST_CID || hdr.type_ != TYPE_STREAM {
            if hdr.op != op::RST {
                self.queue_control(op::RST, key, 0);
            }
            return;
        }
        if let Some(c) = self.conns.get_mut(&key) {
            c.peer_buf_alloc = hdr.buf_alloc;
            c.peer_fwd_cnt = hdr.fwd_cnt;
        }
        match hdr.op {
            op::REQUEST => self.guest_connect(key),
            op::RESPONSE => self.guest_accepted(key),
            op::RW => self.guest_data(key, data),
            op::SHUTDOWN => self.guest_shutdown(key, hdr.flags),
            op::RST => self.remove_conn(key),
            op::CREDIT_UPDATE => {}
            op::CREDIT_REQUEST if self.conns.contains_key(&key) => {
                self.queue_control(op::CREDIT_UPDATE, key, 0)
            }
            _ => self.reset_conn(key),
        }
    }

    fn guest_connect(&mut self, key: Key) {
        if self.conns.contains_key(&key) || self.conns.len() >= MAX_CONNECTIONS {
            self.queue_control(op::RST, key, 0);
            return;
        }
        let path = format!("{}_{}", self.uds_path.display(), key.0);
        match connect_nonblocking(Path::new(&path)) {
            Ok(stream) => {
                self.add_conn(key, stream, State::Established);
                self.queue_control(op::RESPONSE, key, 0);
            }
            Err(_) => self.queue_control(op::RST, key, 0),
        }
    }

    fn guest_accepted(&mut self, key: Key) {
        let Some(c) = self.conns.get_mut(&key) else {
            self.queue_control(op::RST, key, 0);
            return;
        };
        if c.state != State::AwaitingGuest {
            self.reset_conn(key);
            return;
        }
        c.state = State::Established;
        // A fresh socket's send buffer always has room for this short line.
        let line = format!("OK {}\n", key.0);
        if c.stream.write_all(line.as_bytes()).is_err() {
            self.reset_conn(key);
        }
    }

    fn guest_data(&mut self, key: Key, data: &[u8]) {
        let Some(c) = self.conns.get_mut(&key) else {
            self.queue_control(op::RST, key, 0);
            return;
        };
        if c.state != State::Established || c.guest_done_sending || !c.push_from_guest(data) {
            self.reset_conn(key);
            return;
        }
        if c.flush_to_host().is_err() {
            self.reset_conn(key);
            return;
        }
        if c.credit_update_due() {
            self.queue_control(op::CREDIT_UPDATE, key, 0);
        }
    }

    fn guest_shutdown(&mut self, key: Key, flags: u32) {
        let Some(c) = self.conns.get_mut(&key) else {
            self.queue_control(op::RST, key, 0);
            return;
        };
        if flags & SHUTDOWN_SEND != 0 {
            c.guest_done_sending = true;
            if c.flush_to_host().is_err() {
                self.reset_conn(key);
                return;
            }
        }
        if flags & (SHUTDOWN_SEND | SHUTDOWN_RCV) == SHUTDOWN_SEND | SHUTDOWN_RCV {
            // Both directions closed: the connection is over once pending data is out (best effort).
            self.reset_conn(key);
        }
    }

    fn accept_host_connections(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err()
                        || self.handshakes.len() + self.conns.len() >= MAX_CONNECTIONS
                    {
                        continue;
                    }
                    let token = self.alloc_token();
                    self.handshakes.insert(
                        token,
                        Handshake {
                            stream,
                            line: Vec::new(),
                        },
                    );
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Reads a handshake line; on `CONNECT <port>\n` asks the guest to accept.
    fn advance_handshake(&mut self, token: u32) {
        let Some(hs) = self.handshakes.get_mut(&token) else {
            return;
        };
        let mut byte = [0u8; 1];
        // Byte by byte so no stream data after the newline is consumed.
        loop {
            match hs.stream.read(&mut byte) {
                Ok(0) => {
                    self.handshakes.remove(&token);
                    return;
                }
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) if hs.line.len() < MAX_HANDSHAKE => hs.line.push(byte[0]),
                Ok(_) => {
                    self.handshakes.remove(&token);
                    return;
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(_) => {
                    self.handshakes.remove(&token);
                    return;
                }
            }
        }
        let Some(hs) = self.handshakes.remove(&token) else {
            return;
        };
        let Some(port) = parse_connect(&hs.line) else {
            return;
        };
        let host_port = self.alloc_host_port();
        let key = (host_port, port);
        self.add_conn(key, hs.stream, State::AwaitingGuest);
        self.queue_control(op::REQUEST, key, 0);
    }

    fn conn_event(&mut self, key: Key, readable: bool, writable: bool) {
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if writable && c.flush_to_host().is_err() {
            self.reset_conn(key);
            return;
        }
        if c.credit_update_due() {
            self.queue_control(op::CREDIT_UPDATE, key, 0);
        }
        let Some(c) = self.conns.get_mut(&key) else {
            return;
        };
        if readable {
            let was_eof = c.host_eof;
            c.read_from_host();
            if c.host_eof && !was_eof {
                self.queue_control(op::SHUTDOWN, key, SHUTDOWN_RCV | SHUTDOWN_SEND);
            }
        }
    }

    /// Processes the TX queue; returns whether chains were used.
    fn process_tx(&mut self) -> Result<bool, DeviceError> {
        let mut used = false;
        loop {
            if self.control.len() >= MAX_PENDING_CONTROL {
                break;
            }
            let Some(active) = self.active.as_mut() else {
                break;
            };
            let Some(mut chain) = next_chain(&mut active.tx, &active.mem, TX)? else {
                break;
            };
            let head = chain.head_index();
            let parsed = parse_tx(&active.mem, &mut chain);
            complete(&mut active.tx, &active.mem, TX, head, 0)?;
            used = true;
            if let Some((hdr, data)) = parsed {
                self.handle_tx(hdr, &data);
            }
        }
        if used && let Some(a) = self.active.as_mut() {
            notify_driver(&mut a.tx, &a.mem, &a.interrupt);
        }
        Ok(used)
    }

    /// Fills guest receive buffers with control packets, then with pending host data.
    fn process_rx(&mut self) -> Result<(), DeviceError> {
        let mut used = false;
        loop {
            let next = self.next_rx_packet();
            let Some(pkt) = next else { break };
            let Some(active) = self.active.as_mut() else {
                break;
            };
            let Some(mut chain) = next_chain(&mut active.rx, &active.mem, RX)? else {
                self.rx_starved = true;
                self.unget_rx_packet(pkt);
                break;
            };
            let head = chain.head_index();
            let (len, data_used) = write_rx(&active.mem, &mut chain, self.cid, &pkt);
            complete(&mut active.rx, &active.mem, RX, head, len)?;
            used = true;
            self.rx_sent(&pkt, data_used);
        }
        if used && let Some(a) = self.active.as_mut() {
            notify_driver(&mut a.rx, &a.mem, &a.interrupt);
        }
        Ok(())
    }

    /// The next packet for the guest: a control packet, else a data packet from some connection.
    fn next_rx_packet(&mut self) -> Option<RxPacket> {
        if let Some(ctl) = self.control.pop_front() {
            let (buf_alloc, fwd_cnt) = self.credit_of(ctl.key);
            return Some(RxPacket {
                op: ctl.op,
                key: ctl.key,
                flags: ctl.flags,
                buf_alloc,
                fwd_cnt,
                data: Vec::new(),
            });
        }
        let key = self
            .conns
            .iter()
            .find(|(_, c)| !c.to_guest.is_empty() && c.state == State::Established)
            .map(|(k, _)| *k)?;
        let c = self.conns.get_mut(&key)?;
        let data = std::mem::take(&mut c.to_guest);
        Some(RxPacket {
            op: op::RW,
            key,
            flags: 0,
            buf_alloc: BUF_ALLOC,
            fwd_cnt: c.fwd_cnt,
            data,
        })
    }

    fn unget_rx_packet(&mut self, pkt: RxPacket) {
        if pkt.op == op::RW {
            if let Some(c) = self.conns.get_mut(&pkt.key) {
                c.to_guest = pkt.data;
            }
        } else {
            self.control.push_front(Control {
                op: pkt.op,
                key: pkt.key,
                flags: pkt.flags,
            });
        }
    }

    /// Book-keeping after a packet reached the guest; data that did not fit goes back to the connection.
    fn rx_sent(&mut self, pkt: &RxPacket, data_used: usize) {
        let Some(c) = self.conns.get_mut(&pkt.key) else {
            return;
        };
        c.last_fwd_cnt_sent = pkt.fwd_cnt;
        if pkt.op == op::RW {
            c.tx_cnt = c.tx_cnt.wrapping_add(data_used as u32);
            if data_used < pkt.data.len() {
                c.to_guest = pkt.data[data_used..].to_vec();
            }
        }
    }

    fn credit_of(&self, key: Key) -> (u32, u32) {
        self.conns
            .get(&key)
            .map_or((0, 0), |c| (BUF_ALLOC, c.fwd_cnt))
    }

    /// After any event: pull host data for connections with credit, then deliver.
    fn pump(&mut self) -> Result<(), DeviceError> {
        self.process_tx()?;
        self.process_rx()?;
        // TX may have been paused by a full control queue that RX just drained.
        if self.process_tx()? {
            self.process_rx()?;
        }
        Ok(())
    }
}

/// Fields of a guest packet header.
#[derive(Debug, Clone, Copy, Default)]
pub struct TxHeader {
    /// Source CID.
    pub src_cid: u64,
    /// Destination CID.
    pub dst_cid: u64,
    /// Source port.
    pub src_port: u32,
    /// Destination port.
    pub dst_port: u32,
    /// Socket type.
    pub type_: u16,
    /// Operation.
    pub op: u16,
    /// Flags.
    pub flags: u32,
    /// Sender's buffer size.
    pub buf_alloc: u32,
    /// Sender's forwarded count.
    pub fwd_cnt: u32,
}

/// Parses a guest TX chain; `None` for anything malformed (wrong direction, too short or long, outside memory).
pub fn parse_tx(
    mem: &GuestMemory,
    chain: &mut DescriptorChain<&GuestMemory>,
) -> Option<(TxHeader, Vec<u8>)> {
    if !super::chain_is_complete(chain) {
        return None;
    }
    let pkt = VsockPacket::from_tx_virtq_chain(mem, chain, MAX_PKT_DATA).ok()?;
    let hdr = TxHeader {
        src_cid: pkt.src_cid(),
        dst_cid: pkt.dst_cid(),
        src_port: pkt.src_port(),
        dst_port: pkt.dst_port(),
        type_: pkt.type_(),
        op: pkt.op(),
        flags: pkt.flags(),
        buf_alloc: pkt.buf_alloc(),
        fwd_cnt: pkt.fwd_cnt(),
    };
    let mut data = Vec::new();
    if hdr.op == op::RW {
        let len = pkt.len().min(MAX_PKT_DATA) as usize;
        if let Some(slice) = pkt.data_slice() {
            let n = len.min(slice.len());
            data = vec![0u8; n];
            use vm_memory::Bytes;
            slice.read_slice(&mut data, 0).ok()?;
        }
        if data.len() != pkt.len() as usize {
            return None;
        }
    }
    Some((hdr, data))
}

/// A packet on its way to the guest.
#[derive(Debug)]
struct RxPacket {
    op: u16,
    key: Key,
    flags: u32,
    buf_alloc: u32,
    fwd_cnt: u32,
    data: Vec<u8>,
}

/// Writes `pkt` into a guest RX chain; returns (used length, payload bytes delivered). A malformed chain gets
/// nothing (length 0) and the payload stays pending.
fn write_rx(
    mem: &GuestMemory,
    chain: &mut DescriptorChain<&GuestMemory>,
    cid: u64,
    pkt: &RxPacket,
) -> (u32, usize) {
    if !super::chain_is_complete(chain) {
        return (0, 0);
    }
    let Ok(mut out) = VsockPacket::from_rx_virtq_chain(mem, chain, MAX_PKT_DATA) else {
        return (0, 0);
    };
    let mut n = 0;
    if !pkt.data.is_empty() {
        let Some(slice) = out.data_slice() else {
            return (0, 0);
        };
        n = pkt.data.len().min(slice.len());
        use vm_memory::Bytes;
        if slice.write_slice(&pkt.data[..n], 0).is_err() {
            return (0, 0);
        }
    }
    out.set_src_cid(HOST_CID)
        .set_dst_cid(cid)
        .set_src_port(pkt.key.0)
        .set_dst_port(pkt.key.1)
        .set_type(TYPE_STREAM)
        .set_op(pkt.op)
        .set_flags(pkt.flags)
        .set_buf_alloc(pkt.buf_alloc)
        .set_fwd_cnt(pkt.fwd_cnt)
        .set_len(n as u32);
    ((PKT_HEADER_SIZE + n) as u32, n)
}

/// `CONNECT <port>` → port.
fn parse_connect(line: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(line).ok()?.trim_end_matches('\r');
    text.strip_prefix("CONNECT ")?.trim().parse().ok()
}

/// Connects to a Unix listener without blocking: a full backlog fails instead of stalling the event loop.
fn connect_nonblocking(path: &Path) -> std::io::Result<UnixStream> {
    use rustix::net::{
        AddressFamily, SocketAddrUnix, SocketFlags, SocketType, connect, socket_with,
    };
    let fd = socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::NONBLOCK | SocketFlags::CLOEXEC,
        None,
    )?;
    let addr = SocketAddrUnix::new(path)?;
    connect(&fd, &addr)?;
    Ok(UnixStream::from(fd))
}

impl VirtioDevice for Vsock {
    fn device_type(&self) -> u32 {
        device_type::VSOCK
    }
    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }
    fn features(&self) -> u64 {
        0
    }
    fn read_config(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let cfg = self.cid.to_le_bytes();
        let Ok(start) = usize::try_from(offset) else {
            return;
        };
        if let Some(src) = cfg.get(start..) {
            let n = src.len().min(data.len());
            data[..n].copy_from_slice(&src[..n]);
        }
    }
    fn activate(&mut self, ctx: ActivateContext) -> Result<(), DeviceError> {
        let mut queues = ctx.queues.into_iter();
        let (Some(rx), Some(tx)) = (queues.next(), queues.next()) else {
            return Err(DeviceError::Activate("vsock needs rx and tx queues".into()));
        };
        self.active = Some(Active {
            mem: ctx.mem,
            rx,
            tx,
            interrupt: ctx.interrupt,
        });
        Ok(())
    }
    fn queue_notify(&mut self, queue: usize) -> Result<(), DeviceError> {
        if queue == RX {
            self.rx_starved = false;
        }
        self.pump()
    }
    fn backend_fds(&self) -> Vec<BackendFd> {
        let mut fds = vec![BackendFd {
            fd: self.listener.as_raw_fd(),
            token: LISTENER_TOKEN,
            readable: true,
            writable: false,
        }];
        fds.extend(self.handshakes.iter().map(|(token, hs)| BackendFd {
            fd: hs.stream.as_raw_fd(),
            token: *token,
            readable: true,
            writable: false,
        }));
        for c in self.conns.values() {
            let readable = !self.rx_starved && c.wants_read();
            let writable = !c.to_host.is_empty();
            if readable || writable {
                fds.push(BackendFd {
                    fd: c.stream.as_raw_fd(),
                    token: c.token,
                    readable,
                    writable,
                });
            }
        }
        fds
    }
    fn backend_event(
        &mut self,
        token: u32,
        readable: bool,
        writable: bool,
    ) -> Result<(), DeviceError> {
        if token == LISTENER_TOKEN {
            self.accept_host_connections();
        } else if self.handshakes.contains_key(&token) {
            self.advance_handshake(token);
        } else if let Some(key) = self.tokens.get(&token).copied() {
            self.conn_event(key, readable, writable);
        }
        self.pump()
    }
    fn reset(&mut self) {
        self.active = None;
        self.conns.clear();
        self.tokens.clear();
        self.handshakes.clear();
        self.control.clear();
        self.rx_starved = false;
    }
}

impl Drop for Vsock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.uds_path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::virtio::test_utils::*;
    use vm_memory::{Bytes, GuestAddress};

    const RXBUF: u64 = 0x20000;
    const TXHDR: u64 = 0x30000;
    const TXDATA: u64 = 0x31000;

    fn header(mem: &GuestMemory, at: u64, src_cid: u64, dst_port: u32, op: u16, len: u32) {
        let mut h = [0u8; PKT_HEADER_SIZE];
        h[0..8].copy_from_slice(&src_cid.to_le_bytes());
        h[8..16].copy_from_slice(&HOST_CID.to_le_bytes());
        h[16..20].copy_from_slice(&1234u32.to_le_bytes());
        h[20..24].copy_from_slice(&dst_port.to_le_bytes());
        h[24..28].copy_from_slice(&len.to_le_bytes());
        h[28..30].copy_from_slice(&TYPE_STREAM.to_le_bytes());
        h[30..32].copy_from_slice(&op.to_le_bytes());
        h[36..40].copy_from_slice(&65536u32.to_le_bytes());
        mem.write_slice(&h, GuestAddress(at)).unwrap();
    }

    fn rx_op(mem: &GuestMemory) -> u16 {
        mem.read_obj(GuestAddress(RXBUF + 30)).unwrap()
    }

    #[test]
    fn socket_path_in_use_or_not_a_socket_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.sock");
        let first = Vsock::new(3, &path).unwrap();
        let err = Vsock::new(4, &path).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::AddrInUse, "{err}");
        drop(first);
        // A stale socket (its listener gone without cleanup) is replaced.
        let stale = UnixListener::bind(&path).unwrap();
        drop(stale);
        assert!(path.exists());
        Vsock::new(3, &path).unwrap();
        let file = dir.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        assert_eq!(
            Vsock::new(3, &file).unwrap_err().kind(),
            ErrorKind::AlreadyExists
        );
        assert_eq!(
            std::fs::read(&file).unwrap(),
            b"x",
            "an unrelated file is left alone"
        );
    }

    #[test]
    fn parse_tx_rejects_malformed_chains() {
        let mem = memory();
        let q = virtio_queue::mock::MockSplitQueue::new(&mem, 16);
        header(&mem, TXHDR, 3, 5000, op::RW, 4);
        let cases = [
            ("write-only header", vec![raw(TXHDR, 44, WRITE, 0)]),
            ("short header", vec![raw(TXHDR, 20, 0, 0)]),
            (
                "header outside memory",
                vec![raw(0xffff_ffff_0000, 44, 0, 0)],
            ),
            (
                "data outside memory",
                vec![raw(TXHDR, 44, NEXT, 1), raw(0xffff_ffff_0000, 4, 0, 0)],
            ),
            (
                "write-only data",
                vec![raw(TXHDR, 44, NEXT, 1), raw(TXDATA, 4, WRITE, 0)],
            ),
            (
                "data shorter than len",
                vec![raw(TXHDR, 44, NEXT, 1), raw(TXDATA, 2, 0, 0)],
            ),
            (
                "huge data",
                vec![raw(TXHDR, 44, NEXT, 1), raw(TXDATA, u32::MAX, 0, 0)],
            ),
        ];
        for (name, descs) in cases {
            let mut chain = q.build_desc_chain(&descs).unwrap();
            assert!(parse_tx(&mem, &mut chain).is_none(), "{name}");
        }
        mem.write_slice(b"ping", GuestAddress(TXDATA)).unwrap();
        let mut chain = q
            .build_desc_chain(&[raw(TXHDR, 44, NEXT, 1), raw(TXDATA, 4, 0, 0)])
            .unwrap();
        let (hdr, data) = parse_tx(&mem, &mut chain).unwrap();
        assert_eq!(
            (hdr.op, hdr.dst_port, data.as_slice()),
            (op::RW, 5000, &b"ping"[..])
        );
    }

    fn device(
        dir: &tempfile::TempDir,
        mem: &GuestMemory,
    ) -> (
        Vsock,
        Vec<virtio_queue::mock::MockSplitQueue<'static, GuestMemory>>,
    ) {
        let mem: &'static GuestMemory = Box::leak(Box::new(mem.clone()));
        let mut dev = Vsock::new(3, &dir.path().join("v.sock")).unwrap();
        let (mocks, ctx) = activate_ctx(mem, 3);
        dev.activate(ctx).unwrap();
        (dev, mocks)
    }

    fn send(
        dev: &mut Vsock,
        mocks: &[virtio_queue::mock::MockSplitQueue<'_, GuestMemory>],
        descs: &[virtio_queue::desc::RawDescriptor],
        slot: u16,
    ) {
        mocks[TX].add_desc_chains(descs, slot).unwrap();
        dev.queue_notify(TX).unwrap();
    }

    #[test]
    fn request_without_host_listener_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], 0)
            .unwrap();
        header(&gmem, TXHDR, 3, 7777, op::REQUEST, 0);
        send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], 0);
        assert_eq!(used_idx(&mocks[RX]), 1);
        assert_eq!(rx_op(&gmem), op::RST);
        assert_eq!(dev.connection_count(), 0);
    }

    #[test]
    fn spoofed_source_cid_is_reset_and_no_connection_made() {
        let dir = tempfile::tempdir().unwrap();
        let _listener = UnixListener::bind(dir.path().join("v.sock_5000")).unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], 0)
            .unwrap();
        header(&gmem, TXHDR, 2, 5000, op::REQUEST, 0);
        send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], 0);
        assert_eq!(rx_op(&gmem), op::RST);
        assert_eq!(dev.connection_count(), 0);
    }

    #[test]
    fn data_for_unknown_connection_is_reset() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], 0)
            .unwrap();
        header(&gmem, TXHDR, 3, 5000, op::RW, 4);
        send(
            &mut dev,
            &mocks,
            &[raw(TXHDR, 44, NEXT, 1), raw(TXDATA, 4, 0, 0)],
            0,
        );
        assert_eq!(rx_op(&gmem), op::RST);
    }

    #[test]
    fn connection_then_guest_data_reaches_host() {
        let dir = tempfile::tempdir().unwrap();
        let listener = UnixListener::bind(dir.path().join("v.sock_5000")).unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], 0)
            .unwrap();
        header(&gmem, TXHDR, 3, 5000, op::REQUEST, 0);
        send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], 0);
        assert_eq!(rx_op(&gmem), op::RESPONSE);
        assert_eq!(dev.connection_count(), 1);
        let (mut host, _) = listener.accept().unwrap();
        header(&gmem, TXHDR, 3, 5000, op::RW, 5);
        gmem.write_slice(b"hello", GuestAddress(TXDATA)).unwrap();
        send(
            &mut dev,
            &mocks,
            &[raw(TXHDR, 44, NEXT, 2), raw(TXDATA, 5, 0, 0)],
            1,
        );
        let mut got = [0u8; 5];
        host.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"hello");
        // A second REQUEST for the same connection is a protocol violation: RST.
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], 1)
            .unwrap();
        header(&gmem, TXHDR, 3, 5000, op::REQUEST, 0);
        send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], 3);
        assert_eq!(rx_op(&gmem), op::RST);
    }

    #[test]
    fn bad_host_handshakes_are_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory();
        let (mut dev, _mocks) = device(&dir, &mem);
        let uds = dir.path().join("v.sock");
        for garbage in [
            &b"HELLO 5\n"[..],
            &[b'A'; 100][..],
            b"CONNECT 99999999999\n",
        ] {
            let mut client = UnixStream::connect(&uds).unwrap();
            client.write_all(garbage).unwrap();
            dev.backend_event(LISTENER_TOKEN, true, false).unwrap();
            let tokens: Vec<u32> = dev.handshakes.keys().copied().collect();
            for t in tokens {
                dev.backend_event(t, true, false).unwrap();
            }
            assert!(dev.handshakes.is_empty(), "{garbage:?}");
            assert_eq!(dev.connection_count(), 0);
            client
                .set_read_timeout(Some(std::time::Duration::from_secs(5)))
                .unwrap();
            let mut buf = [0u8; 8];
            let closed = match client.read(&mut buf) {
                Ok(n) => n == 0,
                Err(e) => e.kind() == ErrorKind::ConnectionReset,
            };
            assert!(closed, "the VMM closed {garbage:?}");
        }
    }

    #[test]
    fn hostile_rx_buffers_are_returned_empty_and_the_device_survives() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        let bad_rx = [
            ("readable-only buffer", vec![raw(RXBUF, 44 + 64, 0, 0)]),
            (
                "outside guest memory",
                vec![raw(0xffff_ffff_0000, 44 + 64, WRITE, 0)],
            ),
            ("zero length", vec![raw(RXBUF, 0, WRITE, 0)]),
            ("shorter than a header", vec![raw(RXBUF, 20, WRITE, 0)]),
            (
                "loop",
                vec![
                    raw(RXBUF, 44, WRITE | NEXT, 1),
                    raw(RXBUF, 44, WRITE | NEXT, 0),
                ],
            ),
        ];
        let mut slot = 0;
        for (i, (name, descs)) in bad_rx.iter().enumerate() {
            gmem.write_slice(&[0u8; 44], GuestAddress(RXBUF)).unwrap();
            mocks[RX].add_desc_chains(descs, slot).unwrap();
            slot += descs.len() as u16;
            // A REQUEST nobody listens for makes the device answer RST into the bad buffer.
            header(&gmem, TXHDR, 3, 7777, op::REQUEST, 0);
            send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], i as u16);
            assert_eq!(used_idx(&mocks[RX]), i as u16 + 1, "{name}");
            let len = mocks[RX].used().ring().ref_at(i).unwrap().load().len();
            assert!(len == 0 || len == 44, "{name}: used length {len}");
            if len == 0 {
                assert_eq!(rx_op(&gmem), 0, "{name}: nothing written");
            }
        }
        // Still serving: a good buffer gets the next RST.
        mocks[RX]
            .add_desc_chains(&[raw(RXBUF, 44 + 64, WRITE, 0)], slot)
            .unwrap();
        header(&gmem, TXHDR, 3, 7777, op::REQUEST, 0);
        send(&mut dev, &mocks, &[raw(TXHDR, 44, 0, 0)], 10);
        assert_eq!(rx_op(&gmem), op::RST);
        assert_eq!(dev.connection_count(), 0);
    }

    #[test]
    fn tx_loops_and_zero_lengths_are_consumed_without_effect() {
        let dir = tempfile::tempdir().unwrap();
        let _listener = UnixListener::bind(dir.path().join("v.sock_5000")).unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        let gmem = dev.active.as_ref().unwrap().mem.clone();
        header(&gmem, TXHDR, 3, 5000, op::REQUEST, 0);
        let cases = [
            ("zero-length header", vec![raw(TXHDR, 0, 0, 0)]),
            (
                "header loop",
                vec![raw(TXHDR, 44, NEXT, 1), raw(TXHDR, 44, NEXT, 0)],
            ),
            ("next beyond the table", vec![raw(TXHDR, 44, NEXT, 500)]),
        ];
        let mut slot = 0;
        for (i, (name, descs)) in cases.iter().enumerate() {
            send(&mut dev, &mocks, descs, slot);
            slot += descs.len() as u16;
            assert_eq!(used_idx(&mocks[TX]), i as u16 + 1, "{name}: returned");
            assert_eq!(dev.connection_count(), 0, "{name}: no connection");
        }
        // None of them was taken as a connection request.
        assert_eq!(dev.connection_count(), 0);
    }

    #[test]
    fn corrupt_available_index_fails_the_device() {
        let dir = tempfile::tempdir().unwrap();
        let mem = memory();
        let (mut dev, mocks) = device(&dir, &mem);
        mocks[TX].avail().idx().store(1000);
        assert!(matches!(
            dev.queue_notify(TX),
            Err(DeviceError::Queue { .. })
        ));
    }
}
