//! List, diff, merge and remove on real repositories.

mod common;

use std::collections::BTreeMap;

use common::{Fixture, read, write};
use sbx_worktree::error::{MergeError, RemoveError};
use sbx_worktree::{ChangeKind, Host, MergeOutcome};

fn setup(fx: &Fixture) -> (std::path::PathBuf, Host) {
    let repo = fx.repo(
        "repo",
        &[
            ("keep.txt", "one\ntwo\nthree\n"),
            ("gone.txt", "bye\n"),
            ("moved.txt", "same content\n"),
            ("edit.txt", "a\nb\nc\n"),
        ],
    );
    let host = Host::open(&repo).unwrap();
    (repo, host)
}

#[test]
fn list_and_diff_cover_committed_and_uncommitted_work_and_agree_with_git() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("rev", None).unwrap().path;
    write(&wt, "edit.txt", "a\nB\nc\nd\n");
    std::fs::remove_file(wt.join("gone.txt")).unwrap();
    fx.commit_all(&wt, "committed part");
    std::fs::rename(wt.join("moved.txt"), wt.join("renamed.txt")).unwrap(); // uncommitted rename
    write(&wt, "new.txt", "fresh\nfile\n"); // untracked
    write(&wt, "keep.txt", "one\ntwo\nthree\nfour\n"); // unstaged edit

    // The user's branch moves on too.
    write(&repo, "user.txt", "user\n");
    fx.commit_all(&repo, "user work");

    let list = host.list().unwrap();
    assert_eq!(list.len(), 1);
    let s = &list[0];
    assert_eq!(
        (s.sandbox.as_str(), s.branch.as_deref()),
        ("rev", Some("sbx/rev"))
    );
    assert_eq!((s.ahead, s.behind, s.dirty), (1, 1, Some(true)));

    let diff = host.diff("rev").unwrap();
    let kinds: BTreeMap<_, _> = diff
        .summary
        .files
        .iter()
        .map(|f| (f.path.as_str(), f.kind))
        .collect();
    assert_eq!(
        kinds,
        BTreeMap::from([
            ("edit.txt", ChangeKind::Modified),
            ("gone.txt", ChangeKind::Deleted),
            ("keep.txt", ChangeKind::Modified),
            ("new.txt", ChangeKind::Added),
            ("renamed.txt", ChangeKind::Renamed),
        ])
    );
    let renamed = diff
        .summary
        .files
        .iter()
        .find(|f| f.kind == ChangeKind::Renamed)
        .unwrap();
    assert_eq!(renamed.old_path.as_deref(), Some("moved.txt"));
    assert_eq!(
        (
            diff.summary.added,
            diff.summary.modified,
            diff.summary.deleted,
            diff.summary.renamed
        ),
        (1, 2, 1, 1)
    );
    assert!(diff.patch.contains("diff --git a/edit.txt b/edit.txt\n--- a/edit.txt\n+++ b/edit.txt\n@@ -1,3 +1,4 @@\n a\n-b\n+B\n c\n+d\n"), "{}", diff.patch);
    assert!(
        diff.patch
            .contains("new file mode 100644\n--- /dev/null\n+++ b/new.txt\n"),
        "{}",
        diff.patch
    );
    assert!(
        diff.patch
            .contains("rename from moved.txt\nrename to renamed.txt\n"),
        "{}",
        diff.patch
    );
    assert!(
        !diff.patch.contains("user.txt"),
        "the user's own commits are not the sandbox's changes"
    );

    // git's hunks for a committed-and-edited file are byte-identical to ours.
    let git_patch = fx.git(&wt, &["diff", s.base.as_str(), "--", "edit.txt"]);
    let git_hunks = &git_patch[git_patch.find("@@").unwrap()..];
    assert!(
        diff.patch.contains(git_hunks),
        "ours:\n{}\ngit:\n{git_hunks}",
        diff.patch
    );

    // git's numbers for the same state (intent-to-add makes untracked files visible to `git diff`).
    fx.git(&wt, &["add", "-N", "."]);
    let base = s.base.as_str();
    let numstat = fx.git(&wt, &["diff", "--numstat", "--no-renames", base]);
    for line in numstat.lines() {
        let mut parts = line.split('\t');
        let (ins, del, path) = (
            parts.next().unwrap(),
            parts.next().unwrap(),
            parts.next().unwrap(),
        );
        if path == "moved.txt" || path == "renamed.txt" {
            continue; // we report the pure rename as one change without line counts
        }
        let ours = diff
            .summary
            .files
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("{path} missing"));
        assert_eq!(
            (ours.insertions.to_string(), ours.deletions.to_string()),
            (ins.to_owned(), del.to_owned()),
            "{path}"
        );
    }
}

