//! The plaintext inside an encrypted store file.
//!
//! ```text
//! sbx-secrets 1
//! global<TAB>anthropic<TAB>736b2d...        (value hex-encoded)
//! sandbox:dev<TAB>github<TAB>676870...
//! ```
//!
//! Values are hex-encoded so any byte sequence survives and no value can break the line
//! structure. Buffers holding plaintext are zeroized when dropped.

use std::collections::BTreeMap;

use zeroize::Zeroizing;

use crate::value::{Scope, SecretKey, SecretValue};

/// First line of every store plaintext.
const MAGIC: &str = "sbx-secrets 1";

/// The decrypted store: every key with its value.
pub type Entries = BTreeMap<SecretKey, SecretValue>;

/// Why a store plaintext does not parse: the 1-based line and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    /// 1-based line number (0: the content as a whole).
    pub line: usize,
    /// What is wrong (never includes a value).
    pub message: String,
}

/// Parses a decrypted store. Never panics, whatever the input (it is fuzzed).
pub fn parse(plaintext: &[u8]) -> Result<Entries, FormatError> {
    let text = std::str::from_utf8(plaintext).map_err(|e| FormatError {
        line: 0,
        message: format!("not UTF-8 (at byte {})", e.valid_up_to()),
    })?;
    let mut lines = text.split('\n').enumerate();
    match lines.next() {
        Some((_, first)) if first == MAGIC => {}
        _ => {
            return Err(FormatError {
                line: 1,
                message: format!("missing header line {MAGIC:?}"),
            });
        }
    }
    let mut entries = Entries::new();
    for (index, line) in lines {
        if line.is_empty() {
            continue;
        }
        let line_no = index + 1;
        let (key, value) = parse_line(line).map_err(|message| FormatError {
            line: line_no,
            message,
        })?;
        if entries.contains_key(&key) {
            return Err(FormatError {
                line: line_no,
                message: format!("duplicate entry for {key}"),
            });
        }
        entries.insert(key, value);
    }
    Ok(entries)
}

fn parse_line(line: &str) -> Result<(SecretKey, SecretValue), String> {
    let mut fields = line.split('\t');
    let (Some(scope), Some(service), Some(hex), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("expected three tab-separated fields: scope, service, value".into());
    };
    let scope = Scope::parse(scope).map_err(|e| e.to_string())?;
    let key = SecretKey::new(scope, service).map_err(|e| e.to_string())?;
    let bytes = decode_hex(hex).ok_or_else(|| format!("value of {key} is not valid hex"))?;
    let text =
        String::from_utf8(bytes.to_vec()).map_err(|_| format!("value of {key} is not UTF-8"))?;
    Ok((key, SecretValue::new(text)))
}

/// Serialises entries; the buffer is zeroized when dropped.
pub fn serialize(entries: &Entries) -> Zeroizing<Vec<u8>> {
    let size = MAGIC.len()
        + 1
        + entries
            .iter()
            .map(|(k, v)| 40 + k.service.len() + 2 * v.expose().len())
            .sum::<usize>();
    let mut out = Zeroizing::new(Vec::with_capacity(size));
    out.extend_from_slice(MAGIC.as_bytes());
    out.push(b'\n');
    for (key, value) in entries {
        out.extend_from_slice(key.scope.to_string().as_bytes());
        out.push(b'\t');
        out.extend_from_slice(key.service.as_bytes());
        out.push(b'\t');
        for byte in value.expose().bytes() {
            out.push(HEX[usize::from(byte >> 4)]);
            out.push(HEX[usize::from(byte & 0xf)]);
        }
        out.push(b'\n');
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn decode_hex(hex: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !hex.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = Zeroizing::new(Vec::with_capacity(hex.len() / 2));
    for pair in hex.as_bytes().chunks_exact(2) {
        out.push(digit(pair[0])? << 4 | digit(pair[1])?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Entries {
        let mut e = Entries::new();
        e.insert(
            SecretKey::global("anthropic").unwrap(),
            "sk-ant-\t\nx".into(),
        );
        e.insert(SecretKey::sandbox("dev", "github").unwrap(), "ghp_x".into());
        e.insert(SecretKey::global("empty").unwrap(), "".into());
        e
    }

    #[test]
    fn round_trip_keeps_every_entry_and_value() {
        let entries = sample();
        let parsed = parse(&serialize(&entries)).unwrap();
        assert_eq!(parsed, entries);
    }

    #[test]
    fn errors_name_the_line() {
        let cases: &[(&[u8], usize, &str)] = &[
            (b"", 1, "header"),
            (b"sbx-secrets 2\n", 1, "header"),
            (b"sbx-secrets 1\nglobal\tx\n", 2, "three"),
            (b"sbx-secrets 1\nglobal\tx\t6\n", 2, "hex"),
            (b"sbx-secrets 1\nglobal\tx\tzz\n", 2, "hex"),
            (b"sbx-secrets 1\nglobal\tx\tff\n", 2, "UTF-8"),
            (b"sbx-secrets 1\nlocal\tx\t61\n", 2, "scope"),
            (b"sbx-secrets 1\nglobal\tX\t61\n", 2, "service"),
            (
                b"sbx-secrets 1\nglobal\tx\t61\n\nglobal\tx\t62\n",
                4,
                "duplicate",
            ),
            (b"sbx-secrets 1\n\xff", 0, "UTF-8"),
        ];
        for (input, line, needle) in cases {
            let err = parse(input).unwrap_err();
            assert_eq!(err.line, *line, "{err:?}");
            assert!(err.message.contains(needle), "{err:?} lacks {needle}");
        }
    }

    #[test]
    fn error_messages_never_contain_values() {
        let err = parse(b"sbx-secrets 1\nglobal\tx\t736563726574ff\n").unwrap_err();
        assert!(!err.message.contains("secret") && !err.message.contains("736563"));
    }
}
