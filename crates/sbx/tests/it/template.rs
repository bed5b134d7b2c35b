//! `sbx template build|ls|rm` with the local host variant (no network), and how create picks a template.

use crate::context::TestContext;

fn ls_json(ctx: &TestContext) -> Vec<serde_json::Value> {
    let out = ctx.ok(&["template", "ls", "--json"]);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("template ls --json is not JSON ({e}): {out}"))
}

#[test]
fn build_is_cached_listed_and_removed() {
    let ctx = TestContext::new();
    assert!(ls_json(&ctx).is_empty());
    let (code, _, err) = ctx.sbx(&["template", "build", "mini", "--variant", "host"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("built template mini"), "{err}");
    assert!(err.contains("[1/"), "progress steps are shown: {err}");
    let (code, _, err) = ctx.sbx(&["template", "build", "mini", "--variant", "host"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        err.contains("already built"),
        "the second build is served from the cache: {err}"
    );
    let rows = ls_json(&ctx);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["name"], "mini");
    assert_eq!(rows[0]["variant"], "host");
    assert!(rows[0]["rootfs_bytes"].as_u64().unwrap() > 0);
    let table = ctx.ok(&["template", "ls"]);
    assert!(table.contains("NAME") && table.contains("mini"), "{table}");
    ctx.ok(&["template", "rm", "mini"]);
    assert!(ls_json(&ctx).is_empty());
    let (code, _, err) = ctx.sbx(&["template", "rm", "mini"]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no template named `mini`") && err.contains("sbx template ls"),
        "{err}"
    );
}

#[test]
fn bad_names_and_unknown_templates_are_named() {
    let mut ctx = TestContext::new();
    let (code, _, err) = ctx.sbx(&["template", "build", "../escape", "--variant", "host"]);
    assert_ne!(code, 0);
    assert!(err.contains("invalid template name `../escape`"), "{err}");
    // The agent binary is only checked for existence before the template is resolved.
    ctx.set_env("SBX_GUEST_BIN", "/bin/sh");
    let ws = ctx.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    let (code, _, err) = ctx.sbx(&[
        "create",
        "--isolation",
        "namespaces",
        "-t",
        "nosuch",
        "shell",
        ws.to_str().unwrap(),
    ]);
    assert_ne!(code, 0);
    assert!(
        err.contains("no template named `nosuch`") && err.contains("sbx template build nosuch"),
        "{err}"
    );
    let (code, _, err) = ctx.sbx(&["create", "-m", "64M", "shell", ws.to_str().unwrap()]);
    assert_ne!(code, 0);
    assert!(err.contains("64M"), "{err}");
}

#[test]
fn first_use_builds_the_selected_template_after_saying_so() {
    let mut ctx = TestContext::new();
    ctx.set_env("SBX_GUEST_BIN", "/bin/sh");
    let ws = ctx.dir.path().join("ws");
    std::fs::create_dir_all(&ws).unwrap();
    // SBX_TEMPLATE=host (set by the context): the first create builds it, announcing what and how long. The
    // sandbox itself cannot start with /bin/sh as the agent; what matters here is the template step before it.
    let (_, _, err) = ctx.sbx(&[
        "create",
        "--isolation",
        "namespaces",
        "shell",
        ws.to_str().unwrap(),
    ]);
    assert!(
        err.contains("first use: building the host template") && err.contains("about a second"),
        "{err}"
    );
    let rows = ls_json(&ctx);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["name"], "host");
    assert!(
        rows[0]["image"].is_null(),
        "the host template for namespaces skips the image"
    );
    let (_, _, err) = ctx.sbx(&[
        "create",
        "--isolation",
        "namespaces",
        "shell",
        ws.to_str().unwrap(),
    ]);
    assert!(!err.contains("first use"), "built once: {err}");
}
