//! The transparent-mode classifier reads the first bytes a guest sends: it must never panic, and a verdict must not
//! change when more bytes arrive (what was TLS stays TLS with the same SNI; HTTP stays HTTP).
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_netproxy::internal::{Classified, classify, quick_kind};

fuzz_target!(|data: &[u8]| {
    let full = classify(data);
    let _ = quick_kind(data);
    if let Some(prefix_len) = data.len().checked_sub(1) {
        let prefix = classify(&data[..prefix_len]);
        if prefix != Classified::NeedMore && matches!(prefix, Classified::Tls { .. }) {
            assert_eq!(prefix, full, "a decided TLS verdict changed with more bytes");
        }
    }
});
