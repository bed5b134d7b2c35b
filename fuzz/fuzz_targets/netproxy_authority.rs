//! CONNECT targets and Host values from a guest: the parser must never panic, and whatever it accepts must print back
//! to something it parses to the same authority.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_netproxy::internal::{parse_authority, parse_authority_with_default};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(a) = parse_authority(text) {
        let again = parse_authority(&a.to_string()).expect("a parsed authority must re-parse");
        assert_eq!(a, again);
        assert_ne!(a.port, 0);
    }
    let _ = parse_authority_with_default(text, Some(443));
});
