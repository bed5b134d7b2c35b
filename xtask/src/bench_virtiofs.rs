//! `cargo xtask bench-virtiofs [SCRATCH_DIR] [--io-only] [--runs N]`: the sbx-virtiofs file server through the host kernel's
//! FUSE, side by side with the plain directory and with bindfs (a libfuse passthrough file system from Debian), in one
//! run.
//!
//! Workloads: untar of a generated source tree, `git status` on a 50,000-file repository, an `lstat` of each of that
//! repository's files from 20 threads (what `git status` spends most of its time on: its index preload), sequential
//! write (+ fsync) of a large file, and reading it back twice: cold (page caches dropped, root only) and warm (the
//! file just read, opened again).
//!
//! A fourth target is the transport floor: the `null_server` example of sbx-virtiofs, the same host-FUSE transport
//! answering every request from memory (a lookup is a hash probe, a write is dropped). It runs the `lstat` and
//! sequential workloads; what they cost through it is what the kernel's FUSE round trips cost on this machine, so
//! no passthrough server can beat it.
//!
//! Each workload runs `--runs` rounds (default 3; the `lstat` one three times as many); within a round the targets
//! take turns, so a change in the machine's load during the run hits all of them alike. The median per target is
//! reported, with the load average before and after. `--io-only` skips untar, `git status` and `lstat` (a quick check
//! of the sequential figures). Needs root (FUSE mounts, dropping caches), `bindfs`, `git` and `tar`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const DEFAULT_RUNS: usize = 3;
const TREE_FILES: usize = 20_000;
const STATUS_FILES: usize = 50_000;
const SEQ_BYTES: usize = 512 << 20;
const BLOCK: usize = 1 << 20;
/// Threads of the `lstat` workload: `git status` preloads its index with up to 20 (one per 500 entries).
const STAT_THREADS: usize = 20;

/// One place the workloads run: its name and the directory it exposes.
struct Target {
    name: &'static str,
    /// Short name for files of this target (all targets expose the same directory underneath).
    slug: &'static str,
    dir: PathBuf,
}

const USAGE: &str = "usage: cargo xtask bench-virtiofs [SCRATCH_DIR] [--io-only] [--runs N]";

/// Command-line options.
struct Options {
    scratch: Option<PathBuf>,
    io_only: bool,
    runs: usize,
}

