//! The wire format: `[u32 length][u8 tag][u32 session][payload]`, all integers big-endian.
//!
//! `length` counts the tag, session and payload bytes (so it is at least [`HEADER_AFTER_LEN`]). It is checked
//! against the reader's limit before anything is allocated, so a peer cannot make the other side allocate more than
//! [`MAX_FRAME_LEN`] bytes per frame.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{DecodeError, EncodeError};
use crate::message::{Frame, Message};

/// Bytes after the length prefix that every frame has: tag (1) + session (4).
pub const HEADER_AFTER_LEN: usize = 5;
/// Size of the length prefix.
pub const LEN_PREFIX: usize = 4;
/// Largest accepted value of the length field (tag + session + payload): 1 MiB of payload plus the header.
pub const MAX_FRAME_LEN: usize = (1 << 20) + HEADER_AFTER_LEN;
/// Largest data payload a sender should put in one frame; bigger writes are split.
pub const MAX_DATA_CHUNK: usize = 64 * 1024;

mod tag {
    pub(super) const HELLO: u8 = 1;
    pub(super) const HELLO_ACK: u8 = 2;
    pub(super) const READY: u8 = 3;
    pub(super) const EXEC: u8 = 10;
    pub(super) const STARTED: u8 = 11;
    pub(super) const STDIN: u8 = 12;
    pub(super) const STDIN_EOF: u8 = 13;
    pub(super) const STDOUT: u8 = 14;
    pub(super) const STDERR: u8 = 15;
    pub(super) const RESIZE: u8 = 16;
    pub(super) const SIGNAL: u8 = 17;
    pub(super) const EXIT: u8 = 18;
    pub(super) const DETACH: u8 = 19;
    pub(super) const ATTACH: u8 = 20;
    pub(super) const DETACHED: u8 = 21;
    pub(super) const SHUTDOWN: u8 = 30;
    pub(super) const SYNC: u8 = 31;
    pub(super) const SYNC_DONE: u8 = 32;
    pub(super) const ERROR: u8 = 40;
    pub(super) const PING: u8 = 41;
    pub(super) const PONG: u8 = 42;
}

fn json<T: Serialize>(tag: u8, value: &T) -> Result<(u8, Vec<u8>), EncodeError> {
    serde_json::to_vec(value)
        .map(|payload| (tag, payload))
        .map_err(|source| EncodeError::Json { tag, source })
}

fn tag_and_payload(message: &Message) -> Result<(u8, Vec<u8>), EncodeError> {
    Ok(match message {
        Message::Hello(m) => json(tag::HELLO, m)?,
        Message::HelloAck(m) => json(tag::HELLO_ACK, m)?,
        Message::Ready(m) => json(tag::READY, m)?,
        Message::Exec(m) => json(tag::EXEC, m)?,
        Message::Started(m) => json(tag::STARTED, m)?,
        Message::Stdin(b) => (tag::STDIN, b.clone()),
        Message::StdinEof => (tag::STDIN_EOF, Vec::new()),
        Message::Stdout(b) => (tag::STDOUT, b.clone()),
        Message::Stderr(b) => (tag::STDERR, b.clone()),
        Message::Resize(m) => json(tag::RESIZE, m)?,
        Message::Signal(s) => (tag::SIGNAL, s.to_be_bytes().to_vec()),
        Message::Exit(m) => json(tag::EXIT, m)?,
        Message::Detach => (tag::DETACH, Vec::new()),
        Message::Attach => (tag::ATTACH, Vec::new()),
        Message::Detached => (tag::DETACHED, Vec::new()),
        Message::Shutdown => (tag::SHUTDOWN, Vec::new()),
        Message::Sync => (tag::SYNC, Vec::new()),
        Message::SyncDone => (tag::SYNC_DONE, Vec::new()),
        Message::Error(m) => json(tag::ERROR, m)?,
        Message::Ping(v) => (tag::PING, v.to_be_bytes().to_vec()),
        Message::Pong(v) => (tag::PONG, v.to_be_bytes().to_vec()),
    })
}

/// Appends the encoding of `frame` to `out`.
///
/// Fails when the payload would exceed [`MAX_FRAME_LEN`] (split data with [`MAX_DATA_CHUNK`]).
pub fn encode(frame: &Frame, out: &mut Vec<u8>) -> Result<(), EncodeError> {
    let (tag, payload) = tag_and_payload(&frame.message)?;
    let len = payload.len() + HEADER_AFTER_LEN;
    if len > MAX_FRAME_LEN {
        return Err(EncodeError::TooLarge {
            len,
            max: MAX_FRAME_LEN,
        });
    }
    let len32 = u32::try_from(len).map_err(|_| EncodeError::TooLarge {
        len,
        max: MAX_FRAME_LEN,
    })?;
    out.reserve(LEN_PREFIX + len);
    out.extend_from_slice(&len32.to_be_bytes());
    out.push(tag);
    out.extend_from_slice(&frame.session.to_be_bytes());
    out.extend_from_slice(&payload);
    Ok(())
}