#[test]
fn merge_fast_forwards_and_updates_the_users_checkout() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("ff", None).unwrap().path;
    write(&wt, "feature.txt", "feature\n");
    let tip = fx.commit_all(&wt, "feature");
    let outcome = host.merge("ff").unwrap();
    assert!(
        matches!(outcome, MergeOutcome::FastForward { ref to, .. } if *to == tip),
        "{outcome:?}"
    );
    assert_eq!(fx.git(&repo, &["rev-parse", "main"]), tip);
    assert_eq!(read(&repo, "feature.txt"), "feature\n");
    assert_eq!(fx.git(&repo, &["status", "--porcelain"]), "");
    assert!(matches!(
        host.merge("ff").unwrap(),
        MergeOutcome::UpToDate { .. }
    ));
    // Merged, so removal needs no force.
    let removed = host.remove("ff", false).unwrap();
    assert_eq!(removed.discarded_commits, 0);
    assert!(!wt.exists());
    assert!(!fx.git(&repo, &["worktree", "list"]).contains("ff"));
}

#[test]
fn merge_creates_a_merge_commit_when_both_sides_moved() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("mc", None).unwrap().path;
    write(&wt, "edit.txt", "a\nb\nc\nsandbox\n");
    let theirs = fx.commit_all(&wt, "sandbox change");
    write(&repo, "keep.txt", "user\ntwo\nthree\n");
    let ours = fx.commit_all(&repo, "user change");
    let outcome = host.merge("mc").unwrap();
    let MergeOutcome::MergeCommit { commit, .. } = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(fx.git(&repo, &["rev-parse", "main"]), commit);
    assert_eq!(
        fx.git(&repo, &["rev-parse", "HEAD^1", "HEAD^2"]),
        format!("{ours}\n{theirs}")
    );
    assert_eq!(read(&repo, "edit.txt"), "a\nb\nc\nsandbox\n");
    assert_eq!(read(&repo, "keep.txt"), "user\ntwo\nthree\n");
    assert_eq!(fx.git(&repo, &["status", "--porcelain"]), "");
    fx.git(&repo, &["fsck", "--no-progress"]);
}

/// Every byte that a merge could touch: the index, HEAD, every ref and every file of the user's worktree
/// (outside `.git` and `.sbx`), keyed by path.
fn snapshot(repo: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    fn walk(root: &std::path::Path, dir: &std::path::Path, out: &mut BTreeMap<String, Vec<u8>>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(root)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if rel == ".sbx" || (rel.starts_with(".git/") && rel.contains("/sbx")) {
                continue;
            }
            if path.is_dir() {
                walk(root, &path, out);
            } else if !rel.starts_with(".git/")
                || rel == ".git/index"
                || rel == ".git/HEAD"
                || rel.starts_with(".git/refs/")
                || rel == ".git/packed-refs"
            {
                out.insert(rel, std::fs::read(&path).unwrap());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(repo, repo, &mut out);
    out
}

#[test]
fn conflicting_merge_is_refused_and_changes_nothing() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("cf", None).unwrap().path;
    write(&wt, "edit.txt", "sandbox\n");
    fx.commit_all(&wt, "sandbox");
    write(&repo, "edit.txt", "user\n");
    let main_before = fx.commit_all(&repo, "user");
    // The user also has work in progress: a staged change, an unstaged one and an untracked file.
    write(&repo, "keep.txt", "staged\n");
    fx.git(&repo, &["add", "keep.txt"]);
    write(&repo, "moved.txt", "unstaged\n");
    write(&repo, "notes.txt", "untracked\n");
    let snapshot_before = snapshot(&repo);
    let objects_before = fx.git(&repo, &["count-objects", "-v"]);
    let err = host.merge("cf").unwrap_err();
    assert_eq!(
        snapshot(&repo),
        snapshot_before,
        "index, files or refs changed"
    );
    let MergeError::Conflicts { files, .. } = &err else {
        panic!("{err}")
    };
    assert_eq!(files, &["edit.txt"]);
    assert!(err.to_string().contains("edit.txt"));
    assert_eq!(fx.git(&repo, &["rev-parse", "main"]), main_before);
    assert_eq!(read(&repo, "edit.txt"), "user\n");
    assert!(!repo.join(".git/MERGE_HEAD").exists());
    assert_eq!(
        fx.git(&repo, &["count-objects", "-v"]),
        objects_before,
        "the trial merge wrote no objects"
    );
}

#[test]
fn dirty_user_tree_is_never_lost() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    // Sandbox touches the file the user is editing: the merge is refused, the edit survives.
    let wt = host.create("same", None).unwrap().path;
    write(&wt, "edit.txt", "sandbox\n");
    fx.commit_all(&wt, "sandbox");
    write(&repo, "edit.txt", "user's unsaved work\n");
    fx.git(&repo, &["add", "edit.txt"]);
    write(&repo, "keep.txt", "unstaged too\n");
    let main_before = fx.git(&repo, &["rev-parse", "main"]);
    let err = host.merge("same").unwrap_err();
    assert!(
        matches!(err, MergeError::WorktreeUpdateRefused { .. }),
        "{err}"
    );
    assert_eq!(fx.git(&repo, &["rev-parse", "main"]), main_before);
    assert_eq!(read(&repo, "edit.txt"), "user's unsaved work\n");
    assert_eq!(read(&repo, "keep.txt"), "unstaged too\n");
    assert_eq!(
        fx.git(&repo, &["diff", "--cached", "--name-only"]),
        "edit.txt",
        "the staged change is still staged"
    );

    // Sandbox touches another file: the merge goes through and the user's edits stay.
    let wt2 = host.create("other", None).unwrap().path;
    write(&wt2, "unrelated.txt", "x\n");
    fx.commit_all(&wt2, "unrelated");
    host.merge("other").unwrap();
    assert_eq!(read(&repo, "unrelated.txt"), "x\n");
    assert_eq!(read(&repo, "edit.txt"), "user's unsaved work\n");
    assert_eq!(read(&repo, "keep.txt"), "unstaged too\n");
    drop(wt);
}

