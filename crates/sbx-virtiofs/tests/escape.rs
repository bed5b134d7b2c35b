//! Escape attempts: everything an attacker controlling the guest (or racing it on the host) would try. None may read,
//! create or modify anything outside the shared root, or modify a read-only share.

mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use common::*;
use rustix::fs::{CWD, RenameFlags};
use sbx_virtiofs::ShareConfig;
use sbx_virtiofs::abi::{ROOT_ID, opcode};

const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_TRUNC: u32 = 0o1000;
const O_EXCL: u32 = 0o200;

/// A share plus an `outside` sibling holding a secret, driven through raw FUSE requests.
fn raw_share(read_only: bool) -> (tempfile::TempDir, Client) {
    let tmp = tempfile::tempdir().unwrap();
    fs::create_dir(tmp.path().join("share")).unwrap();
    fs::create_dir(tmp.path().join("outside")).unwrap();
    fs::write(tmp.path().join("outside/secret"), b"outside data").unwrap();
    fs::set_permissions(
        tmp.path().join("outside/secret"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    let client = Client::new(ShareConfig::new(tmp.path().join("share")).read_only(read_only));
    (tmp, client)
}

fn assert_outside_untouched(tmp: &std::path::Path) {
    let names: Vec<_> = fs::read_dir(tmp.join("outside"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("secret")],
        "nothing created outside"
    );
    assert_eq!(
        fs::read(tmp.join("outside/secret")).unwrap(),
        b"outside data",
        "secret unchanged"
    );
    let mode = fs::metadata(tmp.join("outside/secret"))
        .unwrap()
        .permissions()
        .mode()
        & 0o7777;
    assert_eq!(mode, 0o600, "secret's mode unchanged");
}

#[test]
fn dot_dot_slashes_and_absolute_names_are_refused_before_any_syscall() {
    let (tmp, mut c) = raw_share(false);
    for name in [
        "..",
        ".",
        "../outside",
        "../outside/secret",
        "/etc",
        "a/b",
        "x/../../outside",
    ] {
        assert_eq!(c.lookup(ROOT_ID, name).error, EINVAL, "lookup {name}");
        assert_eq!(c.mkdir(ROOT_ID, name, 0o755).error, EINVAL, "mkdir {name}");
        assert_eq!(
            c.create(ROOT_ID, name, O_RDWR, 0o644).error,
            EINVAL,
            "create {name}"
        );
        assert_eq!(
            c.symlink(ROOT_ID, name, "/etc").error,
            EINVAL,
            "symlink {name}"
        );
    }
    fs::write(tmp.path().join("share/f"), b"x").unwrap();
    assert_eq!(
        c.rename(ROOT_ID, "f", ROOT_ID, "../outside/f", 0).error,
        EINVAL
    );
    assert_eq!(
        c.rename(ROOT_ID, "../outside/secret", ROOT_ID, "stolen", 0)
            .error,
        EINVAL
    );
    assert_outside_untouched(tmp.path());
}

#[test]
fn symlinks_to_etc_and_outside_are_never_followed_by_the_server() {
    let (tmp, mut c) = raw_share(false);
    std::os::unix::fs::symlink("/etc", tmp.path().join("share/etc")).unwrap();
    std::os::unix::fs::symlink("../outside", tmp.path().join("share/out")).unwrap();
    std::os::unix::fs::symlink("../outside/secret", tmp.path().join("share/sec")).unwrap();
    let etc = c.lookup(ROOT_ID, "etc").nodeid();
    let out = c.lookup(ROOT_ID, "out").nodeid();
    let sec = c.lookup(ROOT_ID, "sec").nodeid();
    // Symlink attributes, not the target's.
    let r = c.call(opcode::GETATTR, sec, &[0u8; 16]);
    assert_eq!(r.u32_at(16 + 60) & 0o170000, 0o120000, "lstat semantics");
    // Lookups through a symlink node: it is not a directory to the server.
    assert_eq!(c.lookup(etc, "passwd").error, ENOTDIR);
    assert_eq!(c.lookup(out, "secret").error, ENOTDIR);
    assert_eq!(c.create(out, "planted", O_RDWR, 0o644).error, ENOTDIR);
    assert_eq!(c.mkdir(out, "planted", 0o755).error, ENOTDIR);
    assert_eq!(c.symlink(out, "planted", "x").error, ENOTDIR);
    assert_eq!(c.call(opcode::OPENDIR, out, &[0u8; 8]).error, ENOTDIR);
    // Opening, truncating, chmod-ing or chown-ing the symlink node touches the link, never its target.
    assert_eq!(c.open(sec, O_RDWR).error, EACCES);
    assert_eq!(
        c.setattr(sec, 1 /* MODE */, 0o777, 0, 0, 0).error,
        EOPNOTSUPP
    );
    assert_ne!(c.setattr(sec, 8 /* SIZE */, 0, 0, 0, 0).error, 0);
    c.setattr(sec, 2 | 4 /* UID|GID */, 0, 0, 0, 0);
    assert_ne!(c.setxattr(sec, "user.x", b"1").error, 0);
    // The link is readable as a link.
    let r = c.call(opcode::READLINK, etc, &[]);
    assert_eq!(r.body, b"/etc");
    // Hard-linking the symlink node links the symlink itself.
    let l = c.link(sec, ROOT_ID, "sec2");
    assert_eq!(l.error, 0);
    assert_eq!(
        fs::read_link(tmp.path().join("share/sec2"))
            .unwrap()
            .to_str(),
        Some("../outside/secret")
    );
    assert_outside_untouched(tmp.path());
    assert_eq!(
        fs::metadata("/etc/passwd").unwrap().permissions().mode() & 0o7777,
        0o644
    );
}

#[test]
fn forged_node_ids_and_handles_are_refused() {
    let (tmp, mut c) = raw_share(false);
    for node in [0u64, 2, 999, u64::MAX] {
        assert_eq!(c.lookup(node, "x").error, ESTALE, "node {node}");
        assert_eq!(c.link(node, ROOT_ID, "x").error, ESTALE);
    }
    assert_eq!(c.read(ROOT_ID, 77, 0, 10).error, -9 /* EBADF */);
    assert_eq!(c.write(ROOT_ID, 77, 0, b"x").error, -9);
    // A handle of one file cannot be used to truncate another.
    let a = c.create(ROOT_ID, "a", O_RDWR, 0o644);
    let (a_fh, b) = (
        a.u64_at(128),
        c.create(ROOT_ID, "b", O_RDWR, 0o644).nodeid(),
    );
    let mut body = (8u32 | 64).to_ne_bytes().to_vec(); // SIZE | FH
    body.extend_from_slice(&0u32.to_ne_bytes());
    body.extend_from_slice(&a_fh.to_ne_bytes());
    body.extend_from_slice(&[0u8; 88 - 16]);
    assert_eq!(c.call(opcode::SETATTR, b, &body).error, -9);
    // Directories cannot be hard-linked (would allow loops).
    let d = c.mkdir(ROOT_ID, "d", 0o755).nodeid();
    assert_eq!(c.link(d, ROOT_ID, "d2").error, EPERM);
    assert_eq!(c.link(ROOT_ID, d, "root-again").error, EPERM);
    assert_outside_untouched(tmp.path());
}

#[test]
fn special_files_are_not_opened_and_devices_not_created() {
    let (tmp, mut c) = raw_share(false);
    rustix::fs::mknodat(
        CWD,
        tmp.path().join("share/fifo"),
        rustix::fs::FileType::Fifo,
        rustix::fs::Mode::from_raw_mode(0o666),
        0,
    )
    .unwrap();
    let fifo = c.lookup(ROOT_ID, "fifo").nodeid();
    // A FIFO open would block a server thread forever; it is refused instead.
    assert_eq!(c.open(fifo, 0).error, EACCES);
    assert_eq!(c.mknod(ROOT_ID, "null", 0o020666, 0x103).error, EPERM);
    assert_eq!(c.mknod(ROOT_ID, "sda", 0o060666, 0x800).error, EPERM);
    // Whiteouts are character devices.
    fs::write(tmp.path().join("share/f"), b"x").unwrap();
    assert_eq!(
        c.rename(ROOT_ID, "f", ROOT_ID, "g", 4 /* WHITEOUT */).error,
        EINVAL
    );
    // Setuid requested at creation or later never lands.
    let f = c.create(ROOT_ID, "suid", O_RDWR, 0o4755);
    assert_eq!(f.error, 0);
    assert_eq!(
        fs::metadata(tmp.path().join("share/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o755
    );
    let n = f.nodeid();
    assert_eq!(c.setattr(n, 1, 0o6777, 0, 0, 0).error, 0);
    assert_eq!(
        fs::metadata(tmp.path().join("share/suid"))
            .unwrap()
            .permissions()
            .mode()
            & 0o7777,
        0o777
    );
    // security.capability would be file capabilities on the host.
    assert_eq!(
        c.setxattr(
            n,
            "security.capability",
            &[1, 0, 0, 2, 0xff, 0xff, 0xff, 0xff]
        )
        .error,
        EOPNOTSUPP
    );
}

#[test]
fn chown_to_foreign_users_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let ids = sbx_virtiofs::IdMapping::identity();
    let mut c = Client::new(ShareConfig::new(tmp.path()).ids(ids));
    let f = c.create(ROOT_ID, "f", O_RDWR, 0o644).nodeid();
    let other = ids.guest_uid.wrapping_add(1);
    assert_eq!(c.setattr(f, 2, 0, other, 0, 0).error, EPERM);
    assert_eq!(
        c.setattr(f, 4, 0, 0, ids.guest_gid.wrapping_add(1), 0)
            .error,
        EPERM
    );
    assert_eq!(c.setattr(f, 2, 0, ids.guest_uid, 0, 0).error, 0);
}

#[test]
fn read_only_share_refuses_every_write_with_erofs() {
    let (tmp, mut c) = raw_share(true);
    let share = tmp.path().join("share");
    fs::write(share.join("f"), b"original").unwrap();
    fs::create_dir(share.join("d")).unwrap();
    let before = snapshot(&share);
    let f = c.lookup(ROOT_ID, "f").nodeid();
    let d = c.lookup(ROOT_ID, "d").nodeid();
    assert_eq!(c.open(f, O_WRONLY).error, EROFS);
    assert_eq!(c.open(f, O_RDWR).error, EROFS);
    assert_eq!(c.open(f, O_TRUNC).error, EROFS);
    assert_eq!(
        c.create(ROOT_ID, "new", O_RDWR | O_EXCL, 0o644).error,
        EROFS
    );
    assert_eq!(c.mkdir(ROOT_ID, "nd", 0o755).error, EROFS);
    assert_eq!(c.mknod(ROOT_ID, "n", 0o100644, 0).error, EROFS);
    assert_eq!(c.symlink(ROOT_ID, "s", "f").error, EROFS);
    assert_eq!(c.link(f, ROOT_ID, "l").error, EROFS);
    assert_eq!(c.rename(ROOT_ID, "f", ROOT_ID, "g", 0).error, EROFS);
    assert_eq!(c.call(opcode::UNLINK, ROOT_ID, &cstr("f")).error, EROFS);
    assert_eq!(c.call(opcode::RMDIR, ROOT_ID, &cstr("d")).error, EROFS);
    assert_eq!(c.setattr(f, 1, 0o777, 0, 0, 0).error, EROFS);
    assert_eq!(c.setattr(f, 8, 0, 0, 0, 0).error, EROFS);
    assert_eq!(c.setattr(d, 16 | 32, 0, 0, 0, 0).error, EROFS);
    assert_eq!(c.setxattr(f, "user.x", b"1").error, EROFS);
    assert_eq!(c.call(opcode::REMOVEXATTR, f, &cstr("user.x")).error, EROFS);
    // Reading still works, and a read handle cannot be used to write.
    let fh = c.open(f, 0).fh_at(0);
    assert_eq!(c.read(f, fh, 0, 100).body, b"original");
    assert_eq!(c.write(f, fh, 0, b"evil").error, EROFS);
    let mut fa = fh.to_ne_bytes().to_vec();
    fa.extend_from_slice(&[0u8; 16]);
    fa.extend_from_slice(&100u64.to_ne_bytes());
    fa.extend_from_slice(&[0u8; 8]);
    assert_eq!(c.call(opcode::FALLOCATE, f, &fa).error, EROFS);
    assert_eq!(snapshot(&share), before);
}

#[test]
fn read_only_mount_refuses_writes_through_the_kernel_too() {
    let Some(m) = mount("ro_mount", |c| c.read_only(true)) else {
        return;
    };
    fs::write(m.share.join("f"), b"original").unwrap();
    fs::create_dir(m.share.join("d")).unwrap();
    let before = snapshot(&m.share);
    let erofs =
        |r: std::io::Result<()>| assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(30));
    erofs(fs::write(m.mnt.join("f"), b"x"));
    erofs(fs::write(m.mnt.join("new"), b"x"));
    erofs(fs::create_dir(m.mnt.join("nd")));
    erofs(fs::remove_file(m.mnt.join("f")));
    erofs(fs::remove_dir(m.mnt.join("d")));
    erofs(fs::rename(m.mnt.join("f"), m.mnt.join("g")));
    erofs(fs::set_permissions(
        m.mnt.join("f"),
        fs::Permissions::from_mode(0o777),
    ));
    erofs(std::os::unix::fs::symlink("f", m.mnt.join("s")));
    erofs(fs::hard_link(m.mnt.join("f"), m.mnt.join("h")));
    erofs(
        fs::OpenOptions::new()
            .write(true)
            .open(m.mnt.join("f"))
            .map(drop),
    );
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"original");
    assert_eq!(snapshot(&m.share), before);
}

#[test]
fn hard_links_to_outside_files_are_impossible_through_the_mount() {
    let Some(m) = mount("outside_link", |c| c) else {
        return;
    };
    let r = fs::hard_link(m.outside.join("secret"), m.mnt.join("stolen"));
    assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(18), "EXDEV");
    let r = fs::rename(m.outside.join("secret"), m.mnt.join("stolen"));
    assert_eq!(r.err().and_then(|e| e.raw_os_error()), Some(18), "EXDEV");
    assert!(!m.share.join("stolen").exists());
    assert_outside_untouched(m.tmp.path());
}

