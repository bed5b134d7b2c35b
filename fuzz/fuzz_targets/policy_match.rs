//! Fuzzes the matcher: hostile hosts, methods and paths against a policy using every rule form.
//! Checks that nothing panics and that path normalisation is idempotent.
#![no_main]

use std::net::IpAddr;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer, Protocol, normalize_path};

const POLICY: &str = r#"
preset = "balanced"
[[network]]
action = "allow"
hosts = ["api.example.com", "*.npmjs.org", "**.github.com", "crl*.digicert.com", "bücher.de",
         "10.0.0.0/8:5432", "[fd00::]/8:5432", "localhost:11434", "192.168.1.1"]
methods = ["GET", "HEAD"]
paths = ["/repos/acme/**", "/v1/*/files", "/"]
[[network]]
action = "deny"
hosts = ["**.evil.com", "169.254.169.254"]
paths = ["/admin/**"]
[[model]]
action = "deny"
models = ["claude-*-opus-*"]
"#;

fn policy() -> &'static Policy {
    static POLICY_CELL: OnceLock<Policy> = OnceLock::new();
    POLICY_CELL.get_or_init(|| {
        let layer = PolicyLayer::parse("fuzz.toml", POLICY).expect("fixed fuzz policy parses");
        Policy::new(vec![(LayerLevel::User, layer)])
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // host \n method \n path, the first two bytes of the text choose port and protocol.
    let mut parts = text.splitn(3, '\n');
    let host = parts.next().unwrap_or("");
    let method = parts.next().unwrap_or("GET");
    let path = parts.next().unwrap_or("/");
    let selector = host.bytes().fold(0u16, |acc, b| acc.wrapping_mul(31).wrapping_add(u16::from(b)));
    let protocol = [Protocol::Http, Protocol::Https, Protocol::Tcp][usize::from(selector % 3)];
    let port = [80, 443, 5432, 11434, selector][usize::from(selector % 5)];
    let policy = policy();
    let _ = policy.check_network(&NetworkRequest { host, port, protocol, method: Some(method), path: Some(path) });
    let _ = policy.check_network(&NetworkRequest::new(host, port, protocol));
    let _ = policy.check_model(host, path);
    if let Ok(ip) = host.parse::<IpAddr>() {
        let _ = policy.allows_address(ip, port, method);
    }
    let once = normalize_path(path);
    assert_eq!(normalize_path(&once), once, "normalisation must be idempotent");
});
