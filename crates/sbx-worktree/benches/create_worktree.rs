//! Creating a branch worktree in a generated repository of 50,000 files: sbx-worktree (gix, parallel checkout)
//! against `git worktree add` (as users run it, and with `checkout.workers=0`, git's own parallel checkout), in
//! one run. Only the create is timed; each iteration removes its worktree and branch untimed.
//!
//! `cargo bench -p sbx-worktree --bench create_worktree`; `SBX_BENCH_FILES=5000` for a quick run.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use sbx_worktree::Host;

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stdout(Stdio::null())
        .status()
        .expect("git");
    assert!(status.success(), "git {args:?}");
}

/// A repository with `files` files of a few hundred bytes in 500 directories, built with `git fast-import`.
fn generate(dir: &Path, files: usize) -> PathBuf {
    let repo = dir.join("repo");
    std::fs::create_dir(&repo).expect("mkdir");
    git(&repo, &["init", "-q", "-b", "main"]);
    git(&repo, &["config", "user.name", "Bench"]);
    git(&repo, &["config", "user.email", "bench@example.com"]);
    let mut child = Command::new("git")
        .current_dir(&repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("fast-import");
    {
        let mut input = std::io::BufWriter::new(child.stdin.take().expect("stdin"));
        for i in 0..files {
            let body = format!(
                "// file {i}\n{}\n",
                "let value = compute(input);\n".repeat(10)
            );
            write!(
                input,
                "blob\nmark :{}\ndata {}\n{body}\n",
                i + 1,
                body.len()
            )
            .expect("write");
        }
        let message = "generated";
        write!(
            input,
            "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata {}\n{message}\n",
            message.len()
        )
        .expect("write");
        for i in 0..files {
            writeln!(input, "M 100644 :{} src/d{:03}/f{i}.rs", i + 1, i % 500).expect("write");
        }
    }
    assert!(child.wait().expect("wait").success());
    git(&repo, &["checkout", "-q", "-f", "main"]);
    repo
}

fn bench(c: &mut Criterion) {
    let files: usize = std::env::var("SBX_BENCH_FILES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(50_000);
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = generate(tmp.path(), files);
    let host = Host::open(&repo).expect("open");
    let mut group = c.benchmark_group(format!("create worktree ({files} files)"));
    group
        .sample_size(10)
        // Each create takes seconds: flat sampling runs the same small number of iterations per sample.
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(20));

    let mut n = 0;
    group.bench_function("sbx-worktree create", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                n += 1;
                let name = format!("s{n}");
                let start = Instant::now();
                host.create(&name, None).expect("create");
                total += start.elapsed();
                host.remove(&name, true).expect("remove");
            }
            total
        });
    });
    for (label, extra) in [
        ("git worktree add", &[][..]),
        (
            "git worktree add, checkout.workers=0",
            &["-c", "checkout.workers=0"][..],
        ),
    ] {
        group.bench_function(label, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    n += 1;
                    let path = tmp.path().join(format!("g{n}"));
                    let branch = format!("g{n}");
                    let mut args: Vec<&str> = extra.to_vec();
                    args.extend([
                        "worktree",
                        "add",
                        "-q",
                        "-b",
                        &branch,
                        path.to_str().expect("utf-8"),
                    ]);
                    let start = Instant::now();
                    git(&repo, &args);
                    total += start.elapsed();
                    git(
                        &repo,
                        &[
                            "worktree",
                            "remove",
                            "--force",
                            path.to_str().expect("utf-8"),
                        ],
                    );
                    git(&repo, &["branch", "-q", "-D", &branch]);
                }
                total
            });
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
