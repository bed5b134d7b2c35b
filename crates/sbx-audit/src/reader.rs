//! Reading an audit directory: every stream's files, merged into one time-ordered sequence, filtered.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::event::{Category, Decision, Event};
use crate::layout::{self, LogFile};
use crate::lines::{LineReader, Piece, parse_line};
use crate::time::Timestamp;

/// Reading an audit directory failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReadError {
    /// The directory could not be listed.
    #[error("cannot list audit directory {dir}: {source}", dir = dir.display())]
    ListDir {
        /// The directory.
        dir: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A log file could not be opened or read.
    #[error("cannot read audit file {path}: {source}", path = path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
}

/// A line of a log file that is not a valid event. Readers skip it and carry on; `verify` decides whether it
/// means tampering.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReadIssue {
    /// The line is not a valid event.
    #[error("{file}:{line} (byte {offset}): {problem}", file = file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Byte offset of the line.
        offset: u64,
        /// What is wrong.
        problem: String,
    },
    /// The file ends with bytes that are not followed by a newline: a write torn by a crash (sealed file) or in
    /// progress (active file). They are never taken as an event.
    #[error("{file}: {len} bytes at byte {offset} have no terminating newline ({state})", file = file.display(),
        state = if *sealed { "torn by a crash" } else { "a write in progress" })]
    Unterminated {
        /// The file.
        file: PathBuf,
        /// Byte offset where the bytes start.
        offset: u64,
        /// How many bytes.
        len: u64,
        /// Whether the file is sealed (so the bytes can never be completed).
        sealed: bool,
    },
    /// The file could not be read to the end.
    #[error("{file}: read failed after line {line}: {message}", file = file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The last line read.
        line: u64,
        /// The error.
        message: String,
    },
}

/// Which events to return. Every set field must match; unset fields match everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Filter {
    /// Exact sandbox name.
    pub sandbox: Option<String>,
    /// Category.
    pub category: Option<Category>,
    /// Decision (events without a decision never match a set decision).
    pub decision: Option<Decision>,
    /// Destination host, case-insensitive; `*.example.com` matches subdomains of example.com.
    pub host: Option<String>,
    /// Earliest timestamp (inclusive).
    pub since: Option<Timestamp>,
    /// Latest timestamp (exclusive).
    pub until: Option<Timestamp>,
}

impl Filter {
    /// Matches every event.
    pub fn all() -> Self {
        Self::default()
    }
    /// Only this sandbox.
    pub fn sandbox(mut self, sandbox: &str) -> Self {
        self.sandbox = Some(sandbox.to_owned());
        self
    }
    /// Only this category.
    pub fn category(mut self, category: Category) -> Self {
        self.category = Some(category);
        self
    }
    /// Only this decision.
    pub fn decision(mut self, decision: Decision) -> Self {
        self.decision = Some(decision);
        self
    }
    /// Only this host (or `*.domain`).
    pub fn host(mut self, host: &str) -> Self {
        self.host = Some(host.to_owned());
        self
    }
    /// Only events at or after `t`.
    pub fn since(mut self, t: Timestamp) -> Self {
        self.since = Some(t);
        self
    }
    /// Only events before `t`.
    pub fn until(mut self, t: Timestamp) -> Self {
        self.until = Some(t);
        self
    }

    /// Whether `event` passes the filter.
    pub fn matches(&self, event: &Event) -> bool {
        if self.since.is_some_and(|t| event.timestamp < t)
            || self.until.is_some_and(|t| event.timestamp >= t)
        {
            return false;
        }
        if self
            .sandbox
            .as_deref()
            .is_some_and(|s| event.sandbox.as_deref() != Some(s))
        {
            return false;
        }
        if self.category.is_some_and(|c| event.category != c) {
            return false;
        }
        if self.decision.is_some_and(|d| event.decision != Some(d)) {
            return false;
        }
        match &self.host {
            None => true,
            Some(want) => event.host().is_some_and(|h| host_matches(want, h)),
        }
    }
}

/// Byte patterns every line matching a [`Filter`] must contain, to skip most non-matching lines without parsing
/// them. Only used on lines without a backslash: there JSON has no escapes, so a field's value appears literally
/// exactly as the writer (serde_json) put it.
#[derive(Debug, Default)]
pub(crate) struct Prefilter {
    patterns: Vec<memchr::memmem::Finder<'static>>,
}

