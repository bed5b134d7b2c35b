//! A durable, tamper-evident JSONL audit trail for sbx sandboxes.
//!
//! Every network decision, credential injection, mount, exec and lifecycle change is an [`Event`]. A writer
//! ([`AuditLog::open`]) appends events as JSON lines to files in an audit directory from a background thread; a
//! [`Reader`] filters and merges them, [`Follow`] tails them, [`PolicyLogView`] aggregates them the way
//! `sbx policy log` prints them, and [`verify()`] checks the hash chain that links every line to the one before it.
//!
//! ```
//! use sbx_audit::{AuditLog, Decision, Event, Filter, Proxy, Reader, WriterConfig, verify};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default())?;
//! audit.record(
//!     Event::network("web-1", "evil.example", 443, Proxy::Forward, Decision::Deny)
//!         .explained(None, None, "default-deny")
//!         .agent("claude"),
//! )?;
//! audit.record(Event::secret_injected("web-1", "anthropic", "api.anthropic.com"))?;
//! guard.close()?; // writes, fsyncs and seals the file
//!
//! let reader = Reader::open(dir.path())?;
//! let (denied, issues) = reader.collect(&Filter::all().decision(Decision::Deny));
//! assert!(issues.is_empty());
//! assert_eq!(denied[0].host(), Some("evil.example"));
//!
//! let (view, _) = reader.aggregate(&Filter::all());
//! assert_eq!(view.blocked[0].host, "evil.example:443");
//! println!("{view}");
//!
//! assert!(verify(dir.path())?.is_intact());
//! # Ok(())
//! # }
//! ```
//!
//! # Layout and concurrency
//!
//! Each writer owns a *stream*: its own sequence of files named `audit-<start time>-<stream id>-<file number>.jsonl`,
//! so names sort by time and lines of different processes can never interleave. The hash chain runs through each
//! stream across its rotations; readers merge the streams by timestamp. See [`layout`] and [`mod@verify`].
//!
//! # Crash safety
//!
//! A line is written whole before the next begins, so after a `kill -9` at any instant every line that ends in a
//! newline is a complete event. Bytes after the last newline are reported ([`ReadIssue::Unterminated`],
//! [`StreamReport::torn_tail`]) and never read as an event. The next writer to open the directory seals the dead
//! writer's file without touching its content.
#![deny(unsafe_code)] // allowed in `writeback` only, for one system call std does not offer
#![deny(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

mod aggregate;
pub mod chain;
mod event;
mod id;
mod json;
pub mod layout;
mod lines;
#[cfg(feature = "otlp")]
pub mod otlp;
mod queue;
mod reader;
mod time;
pub mod verify;
mod writeback;
mod writer;

pub use aggregate::{Aggregator, PolicyLogRow, PolicyLogView};
pub use event::{
    Action, Category, Decision, Event, MountMode, Proxy, SCHEMA_VERSION, local_hostname,
};
pub use id::{EventId, EventIdError};
pub use layout::LogFile;
pub use lines::MAX_LINE;
pub use reader::{Events, Filter, Follow, FollowFrom, ReadError, ReadIssue, Reader};
pub use time::{Timestamp, TimestampError};
pub use verify::{StreamReport, Tamper, TamperKind, TornTail, VerifyReport, verify};
pub use writer::{
    AuditHandle, AuditLog, CloseError, Durability, FullPolicy, OpenError, RecordError,
    WriterConfig, WriterGuard, WriterStats,
};

/// Reads bytes as if they were a log file — every line, the chain check of a single stream — without panicking on
/// any input. Returns the number of valid events. For fuzzing and for checking files handed over by other means.
pub fn check_bytes(data: &[u8]) -> usize {
    let file = LogFile {
        path: "input".into(),
        start: Timestamp::default(),
        stream: 0,
        file_seq: 0,
        sealed: true,
    };
    let mut lines = lines::LineReader::new(data, 0);
    let mut valid = 0;
    loop {
        match reader::classify(&file, &mut lines, &reader::Prefilter::default()) {
            reader::Next::Event(e) => {
                valid += 1;
                let _ = serde_json::to_vec(&e);
            }
            reader::Next::Issue(i) => {
                let _ = i.to_string();
            }
            reader::Next::Skipped => {}
            reader::Next::EndOfFile | reader::Next::Failed(_) => break,
        }
    }
    let report = verify::verify_stream(vec![(file.path.clone(), 0, data)]);
    let _ = report.tamper.map(|t| t.to_string());
    let _ = PolicyLogView::default().to_string();
    valid
}

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
