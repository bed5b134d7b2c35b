//! The hash chain catches each kind of tampering and points at the first bad line.

mod common;

use std::path::{Path, PathBuf};

use sbx_audit::{AuditLog, Event, TamperKind, VerifyReport, WriterConfig, verify};

/// A directory with one stream of `n` events over several files (rotation at 4 KiB).
fn trail(n: usize) -> (tempfile::TempDir, Vec<PathBuf>) {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) =
        AuditLog::open(dir.path(), WriterConfig::default().max_file_bytes(4096)).unwrap();
    for i in 0..n {
        audit
            .record(Event::exec("s", &[format!("cmd-{i}")]))
            .unwrap();
    }
    guard.close().unwrap();
    let files = common::log_files(dir.path());
    assert!(files.len() >= 3, "want several files, got {}", files.len());
    (dir, files)
}

fn tamper_of(dir: &Path) -> (TamperKind, String, u64, VerifyReport) {
    let report = verify(dir).unwrap();
    let (_, t) = report
        .first_tamper()
        .unwrap_or_else(|| panic!("tampering not caught:\n{report}"));
    let name = t.file.file_name().unwrap().to_string_lossy().into_owned();
    (t.kind, name, t.line, report.clone())
}

fn name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

#[test]
fn untouched_trail_verifies() {
    let (dir, files) = trail(100);
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events(), 100);
    assert_eq!(report.streams.len(), 1);
    assert_eq!(report.streams[0].files, files);
    assert!(report.to_string().contains("OK: 100 events"));
}

#[test]
fn an_edited_line_is_caught_at_that_line() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| {
        let l = String::from_utf8(lines[4].clone()).unwrap();
        lines[4] = l.replacen("cmd-", "CMD-", 1).into_bytes();
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Edited, name(&files[1]), 5),
        "{report}"
    );
    assert!(report.to_string().contains("TAMPERED"));
}

#[test]
fn an_edit_of_the_first_line_of_the_stream_is_caught() {
    let (dir, files) = trail(50);
    common::rewrite(&files[0], |lines| {
        let l = String::from_utf8(lines[0].clone()).unwrap();
        lines[0] = l.replacen("\"s\"", "\"t\"", 1).into_bytes();
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Edited, name(&files[0]), 1),
        "{report}"
    );
}

#[test]
fn an_edited_prev_hash_is_caught_at_that_line() {
    let (dir, files) = trail(60);
    common::rewrite(&files[1], |lines| {
        let l = String::from_utf8(lines[2].clone()).unwrap();
        let at = l.find("prev_hash").unwrap() + 12;
        let mut b = l.into_bytes();
        b[at] = if b[at] == b'a' { b'b' } else { b'a' };
        lines[2] = b;
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Edited, name(&files[1]), 3),
        "{report}"
    );
}

#[test]
fn an_edit_that_breaks_the_json_is_caught_as_corrupt() {
    let (dir, files) = trail(60);
    common::rewrite(&files[1], |lines| lines[1].truncate(20));
    let (kind, file, line, _) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Corrupt, name(&files[1]), 2)
    );
}

#[test]
fn deleted_lines_are_caught_with_their_count() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| {
        lines.drain(3..5);
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Deleted { count: 2 }, name(&files[1]), 4),
        "{report}"
    );
}

#[test]
fn lines_deleted_at_the_end_of_a_file_are_caught_in_the_next() {
    let (dir, files) = trail(100);
    common::rewrite(&files[0], |lines| {
        lines.pop();
    });
    let (kind, file, line, _) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Deleted { count: 1 }, name(&files[1]), 1)
    );
}

#[test]
fn a_deleted_file_is_caught() {
    let (dir, files) = trail(100);
    std::fs::remove_file(&files[1]).unwrap();
    let (kind, file, line, _) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::MissingFile, name(&files[2]), 1)
    );
    std::fs::remove_file(&files[0]).unwrap();
    let (kind, file, _, _) = tamper_of(dir.path());
    assert_eq!((kind, file), (TamperKind::MissingFile, name(&files[2])));
}