impl Prefilter {
    pub(crate) fn new(filter: &Filter) -> Self {
        let mut patterns = Vec::new();
        let mut add = |field: &str, value: &str| {
            if let Ok(quoted) = serde_json::to_string(value)
                && !quoted.contains('\\')
            {
                let pattern = format!("\"{field}\":{quoted}");
                patterns.push(memchr::memmem::Finder::new(pattern.as_bytes()).into_owned());
            }
        };
        if let Some(s) = &filter.sandbox {
            add("sandbox", s);
        }
        if let Some(d) = filter.decision {
            add("decision", d.as_str());
        }
        if let Some(c) = filter.category {
            add("category", c.as_str());
        }
        Self { patterns }
    }

    /// `false` only when the line certainly does not match.
    pub(crate) fn may_match(&self, line: &[u8]) -> bool {
        self.patterns.is_empty()
            || memchr::memchr(b'\\', line).is_some()
            || self.patterns.iter().all(|p| p.find(line).is_some())
    }
}

fn host_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(domain) => {
            let (h, d) = (host.as_bytes(), domain.as_bytes());
            h.len() > d.len() + 1
                && h[h.len() - d.len()..].eq_ignore_ascii_case(d)
                && h[h.len() - d.len() - 1] == b'.'
        }
        None => pattern.eq_ignore_ascii_case(host),
    }
}

/// A snapshot of an audit directory's files.
#[derive(Debug, Clone)]
pub struct Reader {
    dir: PathBuf,
    files: Vec<LogFile>,
}

impl Reader {
    /// Lists the log files in `dir` (files added later are not seen; use [`Follow`] for that).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, ReadError> {
        let dir = dir.as_ref().to_path_buf();
        let files = layout::list(&dir).map_err(|source| ReadError::ListDir {
            dir: dir.clone(),
            source,
        })?;
        Ok(Self { dir, files })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The log files, sorted by name (time).
    pub fn files(&self) -> &[LogFile] {
        &self.files
    }

    /// Every valid event matching `filter`, merged across streams in timestamp order (each stream in its own
    /// order), with a [`ReadIssue`] in place of each line that is not a valid event. With a sandbox, decision or
    /// category filter, lines that plainly cannot match are skipped unparsed, so issues are reported only for the
    /// others; [`crate::verify()`] checks every line.
    pub fn events(&self, filter: &Filter) -> Events {
        let mut by_stream: HashMap<u64, Vec<LogFile>> = HashMap::new();
        for f in &self.files {
            by_stream.entry(f.stream).or_default().push(f.clone());
        }
        let mut cursors: Vec<StreamCursor> = by_stream
            .into_values()
            .map(|mut files| {
                files.sort_by_key(|f| f.file_seq);
                StreamCursor::new(files)
            })
            .collect();
        cursors.sort_by_key(|c| c.files.front().map(|f| f.path.clone()));
        let mut events = Events {
            cursors,
            heap: BinaryHeap::new(),
            issues: VecDeque::new(),
            filter: filter.clone(),
            prefilter: Prefilter::new(filter),
        };
        for i in 0..events.cursors.len() {
            events.advance(i);
        }
        events
    }

    /// The `sbx policy log` view of the matching events, with the issues found on the way.
    pub fn aggregate(&self, filter: &Filter) -> (crate::aggregate::PolicyLogView, Vec<ReadIssue>) {
        let mut agg = crate::aggregate::Aggregator::new();
        let mut issues = Vec::new();
        for item in self.events(filter) {
            match item {
                Ok(e) => agg.add(&e),
                Err(i) => issues.push(i),
            }
        }
        (agg.finish(), issues)
    }

    /// Convenience: all matching events, with the issues found on the way.
    pub fn collect(&self, filter: &Filter) -> (Vec<Event>, Vec<ReadIssue>) {
        let mut events = Vec::new();
        let mut issues = Vec::new();
        for item in self.events(filter) {
            match item {
                Ok(e) => events.push(e),
                Err(i) => issues.push(i),
            }
        }
        (events, issues)
    }
}

/// The merged event iterator of [`Reader::events`].
#[derive(Debug)]
pub struct Events {
    cursors: Vec<StreamCursor>,
    heap: BinaryHeap<Reverse<(Timestamp, usize)>>,
    issues: VecDeque<ReadIssue>,
    filter: Filter,
    prefilter: Prefilter,
}

impl Events {
    fn advance(&mut self, i: usize) {
        let cursor = &mut self.cursors[i];
        if let Some(t) = cursor.fill(&mut self.issues, &self.prefilter) {
            self.heap.push(Reverse((t, i)));
        }
    }
}

