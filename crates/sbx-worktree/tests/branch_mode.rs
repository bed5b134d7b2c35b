//! Branch mode on real repositories, checked with the `git` CLI in both directions.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::{Fixture, read, write};
use sbx_worktree::error::{CreateError, OpenError};
use sbx_worktree::{Host, Mode};

const LFS_POINTER: &str = "version https://git-lfs.github.com/spec/v1\noid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\nsize 12345\n";

/// A repository with a symlink, an executable, an LFS pointer and a submodule.
fn rich_repo(fx: &Fixture) -> std::path::PathBuf {
    let sub = fx.repo("sub", &[("lib.txt", "library\n")]);
    let repo = fx.repo(
        "repo",
        &[
            ("README.md", "hello\n"),
            ("src/main.rs", "fn main() {}\n"),
            (
                ".gitattributes",
                "*.bin filter=lfs diff=lfs merge=lfs -text\n",
            ),
            ("assets/big.bin", LFS_POINTER),
            (".gitignore", "*.log\n"),
        ],
    );
    write(&repo, "run.sh", "#!/bin/sh\necho hi\n");
    std::fs::set_permissions(repo.join("run.sh"), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::os::unix::fs::symlink("src/main.rs", repo.join("link-to-main")).unwrap();
    let sub_url = sub.to_str().unwrap();
    fx.git(
        &repo,
        &[
            "-c",
            "protocol.file.allow=always",
            "submodule",
            "add",
            "-q",
            sub_url,
            "vendor/sub",
        ],
    );
    fx.commit_all(&repo, "rich content");
    repo
}

#[test]
fn create_registers_a_worktree_that_git_sees_in_both_directions() {
    let fx = Fixture::new();
    let repo = rich_repo(&fx);
    let gitignore_before = read(&repo, ".gitignore");
    let head = fx.git(&repo, &["rev-parse", "HEAD"]);

    let host = Host::open(&repo).unwrap();
    let sandbox = host.create("agent", None).unwrap();
    let wt = &sandbox.path;
    assert_eq!(sandbox.branch, "sbx/agent");
    assert_eq!(sandbox.base, head);
    assert_eq!(sandbox.base_branch.as_deref(), Some("refs/heads/main"));
    assert_eq!(
        *wt,
        repo.canonicalize()
            .unwrap()
            .join(".sbx/agent-worktrees/sbx/agent")
    );

    // git sees the worktree from the main tree …
    let list = fx.git(&repo, &["worktree", "list", "--porcelain"]);
    assert!(
        list.contains(&format!("worktree {}", wt.display())),
        "{list}"
    );
    assert!(list.contains("branch refs/heads/sbx/agent"), "{list}");
    // … and the main tree from the worktree, with a clean status on both sides.
    let list_from_wt = fx.git(wt, &["worktree", "list", "--porcelain"]);
    assert!(list_from_wt.contains(&format!(
        "worktree {}",
        repo.canonicalize().unwrap().display()
    )));
    assert_eq!(
        fx.git(wt, &["status", "--porcelain", "--ignore-submodules=none"]),
        ""
    );
    assert_eq!(
        fx.git(&repo, &["status", "--porcelain"]),
        "",
        ".sbx must not show up"
    );
    assert_eq!(
        fx.git(wt, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "sbx/agent"
    );
    assert_eq!(fx.git(wt, &["log", "-1", "--format=%H"]), head);
    assert_eq!(
        fx.git(wt, &["rev-parse", "--git-common-dir"]),
        repo.canonicalize()
            .unwrap()
            .join(".git")
            .display()
            .to_string()
    );

    // Content: exec bit, symlink, LFS pointer byte for byte, submodule as an empty directory like git leaves it.
    let mode = std::fs::metadata(wt.join("run.sh"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o111, 0o111, "run.sh must stay executable");
    assert_eq!(
        std::fs::read_link(wt.join("link-to-main"))
            .unwrap()
            .to_str(),
        Some("src/main.rs")
    );
    assert_eq!(read(wt, "assets/big.bin"), LFS_POINTER);
    assert!(wt.join("vendor/sub").is_dir());
    // Exclusion lives in info/exclude, never the user's .gitignore.
    assert_eq!(read(&repo, ".gitignore"), gitignore_before);
    assert!(read(&repo, ".git/info/exclude").contains("/.sbx/"));

    // Work in the sandbox is visible to git in the main tree.
    write(wt, "new.txt", "agent output\n");
    fx.commit_all(wt, "agent work");
    assert_eq!(
        fx.git(&repo, &["rev-list", "--count", "main..sbx/agent"]),
        "1"
    );
    assert_eq!(fx.git(&repo, &["status", "--porcelain"]), "");

    // The reverse direction: git removes our worktree; sbx notices and cleans up the rest.
    fx.git(&repo, &["worktree", "remove", wt.to_str().unwrap()]);
    let listed = host.list().unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0].dirty, None,
        "a removed worktree is reported missing"
    );
    let removed = host.remove("agent", true).unwrap();
    assert_eq!(removed.branch.as_deref(), Some("sbx/agent"));
    assert_eq!(fx.git(&repo, &["branch", "--list", "sbx/agent"]), "");
    assert!(host.list().unwrap().is_empty());
}

#[test]
fn registration_matches_git_worktree_add() {
    let fx = Fixture::new();
    let repo = rich_repo(&fx);
    let host = Host::open(&repo).unwrap();
    let ours = host.create("mine", None).unwrap().path;
    let theirs = fx.path("git-wt");
    fx.git(
        &repo,
        &[
            "worktree",
            "add",
            "-q",
            "-b",
            "by-git",
            theirs.to_str().unwrap(),
        ],
    );

    let admin_files = |id: &str| {
        let mut names: Vec<String> = std::fs::read_dir(repo.join(".git/worktrees").join(id))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with("logs") && n != "ORIG_HEAD")
            .collect();
        names.sort();
        names
    };
    assert_eq!(admin_files("mine"), admin_files("git-wt"));
    assert_eq!(
        read(&repo.join(".git/worktrees/mine"), "commondir"),
        read(&repo.join(".git/worktrees/git-wt"), "commondir")
    );
    assert_eq!(
        read(&repo.join(".git/worktrees/mine"), "HEAD"),
        "ref: refs/heads/sbx/mine\n"
    );
    assert_eq!(
        read(&repo.join(".git/worktrees/mine"), "gitdir").trim(),
        ours.join(".git").display().to_string()
    );

    // The same files with the same modes in both checkouts.
    let tree = |dir: &std::path::Path| {
        fx.git(dir, &["ls-files", "-s", "--debug"])
            .lines()
            .filter(|l| !l.starts_with(' '))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(tree(&ours), tree(&theirs));
    let files = fx.git(&theirs, &["ls-files"]);
    for path in files.lines() {
        let a = std::fs::symlink_metadata(ours.join(path)).unwrap();
        let b = std::fs::symlink_metadata(theirs.join(path)).unwrap();
        assert_eq!(a.permissions().mode(), b.permissions().mode(), "{path}");
        assert_eq!(
            a.file_type().is_symlink(),
            b.file_type().is_symlink(),
            "{path}"
        );
    }
    // `git worktree remove` works on ours exactly as on its own.
    fx.git(&repo, &["worktree", "remove", ours.to_str().unwrap()]);
    assert!(!ours.exists());
}

#[test]
fn auto_branch_is_numbered_and_named_branches_must_be_free() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    fx.git(&repo, &["branch", "sbx/dup"]);
    let host = Host::open(&repo).unwrap();
    assert_eq!(host.create("dup", None).unwrap().branch, "sbx/dup-2");
    let named = host.create("named", Some("feature/x")).unwrap();
    assert_eq!(named.branch, "feature/x");
    assert!(named.path.ends_with(".sbx/named-worktrees/feature/x"));
    assert!(matches!(
        host.create("again", Some("feature/x")),
        Err(CreateError::BranchExists { .. })
    ));
    // The user's own checked-out branch is never taken over.
    assert!(matches!(
        host.create("main-thief", Some("main")),
        Err(CreateError::BranchExists { .. })
    ));
    assert!(matches!(
        host.create("dup", None),
        Err(CreateError::SandboxExists { .. })
    ));
    // Failed creates leave nothing behind.
    assert_eq!(host.list().unwrap().len(), 2);
    assert!(!repo.join(".sbx/again-worktrees/feature").exists());
}

