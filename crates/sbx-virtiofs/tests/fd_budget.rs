//! The server keeps descriptors only for directories: a guest holding many files must not exhaust the host's limit.

mod common;

use sbx_virtiofs::ShareConfig;
use sbx_virtiofs::abi::ROOT_ID;

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .unwrap_or(0)
}

#[test]
fn holding_thousands_of_file_inodes_costs_no_descriptors() {
    let tmp = tempfile::tempdir().unwrap();
    for d in 0..10 {
        std::fs::create_dir(tmp.path().join(format!("d{d}"))).unwrap();
        for f in 0..300 {
            std::fs::write(tmp.path().join(format!("d{d}/f{f}")), b"x").unwrap();
        }
    }
    let mut c = common::Client::new(ShareConfig::new(tmp.path()));
    let before = open_fds();
    let mut nodes = Vec::new();
    for d in 0..10 {
        let dir = c.lookup(ROOT_ID, &format!("d{d}")).nodeid();
        for f in 0..300 {
            nodes.push(c.lookup(dir, &format!("f{f}")).nodeid());
        }
    }
    assert_eq!(c.server.stats().inodes, 1 + 10 + 3000);
    let held = open_fds() - before;
    assert!(
        held <= 10,
        "{held} descriptors held for 3,000 files in 10 directories"
    );
    // Every file is still reachable for I/O through its name.
    let r = c.open(nodes[1234], 0);
    let fh = r.fh_at(0);
    assert_eq!(c.read(nodes[1234], fh, 0, 10).body, b"x");
    // Forgetting everything releases the directories too.
    for n in nodes {
        c.forget(n, 1);
    }
    assert_eq!(c.server.stats().inodes, 11);
}