/// While the guest holds a file open, metadata changes through that descriptor (`fchmod`, `futimens`, `fchown`: the
/// kernel sends them without a handle) go to the open file itself, through the handle's descriptor: a host that
/// meanwhile renames the file away and plants a symlink to an outside file under its name changes nothing outside.
#[test]
fn metadata_changes_on_an_open_file_follow_it_not_a_swapped_in_symlink() {
    let Some(m) = mount("open_file_swap", |c| c) else {
        return;
    };
    fs::write(m.share.join("f"), b"mine").unwrap();
    fs::set_permissions(m.share.join("f"), fs::Permissions::from_mode(0o640)).unwrap();
    let f = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(m.mnt.join("f"))
        .unwrap();
    // The attacker on the host side: the name now leads outside.
    fs::rename(m.share.join("f"), m.share.join("moved")).unwrap();
    std::os::unix::fs::symlink(m.outside.join("secret"), m.share.join("f")).unwrap();

    f.set_permissions(fs::Permissions::from_mode(0o604))
        .unwrap();
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    f.set_modified(when).unwrap();
    let me = rustix::process::getuid().as_raw();
    std::os::unix::fs::fchown(&f, Some(me), None).unwrap();

    let moved = fs::metadata(m.share.join("moved")).unwrap();
    assert_eq!(
        moved.permissions().mode() & 0o7777,
        0o604,
        "the open file changed"
    );
    assert_eq!(moved.modified().unwrap(), when, "its mtime too");
    assert_eq!(fs::read(m.share.join("moved")).unwrap(), b"mine");
    assert!(
        fs::symlink_metadata(m.share.join("f"))
            .unwrap()
            .is_symlink()
    );
    assert_outside_untouched(m.tmp.path());
}

