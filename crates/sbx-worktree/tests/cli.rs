//! The `worktree` example as a user runs it.

mod common;

use std::process::Command;

use common::{Fixture, example_binary, write};

fn run(fx: &Fixture, repo: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(example_binary())
        .arg("--repo")
        .arg(repo)
        .args(args)
        .env("HOME", fx.path("home"))
        .output()
        .expect("run example")
}

fn stdout(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn create_list_diff_merge_remove_round_trip() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let path = stdout(&run(
        &fx,
        &repo,
        &["create", "cli", "--branch", "feature/cli"],
    ));
    let wt = std::path::PathBuf::from(path.trim());
    assert!(
        wt.ends_with(".sbx/cli-worktrees/feature/cli") && wt.join("a.txt").exists(),
        "{path}"
    );

    write(&wt, "b.txt", "b\n");
    fx.commit_all(&wt, "b");
    let json: serde_json::Value =
        serde_json::from_str(&stdout(&run(&fx, &repo, &["list", "--json"]))).unwrap();
    assert_eq!(json[0]["sandbox"], "cli");
    assert_eq!(json[0]["branch"], "feature/cli");
    assert_eq!(json[0]["ahead"], 1);
    assert_eq!(json[0]["dirty"], false);
    let table = stdout(&run(&fx, &repo, &["list"]));
    assert!(table.contains("cli") && table.contains("clean"), "{table}");

    let stat = stdout(&run(&fx, &repo, &["diff", "cli", "--stat"]));
    assert!(
        stat.contains("A b.txt | +1 -0") && stat.contains("1 file(s) changed"),
        "{stat}"
    );
    let patch = stdout(&run(&fx, &repo, &["diff", "cli"]));
    assert!(
        patch.contains("+++ b/b.txt\n@@ -0,0 +1 @@\n+b\n"),
        "{patch}"
    );

    let merged = stdout(&run(&fx, &repo, &["merge", "cli"]));
    assert!(merged.contains("fast-forward"), "{merged}");
    let removed = stdout(&run(&fx, &repo, &["remove", "cli"]));
    assert!(removed.contains("feature/cli"), "{removed}");
    assert!(!wt.exists());
}

#[test]
fn errors_go_to_stderr_with_nonzero_exit() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    for args in [
        &["create", "../evil"][..],
        &["diff", "missing"],
        &["remove", "missing"],
        &["frobnicate"],
    ] {
        let out = run(&fx, &repo, args);
        assert!(!out.status.success(), "{args:?}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(
            String::from_utf8_lossy(&out.stderr).starts_with("error: "),
            "{args:?}"
        );
    }
    let out = run(&fx, &fx.path("nowhere"), &["list"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a git repository"));
}

#[test]
fn refusals_exit_nonzero_and_force_overrides_remove() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let wt = std::path::PathBuf::from(stdout(&run(&fx, &repo, &["create", "agent"])).trim());
    write(&wt, "a.txt", "sandbox\n");
    fx.commit_all(&wt, "sandbox");
    write(&repo, "a.txt", "user\n");
    fx.commit_all(&repo, "user");

    let merge = run(&fx, &repo, &["merge", "agent"]);
    assert!(!merge.status.success() && merge.stdout.is_empty());
    let err = String::from_utf8_lossy(&merge.stderr);
    assert!(err.starts_with("error: ") && err.contains("a.txt"), "{err}");

    let remove = run(&fx, &repo, &["remove", "agent"]);
    assert!(!remove.status.success() && remove.stdout.is_empty());
    let err = String::from_utf8_lossy(&remove.stderr);
    assert!(
        err.contains("sbx/agent") && err.contains("--force"),
        "{err}"
    );
    assert!(wt.exists(), "a refused remove leaves the worktree");

    stdout(&run(&fx, &repo, &["remove", "agent", "--force"]));
    assert!(!wt.exists());
    assert_eq!(
        fx.git(&repo, &["branch", "--format=%(refname:short)"]),
        "main"
    );
}
