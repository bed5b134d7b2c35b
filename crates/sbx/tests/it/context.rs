//! `TestContext`: an isolated sbx installation for one test.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub(crate) struct TestContext {
    pub(crate) dir: tempfile::TempDir,
    env: Vec<(String, String)>,
}

impl TestContext {
    pub(crate) fn new() -> TestContext {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("system-policy")).unwrap();
        TestContext {
            dir,
            env: Vec::new(),
        }
    }

    /// Sets an environment variable for every `sbx` this context runs.
    pub(crate) fn set_env(&mut self, key: &str, value: &str) {
        self.env.push((key.to_owned(), value.to_owned()));
    }

    pub(crate) fn home(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    pub(crate) fn system_policy_dir(&self) -> PathBuf {
        self.dir.path().join("system-policy")
    }

    pub(crate) fn cmd(&self) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sbx"));
        cmd.env("SBX_HOME", self.home())
            .env("SBX_SYSTEM_POLICY_DIR", self.system_policy_dir())
            .env("NO_COLOR", "1")
            // The small host-binaries template: the Debian default takes minutes to build on first use.
            .env("SBX_TEMPLATE", "host")
            .env_remove("XDG_CONFIG_HOME")
            .env_remove("XDG_STATE_HOME")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            // No D-Bus session: the encrypted-file secret store opens, as on a headless host.
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .env_remove("XDG_RUNTIME_DIR")
            .env_remove("SBX_SECRETS_PASSPHRASE");
        cmd
    }

    /// Runs `sbx ARGS`, returning (exit code, stdout, stderr).
    pub(crate) fn sbx(&self, args: &[&str]) -> (i32, String, String) {
        let out: Output = self.cmd().args(args).output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs `sbx ARGS` and asserts success.
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.sbx(args);
        assert_eq!(code, 0, "sbx {args:?} failed: {err}{out}");
        out
    }

    /// Runs `sbx ARGS` with `stdin` piped in, returning (exit code, stdout, stderr).
    pub(crate) fn sbx_stdin(&self, args: &[&str], stdin: &str) -> (i32, String, String) {
        use std::io::Write;
        let mut child = self
            .cmd()
            .args(args)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    pub(crate) fn write(&self, path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }
}
