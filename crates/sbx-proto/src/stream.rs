//! Blocking frame I/O over any `Read`/`Write` byte stream (Unix socket, vsock, pipe, TCP in tests).

use std::io::{self, Read, Write};

use crate::codec::{LEN_PREFIX, MAX_FRAME_LEN, decode_body, encode, frame_len};
use crate::error::StreamError;
use crate::message::Frame;

/// Reads whole frames from a byte stream, enforcing the frame length limit before allocating.
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    max_len: usize,
}

impl<R: Read> FrameReader<R> {
    /// Wraps `inner` with the default limit [`MAX_FRAME_LEN`].
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            max_len: MAX_FRAME_LEN,
        }
    }

    /// Wraps `inner` with a smaller frame limit.
    pub fn with_limit(inner: R, max_len: usize) -> Self {
        Self {
            inner,
            max_len: max_len.min(MAX_FRAME_LEN),
        }
    }

    /// Reads the next frame. `Ok(None)` means the peer closed the stream cleanly between frames.
    pub fn read_frame(&mut self) -> Result<Option<Frame>, StreamError> {
        let mut prefix = [0u8; LEN_PREFIX];
        if !read_exact_or_eof(&mut self.inner, &mut prefix)? {
            return Ok(None);
        }
        let len = frame_len(prefix, self.max_len)?;
        let mut body = vec![0u8; len];
        if !read_exact_or_eof(&mut self.inner, &mut body)? {
            return Err(StreamError::Truncated);
        }
        Ok(Some(decode_body(&body)?))
    }

    /// Reads exactly `buf.len()` raw bytes (used for the handshake preface).
    pub fn read_raw(&mut self, buf: &mut [u8]) -> Result<bool, StreamError> {
        read_exact_or_eof(&mut self.inner, buf)
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &R {
        &self.inner
    }

    /// Unwraps the stream.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

/// Fills `buf`; `Ok(false)` when the stream ended before the first byte, an error when it ended part-way.
fn read_exact_or_eof<R: Read>(r: &mut R, buf: &mut [u8]) -> Result<bool, StreamError> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) if filled == 0 => return Ok(false),
            Ok(0) => return Err(StreamError::Truncated),
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(StreamError::Io(e)),
        }
    }
    Ok(true)
}

/// Writes whole frames to a byte stream, one `write_all` per frame so frames from several threads never interleave
/// when the writer is shared behind a mutex.
#[derive(Debug)]
pub struct FrameWriter<W> {
    inner: W,
    buf: Vec<u8>,
}

impl<W: Write> FrameWriter<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Self {
            inner,
            buf: Vec::new(),
        }
    }

    /// Encodes and writes `frame`, then flushes.
    pub fn write_frame(&mut self, frame: &Frame) -> Result<(), StreamError> {
        self.buf.clear();
        encode(frame, &mut self.buf)?;
        self.inner.write_all(&self.buf)?;
        self.inner.flush()?;
        Ok(())
    }

    /// Writes raw bytes (used for the handshake preface).
    pub fn write_raw(&mut self, bytes: &[u8]) -> Result<(), StreamError> {
        self.inner.write_all(bytes)?;
        self.inner.flush()?;
        Ok(())
    }

    /// The wrapped stream.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }
}
