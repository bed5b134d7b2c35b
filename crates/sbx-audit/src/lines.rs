//! Splitting a log file into lines without trusting it: bounded line length, arbitrary bytes, torn tails.

use std::io::{self, Read};

use crate::event::{Event, SCHEMA_VERSION};

/// The longest line accepted (the writer refuses to write longer events).
pub const MAX_LINE: usize = 1 << 20;

/// One piece of a log file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Piece<'a> {
    /// A complete line (newline stripped) starting at byte `offset`.
    Line {
        /// The bytes, without the newline.
        bytes: &'a [u8],
        /// Byte offset of the line in the file.
        offset: u64,
    },
    /// A line longer than [`MAX_LINE`], skipped.
    TooLong {
        /// Byte offset of the line.
        offset: u64,
        /// Its length so far (without the newline).
        len: u64,
        /// Whether it ended in a newline.
        terminated: bool,
    },
    /// Bytes at the end of the input with no newline after them.
    Unterminated {
        /// Byte offset where they start.
        offset: u64,
        /// How many there are.
        len: u64,
    },
}

/// Reads lines from any reader in big chunks; lines are bounded by [`MAX_LINE`].
#[derive(Debug)]
pub(crate) struct LineReader<R> {
    inner: R,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    /// Skipping the rest of an over-long line that began at this offset, with this many bytes seen.
    skipping: Option<(u64, u64)>,
    line_no: u64,
}

const CHUNK: usize = 256 * 1024;

impl<R: Read> LineReader<R> {
    pub(crate) fn new(inner: R, base: u64) -> Self {
        Self {
            inner,
            buf: vec![0; CHUNK],
            start: 0,
            end: 0,
            base,
            eof: false,
            skipping: None,
            line_no: 0,
        }
    }

    /// How many pieces have been returned (the 1-based number of the last one).
    pub(crate) fn line_no(&self) -> u64 {
        self.line_no
    }

    /// File offset just after the last complete line returned.
    pub(crate) fn consumed(&self) -> u64 {
        self.base + self.start as u64
    }

    /// The next piece, or `None` at the end of the input.
    pub(crate) fn next_piece(&mut self) -> io::Result<Option<Piece<'_>>> {
        loop {
            if let Some(pos) = memchr_newline(&self.buf[self.start..self.end]) {
                let line_start = self.start;
                self.start += pos + 1;
                self.line_no += 1;
                if let Some((offset, seen)) = self.skipping.take() {
                    return Ok(Some(Piece::TooLong {
                        offset,
                        len: seen + pos as u64,
                        terminated: true,
                    }));
                }
                return Ok(Some(Piece::Line {
                    bytes: &self.buf[line_start..line_start + pos],
                    offset: self.base + line_start as u64,
                }));
            }
            let pending = self.end - self.start;
            if self.eof {
                if pending == 0 && self.skipping.is_none() {
                    return Ok(None);
                }
                let offset = self.base + self.start as u64;
                self.start = self.end;
                self.line_no += 1;
                return Ok(Some(match self.skipping.take() {
                    Some((offset, seen)) => Piece::TooLong {
                        offset,
                        len: seen + pending as u64,
                        terminated: false,
                    },
                    None => Piece::Unterminated {
                        offset,
                        len: pending as u64,
                    },
                }));
            }
            if pending >= MAX_LINE || self.skipping.is_some() {
                // Over-long: drop what we have and keep scanning for the newline.
                let offset = self.base + self.start as u64;
                let entry = self.skipping.get_or_insert((offset, 0));
                entry.1 += pending as u64;
                self.base += self.end as u64;
                self.start = 0;
                self.end = 0;
            } else if self.start > 0 {
                self.buf.copy_within(self.start..self.end, 0);
                self.base += self.start as u64;
                self.end -= self.start;
                self.start = 0;
            }
            if self.end == self.buf.len() {
                let grown = (self.buf.len() * 2).min(MAX_LINE + CHUNK);
                self.buf.resize(grown, 0);
            }
            let n = loop {
                match self.inner.read(&mut self.buf[self.end..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => return Err(e),
                }
            };
            if n == 0 {
                self.eof = true;
            }
            self.end += n;
        }
    }
}

fn memchr_newline(hay: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', hay)
}

/// Why a line is not a valid event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LineProblem {
    NotJson(String),
    UnsupportedVersion(u32),
    MissingChain,
}

impl std::fmt::Display for LineProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineProblem::NotJson(e) => write!(f, "not a valid event: {e}"),
            LineProblem::UnsupportedVersion(v) => write!(
                f,
                "schema_version {v} is newer than this reader understands ({SCHEMA_VERSION}); upgrade sbx"
            ),
            LineProblem::MissingChain => {
                f.write_str("missing or malformed seq/prev_hash chain fields")
            }
        }
    }
}

/// Parses one line into an event, insisting on the chain fields and a known schema version.
pub(crate) fn parse_line(line: &[u8]) -> Result<Event, LineProblem> {
    let event: Event =
        serde_json::from_slice(line).map_err(|e| LineProblem::NotJson(e.to_string()))?;
    if event.schema_version == 0 || event.schema_version > SCHEMA_VERSION {
        return Err(LineProblem::UnsupportedVersion(event.schema_version));
    }
    match (&event.seq, &event.prev_hash) {
        (Some(_), Some(h)) if crate::chain::from_hex(h).is_some() => Ok(event),
        _ => Err(LineProblem::MissingChain),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pieces(data: &[u8]) -> Vec<String> {
        let mut r = LineReader::new(data, 0);
        let mut out = Vec::new();
        while let Some(p) = r.next_piece().unwrap() {
            out.push(match p {
                Piece::Line { bytes, offset } => {
                    format!("L{offset}:{}", String::from_utf8_lossy(bytes))
                }
                Piece::TooLong {
                    offset,
                    len,
                    terminated,
                } => format!("T{offset}:{len}:{terminated}"),
                Piece::Unterminated { offset, len } => format!("U{offset}:{len}"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_reports_torn_tail() {
        assert_eq!(pieces(b"a\nbb\ncc"), ["L0:a", "L2:bb", "U5:2"]);
        assert_eq!(pieces(b"a\n\n"), ["L0:a", "L2:"]);
        assert!(pieces(b"").is_empty());
    }

    #[test]
    fn skips_over_long_lines_and_continues() {
        let mut data = vec![b'x'; MAX_LINE + 10];
        data.extend_from_slice(b"\nok\n");
        data.extend(vec![b'y'; MAX_LINE * 2]);
        assert_eq!(
            pieces(&data),
            [
                format!("T0:{}:true", MAX_LINE + 10),
                format!("L{}:ok", MAX_LINE + 11),
                format!("T{}:{}:false", MAX_LINE + 14, MAX_LINE * 2)
            ]
        );
    }

    #[test]
    fn lines_spanning_chunks_are_whole() {
        let line = "z".repeat(CHUNK - 3);
        let data = format!("{line}\n{line}\n");
        assert_eq!(
            pieces(data.as_bytes()),
            [format!("L0:{line}"), format!("L{}:{line}", CHUNK - 2)]
        );
    }
}
