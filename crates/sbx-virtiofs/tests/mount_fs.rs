//! Real file-system work through the host-FUSE mount, compared with the same work on a plain directory.

mod common;

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use rustix::fs::{AtFlags, CWD, FileType, Mode, RenameFlags, XattrFlags};
use rustix::io::Errno;

/// A deterministic xorshift generator, so storms are reproducible.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Runs a random mix of create/write/rename/unlink/mkdir/rmdir on `root`, returning the outcome of each step.
fn storm(root: &Path, seed: u64, steps: usize) -> Vec<String> {
    let mut rng = Rng(seed);
    let mut log = Vec::new();
    let name = |rng: &mut Rng| {
        let dir = ["", "d0/", "d1/", "d0/e/"][rng.below(4) as usize];
        format!("{dir}f{}", rng.below(12))
    };
    for _ in 0..steps {
        let r = match rng.below(7) {
            0 | 1 => {
                let n = name(&mut rng);
                let len = rng.below(5000) as usize;
                fs::write(root.join(&n), vec![(len % 251) as u8; len]).map(|_| format!("write {n}"))
            }
            2 => {
                let (a, b) = (name(&mut rng), name(&mut rng));
                fs::rename(root.join(&a), root.join(&b)).map(|_| format!("rename {a} {b}"))
            }
            3 => {
                let n = name(&mut rng);
                fs::remove_file(root.join(&n)).map(|_| format!("unlink {n}"))
            }
            4 => {
                let d = ["d0", "d1", "d0/e"][rng.below(3) as usize];
                fs::create_dir(root.join(d)).map(|_| format!("mkdir {d}"))
            }
            5 => {
                let d = ["d0", "d1", "d0/e"][rng.below(3) as usize];
                fs::remove_dir(root.join(d)).map(|_| format!("rmdir {d}"))
            }
            _ => {
                let (a, b) = (name(&mut rng), name(&mut rng));
                fs::hard_link(root.join(&a), root.join(&b)).map(|_| format!("link {a} {b}"))
            }
        };
        log.push(match r {
            Ok(s) => s,
            Err(e) => format!("err {:?}", e.raw_os_error()),
        });
    }
    log
}

#[test]
fn create_rename_unlink_storm_matches_a_plain_directory() {
    let Some(m) = common::mount("storm", |c| c) else {
        return;
    };
    let plain = m.tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    for seed in [1u64, 0xdead_beef, 42] {
        let via_mount = storm(&m.mnt, seed, 600);
        let via_plain = storm(&plain, seed, 600);
        assert_eq!(via_mount, via_plain, "seed {seed}: step outcomes differ");
        assert_eq!(
            common::snapshot(&m.mnt),
            common::snapshot(&plain),
            "seed {seed}: trees differ"
        );
        assert_eq!(
            common::snapshot(&m.share),
            common::snapshot(&plain),
            "seed {seed}: host view differs"
        );
    }
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 4096) as u8).collect()
}

#[test]
fn large_files_round_trip_in_both_directions() {
    let Some(m) = common::mount("large_files", |c| c) else {
        return;
    };
    let data = pattern(48 << 20);
    fs::write(m.mnt.join("big"), &data).unwrap();
    assert!(
        fs::read(m.share.join("big")).unwrap() == data,
        "host sees what the guest wrote"
    );
    fs::write(m.share.join("big2"), &data[..(20 << 20) + 123]).unwrap();
    assert!(
        fs::read(m.mnt.join("big2")).unwrap() == data[..(20 << 20) + 123],
        "guest sees what the host wrote"
    );
    // Random-offset overwrite and read back.
    let mut f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.mnt.join("big"))
        .unwrap();
    f.seek(SeekFrom::Start(10_000_001)).unwrap();
    f.write_all(b"overwritten").unwrap();
    f.seek(SeekFrom::Start(10_000_000)).unwrap();
    let mut buf = [0u8; 13];
    f.read_exact(&mut buf).unwrap();
    assert_eq!(&buf[1..12], b"overwritten");
    assert_eq!(buf[0], data[10_000_000]);
    assert_eq!(
        fs::metadata(m.mnt.join("big")).unwrap().len(),
        data.len() as u64
    );
}