/// Host-side attacker swaps a directory and a symlink to `outside` (and a file with a symlink to the secret) as fast
/// as it can, while the guest creates, writes, truncates, chmods and unlinks through the swapped names.
#[test]
fn toctou_symlink_swaps_racing_guest_operations_never_escape() {
    let Some(m) = mount("toctou", |c| c) else {
        return;
    };
    let share = m.share.clone();
    fs::create_dir(share.join("d")).unwrap();
    fs::write(share.join("d/victim"), b"inside").unwrap();
    // share/alt -> ../outside resolves to the secret directory on the host side only; through the mount the host
    // kernel would resolve mnt/alt to tmp/m/outside, which does not exist.
    std::os::unix::fs::symlink("../outside", share.join("alt")).unwrap();
    std::os::unix::fs::symlink("../../outside/secret", share.join("d/victim-link")).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let racer = {
        let (stop, share) = (Arc::clone(&stop), share.clone());
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = rustix::fs::renameat_with(
                    CWD,
                    share.join("d"),
                    CWD,
                    share.join("alt"),
                    RenameFlags::EXCHANGE,
                );
                let _ = rustix::fs::renameat_with(
                    CWD,
                    share.join("d/victim"),
                    CWD,
                    share.join("d/victim-link"),
                    RenameFlags::EXCHANGE,
                );
                let _ = rustix::fs::renameat_with(
                    CWD,
                    share.join("alt/victim"),
                    CWD,
                    share.join("alt/victim-link"),
                    RenameFlags::EXCHANGE,
                );
                swaps += 1;
            }
            swaps
        })
    };
    // Guest through the kernel mount.
    let mnt = m.mnt.clone();
    for i in 0..400 {
        let _ = fs::write(mnt.join("d/victim"), format!("guest {i}"));
        let _ = fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(mnt.join("d/victim"))
            .map(drop);
        let _ = fs::set_permissions(mnt.join("d/victim"), fs::Permissions::from_mode(0o777));
        let _ = fs::write(mnt.join(format!("d/new{i}")), b"x");
        let _ = fs::remove_file(mnt.join(format!("d/new{i}")));
        let _ = fs::create_dir(mnt.join("d/sub"));
        let _ = fs::remove_dir(mnt.join("d/sub"));
        let _ = fs::rename(mnt.join("d/victim"), mnt.join("d/victim2"));
        let _ = fs::rename(mnt.join("d/victim2"), mnt.join("d/victim"));
    }
    // Guest speaking raw FUSE to a second server on the same share.
    let mut c = Client::new(ShareConfig::new(&share));
    for i in 0..400 {
        let Ok(d) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            c.lookup(ROOT_ID, "d").nodeid()
        })) else {
            continue;
        };
        let created = c.create(d, &format!("raw{i}"), O_RDWR, 0o644);
        if created.error == 0 {
            let (node, fh) = (created.u64_at(0), created.u64_at(128));
            c.write(node, fh, 0, b"raw");
        }
        let v = c.lookup(d, "victim");
        if v.error == 0 {
            let node = v.u64_at(0);
            let o = c.open(node, O_RDWR | O_TRUNC);
            if o.error == 0 {
                c.write(node, o.u64_at(0), 0, b"pwned");
            }
            c.setattr(node, 1 | 8, 0o777, 0, 0, 0);
            c.forget(node, 1);
        }
        c.forget(d, 1);
    }
    stop.store(true, Ordering::Relaxed);
    let swaps = racer.join().unwrap();
    assert!(swaps > 100, "the racer actually raced ({swaps} swaps)");
    // Only names inside the share moved; outside still holds exactly the untouched secret.
    assert_outside_untouched(m.tmp.path());
    assert!(
        !m.tmp.path().join("m/outside").exists(),
        "nothing was created via the host kernel's view either"
    );
}
