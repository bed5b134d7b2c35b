//! Arbitrary bytes as an audit log file: the line splitter, the event parser, the chain verifier and the
//! aggregate view must never panic, and a torn or corrupt line must never count as a valid event.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let valid = sbx_audit::check_bytes(data);
    // An event needs at least a complete line: without any newline nothing may be accepted.
    if !data.contains(&b'\n') {
        assert_eq!(valid, 0);
    }
});
