//! The sandbox lifecycle on the namespace backend: create → exec → ls → stop → start → rm, with real jails,
//! real supervisors and nothing left behind.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::context::TestContext;

/// Whether this host can create the namespaces the jail needs; prints the skip reason when not.
pub(crate) fn namespaces_available(test: &str) -> bool {
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

/// The statically linked agent, built once per test process (or `SBX_GUEST_BIN`).
fn guest_binary() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Ok(p) = std::env::var("SBX_GUEST_BIN") {
            return PathBuf::from(p);
        }
        // <target>/debug/deps/<test binary>
        let exe = std::env::current_exe().unwrap();
        let target = std::env::var("CARGO_TARGET_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|_| exe.ancestors().nth(3).unwrap().to_path_buf());
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
            .unwrap();
        assert!(status.success(), "building the static sbx-guest failed");
        target.join("x86_64-unknown-linux-gnu/debug/sbx-guest")
    })
    .clone()
}

/// A test context whose sbx finds the agent.
pub(crate) fn context() -> TestContext {
    let mut ctx = TestContext::new();
    ctx.set_env("SBX_GUEST_BIN", guest_binary().to_str().unwrap());
    ctx
}

pub(crate) fn sandbox_dir(ctx: &TestContext, name: &str) -> PathBuf {
    ctx.home().join("state/sandboxes").join(name)
}

pub(crate) fn ls_json(ctx: &TestContext) -> Vec<serde_json::Value> {
    let out = ctx.ok(&["ls", "--json"]);
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("ls --json is not JSON ({e}): {out}"))
}

pub(crate) fn row<'a>(rows: &'a [serde_json::Value], name: &str) -> &'a serde_json::Value {
    rows.iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {rows:?}"))
}

pub(crate) fn pid_alive(pid: i64) -> bool {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return false;
    };
    let state = stat
        .rsplit_once(')')
        .and_then(|(_, r)| r.split_whitespace().next());
    !matches!(state, Some("Z" | "X") | None)
}

pub(crate) fn wait_gone(pid: i64) {
    let start = Instant::now();
    while pid_alive(pid) && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pid_alive(pid), "process {pid} is still running");
}

/// The pids of the supervisor and the jail init of a running sandbox.
pub(crate) fn pids(ctx: &TestContext, name: &str) -> (i64, i64) {
    let rows = ls_json(ctx);
    let sup = row(&rows, name)["supervisor_pid"]
        .as_i64()
        .expect("supervisor pid");
    let init: i64 = std::fs::read_to_string(sandbox_dir(ctx, name).join("jail/init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    (sup, init)
}

/// Removes the sandbox even when an assertion failed, so no process outlives the test.
pub(crate) struct Cleanup<'a>(pub(crate) &'a TestContext);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.sbx(&["rm", "-f", "--all"]);
    }
}

