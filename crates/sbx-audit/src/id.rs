//! Event ids: UUIDv7 (RFC 9562), so ids sort by creation time and are unique across hosts and processes.
//!
//! Layout: 48 bits of Unix milliseconds, version 7, 12 random bits, the RFC 4122 variant, 62 random bits. The random
//! bits come from a per-thread generator seeded once from the operating system, so making an id costs no syscall.

use std::cell::Cell;
use std::fmt;
use std::str::FromStr;

use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::time::Timestamp;

/// A UUIDv7 event id, written as `0193f1c2-7b4a-7c3e-9d2f-1a2b3c4d5e6f`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EventId([u8; 16]);

/// Text that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid event id {value:?}: expected a UUID such as 0193f1c2-7b4a-7c3e-9d2f-1a2b3c4d5e6f")]
pub struct EventIdError {
    /// The text that was given (cut to 64 characters).
    pub value: String,
}

thread_local! {
    static RNG: Cell<u64> = Cell::new(seed());
}

fn seed() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No OS randomness: fall back to the std hasher's per-process random keys mixed with the time.
        use std::hash::{BuildHasher, Hasher};
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_i64(Timestamp::now().unix_micros());
        return h.finish();
    }
    u64::from_le_bytes(bytes)
}

/// wyrand: a fast generator with good statistical quality (ids need uniqueness, not secrecy).
pub(crate) fn random_u64() -> u64 {
    RNG.with(|state| {
        let s = state.get().wrapping_add(0xa076_1d64_78bd_642f);
        state.set(s);
        let t = u128::from(s) * u128::from(s ^ 0xe703_7ed1_a0b4_28db);
        ((t >> 64) as u64) ^ (t as u64)
    })
}

impl EventId {
    /// A new UUIDv7 for an event made at `at`.
    pub fn new_v7(at: Timestamp) -> Self {
        let millis = u64::try_from(at.unix_millis()).unwrap_or(0) & 0xffff_ffff_ffff;
        let hi = random_u64();
        let lo = random_u64();
        let mut b = [0u8; 16];
        b[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
        b[6..8].copy_from_slice(&(0x7000 | (hi as u16 & 0x0fff)).to_be_bytes());
        b[8..]
            .copy_from_slice(&((lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000).to_be_bytes());
        Self(b)
    }

    /// The 16 bytes of the UUID.
    pub fn as_bytes(&self) -> &[u8; 16] {
        &self.0
    }

    /// The UUID version nibble (7 for ids made here).
    pub fn version(&self) -> u8 {
        self.0[6] >> 4
    }

    /// Parses the hyphenated UUID form (any version, either case).
    pub fn parse(s: &str) -> Result<Self, EventIdError> {
        let err = || EventIdError {
            value: s.chars().take(64).collect(),
        };
        let b = s.as_bytes();
        if b.len() != 36 {
            return Err(err());
        }
        let mut out = [0u8; 16];
        let mut n = 0;
        let mut i = 0;
        while i < 36 {
            if matches!(i, 8 | 13 | 18 | 23) {
                if b[i] != b'-' {
                    return Err(err());
                }
                i += 1;
                continue;
            }
            let hi = hex_val(b[i]).ok_or_else(err)?;
            let lo = hex_val(b[i + 1]).ok_or_else(err)?;
            out[n] = hi << 4 | lo;
            n += 1;
            i += 2;
        }
        Ok(Self(out))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl EventId {
    /// The hyphenated form in a stack buffer (ids are formatted once per event written).
    pub(crate) fn encode(&self) -> [u8; 36] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut pos = 0;
        for (i, byte) in self.0.iter().enumerate() {
            if matches!(i, 4 | 6 | 8 | 10) {
                pos += 1;
            }
            out[pos] = DIGITS[usize::from(byte >> 4)];
            out[pos + 1] = DIGITS[usize::from(byte & 15)];
            pos += 2;
        }
        out
    }
}

impl fmt::Display for EventId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buf = self.encode();
        f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
    }
}

impl FromStr for EventId {
    type Err = EventIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for EventId {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let buf = self.encode();
        s.serialize_str(std::str::from_utf8(&buf).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> Deserialize<'de> for EventId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = EventId;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a UUID string")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<EventId, E> {
                EventId::parse(v).map_err(E::custom)
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_ids_carry_time_version_and_variant() {
        let t = Timestamp::parse("2026-11-23T12:14:47.123456Z").unwrap();
        let id = EventId::new_v7(t);
        assert_eq!(id.version(), 7);
        assert_eq!(id.as_bytes()[8] >> 6, 0b10);
        let millis =
            u64::from_be_bytes([0, 0, id.0[0], id.0[1], id.0[2], id.0[3], id.0[4], id.0[5]]);
        assert_eq!(millis, 1_795_436_087_123);
        let text = id.to_string();
        assert_eq!(EventId::parse(&text).unwrap(), id);
        assert_eq!(EventId::parse(&text.to_uppercase()).unwrap(), id);
    }

    #[test]
    fn ids_are_unique_and_sort_by_time() {
        let early = EventId::new_v7(Timestamp::from_unix_micros(1_000_000));
        let late = EventId::new_v7(Timestamp::from_unix_micros(2_000_000));
        assert!(early < late);
        let mut seen = std::collections::HashSet::new();
        let now = Timestamp::now();
        for _ in 0..10_000 {
            assert!(seen.insert(EventId::new_v7(now)));
        }
    }

    #[test]
    fn rejects_malformed_ids() {
        for bad in [
            "",
            "0193f1c2-7b4a-7c3e-9d2f-1a2b3c4d5e6",
            "0193f1c2x7b4a-7c3e-9d2f-1a2b3c4d5e6f",
            "g193f1c2-7b4a-7c3e-9d2f-1a2b3c4d5e6f",
        ] {
            assert!(EventId::parse(bad).is_err(), "{bad}");
        }
    }
}
