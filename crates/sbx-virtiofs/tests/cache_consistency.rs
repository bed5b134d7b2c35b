//! The performance settings and the consistency they must keep: the guest keeps cached pages only while the host file
//! is unchanged, reads return exactly the file's bytes, setuid bits die on unprivileged writes (the server's job under
//! `HANDLE_KILLPRIV_V2`), and host mounts get a large readahead window.

mod common;

use std::fs;
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::Client;
use sbx_virtiofs::abi::{fopen, opcode};
use sbx_virtiofs::{CachePolicy, ShareConfig};

/// `open_flags` of an OPEN reply (after `fh`).
fn open_flags(r: &common::Reply) -> u32 {
    assert_eq!(r.error, 0, "open failed: errno {}", -r.error);
    r.u32_at(8)
}

fn release(c: &mut Client, node: u64, fh: u64) {
    let mut b = fh.to_ne_bytes().to_vec();
    b.extend_from_slice(&[0u8; 16]);
    assert_eq!(c.call(opcode::RELEASE, node, &b).error, 0);
}

/// Opens `node` read-only, returns the reply's open flags and closes it again.
fn open_close(c: &mut Client, node: u64) -> u32 {
    let r = c.open(node, libc::O_RDONLY as u32);
    let flags = open_flags(&r);
    release(c, node, r.fh_at(0));
    flags
}

/// Overwrites `path` in place (same inode, same size), after a pause that puts the change in a new timestamp tick
/// even on file systems with coarse timestamps.
fn overwrite_in_place(path: &Path, data: &[u8]) {
    std::thread::sleep(Duration::from_millis(20));
    let mut f = fs::OpenOptions::new().write(true).open(path).unwrap();
    f.seek(SeekFrom::Start(0)).unwrap();
    f.write_all(data).unwrap();
}

#[test]
fn keep_cache_is_granted_only_while_the_file_version_is_unchanged() {
    let share = tempfile::tempdir().unwrap();
    let file = share.path().join("f");
    fs::write(&file, b"version one").unwrap();
    let mut c = Client::new(ShareConfig::new(share.path()));
    let node = c.lookup(1, "f").nodeid();

    assert_eq!(
        open_close(&mut c, node) & fopen::KEEP_CACHE,
        0,
        "first open: nothing cached yet"
    );
    assert_eq!(
        open_close(&mut c, node) & fopen::KEEP_CACHE,
        fopen::KEEP_CACHE,
        "unchanged file: the guest keeps its pages"
    );
    // A same-size edit in place by the host: size is equal, mtime/ctime are not.
    overwrite_in_place(&file, b"VERSION ONE");
    assert_eq!(
        open_close(&mut c, node) & fopen::KEEP_CACHE,
        0,
        "host edit: the guest must drop its pages"
    );
    assert_eq!(
        open_close(&mut c, node) & fopen::KEEP_CACHE,
        fopen::KEEP_CACHE
    );
    // A write by the guest itself also changes the version (its pages are right, but dropping them is safe).
    let r = c.open(node, libc::O_RDWR as u32);
    assert_eq!(open_flags(&r) & fopen::KEEP_CACHE, fopen::KEEP_CACHE);
    let fh = r.fh_at(0);
    std::thread::sleep(Duration::from_millis(20));
    assert_eq!(c.write(node, fh, 0, b"v").error, 0);
    release(&mut c, node, fh);
    assert_eq!(open_close(&mut c, node) & fopen::KEEP_CACHE, 0);
}

