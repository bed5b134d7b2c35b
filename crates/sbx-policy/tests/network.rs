//! Every network rule form, checked through the public API.

mod common;

use common::{https, request, rule, user_policy};
use sbx_policy::{NetworkRequest, Protocol, Reason};

#[test]
fn exact_host_matches_only_that_host() {
    let p = user_policy(&rule("allow", &["example.com"]));
    assert!(https(&p, "example.com").allowed);
    assert!(!https(&p, "www.example.com").allowed);
    assert!(!https(&p, "example.com.evil.net").allowed);
    assert!(!https(&p, "notexample.com").allowed);
    assert_eq!(https(&p, "example.org").reason(), Reason::DefaultDeny);
}

#[test]
fn host_matching_ignores_case_and_trailing_dot() {
    let p = user_policy(&rule("allow", &["Example.COM."]));
    for host in ["example.com", "EXAMPLE.com", "example.com.", "ExAmPlE.CoM."] {
        assert!(https(&p, host).allowed, "{host}");
    }
}

#[test]
fn idna_names_compare_in_punycode() {
    let p = user_policy(&rule("allow", &["bücher.de", "*.xn--mnchen-3ya.de"]));
    assert!(https(&p, "xn--bcher-kva.de").allowed);
    assert!(https(&p, "BÜCHER.de").allowed);
    assert!(https(&p, "shop.münchen.de").allowed);
    assert!(https(&p, "shop.xn--mnchen-3ya.de").allowed);
    assert!(!https(&p, "bucher.de").allowed);
}

#[test]
fn single_star_is_exactly_one_label() {
    let p = user_policy(&rule("allow", &["*.npmjs.org"]));
    assert!(https(&p, "registry.npmjs.org").allowed);
    assert!(!https(&p, "npmjs.org").allowed);
    assert!(!https(&p, "a.b.npmjs.org").allowed);
}

#[test]
fn double_star_is_one_or_more_labels() {
    let p = user_policy(&rule("allow", &["**.github.com"]));
    assert!(https(&p, "api.github.com").allowed);
    assert!(https(&p, "a.b.c.github.com").allowed);
    assert!(!https(&p, "github.com").allowed);
    assert!(!https(&p, "evilgithub.com").allowed);
}

#[test]
fn wildcard_inside_a_label() {
    let p = user_policy(&rule("allow", &["crl*.digicert.com"]));
    assert!(https(&p, "crl3.digicert.com").allowed);
    assert!(https(&p, "crl.digicert.com").allowed);
    assert!(!https(&p, "ocsp.digicert.com").allowed);
    assert!(!https(&p, "x.crl3.digicert.com").allowed);
}

#[test]
fn no_port_means_http_and_https_on_80_and_443() {
    let p = user_policy(&rule("allow", &["example.com"]));
    let check = |port, protocol| {
        p.check_network(&NetworkRequest::new("example.com", port, protocol))
            .allowed
    };
    assert!(check(443, Protocol::Https));
    assert!(check(80, Protocol::Http));
    assert!(
        !check(8443, Protocol::Https),
        "other ports need an explicit rule"
    );
    assert!(!check(443, Protocol::Tcp), "raw TCP needs an explicit rule");
    assert!(!check(22, Protocol::Tcp));
}

#[test]
fn explicit_port_covers_that_port_any_protocol() {
    let p = user_policy(&rule(
        "allow",
        &["db.internal:5432", "api.example.com:8443"],
    ));
    let check = |host, port, protocol| {
        p.check_network(&NetworkRequest::new(host, port, protocol))
            .allowed
    };
    assert!(check("db.internal", 5432, Protocol::Tcp));
    assert!(!check("db.internal", 5433, Protocol::Tcp));
    assert!(!check("db.internal", 443, Protocol::Https));
    assert!(check("api.example.com", 8443, Protocol::Https));
    assert!(!check("api.example.com", 443, Protocol::Https));
}

#[test]
fn deny_without_port_covers_every_port() {
    let p = user_policy(&format!(
        "{}{}",
        rule("allow", &["evil.com:8443", "evil.com:22"]),
        rule("deny", &["evil.com"])
    ));
    for (port, protocol) in [
        (8443, Protocol::Https),
        (22, Protocol::Tcp),
        (443, Protocol::Https),
    ] {
        let d = p.check_network(&NetworkRequest::new("evil.com", port, protocol));
        assert_eq!(d.reason(), Reason::MatchedDeny, "port {port}");
    }
}

