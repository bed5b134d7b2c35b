//! Creating a branch worktree in a generated repository of 50,000 files: `Host::create` (gix, parallel checkout)
//! against `git worktree add -b` as a user runs it (their git config, `checkout.workers` unset = 1, sequential),
//! and `git -c checkout.workers=0 worktree add` (git's own parallel checkout, one worker per core) for reference.
//!
//! One command: `cargo bench -p sbx-worktree --bench create`. The repository is generated once with
//! `git fast-import` and cached under the target directory (keyed by a format version and the file count), so
//! later runs start timing at once. Each round times every variant once, in rotating order, so load changes hit
//! all of them alike; the report gives median, min and max per variant and the ratio of medians. Only the create
//! is timed; each worktree and branch is removed again untimed.
//!
//! `SBX_BENCH_FILES` (default 50000) and `SBX_BENCH_ROUNDS` (default 7) change the size and round count.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sbx_worktree::Host;

/// Bump when the generated repository's layout changes, so stale caches are not reused.
const REPO_FORMAT: u32 = 1;

type BenchResult<T> = Result<T, Box<dyn std::error::Error>>;

fn git(dir: &Path, args: &[&str]) -> BenchResult<()> {
    let output = Command::new("git")
        .current_dir(dir)
        .args(args)
        .stdout(Stdio::null())
        .output()?;
    if !output.status.success() {
        return Err(format!(
            "git {args:?} in {}: {}",
            dir.display(),
            String::from_utf8_lossy(&output.stderr)
        )
        .into());
    }
    Ok(())
}

fn git_stdout(dir: &Path, args: &[&str]) -> BenchResult<String> {
    let output = Command::new("git").current_dir(dir).args(args).output()?;
    if !output.status.success() {
        return Err(format!("git {args:?}: {}", String::from_utf8_lossy(&output.stderr)).into());
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// The cached repository of `files` files, generated if missing or incomplete.
fn cached_repo(files: usize) -> BenchResult<PathBuf> {
    let root = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("sbx-worktree-create-v{REPO_FORMAT}-{files}"));
    let repo = root.join("repo");
    let done = root.join("complete");
    if done.exists() {
        reset(&repo)?;
        return Ok(repo);
    }
    if root.exists() {
        std::fs::remove_dir_all(&root)?;
    }
    std::fs::create_dir_all(&repo)?;
    eprintln!(
        "generating a repository of {files} files in {}",
        repo.display()
    );
    generate(&repo, files)?;
    std::fs::write(&done, b"")?;
    Ok(repo)
}

/// A repository with `files` files of ~330 bytes in 500 directories, one commit, built with `git fast-import`.
fn generate(repo: &Path, files: usize) -> BenchResult<()> {
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["config", "user.name", "Bench"])?;
    git(repo, &["config", "user.email", "bench@example.com"])?;
    let mut child = Command::new("git")
        .current_dir(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .spawn()?;
    {
        let stdin = child.stdin.take().ok_or("fast-import has no stdin")?;
        let mut input = std::io::BufWriter::new(stdin);
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
            )?;
        }
        let message = "generated";
        write!(
            input,
            "commit refs/heads/main\ncommitter Bench <bench@example.com> 1700000000 +0000\ndata {}\n{message}\n",
            message.len()
        )?;
        for i in 0..files {
            writeln!(input, "M 100644 :{} src/d{:03}/f{i}.rs", i + 1, i % 500)?;
        }
    }
    if !child.wait()?.success() {
        return Err("git fast-import failed".into());
    }
    // Repack as `git gc` leaves a user's repository, then populate the main worktree.
    git(repo, &["repack", "-a", "-d", "-q"])?;
    git(repo, &["checkout", "-q", "-f", "main"])?;
    Ok(())
}

/// Remove what an interrupted earlier run may have left: worktrees, branches, sandbox records.
fn reset(repo: &Path) -> BenchResult<()> {
    let list = git_stdout(repo, &["worktree", "list", "--porcelain"])?;
    let main = std::fs::canonicalize(repo)?;
    for line in list.lines() {
        if let Some(path) = line.strip_prefix("worktree ")
            && Path::new(path) != main
        {
            git(repo, &["worktree", "remove", "--force", "--force", path])?;
        }
    }
    git(repo, &["worktree", "prune"])?;
    for branch in git_stdout(
        repo,
        &["for-each-ref", "--format=%(refname:short)", "refs/heads/"],
    )?
    .lines()
    {
        if branch != "main" {
            git(repo, &["branch", "-q", "-D", branch])?;
        }
    }
    for dir in [
        repo.join(".sbx"),
        repo.join(".git/sbx"),
        repo.join("../git-worktrees"),
    ] {
        if dir.exists() {
            std::fs::remove_dir_all(dir)?;
        }
    }
    Ok(())
}

#[derive(Clone, Copy, Debug)]
enum Variant {
    Sbx,
    Git,
    GitParallel,
}

impl Variant {
    const ALL: [Variant; 3] = [Variant::Sbx, Variant::Git, Variant::GitParallel];