/// Write-only opens bypass the guest's page cache (`FOPEN_DIRECT_IO`) only where that is safe and useful: a guest
/// kernel that invalidates other openers' pages on such writes (protocol 7.39+), no writeback cache, write-only.
#[test]
fn direct_io_is_granted_only_to_write_only_opens_of_coherent_kernels() {
    let share = tempfile::tempdir().unwrap();
    fs::write(share.path().join("f"), b"data").unwrap();
    let direct = |c: &mut Client, node: u64, flags: i32| {
        let r = c.open(node, flags as u32);
        let got = open_flags(&r) & fopen::DIRECT_IO != 0;
        release(c, node, r.fh_at(0));
        got
    };
    let mut c = Client::with_kernel_minor(ShareConfig::new(share.path()), 39);
    let node = c.lookup(1, "f").nodeid();
    assert!(direct(&mut c, node, libc::O_WRONLY));
    assert!(direct(&mut c, node, libc::O_WRONLY | libc::O_APPEND));
    assert!(
        !direct(&mut c, node, libc::O_RDONLY),
        "readers keep the page cache"
    );
    assert!(
        !direct(&mut c, node, libc::O_RDWR),
        "read-write opens may mmap"
    );
    let r = c.create(1, "new", libc::O_WRONLY as u32, 0o644);
    assert_eq!(r.error, 0);
    assert_ne!(
        r.u32_at(128 + 8) & fopen::DIRECT_IO,
        0,
        "CREATE for writing only"
    );

    let mut old = Client::with_kernel_minor(ShareConfig::new(share.path()), 38);
    let node = old.lookup(1, "f").nodeid();
    assert!(
        !direct(&mut old, node, libc::O_WRONLY),
        "7.38 kernels keep stale pages"
    );

    let policy = CachePolicy {
        writeback_cache: true,
        ..CachePolicy::default()
    };
    let mut wb = Client::with_kernel_minor(ShareConfig::new(share.path()).cache(policy), 39);
    let node = wb.lookup(1, "f").nodeid();
    assert!(
        !direct(&mut wb, node, libc::O_WRONLY),
        "the writeback cache owns writes"
    );
}

/// What the direct-I/O writes rely on, through the real kernel: another opener's cached pages and shared mapping
/// see bytes written through a write-only descriptor at once, as on a plain directory.
#[test]
fn writes_through_a_write_only_descriptor_reach_other_openers_cached_pages_and_mappings() {
    let Some(m) = common::mount("direct_write_coherence", |c| c) else {
        return;
    };
    let path = m.mnt.join("f");
    fs::write(&path, vec![b'a'; 8192]).unwrap();
    let reader = fs::File::open(&path).unwrap();
    let mut buf = [0u8; 4];
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut buf, 4096).unwrap();
    assert_eq!(&buf, b"aaaa");
    let len = 8192;
    // SAFETY: a fresh read-only shared mapping of a file we hold open; used only in this test, unmapped below.
    let ptr = unsafe {
        rustix::mm::mmap(
            std::ptr::null_mut(),
            len,
            rustix::mm::ProtFlags::READ,
            rustix::mm::MapFlags::SHARED,
            &reader,
            0,
        )
        .unwrap()
    };
    // Volatile reads: the kernel changes the mapped bytes under us.
    let mapped = |at: usize| -> [u8; 4] {
        std::array::from_fn(|i| {
            let byte = ptr.cast::<u8>().wrapping_add(at + i);
            // SAFETY: `at + i` < `len`, so `byte` lies within the readable mapping, which lives until the munmap below.
            unsafe { byte.read_volatile() }
        })
    };
    assert_eq!(&mapped(4096), b"aaaa");

    let writer = fs::OpenOptions::new().write(true).open(&path).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&writer, b"bbbb", 4096).unwrap();
    std::os::unix::fs::FileExt::read_exact_at(&reader, &mut buf, 4096).unwrap();
    assert_eq!(&buf, b"bbbb", "the reader's cached page was refreshed");
    assert_eq!(&mapped(4096), b"bbbb", "the shared mapping too");
    // SAFETY: unmapping the mapping created above; `mapped` is not called afterwards.
    unsafe { rustix::mm::munmap(ptr, len).unwrap() };
    assert_eq!(&fs::read(m.share.join("f")).unwrap()[4096..4100], b"bbbb");
}

#[test]
fn keep_cache_can_be_turned_off() {
    let share = tempfile::tempdir().unwrap();
    fs::write(share.path().join("f"), b"data").unwrap();
    let policy = CachePolicy {
        keep_cache: false,
        ..CachePolicy::default()
    };
    let mut c = Client::new(ShareConfig::new(share.path()).cache(policy));
    let node = c.lookup(1, "f").nodeid();
    for _ in 0..3 {
        assert_eq!(open_close(&mut c, node) & fopen::KEEP_CACHE, 0);
    }
}

