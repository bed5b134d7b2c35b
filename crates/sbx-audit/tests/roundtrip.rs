//! Writing and reading back: every event kind, filters, the aggregate view, queue policies, errors.

mod common;

use std::thread;
use std::time::Duration;

use sbx_audit::{
    AuditLog, Category, Decision, Durability, Event, Filter, FullPolicy, Proxy, Reader,
    RecordError, Timestamp, WriterConfig, verify,
};

fn mode_config(d: Durability) -> WriterConfig {
    WriterConfig::default().durability(d)
}

#[test]
fn every_event_kind_round_trips_in_every_durability_mode() {
    for mode in [
        Durability::Buffered,
        Durability::GroupCommit {
            max_delay: Duration::from_millis(2),
        },
        Durability::PerEvent,
    ] {
        let dir = tempfile::tempdir().unwrap();
        let (audit, guard) = AuditLog::open(dir.path(), mode_config(mode)).unwrap();
        let sent = common::one_of_each_kind();
        for e in &sent {
            audit.record(e.clone()).unwrap();
        }
        let stats = guard.close().unwrap();
        assert_eq!(stats.events_written, sent.len() as u64);

        let (got, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
        assert!(issues.is_empty(), "{issues:?}");
        assert_eq!(got.len(), sent.len());
        // Same order within one stream; equal in every field except the chain the writer added.
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(g.seq, Some(i as u64));
            assert_eq!(g.prev_hash.as_ref().map(String::len), Some(64));
            let mut g = g.clone();
            g.seq = None;
            g.prev_hash = None;
            assert_eq!(&g, s, "{mode:?}");
        }
        assert!(verify(dir.path()).unwrap().is_intact());
    }
}

#[test]
fn the_json_form_is_the_documented_schema() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let t = Timestamp::parse("2026-11-23T12:14:47.123456Z").unwrap();
    audit
        .record(
            Event::network("web-1", "evil.example", 443, Proxy::Forward, Decision::Deny)
                .explained(Some("deny evil.example"), Some("user"), "matched-deny")
                .hostname("host-a")
                .at(t),
        )
        .unwrap();
    guard.close().unwrap();
    let file = &common::log_files(dir.path())[0];
    let text = std::fs::read_to_string(file).unwrap();
    let v: serde_json::Value = serde_json::from_str(text.trim_end()).unwrap();
    assert_eq!(v["schema_version"], 1);
    assert_eq!(v["timestamp"], "2026-11-23T12:14:47.123456Z");
    assert_eq!(v["id"].as_str().unwrap().len(), 36);
    assert_eq!(&v["id"].as_str().unwrap()[14..15], "7", "UUIDv7");
    assert_eq!(v["category"], "network");
    assert_eq!(v["decision"], "DENY");
    assert_eq!(
        v["action"],
        serde_json::json!({"type": "network_egress", "host": "evil.example", "port": 443, "proxy": "forward"})
    );
    assert_eq!(v["rule"], "deny evil.example");
    assert_eq!(v["layer"], "user");
    assert_eq!(v["reason"], "matched-deny");
    assert_eq!(v["hostname"], "host-a");
    assert_eq!(v["seq"], 0);
    assert_eq!(v["prev_hash"], "0".repeat(64));
    assert!(text.ends_with("}\n") && text.matches('\n').count() == 1);
}

#[test]
fn filters_select_by_sandbox_category_decision_host_and_time() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let base = Timestamp::parse("2026-01-01T00:00:00Z").unwrap();
    let at = |s: u64| base.saturating_add(Duration::from_secs(s));
    audit
        .record(
            Event::network("a", "x.example.com", 443, Proxy::Forward, Decision::Allow).at(at(0)),
        )
        .unwrap();
    audit
        .record(
            Event::network("a", "y.example.com", 443, Proxy::Forward, Decision::Deny).at(at(10)),
        )
        .unwrap();
    audit
        .record(Event::network("b", "example.com", 443, Proxy::Raw, Decision::Deny).at(at(20)))
        .unwrap();
    audit
        .record(Event::secret_injected("b", "openai", "api.openai.com").at(at(30)))
        .unwrap();
    audit.record(Event::exec("b", &["ls"]).at(at(40))).unwrap();
    guard.close().unwrap();

    let reader = Reader::open(dir.path()).unwrap();
    let hosts = |f: Filter| -> Vec<String> {
        let (events, issues) = reader.collect(&f);
        assert!(issues.is_empty());
        events
            .iter()
            .map(|e| e.host().unwrap_or("-").to_owned())
            .collect()
    };
    assert_eq!(
        hosts(Filter::all().sandbox("a")),
        ["x.example.com", "y.example.com"]
    );
    assert_eq!(
        hosts(Filter::all().category(Category::Secret)),
        ["api.openai.com"]
    );
    assert_eq!(hosts(Filter::all().category(Category::Exec)), ["-"]);
    assert_eq!(
        hosts(Filter::all().decision(Decision::Deny)),
        ["y.example.com", "example.com"]
    );
    assert_eq!(
        hosts(Filter::all().host("*.example.com")),
        ["x.example.com", "y.example.com"]
    );
    assert_eq!(hosts(Filter::all().host("EXAMPLE.com")), ["example.com"]);
    assert_eq!(
        hosts(Filter::all().since(at(10)).until(at(30))),
        ["y.example.com", "example.com"]
    );
    assert_eq!(
        hosts(Filter::all().sandbox("b").decision(Decision::Allow)),
        ["api.openai.com"]
    );
    assert!(hosts(Filter::all().sandbox("nope")).is_empty());
}