#[test]
fn ipv4_addresses_and_cidrs() {
    let p = user_policy(&rule(
        "allow",
        &["10.0.0.0/8:5432", "192.168.1.10", "203.0.113.0/24"],
    ));
    let check = |host, port, protocol| {
        p.check_network(&NetworkRequest::new(host, port, protocol))
            .allowed
    };
    assert!(check("10.20.30.40", 5432, Protocol::Tcp));
    assert!(!check("10.20.30.40", 443, Protocol::Https));
    assert!(!check("11.0.0.1", 5432, Protocol::Tcp));
    assert!(check("192.168.1.10", 443, Protocol::Https));
    assert!(!check("192.168.1.11", 443, Protocol::Https));
    assert!(check("203.0.113.77", 80, Protocol::Http));
    // Other spellings of the same address meet the same rules.
    assert!(check("0xc0.0xa8.1.10", 443, Protocol::Https));
    assert!(check("3232235786", 443, Protocol::Https));
    assert!(check("[::ffff:192.168.1.10]", 443, Protocol::Https));
}

#[test]
fn ipv6_addresses_and_cidrs() {
    let p = user_policy(&rule(
        "allow",
        &["[fd00::]/8:5432", "[2001:db8::1]", "[::1]:8080"],
    ));
    let check = |host, port, protocol| {
        p.check_network(&NetworkRequest::new(host, port, protocol))
            .allowed
    };
    assert!(check("[fd12:3456::1]", 5432, Protocol::Tcp));
    assert!(
        check("fd12:3456::1", 5432, Protocol::Tcp),
        "bare IPv6 as given by a resolver"
    );
    assert!(!check("[fe80::1]", 5432, Protocol::Tcp));
    assert!(check("[2001:DB8:0:0::1]", 443, Protocol::Https));
    assert!(check("[::1]", 8080, Protocol::Http));
    assert!(!check("[::1]", 8081, Protocol::Http));
}

#[test]
fn localhost_port_covers_the_name_and_loopback() {
    let p = user_policy(&rule("allow", &["localhost:11434"]));
    let check = |host, port| {
        p.check_network(&NetworkRequest::new(host, port, Protocol::Http))
            .allowed
    };
    assert!(check("localhost", 11434));
    assert!(check("LOCALHOST.", 11434));
    assert!(check("127.0.0.1", 11434));
    assert!(check("[::1]", 11434));
    assert!(!check("localhost", 11435));
    assert!(!check("localhost.evil.com", 11434));
}

#[test]
fn methods_limit_a_rule() {
    let p = user_policy(&format!(
        "{}methods = [\"GET\", \"head\"]\n",
        rule("allow", &["api.example.com"])
    ));
    let check = |method| request(&p, "api.example.com", 443, Protocol::Https, method, "/").allowed;
    assert!(check("GET"));
    assert!(check("HEAD"));
    assert!(check("get"), "methods compare case-insensitively");
    assert!(!check("POST"));
    assert!(!check("DELETE"));
}

#[test]
fn paths_limit_a_rule() {
    let p = user_policy(&format!(
        "{}paths = [\"/repos/acme/**\", \"/v1/*/files\"]\n",
        rule("allow", &["api.github.com"])
    ));
    let check = |path| request(&p, "api.github.com", 443, Protocol::Https, "GET", path).allowed;
    assert!(check("/repos/acme"));
    assert!(check("/repos/acme/widgets/pulls?state=open"));
    assert!(check("/v1/abc/files"));
    assert!(!check("/v1/a/b/files"), "* never crosses /");
    assert!(!check("/repos/other/x"));
    assert!(
        !check("/repos/acme/../other/x"),
        "dot-segments are resolved before matching"
    );
    assert!(!check("/repos/acme/%2e%2e/other"));
    assert!(!check("/repos/acme%2Fx"), "%2F is not a separator");
}

#[test]
fn normalisation_cannot_dodge_a_deny() {
    let p = user_policy(&format!(
        "{}{}paths = [\"/admin/**\", \"/b\"]\n",
        rule("allow", &["app.example.com"]),
        rule("deny", &["app.example.com"])
    ));
    for path in [
        "/admin",
        "/admin/",
        "/admin/users",
        "//admin/users",
        "/x/../admin",
        "/x/%2e%2e/admin",
        "/x/%2E%2E/admin",
        "/%61dmin/users",
        "/admin;jsessionid=1/users",
        "/x/..;/admin",
        "/./admin",
        "/a/../b",
        "//b",
        "/A%2e%2e/../b",
        "/b?x=1",
        "/b#frag",
    ] {
        let d = request(&p, "app.example.com", 443, Protocol::Https, "GET", path);
        assert_eq!(
            d.reason(),
            Reason::MatchedDeny,
            "{path} dodged the deny: {d}"
        );
    }
    assert!(
        request(
            &p,
            "app.example.com",
            443,
            Protocol::Https,
            "GET",
            "/public"
        )
        .allowed
    );
}

