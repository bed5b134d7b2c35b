//! Placeholder binding, adversarially: the real value goes to the bound host only, and every
//! look-alike, mismatch or smuggling trick gets nothing.

use base64::Engine as _;
use sbx_secrets::{Catalog, Destination, Provider, SandboxCredentials, SecretValue};

const ANTHROPIC: &str = "sk-ant-api03-REAL-KEY";
const GITHUB: &str = "ghp_REALTOKEN";
const GEMINI: &str = "AIza-REAL";
const CUSTOM: &str = "jira-REAL";

fn creds(sandbox: &str) -> SandboxCredentials {
    let mut catalog = Catalog::builtin();
    catalog.add(Provider::custom("jira", "JIRA_TOKEN", &["jira.example.com"], true).unwrap());
    let secrets: Vec<(String, SecretValue)> = vec![
        ("anthropic".into(), ANTHROPIC.into()),
        ("github".into(), GITHUB.into()),
        ("gemini".into(), GEMINI.into()),
        ("jira".into(), CUSTOM.into()),
        ("anthropic-oauth".into(), "sk-ant-oat01-REAL".into()),
    ];
    SandboxCredentials::new(sandbox, &catalog, secrets).unwrap()
}

fn head(uri: &str, headers: &[(&str, &str)]) -> http::request::Parts {
    let mut b = http::Request::post(uri);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    b.body(()).unwrap().into_parts().0
}

fn tls(host: &str) -> Destination<'_> {
    Destination {
        connect_host: Some(host),
        sni: Some(host),
        authority: None,
    }
}

fn pair(s: &str, h: &str) -> (String, String) {
    (s.to_owned(), h.to_owned())
}

#[test]
fn placeholders_are_per_sandbox_and_fill_the_env() {
    let a = creds("a");
    let b = creds("b");
    let env_a = a.placeholders_env();
    let get = |env: &[(String, String)], k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    assert!(get(&env_a, "ANTHROPIC_API_KEY").starts_with("sbx-ph-anthropic-"));
    assert_eq!(get(&env_a, "GH_TOKEN"), get(&env_a, "GITHUB_TOKEN"));
    assert!(get(&env_a, "CLAUDE_CODE_OAUTH_TOKEN").starts_with("sbx-ph-anthropic-oauth-"));
    assert_eq!(
        get(&env_a, "JIRA_TOKEN"),
        a.placeholder_for("jira").unwrap()
    );
    assert_ne!(
        get(&env_a, "ANTHROPIC_API_KEY"),
        get(&b.placeholders_env(), "ANTHROPIC_API_KEY")
    );
    for (_, v) in &env_a {
        assert!(![ANTHROPIC, GITHUB, GEMINI, CUSTOM].contains(&v.as_str()));
    }
    assert!(!format!("{a:?}").contains(ANTHROPIC));
}

#[test]
fn injects_for_the_bound_host_in_every_spelling() {
    let c = creds("dev");
    let ph = c.placeholder_for("anthropic").unwrap().to_owned();
    for (connect, sni, host) in [
        (
            "api.anthropic.com:443",
            "api.anthropic.com",
            "api.anthropic.com",
        ),
        (
            "API.ANTHROPIC.COM:443",
            "Api.Anthropic.Com",
            "api.anthropic.com.",
        ),
        (
            "api.anthropic.com.:443",
            "api.anthropic.com.",
            "API.anthropic.com:443",
        ),
    ] {
        let mut h = head("/v1/messages", &[("host", host), ("x-api-key", &ph)]);
        let dest = Destination {
            connect_host: Some(connect),
            sni: Some(sni),
            authority: None,
        };
        let report = c.inject(&dest, &mut h);
        assert_eq!(h.headers["x-api-key"], ANTHROPIC, "{connect} {sni} {host}");
        assert!(h.headers["x-api-key"].is_sensitive());
        assert_eq!(report.injected, [pair("anthropic", "api.anthropic.com")]);
        assert!(report.blocked.is_empty());
    }
}