impl Iterator for Events {
    type Item = Result<Event, ReadIssue>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(issue) = self.issues.pop_front() {
                return Some(Err(issue));
            }
            let Reverse((_, i)) = self.heap.pop()?;
            let event = self.cursors[i].pending.take();
            self.advance(i);
            if let Some(event) = event
                && self.filter.matches(&event)
            {
                return Some(Ok(event));
            }
        }
    }
}

/// Reads one stream's files in order, one event ahead.
#[derive(Debug)]
struct StreamCursor {
    files: VecDeque<LogFile>,
    current: Option<(LogFile, LineReader<File>)>,
    pending: Option<Event>,
}

impl StreamCursor {
    fn new(files: Vec<LogFile>) -> Self {
        Self {
            files: files.into(),
            current: None,
            pending: None,
        }
    }

    /// Reads up to the next valid event (pushing issues on the way); returns its timestamp.
    fn fill(
        &mut self,
        issues: &mut VecDeque<ReadIssue>,
        prefilter: &Prefilter,
    ) -> Option<Timestamp> {
        loop {
            if self.current.is_none() {
                let file = self.files.pop_front()?;
                match File::open(&file.path) {
                    Ok(f) => self.current = Some((file, LineReader::new(f, 0))),
                    Err(e) => {
                        issues.push_back(ReadIssue::Io {
                            file: file.path,
                            line: 0,
                            message: e.to_string(),
                        });
                        continue;
                    }
                }
            }
            let (file, lines) = self.current.as_mut()?;
            match classify(file, lines, prefilter) {
                Next::Skipped => {}
                Next::Event(e) => {
                    let t = e.timestamp;
                    self.pending = Some(e);
                    return Some(t);
                }
                Next::Issue(issue) => issues.push_back(issue),
                Next::EndOfFile => self.current = None,
                Next::Failed(issue) => {
                    issues.push_back(issue);
                    self.current = None;
                }
            }
        }
    }
}

// Boxing the event would add an allocation per line on the hot read path.
#[allow(clippy::large_enum_variant)]
pub(crate) enum Next {
    Event(Event),
    Issue(ReadIssue),
    EndOfFile,
    Failed(ReadIssue),
    /// A line the prefilter ruled out.
    Skipped,
}

pub(crate) fn classify<R: io::Read>(
    file: &LogFile,
    lines: &mut LineReader<R>,
    prefilter: &Prefilter,
) -> Next {
    let line = lines.line_no() + 1;
    let piece = match lines.next_piece() {
        Ok(Some(p)) => p,
        Ok(None) => return Next::EndOfFile,
        Err(e) => {
            return Next::Failed(ReadIssue::Io {
                file: file.path.clone(),
                line: lines.line_no(),
                message: e.to_string(),
            });
        }
    };
    match piece {
        Piece::Line { bytes, .. } if !prefilter.may_match(bytes) => Next::Skipped,
        Piece::Line { bytes, offset } => match parse_line(bytes) {
            Ok(event) => Next::Event(event),
            Err(problem) => Next::Issue(ReadIssue::Corrupt {
                file: file.path.clone(),
                line,
                offset,
                problem: problem.to_string(),
            }),
        },
        Piece::TooLong { offset, len, .. } => Next::Issue(ReadIssue::Corrupt {
            file: file.path.clone(),
            line,
            offset,
            problem: format!(
                "line of {len} bytes is longer than the {} limit",
                crate::lines::MAX_LINE
            ),
        }),
        Piece::Unterminated { offset, len } => Next::Issue(ReadIssue::Unterminated {
            file: file.path.clone(),
            offset,
            len,
            sealed: file.sealed,
        }),
    }
}

/// Where [`Follow`] starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FollowFrom {
    /// With every event already in the directory.
    Start,
    /// With events written after the follow began (like `tail -f`).
    End,
}

/// Follows an audit directory like `tail -f`, across rotations and new writers, by polling.
///
/// Each poll lists the directory, reads the complete lines appended to every file since the last poll and returns
/// them sorted by timestamp. A partial line at the end of an active file is left for the next poll; on a sealed
/// file it is reported once as [`ReadIssue::Unterminated`].
#[derive(Debug)]
pub struct Follow {
    dir: PathBuf,
    filter: Filter,
    /// Per file: offset of the first byte not yet consumed, and whether the unterminated tail was reported.
    offsets: HashMap<PathBuf, (u64, bool)>,
    interval: Duration,
    ready: VecDeque<Result<Event, ReadIssue>>,
}

