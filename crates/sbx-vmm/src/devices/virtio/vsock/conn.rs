//! One vsock stream connection between a guest port and a host Unix stream, with virtio-vsock credit accounting.

use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;

/// Receive buffer space we advertise to the guest per connection.
pub const BUF_ALLOC: u32 = 256 * 1024;
/// Largest chunk read from a host socket at once.
pub const READ_CHUNK: usize = 64 * 1024;

/// Connection state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    /// Host-initiated: REQUEST sent to the guest, waiting for RESPONSE.
    AwaitingGuest,
    /// Data flows both ways.
    Established,
}

/// A connection, keyed by (host port, guest port).
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: UnixStream,
    pub(crate) state: State,
    pub(crate) token: u32,
    /// The guest's buffer size and how much of our data it has consumed.
    pub(crate) peer_buf_alloc: u32,
    pub(crate) peer_fwd_cnt: u32,
    /// Bytes we have sent to the guest.
    pub(crate) tx_cnt: u32,
    /// Bytes from the guest we have written to the host socket.
    pub(crate) fwd_cnt: u32,
    /// `fwd_cnt` at the last credit information we sent.
    pub(crate) last_fwd_cnt_sent: u32,
    /// Guest data not yet written to the host socket (bounded by the credit we gave).
    pub(crate) to_host: VecDeque<u8>,
    /// Host data read but not yet delivered to the guest.
    pub(crate) to_guest: Vec<u8>,
    /// The host closed its write side (or errored).
    pub(crate) host_eof: bool,
    /// The guest will send no more.
    pub(crate) guest_done_sending: bool,
}

impl Conn {
    pub(crate) fn new(stream: UnixStream, state: State, token: u32) -> Self {
        Self {
            stream,
            state,
            token,
            peer_buf_alloc: 0,
            peer_fwd_cnt: 0,
            tx_cnt: 0,
            fwd_cnt: 0,
            last_fwd_cnt_sent: 0,
            to_host: VecDeque::new(),
            to_guest: Vec::new(),
            host_eof: false,
            guest_done_sending: false,
        }
    }

    /// How many more bytes the guest can take from us.
    pub(crate) fn peer_credit(&self) -> u32 {
        let in_flight = self.tx_cnt.wrapping_sub(self.peer_fwd_cnt);
        self.peer_buf_alloc.saturating_sub(in_flight)
    }

    /// Whether to watch the host socket for readability.
    pub(crate) fn wants_read(&self) -> bool {
        self.state == State::Established
            && !self.host_eof
            && self.to_guest.is_empty()
            && self.peer_credit() > 0
    }

    /// Accepts guest data; `false` means the guest exceeded the credit we gave it.
    pub(crate) fn push_from_guest(&mut self, data: &[u8]) -> bool {
        if self.to_host.len() + data.len() > BUF_ALLOC as usize {
            return false;
        }
        self.to_host.extend(data);
        true
    }

    /// Writes pending guest data to the host socket. `Err` means the socket is broken.
    pub(crate) fn flush_to_host(&mut self) -> std::io::Result<()> {
        while !self.to_host.is_empty() {
            let (front, _) = self.to_host.as_slices();
            match self.stream.write(front) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.to_host.drain(..n);
                    self.fwd_cnt = self.fwd_cnt.wrapping_add(n as u32);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.guest_done_sending {
            let _ = self.stream.shutdown(std::net::Shutdown::Write);
        }
        Ok(())
    }

    /// Reads what the host sent, up to the guest's credit, into `to_guest`.
    pub(crate) fn read_from_host(&mut self) {
        if !self.wants_read() {
            return;
        }
        let want = (self.peer_credit() as usize).min(READ_CHUNK);
        let mut buf = vec![0u8; want];
        match self.stream.read(&mut buf) {
            Ok(0) => self.host_eof = true,
            Ok(n) => {
                buf.truncate(n);
                self.to_guest = buf;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
            Err(_) => self.host_eof = true,
        }
    }

    /// Whether the guest should hear about freed buffer space without waiting for data to carry it.
    pub(crate) fn credit_update_due(&self) -> bool {
        self.fwd_cnt.wrapping_sub(self.last_fwd_cnt_sent) >= BUF_ALLOC / 4
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credit_accounting() {
        let (a, _b) = UnixStream::pair().unwrap();
        let mut c = Conn::new(a, State::Established, 1);
        assert_eq!(c.peer_credit(), 0);
        assert!(!c.wants_read());
        c.peer_buf_alloc = 100;
        c.tx_cnt = 60;
        c.peer_fwd_cnt = 20;
        assert_eq!(c.peer_credit(), 60);
        // A peer that claims to have consumed more than was sent gets no credit at all.
        c.peer_fwd_cnt = 90;
        assert_eq!(c.peer_credit(), 0);
        assert!(c.push_from_guest(&[0; BUF_ALLOC as usize]));
        assert!(!c.push_from_guest(&[0]));
    }
}
