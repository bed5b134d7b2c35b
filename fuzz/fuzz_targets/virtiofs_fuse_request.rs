//! Fuzzes the FUSE request decoder of sbx-virtiofs: any bytes a guest puts in a virtio-fs descriptor chain.
//! The decoder must never panic, and whatever it accepts must be consistent with the bytes it was given.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_virtiofs::request::{MAX_REQUEST_LEN, Operation, Request};

fuzz_target!(|data: &[u8]| {
    let Ok(req) = Request::decode(data) else { return };
    let len = req.header.len as usize;
    assert!(len >= 40 && len <= data.len() && len <= MAX_REQUEST_LEN);
    match req.op {
        Operation::Write { arg, data: payload } => assert_eq!(arg.size as usize, payload.len()),
        Operation::BatchForget { batch } => assert!(batch.len() * 16 <= len),
        Operation::Setxattr { value, .. } => assert!(value.len() <= len),
        _ => {}
    }
});
