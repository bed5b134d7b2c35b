//! Eight separate processes creating, then removing, sandboxes of one repository at the same time.

mod common;

use std::process::{Command, Stdio};

use common::{Fixture, example_binary};
use sbx_worktree::Host;

const PARALLEL: usize = 8;

fn spawn_all(
    fx: &Fixture,
    repo: &std::path::Path,
    args: &dyn Fn(usize) -> Vec<String>,
) -> Vec<std::process::Output> {
    let bin = example_binary();
    let children: Vec<_> = (0..PARALLEL)
        .map(|i| {
            Command::new(&bin)
                .arg("--repo")
                .arg(repo)
                .args(args(i))
                .env("HOME", fx.path("home"))
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn example")
        })
        .collect();
    children
        .into_iter()
        .map(|c| c.wait_with_output().expect("wait"))
        .collect()
}

#[test]
fn eight_processes_create_and_remove_concurrently() {
    let fx = Fixture::new();
    let files: Vec<(String, String)> = (0..200)
        .map(|i| {
            (
                format!("dir{}/file{i}.txt", i % 10),
                format!("content {i}\n"),
            )
        })
        .collect();
    let refs: Vec<(&str, &str)> = files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_str()))
        .collect();
    let repo = fx.repo("repo", &refs);

    let outputs = spawn_all(&fx, &repo, &|i| vec!["create".into(), format!("agent-{i}")]);
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "create agent-{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let host = Host::open(&repo).unwrap();
    let list = host.list().unwrap();
    assert_eq!(list.len(), PARALLEL);
    assert!(list.iter().all(|s| s.dirty == Some(false)), "{list:?}");
    let worktrees = fx.git(&repo, &["worktree", "list", "--porcelain"]);
    assert_eq!(
        worktrees.matches("\nworktree ").count(),
        PARALLEL,
        "{worktrees}"
    );
    for s in &list {
        assert_eq!(
            fx.git(&s.path, &["status", "--porcelain"]),
            "",
            "{}",
            s.sandbox
        );
    }
    let exclude = std::fs::read_to_string(repo.join(".git/info/exclude")).unwrap();
    assert_eq!(exclude.matches("/.sbx/").count(), 1, "{exclude}");

    // The same sandbox name from eight processes: exactly one wins.
    let outputs = spawn_all(&fx, &repo, &|_| vec!["create".into(), "contested".into()]);
    assert_eq!(outputs.iter().filter(|o| o.status.success()).count(), 1);
    for out in outputs.iter().filter(|o| !o.status.success()) {
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("already exists"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let outputs = spawn_all(&fx, &repo, &|i| vec!["remove".into(), format!("agent-{i}")]);
    for (i, out) in outputs.iter().enumerate() {
        assert!(
            out.status.success(),
            "remove agent-{i}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(host.list().unwrap().len(), 1);
    assert_eq!(
        fx.git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        2
    );
    assert_eq!(
        fx.git(&repo, &["branch", "--format=%(refname:short)"]),
        "main\nsbx/contested"
    );
    fx.git(&repo, &["fsck", "--no-progress"]);
}
