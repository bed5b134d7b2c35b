//! Fuzzes the policy file parser: any text must parse or fail with a positioned error, and any
//! layer that parses must compile and answer checks without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match PolicyLayer::parse("fuzz.toml", text) {
        Ok(layer) => {
            let policy = Policy::new(vec![(LayerLevel::User, layer)]);
            let _ = policy.check_network(&NetworkRequest::https("api.example.com", "GET", "/a/b"));
            let _ = policy.check_setting("docker");
            let _ = policy.check_model("api.anthropic.com", "claude-3-opus");
        }
        Err(error) => {
            assert!(error.line >= 1 && error.column >= 1);
        }
    }
});