#[test]
fn reads_return_exactly_the_bytes_of_the_file() {
    let share = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..(3 << 20) + 17)
        .map(|i| (i * 31 + i / 7) as u8)
        .collect();
    fs::write(share.path().join("f"), &data).unwrap();
    let mut c = Client::new(ShareConfig::new(share.path()));
    let node = c.lookup(1, "f").nodeid();
    let fh = c.open(node, libc::O_RDONLY as u32).fh_at(0);
    let len = data.len() as u64;
    for (offset, size) in [
        (0u64, 1u32 << 20),
        (1 << 20, 1 << 20),
        (len - 10, 1 << 20), // short read at the end of the file
        (len, 4096),         // at end of file: empty
        (len + 1_000_000, 4096),
        (12_345, 1),
        (0, 0),
    ] {
        let r = c.read(node, fh, offset, size);
        assert_eq!(r.error, 0, "read {offset}+{size}");
        let start = (offset.min(len)) as usize;
        let end = (offset + u64::from(size)).min(len) as usize;
        assert!(
            r.body == data[start..end.max(start)],
            "read {offset}+{size}: {} bytes, expected {}",
            r.body.len(),
            end.max(start) - start
        );
    }
    // A request larger than the server accepts is answered with at most max_write bytes, never more than asked.
    let r = c.read(node, fh, 0, u32::MAX);
    assert_eq!(r.error, 0);
    assert!(r.body.len() <= c.server.max_request_len());
    assert!(r.body == data[..r.body.len()]);
}

#[test]
fn same_size_host_edits_are_seen_by_the_next_open_through_the_kernel() {
    let Some(m) = common::mount("keep_cache_host_edit", |c| c) else {
        return;
    };
    let page = |b: u8| vec![b; 64 << 10];
    fs::write(m.mnt.join("f"), page(b'a')).unwrap();
    // Two reads: the second open keeps the cache the first filled.
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), page(b'a'));
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), page(b'a'));
    // The host edits in place, same size: the guest's cached size is still right, only the version tells.
    overwrite_in_place(&m.share.join("f"), &page(b'b'));
    assert!(
        fs::read(m.mnt.join("f")).unwrap() == page(b'b'),
        "the next open must not serve the stale cached pages"
    );
    // And the other way round: the host sees the guest's write at once (no writeback cache).
    fs::OpenOptions::new()
        .write(true)
        .open(m.mnt.join("f"))
        .unwrap()
        .write_all(&page(b'c'))
        .unwrap();
    assert!(fs::read(m.share.join("f")).unwrap() == page(b'c'));
}

