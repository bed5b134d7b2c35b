//! `sbx policy ...`

use crate::context::TestContext;

fn rule_ids(ctx: &TestContext) -> Vec<String> {
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["policy", "ls", "--json"])).unwrap();
    json.as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["network"].as_array().unwrap().clone())
        .filter_map(|r| r["id"].as_str().map(str::to_owned))
        .collect()
}

#[test]
fn default_is_balanced_and_check_exit_codes() {
    let ctx = TestContext::new();
    let (code, out, _) = ctx.sbx(&[
        "policy",
        "check",
        "network",
        "https://api.anthropic.com/v1/messages",
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.starts_with("allow\tmatched-allow"), "{out}");
    let (code, out, _) = ctx.sbx(&["policy", "check", "network", "https://example.com/"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.starts_with("deny\tdefault-deny"), "{out}");
    assert!(
        out.contains("sbx policy allow network example.com"),
        "{out}"
    );
}

#[test]
fn allow_then_deny_then_remove() {
    let ctx = TestContext::new();
    let out = ctx.ok(&["policy", "allow", "network", "example.com,*.example.org"]);
    assert!(
        out.contains("allowed example.com, *.example.org for all sandboxes"),
        "{out}"
    );
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://example.com/x"])
            .0,
        0
    );
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://a.example.org/"])
            .0,
        0
    );
    // `*.` is exactly one more label.
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://a.b.example.org/"])
            .0,
        3
    );

    ctx.ok(&[
        "policy",
        "deny",
        "network",
        "example.com",
        "--method",
        "delete",
    ]);
    let (code, out, _) = ctx.sbx(&[
        "policy",
        "check",
        "network",
        "--method",
        "DELETE",
        "https://example.com/x",
    ]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("matched-deny"), "{out}");
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://example.com/x"])
            .0,
        0
    );

    let ids = rule_ids(&ctx);
    assert_eq!(ids.len(), 2, "{ids:?}");
    for id in &ids {
        ctx.ok(&["policy", "rm", "network", "--id", id]);
    }
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://example.com/x"])
            .0,
        3
    );
    let (code, _, err) = ctx.sbx(&["policy", "rm", "network", "--id", "nope"]);
    assert_eq!(code, 1);
    assert!(err.contains("no rule with id `nope`"), "{err}");
}

#[test]
fn sandbox_rules_apply_only_to_that_sandbox() {
    let ctx = TestContext::new();
    ctx.ok(&[
        "policy",
        "allow",
        "network",
        "--sandbox",
        "box1",
        "localhost:11434",
    ]);
    assert_eq!(
        ctx.sbx(&[
            "policy",
            "check",
            "network",
            "--sandbox",
            "box1",
            "http://localhost:11434/"
        ])
        .0,
        0
    );
    assert_eq!(
        ctx.sbx(&[
            "policy",
            "check",
            "network",
            "--sandbox",
            "box2",
            "http://localhost:11434/"
        ])
        .0,
        3
    );
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "http://localhost:11434/"])
            .0,
        3
    );
    let (code, _, err) = ctx.sbx(&["policy", "allow", "network", "--sandbox", "../etc", "x.com"]);
    assert_eq!(code, 1);
    assert!(err.contains("invalid sandbox name"), "{err}");
}

#[test]
fn enforced_company_layer_is_listed_and_wins() {
    let ctx = TestContext::new();
    ctx.write(
        &ctx.system_policy_dir().join("company.toml"),
        "name = \"acme\"\nenforced = true\n[[network]]\naction = \"deny\"\nhosts = [\"**.pastebin.com\"]\n",
    );
    ctx.ok(&[
        "policy",
        "allow",
        "network",
        "pastebin.com,www.pastebin.com",
    ]);
    let (code, out, _) = ctx.sbx(&["policy", "check", "network", "https://www.pastebin.com/"]);
    assert_eq!(code, 3, "{out}");
    assert!(out.contains("layer=\"acme\""), "{out}");
    let ls = ctx.ok(&["policy", "ls"]);
    assert!(
        ls.contains("company") && ls.contains("acme") && ls.contains("**.pastebin.com"),
        "{ls}"
    );
    assert!(ls.contains("enforced"), "{ls}");
}