#[test]
fn look_alike_and_mismatched_destinations_get_nothing() {
    let c = creds("dev");
    let ph = c.placeholder_for("anthropic").unwrap().to_owned();
    type Case<'a> = (Destination<'a>, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case<'_>> = vec![
        (
            tls("api.anthropic.com.evil.net:443"),
            "/v1",
            vec![("host", "api.anthropic.com.evil.net")],
        ),
        (
            tls("evil.net:443"),
            "/api.anthropic.com",
            vec![("host", "evil.net")],
        ),
        (tls("evil.net"), "/v1", vec![("host", "api.anthropic.com")]),
        (
            Destination {
                connect_host: Some("api.anthropic.com:443"),
                sni: Some("evil.net"),
                authority: None,
            },
            "/v1",
            vec![],
        ),
        (
            Destination {
                connect_host: Some("evil.net:443"),
                sni: Some("api.anthropic.com"),
                authority: None,
            },
            "/v1",
            vec![("host", "api.anthropic.com")],
        ),
        (
            tls("api.anthropic.com:443"),
            "/v1",
            vec![("host", "evil.net")],
        ),
        (
            tls("api.anthropic.com:443"),
            "/v1",
            vec![("host", "api.anthropic.com"), ("host", "evil.net")],
        ),
        (
            tls("api.anthropic.com:443"),
            "/v1",
            vec![("host", "api.anthropic.com@evil.net")],
        ),
        (
            tls("api.anthropic.com:443"),
            "/v1",
            vec![("host", "evil.net@api.anthropic.com")],
        ),
        (
            Destination {
                connect_host: Some("evil.net:80"),
                sni: None,
                authority: None,
            },
            "http://api.anthropic.com@evil.net/v1",
            vec![],
        ),
        (
            Destination::default(),
            "http://api.anthropic.com/v1",
            vec![("host", "api.anthropic.com.evil.net")],
        ),
        (tls("xapi.anthropic.com"), "/v1", vec![]),
        (tls("anthropic.com"), "/v1", vec![]),
        (tls("api.anthropic.co"), "/v1", vec![]),
        (tls("api.anthropic.com.."), "/v1", vec![]),
        (tls("api%2eanthropic.com"), "/v1", vec![]),
        (Destination::default(), "/v1", vec![]),
        // CONNECT to an address the client chose while claiming the bound name.
        (
            Destination {
                connect_host: Some("203.0.113.7:443"),
                sni: Some("api.anthropic.com"),
                authority: None,
            },
            "/v1",
            vec![("host", "api.anthropic.com")],
        ),
        (
            Destination {
                connect_host: Some("[2001:db8::1]:443"),
                sni: Some("api.anthropic.com"),
                authority: None,
            },
            "/v1",
            vec![("host", "api.anthropic.com")],
        ),
    ];
    for (dest, uri, mut headers) in cases {
        headers.push(("x-api-key", &ph));
        let mut h = head(uri, &headers);
        let report = c.inject(&dest, &mut h);
        assert_eq!(
            h.headers["x-api-key"],
            ph.as_str(),
            "{dest:?} {uri} {headers:?}"
        );
        assert!(report.injected.is_empty(), "{dest:?} {uri}");
        assert_eq!(report.blocked.len(), 1, "{dest:?} {uri}");
        assert_eq!(report.blocked[0].0, "anthropic");
    }
}

#[test]
fn placeholder_in_the_wrong_place_on_the_right_host_is_not_substituted() {
    let c = creds("dev");
    let ph = c.placeholder_for("anthropic").unwrap().to_owned();
    // In a header the provider does not use, in the path, in a query parameter.
    let mut h = head(
        &format!("/v1/{ph}?x={ph}"),
        &[("host", "api.anthropic.com"), ("x-echo", &ph)],
    );
    let report = c.inject(&tls("api.anthropic.com"), &mut h);
    assert_eq!(h.headers["x-echo"], ph.as_str());
    assert!(h.uri.to_string().contains(&ph));
    assert!(report.injected.is_empty());
    assert_eq!(report.blocked, [pair("anthropic", "api.anthropic.com")]);
    // Another provider's placeholder on anthropic's host (github token to api.anthropic.com).
    let gh = c.placeholder_for("github").unwrap().to_owned();
    let mut h = head(
        "/v1",
        &[
            ("host", "api.anthropic.com"),
            ("authorization", &format!("Bearer {gh}")),
        ],
    );
    let report = c.inject(&tls("api.anthropic.com"), &mut h);
    assert_eq!(h.headers["authorization"], format!("Bearer {gh}").as_str());
    assert_eq!(report.blocked, [pair("github", "api.anthropic.com")]);
}

#[test]
fn bearer_token_schemes_and_oauth() {
    let c = creds("dev");
    let oauth = c.placeholder_for("anthropic-oauth").unwrap().to_owned();
    let mut h = head(
        "/v1/messages",
        &[
            ("host", "api.anthropic.com"),
            ("authorization", &format!("bearer {oauth}")),
        ],
    );
    let report = c.inject(&tls("api.anthropic.com"), &mut h);
    assert_eq!(h.headers["authorization"], "bearer sk-ant-oat01-REAL");
    assert_eq!(
        report.injected,
        [pair("anthropic-oauth", "api.anthropic.com")]
    );
    let gh = c.placeholder_for("github").unwrap().to_owned();
    let mut h = head(
        "/user",
        &[
            ("host", "api.github.com"),
            ("authorization", &format!("token {gh}")),
        ],
    );
    c.inject(&tls("api.github.com"), &mut h);
    assert_eq!(
        h.headers["authorization"],
        format!("token {GITHUB}").as_str()
    );
}

