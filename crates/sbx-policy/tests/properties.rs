//! Property tests: the invariants the policy must keep for any input.

mod common;

use proptest::prelude::*;
use sbx_policy::{LayerLevel, NetworkRequest, Policy, PolicyLayer, Protocol, normalize_path};

/// Host patterns over a tiny alphabet so that rules and requests collide often.
fn host_pattern() -> impl Strategy<Value = String> {
    let label = prop::sample::select(vec!["a", "b", "c", "x1", "crl*", "*"]);
    (
        prop::option::of(Just("**")),
        prop::collection::vec(label, 1..3),
        prop::sample::select(vec!["com", "org"]),
    )
        .prop_map(|(deep, labels, tld)| {
            let mut parts: Vec<String> = deep.into_iter().map(str::to_owned).collect();
            parts.extend(labels.into_iter().map(str::to_owned));
            parts.push(tld.to_owned());
            parts.join(".")
        })
}

fn host_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        host_pattern(),
        (host_pattern(), prop::sample::select(vec![80u16, 443, 8080]))
            .prop_map(|(h, p)| format!("{h}:{p}")),
        Just("10.0.0.0/8".to_owned()),
        Just("10.1.0.0/16:5432".to_owned()),
        Just("localhost:8080".to_owned()),
    ]
}

#[derive(Debug, Clone)]
struct RuleSpec {
    deny: bool,
    hosts: Vec<String>,
    methods: Option<Vec<&'static str>>,
    paths: Option<Vec<&'static str>>,
}

fn rule_spec() -> impl Strategy<Value = RuleSpec> {
    (
        any::<bool>(),
        prop::collection::vec(host_entry(), 1..3),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["GET", "POST", "HEAD"]),
            1..3,
        )),
        prop::option::of(prop::collection::vec(
            prop::sample::select(vec!["/**", "/a/**", "/a/*", "/b", "/a/*/c"]),
            1..3,
        )),
    )
        .prop_map(|(deny, hosts, methods, paths)| RuleSpec {
            deny,
            hosts,
            methods,
            paths,
        })
}

