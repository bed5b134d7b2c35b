//! Layers, enforcement, presets, settings, models, mounts and the private-address exception.

mod common;

use std::net::IpAddr;
use std::path::Path;

use common::{https, layered, rule, user_policy};
use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer, Preset, Protocol, Reason};

use LayerLevel::{Company, Org, Sandbox, Team, User};

#[test]
fn every_layers_denies_apply() {
    let p = layered(&[
        (Sandbox, &rule("allow", &["**.example.com"])),
        (Company, &rule("deny", &["bad.example.com"])),
    ]);
    assert!(https(&p, "good.example.com").allowed);
    let d = https(&p, "bad.example.com");
    assert_eq!(d.reason(), Reason::MatchedDeny);
    assert_eq!(d.explanation.layer.as_deref(), Some("company.toml"));
    // A sandbox deny also beats a company allow.
    let p = layered(&[
        (Company, &rule("allow", &["x.com"])),
        (Sandbox, &rule("deny", &["x.com"])),
    ]);
    assert_eq!(https(&p, "x.com").reason(), Reason::MatchedDeny);
}

#[test]
fn enforced_layer_makes_lower_allows_grant_nothing() {
    let company = format!(
        "name = \"acme\"\nenforced = true\n{}",
        rule("allow", &["api.anthropic.com"])
    );
    let p = layered(&[
        (Company, &company),
        (Team, &rule("allow", &["team.example.com"])),
        (User, &rule("deny", &["api.anthropic.com"])),
    ]);
    assert!(
        !https(&p, "api.anthropic.com").allowed,
        "lower denies still apply"
    );
    let d = https(&p, "team.example.com");
    assert!(!d.allowed);
    assert_eq!(d.reason().to_string(), "enforced-by-company");
    assert_eq!(d.explanation.layer.as_deref(), Some("team.toml"));
    assert!(
        d.explanation
            .rule
            .as_deref()
            .is_some_and(|r| r.starts_with("allow team.example.com"))
    );
    assert!(
        d.hint("team.example.com", 443).is_none(),
        "allowing below the enforced layer would not help"
    );
    assert_eq!(https(&p, "other.com").reason(), Reason::DefaultDeny);
}

#[test]
fn enforcement_cuts_at_the_highest_enforced_layer() {
    let p = layered(&[
        (
            Org,
            &format!("enforced = true\n{}", rule("allow", &["org.com"])),
        ),
        (Company, &rule("allow", &["company.com"])),
        (Team, &rule("allow", &["team.com"])),
    ]);
    assert!(https(&p, "company.com").allowed);
    assert!(
        https(&p, "org.com").allowed,
        "the enforced layer's own allows grant"
    );
    assert_eq!(
        https(&p, "team.com").reason().to_string(),
        "enforced-by-org"
    );
}

#[test]
fn presets() {
    let open = Policy::new(vec![(User, PolicyLayer::preset(Preset::Open))]);
    assert_eq!(
        https(&open, "anything.example").reason(),
        Reason::DefaultAllow
    );
    assert!(
        open.check_network(&NetworkRequest::new("db", 5432, Protocol::Tcp))
            .allowed
    );

    let locked = Policy::new(vec![(User, PolicyLayer::preset(Preset::LockedDown))]);
    for host in [
        "api.anthropic.com",
        "api.openai.com",
        "github.com",
        "registry.npmjs.org",
    ] {
        assert_eq!(https(&locked, host).reason(), Reason::DefaultDeny, "{host}");
    }

    let balanced = Policy::new(vec![(User, PolicyLayer::preset(Preset::Balanced))]);
    for host in [
        "api.anthropic.com",
        "api.openai.com",
        "registry.npmjs.org",
        "pypi.org",
        "files.pythonhosted.org",
        "index.crates.io",
        "github.com",
        "objects.githubusercontent.com",
        "ghcr.io",
        "s3.us-east-1.amazonaws.com",
        "deb.debian.org",
        "crl3.digicert.com",
    ] {
        let d = https(&balanced, host);
        assert!(d.allowed, "{host}: {d}");
        assert!(
            d.explanation
                .rule
                .as_deref()
                .is_some_and(|r| r.contains("preset balanced, group")),
            "{d}"
        );
    }
    let d = https(&balanced, "example.com");
    assert_eq!(d.reason(), Reason::DefaultDeny);
    assert_eq!(
        d.hint("example.com", 443).as_deref(),
        Some("sbx policy allow network example.com")
    );
    // Ports: :443 only unless noted; OS mirrors and OCSP/CRL also on :80.
    let http = |host| {
        balanced
            .check_network(&NetworkRequest::new(host, 80, Protocol::Http))
            .allowed
    };
    assert!(!http("api.anthropic.com"));
    assert!(http("archive.ubuntu.com"));
    assert!(http("ocsp.digicert.com"));
}

