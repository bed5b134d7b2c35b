//! A watch on HTTP/1 request framing, before hyper parses it.
//!
//! hyper accepts a request carrying both Content-Length and Transfer-Encoding (it frames by Transfer-Encoding, drops
//! Content-Length and closes after the response) and gives the handler no way to tell. This wrapper sees the client's
//! bytes first, follows the request framing (heads, Content-Length bodies, chunked bodies) and raises a flag when a
//! head carries both headers, so the handler refuses the request as smuggling. When it cannot follow the stream (a
//! malformed head, which hyper rejects anyway, or an upgrade) it stops watching rather than guess.
//!
//! It also enforces the request-head deadline (slow-loris): the first head must arrive within the timeout of the
//! connection's start, every later one within the timeout of its first byte, or the stream fails. hyper's own `header_read_timeout` cannot be used for this: it also runs
//! while a keep-alive connection waits idle for its next request, so it closed idle connections after a few seconds
//! instead of after the idle timeout (the cause of the failed connections in the 5,000-connection bench).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::Context;
use std::time::Duration;

const MAX_HEAD: usize = 256 * 1024;
const MAX_LINE: usize = 4096;

#[derive(Debug)]
enum State {
    Head(Vec<u8>),
    Body(u64),
    ChunkSize(Vec<u8>),
    ChunkData(u64),
    ChunkCrlf(u8),
    Trailers(Vec<u8>),
    Stopped,
}

/// Follows request framing; sets `conflict` on a head with both Content-Length and Transfer-Encoding.
pub(crate) struct FramingWatch {
    state: State,
    conflict: Arc<AtomicBool>,
    head_timeout: Option<Duration>,
    /// Running while a request head is partly received.
    head_deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl std::fmt::Debug for FramingWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FramingWatch")
            .field("state", &self.state)
            .finish_non_exhaustive()
    }
}

impl FramingWatch {
    pub(crate) fn new(conflict: Arc<AtomicBool>) -> Self {
        Self {
            state: State::Head(Vec::new()),
            conflict,
            head_timeout: None,
            head_deadline: None,
        }
    }

    /// Whether part of a request head has arrived but not all of it.
    fn head_in_progress(&self) -> bool {
        matches!(&self.state, State::Head(buf) if !buf.is_empty())
    }

    /// Start the head deadline when a head has begun, drop it when the head is complete.
    fn update_deadline(&mut self) {
        match (self.head_in_progress(), self.head_timeout) {
            (true, Some(t)) if self.head_deadline.is_none() => {
                self.head_deadline = Some(Box::pin(tokio::time::sleep(t)));
            }
            (false, _) => self.head_deadline = None,
            _ => {}
        }
    }

    /// Feed bytes the client sent.
    pub(crate) fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let used = match &mut self.state {
                State::Stopped => return,
                State::Head(buf) => take_line_block(buf, data, b"\r\n\r\n", MAX_HEAD),
                State::ChunkSize(buf) => take_line_block(buf, data, b"\r\n", MAX_LINE),
                State::Trailers(buf) => take_line_block(buf, data, b"\r\n", MAX_LINE),
                State::Body(n) | State::ChunkData(n) => {
                    let k = usize::try_from(*n).unwrap_or(usize::MAX).min(data.len());
                    *n -= k as u64;
                    Some(k)
                }
                State::ChunkCrlf(n) => {
                    let k = usize::from(*n).min(data.len());
                    *n -= k as u8;
                    Some(k)
                }
            };
            let Some(used) = used else {
                self.state = State::Stopped;
                return;
            };
            data = &data[used..];
            self.advance();
        }
    }

    /// Move to the next state when the current one is complete.
    fn advance(&mut self) {
        let next = match &mut self.state {
            State::Head(buf) if buf.ends_with(b"\r\n\r\n") => {
                let head = std::mem::take(buf);
                self.after_head(&head)
            }
            State::Body(0) => State::Head(Vec::new()),
            State::ChunkSize(buf) if buf.ends_with(b"\r\n") => match chunk_size(buf) {
                Some(0) => State::Trailers(Vec::new()),
                Some(n) => State::ChunkData(n),
                None => State::Stopped,
            },
            State::ChunkData(0) => State::ChunkCrlf(2),
            State::ChunkCrlf(0) => State::ChunkSize(Vec::new()),
            State::Trailers(buf) if buf.as_slice() == b"\r\n" => State::Head(Vec::new()),
            State::Trailers(buf) if buf.ends_with(b"\r\n") => State::Trailers(Vec::new()),
            _ => return,
        };
        self.state = next;
    }

    fn after_head(&self, head: &[u8]) -> State {
        let mut headers = [httparse::EMPTY_HEADER; 256];
        let mut req = httparse::Request::new(&mut headers);
        if !matches!(req.parse(head), Ok(httparse::Status::Complete(_))) {
            return State::Stopped;
        }
        let mut cl = None;
        let mut te = false;
        let mut upgrade = req.method == Some("CONNECT");
        for h in req.headers.iter() {
            if h.name.eq_ignore_ascii_case("content-length") {
                cl = std::str::from_utf8(h.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<u64>().ok())
                    .or(Some(u64::MAX));
            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                te = true;
            } else if h.name.eq_ignore_ascii_case("upgrade") {
                upgrade = true;
            }
        }
        if te && cl.is_some() {
            self.conflict.store(true, Ordering::Relaxed);
            return State::Stopped;
        }
        match (upgrade, te, cl) {
            (true, _, _) => State::Stopped,
            (_, true, _) => State::ChunkSize(Vec::new()),
            (_, _, Some(n)) if n != u64::MAX => State::Body(n),
            (_, _, Some(_)) => State::Stopped,
            _ => State::Head(Vec::new()),
        }
    }
}