fn parse_args(args: &[String]) -> Result<Options> {
    let mut opts = Options {
        scratch: None,
        io_only: false,
        runs: DEFAULT_RUNS,
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--io-only" => opts.io_only = true,
            "--runs" => {
                let n = it.next().context(USAGE)?;
                opts.runs =
                    n.parse().ok().filter(|&n| n > 0).with_context(|| {
                        format!("--runs {n}: expected a positive number; {USAGE}")
                    })?;
            }
            flag if flag.starts_with("--") => {
                bail!("bench-virtiofs: unknown option {flag}; {USAGE}")
            }
            dir => opts.scratch = Some(PathBuf::from(dir)),
        }
    }
    Ok(opts)
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let opts = parse_args(args)?;
    let (io_only, runs) = (opts.io_only, opts.runs);
    let base = opts
        .scratch
        .unwrap_or_else(|| std::env::temp_dir().join("sbx-bench-virtiofs"));
    for tool in ["bindfs", "git", "tar"] {
        if !have(tool) {
            bail!(
                "bench-virtiofs needs `{tool}`; install it (e.g. `apt-get install {tool}`) and run again"
            );
        }
    }
    if base.exists() {
        std::fs::remove_dir_all(&base)
            .with_context(|| format!("removing the previous run's {}", base.display()))?;
        stamp_deletion();
    }
    wait_for_deleted_inodes_to_age();
    let plain = base.join("plain");
    let (ours_mnt, bindfs_mnt) = (base.join("mnt-sbx"), base.join("mnt-bindfs"));
    let null_mnt = base.join("mnt-null");
    for d in [&plain, &ours_mnt, &bindfs_mnt, &null_mnt] {
        std::fs::create_dir_all(d)?;
    }
    eprintln!("bench-virtiofs: preparing inputs in {}", base.display());
    let tarball = if io_only {
        None
    } else {
        make_status_repo(&plain.join("repo"))?;
        Some(make_tarball(&base)?)
    };

    let repo_files = if io_only {
        Vec::new()
    } else {
        git(&plain.join("repo"), &["ls-files", "-z"])?
            .split('\0')
            .filter(|f| !f.is_empty())
            .map(|f| format!("repo/{f}"))
            .collect()
    };
    let manifest = base.join("null-manifest.txt");
    std::fs::write(
        &manifest,
        format!("{}\nseq-null.bin\n", repo_files.join("\n")),
    )?;

    let mut server = mount_sbx(&plain, &ours_mnt)?;
    let mut null_server = mount_example("null_server", &manifest, &null_mnt)?;
    let bindfs = Command::new("bindfs")
        .arg(&plain)
        .arg(&bindfs_mnt)
        .status()
        .context("running bindfs")?;
    if !bindfs.success() {
        bail!("bindfs failed to mount {}", bindfs_mnt.display());
    }
    let targets = [
        Target {
            name: "plain directory",
            slug: "plain",
            dir: plain.clone(),
        },
        Target {
            name: "sbx-virtiofs (host FUSE)",
            slug: "sbx",
            dir: ours_mnt.clone(),
        },
        Target {
            name: "bindfs (libfuse passthrough)",
            slug: "bindfs",
            dir: bindfs_mnt.clone(),
        },
        Target {
            name: "null server (transport floor)",
            slug: "null",
            dir: null_mnt.clone(),
        },
    ];
    let load_before = load_average();
    let started = Instant::now();
    let result = run_all(&targets, tarball.as_deref(), &repo_files, runs);
    let load_after = load_average();
    let _ = Command::new("umount").arg(&bindfs_mnt).status();
    for child in [&mut server, &mut null_server] {
        drop(child.stdin.take()); // the examples unmount when their stdin closes
        let _ = child.wait();
    }
    if let Ok(rows) = &result {
        print_table(rows);
        println!(
            "\n{runs} round(s), {:.0} s; load average (1/5/15 min) before: {load_before}; after: {load_after}",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("bench-virtiofs: removing {}", base.display());
    let _ = std::fs::remove_dir_all(&base);
    stamp_deletion();
    result.map(drop)
}

/// When this bench last deleted a tree (a file whose mtime is the time).
fn deletion_stamp() -> PathBuf {
    std::env::temp_dir().join("sbx-bench-virtiofs.deleted")
}

fn stamp_deletion() {
    let _ = Command::new("sync").status();
    let _ = std::fs::write(deletion_stamp(), b"");
}

/// ext4 does not reuse an inode for 60 s after its deletion has been written back (`recently_deleted` in its inode
/// allocator), and every creation scans past such inodes: right after a mass deletion an untar of 20,000 files took
/// 7.4 s of kernel CPU instead of 0.6 s. So the workloads start no sooner than 61 s after this bench's last deletion.
fn wait_for_deleted_inodes_to_age() {
    let age = std::fs::metadata(deletion_stamp())
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok());
    if let Some(age) = age
        && let Some(left) = Duration::from_secs(61).checked_sub(age)
    {
        eprintln!(
            "bench-virtiofs: waiting {:.0} s for the inodes deleted by the previous run to age out (ext4)",
            left.as_secs_f64()
        );
        std::thread::sleep(left);
    }
}

/// Medians of one target (`None`: workload skipped).
struct Row {
    target: &'static str,
    untar: Option<Duration>,
    status: Option<Duration>,
    stat: Option<Duration>,
    write_mbs: f64,
    cold_read_mbs: f64,
    warm_read_mbs: f64,
}

/// Runs `f` for every round and target, the targets taking turns within a round; returns each target's median.
fn interleaved(
    targets: &[Target],
    runs: usize,
    what: &str,
    mut f: impl FnMut(&Target, usize) -> Result<Duration>,
) -> Result<Vec<Duration>> {
    eprintln!("bench-virtiofs: {what}");
    let mut samples = vec![Vec::with_capacity(runs); targets.len()];
    for round in 0..runs {
        for (t, target) in targets.iter().enumerate() {
            let took = f(target, round).with_context(|| format!("{what} on {}", target.name))?;
            eprintln!(
                "bench-virtiofs: {what}, round {round}, {}: {:.3} s",
                target.slug,
                took.as_secs_f64()
            );
            samples[t].push(took);
        }
    }
    Ok(samples
        .into_iter()
        .map(|mut v| {
            v.sort();
            v[v.len() / 2]
        })
        .collect())
}