#[test]
fn unborn_bare_and_non_repositories_get_clear_errors() {
    let fx = Fixture::new();
    let empty = fx.path("empty");
    std::fs::create_dir(&empty).unwrap();
    fx.git(&empty, &["init", "-q", "-b", "main"]);
    let err = Host::open(&empty).unwrap().create("a", None).unwrap_err();
    assert!(matches!(err, CreateError::UnbornHead { .. }), "{err}");
    assert!(err.to_string().contains("first commit"), "{err}");

    let bare = fx.path("bare.git");
    fx.git(
        fx.dir.path(),
        &["init", "-q", "--bare", bare.to_str().unwrap()],
    );
    let err = Host::open(&bare).unwrap_err();
    assert!(matches!(err, OpenError::Bare { .. }), "{err}");
    assert!(err.to_string().contains("bare repository"), "{err}");

    let plain = fx.path("plain");
    std::fs::create_dir(&plain).unwrap();
    let err = Host::open(&plain).unwrap_err();
    assert!(matches!(err, OpenError::NotARepository { .. }), "{err}");
}

#[test]
fn detached_head_sandbox_has_no_merge_target() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let head = fx.git(&repo, &["rev-parse", "HEAD"]);
    fx.git(&repo, &["checkout", "-q", "--detach"]);
    let host = Host::open(&repo).unwrap();
    let sandbox = host.create("det", None).unwrap();
    assert_eq!(sandbox.base, head);
    assert_eq!(sandbox.base_branch, None);
    assert_eq!(
        fx.git(&sandbox.path, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "sbx/det"
    );
    write(&sandbox.path, "b.txt", "b\n");
    fx.commit_all(&sandbox.path, "work");
    let err = host.merge("det").unwrap_err().to_string();
    assert!(
        err.contains("detached HEAD") && err.contains("git merge sbx/det"),
        "{err}"
    );
    // The user's detached HEAD is untouched.
    assert_eq!(fx.git(&repo, &["rev-parse", "HEAD"]), head);
}

