//! Audit trail throughput: events/s appended per durability mode, and read/filter/verify throughput in MB/s.
//!
//! Anchors (issue 3): ≥ 1,000,000 events/s buffered, ≥ 50,000 events/s with group commit, reader ≥ 200 MB/s.
//! `raw_jsonl` is the floor to compare with: the same events serialized and written with a `BufWriter`, no queue,
//! no chain, no thread.
//!
//! Run: `cargo bench -p sbx-audit --bench audit`

use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use sbx_audit::{AuditLog, Decision, Durability, Filter, Reader, WriterConfig, verify};

#[path = "common/events.rs"]
mod events;
use events::events;

fn append(c: &mut Criterion) {
    let mut group = c.benchmark_group("append");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    let modes = [
        ("buffered", Durability::Buffered, 200_000),
        (
            "group_commit_10ms",
            Durability::GroupCommit {
                max_delay: Duration::from_millis(10),
            },
            200_000,
        ),
        ("fsync_per_event", Durability::PerEvent, 300),
    ];
    for (name, durability, n) in modes {
        let batch = events(n);
        group.throughput(Throughput::Elements(n as u64));
        group.bench_with_input(BenchmarkId::new("events", name), &batch, |b, batch| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let dir = tempfile::tempdir().unwrap();
                    let config = WriterConfig::default().durability(durability);
                    let (audit, guard) = AuditLog::open(dir.path(), config).unwrap();
                    let input = batch.clone();
                    let start = Instant::now();
                    for e in input {
                        audit.record(e).unwrap();
                    }
                    guard.close().unwrap();
                    total += start.elapsed();
                }
                total
            });
        });
    }
    let batch = events(200_000);
    group.throughput(Throughput::Elements(batch.len() as u64));
    group.bench_function(BenchmarkId::new("events", "raw_jsonl_baseline"), |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let dir = tempfile::tempdir().unwrap();
                let input = batch.clone();
                let start = Instant::now();
                let file = std::fs::File::create(dir.path().join("raw.jsonl")).unwrap();
                let mut w = std::io::BufWriter::with_capacity(256 * 1024, file);
                for e in input {
                    serde_json::to_writer(&mut w, &e).unwrap();
                    w.write_all(b"\n").unwrap();
                }
                w.flush().unwrap();
                total += start.elapsed();
            }
            total
        });
    });
    group.finish();
}

fn read(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let (audit, guard) = AuditLog::open(
        dir.path(),
        WriterConfig::default().durability(Durability::Buffered),
    )
    .unwrap();
    for e in events(100_000) {
        audit.record(e).unwrap();
    }
    guard.close().unwrap();
    let bytes: u64 = Reader::open(dir.path())
        .unwrap()
        .files()
        .iter()
        .map(|f| std::fs::metadata(&f.path).unwrap().len())
        .sum();

    let mut group = c.benchmark_group("read");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8))
        .warm_up_time(Duration::from_secs(1));
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("all_events", |b| {
        b.iter(|| {
            let reader = Reader::open(dir.path()).unwrap();
            black_box(reader.events(&Filter::all()).count())
        })
    });
    group.bench_function("filter_sandbox_and_deny", |b| {
        let filter = Filter::all().sandbox("sandbox-3").decision(Decision::Deny);
        b.iter(|| {
            let reader = Reader::open(dir.path()).unwrap();
            black_box(reader.events(&filter).count())
        })
    });
    group.bench_function("aggregate_view", |b| {
        b.iter(|| {
            black_box(
                Reader::open(dir.path())
                    .unwrap()
                    .aggregate(&Filter::all())
                    .0
                    .blocked
                    .len(),
            )
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| black_box(verify(dir.path()).unwrap().events()))
    });
    group.finish();
}

criterion_group!(benches, append, read);
criterion_main!(benches);
