//! Checking the hash chain of every stream in a directory.
//!
//! Each stream is checked on its own: its files must be numbered 0, 1, 2, ... and every line must carry the next
//! `seq` and the hash of the line before it. The first line that breaks this is reported with its file and line
//! number and the kind of tampering it most likely is, told apart by the `seq` numbers and by which hashes the
//! neighbouring lines still point to:
//!
//! - **edited**: `seq` runs on, but the next line no longer carries this line's hash;
//! - **deleted**: `seq` jumps forward (lines gone), or a file number is missing (a whole file gone);
//! - **inserted**: the line after continues the chain from before this line (or the line repeats an earlier one);
//! - **reordered**: the line points to a line that comes after it.
//!
//! What a hash chain cannot show on its own: the removal of the newest events of a stream (or of a whole stream)
//! and a rewrite of everything from some point to the end. Anchor against that by keeping each stream's
//! [`StreamReport::head`] somewhere the sandboxed side cannot write, and comparing later.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use crate::chain::{self, GENESIS, Hash};
use crate::layout::{self, LogFile};
use crate::lines::{LineReader, MAX_LINE, Piece, parse_line};
use crate::reader::ReadError;

/// The result of [`verify`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// One entry per stream, in order of their first file.
    pub streams: Vec<StreamReport>,
}

impl VerifyReport {
    /// `true` when no stream shows tampering (a torn tail from a crash is not tampering).
    pub fn is_intact(&self) -> bool {
        self.streams.iter().all(|s| s.tamper.is_none())
    }

    /// The first tampering found, if any.
    pub fn first_tamper(&self) -> Option<(&StreamReport, &Tamper)> {
        self.streams
            .iter()
            .find_map(|s| s.tamper.as_ref().map(|t| (s, t)))
    }

    /// Total events whose chain checked out.
    pub fn events(&self) -> u64 {
        self.streams.iter().map(|s| s.events).sum()
    }
}

/// The verdict on one writer stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamReport {
    /// Stream id (16 hex digits, as in file names).
    pub stream: String,
    /// Its files, in order.
    pub files: Vec<PathBuf>,
    /// Events verified (up to the first problem).
    pub events: u64,
    /// Hex hash of the last verified line: record it elsewhere to detect later truncation.
    pub head: Option<String>,
    /// A writer is still appending to this stream.
    pub active: bool,
    /// Bytes at the end of the stream without a newline (a crash mid-write, or a write in progress if `active`).
    pub torn_tail: Option<TornTail>,
    /// The first sign of tampering.
    pub tamper: Option<Tamper>,
}

/// An unterminated last line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TornTail {
    /// The file.
    pub file: PathBuf,
    /// 1-based line number.
    pub line: u64,
    /// Byte offset where it starts.
    pub offset: u64,
    /// Its length.
    pub len: u64,
}

/// Where and how the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tamper {
    /// What most likely happened.
    pub kind: TamperKind,
    /// The file of the first bad line.
    pub file: PathBuf,
    /// Its 1-based line number (1 for a missing file: the first line of the file after the gap).
    pub line: u64,
    /// A sentence for humans.
    pub detail: String,
}

/// Kinds of tampering.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum TamperKind {
    /// A line was changed.
    Edited,
    /// Lines were removed.
    Deleted {
        /// How many (from the `seq` gap).
        count: u64,
    },
    /// A whole file of the stream is missing.
    MissingFile,
    /// Lines were added.
    Inserted {
        /// How many.
        count: u64,
    },
    /// Lines were moved.
    Reordered,
    /// A line is not a valid event (or a torn line sits in the middle of the stream).
    Corrupt,
}

impl fmt::Display for TamperKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TamperKind::Edited => f.write_str("edited"),
            TamperKind::Deleted { count } => write!(f, "{count} deleted"),
            TamperKind::MissingFile => f.write_str("file deleted"),
            TamperKind::Inserted { count } => write!(f, "{count} inserted"),
            TamperKind::Reordered => f.write_str("reordered"),
            TamperKind::Corrupt => f.write_str("corrupt"),
        }
    }
}

