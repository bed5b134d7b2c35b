//! `cargo xtask bench-virtiofs`: the sbx-virtiofs file server through the host kernel's FUSE, side by side with the
//! plain directory and with bindfs (a libfuse passthrough file system from Debian), in one run.
//!
//! Workloads: untar of a generated source tree, `git status` on a 50,000-file repository, and sequential write and
//! (cold-cache) read of a large file. Each is run `RUNS` times per target; the median is reported. Needs root (FUSE
//! mounts), `bindfs`, `git` and `tar`.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

const RUNS: usize = 3;
const TREE_FILES: usize = 20_000;
const STATUS_FILES: usize = 50_000;
const SEQ_BYTES: usize = 512 << 20;
const BLOCK: usize = 1 << 20;

/// One place the workloads run: its name and the directory it exposes.
struct Target {
    name: &'static str,
    dir: PathBuf,
}

pub(crate) fn run(args: &[String]) -> Result<()> {
    let base = match args.first() {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join("sbx-bench-virtiofs"),
    };
    for tool in ["bindfs", "git", "tar"] {
        if !have(tool) {
            bail!(
                "bench-virtiofs needs `{tool}`; install it (e.g. `apt-get install {tool}`) and run again"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&base);
    let plain = base.join("plain");
    let (ours_mnt, bindfs_mnt) = (base.join("mnt-sbx"), base.join("mnt-bindfs"));
    for d in [&plain, &ours_mnt, &bindfs_mnt] {
        std::fs::create_dir_all(d)?;
    }
    eprintln!("bench-virtiofs: preparing inputs in {}", base.display());
    let tarball = make_tarball(&base)?;
    make_status_repo(&plain.join("repo"))?;

    let mut server = mount_sbx(&plain, &ours_mnt)?;
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
            dir: plain.clone(),
        },
        Target {
            name: "sbx-virtiofs (host FUSE)",
            dir: ours_mnt.clone(),
        },
        Target {
            name: "bindfs (libfuse passthrough)",
            dir: bindfs_mnt.clone(),
        },
    ];
    let result = run_all(&targets, &tarball);
    let _ = Command::new("umount").arg(&bindfs_mnt).status();
    drop(server.stdin.take()); // the example unmounts when its stdin closes
    let _ = server.wait();
    if let Ok(rows) = &result {
        print_table(rows);
    }
    eprintln!("bench-virtiofs: removing {}", base.display());
    let _ = std::fs::remove_dir_all(&base);
    result.map(drop)
}

struct Row {
    target: &'static str,
    untar: Duration,
    status: Duration,
    write_mbs: f64,
    read_mbs: f64,
}

fn run_all(targets: &[Target], tarball: &Path) -> Result<Vec<Row>> {
    let mut rows = Vec::new();
    for t in targets {
        eprintln!("bench-virtiofs: {}", t.name);
        let untar = median(RUNS, |i| {
            let dest = t.dir.join(format!("untar-{}-{i}", t.name.len()));
            std::fs::create_dir_all(&dest)?;
            let start = Instant::now();
            exec(
                Command::new("tar")
                    .arg("-xf")
                    .arg(tarball)
                    .arg("-C")
                    .arg(&dest),
            )?;
            let took = start.elapsed();
            std::fs::remove_dir_all(&dest)?;
            Ok(took)
        })?;
        let repo = t.dir.join("repo");
        git(&repo, &["status", "--porcelain"])?; // warm-up: same dentry/attr state for every target
        let status = median(RUNS, |_| {
            let start = Instant::now();
            let out = git(&repo, &["status", "--porcelain"])?;
            if !out.is_empty() {
                bail!("git status in {} reports changes: {out}", repo.display());
            }
            Ok(start.elapsed())
        })?;
        let file = t.dir.join("seq.bin");
        let write = median(RUNS, |_| sequential_write(&file))?;
        let read = median(RUNS, |_| sequential_read(&file))?;
        std::fs::remove_file(&file)?;
        let mbs = |d: Duration| SEQ_BYTES as f64 / (1 << 20) as f64 / d.as_secs_f64();
        rows.push(Row {
            target: t.name,
            untar,
            status,
            write_mbs: mbs(write),
            read_mbs: mbs(read),
        });
    }
    Ok(rows)
}

fn print_table(rows: &[Row]) {
    println!(
        "| target | untar {TREE_FILES} files (s) | git status, {STATUS_FILES} files (s) | seq. write {} MiB + fsync (MiB/s) | seq. read, cold cache (MiB/s) |",
        SEQ_BYTES >> 20
    );
    println!("| --- | --- | --- | --- | --- |");
    for r in rows {
        println!(
            "| {} | {:.2} | {:.2} | {:.0} | {:.0} |",
            r.target,
            r.untar.as_secs_f64(),
            r.status.as_secs_f64(),
            r.write_mbs,
            r.read_mbs
        );
    }
    if let [plain, ours, peer] = rows {
        println!();
        println!(
            "sbx-virtiofs vs bindfs: untar {:.2}x, git status {:.2}x faster; vs plain: write {:.0}%, read {:.0}%",
            peer.untar.as_secs_f64() / ours.untar.as_secs_f64(),
            peer.status.as_secs_f64() / ours.status.as_secs_f64(),
            100.0 * ours.write_mbs / plain.write_mbs,
            100.0 * ours.read_mbs / plain.read_mbs,
        );
    }
}

fn median(runs: usize, mut f: impl FnMut(usize) -> Result<Duration>) -> Result<Duration> {
    let mut v = (0..runs).map(&mut f).collect::<Result<Vec<_>>>()?;
    v.sort();
    Ok(v[v.len() / 2])
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
    std::fs::remove_dir_all(&src)?;
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
    drop_caches();
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
    let mut child = Command::new("cargo")
        .args([
            "run",
            "-q",
            "--release",
            "-p",
            "sbx-virtiofs",
            "--example",
            "mount",
            "--",
        ])
        .arg(share)
        .arg(mnt)
        .arg("--until-eof")
        .stdin(Stdio::piped())
        .spawn()
        .context("starting the sbx-virtiofs mount example")?;
    let parent_dev = dev_of(mnt.parent().unwrap_or(Path::new("/")))?;
    let deadline = Instant::now() + Duration::from_secs(600);
    while dev_of(mnt)? == parent_dev {
        if let Some(status) = child.try_wait()? {
            bail!("the mount example exited early: {status}");
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
