//! Hostile bytes in log files: mutated real logs never panic the reader or the verifier, and never yield more
//! events than there are complete lines. (The same entry point is the `audit_reader` fuzz target.)

mod common;

use sbx_audit::{AuditLog, Event, Filter, Reader, WriterConfig, check_bytes, verify};

fn xorshift(s: &mut u64) -> u64 {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    *s
}

#[test]
fn mutated_logs_never_panic_and_never_gain_events() {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(dir.path(), WriterConfig::default()).unwrap();
    for e in common::one_of_each_kind() {
        audit.record(e).unwrap();
    }
    guard.close().unwrap();
    let original = std::fs::read(&common::log_files(dir.path())[0]).unwrap();
    assert_eq!(check_bytes(&original), common::one_of_each_kind().len());

    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    for round in 0..1000 {
        let mut data = original.clone();
        for _ in 0..1 + xorshift(&mut rng) % 4 {
            let pos = (xorshift(&mut rng) as usize) % data.len().max(1);
            match xorshift(&mut rng) % 5 {
                0 => data[pos] = xorshift(&mut rng) as u8,
                1 => data.truncate(pos),
                2 => data.insert(pos, b'\n'),
                3 => {
                    let junk: Vec<u8> = (0..xorshift(&mut rng) % 40)
                        .map(|_| xorshift(&mut rng) as u8)
                        .collect();
                    data.splice(pos..pos, junk);
                }
                _ => data.extend_from_within(..pos),
            }
            if data.is_empty() {
                break;
            }
        }
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        let valid = check_bytes(&data);
        assert!(
            valid <= lines,
            "round {round}: {valid} events from {lines} lines"
        );
        if round % 100 == 0 {
            // Through the file-based reader and verifier too.
            let d = tempfile::tempdir().unwrap();
            std::fs::write(
                d.path()
                    .join("audit-20260101T000000.000000Z-0000000000000001-000000.jsonl"),
                &data,
            )
            .unwrap();
            let (events, _) = Reader::open(d.path()).unwrap().collect(&Filter::all());
            assert!(events.len() <= lines);
            let _ = verify(d.path()).unwrap().to_string();
        }
    }
    // Pure noise, including invalid UTF-8 and huge numbers.
    for input in [
        &b"\xff\xfe\n\n{}\n"[..],
        b"{\"schema_version\":18446744073709551616}\n",
        b"[[[[[[[[[[[[\n",
    ] {
        assert_eq!(check_bytes(input), 0);
    }
    let _ = Event::exec("s", &["x"]);
}
