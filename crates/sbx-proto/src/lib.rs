//! The versioned host-to-sandbox protocol spoken between sbx and its in-sandbox agent (`sbx-guest`).
//!
//! One protocol serves both isolation backends: it runs over any reliable byte stream — the sandbox's Unix socket
//! for the namespace backend, vsock for the microVM. A connection starts with a version handshake
//! ([`client_handshake`] / [`server_handshake`]), then carries length-limited frames, each tagged with a session id so
//! several commands share one stream. The full wire description is in `docs/protocol.md`.
//!
//! ```
//! use sbx_proto::{ExecRequest, Frame, FrameReader, FrameWriter, Message, decode, encode_to_vec};
//!
//! // Encode an exec request for session 7 and decode it again.
//! let exec = ExecRequest { argv: vec!["echo".into(), "hi".into()], ..Default::default() };
//! let bytes = encode_to_vec(&Frame::session(7, Message::Exec(exec.clone())))?;
//! let (frame, used) = decode(&bytes)?.expect("a whole frame");
//! assert_eq!((frame.session, used), (7, bytes.len()));
//! assert_eq!(frame.message, Message::Exec(exec));
//!
//! // The same through a stream.
//! let mut wire = Vec::new();
//! FrameWriter::new(&mut wire).write_frame(&Frame::session(7, Message::Stdout(b"hi\n".to_vec())))?;
//! let got = FrameReader::new(wire.as_slice()).read_frame()?.expect("one frame");
//! assert_eq!(got.message, Message::Stdout(b"hi\n".to_vec()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

pub mod client;
mod codec;
mod error;
mod handshake;
mod message;
mod stream;
pub mod vm;

pub use client::{Client, ClientError, Output, RemoteSession};
pub use codec::{
    HEADER_AFTER_LEN, LEN_PREFIX, MAX_DATA_CHUNK, MAX_FRAME_LEN, decode, decode_body,
    decode_with_limit, encode, encode_to_vec, frame_len,
};
pub use error::{DecodeError, EncodeError, HandshakeError, StreamError};
pub use handshake::{
    MIN_PROTOCOL_VERSION, PREFACE, PROTOCOL_VERSION, client_handshake, negotiate, server_handshake,
};
pub use message::{
    CONTROL_SESSION, ErrorReport, ExecRequest, ExitStatus, Frame, Hello, HelloAck, Message, Ready,
    SessionId, Started, WindowSize,
};
pub use stream::{FrameReader, FrameWriter};
pub use vm::{GUEST_CID, VSOCK_AGENT_PORT, VSOCK_EGRESS_PORT};
