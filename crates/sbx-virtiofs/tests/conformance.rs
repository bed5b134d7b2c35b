//! pjdfstest-style conformance: a table of POSIX cases, each run on the FUSE mount and on a plain directory; the
//! errno (or the observed result) must be the same on both.

mod common;

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use rustix::fs::{AtFlags, CWD, Mode, OFlags, RenameFlags};

type Case = (&'static str, fn(&Path) -> Result<String, i32>);

fn errno(e: std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(-1)
}
fn rerr(e: rustix::io::Errno) -> i32 {
    e.raw_os_error()
}
fn mode_of(p: &Path) -> Result<String, i32> {
    Ok(format!(
        "{:o}",
        fs::symlink_metadata(p).map_err(errno)?.permissions().mode()
    ))
}

const CASES: &[Case] = &[
    ("mkdir over existing file: EEXIST", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::create_dir(r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("mkdir in missing parent: ENOENT", |r| {
        fs::create_dir(r.join("no/d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("mkdir under a file: ENOTDIR", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::create_dir(r.join("f/d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rmdir non-empty: ENOTEMPTY", |r| {
        fs::create_dir_all(r.join("d/e")).map_err(errno)?;
        fs::remove_dir(r.join("d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rmdir a file: ENOTDIR", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::remove_dir(r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("unlink a directory: EISDIR", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::remove_file(r.join("d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("unlink missing: ENOENT", |r| {
        fs::remove_file(r.join("nope"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rename dir over file: ENOTDIR", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::rename(r.join("d"), r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rename file over dir: EISDIR", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::rename(r.join("f"), r.join("d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rename dir over non-empty dir: ENOTEMPTY", |r| {
        fs::create_dir_all(r.join("a")).map_err(errno)?;
        fs::create_dir_all(r.join("b/c")).map_err(errno)?;
        fs::rename(r.join("a"), r.join("b"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rename dir into itself: EINVAL", |r| {
        fs::create_dir_all(r.join("a/b")).map_err(errno)?;
        fs::rename(r.join("a"), r.join("a/b/c"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("rename over empty dir replaces it", |r| {
        fs::create_dir_all(r.join("a/x")).map_err(errno)?;
        fs::create_dir(r.join("b")).map_err(errno)?;
        fs::rename(r.join("a"), r.join("b")).map_err(errno)?;
        Ok(format!("{}", r.join("b/x").exists()))
    }),
    ("rename file onto its hard link is a no-op", |r| {
        fs::write(r.join("a"), "x").map_err(errno)?;
        fs::hard_link(r.join("a"), r.join("b")).map_err(errno)?;
        fs::rename(r.join("a"), r.join("b")).map_err(errno)?;
        Ok(format!(
            "{} {}",
            r.join("a").exists(),
            fs::metadata(r.join("b")).map_err(errno)?.nlink()
        ))
    }),
    ("renameat2 NOREPLACE onto existing: EEXIST", |r| {
        fs::write(r.join("a"), "").map_err(errno)?;
        fs::write(r.join("b"), "").map_err(errno)?;
        rustix::fs::renameat_with(CWD, r.join("a"), CWD, r.join("b"), RenameFlags::NOREPLACE)
            .map(|_| "ok".into())
            .map_err(rerr)
    }),
    ("renameat2 EXCHANGE with missing: ENOENT", |r| {
        fs::write(r.join("a"), "").map_err(errno)?;
        rustix::fs::renameat_with(CWD, r.join("a"), CWD, r.join("b"), RenameFlags::EXCHANGE)
            .map(|_| "ok".into())
            .map_err(rerr)
    }),
    ("link to a directory: EPERM", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::hard_link(r.join("d"), r.join("l"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("link onto existing: EEXIST", |r| {
        fs::write(r.join("a"), "").map_err(errno)?;
        fs::write(r.join("b"), "").map_err(errno)?;
        fs::hard_link(r.join("a"), r.join("b"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("link count of a directory grows with subdirectories", |r| {
        fs::create_dir_all(r.join("d/a")).map_err(errno)?;
        fs::create_dir(r.join("d/b")).map_err(errno)?;
        Ok(fs::metadata(r.join("d"))
            .map_err(errno)?
            .nlink()
            .to_string())
    }),
    ("O_CREAT|O_EXCL on existing: EEXIST", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("O_CREAT|O_EXCL on a dangling symlink: EEXIST", |r| {
        std::os::unix::fs::symlink("nowhere", r.join("s")).map_err(errno)?;
        fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(r.join("s"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("open a directory for writing: EISDIR", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::OpenOptions::new()
            .write(true)
            .open(r.join("d"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("O_DIRECTORY on a file: ENOTDIR", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        rustix::fs::open(
            r.join("f"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map(|_| "ok".into())
        .map_err(rerr)
    }),
    ("O_NOFOLLOW on a symlink: ELOOP", |r| {
        std::os::unix::fs::symlink("x", r.join("s")).map_err(errno)?;
        rustix::fs::open(
            r.join("s"),
            OFlags::RDONLY | OFlags::NOFOLLOW,
            Mode::empty(),
        )
        .map(|_| "ok".into())
        .map_err(rerr)
    }),
    ("O_TRUNC empties the file", |r| {
        fs::write(r.join("f"), "content").map_err(errno)?;
        fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(r.join("f"))
            .map_err(errno)?;
        Ok(fs::metadata(r.join("f")).map_err(errno)?.len().to_string())
    }),
    ("symlink onto existing: EEXIST", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        std::os::unix::fs::symlink("t", r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("symlink mode and size", |r| {
        std::os::unix::fs::symlink("twelve-bytes", r.join("s")).map_err(errno)?;
        Ok(format!(
            "{} {}",
            mode_of(&r.join("s"))?,
            fs::symlink_metadata(r.join("s")).map_err(errno)?.len()
        ))
    }),
    ("readlink on a file: EINVAL", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::read_link(r.join("f"))
            .map(|_| "ok".into())
            .map_err(errno)
    }),
    ("name of 255 bytes works, 256: ENAMETOOLONG", |r| {
        let ok = fs::write(r.join("a".repeat(255)), "").map_err(errno);
        let long = fs::write(r.join("b".repeat(256)), "").map_err(errno);
        Ok(format!("{ok:?} {long:?}"))
    }),
    ("chmod sets exactly the permission bits", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o1751)).map_err(errno)?;
        mode_of(&r.join("f"))
    }),
    ("chmod changes ctime, not mtime", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        fs::File::options()
            .write(true)
            .open(r.join("f"))
            .map_err(errno)?
            .set_modified(when)
            .map_err(errno)?;
        fs::set_permissions(r.join("f"), fs::Permissions::from_mode(0o600)).map_err(errno)?;
        let m = fs::metadata(r.join("f")).map_err(errno)?;
        Ok(format!("{} {}", m.mtime(), m.ctime() > 1_000_000))
    }),
    ("creating a file updates the directory's mtime", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        let when = std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
        rustix::fs::utimensat(CWD, r.join("d"), &times(when), AtFlags::empty()).map_err(rerr)?;
        fs::write(r.join("d/f"), "").map_err(errno)?;
        Ok((fs::metadata(r.join("d")).map_err(errno)?.mtime() > 1_000_000).to_string())
    }),
    ("truncate extends with zeros", |r| {
        fs::write(r.join("f"), "ab").map_err(errno)?;
        fs::File::options()
            .write(true)
            .open(r.join("f"))
            .map_err(errno)?
            .set_len(5)
            .map_err(errno)?;
        Ok(format!("{:?}", fs::read(r.join("f")).map_err(errno)?))
    }),
    ("truncate a directory: EISDIR", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        rustix::fs::open(r.join("d"), OFlags::WRONLY | OFlags::TRUNC, Mode::empty())
            .map(|_| "ok".into())
            .map_err(rerr)
    }),
    ("lchown on a symlink changes the link only", |r| {
        fs::write(r.join("f"), "").map_err(errno)?;
        std::os::unix::fs::symlink("f", r.join("s")).map_err(errno)?;
        let me = rustix::process::geteuid();
        rustix::fs::chownat(CWD, r.join("s"), Some(me), None, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(rerr)?;
        mode_of(&r.join("s"))
    }),
    ("readdir lists . and .. plus entries", |r| {
        fs::create_dir(r.join("d")).map_err(errno)?;
        fs::write(r.join("d/x"), "").map_err(errno)?;
        let dir = rustix::fs::open(
            r.join("d"),
            OFlags::RDONLY | OFlags::DIRECTORY,
            Mode::empty(),
        )
        .map_err(rerr)?;
        let mut names: Vec<String> = rustix::fs::Dir::read_from(&dir)
            .map_err(rerr)?
            .map(|e| {
                e.map(|e| e.file_name().to_string_lossy().into_owned())
                    .map_err(rerr)
            })
            .collect::<Result<_, _>>()?;
        names.sort();
        Ok(names.join(","))
    }),
    ("write past EOF leaves a hole of zeros", |r| {
        let f = fs::File::create(r.join("f")).map_err(errno)?;
        rustix::io::pwrite(&f, b"x", 10000).map_err(rerr)?;
        let data = fs::read(r.join("f")).map_err(errno)?;
        Ok(format!(
            "{} {}",
            data.len(),
            data[..10000].iter().all(|&b| b == 0)
        ))
    }),
    ("unlinked open file stays readable", |r| {
        fs::write(r.join("f"), "still here").map_err(errno)?;
        let f = fs::File::open(r.join("f")).map_err(errno)?;
        fs::remove_file(r.join("f")).map_err(errno)?;
        let mut buf = [0u8; 10];
        rustix::io::pread(&f, &mut buf, 0).map_err(rerr)?;
        Ok(String::from_utf8_lossy(&buf).into_owned())
    }),
];

fn times(t: std::time::SystemTime) -> rustix::fs::Timestamps {
    let secs = t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let ts = rustix::fs::Timespec {
        tv_sec: secs,
        tv_nsec: 0,
    };
    rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    }
}

#[test]
fn posix_cases_behave_as_on_a_plain_directory() {
    let Some(m) = common::mount("conformance", |c| c) else {
        return;
    };
    let plain = m.tmp.path().join("plain");
    let mut failures = Vec::new();
    for (i, (name, case)) in CASES.iter().enumerate() {
        let (a, b) = (
            m.mnt.join(format!("case{i}")),
            plain.join(format!("case{i}")),
        );
        fs::create_dir_all(&a).unwrap();
        fs::create_dir_all(&b).unwrap();
        let (via_mount, via_plain) = (case(&a), case(&b));
        if via_mount != via_plain {
            failures.push(format!(
                "{name}: mount {via_mount:?} vs plain {via_plain:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
    eprintln!("{} conformance cases matched", CASES.len());
}