#[test]
fn git_smart_http_basic_auth() {
    let c = creds("dev");
    let gh = c.placeholder_for("github").unwrap().to_owned();
    let b64 = base64::engine::general_purpose::STANDARD;
    for (user_pass, expected) in [
        (
            format!("x-access-token:{gh}"),
            format!("x-access-token:{GITHUB}"),
        ),
        (format!("{gh}:"), format!("{GITHUB}:")),
        (format!("octocat:{gh}"), format!("octocat:{GITHUB}")),
    ] {
        let auth = format!("Basic {}", b64.encode(&user_pass));
        let mut h = head(
            "/org/repo.git/git-upload-pack",
            &[("host", "github.com"), ("authorization", &auth)],
        );
        let report = c.inject(&tls("github.com"), &mut h);
        let got = h.headers["authorization"]
            .to_str()
            .unwrap()
            .strip_prefix("Basic ")
            .unwrap()
            .to_owned();
        assert_eq!(b64.decode(got).unwrap(), expected.as_bytes());
        assert_eq!(report.injected, [pair("github", "github.com")]);
    }
    // The same basic-auth header to a look-alike host stays a placeholder.
    let auth = format!("Basic {}", b64.encode(format!("x:{gh}")));
    let mut h = head(
        "/x.git/info/refs",
        &[("host", "github.com.evil.net"), ("authorization", &auth)],
    );
    let report = c.inject(&tls("github.com.evil.net"), &mut h);
    assert_eq!(h.headers["authorization"], auth.as_str());
    assert_eq!(report.blocked, [pair("github", "github.com.evil.net")]);
}

#[test]
fn query_parameter_secrets() {
    let c = creds("dev");
    let ph = c.placeholder_for("gemini").unwrap().to_owned();
    let mut h = head(
        &format!("/v1beta/models/x:generateContent?alt=sse&key={ph}"),
        &[("host", "generativelanguage.googleapis.com")],
    );
    let report = c.inject(&tls("generativelanguage.googleapis.com"), &mut h);
    assert_eq!(h.uri.query(), Some("alt=sse&key=AIza-REAL"));
    assert_eq!(
        report.injected,
        [pair("gemini", "generativelanguage.googleapis.com")]
    );
    let mut h = head(&format!("/?key={ph}"), &[("host", "evil.net")]);
    let report = c.inject(&tls("evil.net"), &mut h);
    assert!(h.uri.to_string().contains(&ph));
    assert_eq!(report.blocked, [pair("gemini", "evil.net")]);
}

#[test]
fn custom_secrets_replace_anywhere_in_headers_and_body_for_named_hosts_only() {
    let c = creds("dev");
    let ph = c.placeholder_for("jira").unwrap().to_owned();
    let mut h = head(
        "/rest",
        &[
            ("host", "jira.example.com"),
            ("x-token", &format!("a {ph} b {ph}")),
        ],
    );
    let report = c.inject(&tls("jira.example.com"), &mut h);
    assert_eq!(
        h.headers["x-token"],
        format!("a {CUSTOM} b {CUSTOM}").as_str()
    );
    assert_eq!(report.injected, [pair("jira", "jira.example.com")]);
    let mut body = format!("{{\"token\":\"{ph}\"}}").into_bytes();
    let dest = Destination {
        authority: Some("jira.example.com"),
        ..tls("jira.example.com")
    };
    let report = c.inject_body(&dest, &mut body);
    assert_eq!(body, format!("{{\"token\":\"{CUSTOM}\"}}").as_bytes());
    assert_eq!(report.injected, [pair("jira", "jira.example.com")]);
    let mut body = format!("steal={ph}").into_bytes();
    let report = c.inject_body(&tls("jira.example.com.evil.net"), &mut body);
    assert_eq!(body, format!("steal={ph}").as_bytes());
    assert_eq!(report.blocked, [pair("jira", "jira.example.com.evil.net")]);
    let mut body = format!("steal={ph}").into_bytes();
    let mixed = Destination {
        connect_host: Some("jira.example.com:443"),
        sni: Some("evil.net"),
        authority: None,
    };
    assert!(c.inject_body(&mixed, &mut body).injected.is_empty());
}

#[test]
fn another_sandboxs_placeholder_is_never_substituted() {
    let a = creds("a");
    let b = creds("b");
    let ph_b = b.placeholder_for("anthropic").unwrap().to_owned();
    let mut h = head(
        "/v1",
        &[("host", "api.anthropic.com"), ("x-api-key", &ph_b)],
    );
    let report = a.inject(&tls("api.anthropic.com"), &mut h);
    assert_eq!(h.headers["x-api-key"], ph_b.as_str());
    assert!(report.injected.is_empty());
}

#[test]
fn requests_without_placeholders_are_untouched() {
    let c = creds("dev");
    let mut h = head(
        "/v1?x=1",
        &[("host", "api.anthropic.com"), ("x-api-key", "sk-agent-own")],
    );
    let before = format!("{h:?}");
    let report = c.inject(&tls("api.anthropic.com"), &mut h);
    assert_eq!(format!("{h:?}"), before);
    assert_eq!(report, Default::default());
}
