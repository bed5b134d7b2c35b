//! Errors of encoding, decoding, stream I/O and the handshake.

/// A frame could not be encoded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The frame is bigger than the protocol allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes; split data into chunks")]
    TooLarge {
        /// Length the frame would have had.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A JSON payload could not be serialised.
    #[error("could not serialise the payload of message tag {tag}: {source}")]
    Json {
        /// The message tag.
        tag: u8,
        /// The serde error.
        source: serde_json::Error,
    },
}

/// Bytes received do not form a valid frame.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The length field is smaller than the fixed header.
    #[error("frame length {len} is shorter than the 5-byte header")]
    TooShort {
        /// The length found.
        len: usize,
    },
    /// The length field exceeds the limit (nothing was allocated).
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length found.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// The tag names no message of this protocol version.
    #[error("unknown message tag {tag}")]
    UnknownTag {
        /// The tag found.
        tag: u8,
    },
    /// The payload does not fit the message's shape.
    #[error("malformed payload for message tag {tag}: {detail}")]
    BadPayload {
        /// The tag of the message.
        tag: u8,
        /// What was wrong.
        detail: String,
    },
}

/// Reading or writing frames on a stream failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The underlying stream failed.
    #[error("protocol stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The peer sent an invalid frame; the stream cannot be trusted any more and should be closed.
    #[error("peer sent an invalid frame: {0}")]
    Decode(#[from] DecodeError),
    /// A frame could not be encoded.
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The stream ended in the middle of a frame.
    #[error("protocol stream ended in the middle of a frame")]
    Truncated,
}

/// The version handshake failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// The stream failed.
    #[error(transparent)]
    Stream(#[from] StreamError),
    /// The peer did not start with the `SBXP` preface: it is not an sbx peer (or speaks another framing).
    #[error("peer is not an sbx agent/host: expected preface {expected:?}, got {got:?}")]
    BadPreface {
        /// What was expected.
        expected: [u8; 4],
        /// What arrived.
        got: [u8; 4],
    },
    /// No version both sides speak.
    #[error(
        "protocol version mismatch: we speak {ours_min}..={ours_max}, peer speaks {theirs_min}..={theirs_max}; \
         rebuild the guest agent and the host tool from the same release"
    )]
    NoCommonVersion {
        /// Our oldest version.
        ours_min: u16,
        /// Our newest version.
        ours_max: u16,
        /// Peer's oldest version.
        theirs_min: u16,
        /// Peer's newest version.
        theirs_max: u16,
    },
    /// The peer answered with something else than the handshake message.
    #[error("unexpected message during handshake: {0}")]
    Unexpected(String),
    /// The stream ended before the handshake completed.
    #[error("peer closed the connection during the handshake")]
    Closed,
}
