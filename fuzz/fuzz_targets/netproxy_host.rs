//! Host normalisation: never panics, is idempotent, and its output is lower-case with no trailing dot.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_netproxy::Host;
use sbx_netproxy::internal::{normalize_host, restricted_category};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match normalize_host(text) {
        Ok(Host::Name(n)) => {
            assert_eq!(normalize_host(&n), Ok(Host::Name(n.clone())));
            assert!(!n.ends_with('.') && n == n.to_ascii_lowercase());
        }
        Ok(Host::Ip(ip)) => {
            let _ = restricted_category(ip);
            assert_eq!(normalize_host(&ip.to_string()), Ok(Host::Ip(ip)));
        }
        Err(_) => {}
    }
});
