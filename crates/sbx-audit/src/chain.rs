//! The hash chain: every line carries `seq` (its position in the stream) and `prev_hash`, the hex SHA-256 of the
//! previous line's bytes (without the newline). The first line of a stream has `seq` 0 and 64 zeros as `prev_hash`.

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

/// Appends the chain fields to a serialized event `{...}` (which must end in `}` and have no chain fields) and
/// returns the finished line's hash. `out` receives the line without a newline.
pub(crate) fn seal_line(body: &[u8], seq: u64, prev: &Hash, out: &mut Vec<u8>) -> Hash {
    let start = out.len();
    let without_brace = body.strip_suffix(b"}").unwrap_or(body);
    out.extend_from_slice(without_brace);
    out.extend_from_slice(b",\"seq\":");
    crate::json::write_u64(out, seq);
    out.extend_from_slice(b",\"prev_hash\":\"");
    write_hex(out, prev);
    out.extend_from_slice(b"\"}");
    line_hash(&out[start..])
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
        let h = seal_line(br#"{"a":1}"#, 7, &GENESIS, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert_eq!(
            text,
            format!(r#"{{"a":1,"seq":7,"prev_hash":"{}"}}"#, "0".repeat(64))
        );
        assert_eq!(h, line_hash(&out));
    }
}
