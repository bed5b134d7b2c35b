//! The sandbox's worktree or clone is writable by the agent. These tests plant what a hostile agent would (a
//! redirected `.git` file, filter drivers and hooks in git config, symlinks out of the tree, fifos) and check that
//! list, diff, merge and remove on the host neither run the agent's programs nor read or delete outside the tree.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use common::{Fixture, read, write};
use sbx_worktree::{ChangeKind, Host, MergeOutcome};

/// A shell command that creates `marker` when run; any sign of it means the host executed agent content.
fn touch_command(marker: &Path) -> String {
    format!("sh -c 'touch {}; cat'", marker.display())
}

/// Git config text defining a filter driver `evil` and an fsmonitor hook that both touch `marker`.
fn evil_config(marker: &Path) -> String {
    let cmd = touch_command(marker);
    format!(
        "[filter \"evil\"]\n\tclean = {cmd}\n\tsmudge = {cmd}\n\tprocess = {cmd}\n\trequired = false\n\
         [core]\n\tfsmonitor = {cmd}\n\thooksPath = {hooks}\n[uploadpack]\n\tpackObjectsHook = {cmd}\n",
        hooks = marker.with_extension("hooks").display()
    )
}

fn plant_hooks(dir: &Path, marker: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for hook in [
        "post-merge",
        "post-checkout",
        "reference-transaction",
        "pre-merge-commit",
        "post-rewrite",
    ] {
        let path = dir.join(hook);
        std::fs::write(&path, format!("#!/bin/sh\ntouch {}\n", marker.display())).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn setup(fx: &Fixture) -> (PathBuf, Host, PathBuf) {
    let repo = fx.repo(
        "repo",
        &[("a.txt", "a\n"), ("conf/app.toml", "name = \"app\"\n")],
    );
    let host = Host::open(&repo).unwrap();
    (repo, host, fx.path("executed-agent-content"))
}

#[test]
fn a_redirected_git_file_is_not_followed() {
    let fx = Fixture::new();
    let (repo, host, marker) = setup(&fx);
    let wt = host.create("redirect", None).unwrap().path;
    write(&wt, "a.txt", "agent edit\n");

    // The agent builds its own repository with a hostile config and points the worktree's `.git` at it.
    let evil = fx.repo("evil", &[("a.txt", "evil\n")]);
    std::fs::write(
        evil.join(".git/config"),
        std::fs::read_to_string(evil.join(".git/config")).unwrap() + &evil_config(&marker),
    )
    .unwrap();
    plant_hooks(&evil.join(".git/hooks"), &marker);
    std::fs::write(
        wt.join(".git"),
        format!("gitdir: {}\n", evil.join(".git").display()),
    )
    .unwrap();
    write(&wt, ".gitattributes", "* filter=evil\n");

    let list = host.list().unwrap();
    assert_eq!(list[0].dirty, Some(true));
    let diff = host.diff("redirect").unwrap();
    assert!(diff.patch.contains("+agent edit"), "{}", diff.patch);
    assert!(
        !diff.patch.contains("-evil"),
        "the diff is against the host's base, not the agent's repository"
    );
    assert!(
        !marker.exists(),
        "list/diff ran an agent-configured program"
    );

    host.remove("redirect", true).unwrap();
    assert!(!marker.exists(), "remove ran an agent-configured program");
    assert!(!wt.exists());
    assert!(
        evil.join(".git/HEAD").exists(),
        "the repository the agent pointed at is untouched"
    );
    assert_eq!(
        fx.git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
}

#[test]
fn a_clone_config_with_filters_and_hooks_runs_nothing_on_the_host() {
    let fx = Fixture::new();
    let (repo, host, marker) = setup(&fx);
    let clone = host.create_clone("cl").unwrap().path;
    write(&clone, "agent.txt", "agent\n");
    fx.commit_all(&clone, "agent work");

    let config = clone.join(".git/config");
    std::fs::write(
        &config,
        std::fs::read_to_string(&config).unwrap() + &evil_config(&marker),
    )
    .unwrap();
    plant_hooks(&clone.join(".git/hooks"), &marker);
    plant_hooks(&marker.with_extension("hooks"), &marker);
    write(&clone, ".gitattributes", "* filter=evil\n");
    write(&clone, "a.txt", "uncommitted\n");

    assert_eq!(host.list().unwrap()[0].dirty, Some(true));
    let diff = host.diff("cl").unwrap();
    assert!(diff.patch.contains("+uncommitted"), "{}", diff.patch);
    assert!(
        !marker.exists(),
        "list/diff ran a program from the clone's config"
    );

    // Clean the tree (keeping the hostile config and hooks) and merge: the fetch runs `git upload-pack` in the
    // clone, which must not pick up its hooks or config programs either.
    std::fs::remove_file(clone.join(".gitattributes")).unwrap();
    write(&clone, "a.txt", "a\n");
    assert!(matches!(
        host.merge("cl").unwrap(),
        MergeOutcome::FastForward { .. }
    ));
    assert_eq!(read(&repo, "agent.txt"), "agent\n");
    assert!(!marker.exists(), "merge ran a program from the clone");
    host.remove("cl", true).unwrap();
    assert!(!marker.exists());
}

#[test]
fn merge_and_remove_run_no_hooks() {
    let fx = Fixture::new();
    let (repo, host, marker) = setup(&fx);
    // Hooks in the shared git dir (which a sandbox with access to it could have planted).
    plant_hooks(&repo.join(".git/hooks"), &marker);
    let wt = host.create("hooks", None).unwrap().path;
    write(&wt, "b.txt", "b\n");
    // The agent's own commit, made without hooks (the test plays the agent here, not the host).
    fx.git(&wt, &["add", "-A"]);
    fx.git(
        &wt,
        &[
            "-c",
            "core.hooksPath=/dev/null",
            "commit",
            "-q",
            "-m",
            "agent",
        ],
    );
    assert!(!marker.exists(), "setup ran a hook");

    assert!(matches!(
        host.merge("hooks").unwrap(),
        MergeOutcome::FastForward { .. }
    ));
    assert_eq!(
        read(&repo, "b.txt"),
        "b\n",
        "the user's checkout was fast-forwarded"
    );
    host.remove("hooks", false).unwrap();
    assert!(!marker.exists(), "merge or remove ran a hook");
}

#[test]
fn diff_does_not_follow_symlinks_or_block_on_fifos() {
    let fx = Fixture::new();
    let (_repo, host, _marker) = setup(&fx);
    let wt = host.create("links", None).unwrap().path;
    let outside = fx.path("host-secrets");
    std::fs::create_dir(&outside).unwrap();
    std::fs::write(outside.join("app.toml"), "token = \"HOST SECRET\"\n").unwrap();
    // The tracked directory becomes a symlink to a host directory holding a file of the same name.
    std::fs::remove_dir_all(wt.join("conf")).unwrap();
    std::os::unix::fs::symlink(&outside, wt.join("conf")).unwrap();
    let fifo = wt.join("pipe");
    assert!(
        std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );

    let diff = host.diff("links").unwrap();
    assert!(!diff.patch.contains("HOST SECRET"), "{}", diff.patch);
    let by_path = |p: &str| diff.summary.files.iter().find(|f| f.path == p);
    assert_eq!(
        by_path("conf/app.toml").map(|f| f.kind),
        Some(ChangeKind::Deleted),
        "{:?}",
        diff.summary
    );
    assert_eq!(
        by_path("conf").map(|f| f.kind),
        Some(ChangeKind::Added),
        "the symlink itself is the change"
    );
    assert!(
        diff.patch.contains(&outside.display().to_string()),
        "a symlink diffs as its target path"
    );
    assert!(by_path("pipe").is_none());

    host.remove("links", true).unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("app.toml")).unwrap(),
        "token = \"HOST SECRET\"\n",
        "removing the worktree deleted the link, not what it points to"
    );
}

#[test]
fn remove_ignores_a_git_file_pointing_at_another_worktree() {
    let fx = Fixture::new();
    let (repo, host, _marker) = setup(&fx);
    let victim = host.create("victim", None).unwrap().path;
    let attacker = host.create("attacker", None).unwrap().path;
    let victim_admin = fx.git(&victim, &["rev-parse", "--absolute-git-dir"]);
    std::fs::write(attacker.join(".git"), format!("gitdir: {victim_admin}\n")).unwrap();

    host.remove("attacker", true).unwrap();
    assert!(!attacker.exists());
    assert!(
        Path::new(&victim_admin).exists(),
        "the other sandbox's registration survives"
    );
    assert_eq!(fx.git(&victim, &["status", "--porcelain"]), "");
    let worktrees = fx.git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(worktrees.matches("worktree ").count(), 2, "{worktrees}");
    assert!(worktrees.contains(victim.to_str().unwrap()));
    host.remove("victim", false).unwrap();
}

#[test]
fn worktreeinclude_never_copies_through_a_checked_out_symlink() {
    let fx = Fixture::new();
    let outside = fx.path("outside");
    std::fs::create_dir(&outside).unwrap();
    let repo = fx.repo("repo", &[("a.txt", "a\n"), (".gitignore", "local.env\n")]);
    // The committed tree has `conf` as a symlink out of the repository; the user's tree has a real directory there.
    std::os::unix::fs::symlink(&outside, repo.join("conf")).unwrap();
    fx.commit_all(&repo, "conf is a link");
    std::fs::remove_file(repo.join("conf")).unwrap();
    write(&repo, "conf/local.env", "SECRET=1\n");
    write(&repo, ".worktreeinclude", "conf/local.env\n");

    let host = Host::open(&repo).unwrap();
    let sandbox = host.create("inc", None).unwrap();
    assert!(sandbox.included.is_empty(), "{:?}", sandbox.included);
    assert!(
        !outside.join("local.env").exists(),
        "copied through the symlink out of the worktree"
    );
    assert!(
        std::fs::symlink_metadata(sandbox.path.join("conf"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    host.remove("inc", true).unwrap();
}

#[test]
fn a_forged_record_cannot_aim_remove_outside_sbx() {
    let fx = Fixture::new();
    let (repo, host, _marker) = setup(&fx);
    host.create("forged", None).unwrap();
    let victim = fx.path("users-documents");
    std::fs::create_dir(&victim).unwrap();
    std::fs::write(victim.join("thesis.txt"), "years of work\n").unwrap();
    let record = repo.join(".git/sbx/sandboxes/forged.json");
    let mut json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    json["path"] = victim.to_str().unwrap().into();
    json["mode"] = "clone".into();
    std::fs::write(&record, serde_json::to_vec(&json).unwrap()).unwrap();

    let err = host.remove("forged", true).unwrap_err();
    assert!(err.to_string().contains("forged.json"), "{err}");
    assert_eq!(read(&victim, "thesis.txt"), "years of work\n");
    assert!(
        host.list().is_err(),
        "list reports the forged record instead of acting on it"
    );
}
