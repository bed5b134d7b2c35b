//! The hash chain: every line carries `seq` (its position in the stream) and `prev_hash`, the hex SHA-256 of the
//! previous line's bytes (without the newline). The first line of a stream has `seq` 0 and 64 zeros as `prev_hash`.
//!
//! The writer may compute a line's SHA-256 in two parts, which together are exactly `SHA-256(line)`: while the
//! writer falls behind, the recording thread runs the compression function over the whole 64-byte blocks of the
//! event's body ([`Prefix::of_body`]), and the single writer thread, which alone knows `seq` and the previous hash,
//! only finishes the last blocks ([`seal_line`]). SHA-256 processes its input block by block from a fixed initial state, so the intermediate
//! state after the body's leading blocks does not depend on anything that comes later in the line.

use sha2::digest::generic_array::GenericArray;
use sha2::{Digest, Sha256};

/// A SHA-256 digest.
pub type Hash = [u8; 32];

/// The `prev_hash` of the first event of a stream.
pub const GENESIS: Hash = [0u8; 32];

/// The chain hash of one line (without its trailing newline).
pub fn line_hash(line: &[u8]) -> Hash {
    Sha256::digest(line).into()
}

/// Lower-case hex of a hash.
pub fn to_hex(hash: &Hash) -> String {
    let mut out = String::with_capacity(64);
    push_hex(&mut out, hash);
    out
}

pub(crate) fn push_hex(out: &mut String, hash: &Hash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in hash {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
}

pub(crate) fn write_hex(out: &mut Vec<u8>, hash: &Hash) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in hash {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

/// Parses 64 lower-case hex digits (the only form the writer produces).
pub fn from_hex(s: &str) -> Option<Hash> {
    let b = s.as_bytes();
    if b.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in b.chunks_exact(2).enumerate() {
        let v = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        out[i] = v(pair[0])? << 4 | v(pair[1])?;
    }
    Some(out)
}

/// SHA-256's initial state (FIPS 180-4, 5.3.3).
const INITIAL_STATE: [u32; 8] = [
    0x6a09_e667,
    0xbb67_ae85,
    0x3c6e_f372,
    0xa54f_f53a,
    0x510e_527f,
    0x9b05_688c,
    0x1f83_d9ab,
    0x5be0_cd19,
];

/// The SHA-256 state after the leading whole blocks of a line, and how many bytes that is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    state: [u32; 8],
    blocks: u32,
}

impl Prefix {
    /// Bytes a prefix takes in a queued frame.
    pub(crate) const ENCODED_LEN: usize = 36;

    /// Nothing hashed yet: the writer hashes the whole line.
    pub(crate) const EMPTY: Self = Self {
        state: INITIAL_STATE,
        blocks: 0,
    };

    /// The state after the whole blocks of `body` that stay unchanged in the sealed line (every byte but the
    /// closing brace, which [`seal_line`] replaces by the chain fields).
    pub(crate) fn of_body(body: &[u8]) -> Self {
        let kept = body.len().saturating_sub(1);
        let mut state = INITIAL_STATE;
        // A body too long to count its blocks in a u32 (far beyond the line limit) gets an empty prefix.
        let blocks = u32::try_from(kept / 64).unwrap_or(0);
        compress(&mut state, &body[..blocks as usize * 64]);
        Self { state, blocks }
    }

    /// Bytes of the line this prefix covers.
    fn len(self) -> usize {
        self.blocks as usize * 64
    }

    /// The prefix as bytes (for the queue).
    pub(crate) fn to_bytes(self) -> [u8; Self::ENCODED_LEN] {
        let mut out = [0u8; Self::ENCODED_LEN];
        let words = self.state.into_iter().chain([self.blocks]);
        for (chunk, word) in out.chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&word.to_le_bytes());
        }
        out
    }

    /// Reads a prefix written by [`Prefix::to_bytes`] from the start of `bytes`; returns it and the rest.
    pub(crate) fn decode(bytes: &[u8]) -> Option<(Self, &[u8])> {
        let (head, rest) = bytes.split_first_chunk::<{ Self::ENCODED_LEN }>()?;
        let mut words = head.chunks_exact(4).map(|w| {
            let mut word = [0u8; 4];
            word.copy_from_slice(w);
            u32::from_le_bytes(word)
        });
        let mut state = [0u32; 8];
        for slot in &mut state {
            *slot = words.next()?;
        }
        let blocks = words.next()?;
        Some((Self { state, blocks }, rest))
    }
}

/// Runs SHA-256's compression function over `data`, whose length is a multiple of 64.
fn compress(state: &mut [u32; 8], data: &[u8]) {
    for block in data.chunks_exact(64) {
        sha2::compress256(state, std::slice::from_ref(GenericArray::from_slice(block)));
    }
}

