//! Measures buffered append throughput and where its CPU time goes: the recording thread (serialize + queue) and
//! the writer thread (chain hash + write), in nanoseconds of CPU per event from `/proc/self/task/*/schedstat`,
//! which a busy machine distorts far less than wall-clock rates. The same events serialized with serde_json into a
//! `BufWriter` on one thread (the criterion bench's `raw_jsonl_baseline`) are measured the same way beside it.
//!
//! Run: `cargo run --release -p sbx-audit --example throughput [-- EVENTS_PER_ROUND ROUNDS [DIR]]`
//! (defaults: 200000 events, 5 rounds, a temporary directory).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use sbx_audit::{AuditLog, Durability, Event, WriterConfig};

#[path = "../benches/common/events.rs"]
mod events;
use events::events;

/// CPU time a thread has run, in nanoseconds (first field of its schedstat).
fn cpu_ns(task: &Path) -> u64 {
    std::fs::read_to_string(task.join("schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The `/proc` directory of the thread named `name` in this process.
fn thread_named(name: &str) -> Option<PathBuf> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let path = t.ok()?.path();
        let comm = std::fs::read_to_string(path.join("comm")).ok()?;
        (comm.trim() == name).then_some(path)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let per_round: usize = args.next().map_or(Ok(200_000), |a| a.parse())?;
    let rounds: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let tmp = tempfile::tempdir()?;
    let dir = args
        .next()
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);

    let batch = events(per_round);
    let me = PathBuf::from("/proc/thread-self");
    let mut rates = Vec::new();
    let mut close_ms = Vec::new();
    let (mut caller_ns, mut writer_ns, mut total) = (0u64, 0u64, 0u64);
    for round in 0..rounds {
        let round_dir = dir.join(format!("round-{round}"));
        let config = WriterConfig::default().durability(Durability::Buffered);
        let (audit, guard) = AuditLog::open(&round_dir, config)?;
        // The thread names itself once it runs; comm holds 15 bytes of the name.
        let writer = (0..1000)
            .find_map(|_| {
                let found = thread_named("sbx-audit-write");
                if found.is_none() {
                    std::thread::sleep(std::time::Duration::from_millis(1));
                }
                found
            })
            .ok_or("writer thread not found")?;
        let input = batch.clone();
        let (c0, w0) = (cpu_ns(&me), cpu_ns(&writer));
        let start = Instant::now();
        for e in input {
            audit.record(e)?;
        }
        audit.flush()?;
        let (c1, w1) = (cpu_ns(&me), cpu_ns(&writer));
        let closing = Instant::now();
        guard.close()?;
        close_ms.push(closing.elapsed().as_secs_f64() * 1e3);
        let elapsed = start.elapsed();
        caller_ns += c1 - c0;
        writer_ns += w1 - w0;
        total += per_round as u64;
        rates.push(per_round as f64 / elapsed.as_secs_f64());
        std::fs::remove_dir_all(&round_dir)?;
    }
    let (raw_rate, raw_ns) = raw_baseline(&batch, &dir, rounds)?;
    rates.sort_by(f64::total_cmp);
    close_ms.sort_by(f64::total_cmp);
    println!(
        "buffered append, {rounds} × {per_round} events (record … close, fsync and seal included): \
         median {:.0} events/s, best {:.0} events/s",
        rates[rates.len() / 2],
        rates[rates.len() - 1]
    );
    println!(
        "close (final write, fsync, seal): median {:.1} ms",
        close_ms[close_ms.len() / 2]
    );
    println!(
        "CPU per event: recording thread {:.0} ns (serialize, queue, drop the event), writer thread {:.0} ns \
         (chain hash, write)",
        caller_ns as f64 / total as f64,
        writer_ns as f64 / total as f64
    );
    println!(
        "raw_jsonl_baseline (serde_json + BufWriter, one thread, no chain, no fsync): median {raw_rate:.0} \
         events/s, {raw_ns:.0} ns CPU per event"
    );
    Ok(())
}

/// The floor: serialize with serde_json and write through a 256 KiB `BufWriter`. Returns the median rate and the
/// CPU nanoseconds per event.
fn raw_baseline(
    batch: &[Event],
    dir: &Path,
    rounds: usize,
) -> Result<(f64, f64), Box<dyn std::error::Error>> {
    let me = PathBuf::from("/proc/thread-self");
    let mut rates = Vec::new();
    let mut cpu = 0u64;
    std::fs::create_dir_all(dir)?;
    for _ in 0..rounds {
        let input = batch.to_vec();
        let path = dir.join("raw.jsonl");
        let c0 = cpu_ns(&me);
        let start = Instant::now();
        let mut w = std::io::BufWriter::with_capacity(256 * 1024, std::fs::File::create(&path)?);
        for e in input {
            serde_json::to_writer(&mut w, &e)?;
            w.write_all(b"\n")?;
        }
        w.flush()?;
        rates.push(batch.len() as f64 / start.elapsed().as_secs_f64());
        cpu += cpu_ns(&me) - c0;
        std::fs::remove_file(&path)?;
    }
    rates.sort_by(f64::total_cmp);
    Ok((
        rates[rates.len() / 2],
        cpu as f64 / (batch.len() * rounds) as f64,
    ))
}
