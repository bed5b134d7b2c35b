//! Property tests of name validation against git itself: every name sbx-worktree accepts is one that
//! `git check-ref-format --branch` accepts too, can never be read as an option, and cannot leave `.sbx/` as a
//! path. Names are drawn from an alphabet heavy in the characters attackers use.

use std::path::{Component, Path};
use std::process::Command;

use proptest::prelude::*;
use sbx_worktree::{BranchName, SandboxName};

/// `git check-ref-format --branch <name>`: git's own verdict on a branch name.
fn git_accepts_branch(name: &str) -> bool {
    Command::new("git")
        .args(["check-ref-format", "--branch", name])
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .output()
        .is_ok_and(|out| out.status.success())
}

fn stays_inside(base: &Path, rel: &str) -> bool {
    let joined = base.join(rel);
    joined.starts_with(base)
        && Path::new(rel)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Short strings over letters, digits and every character with a meaning to git, shells or paths.
fn hostile_name() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        "[a-z0-9]{1,4}",
        Just("-".to_owned()),
        Just(".".to_owned()),
        Just("..".to_owned()),
        Just("/".to_owned()),
        Just("@{".to_owned()),
        Just("@".to_owned()),
        Just(".lock".to_owned()),
        Just("HEAD".to_owned()),
        "[ ~^:?*\\[\\\\\\x00-\\x1f\\x7f$;`'\"]",
        "[\u{80}-\u{10ffff}]",
    ];
    proptest::collection::vec(pieces, 1..6).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn accepted_branch_names_are_accepted_by_git_and_harmless(name in hostile_name()) {
        if let Ok(branch) = BranchName::new(&name) {
            prop_assert!(git_accepts_branch(&name), "git refuses {name:?}");
            prop_assert!(!name.starts_with('-'));
            prop_assert!(stays_inside(Path::new("/repo/.sbx/s-worktrees"), branch.as_str()), "{name:?}");
        }
    }

    #[test]
    fn accepted_sandbox_names_make_valid_branches_and_single_path_components(name in hostile_name()) {
        if let Ok(sandbox) = SandboxName::new(&name) {
            let auto = format!("sbx/{sandbox}");
            prop_assert!(BranchName::new(&auto).is_ok(), "{auto:?}");
            prop_assert!(git_accepts_branch(&auto), "git refuses {auto:?}");
            prop_assert!(!name.starts_with('-'));
            let dir = format!("{sandbox}-worktrees");
            prop_assert_eq!(Path::new(&dir).components().count(), 1);
            prop_assert!(stays_inside(Path::new("/repo/.sbx"), &dir));
        }
    }

    #[test]
    fn ordinary_names_are_accepted(name in "[a-z][a-z0-9_-]{0,20}(/[a-z0-9][a-z0-9_-]{0,10}(\\.[a-z0-9]{1,3})?)?") {
        prop_assert!(BranchName::new(&name).is_ok(), "{name:?}");
        prop_assert!(git_accepts_branch(&name));
    }
}