#[test]
fn worktreeinclude_copies_only_ignored_files_it_names() {
    let fx = Fixture::new();
    let repo = fx.repo(
        "repo",
        &[
            (".gitignore", ".env\n*.log\nconfig/local/\nbuild/\n"),
            (".worktreeinclude", "# secrets for local runs\n.env\nconfig/local/\n*.log\n!debug.log\nbuild/gen/*.toml\n"),
            ("tracked.txt", "t\n"),
        ],
    );
    write(&repo, ".env", "KEY=1\n");
    write(&repo, "app.log", "log\n");
    write(&repo, "debug.log", "negated\n");
    write(&repo, "config/local/settings.toml", "x = 1\n");
    write(&repo, "build/gen/out.toml", "gen\n");
    write(&repo, "build/other.o", "obj\n");
    write(&repo, "untracked.txt", "not ignored, not copied\n");
    let sandbox = Host::open(&repo).unwrap().create("inc", None).unwrap();
    let wt = &sandbox.path;
    assert_eq!(read(wt, ".env"), "KEY=1\n");
    assert_eq!(read(wt, "app.log"), "log\n");
    assert_eq!(read(wt, "config/local/settings.toml"), "x = 1\n");
    assert_eq!(read(wt, "build/gen/out.toml"), "gen\n");
    assert!(!wt.join("debug.log").exists(), "negated pattern");
    assert!(
        !wt.join("build/other.o").exists(),
        "ignored but not included"
    );
    assert!(!wt.join("untracked.txt").exists(), "untracked, not ignored");
    let mut included = sandbox.included.clone();
    included.sort();
    assert_eq!(
        included,
        [
            ".env",
            "app.log",
            "build/gen/out.toml",
            "config/local/settings.toml"
        ]
    );
    // Copied files are ignored in the worktree too, so its status stays clean.
    assert_eq!(fx.git(wt, &["status", "--porcelain"]), "");
}

#[test]
fn symlinked_sbx_dir_is_refused() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let elsewhere = fx.path("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, repo.join(".sbx")).unwrap();
    let err = Host::open(&repo).unwrap().create("a", None).unwrap_err();
    assert!(matches!(err, CreateError::UnsafePath { .. }), "{err}");
    assert_eq!(
        std::fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "nothing written through the symlink"
    );
}

#[test]
fn hostile_names_are_rejected_before_touching_anything() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let host = Host::open(&repo).unwrap();
    for sandbox in [
        "--upload-pack=touch /tmp/pwned",
        "../escape",
        "a/b",
        "-x",
        ".hidden",
        "",
    ] {
        assert!(
            matches!(host.create(sandbox, None), Err(CreateError::Name(_))),
            "{sandbox:?}"
        );
    }
    for branch in [
        "-f",
        "--orphan=x",
        "../../x",
        "a/../b",
        "x.lock",
        "a b",
        "HEAD",
    ] {
        assert!(
            matches!(host.create("ok", Some(branch)), Err(CreateError::Name(_))),
            "{branch:?}"
        );
    }
    assert!(!repo.join(".sbx").exists());
    assert_eq!(
        fx.git(&repo, &["branch", "--format=%(refname:short)"]),
        "main"
    );
}

#[test]
fn created_sandbox_is_a_clone_mode_free_branch_record() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let host = Host::open(&repo).unwrap();
    host.create("one", None).unwrap();
    let list = host.list().unwrap();
    assert_eq!(list[0].mode, Mode::Branch);
    assert_eq!(
        (list[0].ahead, list[0].behind, list[0].dirty),
        (0, 0, Some(false))
    );
}

#[test]
fn tampered_worktree_git_file_cannot_redirect_removal() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n")]);
    let victim = fx.repo("victim", &[("precious.txt", "keep me\n")]);
    let host = Host::open(&repo).unwrap();
    let wt = host.create("evil", None).unwrap().path;
    // The agent rewrites its `.git` file to point at another repository's git dir.
    std::fs::write(
        wt.join(".git"),
        format!("gitdir: {}\n", victim.join(".git").display()),
    )
    .unwrap();
    host.remove("evil", true).unwrap();
    assert!(!wt.exists());
    assert_eq!(read(&victim, "precious.txt"), "keep me\n");
    assert!(
        victim.join(".git/HEAD").exists(),
        "the other repository's git dir is intact"
    );
    fx.git(&victim, &["fsck", "--no-progress"]);
    assert_eq!(
        fx.git(&repo, &["worktree", "list", "--porcelain"])
            .matches("worktree ")
            .count(),
        1
    );
    fx.git(&repo, &["fsck", "--no-progress"]);
}