impl Follow {
    /// Starts following `dir`.
    pub fn new(dir: impl AsRef<Path>, filter: Filter, from: FollowFrom) -> Result<Self, ReadError> {
        let dir = dir.as_ref().to_path_buf();
        let mut offsets = HashMap::new();
        if from == FollowFrom::End {
            for f in layout::list(&dir).map_err(|source| ReadError::ListDir {
                dir: dir.clone(),
                source,
            })? {
                let len = std::fs::metadata(&f.path).map(|m| m.len()).unwrap_or(0);
                offsets.insert(f.path, (len, false));
            }
        }
        Ok(Self {
            dir,
            filter,
            offsets,
            interval: Duration::from_millis(100),
            ready: VecDeque::new(),
        })
    }

    /// How long [`Follow::next_timeout`] sleeps between polls (default 100 ms).
    pub fn poll_interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Reads whatever is new now, without waiting.
    pub fn poll(&mut self) -> Result<Vec<Result<Event, ReadIssue>>, ReadError> {
        let files = layout::list(&self.dir).map_err(|source| ReadError::ListDir {
            dir: self.dir.clone(),
            source,
        })?;
        self.offsets
            .retain(|path, _| files.iter().any(|f| &f.path == path));
        let mut events = Vec::new();
        let mut issues = Vec::new();
        for file in &files {
            self.read_new(file, &mut events, &mut issues);
        }
        events.sort_by_key(|e: &Event| e.timestamp);
        let mut out: Vec<Result<Event, ReadIssue>> = issues.into_iter().map(Err).collect();
        out.extend(
            events
                .into_iter()
                .filter(|e| self.filter.matches(e))
                .map(Ok),
        );
        Ok(out)
    }

    fn read_new(&mut self, file: &LogFile, events: &mut Vec<Event>, issues: &mut Vec<ReadIssue>) {
        let (offset, tail_reported) = self.offsets.get(&file.path).copied().unwrap_or((0, false));
        let opened =
            File::open(&file.path).and_then(|mut f| f.seek(SeekFrom::Start(offset)).map(|_| f));
        let f = match opened {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return,
            Err(e) => {
                issues.push(ReadIssue::Io {
                    file: file.path.clone(),
                    line: 0,
                    message: e.to_string(),
                });
                return;
            }
        };
        let mut lines = LineReader::new(f, offset);
        let prefilter = Prefilter::new(&self.filter);
        let mut consumed = offset;
        let mut reported = tail_reported;
        loop {
            match classify(file, &mut lines, &prefilter) {
                Next::Skipped => {}
                Next::Event(e) => events.push(e),
                Next::Issue(ReadIssue::Unterminated {
                    offset,
                    len,
                    sealed,
                    ..
                }) => {
                    if sealed && !reported {
                        issues.push(ReadIssue::Unterminated {
                            file: file.path.clone(),
                            offset,
                            len,
                            sealed,
                        });
                        reported = true;
                    }
                    break;
                }
                Next::Issue(issue) => issues.push(issue),
                Next::EndOfFile => break,
                Next::Failed(issue) => {
                    issues.push(issue);
                    break;
                }
            }
            consumed = lines.consumed();
        }
        self.offsets.insert(file.path.clone(), (consumed, reported));
    }

    /// Waits up to `timeout` for the next matching event (or issue); `Ok(None)` when nothing came in time.
    pub fn next_timeout(
        &mut self,
        timeout: Duration,
    ) -> Result<Option<Result<Event, ReadIssue>>, ReadError> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Ok(Some(item));
            }
            let fresh = self.poll()?;
            self.ready.extend(fresh);
            if !self.ready.is_empty() {
                continue;
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            std::thread::sleep(self.interval.min(deadline - now));
        }
    }
}

impl Iterator for Follow {
    type Item = Result<Event, ReadIssue>;

    /// Blocks until the next event; ends only if the directory cannot be listed.
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            match self.next_timeout(Duration::from_secs(3600)) {
                Ok(Some(item)) => return Some(item),
                Ok(None) => continue,
                Err(_) => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_patterns() {
        assert!(host_matches("Example.com", "example.COM"));
        assert!(host_matches("*.example.com", "api.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "badexample.com"));
        assert!(!host_matches("*.é", "aé"));
        assert!(!host_matches("*.a", "xxé"));
    }
}
