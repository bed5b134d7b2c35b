//! Rotation by size and age, sealed files, and follow mode across rotations and writers.

mod common;

use std::collections::HashSet;
use std::thread;
use std::time::{Duration, Instant};

use sbx_audit::{
    AuditLog, Event, Filter, Follow, FollowFrom, ReadIssue, Reader, WriterConfig, verify,
};

#[test]
fn size_rotation_seals_complete_files_and_the_chain_runs_on() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::default().max_file_bytes(8192);
    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
    for i in 0..300 {
        audit.record(Event::exec("s", &[format!("{i}")])).unwrap();
    }
    let stats = guard.close().unwrap();
    let files = common::log_files(dir.path());
    assert!(files.len() > 5);
    assert_eq!(stats.files_sealed, files.len() as u64);
    let mut names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into())
        .collect();
    let sorted = names.clone();
    names.sort();
    assert_eq!(names, sorted);
    for f in &files {
        assert!(common::is_sealed(f), "{} is not read-only", f.display());
        let data = std::fs::read(f).unwrap();
        assert!(
            data.len() <= 8192,
            "{} has {} bytes",
            f.display(),
            data.len()
        );
        assert!(data.ends_with(b"\n"), "rotated file ends mid-line");
    }
    // The first event of each later file links to the last line of the file before.
    for pair in files.windows(2) {
        let prev = std::fs::read(&pair[0]).unwrap();
        let last = prev[..prev.len() - 1]
            .rsplit(|&b| b == b'\n')
            .next()
            .unwrap();
        let next = std::fs::read_to_string(&pair[1]).unwrap();
        let first: serde_json::Value = serde_json::from_str(next.lines().next().unwrap()).unwrap();
        assert_eq!(
            first["prev_hash"],
            sbx_audit::chain::to_hex(&sbx_audit::chain::line_hash(last))
        );
    }
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events(), 300);
}

#[test]
fn age_rotation_seals_an_idle_file() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::default().max_file_age(Some(Duration::from_millis(100)));
    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
    audit.record(Event::exec("s", &["one"])).unwrap();
    audit.flush().unwrap();
    let first = common::log_files(dir.path());
    assert_eq!(first.len(), 1);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !common::is_sealed(&first[0]) {
        assert!(Instant::now() < deadline, "file not sealed by age");
        thread::sleep(Duration::from_millis(20));
    }
    audit.record(Event::exec("s", &["two"])).unwrap();
    guard.close().unwrap();
    let files = common::log_files(dir.path());
    assert_eq!(files.len(), 2);
    assert!(files[0] < files[1], "the newer file sorts after the older");
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events(), 2);
}

#[test]
fn follow_sees_every_event_across_rotations_and_new_writers() {
    let dir = tempfile::tempdir().unwrap();
    let mut follow = Follow::new(dir.path(), Filter::all().sandbox("f"), FollowFrom::Start)
        .unwrap()
        .poll_interval(Duration::from_millis(5));
    let path = dir.path().to_path_buf();
    let producer = thread::spawn(move || {
        // Two writers one after the other, each rotating often.
        for w in 0..2 {
            let config = WriterConfig::default().max_file_bytes(4096);
            let (audit, guard) = AuditLog::open(&path, config).unwrap();
            for i in 0..200 {
                audit
                    .record(Event::exec("f", &[format!("{w}-{i}")]))
                    .unwrap();
                audit.record(Event::exec("other", &["noise"])).unwrap();
                if i % 20 == 0 {
                    audit.flush().unwrap();
                    thread::sleep(Duration::from_millis(2));
                }
            }
            guard.close().unwrap();
        }
    });
    let mut seen = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while seen.len() < 400 && Instant::now() < deadline {
        match follow.next_timeout(Duration::from_millis(200)).unwrap() {
            Some(Ok(e)) => seen.push(e),
            Some(Err(issue)) => panic!("unexpected issue: {issue}"),
            None => {}
        }
    }
    producer.join().unwrap();
    assert_eq!(seen.len(), 400);
    let unique: HashSet<_> = seen.iter().map(|e| e.id).collect();
    assert_eq!(unique.len(), 400, "no event twice");
    assert!(seen.iter().all(|e| e.sandbox.as_deref() == Some("f")));
    assert!(
        common::log_files(dir.path()).len() > 4,
        "rotation happened while following"
    );
    assert!(follow.poll().unwrap().is_empty());
}