impl fmt::Display for Tamper {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at {}:{}: {}",
            self.kind,
            self.file.display(),
            self.line,
            self.detail
        )
    }
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for s in &self.streams {
            write!(
                f,
                "stream {}: {} events in {} files",
                s.stream,
                s.events,
                s.files.len()
            )?;
            match (&s.tamper, &s.torn_tail) {
                (Some(t), _) => writeln!(f, ", TAMPERED: {t}")?,
                (None, Some(t)) if s.active => writeln!(
                    f,
                    ", intact; a write is in progress at {}:{}",
                    t.file.display(),
                    t.line
                )?,
                (None, Some(t)) => writeln!(
                    f,
                    ", intact up to a torn last line ({} bytes at {}:{}, from a crash)",
                    t.len,
                    t.file.display(),
                    t.line
                )?,
                (None, None) => writeln!(f, ", intact")?,
            }
            if let (Some(head), None) = (&s.head, &s.tamper) {
                writeln!(f, "  head {head}")?;
            }
        }
        if self.is_intact() {
            write!(
                f,
                "OK: {} events verified in {} streams",
                self.events(),
                self.streams.len()
            )
        } else {
            write!(f, "FAILED: the audit trail was tampered with")
        }
    }
}

/// Verifies every stream in `dir`.
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport, ReadError> {
    let dir = dir.as_ref();
    let files = layout::list(dir).map_err(|source| ReadError::ListDir {
        dir: dir.to_path_buf(),
        source,
    })?;
    let mut order: Vec<u64> = Vec::new();
    let mut by_stream: HashMap<u64, Vec<LogFile>> = HashMap::new();
    for f in files {
        if !by_stream.contains_key(&f.stream) {
            order.push(f.stream);
        }
        by_stream.entry(f.stream).or_default().push(f);
    }
    let mut streams = Vec::new();
    for id in order {
        let mut files = by_stream.remove(&id).unwrap_or_default();
        files.sort_by_key(|f| f.file_seq);
        let active = files
            .last()
            .is_some_and(|f| !f.sealed && layout::writer_alive(&f.path));
        let mut inputs = Vec::new();
        for f in &files {
            let reader = File::open(&f.path).map_err(|source| ReadError::File {
                path: f.path.clone(),
                source,
            })?;
            inputs.push((f.path.clone(), f.file_seq, reader));
        }
        let mut report = verify_stream(inputs);
        report.stream = format!("{id:016x}");
        report.active = active;
        streams.push(report);
    }
    Ok(VerifyReport { streams })
}

/// One line's place in the chain.
#[derive(Debug, Clone)]
struct Entry {
    file: usize,
    line: u64,
    seq: u64,
    prev: Hash,
    hash: Hash,
}

enum Item {
    Entry(Entry),
    Problem(Tamper),
    Torn(TornTail),
}

/// Walks a stream's files, turning lines into entries.
struct StreamItems<R> {
    files: Vec<(PathBuf, u32, Option<R>)>,
    next_file: usize,
    current: Option<LineReader<R>>,
    torn_seen: bool,
}

impl<R: Read> StreamItems<R> {
    fn path(&self, file: usize) -> PathBuf {
        self.files
            .get(file)
            .map(|f| f.0.clone())
            .unwrap_or_default()
    }