/// SHA-256 of a message whose first `prefix.len()` bytes are already compressed into `prefix`; `rest` is the
/// remainder of the message. Equal to `Sha256::digest` of the whole message.
fn finish(prefix: Prefix, rest: &[u8]) -> Hash {
    let mut state = prefix.state;
    let whole = rest.len() / 64 * 64;
    compress(&mut state, &rest[..whole]);
    let tail = &rest[whole..];
    // Padding: 0x80, zeros, then the message length in bits as a big-endian u64, to a multiple of 64 bytes.
    let mut last = [0u8; 128];
    last[..tail.len()].copy_from_slice(tail);
    last[tail.len()] = 0x80;
    let end = if tail.len() < 56 { 64 } else { 128 };
    let bits = ((prefix.len() + rest.len()) as u64).wrapping_mul(8);
    last[end - 8..end].copy_from_slice(&bits.to_be_bytes());
    compress(&mut state, &last[..end]);
    let mut out = [0u8; 32];
    for (chunk, word) in out.chunks_exact_mut(4).zip(state) {
        chunk.copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// Appends the chain fields to a serialized event `{...}` (which must end in `}` and have no chain fields) and
/// returns the finished line's hash. `out` receives the line without a newline. `prefix` must be
/// [`Prefix::of_body`] of `body`.
pub(crate) fn seal_line(
    body: &[u8],
    prefix: Prefix,
    seq: u64,
    prev: &Hash,
    out: &mut Vec<u8>,
) -> Hash {
    let start = out.len();
    let without_brace = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(without_brace);
    out.extend_from_slice(b",\"seq\":");
    crate::json::write_u64(out, seq);
    out.extend_from_slice(b",\"prev_hash\":\"");
    write_hex(out, prev);
    out.extend_from_slice(b"\"}");
    let line = &out[start..];
    match line.get(prefix.len()..) {
        Some(rest) => finish(prefix, rest),
        None => line_hash(line), // cannot happen for a prefix of this body; never trust it blindly
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_upper_case() {
        let h = line_hash(b"abc");
        assert_eq!(
            to_hex(&h),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(from_hex(&to_hex(&h)), Some(h));
        assert_eq!(from_hex(&to_hex(&h).to_uppercase()), None);
        assert_eq!(from_hex("00"), None);
    }

    #[test]
    fn seal_line_appends_chain_fields() {
        let mut out = Vec::new();
        let body = br#"{"a":1}"#;
        let h = seal_line(body, Prefix::of_body(body), 7, &GENESIS, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"a":1,"seq":7,"prev_hash":"{}"}}"#, "0".repeat(64))
        );
        assert_eq!(h, line_hash(&out));
    }

    #[test]
    fn a_prefix_survives_the_queue_encoding() {
        let p = Prefix::of_body(&[b'x'; 200]);
        let mut bytes = p.to_bytes().to_vec();
        bytes.extend_from_slice(b"body");
        assert_eq!(Prefix::decode(&bytes), Some((p, &b"body"[..])));
        assert_eq!(Prefix::decode(&bytes[..10]), None);
    }

    #[test]
    fn split_hashing_equals_sha256_at_every_block_boundary() {
        // Bodies of every length around the block size and the padding limit (55/56 bytes into a block).
        for len in 1..=300 {
            let body: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let mut out = Vec::new();
            let h = seal_line(
                &body,
                Prefix::of_body(&body),
                len as u64,
                &GENESIS,
                &mut out,
            );
            assert_eq!(h, line_hash(&out), "body of {len} bytes");
        }
    }

    #[test]
    fn an_empty_prefix_leaves_the_whole_line_to_the_writer() {
        let body = vec![b'x'; 300];
        let (mut a, mut b) = (Vec::new(), Vec::new());
        let full = seal_line(&body, Prefix::of_body(&body), 9, &GENESIS, &mut a);
        let left = seal_line(&body, Prefix::EMPTY, 9, &GENESIS, &mut b);
        assert_eq!((a.clone(), full), (b, left));
        assert_eq!(full, line_hash(&a));
    }

    #[test]
    fn a_body_without_closing_brace_still_hashes_right() {
        let body = vec![b'{'; 150];
        let mut out = Vec::new();
        let h = seal_line(&body, Prefix::of_body(&body), 1, &GENESIS, &mut out);
        assert_eq!(h, line_hash(&out));
    }

    proptest::proptest! {
        #[test]
        fn split_hashing_equals_sha256(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..1000),
                                       seq in proptest::prelude::any::<u64>(),
                                       prev in proptest::prelude::any::<[u8; 32]>()) {
            let mut out = vec![b'#'; 3]; // sealing appends after what is already there
            let h = seal_line(&body, Prefix::of_body(&body), seq, &prev, &mut out);
            proptest::prop_assert_eq!(h, line_hash(&out[3..]));
            proptest::prop_assert_eq!(&h, &<[u8; 32]>::from(Sha256::digest(&out[3..])));
        }
    }
}