#[test]
fn connection_level_check_of_a_path_limited_allow_is_conditional() {
    let p = user_policy(&format!(
        "{}paths = [\"/repos/acme/**\"]\n",
        rule("allow", &["api.github.com"])
    ));
    let d = https(&p, "api.github.com");
    assert!(d.allowed && d.conditional, "{d}");
    let full = request(
        &p,
        "api.github.com",
        443,
        Protocol::Https,
        "GET",
        "/repos/acme/x",
    );
    assert!(full.allowed && !full.conditional);
    // Raw TCP cannot be inspected, so a path-limited allow grants nothing there.
    let tcp = p.check_network(&NetworkRequest::new("api.github.com", 443, Protocol::Tcp));
    assert!(!tcp.allowed);
}

#[test]
fn path_limited_deny_applies_per_request_and_to_raw_tcp() {
    let p = user_policy(&format!(
        "{}{}paths = [\"/admin/**\"]\n",
        rule("allow", &["app.example.com:443"]),
        rule("deny", &["app.example.com:443"])
    ));
    assert!(
        https(&p, "app.example.com").allowed,
        "the connection itself is not denied"
    );
    let tcp = p.check_network(&NetworkRequest::new("app.example.com", 443, Protocol::Tcp));
    assert_eq!(
        tcp.reason(),
        Reason::MatchedDeny,
        "uninspectable: fail closed"
    );
}

#[test]
fn deny_beats_a_more_specific_allow() {
    let p = user_policy(&format!(
        "{}methods = [\"GET\"]\npaths = [\"/exact/path\"]\n{}",
        rule("allow", &["api.evil.com:443"]),
        rule("deny", &["**.evil.com"])
    ));
    let d = request(
        &p,
        "api.evil.com",
        443,
        Protocol::Https,
        "GET",
        "/exact/path",
    );
    assert_eq!(d.reason(), Reason::MatchedDeny);
    assert_eq!(
        d.explanation.rule.as_deref(),
        Some("deny **.evil.com (user.toml:8:10)")
    );
}

#[test]
fn explanations_carry_rule_layer_and_reason() {
    let p = user_policy(&format!(
        "name = \"me\"\n{}methods = [\"GET\"]\npaths = [\"/x/**\"]\n",
        rule("allow", &["api.example.com"])
    ));
    let d = request(&p, "api.example.com", 443, Protocol::Https, "GET", "/x/y");
    assert!(d.allowed);
    assert_eq!(
        d.explanation.rule.as_deref(),
        Some("allow api.example.com methods=GET paths=/x/** (user.toml:4:10)")
    );
    assert_eq!(d.explanation.layer.as_deref(), Some("me"));
    assert_eq!(d.reason().to_string(), "matched-allow");
}

#[test]
fn invalid_hosts_are_denied_not_panicked_on() {
    let p = user_policy(&rule("allow", &["**.example.com"]));
    for host in [
        "",
        ".",
        "a..example.com",
        "[::1",
        "1.2.3.4.5",
        "x\u{0}.example.com",
        "999.999.999.999",
        "a:b:c",
    ] {
        let d = https(&p, host);
        assert!(!d.allowed, "{host:?}");
    }
    assert_eq!(https(&p, "").reason(), Reason::InvalidRequest);
}

#[test]
fn numeric_host_spellings_meet_ip_rules() {
    let p = user_policy(&format!(
        "preset = \"open\"\n{}",
        rule("deny", &["127.0.0.0/8", "169.254.169.254"])
    ));
    for host in [
        "127.0.0.1",
        "2130706433",
        "0x7f000001",
        "0177.0.0.1",
        "127.1",
        "[::ffff:127.0.0.1]",
        "169.254.169.254",
        "0xa9.0xfe.0xa9.0xfe",
    ] {
        assert_eq!(https(&p, host).reason(), Reason::MatchedDeny, "{host}");
    }
    assert!(https(&p, "example.com").allowed);
}