    fn label(self) -> &'static str {
        match self {
            Variant::Sbx => "sbx-worktree create",
            Variant::Git => "git worktree add -b",
            Variant::GitParallel => "git -c checkout.workers=0 worktree add -b",
        }
    }

    /// Time one create (wall clock and CPU seconds) and clean it up untimed.
    fn run(self, repo: &Path, n: usize) -> BenchResult<Sample> {
        match self {
            Variant::Sbx => {
                let name = format!("s{n}");
                let cpu = cpu_seconds()?;
                let start = Instant::now();
                let host = Host::open(repo)?;
                host.create(&name, None)?;
                let wall = start.elapsed();
                let cpu = cpu_seconds()?.own - cpu.own;
                host.remove(&name, true)?;
                Ok(Sample { wall, cpu })
            }
            Variant::Git | Variant::GitParallel => {
                let dir = repo.join("../git-worktrees");
                std::fs::create_dir_all(&dir)?;
                let path = dir.join(format!("g{n}"));
                let path_str = path.to_str().ok_or("non-UTF-8 bench path")?;
                let branch = format!("g{n}");
                let mut args = Vec::new();
                if matches!(self, Variant::GitParallel) {
                    args.extend(["-c", "checkout.workers=0"]);
                }
                args.extend(["worktree", "add", "-q", "-b", &branch, path_str]);
                let cpu = cpu_seconds()?;
                let start = Instant::now();
                git(repo, &args)?;
                let wall = start.elapsed();
                let cpu = cpu_seconds()?.children - cpu.children;
                git(repo, &["worktree", "remove", "--force", path_str])?;
                git(repo, &["branch", "-q", "-D", &branch])?;
                Ok(Sample { wall, cpu })
            }
        }
    }
}

/// One timed create.
#[derive(Clone, Copy, Debug)]
struct Sample {
    wall: Duration,
    /// User + system CPU seconds, all threads (sbx) or all waited-for processes (git and its children).
    cpu: f64,
}

/// CPU seconds used so far by this process and by its waited-for children, from `/proc/self/stat`.
struct CpuTimes {
    own: f64,
    children: f64,
}

fn cpu_seconds() -> BenchResult<CpuTimes> {
    static TICKS: std::sync::OnceLock<f64> = std::sync::OnceLock::new();
    let ticks = *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .unwrap_or(100.0)
    });
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the parenthesised command name; utime is field 14 overall, i.e. index 11 here.
    let rest = stat.rsplit_once(')').ok_or("malformed /proc/self/stat")?.1;
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(4)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let [utime, stime, cutime, cstime] = fields[..] else {
        return Err("malformed /proc/self/stat".into());
    };
    Ok(CpuTimes {
        own: (utime + stime) / ticks,
        children: (cutime + cstime) / ticks,
    })
}

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn median(times: &mut [Duration]) -> Duration {
    times.sort();
    let mid = times.len() / 2;
    if times.len() % 2 == 1 {
        times[mid]
    } else {
        (times[mid - 1] + times[mid]) / 2
    }
}

fn main() -> BenchResult<()> {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and expects a quick smoke run.
    let benching = std::env::args().any(|a| a == "--bench");
    let files = env_number("SBX_BENCH_FILES", if benching { 50_000 } else { 500 });
    let rounds = env_number("SBX_BENCH_ROUNDS", if benching { 7 } else { 1 }).max(1);
    let repo = cached_repo(files)?;
    let git_version = git_stdout(&repo, &["version"])?;
    let workers = git_stdout(&repo, &["config", "--get", "checkout.workers"]).unwrap_or_default();
    println!(
        "create worktree, {files} files, {rounds} rounds, {} cores, {}, checkout.workers={}",
        std::thread::available_parallelism().map_or(0, usize::from),
        git_version.trim(),
        if workers.trim().is_empty() {
            "unset (1)"
        } else {
            workers.trim()
        },
    );
    println!("load before: {}", load());
    // One untimed warm-up of each variant puts the pack and the directories in the page cache.
    for (i, variant) in Variant::ALL.iter().enumerate() {
        variant.run(&repo, 1000 + i)?;
    }
    let mut samples: Vec<Vec<Sample>> = vec![Vec::new(); Variant::ALL.len()];
    for round in 0..rounds {
        for k in 0..Variant::ALL.len() {
            let index = (round + k) % Variant::ALL.len();
            let sample = Variant::ALL[index].run(&repo, round * 10 + k)?;
            eprintln!(
                "round {round}: {:<44} {:>8.1} ms wall, {:>6.2} s CPU, load {}",
                Variant::ALL[index].label(),
                sample.wall.as_secs_f64() * 1e3,
                sample.cpu,
                load()
            );
            samples[index].push(sample);
        }
    }
    println!("load after:  {}", load());
    let summaries: Vec<(Vec<Duration>, f64)> = samples
        .iter()
        .map(|s| {
            let mut walls: Vec<Duration> = s.iter().map(|x| x.wall).collect();
            walls.sort();
            let mut cpus: Vec<f64> = s.iter().map(|x| x.cpu).collect();
            cpus.sort_by(f64::total_cmp);
            (walls, cpus[cpus.len() / 2])
        })
        .collect();
    let git_wall = median(&mut summaries[1].0.clone()).as_secs_f64();
    let git_cpu = summaries[1].1;
    for (variant, (walls, cpu)) in Variant::ALL.iter().zip(&summaries) {
        let wall = median(&mut walls.clone()).as_secs_f64();
        println!(
            "{:<44} wall median {:>8.1} ms (min {:>8.1}, max {:>8.1}), ratio {:.2}x | CPU median {:>6.2} s, ratio {:.2}x",
            variant.label(),
            wall * 1e3,
            walls.first().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            walls.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            wall / git_wall,
            cpu,
            cpu / git_cpu.max(1e-9),
        );
    }
    reset(&repo)?;
    Ok(())
}