#[test]
fn aggregate_view_groups_decisions_into_blocked_and_allowed_tables() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let base = Timestamp::parse("2026-03-04T05:06:07Z").unwrap();
    for i in 0..3u64 {
        audit
            .record(
                Event::network("web-1", "evil.example", 443, Proxy::Forward, Decision::Deny)
                    .explained(None, None, "default-deny")
                    .at(base.saturating_add(Duration::from_secs(i))),
            )
            .unwrap();
    }
    audit
        .record(
            Event::network(
                "web-1",
                "api.github.com",
                443,
                Proxy::Transparent,
                Decision::Allow,
            )
            .explained(Some("*.github.com"), Some("team"), "matched-allow")
            .at(base),
        )
        .unwrap();
    audit.record(Event::exec("web-1", &["ls"])).unwrap(); // no decision: not in the view
    guard.close().unwrap();

    let (view, issues) = Reader::open(dir.path()).unwrap().aggregate(&Filter::all());
    assert!(issues.is_empty());
    assert_eq!(view.blocked.len(), 1);
    let row = &view.blocked[0];
    assert_eq!(
        (row.sandbox.as_str(), row.kind.as_str(), row.host.as_str()),
        ("web-1", "network", "evil.example:443")
    );
    assert_eq!(
        (row.proxy.as_str(), row.rule.as_str(), row.reason.as_str()),
        ("forward", "-", "default-deny")
    );
    assert_eq!(row.count, 3);
    assert_eq!(row.last_seen, base.saturating_add(Duration::from_secs(2)));
    assert_eq!(view.allowed[0].rule, "*.github.com");

    let text = view.to_string();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Blocked");
    assert_eq!(
        lines[1].split_whitespace().collect::<Vec<_>>(),
        [
            "SANDBOX",
            "TYPE",
            "HOST",
            "PROXY",
            "RULE",
            "REASON",
            "LAST-SEEN",
            "COUNT"
        ]
    );
    assert_eq!(
        lines[2].split_whitespace().collect::<Vec<_>>(),
        [
            "web-1",
            "network",
            "evil.example:443",
            "forward",
            "-",
            "default-deny",
            "2026-03-04",
            "05:06:09",
            "3"
        ]
    );
    assert!(lines.contains(&"Allowed"));
    // Columns line up: the HOST column starts at the same place in the header and the row.
    assert_eq!(lines[1].find("HOST"), lines[2].find("evil.example"));

    let json: serde_json::Value = serde_json::from_str(&view.to_json()).unwrap();
    assert_eq!(json["blocked"][0]["type"], "network");
    assert_eq!(json["blocked"][0]["count"], 3);
    assert_eq!(
        json["blocked"][0]["last_seen"],
        "2026-03-04T05:06:09.000000Z"
    );
    assert_eq!(json["allowed"][0]["proxy"], "transparent");
}

#[test]
fn a_full_queue_with_drop_policy_records_how_many_were_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::default()
        .queue_capacity(4)
        .when_full(FullPolicy::Drop)
        .durability(Durability::PerEvent); // slow writer: the queue fills
    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
    let sent = 500u64;
    for i in 0..sent {
        audit.record(Event::exec("s", &[i.to_string()])).unwrap();
    }
    let stats = guard.close().unwrap();
    assert!(
        stats.events_dropped > 0,
        "the queue never filled: {stats:?}"
    );

    let (events, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert!(issues.is_empty());
    let kept = events
        .iter()
        .filter(|e| e.category == Category::Exec)
        .count() as u64;
    let dropped: u64 = events
        .iter()
        .filter_map(|e| match e.action {
            sbx_audit::Action::AuditDropped { count } => Some(count),
            _ => None,
        })
        .sum();
    assert_eq!(dropped, stats.events_dropped);
    assert_eq!(
        kept + dropped,
        sent,
        "every event is either written or counted as dropped"
    );
    assert!(verify(dir.path()).unwrap().is_intact());
}