/// Makes the temp dir reachable for `nobody` (tempfile creates it 0700).
fn open_up(m: &common::Mounted) {
    for dir in [m.tmp.path(), &m.tmp.path().join("m"), &m.share] {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn as_nobody(script: &str, dir: &Path) -> std::process::Output {
    Command::new("sh")
        .args(["-c", script])
        .current_dir(dir)
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap()
}

#[test]
fn unprivileged_writes_and_truncations_clear_setuid_as_on_a_plain_directory() {
    let Some(m) = common::mount("killpriv", |c| c) else {
        return;
    };
    if !rustix::process::geteuid().is_root() {
        eprintln!("SKIPPED killpriv: needs root to create setuid files for another user");
        return;
    }
    open_up(&m);
    let plain = m.tmp.path().join("plain");
    fs::create_dir(&plain).unwrap();
    fs::set_permissions(&plain, fs::Permissions::from_mode(0o755)).unwrap();
    let modes = |root: &Path| -> Vec<u32> {
        ["w", "t", "o"]
            .iter()
            .map(|n| fs::metadata(root.join(n)).unwrap().mode() & 0o7777)
            .collect()
    };
    // Host side (not through the mount): root's setuid+setgid files, writable by everyone.
    for root in [&m.share, &plain] {
        for name in ["w", "t", "o"] {
            fs::write(root.join(name), b"#!/bin/sh\n").unwrap();
            fs::set_permissions(root.join(name), fs::Permissions::from_mode(0o6777)).unwrap();
        }
    }
    // nobody appends to w, truncates t with truncate(1), and opens o with O_TRUNC.
    let script = "printf x >> w && truncate -s 1 t && : > o";
    for root in [&m.mnt, &plain] {
        let out = as_nobody(script, root);
        assert!(
            out.status.success(),
            "{}: {}",
            root.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(modes(&plain), vec![0o777; 3], "the kernel's own behaviour");
    assert_eq!(
        modes(&m.share),
        modes(&plain),
        "the host files behind the mount lost setuid/setgid too"
    );
    // Root (CAP_FSETID) keeps the bits, on both.
    for root in [&m.share, &plain] {
        fs::set_permissions(root.join("w"), fs::Permissions::from_mode(0o6755)).unwrap();
    }
    for root in [&m.mnt, &plain] {
        fs::OpenOptions::new()
            .append(true)
            .open(root.join("w"))
            .unwrap()
            .write_all(b"y")
            .unwrap();
    }
    assert_eq!(
        fs::metadata(m.share.join("w")).unwrap().mode() & 0o7777,
        fs::metadata(plain.join("w")).unwrap().mode() & 0o7777
    );
}

#[test]
fn host_mounts_get_the_large_readahead_window() {
    let Some(m) = common::mount("readahead", |c| c) else {
        return;
    };
    let dev = fs::metadata(&m.mnt).unwrap().dev();
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        rustix::fs::major(dev),
        rustix::fs::minor(dev)
    );
    let kb = fs::read_to_string(&path).unwrap();
    assert_eq!(
        kb.trim(),
        sbx_virtiofs::host_fuse::DEFAULT_READ_AHEAD_KB.to_string(),
        "{path}"
    );
}

#[test]
fn flush_is_declined_so_the_kernel_stops_sending_it_on_every_close() {
    let share = tempfile::tempdir().unwrap();
    fs::write(share.path().join("f"), b"data").unwrap();
    let mut c = Client::new(ShareConfig::new(share.path()));
    let node = c.lookup(1, "f").nodeid();
    let fh = c.open(node, libc::O_RDONLY as u32).fh_at(0);
    let flush = |c: &mut Client, fh: u64| {
        let mut b = fh.to_ne_bytes().to_vec();
        b.extend_from_slice(&[0u8; 16]);
        c.call(opcode::FLUSH, node, &b).error
    };
    assert_eq!(flush(&mut c, fh), -libc::ENOSYS);
    assert_eq!(flush(&mut c, fh + 1000), -libc::EBADF, "forged handle");
}

#[test]
fn concurrent_readers_and_writers_each_get_their_own_bytes() {
    let Some(m) = common::mount("parallel_io", |c| c) else {
        return;
    };
    let contents: Vec<Vec<u8>> = (0..4)
        .map(|i: usize| {
            (0..(4 << 20) + i * 4099)
                .map(|j| (j * (i + 3) + j / 4096) as u8)
                .collect()
        })
        .collect();
    let contents = &contents;
    std::thread::scope(|s| {
        for (i, content) in contents.iter().enumerate() {
            let mnt = &m.mnt;
            s.spawn(move || fs::write(mnt.join(format!("f{i}")), content).unwrap());
        }
    });
    // Every thread reads every file (readahead requests of several readers in flight at once).
    std::thread::scope(|s| {
        for t in 0..4 {
            let mnt = &m.mnt;
            s.spawn(move || {
                for k in 0..4 {
                    let i = (t + k) % 4;
                    assert!(
                        fs::read(mnt.join(format!("f{i}"))).unwrap() == contents[i],
                        "reader {t}: f{i} differs"
                    );
                }
            });
        }
    });
    for (i, content) in contents.iter().enumerate() {
        assert!(fs::read(m.share.join(format!("f{i}"))).unwrap() == *content);
    }
}

/// Opens directory `node`, returns the reply's open flags and closes it again.
fn opendir_close(c: &mut Client, node: u64) -> u32 {
    let mut b = (libc::O_RDONLY as u32).to_ne_bytes().to_vec();
    b.extend_from_slice(&0u32.to_ne_bytes());
    let r = c.call(opcode::OPENDIR, node, &b);
    let flags = open_flags(&r);
    let mut b = r.fh_at(0).to_ne_bytes().to_vec();
    b.extend_from_slice(&[0u8; 16]);
    assert_eq!(c.call(opcode::RELEASEDIR, node, &b).error, 0);
    flags
}

#[test]
fn directory_listings_are_kept_only_while_the_directory_is_unchanged() {
    let share = tempfile::tempdir().unwrap();
    let dir = share.path().join("d");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("a"), b"a").unwrap();
    let mut c = Client::new(ShareConfig::new(share.path()));
    let node = c.lookup(1, "d").nodeid();
    let cache_dir = fopen::CACHE_DIR | fopen::KEEP_CACHE;

    assert_eq!(
        opendir_close(&mut c, node) & cache_dir,
        fopen::CACHE_DIR,
        "first open: the kernel may cache the listing, nothing to keep yet"
    );
    assert_eq!(
        opendir_close(&mut c, node) & cache_dir,
        cache_dir,
        "unchanged: the cached listing is reused"
    );
    // Every kind of host change to the entries: create, rename, remove.
    let host_changes: [&dyn Fn(); 3] = [
        &|| fs::write(dir.join("b"), b"b").unwrap(),
        &|| fs::rename(dir.join("b"), dir.join("c")).unwrap(),
        &|| fs::remove_file(dir.join("a")).unwrap(),
    ];
    for change in host_changes {
        std::thread::sleep(Duration::from_millis(20)); // a new timestamp tick, even on coarse file systems
        change();
        assert_eq!(
            opendir_close(&mut c, node) & cache_dir,
            fopen::CACHE_DIR,
            "a host change to the directory drops the cached listing"
        );
        assert_eq!(opendir_close(&mut c, node) & cache_dir, cache_dir);
    }
    // Editing a file's contents does not change its directory: the listing stays valid.
    fs::write(dir.join("c"), b"new contents").unwrap();
    assert_eq!(opendir_close(&mut c, node) & cache_dir, cache_dir);

    // The policy switch turns directory caching off with the file cache.
    let policy = CachePolicy {
        keep_cache: false,
        ..CachePolicy::default()
    };
    let mut c = Client::new(ShareConfig::new(share.path()).cache(policy));
    let node = c.lookup(1, "d").nodeid();
    for _ in 0..2 {
        assert_eq!(opendir_close(&mut c, node) & cache_dir, 0);
    }
}

fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn host_changes_to_a_listed_directory_are_seen_by_the_next_listing_through_the_kernel() {
    let Some(m) = common::mount("dir_cache_host_edit", |c| c) else {
        return;
    };
    let (host, guest) = (m.share.join("d"), m.mnt.join("d"));
    fs::create_dir(&host).unwrap();
    for name in ["a", "b", "c"] {
        fs::write(host.join(name), name).unwrap();
    }
    // Two listings: the second is served from the kernel's cached listing.
    assert_eq!(listing(&guest), ["a", "b", "c"]);
    assert_eq!(listing(&guest), ["a", "b", "c"]);
    std::thread::sleep(Duration::from_millis(20));
    fs::write(host.join("new"), b"n").unwrap();
    fs::rename(host.join("a"), host.join("z")).unwrap();
    fs::remove_file(host.join("b")).unwrap();
    assert_eq!(
        listing(&guest),
        listing(&host),
        "the next listing must show the host's changes at once"
    );
    assert_eq!(listing(&guest), ["c", "new", "z"]);
    // The guest's own changes too.
    fs::write(guest.join("g"), b"g").unwrap();
    fs::remove_file(guest.join("c")).unwrap();
    assert_eq!(listing(&guest), ["g", "new", "z"]);
    assert_eq!(listing(&host), ["g", "new", "z"]);
}

/// The entry and attribute timeouts of the default policy, plus a margin: the window the README documents.
fn documented_window() -> Duration {
    let p = CachePolicy::default();
    p.entry_timeout.max(p.attr_timeout) + Duration::from_millis(300)
}

#[test]
fn a_file_the_host_replaces_by_rename_is_seen_by_the_next_open_and_by_stat_after_the_timeout() {
    let Some(m) = common::mount("host_rename_over", |c| c) else {
        return;
    };
    let replace = |contents: &[u8]| {
        fs::write(m.share.join("f.tmp"), contents).unwrap();
        fs::rename(m.share.join("f.tmp"), m.share.join("f")).unwrap();
    };
    fs::write(m.share.join("f"), b"old contents").unwrap();
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"old contents");
    // A reader that keeps the old file open, as on a plain directory, keeps reading the old file.
    let mut held = fs::File::open(m.mnt.join("f")).unwrap();
    // Editors and git: write a new file, rename it over the old name.
    replace(b"the new, longer contents");
    // An open sees the new file at once: the server answers ESTALE for the old node and the kernel looks up again.
    assert_eq!(
        fs::read(m.mnt.join("f")).unwrap(),
        b"the new, longer contents"
    );
    // A stat of a name the guest did not reopen: within the documented window.
    replace(b"a third version");
    std::thread::sleep(documented_window());
    let meta = fs::metadata(m.mnt.join("f")).unwrap();
    assert_eq!(meta.len(), b"a third version".len() as u64);
    assert_eq!(meta.ino(), fs::metadata(m.share.join("f")).unwrap().ino());
    assert_eq!(fs::read(m.mnt.join("f")).unwrap(), b"a third version");
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut held, &mut old).unwrap();
    assert_eq!(old, b"old contents");
}

