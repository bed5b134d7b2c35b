//! `sbx run` detaching (Ctrl-]) and `sbx run -d`, then `sbx attach` taking the agent's session over again.

use std::io::Write;
use std::process::Stdio;

use crate::context::TestContext;
use crate::lifecycle::{Cleanup, context, namespaces_available, pids, wait_gone};

/// Runs `sbx ARGS` with `input` on stdin; returns (code, stdout, stderr).
fn with_stdin(ctx: &TestContext, args: &[&str], inputs: &[&[u8]]) -> (i32, String, String) {
    let mut child = ctx
        .cmd()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // Separate writes, a moment apart, as typed; stdin stays open until the end so that the detach key, not the
    // end of input, ends the session.
    for input in inputs {
        stdin.write_all(input).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(700));
    }
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn detach_with_ctrl_bracket_then_attach_resumes_the_agent() {
    if !namespaces_available("detach_with_ctrl_bracket_then_attach_resumes_the_agent") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let ws = ctx.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let script = "read a; echo \"first:$a\"; read b; echo \"second:$b\"; exit 3";
    let (code, out, err) = with_stdin(
        &ctx,
        &[
            "run",
            "--name",
            "att",
            "shell",
            ws.to_str().unwrap(),
            "--",
            "-c",
            script,
        ],
        // The line and Ctrl-] in one read, as when the sandbox starts slowly while the user types ahead: the
        // agent's answer to the line races the detach and must show up in one of the two sessions, never vanish.
        &[b"hello\n\x1d"],
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        err.contains("detached from sandbox att") && err.contains("sbx attach att"),
        "{err}"
    );

    // The agent kept running; attach takes it over (replaying what it printed meanwhile) and its exit status is
    // the agent's.
    let (code, out2, err) = with_stdin(&ctx, &["attach", "att"], &[b"world\n"]);
    let both = out + &out2;
    assert!(
        both.contains("first:hello") && both.contains("second:world"),
        "{both}{err}"
    );
    assert_eq!(code, 3, "{err}");
    let (code, _, err) = ctx.sbx(&["attach", "att"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("no agent session") && err.contains("sbx run"),
        "{err}"
    );

    // -d starts the agent in the background: what it prints at once waits for the attach (the session buffers
    // from its first byte). Like `sbx exec`, the detached agent gets the secrets' placeholders (a secret added to the
    // running sandbox included) and starts in the workspace.
    ctx.ok(&[
        "secret",
        "set-custom",
        "--host",
        "att.invalid",
        "--env",
        "ATT_TOKEN",
        "-t",
        "att-value",
    ]);
    let (code, out, err) = ctx.sbx(&[
        "run",
        "-d",
        "--name",
        "att",
        "shell",
        ws.to_str().unwrap(),
        "--",
        "-c",
        "echo early; echo \"tok:$ATT_TOKEN cwd:$(pwd)\"; read x; echo \"late:$x\"",
    ]);
    assert_eq!((code, out.trim()), (0, "att"), "{err}");
    let (code, out, err) = with_stdin(&ctx, &["attach", "att"], &[b"bye\n"]);
    assert!(
        out.contains("early") && out.contains("late:bye"),
        "{out}{err}"
    );
    assert!(
        out.contains("tok:sbx-ph-") && !out.contains("att-value"),
        "{out}"
    );
    assert!(out.contains(&format!("cwd:{}", ws.display())), "{out}");
    assert_eq!(code, 0);

    let (sup, init) = pids(&ctx, "att");
    ctx.ok(&["rm", "-f", "att"]);
    wait_gone(sup);
    wait_gone(init);
}