/// The targets that serve real files: all but the transport floor, which cannot create files or run git.
const REAL_TARGETS: usize = 3;

fn run_all(
    targets: &[Target],
    tarball: Option<&Path>,
    repo_files: &[String],
    runs: usize,
) -> Result<Vec<Row>> {
    let none = || vec![None; targets.len()];
    let some = |v: Vec<Duration>| {
        let mut v: Vec<_> = v.into_iter().map(Some).collect();
        v.resize(targets.len(), None);
        v
    };
    let (untar, status, stat) = match tarball {
        None => (none(), none(), none()),
        Some(tarball) => {
            let real = &targets[..REAL_TARGETS];
            let untar = interleaved(real, runs, "untar", |t, round| {
                untar_once(t, tarball, round)
            })?;
            for t in real {
                // Warm-up: the same dentry/attribute state for every target.
                git(&t.dir.join("repo"), &["status", "--porcelain"])?;
            }
            let status = interleaved(real, runs, "git status", |t, _| git_status_once(t))?;
            for t in targets {
                // Warm-up: every target's names known to the kernel (git status made them so on the three real
                // ones), so each timed round revalidates expired entries instead of creating them.
                stat_all(&t.dir, repo_files)?;
            }
            // Three times the rounds: one round takes ~2 s and single rounds swing by 20 %.
            let stat = interleaved(
                targets,
                runs * 3,
                "lstat of every repository file",
                |t, _| stat_all(&t.dir, repo_files),
            )?;
            (some(untar), some(status), some(stat))
        }
    };
    // The null server's manifest lists `seq-null.bin`; it keeps the size, not the bytes.
    let file = |t: &Target| t.dir.join(format!("seq-{}.bin", t.slug));
    let write = interleaved(targets, runs, "sequential write", |t, _| {
        sequential_write(&file(t))
    })?;
    let cold = interleaved(targets, runs, "sequential read, cold", |t, _| {
        drop_caches();
        sequential_read(&file(t))
    })?;
    let warm = interleaved(targets, runs, "sequential read, warm", |t, _| {
        sequential_read(&file(t))?; // the first pass fills the caches; the second is timed
        sequential_read(&file(t))
    })?;
    for t in &targets[..REAL_TARGETS] {
        std::fs::remove_file(file(t))?; // the null server's file is only a size
    }
    let mbs = |d: Duration| SEQ_BYTES as f64 / (1 << 20) as f64 / d.as_secs_f64();
    Ok((0..targets.len())
        .map(|i| Row {
            target: targets[i].name,
            untar: untar[i],
            status: status[i],
            stat: stat[i],
            write_mbs: mbs(write[i]),
            cold_read_mbs: mbs(cold[i]),
            warm_read_mbs: mbs(warm[i]),
        })
        .collect())
}

fn untar_once(t: &Target, tarball: &Path, round: usize) -> Result<Duration> {
    let name = format!("untar-{}-{round}", t.slug);
    let dest = t.dir.join(&name);
    std::fs::create_dir_all(&dest)?;
    // Untimed: write back what the preparation and the previous round left dirty (the 50,000-file repository), so each
    // untar is timed against the same clean disk instead of against earlier writeback.
    let _ = Command::new("sync").status();
    let start = Instant::now();
    exec(
        Command::new("tar")
            .arg("-xf")
            .arg(tarball)
            .arg("-C")
            .arg(&dest),
    )?;
    // The tree stays until the run ends: deleting it here made the next rounds' creations crawl
    // (see `wait_for_deleted_inodes_to_age`).
    Ok(start.elapsed())
}