/// Encodes `frame` into a fresh buffer.
pub fn encode_to_vec(frame: &Frame) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    encode(frame, &mut out)?;
    Ok(out)
}

/// Reads the length prefix of a frame and checks it against `max_len`.
///
/// Returns the number of bytes that follow the prefix.
pub fn frame_len(prefix: [u8; LEN_PREFIX], max_len: usize) -> Result<usize, DecodeError> {
    let len = u32::from_be_bytes(prefix) as usize;
    if len < HEADER_AFTER_LEN {
        return Err(DecodeError::TooShort { len });
    }
    if len > max_len {
        return Err(DecodeError::TooLarge { len, max: max_len });
    }
    Ok(len)
}

/// Decodes one frame from the start of `buf`.
///
/// Returns `Ok(None)` when `buf` holds only part of a frame, `Ok(Some((frame, consumed)))` otherwise. Never panics,
/// whatever the input.
pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, DecodeError> {
    decode_with_limit(buf, MAX_FRAME_LEN)
}

/// [`decode`] with an explicit frame length limit (at most [`MAX_FRAME_LEN`] is sensible).
pub fn decode_with_limit(
    buf: &[u8],
    max_len: usize,
) -> Result<Option<(Frame, usize)>, DecodeError> {
    let Some(prefix) = buf.get(..LEN_PREFIX) else {
        return Ok(None);
    };
    let mut p = [0u8; LEN_PREFIX];
    p.copy_from_slice(prefix);
    let len = frame_len(p, max_len)?;
    let Some(body) = buf.get(LEN_PREFIX..LEN_PREFIX + len) else {
        return Ok(None);
    };
    let frame = decode_body(body)?;
    Ok(Some((frame, LEN_PREFIX + len)))
}

/// Decodes the part of a frame after the length prefix (tag, session, payload).
pub fn decode_body(body: &[u8]) -> Result<Frame, DecodeError> {
    let (&tag, rest) = body
        .split_first()
        .ok_or(DecodeError::TooShort { len: body.len() })?;
    let (session, payload) = rest
        .split_first_chunk::<4>()
        .ok_or(DecodeError::TooShort { len: body.len() })?;
    let session = u32::from_be_bytes(*session);
    let message = decode_message(tag, payload)?;
    Ok(Frame { session, message })
}

fn from_json<T: DeserializeOwned>(tag: u8, payload: &[u8]) -> Result<T, DecodeError> {
    serde_json::from_slice(payload).map_err(|e| DecodeError::BadPayload {
        tag,
        detail: e.to_string(),
    })
}

fn empty(tag: u8, payload: &[u8], message: Message) -> Result<Message, DecodeError> {
    if payload.is_empty() {
        Ok(message)
    } else {
        Err(DecodeError::BadPayload {
            tag,
            detail: format!("expected no payload, got {} bytes", payload.len()),
        })
    }
}

fn fixed<const N: usize>(tag: u8, payload: &[u8]) -> Result<[u8; N], DecodeError> {
    payload.try_into().map_err(|_| DecodeError::BadPayload {
        tag,
        detail: format!("expected {N} bytes, got {}", payload.len()),
    })
}

fn decode_message(t: u8, payload: &[u8]) -> Result<Message, DecodeError> {
    Ok(match t {
        tag::HELLO => Message::Hello(from_json(t, payload)?),
        tag::HELLO_ACK => Message::HelloAck(from_json(t, payload)?),
        tag::READY => Message::Ready(from_json(t, payload)?),
        tag::EXEC => Message::Exec(from_json(t, payload)?),
        tag::STARTED => Message::Started(from_json(t, payload)?),
        tag::STDIN => Message::Stdin(payload.to_vec()),
        tag::STDIN_EOF => empty(t, payload, Message::StdinEof)?,
        tag::STDOUT => Message::Stdout(payload.to_vec()),
        tag::STDERR => Message::Stderr(payload.to_vec()),
        tag::RESIZE => Message::Resize(from_json(t, payload)?),
        tag::SIGNAL => Message::Signal(i32::from_be_bytes(fixed(t, payload)?)),
        tag::EXIT => Message::Exit(from_json(t, payload)?),
        tag::DETACH => empty(t, payload, Message::Detach)?,
        tag::ATTACH => empty(t, payload, Message::Attach)?,
        tag::DETACHED => empty(t, payload, Message::Detached)?,
        tag::SHUTDOWN => empty(t, payload, Message::Shutdown)?,
        tag::SYNC => empty(t, payload, Message::Sync)?,
        tag::SYNC_DONE => empty(t, payload, Message::SyncDone)?,
        tag::ERROR => Message::Error(from_json(t, payload)?),
        tag::PING => Message::Ping(u64::from_be_bytes(fixed(t, payload)?)),
        tag::PONG => Message::Pong(u64::from_be_bytes(fixed(t, payload)?)),
        other => return Err(DecodeError::UnknownTag { tag: other }),
    })
}
