//! The `policy_check` example, run as a user would, and the library code path behind it.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use sbx_policy::batch;

const COMPANY: &str = r#"name = "acme"
[[network]]
action = "deny"
hosts = ["**.pastebin.com"]
"#;

const TEAM: &str = r#"name = "team-payments"
preset = "balanced"
[[network]]
action = "allow"
hosts = ["api.example.com"]
methods = ["GET"]
paths = ["/repos/acme/**"]
"#;

const REQUESTS: &str = "GET https://api.example.com/repos/acme/x\n\
POST https://api.example.com/repos/acme/x\n\
GET https://x.pastebin.com/raw\n\
\n\
# a comment\n\
GET https://registry.npmjs.org/left-pad\n\
GET https://unknown.example.org/\n\
GET not-a-url\n\
GET https://api.example.com/repos/acme/../../admin\n";

const EXPECTED: &[&str] = &[
    "allow\tmatched-allow rule=\"allow api.example.com methods=GET paths=/repos/acme/** (TEAM:5:10)\" layer=\"team-payments\"",
    "deny\tdefault-deny rule=\"preset = \\\"balanced\\\"\" layer=\"team-payments\"; no rule matched; to allow: sbx policy allow network api.example.com",
    "deny\tmatched-deny rule=\"deny **.pastebin.com (COMPANY:4:10)\" layer=\"acme\"",
    "allow\tmatched-allow rule=\"allow registry.npmjs.org:443 (preset balanced, group package-managers)\" layer=\"team-payments\"",
    "deny\tdefault-deny rule=\"preset = \\\"balanced\\\"\" layer=\"team-payments\"; no rule matched; to allow: sbx policy allow network unknown.example.org",
    "deny\tinvalid-request; `not-a-url` has no scheme (http://, https:// or tcp://)",
    "deny\tdefault-deny rule=\"preset = \\\"balanced\\\"\" layer=\"team-payments\"; no rule matched; to allow: sbx policy allow network api.example.com",
];

struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("company.toml"), COMPANY).unwrap();
        std::fs::write(dir.path().join("team.toml"), TEAM).unwrap();
        std::fs::write(
            dir.path().join("bad.toml"),
            "[[network]]\naction = \"allow\"\nhosts = [\"10.0.0.0/33\"]\n",
        )
        .unwrap();
        Files { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn expected(&self) -> Vec<String> {
        EXPECTED
            .iter()
            .map(|l| {
                l.replace("TEAM", &self.path("team.toml").display().to_string())
                    .replace("COMPANY", &self.path("company.toml").display().to_string())
            })
            .collect()
    }
}

#[test]
fn library_code_path_prints_one_line_per_request() {
    let files = Files::new();
    let policy =
        batch::load_policy(&[files.path("company.toml"), files.path("team.toml")]).unwrap();
    let mut out = Vec::new();
    batch::run(&policy, REQUESTS.as_bytes(), &mut out).unwrap();
    let out = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines, files.expected());
}

#[test]
fn bad_file_error_names_file_line_and_column() {
    let files = Files::new();
    let err =
        batch::load_policy(&[files.path("company.toml"), files.path("bad.toml")]).unwrap_err();
    let bad = files.path("bad.toml").display().to_string();
    assert_eq!(
        err.to_string(),
        format!("{bad}:3:10: prefix length `/33` must be a number from 0 to 32")
    );
}

/// The example binary next to this test binary (cargo builds examples for `cargo test`).
fn example_binary() -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    let profile_dir = exe.parent()?.parent()?;
    let candidate = profile_dir
        .join("examples")
        .join(format!("policy_check{}", std::env::consts::EXE_SUFFIX));
    candidate.is_file().then_some(candidate)
}

fn run_example(args: &[PathBuf], stdin: &str) -> Option<std::process::Output> {
    let Some(binary) = example_binary() else {
        println!(
            "SKIPPED running the policy_check binary: not built next to the test binary (library path still tested)"
        );
        return None;
    };
    let mut child = Command::new(binary)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    Some(child.wait_with_output().unwrap())
}

#[test]
fn example_binary_exits_0_even_on_deny() {
    let files = Files::new();
    let Some(out) = run_example(
        &[files.path("company.toml"), files.path("team.toml")],
        REQUESTS,
    ) else {
        return;
    };
    assert_eq!(
        out.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().collect::<Vec<_>>(), files.expected());
}

#[test]
fn example_binary_exits_2_on_a_bad_file() {
    let files = Files::new();
    let Some(out) = run_example(&[files.path("bad.toml")], "GET https://a.com/\n") else {
        return;
    };
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.starts_with(&format!("{}:3:10: ", files.path("bad.toml").display())),
        "{stderr}"
    );
    let Some(missing) = run_example(&[files.path("missing.toml")], "") else {
        return;
    };
    assert_eq!(missing.status.code(), Some(2));
}