#[test]
fn merge_into_a_branch_that_is_not_checked_out_only_moves_the_ref() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("away", None).unwrap().path;
    write(&wt, "f.txt", "f\n");
    let tip = fx.commit_all(&wt, "f");
    fx.git(&repo, &["checkout", "-q", "-b", "elsewhere"]);
    write(&repo, "wip.txt", "untracked user file\n");
    host.merge("away").unwrap();
    assert_eq!(fx.git(&repo, &["rev-parse", "main"]), tip);
    assert_eq!(
        fx.git(&repo, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "elsewhere"
    );
    assert!(
        !repo.join("f.txt").exists(),
        "the user's checkout of another branch is untouched"
    );
    assert_eq!(read(&repo, "wip.txt"), "untracked user file\n");
}

#[test]
fn merge_refuses_uncommitted_sandbox_work() {
    let fx = Fixture::new();
    let (_repo, host) = setup(&fx);
    let wt = host.create("wip", None).unwrap().path;
    write(&wt, "half.txt", "half done\n");
    let err = host.merge("wip").unwrap_err();
    assert!(
        matches!(err, MergeError::SandboxDirty { ref files, .. } if files == &["half.txt"]),
        "{err}"
    );
}

#[test]
fn remove_refuses_unmerged_or_dirty_unless_forced() {
    let fx = Fixture::new();
    let (repo, host) = setup(&fx);
    let wt = host.create("rm", None).unwrap().path;
    write(&wt, "work.txt", "w\n");
    fx.commit_all(&wt, "w1");
    write(&wt, "work.txt", "w2\n");
    fx.commit_all(&wt, "w2");
    let err = host.remove("rm", false).unwrap_err();
    assert!(
        matches!(err, RemoveError::Unmerged { commits: 2, .. }),
        "{err}"
    );
    write(&wt, "dirty.txt", "d\n");
    let err = host.remove("rm", false).unwrap_err();
    assert!(matches!(err, RemoveError::Dirty { .. }), "{err}");
    assert!(wt.exists());
    // Another branch containing the commits counts as merged.
    std::fs::remove_file(wt.join("dirty.txt")).unwrap();
    fx.git(&repo, &["branch", "keeper", "sbx/rm"]);
    host.remove("rm", false).unwrap();
    assert!(!wt.exists());
    assert!(!repo.join(".sbx/rm-worktrees").exists());
    assert_eq!(fx.git(&repo, &["branch", "--list", "sbx/rm"]), "");

    let wt = host.create("forced", None).unwrap().path;
    write(&wt, "x.txt", "x\n");
    fx.commit_all(&wt, "x");
    write(&wt, "y.txt", "uncommitted\n");
    let removed = host.remove("forced", true).unwrap();
    assert_eq!(removed.discarded_commits, 1);
    assert!(!wt.exists());
    assert_eq!(
        fx.git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    fx.git(&repo, &["worktree", "prune", "--dry-run"]);
    assert_eq!(
        fx.git(&repo, &["worktree", "prune", "--dry-run", "-v"]),
        "",
        "nothing left for git to prune"
    );
}

#[test]
fn unknown_sandbox_errors_name_it() {
    let fx = Fixture::new();
    let (_repo, host) = setup(&fx);
    for err in [
        host.diff("nope").unwrap_err().to_string(),
        host.merge("nope").unwrap_err().to_string(),
        host.remove("nope", false).unwrap_err().to_string(),
    ] {
        assert!(err.contains("\"nope\"") && err.contains("list"), "{err}");
    }
}