#[test]
fn a_file_held_open_sees_host_edits_after_the_attribute_timeout() {
    let Some(m) = common::mount("host_edit_while_open", |c| c) else {
        return;
    };
    let page = |b: u8| vec![b; 64 << 10];
    fs::write(m.share.join("f"), page(b'a')).unwrap();
    let mut f = fs::File::open(m.mnt.join("f")).unwrap();
    let mut buf = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut buf).unwrap();
    assert!(buf == page(b'a'));
    // In place, same size, while the guest holds the file open with its pages cached.
    overwrite_in_place(&m.share.join("f"), &page(b'b'));
    // And an append: the new size must be seen too.
    fs::OpenOptions::new()
        .append(true)
        .open(m.share.join("f"))
        .unwrap()
        .write_all(b"tail")
        .unwrap();
    std::thread::sleep(documented_window());
    f.seek(SeekFrom::Start(0)).unwrap();
    buf.clear();
    std::io::Read::read_to_end(&mut f, &mut buf).unwrap();
    let mut expected = page(b'b');
    expected.extend_from_slice(b"tail");
    assert!(
        buf == expected,
        "after the attribute timeout the open file shows the host's bytes ({} bytes read)",
        buf.len()
    );
}

#[test]
fn repeated_lookups_share_a_node_and_count_references_and_a_replaced_name_gets_a_new_node() {
    let share = tempfile::tempdir().unwrap();
    fs::create_dir(share.path().join("d")).unwrap();
    fs::write(share.path().join("f"), b"f").unwrap();
    let mut c = Client::new(ShareConfig::new(share.path()));
    // Known files and directories are found again (the cheap path): same node, one reference per lookup.
    let (d, f) = (c.lookup(1, "d").nodeid(), c.lookup(1, "f").nodeid());
    for _ in 0..3 {
        assert_eq!(c.lookup(1, "d").nodeid(), d);
        assert_eq!(c.lookup(1, "f").nodeid(), f);
    }
    assert_eq!(c.server.stats().inodes, 3);
    c.forget(d, 3);
    c.forget(f, 3);
    assert_eq!(c.server.stats().inodes, 3, "one reference each is left");
    assert_eq!(c.call(opcode::GETATTR, d, &[0u8; 16]).error, 0);
    c.forget(d, 1);
    c.forget(f, 1);
    assert_eq!(c.server.stats().inodes, 1, "only the root is left");

    // The host replaces the directory with another one, and the file with a symlink: new nodes, never the old ones.
    let d = c.lookup(1, "d").nodeid();
    let f = c.lookup(1, "f").nodeid();
    fs::rename(share.path().join("d"), share.path().join("d.old")).unwrap();
    fs::create_dir(share.path().join("d")).unwrap();
    fs::remove_file(share.path().join("f")).unwrap();
    std::os::unix::fs::symlink("/etc/passwd", share.path().join("f")).unwrap();
    let d2 = c.lookup(1, "d");
    assert_eq!(d2.error, 0);
    assert_ne!(
        d2.nodeid(),
        d,
        "a new directory under the old name is a new node"
    );
    let f2 = c.lookup(1, "f");
    assert_eq!(f2.error, 0);
    assert_ne!(f2.nodeid(), f);
    // The old file node is stale now: its name belongs to the symlink.
    assert_eq!(c.call(opcode::GETATTR, f, &[0u8; 16]).error, common::ESTALE);
}
