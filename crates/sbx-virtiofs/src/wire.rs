//! Bounds-checked reading and writing of FUSE wire data.
//!
//! FUSE messages are packed C structs in the host's byte order. Every read here checks the remaining length first, so a
//! truncated or lying message becomes a [`DecodeError`], never a panic or an out-of-bounds access.

use std::ffi::CStr;

use crate::request::DecodeError;

/// A cursor over the bytes of one request.
#[derive(Debug, Clone)]
pub(crate) struct ByteReader<'a> {
    bytes: &'a [u8],
    /// Offset of `bytes[0]` inside the whole message, for error messages.
    offset: usize,
}

impl<'a> ByteReader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, offset: 0 }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len()
    }

    /// Takes exactly `len` bytes.
    pub(crate) fn take(&mut self, len: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if len > self.bytes.len() {
            return Err(DecodeError::Truncated {
                what,
                offset: self.offset,
                needed: len,
                available: self.bytes.len(),
            });
        }
        let (head, tail) = self.bytes.split_at(len);
        self.bytes = tail;
        self.offset += len;
        Ok(head)
    }

    /// Takes everything that is left.
    pub(crate) fn rest(&mut self) -> &'a [u8] {
        let rest = self.bytes;
        self.offset += rest.len();
        self.bytes = &[];
        rest
    }

    pub(crate) fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_ne_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_ne_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        Ok(u64::from_ne_bytes([
            b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7],
        ]))
    }

    /// Takes a NUL-terminated string (the NUL is consumed, not returned).
    pub(crate) fn cstr(&mut self, what: &'static str) -> Result<&'a CStr, DecodeError> {
        let Some(nul) = self.bytes.iter().position(|&b| b == 0) else {
            return Err(DecodeError::Unterminated {
                what,
                offset: self.offset,
            });
        };
        let with_nul = self.take(nul + 1, what)?;
        CStr::from_bytes_with_nul(with_nul).map_err(|_| DecodeError::Unterminated {
            what,
            offset: self.offset,
        })
    }
}

/// Appends packed native-endian fields to a reply buffer.
pub(crate) trait PutExt {
    fn put_u16(&mut self, v: u16);
    fn put_u32(&mut self, v: u32);
    fn put_u64(&mut self, v: u64);
    fn put_zeros(&mut self, n: usize);
}

impl PutExt for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_ne_bytes());
    }
    fn put_zeros(&mut self, n: usize) {
        self.resize(self.len() + n, 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_reads_are_errors_not_panics() {
        let mut r = ByteReader::new(&[1, 2, 3]);
        assert!(matches!(
            r.u32("x"),
            Err(DecodeError::Truncated {
                needed: 4,
                available: 3,
                ..
            })
        ));
        assert_eq!(r.u16("y").ok(), Some(u16::from_ne_bytes([1, 2])));
        assert!(r.u16("z").is_err());
        assert_eq!(r.remaining(), 1);
    }

    #[test]
    fn cstr_requires_a_terminator() {
        let mut r = ByteReader::new(b"abc");
        assert!(matches!(
            r.cstr("name"),
            Err(DecodeError::Unterminated { .. })
        ));
        let mut r = ByteReader::new(b"abc\0def\0");
        assert_eq!(r.cstr("a").ok().map(CStr::to_bytes), Some(&b"abc"[..]));
        assert_eq!(r.cstr("b").ok().map(CStr::to_bytes), Some(&b"def"[..]));
        assert_eq!(r.remaining(), 0);
    }
}
