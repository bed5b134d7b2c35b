//! Real processes: a writer killed with SIGKILL at random moments, and several writer processes sharing a directory.
//!
//! The child writers are this test binary itself, re-run with `SBX_AUDIT_CHILD` set so that only `child_writer`
//! runs in them.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use sbx_audit::{
    Action, AuditLog, Durability, Event, Filter, ReadIssue, Reader, WriterConfig, verify,
};

const CHILD_ENV: &str = "SBX_AUDIT_CHILD";

/// Runs in a child process: writes events `<sandbox> <n>` until killed (or `limit` is reached), printing
/// `STREAM <id>` once and `ACK <n>` after each flush that made events `0..=n` durable per the mode.
#[test]
fn child_writer() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        eprintln!(
            "skipped: child_writer is the writer process spawned by the other tests in this file"
        );
        return;
    };
    let mut parts = spec.split(',');
    let (dir, sandbox, mode, limit, max_bytes) = (
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().to_owned(),
        parts.next().unwrap().parse::<u64>().unwrap(),
        parts.next().unwrap().parse::<u64>().unwrap(),
    );
    let durability = match mode.as_str() {
        "buffered" => Durability::Buffered,
        "group" => Durability::GroupCommit {
            max_delay: Duration::from_millis(1),
        },
        _ => Durability::PerEvent,
    };
    let config = WriterConfig::default()
        .durability(durability)
        .max_file_bytes(max_bytes);
    let (audit, guard) = AuditLog::open(&dir, config).unwrap();
    println!("STREAM {}", audit.stream());
    for n in 0..limit {
        audit
            .record(Event::exec(&sandbox, &[n.to_string()]).agent("child"))
            .unwrap();
        if n % 16 == 15 {
            audit.flush().unwrap();
            println!("ACK {n}");
        }
    }
    guard.close().unwrap();
    println!("DONE");
}

