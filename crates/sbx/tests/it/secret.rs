//! `sbx secret ...` and the secret store line of `sbx doctor`.

use std::path::Path;

use crate::context::TestContext;

fn listed(ctx: &TestContext) -> Vec<serde_json::Value> {
    let out = ctx.ok(&["secret", "ls", "--json"]);
    serde_json::from_str::<serde_json::Value>(&out)
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn entry<'a>(
    rows: &'a [serde_json::Value],
    service: &str,
    sandbox: Option<&str>,
) -> Option<&'a serde_json::Value> {
    rows.iter()
        .find(|r| r["service"] == service && r["sandbox"].as_str() == sandbox)
}

/// Every file below `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn assert_not_on_disk(ctx: &TestContext, values: &[&str]) {
    let files = files_under(&ctx.home());
    assert!(!files.is_empty());
    for f in files {
        let bytes = std::fs::read(&f).unwrap();
        for v in values {
            assert!(
                !bytes.windows(v.len()).any(|w| w == v.as_bytes()),
                "{} contains the secret value {v}",
                f.display()
            );
        }
    }
}

#[test]
fn set_from_stdin_and_token_then_ls_never_shows_values() {
    let ctx = TestContext::new();
    let (code, out, err) = ctx.sbx_stdin(&["secret", "set", "anthropic"], "sk-ant-stdin-VALUE-1\n");
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("stored anthropic for all sandboxes"), "{out}");
    ctx.ok(&["secret", "set", "-g", "openai", "-t", "sk-openai-TOKEN-2"]);
    let (code, _, err) = ctx.sbx_stdin(
        &["secret", "set", "--sandbox", "dev", "github"],
        "ghp_SANDBOX-3",
    );
    assert_eq!(code, 0, "{err}");

    let rows = listed(&ctx);
    assert_eq!(rows.len(), 3, "{rows:?}");
    let anthropic = entry(&rows, "anthropic", None).unwrap();
    assert_eq!(anthropic["scope"], "global");
    assert_eq!(anthropic["backend"], "encrypted-file");
    let github = entry(&rows, "github", Some("dev")).unwrap();
    assert_eq!(github["scope"], "sandbox");
    for listing in [
        ctx.ok(&["secret", "ls", "--json"]),
        ctx.ok(&["secret", "ls"]),
    ] {
        for v in ["sk-ant-stdin-VALUE-1", "sk-openai-TOKEN-2", "ghp_SANDBOX-3"] {
            assert!(!listing.contains(v), "{listing}");
        }
    }
    let human = ctx.ok(&["secret", "ls"]);
    assert!(human.contains("sandbox:dev"), "{human}");
    assert_not_on_disk(
        &ctx,
        &["sk-ant-stdin-VALUE-1", "sk-openai-TOKEN-2", "ghp_SANDBOX-3"],
    );
}

#[test]
fn empty_value_is_refused_and_nothing_is_stored() {
    let ctx = TestContext::new();
    let (code, _, err) = ctx.sbx_stdin(&["secret", "set", "openai"], "");
    assert_ne!(code, 0);
    assert!(err.contains("empty"), "{err}");
    assert!(listed(&ctx).is_empty());
}

#[test]
fn rm_removes_only_the_named_scope() {
    let ctx = TestContext::new();
    ctx.ok(&["secret", "set", "anthropic", "-t", "a-global"]);
    ctx.ok(&[
        "secret",
        "set",
        "anthropic",
        "--sandbox",
        "dev",
        "-t",
        "a-dev",
    ]);
    ctx.ok(&["secret", "rm", "--sandbox", "dev", "anthropic"]);
    let rows = listed(&ctx);
    assert!(entry(&rows, "anthropic", Some("dev")).is_none(), "{rows:?}");
    assert!(entry(&rows, "anthropic", None).is_some(), "{rows:?}");
    let (code, _, err) = ctx.sbx(&["secret", "rm", "--sandbox", "dev", "anthropic"]);
    assert_eq!(code, 1);
    assert!(err.contains("no secret anthropic for sandbox dev"), "{err}");
    ctx.ok(&["secret", "rm", "-g", "anthropic"]);
    assert!(listed(&ctx).is_empty());
}