#[test]
fn follow_from_end_skips_history_and_reports_a_torn_sealed_tail_once() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    audit.record(Event::exec("s", &["old"])).unwrap();
    guard.close().unwrap();
    let mut follow = Follow::new(dir.path(), Filter::all(), FollowFrom::End).unwrap();
    assert!(follow.poll().unwrap().is_empty());

    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    audit.record(Event::exec("s", &["new"])).unwrap();
    guard.close().unwrap();
    let got = follow.poll().unwrap();
    assert_eq!(got.len(), 1);
    assert!(
        matches!(&got[0], Ok(e) if matches!(&e.action, sbx_audit::Action::Exec { argv } if argv[0] == "new"))
    );

    // A sealed file that gains a partial line (as if torn) is reported once.
    let files = common::log_files(dir.path());
    let last = files.last().unwrap();
    common::rewrite(last, |lines| lines.push(b"{\"torn".to_vec()));
    let data = std::fs::read(last).unwrap();
    std::fs::set_permissions(last, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(last, &data[..data.len() - 1]).unwrap();
    std::fs::set_permissions(last, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let got = follow.poll().unwrap();
    assert!(
        matches!(
            &got[..],
            [Err(ReadIssue::Unterminated {
                sealed: true,
                len: 6,
                ..
            })]
        ),
        "{got:?}"
    );
    assert!(follow.poll().unwrap().is_empty());
}

#[test]
fn a_reader_merges_streams_by_time() {
    let dir = tempfile::tempdir().unwrap();
    let (a, ga) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let (b, gb) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let base = sbx_audit::Timestamp::now();
    for i in 0..50 {
        let w = if i % 3 == 0 { &a } else { &b };
        let at = base.saturating_add(Duration::from_millis(i));
        w.record(Event::exec("s", &[format!("{i}")]).at(at))
            .unwrap();
    }
    ga.close().unwrap();
    gb.close().unwrap();
    let (events, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert!(issues.is_empty());
    let order: Vec<String> = events
        .iter()
        .map(|e| match &e.action {
            sbx_audit::Action::Exec { argv } => argv[0].clone(),
            _ => unreachable!(),
        })
        .collect();
    let want: Vec<String> = (0..50).map(|i: i32| i.to_string()).collect();
    assert_eq!(order, want);
    let report = verify(dir.path()).unwrap();
    assert_eq!(report.streams.len(), 2);
    assert!(report.is_intact());
}

#[test]
fn a_large_buffered_trail_is_complete_in_order_and_verifies_across_rotations() {
    // Several MiB per file, so the writer starts write-back mid-file and hands batches of many events to the OS;
    // escapes and non-ASCII text make the serializer's output differ in length from event to event.
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::default()
        .durability(sbx_audit::Durability::Buffered)
        .max_file_bytes(5 << 20);
    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
    let n = 15_000u32;
    let padding = "tab\there \"quoted\" ünïcödé 🦀 ".repeat(8);
    for i in 0..n {
        audit
            .record(Event::exec("big", &[i.to_string(), padding.clone()]))
            .unwrap();
    }
    let stats = guard.close().unwrap();
    assert_eq!(stats.events_written, u64::from(n));
    let files = common::log_files(dir.path());
    assert!(files.len() >= 2, "expected rotation, got {files:?}");

    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events(), u64::from(n));

    // Every line is exactly what serde writes for the event it reads back as: the hand-written serializer and the
    // chain fields produce canonical JSON.
    let mut seen = 0u32;
    for f in &files {
        for line in std::fs::read_to_string(f).unwrap().lines() {
            let event: Event = serde_json::from_str(line).unwrap();
            assert_eq!(serde_json::to_string(&event).unwrap(), line);
            match &event.action {
                sbx_audit::Action::Exec { argv } => {
                    assert_eq!(argv[0], seen.to_string(), "events out of order");
                    assert_eq!(argv[1], padding);
                }
                other => panic!("unexpected {other:?}"),
            }
            assert_eq!(event.seq, Some(u64::from(seen)));
            seen += 1;
        }
    }
    assert_eq!(seen, n);
}
