//! `sbx` without arguments: the dashboard needs a terminal, so without one it prints help. The dashboard's state
//! and drawing are unit-tested with ratatui's TestBackend (src/commands/dashboard/).

use crate::context::TestContext;

#[test]
fn sbx_alone_without_a_terminal_prints_help() {
    let ctx = TestContext::new();
    let (code, out, err) = ctx.sbx(&[]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("Usage: sbx") && out.contains("Commands:"),
        "{out}"
    );
    assert!(
        out.contains("Exit codes") && out.contains("4  sbx merge"),
        "{out}"
    );
    assert!(
        !out.contains('\x1b'),
        "no colours without a terminal: {out:?}"
    );
}

#[test]
fn every_command_help_has_examples() {
    let ctx = TestContext::new();
    let top = ctx.ok(&["--help"]);
    let commands: Vec<String> = top
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .filter(|c| c != "help")
        .collect();
    assert!(commands.len() > 10, "{top}");
    for command in commands {
        let help = ctx.ok(&[&command, "--help"]);
        let has_sub = help.contains("Commands:");
        assert!(
            help.contains("Examples:") || has_sub,
            "sbx {command} --help has no examples:\n{help}"
        );
        if has_sub {
            for sub in help
                .lines()
                .skip_while(|l| !l.starts_with("Commands:"))
                .skip(1)
                .take_while(|l| l.starts_with("  "))
                .filter_map(|l| l.split_whitespace().next())
                .filter(|c| *c != "help")
            {
                let help = ctx.ok(&[&command, sub, "--help"]);
                assert!(
                    help.contains("Examples:"),
                    "sbx {command} {sub} --help has no examples:\n{help}"
                );
            }
        }
    }
}

#[test]
fn namespace_isolation_denied_by_policy_is_refused_naming_the_layer() {
    let ctx = TestContext::new();
    ctx.write(
        &ctx.system_policy_dir().join("company.toml"),
        "name = \"acme-security\"\n[settings]\n\"isolation.namespaces\" = \"deny\"\n",
    );
    let ws = ctx.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let (code, _, err) = ctx.sbx(&[
        "create",
        "--isolation",
        "namespaces",
        "shell",
        ws.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("namespace isolation is forbidden by the acme-security policy layer"),
        "{err}"
    );
    assert!(
        !ctx.home().join("state/sandboxes").exists()
            || std::fs::read_dir(ctx.home().join("state/sandboxes"))
                .unwrap()
                .next()
                .is_none()
    );
}