fn render(rule: &RuleSpec) -> String {
    let list = |items: &[String]| {
        items
            .iter()
            .map(|s| format!("{s:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut out = format!(
        "[[network]]\naction = \"{}\"\nhosts = [{}]\n",
        if rule.deny { "deny" } else { "allow" },
        list(&rule.hosts)
    );
    if let Some(m) = &rule.methods {
        out.push_str(&format!(
            "methods = [{}]\n",
            list(&m.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        ));
    }
    if let Some(p) = &rule.paths {
        out.push_str(&format!(
            "paths = [{}]\n",
            list(&p.iter().map(|s| s.to_string()).collect::<Vec<_>>())
        ));
    }
    out
}

fn layer(name: &str, header: &str, rules: &[RuleSpec]) -> PolicyLayer {
    let text: String = std::iter::once(header.to_owned())
        .chain(rules.iter().map(render))
        .collect();
    PolicyLayer::parse(name, &text).expect("generated policy parses")
}

#[derive(Debug, Clone)]
struct Req {
    host: String,
    port: u16,
    protocol: Protocol,
    method: Option<&'static str>,
    path: Option<String>,
}

fn request() -> impl Strategy<Value = Req> {
    let host = prop_oneof![
        (
            prop::collection::vec(
                prop::sample::select(vec!["a", "b", "c", "x1", "crl3", "zz"]),
                1..4
            ),
            prop::sample::select(vec!["com", "org"])
        )
            .prop_map(|(l, t)| format!("{}.{t}", l.join("."))),
        Just("10.1.2.3".to_owned()),
        Just("localhost".to_owned()),
    ];
    (
        host,
        prop::sample::select(vec![80u16, 443, 8080, 5432]),
        prop::sample::select(vec![Protocol::Http, Protocol::Https, Protocol::Tcp]),
        prop::option::of(prop::sample::select(vec!["GET", "POST", "HEAD", "DELETE"])),
        prop::option::of(
            prop::sample::select(vec!["/", "/a", "/a/b", "/a/b/c", "/b", "/a/../b", "//a/x"])
                .prop_map(str::to_owned),
        ),
    )
        .prop_map(|(host, port, protocol, method, path)| Req {
            host,
            port,
            protocol,
            method,
            path,
        })
}

fn decide(policy: &Policy, r: &Req) -> bool {
    policy
        .check_network(&NetworkRequest {
            host: &r.host,
            port: r.port,
            protocol: r.protocol,
            method: r.method,
            path: r.path.as_deref(),
        })
        .allowed
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Adding a deny rule anywhere never turns a deny into an allow.
    #[test]
    fn adding_a_deny_never_grants(
        rules in prop::collection::vec(rule_spec(), 0..6),
        mut extra in rule_spec(),
        open in any::<bool>(),
        in_company in any::<bool>(),
        req in request(),
    ) {
        extra.deny = true;
        let header = if open { "preset = \"open\"\n" } else { "" };
        let before = Policy::new(vec![(LayerLevel::User, layer("u", header, &rules))]);
        let mut with_deny = rules.clone();
        with_deny.push(extra.clone());
        let after = if in_company {
            Policy::new(vec![
                (LayerLevel::Company, layer("c", "", &[extra])),
                (LayerLevel::User, layer("u", header, &rules)),
            ])
        } else {
            Policy::new(vec![(LayerLevel::User, layer("u", header, &with_deny))])
        };
        if !decide(&before, &req) {
            prop_assert!(!decide(&after, &req));
        }
    }

    /// A rule in a layer below an enforced one never grants: removing every allow from the lower
    /// layers changes no decision from deny to allow, nor allow to deny.
    #[test]
    fn allows_below_enforced_never_grant(
        top in prop::collection::vec(rule_spec(), 0..4),
        below in prop::collection::vec(rule_spec(), 0..6),
        req in request(),
    ) {
        let with_allows = Policy::new(vec![
            (LayerLevel::Org, layer("org", "enforced = true\n", &top)),
            (LayerLevel::User, layer("user", "preset = \"open\"\n", &below)),
        ]);
        let denies_only: Vec<RuleSpec> = below.iter().filter(|r| r.deny).cloned().collect();
        let without = Policy::new(vec![
            (LayerLevel::Org, layer("org", "enforced = true\n", &top)),
            (LayerLevel::User, layer("user", "", &denies_only)),
        ]);
        prop_assert_eq!(decide(&with_allows, &req), decide(&without, &req));
    }

    /// Normalising a normalised path changes nothing.
    #[test]
    fn normalisation_is_idempotent(raw in "[/a-zA-Z0-9%.;?#~ \\\\-]{0,40}") {
        let once = normalize_path(&raw);
        prop_assert_eq!(normalize_path(&once), once.clone());
        prop_assert!(once.starts_with('/'));
        prop_assert!(!once.split('/').any(|s| s == ".." || s == "."));
    }

    /// Normalising arbitrary Unicode never panics and is idempotent.
    #[test]
    fn normalisation_is_idempotent_on_any_text(raw in any::<String>()) {
        let once = normalize_path(&raw);
        prop_assert_eq!(normalize_path(&once), once.clone());
    }

    /// No host string makes a check panic.
    #[test]
    fn any_host_is_decided(host in any::<String>(), path in any::<String>()) {
        let policy = Policy::new(vec![(LayerLevel::User, layer("u", "preset = \"balanced\"\n", &[]))]);
        let _ = policy.check_network(&NetworkRequest::https(&host, "GET", &path));
        let _ = policy.check_model(&host, &path);
    }

    /// No file text makes the parser panic.
    #[test]
    fn any_text_parses_or_errors(text in any::<String>()) {
        if let Err(e) = PolicyLayer::parse("f.toml", &text) {
            prop_assert!(e.line >= 1 && e.column >= 1);
        }
    }
}