    fn next_item(&mut self) -> Option<Item> {
        loop {
            if self.current.is_none() {
                if self.next_file >= self.files.len() {
                    return None;
                }
                let idx = self.next_file;
                let seq = self.files[idx].1;
                if seq as usize != idx {
                    self.next_file = self.files.len();
                    let detail = if (seq as usize) > idx {
                        format!(
                            "file number {idx} of the stream is missing (deleted); this file is number {seq}"
                        )
                    } else {
                        format!("file number {seq} appears twice")
                    };
                    let kind = if (seq as usize) > idx {
                        TamperKind::MissingFile
                    } else {
                        TamperKind::Inserted { count: 1 }
                    };
                    return Some(Item::Problem(Tamper {
                        kind,
                        file: self.path(idx),
                        line: 1,
                        detail,
                    }));
                }
                self.next_file += 1;
                let reader = self.take_reader(idx)?;
                self.current = Some(LineReader::new(reader, 0));
            }
            let file = self.next_file - 1;
            let last_file = self.next_file == self.files.len();
            let lines = self.current.as_mut()?;
            let line = lines.line_no() + 1;
            let piece = match lines.next_piece() {
                Ok(Some(p)) => p,
                Ok(None) => {
                    self.current = None;
                    continue;
                }
                Err(e) => {
                    let line = lines.line_no();
                    self.current = None;
                    self.next_file = self.files.len();
                    return Some(Item::Problem(Tamper {
                        kind: TamperKind::Corrupt,
                        file: self.path(file),
                        line,
                        detail: format!("read failed: {e}"),
                    }));
                }
            };
            let item = match piece {
                Piece::Line { bytes, .. } => match parse_line(bytes) {
                    Ok(event) => {
                        let prev = event
                            .prev_hash
                            .as_deref()
                            .and_then(chain::from_hex)
                            .unwrap_or(GENESIS);
                        Item::Entry(Entry {
                            file,
                            line,
                            seq: event.seq.unwrap_or(u64::MAX),
                            prev,
                            hash: chain::line_hash(bytes),
                        })
                    }
                    Err(problem) => Item::Problem(Tamper {
                        kind: TamperKind::Corrupt,
                        file: self.path(file),
                        line,
                        detail: problem.to_string(),
                    }),
                },
                Piece::TooLong { len, .. } => Item::Problem(Tamper {
                    kind: TamperKind::Corrupt,
                    file: self.path(file),
                    line,
                    detail: format!("line of {len} bytes exceeds the {MAX_LINE}-byte limit"),
                }),
                Piece::Unterminated { offset, len } if last_file && !self.torn_seen => {
                    self.torn_seen = true;
                    Item::Torn(TornTail {
                        file: self.path(file),
                        line,
                        offset,
                        len,
                    })
                }
                Piece::Unterminated { len, .. } => Item::Problem(Tamper {
                    kind: TamperKind::Corrupt,
                    file: self.path(file),
                    line,
                    detail: format!(
                        "{len} bytes without a newline end a file that later files continue"
                    ),
                }),
            };
            return Some(item);
        }
    }

    fn take_reader(&mut self, idx: usize) -> Option<R> {
        self.files.get_mut(idx)?.2.take()
    }
}

/// How many lines past the first bad one are read to tell the kinds of tampering apart.
const LOOKAHEAD: usize = 64;
/// How many good lines before it are kept for the same purpose.
const LOOKBEHIND: usize = 64;

/// Verifies one stream given its files in order as `(path, file number, reader)`; `stream` and `active` of the
/// result are left for the caller to fill in. Also the entry point for fuzzing.
pub fn verify_stream<R: Read>(files: Vec<(PathBuf, u32, R)>) -> StreamReport {
    let paths: Vec<PathBuf> = files.iter().map(|f| f.0.clone()).collect();
    let mut items = StreamItems {
        files: files.into_iter().map(|(p, n, r)| (p, n, Some(r))).collect(),
        next_file: 0,
        current: None,
        torn_seen: false,
    };
    let mut report = StreamReport {
        stream: String::new(),
        files: paths.clone(),
        events: 0,
        head: None,
        active: false,
        torn_tail: None,
        tamper: None,
    };
    let mut behind: VecDeque<Entry> = VecDeque::new();
    let mut expected_seq = 0u64;
    let mut expected_prev = GENESIS;
    while let Some(item) = items.next_item() {
        match item {
            Item::Torn(t) => report.torn_tail = Some(t),
            Item::Problem(t) => {
                report.tamper = Some(t);
                break;
            }
            Item::Entry(e) if e.seq == expected_seq && e.prev == expected_prev => {
                expected_seq += 1;
                expected_prev = e.hash;
                report.events += 1;
                if behind.len() == LOOKBEHIND {
                    behind.pop_front();
                }
                behind.push_back(e);
            }
            Item::Entry(bad) => {
                let mut ahead = Vec::new();
                while ahead.len() < LOOKAHEAD {
                    match items.next_item() {
                        Some(Item::Entry(e)) => ahead.push(e),
                        _ => break,
                    }
                }
                let (kind, at, detail) =
                    classify(&behind, &bad, &ahead, expected_seq, &expected_prev);
                report.tamper = Some(Tamper {
                    kind,
                    file: paths.get(at.file).cloned().unwrap_or_default(),
                    line: at.line,
                    detail,
                });
                break;
            }
        }
    }
    if report.tamper.is_some() {
        report.torn_tail = None;
    }
    report.head = behind.back().map(|e| chain::to_hex(&e.hash));
    report
}