#[test]
fn mmap_reads_and_writes_reach_the_host_file() {
    let Some(m) = common::mount("mmap", |c| c) else {
        return;
    };
    let len = 1 << 20;
    fs::write(m.share.join("mapped"), pattern(len)).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.mnt.join("mapped"))
        .unwrap();
    // SAFETY: a fresh shared mapping of a file we hold open; it is only used within this block and unmapped below.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ | rustix::mm::ProtFlags::WRITE,
            rustix::mm::MapFlags::SHARED,
            &f,
            0,
        )
        .unwrap()
    };
    // SAFETY: the mapping is `len` bytes, readable and writable, and nothing else aliases it.
    let view = unsafe { std::slice::from_raw_parts_mut(ptr.cast::<u8>(), len) };
    assert!(view[..] == pattern(len)[..]);
    view[4096..4096 + 6].copy_from_slice(b"mapped");
    // SAFETY: same mapping, still valid.
    unsafe { rustix::mm::msync(ptr, len, rustix::mm::MsyncFlags::SYNC).unwrap() };
    // SAFETY: unmapping the mapping created above; `view` is not used afterwards.
    unsafe { rustix::mm::munmap(ptr, len).unwrap() };
    drop(f);
    assert_eq!(
        &fs::read(m.share.join("mapped")).unwrap()[4096..4102],
        b"mapped"
    );
}

#[test]
fn hard_links_share_one_inode() {
    let Some(m) = common::mount("hard_links", |c| c) else {
        return;
    };
    fs::write(m.mnt.join("a"), b"one").unwrap();
    fs::hard_link(m.mnt.join("a"), m.mnt.join("b")).unwrap();
    let (ma, mb) = (
        fs::metadata(m.mnt.join("a")).unwrap(),
        fs::metadata(m.mnt.join("b")).unwrap(),
    );
    assert_eq!(ma.ino(), mb.ino());
    assert_eq!(mb.nlink(), 2);
    assert_eq!(
        fs::metadata(m.share.join("b")).unwrap().ino(),
        fs::metadata(m.share.join("a")).unwrap().ino()
    );
    fs::write(m.mnt.join("b"), b"two").unwrap();
    assert_eq!(fs::read(m.mnt.join("a")).unwrap(), b"two");
    fs::remove_file(m.mnt.join("a")).unwrap();
    assert_eq!(fs::metadata(m.mnt.join("b")).unwrap().nlink(), 1);
    assert_eq!(fs::read(m.share.join("b")).unwrap(), b"two");
}