#[test]
fn more_restrictive_preset_wins_the_default() {
    let p = layered(&[
        (Company, "preset = \"balanced\"\n"),
        (User, "preset = \"open\"\n"),
    ]);
    assert_eq!(https(&p, "random.example").reason(), Reason::DefaultDeny);
    let p = layered(&[
        (Company, "enforced = true\n"),
        (User, "preset = \"open\"\n"),
    ]);
    assert_eq!(
        https(&p, "random.example").reason().to_string(),
        "enforced-by-company"
    );
}

#[test]
fn user_allows_on_top_of_locked_down() {
    let p = layered(&[
        (Team, "preset = \"locked-down\"\n"),
        (User, &rule("allow", &["api.anthropic.com"])),
    ]);
    assert!(https(&p, "api.anthropic.com").allowed);
    assert!(!https(&p, "api.openai.com").allowed);
}

#[test]
fn tri_state_settings_most_restrictive_wins() {
    let p = layered(&[
        (Company, "[settings]\ndocker = \"deny\"\n"),
        (
            User,
            "[settings]\ndocker = \"allow\"\n\"secrets.custom\" = \"allow\"\n",
        ),
    ]);
    let docker = p.check_setting("docker");
    assert!(!docker.allowed);
    assert_eq!(docker.reason(), Reason::MatchedDeny);
    assert_eq!(
        docker.explanation.rule.as_deref(),
        Some("\"docker\" = \"deny\" (company.toml:2:10)")
    );
    assert!(
        p.check_setting("secrets.custom").allowed,
        "unset above, allowed below: allowed"
    );
    assert_eq!(
        p.check_setting("isolation.namespaces").reason(),
        Reason::DefaultDeny,
        "unset everywhere"
    );
    assert_eq!(
        p.check_setting("no.such.setting").reason(),
        Reason::DefaultDeny
    );

    let enforced = layered(&[
        (Company, "enforced = true\n"),
        (User, "[settings]\ndocker = \"allow\"\n"),
    ]);
    assert_eq!(
        enforced.check_setting("docker").reason().to_string(),
        "enforced-by-company"
    );
}

#[test]
fn model_rules() {
    let p = layered(&[
        (
            Company,
            "[[model]]\naction = \"deny\"\nmodels = [\"claude-*-opus-*\"]\n",
        ),
        (
            User,
            "[[model]]\naction = \"allow\"\nmodels = [\"claude-*\"]\nhosts = [\"api.anthropic.com\"]\n",
        ),
    ]);
    let d = p.check_model("api.anthropic.com", "claude-3-opus-20240229");
    assert_eq!(d.reason(), Reason::MatchedDeny);
    assert_eq!(
        d.explanation.rule.as_deref(),
        Some("deny model claude-*-opus-* (company.toml:2:10)")
    );
    assert!(
        p.check_model("API.anthropic.com.", "Claude-Sonnet-4")
            .allowed
    );
    let d = p.check_model("api.anthropic.com", "gpt-4o");
    assert_eq!(
        d.reason(),
        Reason::DefaultDeny,
        "allow rules for a host make an allowlist"
    );
    assert_eq!(
        p.check_model("api.openai.com", "gpt-4o").reason(),
        Reason::DefaultAllow
    );
    assert_eq!(
        p.check_model("api.openai.com", "claude-x-opus-1").reason(),
        Reason::MatchedDeny
    );
}