#[test]
fn create_exec_stop_start_rm_keeps_state_and_leaves_nothing_behind() {
    if !namespaces_available("create_exec_stop_start_rm_keeps_state_and_leaves_nothing_behind") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let ws = ctx.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    std::fs::write(ws.join("hello.txt"), "from the host\n").unwrap();
    let ws_arg = ws.to_str().unwrap();

    let (code, out, err) = ctx.sbx(&[
        "create",
        "--name",
        "box",
        "-e",
        "GREETING=hi there",
        "shell",
        ws_arg,
    ]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "box");
    assert!(
        err.contains("shares the host kernel"),
        "namespace warning missing: {err}"
    );
    assert!(
        err.contains("template"),
        "host template use not mentioned: {err}"
    );

    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(sandbox_dir(&ctx, "box"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(
        mode & 0o777,
        0o700,
        "the sandbox dir holds its sockets and must be private"
    );

    // exec: output, exit codes, env from create and from exec, workspace at the same path, workdir.
    assert_eq!(ctx.ok(&["exec", "box", "echo", "hello"]), "hello\n");
    let (code, _, _) = ctx.sbx(&["exec", "box", "sh", "-c", "exit 7"]);
    assert_eq!(code, 7);
    let (code, out, err) = ctx.sbx(&[
        "exec",
        "box",
        "sh",
        "-c",
        "echo out; echo err >&2; kill -TERM $$",
    ]);
    assert_eq!(
        (code, out.as_str(), err.as_str()),
        (128 + 15, "out\n", "err\n")
    );
    assert_eq!(
        ctx.ok(&["exec", "box", "sh", "-c", "echo \"$GREETING\""]),
        "hi there\n"
    );
    assert_eq!(
        ctx.ok(&[
            "exec",
            "-e",
            "GREETING=override",
            "box",
            "sh",
            "-c",
            "echo $GREETING"
        ]),
        "override\n"
    );
    assert_eq!(
        ctx.ok(&["exec", "-w", ws_arg, "box", "cat", "hello.txt"]),
        "from the host\n"
    );
    // Without -w a command starts in the workspace.
    assert_eq!(
        ctx.ok(&["exec", "box", "cat", "hello.txt"]),
        "from the host\n"
    );
    assert_eq!(ctx.ok(&["exec", "-w", "/tmp", "box", "pwd"]), "/tmp\n");
    let mut child = ctx.cmd();
    let out = child
        .args(["exec", "-i", "box", "sh", "-c", "tr a-z A-Z"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    out.stdin
        .as_ref()
        .unwrap()
        .write_all(b"piped in\n")
        .unwrap();
    let out = out.wait_with_output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "PIPED IN\n");

    // A signal to `sbx exec` reaches the command inside; its exit status comes back.
    let mut child = ctx
        .cmd()
        .args([
            "exec",
            "box",
            "sh",
            "-c",
            "trap 'echo got-int; exit 5' INT; echo ready; while :; do sleep 0.05; done",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "ready\n");
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert_eq!(child.wait().unwrap().code(), Some(5));
    assert_eq!(rest, "got-int\n");

    // ls shows it running, with its pids alive.
    let rows = ls_json(&ctx);
    let r = row(&rows, "box");
    assert_eq!(r["status"], "running");
    assert_eq!(r["agent"], "shell");
    assert_eq!(r["isolation"], "namespaces");
    assert_eq!(r["workspace"][0], ws_arg);
    // The id mapping is shown: keep-id where subordinate ids exist (always as root, as in CI), else the fallback
    // where the agent is root inside, flagged.
    let users = r["users"].as_str().unwrap_or_default();
    // The test's temp dir belongs to whoever runs the tests.
    let uid = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(ctx.dir.path()).unwrap());
    let keep_id = ctx.ok(&["exec", "box", "id", "-u"]).trim() != "0";
    assert_eq!(r["agent_is_root"], !keep_id, "{r}");
    if keep_id {
        assert!(
            users.starts_with("agent (uid ") && users.contains(&format!("= host uid {uid} ")),
            "{users}"
        );
    } else {
        assert!(users.starts_with("single mapping"), "{users}");
    }
    if uid == 0 {
        assert!(
            keep_id,
            "as root the agent must run as a non-root user inside: {users}"
        );
    }
    let (sup, init) = pids(&ctx, "box");
    assert!(pid_alive(sup) && pid_alive(init));
    let table = ctx.ok(&["ls"]);
    assert!(
        table.starts_with("NAME") && table.contains("box") && table.contains("running"),
        "{table}"
    );

    // State written inside survives stop/start (the root overlay lives in the state dir).
    ctx.ok(&[
        "exec",
        "-u",
        "root",
        "box",
        "sh",
        "-c",
        "echo kept > /root/state.txt",
    ]);
    ctx.ok(&["stop", "box"]);
    wait_gone(sup);
    wait_gone(init);
    assert!(!sandbox_dir(&ctx, "box").join("control.sock").exists());
    assert_eq!(row(&ls_json(&ctx), "box")["status"], "stopped");

    ctx.ok(&["start", "box"]);
    assert_eq!(row(&ls_json(&ctx), "box")["status"], "running");
    assert_eq!(
        ctx.ok(&["exec", "-u", "root", "box", "cat", "/root/state.txt"]),
        "kept\n"
    );

    // exec starts a stopped sandbox.
    ctx.ok(&["stop", "box"]);
    assert_eq!(
        ctx.ok(&["exec", "-u", "root", "box", "cat", "/root/state.txt"]),
        "kept\n"
    );

    // rm refuses a running sandbox without -f, then removes everything.
    let (code, _, err) = ctx.sbx(&["rm", "box"]);
    assert_eq!(code, 1);
    assert!(err.contains("sbx rm -f box"), "{err}");
    let (sup, init) = pids(&ctx, "box");
    ctx.ok(&["rm", "-f", "box"]);
    wait_gone(sup);
    wait_gone(init);
    assert!(!sandbox_dir(&ctx, "box").exists(), "state dir left behind");
    assert!(ls_json(&ctx).is_empty());
    assert_eq!(
        std::fs::read_to_string(ws.join("hello.txt")).unwrap(),
        "from the host\n"
    );
}

#[test]
fn crashed_supervisor_is_reported_and_start_recovers_state() {
    if !namespaces_available("crashed_supervisor_is_reported_and_start_recovers_state") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    assert_eq!(
        ctx.ok(&[
            "create",
            "-q",
            "--isolation",
            "namespaces",
            "--name",
            "crashy",
            "shell"
        ])
        .trim(),
        "crashy"
    );
    ctx.ok(&[
        "exec",
        "-u",
        "root",
        "crashy",
        "sh",
        "-c",
        "echo survived > /var/note",
    ]);
    let (sup, init) = pids(&ctx, "crashy");
    Command::new("kill")
        .args(["-KILL", &sup.to_string()])
        .status()
        .unwrap();
    wait_gone(sup);
    let rows = ls_json(&ctx);
    assert_eq!(row(&rows, "crashy")["status"], "crashed");
    assert!(ctx.ok(&["ls"]).contains("crashed"));

    let (code, _, err) = ctx.sbx(&["start", "crashy"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("crashed"), "{err}");
    wait_gone(init);
    assert_eq!(
        ctx.ok(&["exec", "crashy", "cat", "/var/note"]),
        "survived\n"
    );
    let (sup, init) = pids(&ctx, "crashy");
    ctx.ok(&["rm", "-f", "--all"]);
    wait_gone(sup);
    wait_gone(init);
    assert!(!sandbox_dir(&ctx, "crashy").exists());
}

#[test]
fn bad_requests_are_refused_with_what_to_do() {
    let ctx = TestContext::new();
    let (code, _, err) = ctx.sbx(&["exec", "nope", "true"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no sandbox named `nope`") && err.contains("sbx ls"),
        "{err}"
    );
    let (code, _, err) = ctx.sbx(&["stop", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no sandbox named `nope`"), "{err}");
    let (code, _, err) = ctx.sbx(&["rm"]);
    assert_eq!(code, 1);
    assert!(err.contains("--all"), "{err}");
    let (code, _, err) = ctx.sbx(&["create", "no-such-agent"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("claude"),
        "unknown agent error should list agents: {err}"
    );
    let (code, _, err) = ctx.sbx(&["create", "--name", "Bad/Name", "shell"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid sandbox name"), "{err}");
    let (code, _, err) = ctx.sbx(&["create", "shell", "/no/such/dir"]);
    assert_eq!(code, 1);
    assert!(err.contains("/no/such/dir"), "{err}");
    let (code, _, err) = ctx.sbx(&["create", "-e", "NOEQUALS", "shell"]);
    assert_eq!(code, 2);
    assert!(err.contains("KEY=VALUE"), "{err}");
    let hardware_kvm =
        Path::new("/sys/module/kvm_intel").exists() || Path::new("/sys/module/kvm_amd").exists();
    if !hardware_kvm {
        let (code, _, err) = ctx.sbx(&["create", "--isolation", "microvm", "shell"]);
        assert_eq!(code, 1);
        assert!(err.contains("hardware virtualization"), "{err}");
    }
    assert!(!ctx.home().join("state/sandboxes").exists() || ls_json(&ctx).is_empty());
}

#[test]
fn run_creates_attaches_the_agent_on_a_pty_and_reuses_the_sandbox() {
    if !namespaces_available("run_creates_attaches_the_agent_on_a_pty_and_reuses_the_sandbox") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let ws = ctx.dir.path().join("proj");
    std::fs::create_dir_all(&ws).unwrap();
    let ws_arg = ws.to_str().unwrap();
    let run = |script: &str| {
        use std::io::Write;
        let mut child = ctx
            .cmd()
            .args(["run", "shell", ws_arg])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .as_mut()
            .unwrap()
            .write_all(script.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    // The agent (bash -l from the agent table) runs on a pty, in the workspace; its status is ours.
    let (code, out, err) = run("[ -t 0 ] && echo on-a-tty; echo \"cwd=$(pwd)\"; exit 3\n");
    assert_eq!(code, 3, "{out}{err}");
    assert!(out.contains("on-a-tty"), "{out}");
    assert!(out.contains(&format!("cwd={ws_arg}")), "{out}");
    assert!(err.contains("created sandbox shell-proj"), "{err}");
    // Running again returns to the same sandbox.
    let (code, out, err) = run("exit 0\n");
    assert_eq!(code, 0, "{out}{err}");
    assert!(!err.contains("created sandbox"), "{err}");
    let rows = ls_json(&ctx);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(row(&rows, "shell-proj")["status"], "running");
    let (sup, init) = pids(&ctx, "shell-proj");
    ctx.ok(&["rm", "-f", "shell-proj"]);
    wait_gone(sup);
    wait_gone(init);
}

#[test]
fn concurrent_commands_on_a_stopped_sandbox_start_it_once() {
    if !namespaces_available("concurrent_commands_on_a_stopped_sandbox_start_it_once") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    ctx.ok(&["create", "-q", "--name", "race", "shell"]);
    ctx.ok(&["stop", "race"]);
    let handles: Vec<_> = (0..4)
        .map(|i| {
            ctx.cmd()
                .args(["exec", "race", "sh", "-c", &format!("echo {i}")])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let out = h.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{i}\n"));
    }
    let supervisors = std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| std::fs::read(e.ok()?.path().join("cmdline")).ok())
        .filter(|cmd| {
            let args: Vec<&[u8]> = cmd.split(|b| *b == 0).collect();
            args.contains(&b"__supervise".as_slice())
                && args.contains(&b"race".as_slice())
                && args.iter().any(|a| a.ends_with(b"/sbx"))
        })
        .count();
    let rows = ls_json(&ctx);
    assert_eq!(row(&rows, "race")["status"], "running");
    let (sup, init) = pids(&ctx, "race");
    assert_eq!(
        supervisors, 1,
        "concurrent execs started more than one supervisor"
    );
    ctx.ok(&["rm", "-f", "race"]);
    wait_gone(sup);
    wait_gone(init);
    assert!(!sandbox_dir(&ctx, "race").exists());
}

#[test]
fn two_creates_of_one_name_one_wins() {
    if !namespaces_available("two_creates_of_one_name_one_wins") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let handles: Vec<_> = (0..2)
        .map(|_| {
            ctx.cmd()
                .args(["create", "-q", "--name", "dup", "shell"])
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<_> = handles
        .into_iter()
        .map(|h| h.wait_with_output().unwrap())
        .collect();
    let ok = outs.iter().filter(|o| o.status.success()).count();
    assert_eq!(ok, 1, "exactly one create must win");
    let loser = outs.iter().find(|o| !o.status.success()).unwrap();
    assert!(String::from_utf8_lossy(&loser.stderr).contains("already exists"));
    assert_eq!(row(&ls_json(&ctx), "dup")["status"], "running");
    assert_eq!(ctx.ok(&["exec", "dup", "echo", "ok"]), "ok\n");
}

#[test]
fn sigterm_to_the_supervisor_stops_the_jail_and_start_recovers() {
    if !namespaces_available("sigterm_to_the_supervisor_stops_the_jail_and_start_recovers") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    ctx.ok(&["create", "-q", "--name", "termed", "shell"]);
    ctx.ok(&[
        "exec",
        "-u",
        "root",
        "termed",
        "sh",
        "-c",
        "echo still-here > /etc/marker",
    ]);
    let (sup, init) = pids(&ctx, "termed");
    Command::new("kill")
        .args(["-TERM", &sup.to_string()])
        .status()
        .unwrap();
    // Both the supervisor and the jail go away: nothing is orphaned.
    wait_gone(sup);
    wait_gone(init);
    assert_eq!(row(&ls_json(&ctx), "termed")["status"], "crashed");
    assert_eq!(
        ctx.ok(&["exec", "termed", "cat", "/etc/marker"]),
        "still-here\n"
    );
    let (sup, init) = pids(&ctx, "termed");
    ctx.ok(&["rm", "-f", "termed"]);
    wait_gone(sup);
    wait_gone(init);
}

#[test]
fn a_sandbox_that_cannot_start_is_reported_and_leaves_nothing() {
    if !namespaces_available("a_sandbox_that_cannot_start_is_reported_and_leaves_nothing") {
        return;
    }
    let mut ctx = TestContext::new();
    // Not an agent: it exits at once, so the jail never reports ready.
    ctx.set_env("SBX_GUEST_BIN", "/bin/true");
    let _cleanup = Cleanup(&ctx);
    let (code, _, err) = ctx.sbx(&["create", "--name", "broken", "shell"]);
    assert_eq!(code, 1);
    assert!(err.contains("did not start"), "{err}");
    assert!(
        !sandbox_dir(&ctx, "broken").exists(),
        "a failed create must not leave a sandbox"
    );
    assert!(ls_json(&ctx).is_empty());
    let (code, _, err) = ctx.sbx(&["create", "--name", "broken", "shell"]);
    assert_eq!(code, 1, "the name must be free again: {err}");
    assert!(!err.contains("already exists"), "{err}");

    let mut other = TestContext::new();
    other.set_env("SBX_GUEST_BIN", "/no/such/agent");
    let (code, _, err) = other.sbx(&["create", "shell"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("SBX_GUEST_BIN") && err.contains("/no/such/agent"),
        "{err}"
    );
}