/// Names the tampering at the first bad entry; returns the kind, the entry to point at and an explanation.
fn classify<'a>(
    behind: &'a VecDeque<Entry>,
    bad: &'a Entry,
    ahead: &'a [Entry],
    expected_seq: u64,
    expected_prev: &Hash,
) -> (TamperKind, &'a Entry, String) {
    // The line points at a line that comes after it: lines were swapped or moved up.
    if let Some(target) = ahead.iter().find(|e| e.hash == bad.prev) {
        let detail = format!(
            "this line (seq {}) belongs after line {}, which follows it",
            bad.seq, target.line
        );
        return (TamperKind::Reordered, bad, detail);
    }
    // The chain resumes after some lines: those lines were inserted.
    if let Some(k) = ahead
        .iter()
        .position(|e| e.prev == *expected_prev && e.seq == expected_seq)
    {
        let count = k as u64 + 1;
        let detail =
            format!("{count} line(s) here are not part of the chain; the chain resumes after them");
        return (TamperKind::Inserted { count }, bad, detail);
    }
    // The line continues from an earlier point: the lines after that point were inserted (or replayed).
    if let Some(pos) = behind.iter().rposition(|e| e.hash == bad.prev) {
        let count = (behind.len() - 1 - pos) as u64;
        let first = behind.get(pos + 1).unwrap_or(bad);
        let detail = format!("{count} line(s) from here were added between two consecutive events");
        return (
            TamperKind::Inserted {
                count: count.max(1),
            },
            first,
            detail,
        );
    }
    if behind.iter().any(|e| e.hash == bad.hash) {
        return (
            TamperKind::Inserted { count: 1 },
            bad,
            "this line repeats an earlier event".into(),
        );
    }
    // Chain link intact but position wrong: the line's own seq was changed.
    if bad.prev == *expected_prev {
        let detail = format!(
            "seq is {} where {expected_seq} was expected; the line was modified",
            bad.seq
        );
        return (TamperKind::Edited, bad, detail);
    }
    if bad.seq == expected_seq {
        // Either the previous line changed (this line still holds its old hash) or this line's prev_hash did.
        let this_changed =
            ahead.first().is_some_and(|next| next.prev != bad.hash) || behind.is_empty();
        return match (this_changed, behind.back()) {
            (false, Some(prev)) => (
                TamperKind::Edited,
                prev,
                "the line was modified: the next line carries a different hash for it".into(),
            ),
            _ => (
                TamperKind::Edited,
                bad,
                "the line was modified: its prev_hash does not match the line before it".into(),
            ),
        };
    }
    if bad.seq > expected_seq {
        let count = bad.seq - expected_seq;
        let detail = format!(
            "{count} event(s) before this line are missing (seq {expected_seq} to {})",
            bad.seq - 1
        );
        return (TamperKind::Deleted { count }, bad, detail);
    }
    let detail = format!(
        "seq {} repeats or goes back (expected {expected_seq})",
        bad.seq
    );
    (TamperKind::Reordered, bad, detail)
}