#[test]
fn symlinks_are_stored_and_returned_verbatim() {
    let Some(m) = common::mount("symlinks", |c| c) else {
        return;
    };
    std::os::unix::fs::symlink("target.txt", m.mnt.join("rel")).unwrap();
    std::os::unix::fs::symlink("/nonexistent/abs", m.mnt.join("abs")).unwrap();
    fs::write(m.mnt.join("target.txt"), b"t").unwrap();
    assert_eq!(
        fs::read_link(m.mnt.join("rel")).unwrap(),
        Path::new("target.txt")
    );
    assert_eq!(
        fs::read_link(m.share.join("abs")).unwrap(),
        Path::new("/nonexistent/abs")
    );
    assert_eq!(fs::read(m.mnt.join("rel")).unwrap(), b"t");
    assert!(
        fs::symlink_metadata(m.mnt.join("abs"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::metadata(m.mnt.join("abs")).is_err(),
        "dangling link stays dangling"
    );
    let hosts: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(hosts.len(), 3);
}

#[test]
fn permissions_match_a_plain_directory_except_setuid_which_is_stripped() {
    let Some(m) = common::mount("permissions", |c| c) else {
        return;
    };
    let plain = m.tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    for root in [&m.mnt, &plain] {
        fs::write(root.join("f"), b"x").unwrap();
        fs::set_permissions(root.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
        fs::create_dir(root.join("d")).unwrap();
        fs::set_permissions(root.join("d"), fs::Permissions::from_mode(0o1750)).unwrap();
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(root.join("g"))
            .unwrap();
    }
    for name in ["f", "d", "g"] {
        let a = fs::metadata(m.mnt.join(name)).unwrap().permissions().mode();
        let b = fs::metadata(plain.join(name)).unwrap().permissions().mode();
        assert_eq!(a, b, "{name}");
        assert_eq!(
            fs::metadata(m.share.join(name))
                .unwrap()
                .permissions()
                .mode(),
            b,
            "{name} on host"
        );
    }
    // setuid/setgid never reach the host.
    fs::set_permissions(m.mnt.join("f"), fs::Permissions::from_mode(0o6755)).unwrap();
    assert_eq!(
        fs::metadata(m.share.join("f"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    // An unprivileged user is refused a 0600 root file through the mount, as on the plain directory.
    for root in [&m.mnt, &plain] {
        let out = Command::new("cat")
            .arg(root.join("g"))
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "nobody must not read {}",
            root.display()
        );
        assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    }
}

use std::os::unix::process::CommandExt;

#[test]
fn xattrs_in_the_user_namespace_work_others_are_refused() {
    let Some(m) = common::mount("xattrs", |c| c) else {
        return;
    };
    let f = m.mnt.join("x");
    fs::write(&f, b"x").unwrap();
    rustix::fs::setxattr(&f, "user.sbx", b"value", XattrFlags::empty()).unwrap();
    let mut buf = [0u8; 64];
    let n = rustix::fs::getxattr(m.share.join("x"), "user.sbx", &mut buf[..]).unwrap();
    assert_eq!(&buf[..n], b"value");
    let n = rustix::fs::listxattr(&f, &mut buf[..]).unwrap();
    assert!(buf[..n].split(|&b| b == 0).any(|s| s == b"user.sbx"));
    assert_eq!(
        rustix::fs::getxattr(&f, "user.missing", &mut buf[..]).err(),
        Some(Errno::NODATA)
    );
    assert_eq!(
        rustix::fs::setxattr(&f, "user.sbx", b"v", XattrFlags::CREATE).err(),
        Some(Errno::EXIST)
    );
    // File capabilities would be privilege on the host.
    let cap = [
        1u8, 0, 0, 2, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    assert!(rustix::fs::setxattr(&f, "security.capability", &cap, XattrFlags::empty()).is_err());
    assert!(rustix::fs::setxattr(&f, "trusted.x", b"1", XattrFlags::empty()).is_err());
    assert_eq!(
        rustix::fs::getxattr(m.share.join("x"), "security.capability", &mut buf[..]).err(),
        Some(Errno::NODATA)
    );
    rustix::fs::removexattr(&f, "user.sbx").unwrap();
    assert_eq!(
        rustix::fs::getxattr(m.share.join("x"), "user.sbx", &mut buf[..]).err(),
        Some(Errno::NODATA)
    );
}

#[test]
fn truncate_times_fallocate_seek_data_and_copy_range() {
    let Some(m) = common::mount("file_ops", |c| c) else {
        return;
    };
    let p = m.mnt.join("f");
    fs::write(&p, pattern(100_000)).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&p)
        .unwrap();
    f.set_len(5000).unwrap();
    assert_eq!(fs::metadata(m.share.join("f")).unwrap().len(), 5000);
    let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000_000);
    f.set_modified(when).unwrap();
    assert_eq!(
        fs::metadata(m.share.join("f")).unwrap().mtime(),
        1_000_000_000
    );
    rustix::fs::fallocate(&f, rustix::fs::FallocateFlags::empty(), 0, 1 << 20).unwrap();
    assert_eq!(fs::metadata(m.share.join("f")).unwrap().len(), 1 << 20);
    // A sparse file: data at 0, hole after the first block, data again at 4 MiB.
    let s = fs::File::create(m.mnt.join("sparse")).unwrap();
    rustix::io::pwrite(&s, b"head", 0).unwrap();
    rustix::io::pwrite(&s, b"tail", 4 << 20).unwrap();
    let hole = rustix::fs::seek(&s, rustix::fs::SeekFrom::Hole(0)).unwrap();
    assert!(hole > 0 && hole < 4 << 20, "hole at {hole}");
    let data = rustix::fs::seek(&s, rustix::fs::SeekFrom::Data(hole)).unwrap();
    assert!(data <= 4 << 20 && data > hole);
    // copy_file_range through the mount.
    let dst = fs::File::create(m.mnt.join("copy")).unwrap();
    let n = rustix::fs::copy_file_range(&f, Some(&mut 0), &dst, Some(&mut 0), 5000).unwrap();
    assert_eq!(n, 5000);
    drop(dst);
    assert_eq!(fs::read(m.share.join("copy")).unwrap(), pattern(5000));
    // O_APPEND appends at the host file's end.
    let mut a = fs::OpenOptions::new()
        .append(true)
        .open(m.mnt.join("copy"))
        .unwrap();
    a.write_all(b"!").unwrap();
    assert_eq!(fs::metadata(m.share.join("copy")).unwrap().len(), 5001);
}

#[test]
fn rename_flags_noreplace_and_exchange() {
    let Some(m) = common::mount("rename2", |c| c) else {
        return;
    };
    fs::write(m.mnt.join("a"), b"A").unwrap();
    fs::write(m.mnt.join("b"), b"B").unwrap();
    let r = rustix::fs::renameat_with(
        CWD,
        m.mnt.join("a"),
        CWD,
        m.mnt.join("b"),
        RenameFlags::NOREPLACE,
    );
    assert_eq!(r.err(), Some(Errno::EXIST));
    rustix::fs::renameat_with(
        CWD,
        m.mnt.join("a"),
        CWD,
        m.mnt.join("b"),
        RenameFlags::EXCHANGE,
    )
    .unwrap();
    assert_eq!(fs::read(m.share.join("a")).unwrap(), b"B");
    assert_eq!(fs::read(m.share.join("b")).unwrap(), b"A");
    // Reopening after the exchange reaches the right files (the server tracked both moves).
    assert_eq!(fs::read(m.mnt.join("a")).unwrap(), b"B");
    let r = rustix::fs::renameat_with(
        CWD,
        m.mnt.join("a"),
        CWD,
        m.mnt.join("c"),
        RenameFlags::WHITEOUT,
    );
    assert!(r.is_err(), "whiteouts (device nodes) are refused");
}

#[test]
fn device_nodes_are_refused_fifos_and_sockets_allowed() {
    let Some(m) = common::mount("mknod", |c| c) else {
        return;
    };
    let dev = rustix::fs::mknodat(
        CWD,
        m.mnt.join("null"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(1, 3),
    );
    assert_eq!(dev.err(), Some(Errno::PERM));
    let blk = rustix::fs::mknodat(
        CWD,
        m.mnt.join("sda"),
        FileType::BlockDevice,
        Mode::from_raw_mode(0o666),
        rustix::fs::makedev(8, 0),
    );
    assert_eq!(blk.err(), Some(Errno::PERM));
    assert!(!m.share.join("null").exists() && !m.share.join("sda").exists());
    rustix::fs::mknodat(
        CWD,
        m.mnt.join("fifo"),
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(
        &fs::metadata(m.share.join("fifo")).unwrap().file_type()
    ));
}

#[test]
fn large_directories_list_identically_with_readdirplus() {
    let Some(m) = common::mount("readdir", |c| c) else {
        return;
    };
    for i in 0..3000 {
        fs::write(
            m.share.join(format!("entry-with-a-longish-name-{i:05}")),
            b"",
        )
        .unwrap();
    }
    let mut via_mount: Vec<_> = fs::read_dir(&m.mnt)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    let mut via_host: Vec<_> = fs::read_dir(&m.share)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    via_mount.sort();
    via_host.sort();
    assert_eq!(via_mount.len(), 3000);
    assert_eq!(via_mount, via_host);
    // ls -l style: every entry's attributes come back.
    for e in fs::read_dir(&m.mnt).unwrap().take(50) {
        assert!(e.unwrap().metadata().unwrap().is_file());
    }
}

#[test]
fn host_edits_are_seen_by_the_next_open() {
    let Some(m) = common::mount("consistency", |c| c) else {
        return;
    };
    fs::write(m.mnt.join("f"), b"first version").unwrap();
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"first version");
    // The host rewrites in place (same inode) ...
    fs::write(m.share.join("f"), b"second").unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the attribute timeout
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"second");
    // ... and replaces atomically (new inode, like editors and git do).
    fs::write(m.share.join("f.tmp"), b"third, replaced").unwrap();
    fs::rename(m.share.join("f.tmp"), m.share.join("f")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1100)); // past the entry timeout
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"third, replaced");
}

#[test]
fn statfs_reports_the_host_file_system() {
    let Some(m) = common::mount("statfs", |c| c) else {
        return;
    };
    let a = rustix::fs::statvfs(&m.mnt).unwrap();
    let b = rustix::fs::statvfs(&m.share).unwrap();
    assert_eq!(a.f_blocks, b.f_blocks);
    assert_eq!(a.f_bsize, b.f_bsize);
}

#[test]
fn guest_created_files_belong_to_the_mapped_host_user() {
    let Some(m) = common::mount("idmap", |c| {
        c.ids(sbx_virtiofs::IdMapping {
            guest_uid: 0,
            guest_gid: 0,
            host_uid: 4242,
            host_gid: 4343,
        })
    }) else {
        return;
    };
    if rustix::process::geteuid().as_raw() != 0 {
        eprintln!("SKIPPED idmap: needs root to create files for another host user");
        return;
    }
    fs::write(m.mnt.join("f"), b"x").unwrap();
    fs::create_dir(m.mnt.join("d")).unwrap();
    std::os::unix::fs::symlink("f", m.mnt.join("l")).unwrap();
    for name in ["f", "d", "l"] {
        let host = fs::symlink_metadata(m.share.join(name)).unwrap();
        assert_eq!((host.uid(), host.gid()), (4242, 4343), "{name} on host");
        let guest = fs::symlink_metadata(m.mnt.join(name)).unwrap();
        assert_eq!((guest.uid(), guest.gid()), (0, 0), "{name} in guest");
    }
    // Handing a file to another user is refused; to the mapped guest user it maps back to the host user.
    assert_eq!(
        rustix::fs::chownat(
            CWD,
            m.mnt.join("f"),
            Some(rustix::fs::Uid::from_raw(7)),
            None,
            AtFlags::empty()
        )
        .err(),
        Some(Errno::PERM)
    );
    rustix::fs::chownat(
        CWD,
        m.mnt.join("f"),
        Some(rustix::fs::Uid::from_raw(0)),
        None,
        AtFlags::empty(),
    )
    .unwrap();
    assert_eq!(fs::metadata(m.share.join("f")).unwrap().uid(), 4242);
}

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .args(args)
        .current_dir(dir)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("HOME", dir)
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn git_clone_status_and_commit_inside_the_mount() {
    let Some(m) = common::mount("git", |c| c) else {
        return;
    };
    let origin = m.tmp.path().join("origin");
    fs::create_dir(&origin).unwrap();
    git(&origin, &["init", "-q", "-b", "main"]);
    for i in 0..200 {
        let dir = origin.join(format!("src/mod{}", i % 10));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(format!("file{i}.rs")), format!("fn f{i}() {{}}\n")).unwrap();
    }
    std::os::unix::fs::symlink("src/mod0", origin.join("link")).unwrap();
    git(&origin, &["add", "-A"]);
    git(&origin, &["commit", "-qm", "initial"]);
    git(&m.mnt, &["clone", "-q", origin.to_str().unwrap(), "clone"]);
    let clone = m.mnt.join("clone");
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    git(&clone, &["fsck", "--no-progress"]);
    fs::write(clone.join("src/mod3/file3.rs"), "changed\n").unwrap();
    fs::write(clone.join("new.txt"), "new\n").unwrap();
    assert_eq!(
        git(&clone, &["status", "--porcelain"]),
        " M src/mod3/file3.rs\n?? new.txt\n"
    );
    git(&clone, &["add", "-A"]);
    git(&clone, &["commit", "-qm", "second"]);
    assert_eq!(git(&clone, &["status", "--porcelain"]), "");
    // The host sees the same repository state.
    assert_eq!(git(&m.share.join("clone"), &["status", "--porcelain"]), "");
    assert_eq!(
        git(&m.share.join("clone"), &["rev-list", "--count", "HEAD"]).trim(),
        "2"
    );
}
