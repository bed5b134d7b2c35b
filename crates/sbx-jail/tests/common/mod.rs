//! Shared helpers for the namespace end-to-end tests: the static agent binary, a host template, sandboxes that are
//! killed when a test fails.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use sbx_jail::{Jail, JailConfig, Sandbox};

/// Whether this host can create the namespaces; prints the skip reason when not.
pub fn namespaces_available(test: &str) -> bool {
    let ok = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "--pid",
            "--fork",
            "--net",
            "true",
        ])
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "skipped {test}: this host cannot create user/mount/pid/net namespaces (unshare failed)"
        );
    }
    ok
}

/// The target directory the tests were built into.
fn target_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("CARGO_TARGET_DIR") {
        return PathBuf::from(dir);
    }
    // <target>/debug/deps/<test binary>
    let exe = std::env::current_exe().expect("test binary path");
    exe.ancestors().nth(3).expect("target dir").to_path_buf()
}

/// The statically linked agent, built on first use (or `SBX_GUEST_BIN`).
pub fn guest_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SBX_GUEST_BIN") {
            return PathBuf::from(p);
        }
        let target = target_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args([
                "build",
                "-q",
                "-p",
                "sbx-guest",
                "--target",
                "x86_64-unknown-linux-gnu",
            ])
            .env("CARGO_TARGET_DIR", &target)
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .status()
            .expect("run cargo to build the static agent");
        assert!(status.success(), "building the static sbx-guest failed");
        target.join("x86_64-unknown-linux-gnu/debug/sbx-guest")
    })
    .clone()
}

/// A host template shared by the tests of one process (in a directory of its own, like a template store's
/// `<name>/rootfs`, so its id-map stamp goes away with it).
pub fn template() -> &'static Path {
    static DIR: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &DIR.get_or_init(new_template).1
}

/// A fresh host template (for tests that must not share one, e.g. with another id mapping).
pub fn new_template() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("sbx-tpl")
        .tempdir()
        .expect("temp dir");
    let root = dir.path().join("rootfs");
    sbx_template::host_template(&root).expect("host template");
    (dir, root)
}

/// A config with a fresh state dir (kept alive by the returned guard).
pub fn config(name: &str) -> (JailConfig, tempfile::TempDir) {
    let state = tempfile::Builder::new()
        .prefix("sbx-st")
        .tempdir()
        .expect("temp dir");
    let config = JailConfig::new(name, template(), state.path().join("state"), guest_binary());
    (config, state)
}

/// Spawns and marks the sandbox to be killed if the test panics.
pub fn spawn(config: &JailConfig) -> Sandbox {
    let mut sb = Jail::spawn(config).unwrap_or_else(|e| panic!("spawn failed: {e}"));
    sb.set_kill_on_drop(true);
    sb
}

/// Runs `sh -c script` as `user` (`None`: the sandbox's default user). Returns (exit code, stdout, stderr).
pub fn sh_as(sb: &Sandbox, user: Option<&str>, script: &str) -> (i32, String, String) {
    let req = sbx_proto::ExecRequest {
        argv: vec!["sh".into(), "-c".into(), script.into()],
        user: user.map(str::to_owned),
        ..Default::default()
    };
    let client = sb.connect().expect("connect");
    let session = client.exec(req).expect("exec");
    session.close_stdin().expect("close stdin");
    let out = session.wait_output().expect("output");
    (
        out.status.shell_code(),
        out.stdout_text(),
        out.stderr_text(),
    )
}

/// Runs `sh -c script` in the sandbox and returns (exit code, stdout, stderr).
pub fn sh(sb: &Sandbox, script: &str) -> (i32, String, String) {
    let out = sb
        .connect()
        .expect("connect")
        .run(&["sh", "-c", script])
        .expect("run");
    (
        out.status.shell_code(),
        out.stdout_text(),
        out.stderr_text(),
    )
}
