//! Clone mode: a private clone exposed to the host as remote `sandbox-<name>`.

mod common;

use common::{Fixture, read, write};
use sbx_worktree::{Host, MergeOutcome, Mode};

#[test]
fn clone_is_private_fetchable_mergeable_and_removable() {
    let fx = Fixture::new();
    let repo = fx.repo("repo", &[("a.txt", "a\n"), ("bin/tool", "#!/bin/sh\n")]);
    let host = Host::open(&repo).unwrap();
    let sandbox = host.create_clone("cl").unwrap();
    assert_eq!(sandbox.mode, Mode::Clone);
    let clone = &sandbox.path;
    assert!(clone.ends_with(".sbx/cl-clone"));
    assert_eq!(read(clone, "a.txt"), "a\n");
    assert_eq!(
        fx.git(clone, &["rev-parse", "--abbrev-ref", "HEAD"]),
        "sbx/cl"
    );
    assert_eq!(fx.git(clone, &["status", "--porcelain"]), "");
    // Its own object store, no alternates or shared inodes, and no way back to the host.
    assert!(!clone.join(".git/objects/info/alternates").exists());
    assert_eq!(fx.git(clone, &["remote"]), "");
    assert_eq!(fx.git(&repo, &["remote"]), "sandbox-cl");
    assert_eq!(fx.git(&repo, &["status", "--porcelain"]), "");

    write(clone, "agent.txt", "agent\n");
    let tip = fx.commit_all(clone, "agent work");
    fx.git(&repo, &["fetch", "-q", "sandbox-cl"]);
    assert_eq!(fx.git(&repo, &["rev-parse", "sandbox-cl/sbx/cl"]), tip);
    let list = host.list().unwrap();
    assert_eq!((list[0].ahead, list[0].dirty), (1, Some(false)));
    assert!(host.diff("cl").unwrap().patch.contains("+agent"));

    // Unmerged commits protect the clone from removal.
    assert!(host.remove("cl", false).is_err());
    assert!(matches!(
        host.merge("cl").unwrap(),
        MergeOutcome::FastForward { .. }
    ));
    assert_eq!(read(&repo, "agent.txt"), "agent\n");
    host.remove("cl", false).unwrap();
    assert!(!clone.exists());
    assert_eq!(fx.git(&repo, &["remote"]), "");
    assert_eq!(fx.git(&repo, &["for-each-ref", "refs/remotes/"]), "");
}