fn spawn_child(dir: &Path, sandbox: &str, mode: &str, limit: u64, max_bytes: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_writer", "--exact", "--nocapture", "--test-threads=1"])
        .env(
            CHILD_ENV,
            format!("{},{sandbox},{mode},{limit},{max_bytes}", dir.display()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

/// Reads the child's `STREAM`/`ACK` lines on a thread; returns (stream, highest ack) when the pipe closes.
fn watch(child: &mut Child) -> thread::JoinHandle<(String, Option<u64>)> {
    let out = BufReader::new(child.stdout.take().unwrap());
    thread::spawn(move || {
        let (mut stream, mut acked) = (String::new(), None);
        for line in out.lines().map_while(Result::ok) {
            // libtest may print "test child_writer ... " in front of the first line.
            if let Some((_, s)) = line.split_once("STREAM ") {
                stream = s.trim().to_owned();
            } else if let Some(n) = line.strip_prefix("ACK ") {
                acked = n.parse().ok();
            }
        }
        (stream, acked)
    })
}

/// The numbers written by `sandbox`, per stream, in file order.
fn numbers_by_stream(dir: &Path, sandbox: &str) -> HashMap<String, Vec<u64>> {
    let reader = Reader::open(dir).unwrap();
    let mut out: HashMap<String, Vec<u64>> = HashMap::new();
    let mut by_stream: BTreeMap<String, Vec<_>> = BTreeMap::new();
    for f in reader.files() {
        by_stream
            .entry(f.stream_name())
            .or_default()
            .push(f.path.clone());
    }
    for (stream, files) in by_stream {
        let mut numbers = Vec::new();
        for f in files {
            let text = std::fs::read(&f).unwrap();
            for line in text.split(|&b| b == b'\n') {
                let Ok(e) = serde_json::from_slice::<Event>(line) else {
                    continue;
                };
                if e.sandbox.as_deref() == Some(sandbox)
                    && let Action::Exec { argv } = &e.action
                {
                    numbers.push(argv[0].parse().unwrap());
                }
            }
        }
        out.insert(stream, numbers);
    }
    out
}

/// A cheap pseudo-random sequence for kill delays (no fixed pattern, no extra dependency).
fn jitter(state: &mut u64, max_ms: u64) -> Duration {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    Duration::from_millis(5 + *state % max_ms)
}

#[test]
fn kill_9_at_random_moments_loses_no_complete_line_and_no_acknowledged_event() {
    let dir = tempfile::tempdir().unwrap();
    let mut rng = (std::process::id() as u64) << 20
        | (sbx_audit::Timestamp::now().unix_micros() as u64 & 0xfffff)
        | 1;
    let modes = ["buffered", "group", "per-event"];
    let mut acks: HashMap<String, u64> = HashMap::new();
    let rounds = 15;
    for round in 0..rounds {
        let mode = modes[round % modes.len()];
        let mut child = spawn_child(dir.path(), "crash", mode, u64::MAX, 64 * 1024);
        let watcher = watch(&mut child);
        thread::sleep(jitter(&mut rng, 150));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let (stream, acked) = watcher.join().unwrap();
        if let Some(n) = acked {
            acks.insert(stream, n);
        }
    }
    assert!(!acks.is_empty(), "no child got as far as a flush");

    // Every line that ends in a newline is a valid event; only a file's very end may hold a partial line.
    let files = common::log_files(dir.path());
    let mut complete_lines = 0;
    for f in &files {
        let data = std::fs::read(f).unwrap();
        complete_lines += data.iter().filter(|&&b| b == b'\n').count();
    }
    let (events, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert_eq!(
        events.len(),
        complete_lines,
        "every complete line is recovered as an event"
    );
    for issue in &issues {
        assert!(
            matches!(issue, ReadIssue::Unterminated { .. }),
            "only torn tails, got {issue}"
        );
    }

    // Each killed writer's numbers are 0, 1, 2, ... with no gap, and include everything it acknowledged.
    let numbers = numbers_by_stream(dir.path(), "crash");
    for (stream, acked) in &acks {
        let got = &numbers[stream];
        assert!(
            got.iter().copied().eq(0..got.len() as u64),
            "stream {stream} has gaps"
        );
        assert!(
            got.len() as u64 > *acked,
            "stream {stream}: acknowledged {acked} but only {} on disk",
            got.len()
        );
    }

    // The chains verify; at most a torn tail per stream. A new writer seals the dead writers' files.
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events() as usize, complete_lines);
    let (_audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    for f in &files {
        assert!(
            common::is_sealed(f),
            "{} left writable after its writer died",
            f.display()
        );
    }
    guard.close().unwrap();
    eprintln!(
        "{rounds} kills, {complete_lines} events recovered, {} torn tails",
        issues.len()
    );
}

#[test]
fn several_writer_processes_share_a_directory_without_interleaving() {
    let dir = tempfile::tempdir().unwrap();
    let per_child = 3000u64;
    let mut children: Vec<(String, Child)> = (0..4)
        .map(|k| {
            let name = format!("proc-{k}");
            let child = spawn_child(dir.path(), &name, "buffered", per_child, 32 * 1024);
            (name, child)
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    for (name, child) in &mut children {
        let watcher = watch(child);
        let status = child.wait().unwrap();
        assert!(status.success(), "{name} failed");
        watcher.join().unwrap();
        assert!(Instant::now() < deadline);
    }
    // Every line in every file is a whole event.
    let files = common::log_files(dir.path());
    assert!(files.len() > 8, "rotation in every writer");
    for f in &files {
        let data = std::fs::read(f).unwrap();
        assert!(data.ends_with(b"\n"));
        for line in data[..data.len() - 1].split(|&b| b == b'\n') {
            serde_json::from_slice::<Event>(line)
                .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        }
        assert!(common::is_sealed(f));
    }
    // Each process's events are all there, in order, and the merged view is in time order.
    for (name, _) in &children {
        let numbers = numbers_by_stream(dir.path(), name);
        let all: Vec<&Vec<u64>> = numbers.values().filter(|v| !v.is_empty()).collect();
        assert_eq!(all.len(), 1, "{name} wrote one stream");
        assert!(
            all[0].iter().copied().eq(0..per_child),
            "{name} lost or reordered events"
        );
    }
    let (events, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert!(issues.is_empty());
    assert_eq!(events.len() as u64, 4 * per_child);
    assert!(
        events.windows(2).all(|w| w[0].timestamp <= w[1].timestamp),
        "merged by time"
    );
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.streams.len(), 4);
    assert!(report.is_intact(), "{report}");
}