#[test]
fn private_addresses_need_an_explicit_rule() {
    let p = layered(&[
        (
            Team,
            &rule(
                "allow",
                &[
                    "10.0.0.0/8:5432",
                    "[fd00::]/8:5432",
                    "localhost:11434",
                    "internal.corp",
                ],
            ),
        ),
        (
            User,
            &format!("preset = \"open\"\n{}", rule("deny", &["10.9.0.0/16"])),
        ),
    ]);
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert!(p.allows_address(ip("10.1.2.3"), 5432, "db.corp").allowed);
    assert!(p.allows_address(ip("fd00::7"), 5432, "db6.corp").allowed);
    assert!(
        p.allows_address(ip("127.0.0.1"), 11434, "localhost")
            .allowed
    );
    assert!(p.allows_address(ip("::1"), 11434, "localhost").allowed);
    assert!(p.allows_address(ip("::ffff:10.1.2.3"), 5432, "x").allowed);
    let no = p.allows_address(ip("10.1.2.3"), 22, "db.corp");
    assert_eq!(no.reason(), Reason::PrivateAddress);
    assert_eq!(
        no.hint("10.1.2.3", 22).as_deref(),
        Some("sbx policy allow network 10.1.2.3:22")
    );
    // A host-name allow (or the open preset) is not enough for a private address.
    assert_eq!(
        p.allows_address(ip("10.5.5.5"), 443, "internal.corp")
            .reason(),
        Reason::PrivateAddress
    );
    assert_eq!(
        p.allows_address(ip("127.0.0.1"), 8080, "localhost")
            .reason(),
        Reason::PrivateAddress
    );
    // Denies still win.
    assert_eq!(
        p.allows_address(ip("10.9.1.1"), 5432, "db").reason(),
        Reason::MatchedDeny
    );
    let named = layered(&[(
        Team,
        &format!(
            "{}{}",
            rule("allow", &["10.0.0.0/8"]),
            rule("deny", &["evil.corp"])
        ),
    )]);
    assert_eq!(
        named
            .allows_address(ip("10.0.0.1"), 443, "evil.corp")
            .reason(),
        Reason::MatchedDeny
    );
    assert!(
        named
            .allows_address(ip("10.0.0.1"), 443, "fine.corp")
            .allowed
    );
}

#[test]
fn mount_defaults() {
    let p = Policy::new(vec![(User, PolicyLayer::preset(Preset::Balanced))]);
    let home = Path::new("/home/u");
    let check = |path: &str| p.check_mount(Path::new(path), home);
    assert!(check("/home/u/src/project").allowed);
    assert!(check("/srv/data").allowed);
    for denied in [
        "/home/u",
        "/home/u/",
        "/home",
        "/",
        "/home/u/src/../",
        "/home/u/.ssh",
        "/home/u/.ssh/id_ed25519",
        "/home/u/.aws",
        "/home/u/.gnupg",
        "/home/u/.config/gcloud",
        "/home/u/.config",
        "/home/u/.kube/config",
        "/home/u/.docker",
        "/home/u/src/../.ssh",
    ] {
        let d = check(denied);
        assert!(!d.allowed, "{denied}: {d}");
        assert_eq!(d.reason(), Reason::ProtectedPath, "{denied}");
    }
    assert_eq!(check("relative").reason(), Reason::InvalidRequest);
    let named = p.check_mount_within(Path::new("/etc"), home, &[Path::new("/home/u/src")]);
    assert_eq!(named.reason(), Reason::NotNamed);
    assert!(
        p.check_mount_within(
            Path::new("/home/u/src/x"),
            home,
            &[Path::new("/home/u/src")]
        )
        .allowed
    );
}

#[test]
fn mount_rules_and_settings() {
    let p = layered(&[
        (
            Company,
            "[[mount]]\naction = \"deny\"\npaths = [\"/srv/secrets\"]\n",
        ),
        (
            User,
            "preset = \"balanced\"\n[settings]\n\"mount.home\" = \"allow\"\n[[mount]]\naction = \"allow\"\npaths = [\"~/.kube\", \"~/src/**\", \"/srv/**\"]\n",
        ),
    ]);
    let home = Path::new("/home/u");
    let check = |path: &str| p.check_mount(Path::new(path), home);
    assert!(check("/home/u").allowed, "mount.home = allow");
    assert!(
        check("/home/u/.kube").allowed,
        "explicitly named protected dir"
    );
    assert_eq!(check("/home/u/.ssh").reason(), Reason::ProtectedPath);
    assert_eq!(check("/srv/secrets/x").reason(), Reason::MatchedDeny);
    assert_eq!(
        check("/srv").reason(),
        Reason::MatchedDeny,
        "would contain a denied path"
    );
    assert!(check("/srv/public").allowed);
    assert_eq!(
        check("/opt/x").reason(),
        Reason::DefaultDeny,
        "outside every [[mount]] allow"
    );

    let no_paths = layered(&[
        (Company, "[settings]\n\"mount.paths\" = \"deny\"\n"),
        (User, "preset = \"open\"\n"),
    ]);
    assert_eq!(
        no_paths
            .check_mount(Path::new("/home/u/src"), home)
            .reason(),
        Reason::MatchedDeny
    );
    assert!(!no_paths.check_mount(Path::new("/home/u"), home).allowed);
}

#[test]
fn policy_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Policy>();
    let p = user_policy("");
    assert_eq!(p.layers().count(), 1);
}
