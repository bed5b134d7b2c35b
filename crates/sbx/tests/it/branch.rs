//! Branch and clone mode end to end: real git repositories, real sandboxes committing inside, `sbx diff`,
//! `sbx merge` (fast-forward, merge commit, refused conflict), `sbx rm` cleaning up worktrees and branches.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::context::TestContext;
use crate::lifecycle::{Cleanup, context, ls_json, namespaces_available, pids, row, wait_gone};

/// Runs git on the host in `repo`, asserting success; returns stdout.
fn git(repo: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["-c", "user.name=Host", "-c", "user.email=host@example.com"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A repository on `main` with one commit of a.txt and b.txt.
fn repo(ctx: &TestContext) -> PathBuf {
    let repo = ctx.dir.path().join("repo");
    std::fs::create_dir_all(&repo).unwrap();
    git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("a.txt"), "alpha\n").unwrap();
    std::fs::write(repo.join("b.txt"), "one\ntwo\nthree\n").unwrap();
    git(&repo, &["add", "."]);
    git(&repo, &["commit", "-q", "-m", "base"]);
    std::fs::canonicalize(repo).unwrap()
}

/// The git binary as the host template has it (same path inside as on the host).
fn git_path() -> String {
    let out = Command::new("sh")
        .args(["-c", "command -v git"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// Runs a shell script in the sandbox's worktree with `$GIT` set to a git that commits as the agent.
fn in_sandbox(ctx: &TestContext, name: &str, workdir: &str, script: &str) -> String {
    let git = format!(
        "{} -c user.name=Agent -c user.email=agent@example.com -c maintenance.auto=false -c gc.auto=0",
        git_path()
    );
    let (code, out, err) = ctx.sbx(&[
        "exec",
        "-w",
        workdir,
        "-e",
        &format!("GIT={git}"),
        name,
        "sh",
        "-c",
        script,
    ]);
    assert_eq!(code, 0, "in {name}: {script}\n{out}{err}");
    out
}

fn worktree_of(ctx: &TestContext, name: &str) -> String {
    let rows = ls_json(ctx);
    row(&rows, name)["worktree"].as_str().unwrap().to_owned()
}

#[test]
fn two_branch_sandboxes_on_one_repo_diff_merge_and_clean_up() {
    if !namespaces_available("two_branch_sandboxes_on_one_repo_diff_merge_and_clean_up") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let repo = repo(&ctx);
    let repo_arg = repo.to_str().unwrap();
    for name in ["one", "two", "three"] {
        let (code, _, err) = ctx.sbx(&[
            "create", "-q", "--name", name, "--branch", "auto", "shell", repo_arg,
        ]);
        assert_eq!(code, 0, "{err}");
    }
    let rows = ls_json(&ctx);
    for name in ["one", "two", "three"] {
        let r = row(&rows, name);
        assert_eq!(r["branch"], format!("sbx/{name}"));
        assert_eq!(r["mode"], "branch");
        assert_eq!(
            r["workspace"][0], repo_arg,
            "ls shows the user's repository"
        );
        assert!(
            r["worktree"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{repo_arg}/.sbx/"))
        );
    }
    // `sbx exec` starts in the sandbox's worktree, never in the user's checkout; `-w` still overrides.
    assert_eq!(
        ctx.ok(&["exec", "one", "pwd"]).trim_end(),
        worktree_of(&ctx, "one")
    );
    assert_eq!(ctx.ok(&["exec", "-w", "/tmp", "one", "pwd"]), "/tmp\n");
    let table = ctx.ok(&["ls"]);
    assert!(
        table.contains("BRANCH") && table.contains("sbx/one"),
        "{table}"
    );

    // Each sandbox commits on its own branch, at the same time, without touching the user's checkout.
    let (wt1, wt2, wt3) = (
        worktree_of(&ctx, "one"),
        worktree_of(&ctx, "two"),
        worktree_of(&ctx, "three"),
    );
    in_sandbox(
        &ctx,
        "one",
        &wt1,
        "echo new > c.txt && $GIT add c.txt && $GIT commit -q -m 'one: add c'",
    );
    in_sandbox(
        &ctx,
        "two",
        &wt2,
        "printf 'one\\nTWO\\nthree\\n' > b.txt && $GIT commit -q -am 'two: shout'",
    );
    in_sandbox(
        &ctx,
        "three",
        &wt3,
        "printf 'one\\n2\\nthree\\n' > b.txt && $GIT commit -q -am 'three: digits'",
    );
    assert!(
        !repo.join("c.txt").exists(),
        "the user's working tree is untouched"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "sbx/one"]).trim(),
        "one: add c"
    );

    // The sandbox cannot change the user's branches or the repository's hooks and config.
    let (code, _, _) = ctx.sbx(&[
        "exec",
        "one",
        "sh",
        "-c",
        &format!("echo x > {repo_arg}/.git/hooks/post-commit"),
    ]);
    assert_ne!(code, 0, "hooks must be read-only inside");
    let (code, _, _) = ctx.sbx(&[
        "exec",
        "one",
        "sh",
        "-c",
        &format!("echo x >> {repo_arg}/.git/config"),
    ]);
    assert_ne!(code, 0, "the repository config must be read-only inside");
    let main_before = git(&repo, &["rev-parse", "main"]);

    let stat = ctx.ok(&["diff", "one", "--stat"]);
    assert!(
        stat.contains("A c.txt") && stat.contains("1 file(s) changed"),
        "{stat}"
    );
    let patch = ctx.ok(&["diff", "two"]);
    assert!(
        patch.contains("-two") && patch.contains("+TWO") && !patch.contains('\x1b'),
        "{patch}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["diff", "two", "--json"])).unwrap();
    assert_eq!(json["summary"]["files"][0]["path"], "b.txt");
    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        main_before,
        "diff changes nothing"
    );

    // one: fast-forward; two: a merge commit (main has moved on); three: conflicts with two, refused.
    let out = ctx.ok(&["merge", "one"]);
    assert!(out.contains("fast-forwarded main"), "{out}");
    assert_eq!(
        std::fs::read_to_string(repo.join("c.txt")).unwrap(),
        "new\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["merge", "two", "--json"])).unwrap();
    assert_eq!(json["outcome"], "merge-commit");
    assert_eq!(
        git(&repo, &["rev-list", "--parents", "-n1", "main"])
            .split_whitespace()
            .count(),
        3
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("b.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );
    let head = git(&repo, &["rev-parse", "main"]);
    let (code, _, err) = ctx.sbx(&["merge", "three"]);
    assert_eq!(code, 4, "a conflicting merge exits 4: {err}");
    assert!(
        err.contains("conflict") && err.contains("b.txt") && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(
        git(&repo, &["rev-parse", "main"]),
        head,
        "a refused merge moves nothing"
    );
    assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    assert_eq!(
        std::fs::read_to_string(repo.join("b.txt")).unwrap(),
        "one\nTWO\nthree\n"
    );

    // rm refuses to lose three's unmerged commit unless forced; merged sandboxes go quietly.
    ctx.ok(&["stop", "three"]);
    let (code, _, err) = ctx.sbx(&["rm", "three"]);
    assert_eq!(code, 1);
    assert!(
        err.contains("not merged") && err.contains("sbx rm -f three"),
        "{err}"
    );
    assert!(Path::new(&wt3).is_dir(), "a refused rm keeps the worktree");
    let (sup1, init1) = pids(&ctx, "one");
    let (sup2, init2) = pids(&ctx, "two");
    ctx.ok(&["rm", "-f", "one", "two", "three"]);
    for pid in [sup1, init1, sup2, init2] {
        wait_gone(pid);
    }
    for wt in [&wt1, &wt2, &wt3] {
        assert!(!Path::new(wt).exists(), "{wt} left behind");
    }
    assert_eq!(
        git(&repo, &["branch", "--list", "sbx/*"]),
        "",
        "sandbox branches left behind"
    );
    assert_eq!(
        git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    assert!(ls_json(&ctx).is_empty());
    assert!(!ctx.home().join("state/sandboxes/one").exists());
}

#[test]
fn clone_mode_commits_come_back_by_fetch_and_merge() {
    if !namespaces_available("clone_mode_commits_come_back_by_fetch_and_merge") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let repo = repo(&ctx);
    ctx.ok(&[
        "create",
        "-q",
        "--name",
        "cl",
        "--clone",
        "shell",
        repo.to_str().unwrap(),
    ]);
    let wt = worktree_of(&ctx, "cl");
    assert!(wt.ends_with("/.sbx/cl-clone"), "{wt}");
    // Only the clone is inside: the user's repository is not mounted at all.
    let (code, _, _) = ctx.sbx(&[
        "exec",
        "cl",
        "test",
        "-e",
        &format!("{}/.git/config", repo.display()),
    ]);
    assert_ne!(
        code, 0,
        "the host repository must not be visible in clone mode"
    );
    in_sandbox(
        &ctx,
        "cl",
        &wt,
        "echo cloned > d.txt && $GIT add d.txt && $GIT commit -q -m 'clone: add d'",
    );
    let stat = ctx.ok(&["diff", "cl", "--stat"]);
    assert!(stat.contains("A d.txt"), "{stat}");
    let out = ctx.ok(&["merge", "cl"]);
    assert!(out.contains("fast-forwarded main"), "{out}");
    assert_eq!(
        git(&repo, &["log", "-1", "--format=%s", "sandbox-cl/sbx/cl"]).trim(),
        "clone: add d",
        "the clone's branch was fetched into the host"
    );
    assert_eq!(
        std::fs::read_to_string(repo.join("d.txt")).unwrap(),
        "cloned\n"
    );
    ctx.ok(&["rm", "-f", "cl"]);
    assert!(!Path::new(&wt).exists());
    assert_eq!(
        git(&repo, &["remote"]).trim(),
        "",
        "the sandbox remote is removed"
    );
}

#[test]
fn branch_mode_needs_a_repository_and_diff_needs_branch_mode() {
    let ctx = context();
    let plain = ctx.dir.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (code, _, err) = ctx.sbx(&[
        "create",
        "--branch",
        "auto",
        "shell",
        plain.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert!(
        err.contains("need a git repository") && err.contains("git init"),
        "{err}"
    );
    assert!(ls_json(&ctx).is_empty(), "a refused create leaves nothing");
    let (code, _, err) = ctx.sbx(&["create", "--branch", "auto", "shell"]);
    assert_eq!(code, 1);
    assert!(err.contains("need a workspace"), "{err}");
    let (code, _, err) = ctx.sbx(&["create", "--branch", "x", "--clone", "shell", "."]);
    assert_eq!(code, 2, "--branch and --clone conflict: {err}");
    let (code, _, err) = ctx.sbx(&["diff", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no sandbox named `nope`"), "{err}");
}
