//! The version handshake that opens every connection.
//!
//! Each side first writes the 4-byte preface `SBXP`. The client (host) then sends [`Message::Hello`] with the range
//! of versions it speaks; the agent answers [`Message::HelloAck`] with the newest common version, or
//! [`Message::Error`] of kind `version-mismatch` and closes.

use std::io::{Read, Write};

use crate::error::HandshakeError;
use crate::message::{ErrorReport, Frame, Hello, HelloAck, Message};
use crate::stream::{FrameReader, FrameWriter};

/// Bytes each side writes before its first frame.
pub const PREFACE: [u8; 4] = *b"SBXP";
/// The newest protocol version this crate speaks.
pub const PROTOCOL_VERSION: u16 = 2;
/// The oldest protocol version this crate speaks.
pub const MIN_PROTOCOL_VERSION: u16 = 1;

fn read_preface<R: Read>(r: &mut FrameReader<R>) -> Result<(), HandshakeError> {
    let mut got = [0u8; 4];
    if !r.read_raw(&mut got)? {
        return Err(HandshakeError::Closed);
    }
    if got != PREFACE {
        return Err(HandshakeError::BadPreface {
            expected: PREFACE,
            got,
        });
    }
    Ok(())
}

/// Newest version in both inclusive ranges.
pub fn negotiate(ours: (u16, u16), theirs: (u16, u16)) -> Option<u16> {
    let hi = ours.1.min(theirs.1);
    let lo = ours.0.max(theirs.0);
    (lo <= hi).then_some(hi)
}

/// Host side: sends the preface and Hello, waits for HelloAck. Returns the agreed version and the agent's name.
pub fn client_handshake<R: Read, W: Write>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    peer: &str,
) -> Result<HelloAck, HandshakeError> {
    writer.write_raw(&PREFACE)?;
    writer.write_frame(&Frame::control(Message::Hello(Hello {
        min_version: MIN_PROTOCOL_VERSION,
        max_version: PROTOCOL_VERSION,
        peer: peer.to_owned(),
    })))?;
    read_preface(reader)?;
    match reader.read_frame()?.map(|f| f.message) {
        Some(Message::HelloAck(ack))
            if (MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&ack.version) =>
        {
            Ok(ack)
        }
        Some(Message::HelloAck(ack)) => Err(HandshakeError::NoCommonVersion {
            ours_min: MIN_PROTOCOL_VERSION,
            ours_max: PROTOCOL_VERSION,
            theirs_min: ack.version,
            theirs_max: ack.version,
        }),
        Some(Message::Error(e)) => Err(HandshakeError::Unexpected(format!(
            "{}: {}",
            e.kind, e.message
        ))),
        Some(other) => Err(HandshakeError::Unexpected(format!("{other:?}"))),
        None => Err(HandshakeError::Closed),
    }
}

/// Agent side: reads the preface and Hello, answers HelloAck (or a `version-mismatch` error).
pub fn server_handshake<R: Read, W: Write>(
    reader: &mut FrameReader<R>,
    writer: &mut FrameWriter<W>,
    peer: &str,
) -> Result<u16, HandshakeError> {
    read_preface(reader)?;
    writer.write_raw(&PREFACE)?;
    let hello = match reader.read_frame()?.map(|f| f.message) {
        Some(Message::Hello(h)) => h,
        Some(other) => return Err(HandshakeError::Unexpected(format!("{other:?}"))),
        None => return Err(HandshakeError::Closed),
    };
    let ours = (MIN_PROTOCOL_VERSION, PROTOCOL_VERSION);
    match negotiate(ours, (hello.min_version, hello.max_version)) {
        Some(version) => {
            writer.write_frame(&Frame::control(Message::HelloAck(HelloAck {
                version,
                peer: peer.to_owned(),
            })))?;
            Ok(version)
        }
        None => {
            let err = HandshakeError::NoCommonVersion {
                ours_min: ours.0,
                ours_max: ours.1,
                theirs_min: hello.min_version,
                theirs_max: hello.max_version,
            };
            writer.write_frame(&Frame::control(Message::Error(ErrorReport::new(
                "version-mismatch",
                err.to_string(),
            ))))?;
            Err(err)
        }
    }
}
