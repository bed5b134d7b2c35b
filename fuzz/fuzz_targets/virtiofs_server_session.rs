//! Fuzzes the sbx-virtiofs file server behind the decoder: a fresh share per input, a FUSE_INIT, then a sequence of
//! well-framed requests whose opcodes, node ids and bodies come from the input. The server must never panic, every
//! reply must be well-formed (length field = length, `unique` echoed, errno in range), and nothing outside the share
//! may change.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_virtiofs::abi::{InHeader, opcode};
use sbx_virtiofs::{FileServer, Outcome, ShareConfig};

/// Opcodes worth reaching (the decoder's own fuzz target covers the rest).
const OPCODES: &[u32] = &[
    opcode::LOOKUP,
    opcode::FORGET,
    opcode::GETATTR,
    opcode::SETATTR,
    opcode::READLINK,
    opcode::SYMLINK,
    opcode::MKNOD,
    opcode::MKDIR,
    opcode::UNLINK,
    opcode::RMDIR,
    opcode::RENAME,
    opcode::LINK,
    opcode::OPEN,
    opcode::READ,
    opcode::WRITE,
    opcode::STATFS,
    opcode::RELEASE,
    opcode::FSYNC,
    opcode::SETXATTR,
    opcode::GETXATTR,
    opcode::LISTXATTR,
    opcode::REMOVEXATTR,
    opcode::FLUSH,
    opcode::OPENDIR,
    opcode::READDIR,
    opcode::RELEASEDIR,
    opcode::CREATE,
    opcode::BATCH_FORGET,
    opcode::FALLOCATE,
    opcode::READDIRPLUS,
    opcode::RENAME2,
    opcode::LSEEK,
    opcode::COPY_FILE_RANGE,
    opcode::DESTROY,
];

fn message(op: u32, nodeid: u64, unique: u64, body: &[u8]) -> Vec<u8> {
    let mut msg = Vec::with_capacity(40 + body.len());
    InHeader {
        len: (40 + body.len()) as u32,
        opcode: op,
        unique,
        nodeid,
        uid: 0,
        gid: 0,
        pid: 1,
        total_extlen: 0,
    }
    .encode(&mut msg);
    msg.extend_from_slice(body);
    msg
}

fn check_reply(reply: &[u8], unique: u64) {
    assert!(reply.len() >= 16, "reply shorter than its header");
    let len = u32::from_ne_bytes(reply[0..4].try_into().unwrap()) as usize;
    let error = i32::from_ne_bytes(reply[4..8].try_into().unwrap());
    let echoed = u64::from_ne_bytes(reply[8..16].try_into().unwrap());
    assert_eq!(len, reply.len(), "length field");
    assert_eq!(echoed, unique, "unique echoed");
    assert!((-4095..=0).contains(&error), "errno {error}");
    assert!(error == 0 || reply.len() == 16, "an error reply carries no body");
}

fn snapshot(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let data = std::fs::read(&p).unwrap_or_default();
            (p, data)
        })
        .collect();
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let tmp = tempfile::tempdir().unwrap();
    let (share, outside) = (tmp.path().join("share"), tmp.path().join("outside"));
    std::fs::create_dir_all(share.join("dir")).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(share.join("file"), b"inside").unwrap();
    std::fs::write(outside.join("secret"), b"outside").unwrap();
    std::os::unix::fs::symlink(&outside, share.join("escape")).unwrap();
    let before = snapshot(&outside);

    let server = FileServer::new(ShareConfig::new(&share)).unwrap();
    let mut reply = Vec::new();
    let mut init = Vec::new();
    for v in [7u32, 38, 1 << 20, u32::MAX] {
        init.extend_from_slice(&v.to_ne_bytes());
    }
    init.extend_from_slice(&[0; 48]);
    assert_eq!(server.handle(&message(opcode::INIT, 0, 1, &init), &mut reply), Outcome::Reply);

    // Each request: opcode index, node id (small: the ids the server hands out), body length, body.
    let mut rest = data;
    let mut unique = 1;
    while let [op, node, len, tail @ ..] = rest {
        let body_len = usize::from(*len).min(tail.len());
        let (body, next) = tail.split_at(body_len);
        rest = next;
        unique += 1;
        let op = OPCODES[usize::from(*op) % OPCODES.len()];
        let msg = message(op, u64::from(*node % 16), unique, body);
        match server.handle(&msg, &mut reply) {
            Outcome::Reply => check_reply(&reply, unique),
            Outcome::Destroyed => {
                check_reply(&reply, unique);
                break;
            }
            _ => {}
        }
    }
    assert_eq!(snapshot(&outside), before, "the server changed something outside the share");
});