/// Append bytes up to and including `end` (or all of `data`); `None` when `buf` would exceed `max`.
fn take_line_block(buf: &mut Vec<u8>, data: &[u8], end: &[u8], max: usize) -> Option<usize> {
    for (i, &b) in data.iter().enumerate() {
        buf.push(b);
        if buf.len() > max {
            return None;
        }
        if buf.ends_with(end) {
            return Some(i + 1);
        }
    }
    Some(data.len())
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let line = std::str::from_utf8(line).ok()?.trim_end_matches("\r\n");
    let size = line.split(';').next()?.trim();
    if size.is_empty() || size.len() > 16 {
        return None;
    }
    u64::from_str_radix(size, 16).ok()
}

impl crate::io::Observer for FramingWatch {
    fn read(&mut self, data: &[u8]) {
        // Polls that returned nothing change nothing (and must not clear the first head's deadline).
        if data.is_empty() {
            return;
        }
        self.feed(data);
        self.update_deadline();
    }

    fn check(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        let expired = self
            .head_deadline
            .as_mut()
            .is_some_and(|sleep| sleep.as_mut().poll(cx).is_ready());
        if expired {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "request head not received within the header read timeout",
            ));
        }
        Ok(())
    }
}

/// A client stream whose incoming bytes pass through a [`FramingWatch`].
pub(crate) type Watched<T> = crate::io::Observed<T, FramingWatch>;

/// Wrap a client stream in a framing watch that sets `conflict` on a smuggling attempt and fails the stream when the
/// first request head does not arrive within `head_timeout` of the connection's start, or a later one within
/// `head_timeout` of its first byte.
pub(crate) fn watched<T>(
    inner: T,
    conflict: Arc<AtomicBool>,
    head_timeout: Duration,
) -> Watched<T> {
    let mut watch = FramingWatch::new(conflict);
    watch.head_timeout = Some(head_timeout);
    // A new connection must start (and finish) its first head in time too; only after a complete exchange does an
    // idle connection wait under the idle timeout instead.
    watch.head_deadline = Some(Box::pin(tokio::time::sleep(head_timeout)));
    crate::io::Observed::new(inner, watch)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict_after(chunks: &[&[u8]]) -> bool {
        let flag = Arc::new(AtomicBool::new(false));
        let mut w = FramingWatch::new(flag.clone());
        for c in chunks {
            w.feed(c);
        }
        flag.load(Ordering::Relaxed)
    }

    #[test]
    fn cl_and_te_together_are_flagged_even_split_across_reads() {
        assert!(conflict_after(&[
            b"POST / HTTP/1.1\r\nContent-Le",
            b"ngth: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ]));
    }

    #[test]
    fn bodies_are_skipped_so_body_text_is_not_taken_for_a_head() {
        let body_looks_like_head =
            b"GET / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n";
        let mut stream = format!(
            "POST / HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            body_looks_like_head.len()
        )
        .into_bytes();
        stream.extend_from_slice(body_looks_like_head);
        stream.extend_from_slice(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n4;ext=1\r\nabcd\r\n0\r\nX-T: 1\r\n\r\n");
        stream.extend_from_slice(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(!conflict_after(&[&stream]));
        // ...and a conflict after all that is still seen.
        stream.extend_from_slice(
            b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n",
        );
        for split in [1, 7, 64] {
            let pieces: Vec<&[u8]> = stream.chunks(split).collect();
            assert!(conflict_after(&pieces), "split {split}");
        }
    }
}