#[test]
fn an_inserted_forged_line_is_caught() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| {
        // A well-formed event with made-up chain fields.
        let mut forged = String::from_utf8(lines[3].clone()).unwrap();
        forged = forged.replacen("cmd-", "rm -rf /; cmd-", 1);
        lines.insert(3, forged.into_bytes());
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Inserted { count: 1 }, name(&files[1]), 4),
        "{report}"
    );
}

#[test]
fn an_inserted_line_with_a_correct_link_to_its_predecessor_is_caught() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| {
        // The attacker chains the forged line onto line 3 properly; line 4 then no longer links.
        let prev = sha256_hex(&lines[2]);
        let l = String::from_utf8(lines[3].clone()).unwrap();
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        // Same seq as the line it displaces, prev_hash pointing at line 3: a well-linked forgery.
        let forged = l
            .replacen("cmd-", "forged-", 1)
            .replace(v["prev_hash"].as_str().unwrap(), &prev);
        lines.insert(3, forged.into_bytes());
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Inserted { count: 1 }, name(&files[1]), 4),
        "{report}"
    );
}

#[test]
fn a_replayed_line_is_caught() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| {
        let copy = lines[5].clone();
        lines.insert(9, copy);
    });
    let (kind, file, _, report) = tamper_of(dir.path());
    assert!(matches!(kind, TamperKind::Inserted { .. }), "{report}");
    assert_eq!(file, name(&files[1]));
}

#[test]
fn swapped_lines_are_caught_as_reordering() {
    let (dir, files) = trail(100);
    common::rewrite(&files[1], |lines| lines.swap(4, 5));
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!(
        (kind, file, line),
        (TamperKind::Reordered, name(&files[1]), 5),
        "{report}"
    );
}

#[test]
fn swapped_files_are_caught() {
    let (dir, files) = trail(100);
    let (a, b) = (
        std::fs::read(&files[1]).unwrap(),
        std::fs::read(&files[2]).unwrap(),
    );
    common::rewrite(&files[1], |lines| {
        *lines = b
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    });
    common::rewrite(&files[2], |lines| {
        *lines = a
            .split(|&c| c == b'\n')
            .filter(|l| !l.is_empty())
            .map(<[u8]>::to_vec)
            .collect()
    });
    let (kind, file, line, report) = tamper_of(dir.path());
    assert_eq!((file, line), (name(&files[1]), 1), "{report}");
    assert!(
        matches!(kind, TamperKind::Deleted { .. } | TamperKind::Reordered),
        "{report}"
    );
}

#[test]
fn a_torn_last_line_is_reported_but_is_not_tampering() {
    let (dir, files) = trail(100);
    let last = files.last().unwrap();
    let data = std::fs::read(last).unwrap();
    common::rewrite(last, |_| {});
    std::fs::set_permissions(last, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    std::fs::write(last, &data[..data.len() - 30]).unwrap(); // cut inside the last line
    std::fs::set_permissions(last, std::os::unix::fs::PermissionsExt::from_mode(0o444)).unwrap();
    let report = verify(dir.path()).unwrap();
    assert!(report.is_intact(), "{report}");
    assert_eq!(report.events(), 99);
    let torn = report.streams[0].torn_tail.as_ref().unwrap();
    assert_eq!(&torn.file, last);
    assert!(report.to_string().contains("torn last line"), "{report}");
}

#[test]
fn a_torn_line_in_the_middle_of_a_stream_is_corruption() {
    let (dir, files) = trail(100);
    let data = std::fs::read(&files[0]).unwrap();
    std::fs::set_permissions(
        &files[0],
        std::os::unix::fs::PermissionsExt::from_mode(0o644),
    )
    .unwrap();
    std::fs::write(&files[0], &data[..data.len() - 5]).unwrap();
    let (kind, file, _, _) = tamper_of(dir.path());
    assert_eq!((kind, file), (TamperKind::Corrupt, name(&files[0])));
}

fn sha256_hex(line: &[u8]) -> String {
    sbx_audit::chain::to_hex(&sbx_audit::chain::line_hash(line))
}
