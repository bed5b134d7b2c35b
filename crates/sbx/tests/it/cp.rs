//! `sbx cp` both ways, and the attacks a sandbox would try on it: symlinks to host files, in a workspace the host
//! can see.

use std::path::Path;

use crate::lifecycle::{Cleanup, context, namespaces_available, pids, wait_gone};

#[test]
fn cp_copies_both_ways_and_never_follows_sandbox_symlinks_on_the_host() {
    if !namespaces_available("cp_copies_both_ways_and_never_follows_sandbox_symlinks_on_the_host") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let ws = ctx.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let ws = std::fs::canonicalize(ws).unwrap();
    let ws_arg = ws.to_str().unwrap();
    ctx.ok(&["create", "-q", "--name", "box", "shell", ws_arg]);

    // Host → sandbox: a file (by name into a directory), a tree.
    let host = ctx.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("note.txt"), "hello sandbox\n").unwrap();
    std::fs::write(host.join("tree/sub/deep.txt"), "deep\n").unwrap();
    ctx.ok(&["cp", host.join("note.txt").to_str().unwrap(), "box:/tmp"]);
    assert_eq!(
        ctx.ok(&["exec", "box", "cat", "/tmp/note.txt"]),
        "hello sandbox\n"
    );
    ctx.ok(&["cp", host.join("tree").to_str().unwrap(), "box:/tmp/copied"]);
    assert_eq!(
        ctx.ok(&["exec", "box", "cat", "/tmp/copied/sub/deep.txt"]),
        "deep\n"
    );

    // Sandbox → host: a file outside any workspace, a tree with an executable.
    ctx.ok(&["exec", "box", "sh", "-c", "mkdir -p /tmp/out/d && echo made > /tmp/out/d/f && printf '#!/bin/sh\\n' > /tmp/out/run && chmod 755 /tmp/out/run"]);
    let dest = ctx.dir.path().join("dest");
    std::fs::create_dir_all(&dest).unwrap();
    ctx.ok(&[
        "cp",
        "box:/tmp/note.txt",
        dest.join("n.txt").to_str().unwrap(),
    ]);
    assert_eq!(
        std::fs::read_to_string(dest.join("n.txt")).unwrap(),
        "hello sandbox\n"
    );
    ctx.ok(&["cp", "box:/tmp/out", dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dest.join("out/d/f")).unwrap(),
        "made\n"
    );
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(dest.join("out/run"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o755
    );

    // The attack: in the shared workspace, links to the host's secrets. On the host these links really do point
    // at /etc/shadow and /etc; `sbx cp` must read them the way the sandbox sees them, never the host's way.
    ctx.ok(&["exec", "box", "sh", "-c", &format!(
        "ln -s /etc/shadow {ws_arg}/link && mkdir {ws_arg}/d && ln -s /etc {ws_arg}/d/etc && ln -s /etc/shadow {ws_arg}/d/s && echo ok > {ws_arg}/d/plain"
    )]);
    let shadow = std::fs::read("/etc/shadow").unwrap_or_default();
    let stolen = dest.join("stolen");
    let (code, _, err) = ctx.sbx(&["cp", "box:/ws-does-not-matter", stolen.to_str().unwrap()]);
    assert_ne!(code, 0, "{err}");
    let (code, _, err) = ctx.sbx(&[
        "cp",
        &format!("box:{ws_arg}/link"),
        stolen.to_str().unwrap(),
    ]);
    if stolen.exists() {
        let got = std::fs::read(&stolen).unwrap();
        assert!(
            shadow.is_empty() || got != shadow,
            "sbx cp copied the host's /etc/shadow"
        );
    }
    assert_ne!(
        code, 0,
        "the sandbox has no /etc/shadow of its own, so the copy fails: {err}"
    );
    let tree = dest.join("tree-out");
    let (code, _, err) = ctx.sbx(&["cp", &format!("box:{ws_arg}/d"), tree.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read_to_string(tree.join("plain")).unwrap(), "ok\n");
    assert!(
        std::fs::symlink_metadata(tree.join("etc")).is_err(),
        "symlinks are not recreated on the host"
    );
    assert!(std::fs::symlink_metadata(tree.join("s")).is_err());
    assert!(err.contains("skipped") && err.contains("symlink"), "{err}");

    // Sides are checked.
    let (code, _, err) = ctx.sbx(&["cp", "a", "b"]);
    assert_eq!(code, 1);
    assert!(err.contains("NAME:/path"), "{err}");

    let (sup, init) = pids(&ctx, "box");
    ctx.ok(&["rm", "-f", "box"]);
    wait_gone(sup);
    wait_gone(init);
    assert!(!Path::new(&ctx.home().join("state/sandboxes/box")).exists());
}

/// `cp -r` semantics both ways (an existing destination directory receives the source by name, an existing copy is
/// merged into), and files copied in belong to the user commands run as (what `sbx exec ... id` reports).
#[test]
fn cp_into_existing_directories_like_cp_r_and_copied_files_belong_to_the_sandbox_user() {
    if !namespaces_available(
        "cp_into_existing_directories_like_cp_r_and_copied_files_belong_to_the_sandbox_user",
    ) {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    ctx.ok(&["create", "-q", "--name", "box", "shell"]);

    // Host → sandbox: the first copy creates /tmp/in, the second lands inside it as /tmp/in/tree.
    let host = ctx.dir.path().join("host");
    std::fs::create_dir_all(host.join("tree/sub")).unwrap();
    std::fs::write(host.join("tree/sub/deep.txt"), "deep\n").unwrap();
    let tree = host.join("tree");
    ctx.ok(&["cp", tree.to_str().unwrap(), "box:/tmp/in"]);
    ctx.ok(&["cp", tree.to_str().unwrap(), "box:/tmp/in"]);
    assert_eq!(
        ctx.ok(&["exec", "box", "cat", "/tmp/in/sub/deep.txt"]),
        "deep\n"
    );
    assert_eq!(
        ctx.ok(&["exec", "box", "cat", "/tmp/in/tree/sub/deep.txt"]),
        "deep\n"
    );
    let user = ctx.ok(&["exec", "box", "sh", "-c", "echo \"$(id -u):$(id -g)\""]);
    let owners = ctx.ok(&[
        "exec",
        "box",
        "stat",
        "-c",
        "%u:%g",
        "/tmp/in",
        "/tmp/in/sub",
        "/tmp/in/sub/deep.txt",
        "/tmp/in/tree/sub/deep.txt",
    ]);
    assert_eq!(
        owners,
        user.repeat(4),
        "copied files belong to the sandbox's default user"
    );

    // Sandbox → host: into an existing directory by name, then merged into the existing copy.
    ctx.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        "mkdir -p /tmp/out/d && echo one > /tmp/out/d/f",
    ]);
    let dest = ctx.dir.path().join("dest");
    std::fs::create_dir_all(dest.join("out/d")).unwrap();
    std::fs::write(dest.join("out/d/f"), "old\n").unwrap();
    std::fs::write(dest.join("out/keep"), "kept\n").unwrap();
    ctx.ok(&["cp", "box:/tmp/out", dest.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(dest.join("out/d/f")).unwrap(),
        "one\n",
        "an existing file is replaced"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("out/keep")).unwrap(),
        "kept\n",
        "other files stay, as with cp -r"
    );
    // A trailing slash names the same existing directory.
    let slash = ctx.dir.path().join("slash");
    std::fs::create_dir_all(&slash).unwrap();
    ctx.ok(&["cp", "box:/tmp/out", &format!("{}/", slash.display())]);
    assert_eq!(
        std::fs::read_to_string(slash.join("out/d/f")).unwrap(),
        "one\n"
    );

    // A symlink where a directory would be merged is refused, and nothing is written where it points.
    let elsewhere = ctx.dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let linked = ctx.dir.path().join("linked");
    std::fs::create_dir_all(&linked).unwrap();
    std::os::unix::fs::symlink(&elsewhere, linked.join("out")).unwrap();
    let (code, _, err) = ctx.sbx(&["cp", "box:/tmp/out", linked.to_str().unwrap()]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("symlink"), "{err}");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);

    let (sup, init) = pids(&ctx, "box");
    ctx.ok(&["rm", "-f", "box"]);
    wait_gone(sup);
    wait_gone(init);
}
