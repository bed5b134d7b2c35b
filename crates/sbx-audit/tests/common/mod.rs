//! Shared helpers of the integration tests.
#![allow(dead_code, unreachable_pub)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use sbx_audit::{Action, Decision, Event, MountMode, Proxy};

/// One event of every action kind, with every optional field used somewhere.
pub fn one_of_each_kind() -> Vec<Event> {
    vec![
        Event::network(
            "web-1",
            "api.github.com",
            443,
            Proxy::Forward,
            Decision::Allow,
        )
        .explained(Some("api.github.com"), Some("team"), "matched-allow")
        .agent("claude")
        .user("alice"),
        Event::network("web-1", "10.0.0.7", 5432, Proxy::Raw, Decision::Deny).explained(
            None,
            None,
            "private-address",
        ),
        Event::network("web-1", "pypi.org", 80, Proxy::Transparent, Decision::Allow),
        Event::http(
            "web-1",
            "POST",
            "api.anthropic.com",
            443,
            "/v1/messages?beta=true",
            Decision::Allow,
        )
        .http_result(Some(200), 1234, 56789, 812),
        Event::http("web-1", "GET", "evil.example", 443, "/", Decision::Deny),
        Event::secret_injected("web-1", "anthropic", "api.anthropic.com"),
        Event::placeholder_blocked("web-1", "github", "evil.example").explained(
            Some("deny *.example"),
            Some("company"),
            "enforced-by-company",
        ),
        Event::lifecycle("web-1", Action::SandboxCreated),
        Event::lifecycle("web-1", Action::SandboxStarted),
        Event::lifecycle("web-1", Action::SandboxStopped),
        Event::lifecycle("web-1", Action::SandboxRemoved),
        Event::exec(
            "web-1",
            &["bash", "-lc", "echo \"quoted\" \u{1F600} \n tab\t"],
        ),
        Event::mount(
            "web-1",
            "/home/alice/src",
            MountMode::ReadWrite,
            Decision::Allow,
        ),
        Event::mount(
            "web-1",
            "/home/alice/.ssh",
            MountMode::ReadOnly,
            Decision::Deny,
        ),
        Event::audit_dropped(17),
    ]
}

/// All log file paths in `dir`, sorted.
pub fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    files
}

pub fn is_sealed(path: &Path) -> bool {
    fs::metadata(path).unwrap().permissions().mode() & 0o777 == 0o444
}

/// Rewrites a (sealed, read-only) log file.
pub fn rewrite(path: &Path, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let data = fs::read(path).unwrap();
    let mut lines: Vec<Vec<u8>> = data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
    if lines.last().is_some_and(Vec::is_empty) {
        lines.pop();
    }
    edit(&mut lines);
    let mut out = Vec::new();
    for l in lines {
        out.extend_from_slice(&l);
        out.push(b'\n');
    }
    fs::set_permissions(path, fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(path, out).unwrap();
    fs::set_permissions(path, fs::Permissions::from_mode(0o444)).unwrap();
}