#[test]
fn set_custom_binds_hosts_and_can_be_set_again() {
    let ctx = TestContext::new();
    let (code, out, err) = ctx.sbx_stdin(
        &[
            "secret",
            "set-custom",
            "--host",
            "api.internal.example,*.hooks.example",
            "--env",
            "INTERNAL_TOKEN",
            "--body",
        ],
        "custom-SECRET-4\n",
    );
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("internal-token"), "{out}");
    let rows = listed(&ctx);
    assert_eq!(
        entry(&rows, "internal-token", None).unwrap()["scope"],
        "global"
    );
    let catalog = std::fs::read_to_string(ctx.home().join("config/providers.toml")).unwrap();
    let parsed: toml::Value = toml::from_str(&catalog).unwrap();
    let p = &parsed["provider"][0];
    assert_eq!(p["env"][0].as_str(), Some("INTERNAL_TOKEN"));
    let hosts: Vec<&str> = p["hosts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect();
    assert_eq!(hosts, ["api.internal.example", "*.hooks.example"]);
    assert_eq!(p["apply"][0]["body"].as_bool(), Some(true));
    // Once defined, it is a known service for `secret set`.
    ctx.ok(&[
        "secret",
        "set",
        "internal-token",
        "--sandbox",
        "dev",
        "-t",
        "custom-DEV-5",
    ]);
    // A built-in name cannot be shadowed, and bad hosts are refused before anything is written.
    let (code, _, err) = ctx.sbx(&[
        "secret",
        "set-custom",
        "--host",
        "x.example",
        "--env",
        "X_KEY",
        "--name",
        "anthropic",
        "-t",
        "v",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("built-in provider"), "{err}");
    let (code, _, err) = ctx.sbx(&[
        "secret",
        "set-custom",
        "--host",
        "a/b",
        "--env",
        "Y_KEY",
        "-t",
        "v",
    ]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("a/b"), "{err}");
    assert_not_on_disk(&ctx, &["custom-SECRET-4", "custom-DEV-5"]);
}

#[test]
fn import_takes_recognised_variables_from_the_environment() {
    let ctx = TestContext::new();
    let out = ctx
        .cmd()
        .args(["secret", "import"])
        .env("ANTHROPIC_API_KEY", "sk-ant-IMPORTED-6")
        .env("GH_TOKEN", "sbx-ph-github-notreal")
        .env_remove("GITHUB_TOKEN")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("imported anthropic from ANTHROPIC_API_KEY"),
        "{stdout}"
    );
    let rows = listed(&ctx);
    assert!(entry(&rows, "anthropic", None).is_some(), "{rows:?}");
    // A placeholder is never imported as if it were a real key.
    assert!(entry(&rows, "github", None).is_none(), "{rows:?}");
    assert_not_on_disk(&ctx, &["sk-ant-IMPORTED-6"]);
}

#[test]
fn unknown_service_lists_the_catalog() {
    let ctx = TestContext::new();
    let (code, _, err) = ctx.sbx(&["secret", "set", "antropic", "-t", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("unknown service `antropic`"), "{err}");
    for known in ["anthropic", "openai", "github", "aws"] {
        assert!(err.contains(known), "{err}");
    }
    assert!(err.contains("set-custom"), "{err}");
    let (code, _, err) = ctx.sbx(&["secret", "set", "openai", "--sandbox", "../x", "-t", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid sandbox name"), "{err}");
}

#[test]
fn doctor_names_the_secret_backend() {
    let ctx = TestContext::new();
    let json: serde_json::Value = serde_json::from_str(&ctx.ok(&["doctor", "--json"])).unwrap();
    let store = &json["secret_store"];
    assert_eq!(store["backend"], "encrypted-file", "{json}");
    assert!(
        store["location"]
            .as_str()
            .unwrap()
            .contains("state/secrets"),
        "{json}"
    );
    assert!(!store["reason"].as_str().unwrap().is_empty());
    let human = ctx.ok(&["doctor"]);
    assert!(
        human.contains("secret store:       encrypted-file"),
        "{human}"
    );
}
