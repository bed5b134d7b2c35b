//! Fuzzes what sbx-worktree accepts from untrusted input: sandbox and branch names (which end up in ref names,
//! paths and git command lines) and `.worktreeinclude` files. Names must be accepted or refused without
//! panicking, and every accepted name must keep the invariants the crate relies on; any pattern file must parse
//! and answer matches without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sbx_worktree::{BranchName, SandboxName, WorktreeInclude};

/// What no accepted name may contain anywhere: option injection, traversal, ref-format breakers.
fn assert_safe_component_rules(name: &str) {
    assert!(!name.starts_with('-'), "{name:?}: reads as an option");
    assert!(!name.contains(".."), "{name:?}: traversal or a ref range");
    assert!(!name.contains("@{"), "{name:?}: reflog syntax");
    assert!(!name.ends_with('.') && !name.ends_with('/'), "{name:?}");
    assert!(
        !name.bytes().any(|b| b.is_ascii_control()
            || matches!(b, b' ' | b'~' | b'^' | b':' | b'?' | b'*' | b'[' | b'\\')),
        "{name:?}: a character git refuses in ref names"
    );
    for component in name.split('/') {
        assert!(!component.is_empty() && !component.starts_with('.'), "{name:?}: {component:?}");
        assert!(!component.ends_with(".lock"), "{name:?}: {component:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(name) = SandboxName::new(text) {
            assert_safe_component_rules(name.as_str());
            assert!(!name.as_str().contains('/'), "{name:?}: a sandbox name is one path component");
            assert!(name.as_str().len() <= 64);
            // The auto branch built from it must be a valid branch too.
            BranchName::new(&format!("sbx/{name}")).expect("auto branch of a valid sandbox name");
        }
        if let Ok(branch) = BranchName::new(text) {
            assert_safe_component_rules(branch.as_str());
            assert!(branch.as_str() != "HEAD" && branch.as_str() != "@");
            assert_eq!(branch.full_ref(), format!("refs/heads/{text}"));
        }
    }
    let include = WorktreeInclude::parse(data);
    assert!(include.len() <= data.split(|b| *b == b'\n').count());
    for line in data.split(|b| *b == b'\n').take(16) {
        let _ = include.includes(line, false);
        let _ = include.includes(line, true);
        let _ = include.reaches_inside(line);
    }
});