/// `lstat` of every file of the repository from `STAT_THREADS` threads, each a contiguous slice in index order (as
/// git's index preload does), after the guest's entries have expired (the server's 1 s timeout).
fn stat_all(dir: &Path, files: &[String]) -> Result<Duration> {
    std::thread::sleep(Duration::from_millis(1100));
    let chunk = files.len().div_ceil(STAT_THREADS).max(1);
    let start = Instant::now();
    std::thread::scope(|scope| {
        let workers: Vec<_> = files
            .chunks(chunk)
            .map(|slice| {
                scope.spawn(move || -> Result<()> {
                    for f in slice {
                        let path = dir.join(f);
                        std::fs::symlink_metadata(&path)
                            .with_context(|| format!("lstat {}", path.display()))?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers.into_iter().try_for_each(|w| {
            w.join()
                .map_err(|_| anyhow::anyhow!("an lstat thread panicked"))?
        })
    })?;
    Ok(start.elapsed())
}

fn git_status_once(t: &Target) -> Result<Duration> {
    let repo = t.dir.join("repo");
    let start = Instant::now();
    let out = git(&repo, &["status", "--porcelain"])?;
    if !out.is_empty() {
        bail!("git status in {} reports changes: {out}", repo.display());
    }
    Ok(start.elapsed())
}

fn print_table(rows: &[Row]) {
    let secs =
        |d: Option<Duration>| d.map_or("n/a".to_owned(), |d| format!("{:.2}", d.as_secs_f64()));
    println!(
        "| target | untar {TREE_FILES} files (s) | git status, {STATUS_FILES} files (s) | lstat {STATUS_FILES} files, {STAT_THREADS} threads (s) | seq. write {} MiB + fsync (MiB/s) | seq. read, cold (MiB/s) | seq. read, warm (MiB/s) |",
        SEQ_BYTES >> 20
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.0} |",
            r.target,
            secs(r.untar),
            secs(r.status),
            secs(r.stat),
            r.write_mbs,
            r.cold_read_mbs,
            r.warm_read_mbs
        );
    }
    let [plain, ours, peer, floor] = rows else {
        return;
    };
    println!();
    let ratio = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
        (Some(a), Some(b)) => format!("{:.2}x", a.as_secs_f64() / b.as_secs_f64()),
        _ => "n/a".to_owned(),
    };
    println!(
        "sbx-virtiofs vs bindfs: untar {}, git status {}, lstat {} faster",
        ratio(peer.untar, ours.untar),
        ratio(peer.status, ours.status),
        ratio(peer.stat, ours.stat),
    );
    println!(
        "sbx-virtiofs vs plain: write {:.0}%, cold read {:.0}%, warm read {:.0}% (bindfs: {:.0}%, {:.0}%, {:.0}%)",
        100.0 * ours.write_mbs / plain.write_mbs,
        100.0 * ours.cold_read_mbs / plain.cold_read_mbs,
        100.0 * ours.warm_read_mbs / plain.warm_read_mbs,
        100.0 * peer.write_mbs / plain.write_mbs,
        100.0 * peer.cold_read_mbs / plain.cold_read_mbs,
        100.0 * peer.warm_read_mbs / plain.warm_read_mbs,
    );
    // A passthrough server pays the round trips (at least the floor's time) and the host's own work (at least the
    // plain directory's time), one after the other for a synchronous write: time >= floor + plain.
    let per_mib = |mbs: f64| 1.0 / mbs;
    println!(
        "transport floor: lstat through any FUSE server here is at best {} faster than bindfs; a synchronous server \
         writes at best {:.0}% of plain (floor {:.0} MiB/s + plain {:.0} MiB/s in sequence)",
        ratio(peer.stat, floor.stat),
        100.0 * per_mib(plain.write_mbs) / (per_mib(plain.write_mbs) + per_mib(floor.write_mbs)),
        floor.write_mbs,
        plain.write_mbs,
    );
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".to_owned())
}

/// A source-like tree: 100 directories of ~200 files, 0.5–4 KiB each, tarred once.
fn make_tarball(base: &Path) -> Result<PathBuf> {
    let src = base.join("tree-src");
    for i in 0..TREE_FILES {
        let dir = src.join(format!("pkg{:03}/src/mod{}", i % 100, i % 7));
        std::fs::create_dir_all(&dir)?;
        let body = format!("// file {i}\n").repeat(20 + (i * 37) % 300);
        std::fs::write(dir.join(format!("file{i}.rs")), body)?;
    }
    let tarball = base.join("tree.tar");
    exec(
        Command::new("tar")
            .arg("-cf")
            .arg(&tarball)
            .arg("-C")
            .arg(&src)
            .arg("."),
    )?;
    // `src` is kept until the run ends, like the untarred trees (deleting 20,000 files slows the creations that
    // follow; see `wait_for_deleted_inodes_to_age`).
    Ok(tarball)
}

/// A committed repository of `STATUS_FILES` small files (built on the plain directory, untimed).
fn make_status_repo(repo: &Path) -> Result<()> {
    for i in 0..STATUS_FILES {
        let dir = repo.join(format!("d{:03}/e{:02}", i % 500, i % 10));
        std::fs::create_dir_all(&dir)?;
        std::fs::write(dir.join(format!("f{i}.txt")), format!("content {i}\n"))?;
    }
    git(repo, &["init", "-q", "-b", "main"])?;
    git(repo, &["add", "-A"])?;
    git(repo, &["commit", "-qm", "bench"])?;
    Ok(())
}

fn sequential_write(file: &Path) -> Result<Duration> {
    use std::io::Write;
    let block = vec![0x5au8; BLOCK];
    let start = Instant::now();
    let mut f = std::fs::File::create(file)?;
    for _ in 0..SEQ_BYTES / BLOCK {
        f.write_all(&block)?;
    }
    f.sync_all()?;
    Ok(start.elapsed())
}

fn sequential_read(file: &Path) -> Result<Duration> {
    use std::io::Read;
    let mut block = vec![0u8; BLOCK];
    let start = Instant::now();
    let mut f = std::fs::File::open(file)?;
    let mut total = 0;
    loop {
        let n = f.read(&mut block)?;
        if n == 0 {
            break;
        }
        total += n;
    }
    if total != SEQ_BYTES {
        bail!("read {total} bytes of {SEQ_BYTES} from {}", file.display());
    }
    Ok(start.elapsed())
}

/// Cold-cache reads: flush dirty pages and drop the page cache (root only; otherwise reads are warm).
fn drop_caches() {
    let _ = Command::new("sync").status();
    if std::fs::write("/proc/sys/vm/drop_caches", "3").is_err() {
        eprintln!("bench-virtiofs: cannot drop caches (not root?); reads are warm");
    }
}

fn git(dir: &Path, args: &[&str]) -> Result<String> {
    let out = Command::new("git")
        .args([
            "-c",
            "core.checkStat=minimal",
            "-c",
            "core.untrackedCache=false",
            "-c",
            "gc.auto=0",
        ])
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "bench")
        .env("GIT_AUTHOR_EMAIL", "bench@example.com")
        .env("GIT_COMMITTER_NAME", "bench")
        .env("GIT_COMMITTER_EMAIL", "bench@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .stderr(Stdio::inherit())
        .output()
        .with_context(|| format!("running git {args:?}"))?;
    if !out.status.success() {
        bail!("git {args:?} failed in {}", dir.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn exec(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed with {status}");
    }
    Ok(())
}

/// Mounts the share with the release build of the `mount` example and waits until the mount is live.
fn mount_sbx(share: &Path, mnt: &Path) -> Result<Child> {
    mount_example("mount", share, mnt)
}

/// Starts an sbx-virtiofs example (`mount` or `null_server`: `EXAMPLE INPUT MOUNTPOINT --until-eof`, release build)
/// and waits until its mount is live.
fn mount_example(example: &str, input: &Path, mnt: &Path) -> Result<Child> {
    let mut child = Command::new("cargo")
        .args([
            "run",
            "-q",
            "--release",
            "-p",
            "sbx-virtiofs",
            "--example",
            example,
            "--",
        ])
        .arg(input)
        .arg(mnt)
        .arg("--until-eof")
        .stdin(Stdio::piped())
        .spawn()
        .with_context(|| format!("starting the sbx-virtiofs {example} example"))?;
    let parent_dev = dev_of(mnt.parent().unwrap_or(Path::new("/")))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while dev_of(mnt)? == parent_dev {
        if let Some(status) = child.try_wait()? {
            bail!("the {example} example exited early: {status}");
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            bail!("{} was not mounted within 10 minutes", mnt.display());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(child)
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool} >/dev/null 2>&1")])
        .status()
        .is_ok_and(|s| s.success())
}

fn dev_of(path: &Path) -> Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(std::fs::metadata(path)
        .with_context(|| format!("stat {}", path.display()))?
        .dev())
}