#[test]
fn set_default_and_reset() {
    let ctx = TestContext::new();
    ctx.ok(&["policy", "set-default", "locked-down"]);
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://api.anthropic.com/"])
            .0,
        3
    );
    ctx.ok(&["policy", "set-default", "open"]);
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://example.com/"])
            .0,
        0
    );
    ctx.ok(&["policy", "allow", "network", "--sandbox", "b", "x.com"]);
    let (code, _, err) = ctx
        .cmd()
        .args(["policy", "reset"])
        .stdin(std::process::Stdio::null())
        .output()
        .map(|o| {
            (
                o.status.code().unwrap(),
                String::new(),
                String::from_utf8_lossy(&o.stderr).into_owned(),
            )
        })
        .unwrap();
    assert_eq!(code, 1);
    assert!(err.contains("--force"), "{err}");
    ctx.ok(&["policy", "reset", "--force"]);
    assert_eq!(
        ctx.sbx(&["policy", "check", "network", "https://example.com/"])
            .0,
        3
    );
    assert!(rule_ids(&ctx).is_empty());
    let (code, _, err) = ctx.sbx(&["policy", "set-default", "lax"]);
    assert_eq!(code, 1);
    assert!(err.contains("lax"), "{err}");
}

#[test]
fn bad_rules_are_refused_and_the_file_is_untouched() {
    let ctx = TestContext::new();
    ctx.ok(&["policy", "allow", "network", "good.com"]);
    let file = ctx.home().join("config/policy.toml");
    let before = std::fs::read_to_string(&file).unwrap();
    for bad in [
        &["policy", "allow", "network", "10.0.0.0/33"][..],
        &["policy", "allow", "network", "x.com", "--path", "/a/../b"],
    ] {
        let (code, _, err) = ctx.sbx(bad);
        assert_eq!(code, 1, "{bad:?}");
        assert!(err.contains("policy.toml"), "error names the file: {err}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before);
}

#[test]
fn hand_edited_bad_file_is_reported_with_line_and_column() {
    let ctx = TestContext::new();
    ctx.write(
        &ctx.home().join("config/policy.toml"),
        "preset = \"balanced\"\n[[network]]\naction = \"allow\"\nhosts = [\"a..b\"]\n",
    );
    let (code, _, err) = ctx.sbx(&["policy", "check", "network", "https://a.com/"]);
    assert_eq!(code, 1);
    assert!(err.contains("policy.toml:4:"), "{err}");
}

#[test]
fn concurrent_edits_lose_nothing() {
    let ctx = TestContext::new();
    let children: Vec<_> = (0..8)
        .map(|i| {
            ctx.cmd()
                .args([
                    "policy",
                    "allow",
                    "network",
                    &format!("host{i}.example.com"),
                ])
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    assert_eq!(rule_ids(&ctx).len(), 8);
    for i in 0..8 {
        assert_eq!(
            ctx.sbx(&[
                "policy",
                "check",
                "network",
                &format!("https://host{i}.example.com/")
            ])
            .0,
            0
        );
    }
}

#[test]
fn log_shows_blocked_and_allowed_tables() {
    use sbx_audit::{AuditLog, Decision, Event, Proxy, WriterConfig};
    let ctx = TestContext::new();
    let dir = ctx.home().join("state/audit");
    let (audit, guard) = AuditLog::open(&dir, WriterConfig::default()).unwrap();
    for _ in 0..2 {
        audit
            .record(
                Event::network("box1", "evil.example", 443, Proxy::Forward, Decision::Deny)
                    .explained(None, None, "default-deny"),
            )
            .unwrap();
    }
    audit
        .record(
            Event::network(
                "box2",
                "api.github.com",
                443,
                Proxy::Forward,
                Decision::Allow,
            )
            .explained(Some("allow **.github.com"), Some("user"), "matched-allow"),
        )
        .unwrap();
    guard.close().unwrap();

    let out = ctx.ok(&["policy", "log"]);
    assert!(
        out.contains("evil.example") && out.contains("api.github.com"),
        "{out}"
    );
    assert!(
        out.contains("default-deny") && out.contains("matched-allow"),
        "{out}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["policy", "log", "box1", "--json"])).unwrap();
    assert_eq!(json["blocked"].as_array().unwrap().len(), 1, "{json}");
    assert_eq!(json["blocked"][0]["count"], 2, "{json}");
    assert!(json["allowed"].as_array().unwrap().is_empty(), "{json}");
}