#[test]
fn block_policy_loses_nothing_under_many_threads() {
    let dir = tempfile::tempdir().unwrap();
    let config = WriterConfig::default()
        .queue_capacity(8)
        .when_full(FullPolicy::Block);
    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let audit = audit.clone();
            thread::spawn(move || {
                for i in 0..2000 {
                    audit
                        .record(Event::exec(&format!("t{t}"), &[i.to_string()]))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    audit.flush().unwrap();
    guard.close().unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    for t in 0..4 {
        let (events, _) = reader.collect(&Filter::all().sandbox(&format!("t{t}")));
        let argv: Vec<String> = events
            .iter()
            .map(|e| match &e.action {
                sbx_audit::Action::Exec { argv } => argv[0].clone(),
                other => panic!("{other:?}"),
            })
            .collect();
        let want: Vec<String> = (0..2000).map(|i: i32| i.to_string()).collect();
        assert_eq!(
            argv, want,
            "thread {t}: all events, in the order it recorded them"
        );
    }
}

#[test]
fn recording_after_close_and_oversized_events_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let huge = "x".repeat(sbx_audit::MAX_LINE);
    let err = audit.record(Event::exec("s", &[huge])).unwrap_err();
    assert!(matches!(err, RecordError::TooLarge { .. }), "{err}");
    assert!(err.to_string().contains("line limit"));
    audit.record(Event::exec("s", &["ok"])).unwrap();
    guard.close().unwrap();
    assert!(matches!(
        audit.record(Event::exec("s", &["late"])),
        Err(RecordError::Closed)
    ));
    assert!(matches!(audit.flush(), Err(RecordError::Closed)));
    let (events, _) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert_eq!(events.len(), 1);
}

#[test]
fn opening_an_unusable_directory_names_it() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"").unwrap();
    let err = AuditLog::open(&file, WriterConfig::default()).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("not-a-dir"), "{msg}");
}

#[test]
fn garbage_lines_are_reported_and_skipped_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    audit.record(Event::exec("s", &["a"])).unwrap();
    audit.record(Event::exec("s", &["b"])).unwrap();
    guard.close().unwrap();
    let file = &common::log_files(dir.path())[0];
    common::rewrite(file, |lines| {
        lines.insert(1, b"\xff\xfe not json".to_vec());
        lines.push(br#"{"schema_version":99}"#.to_vec());
    });
    let (events, issues) = Reader::open(dir.path()).unwrap().collect(&Filter::all());
    assert_eq!(events.len(), 2);
    assert_eq!(issues.len(), 2);
    let text: Vec<String> = issues.iter().map(ToString::to_string).collect();
    assert!(
        text[0].contains(":2 ") && text[0].contains("not a valid event"),
        "{}",
        text[0]
    );
    assert!(text[1].contains(":4 "), "{}", text[1]);
}

#[test]
fn filters_are_exact_for_names_that_need_escaping_and_look_alike_values() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    let odd = "we\"ird\\sand\u{e9}box";
    audit.record(Event::exec(odd, &["one"])).unwrap();
    audit
        .record(Event::exec("b", &[r#""sandbox":"a""#]))
        .unwrap(); // looks like sandbox a, is b
    audit.record(Event::exec("a", &["tab\there"])).unwrap(); // escapes elsewhere in the line
    audit.record(Event::exec("a", &["plain"])).unwrap();
    audit
        .record(Event::network("a", "h", 1, Proxy::Raw, Decision::Deny))
        .unwrap();
    guard.close().unwrap();
    let reader = Reader::open(dir.path()).unwrap();
    let count = |f: Filter| reader.collect(&f).0.len();
    assert_eq!(count(Filter::all().sandbox(odd)), 1);
    assert_eq!(count(Filter::all().sandbox("a")), 3);
    assert_eq!(count(Filter::all().sandbox("b")), 1);
    assert_eq!(
        count(Filter::all().sandbox("a").category(Category::Exec)),
        2
    );
    assert_eq!(
        count(Filter::all().sandbox("a").decision(Decision::Deny)),
        1
    );
    assert_eq!(count(Filter::all().decision(Decision::Allow)), 0);
}

#[test]
fn a_writer_that_cannot_write_reports_it_keeps_events_and_recovers() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("audit");
    let config = WriterConfig::default().max_file_bytes(4096);
    let (audit, guard) = AuditLog::open(&dir, config).unwrap();
    audit.record(Event::exec("s", &["before"])).unwrap();
    audit.flush().unwrap();
    // The directory disappears: the next rotation cannot create a file.
    std::fs::remove_dir_all(&dir).unwrap();
    for i in 0..100 {
        audit
            .record(Event::exec("s", &[format!("during-{i}")]))
            .unwrap();
    }
    let err = audit.flush().unwrap_err();
    assert!(matches!(err, RecordError::WriteFailed(_)), "{err}");
    let failure = audit.failure().unwrap();
    assert!(failure.contains("audit"), "{failure}");
    // It comes back: everything kept is written, the failure clears.
    std::fs::create_dir(&dir).unwrap();
    audit.flush().unwrap();
    assert_eq!(audit.failure(), None);
    guard.close().unwrap();
    let (events, issues) = Reader::open(&dir).unwrap().collect(&Filter::all());
    assert!(issues.is_empty(), "{issues:?}");
    // Events that went into the deleted file before it rotated are gone with it; every later one was kept.
    let during: Vec<u32> = events
        .iter()
        .filter_map(|e| match &e.action {
            sbx_audit::Action::Exec { argv } => {
                argv[0].strip_prefix("during-").map(|n| n.parse().unwrap())
            }
            _ => None,
        })
        .collect();
    let first = *during.first().unwrap();
    assert!(during.iter().copied().eq(first..100), "{during:?}");
    assert!(
        first > 0,
        "some events were written to the deleted file before rotation"
    );
}
