//! End to end through real TLS: client → sbx-netproxy (MITM with its CA) → HTTPS upstream with its own CA.

mod common;

use std::time::Duration;

use common::*;
use sbx_netproxy::simple::{Apply, StaticCredential};
use sbx_netproxy::{AuditAction, AuditDecision};

fn allow(up: &Upstream) -> String {
    allow_policy(&[
        format!("127.0.0.1:{}", up.addr.port()),
        format!("localhost:{}", up.addr.port()),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_through_the_proxy_over_http1_and_http2() {
    let up = upstream(true).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let url = format!("https://127.0.0.1:{}/echo", up.addr.port());

    let resp = h
        .client_builder()
        .http1_only()
        .build()
        .unwrap()
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.version(), reqwest::Version::HTTP_11);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["path"], "/echo");

    let resp = h
        .client()
        .get(format!("https://localhost:{}/echo", up.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.version(),
        reqwest::Version::HTTP_2,
        "client side negotiates h2 with the proxy"
    );
    assert_eq!(resp.status(), 200);
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        json["version"], "HTTP/2.0",
        "upstream side negotiates h2 too"
    );

    let events = h
        .events_when(|ev| {
            ev.iter()
                .filter(|e| matches!(&e.action, AuditAction::HttpRequest { .. }))
                .count()
                >= 2
        })
        .await;
    let allowed_requests = events
        .iter()
        .filter(|e| {
            matches!(&e.action, AuditAction::HttpRequest { status: 200, .. })
                && e.decision == Some(AuditDecision::Allow)
        })
        .count();
    assert_eq!(allowed_requests, 2, "{events:#?}");
    assert!(events.iter().all(|e| e.sandbox == "sb-test"));
    assert!(events.iter().any(
        |e| matches!(&e.action, AuditAction::NetworkEgress { proxy, .. } if proxy == "connect")
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_forwarding_and_the_403_body() {
    let up = upstream(false).await;
    let policy = format!(
        "{}[[network]]\naction = \"deny\"\nhosts = [\"**.blocked.test\"]\n",
        allow_policy(&[format!("127.0.0.1:{}", up.addr.port())])
    );
    let h = start(Setup {
        policy: &policy,
        ..Setup::default()
    })
    .await;
    let ok = h
        .client()
        .post(format!("http://127.0.0.1:{}/echo", up.addr.port()))
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(up.seen.last().body_len, 5);

    let denied = h
        .client()
        .get("http://a.blocked.test/x")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body = denied.text().await.unwrap();
    for want in [
        "rule: **.blocked.test",
        "layer: test-layer",
        "reason: matched-deny",
        "to allow it: sbx policy allow network a.blocked.test",
    ] {
        assert!(body.contains(want), "missing {want:?} in {body}");
    }
    let unlisted = h
        .client()
        .get("http://other.test:8080/")
        .send()
        .await
        .unwrap();
    let body = unlisted.text().await.unwrap();
    assert!(
        body.contains("reason: default-deny")
            && body.contains("sbx policy allow network other.test:8080"),
        "{body}"
    );

    // HTTPS to a denied host: the CONNECT itself gets the 403.
    let (_s, head) = connect_tunnel(&h.proxy_addr(), "a.blocked.test:443").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{}", short(&head));
    let denies = h
        .events_when(|ev| {
            ev.iter()
                .filter(|e| e.decision == Some(AuditDecision::Deny))
                .count()
                >= 3
        })
        .await
        .iter()
        .filter(|e| e.decision == Some(AuditDecision::Deny))
        .count();
    assert!(denies >= 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_addresses_are_refused_unless_a_rule_names_them() {
    let up = upstream(true).await;
    // `open` allows every host by name, but no rule names the loopback address.
    let h = start(Setup {
        policy: "preset = \"open\"\n",
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    for url in [
        format!("https://127.0.0.1:{}/echo", up.addr.port()),
        format!("https://localhost:{}/echo", up.addr.port()),
        format!("http://[::ffff:127.0.0.1]:{}/echo", up.addr.port()),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://[64:ff9b::a9fe:a9fe]/latest/".to_owned(),
        "http://10.0.0.1/".to_owned(),
    ] {
        let resp = h.client().get(&url).send().await.unwrap();
        assert_eq!(resp.status(), 403, "{url}");
        let body = resp.text().await.unwrap();
        assert!(
            body.contains("reason: private-address") && body.contains("sbx policy allow network"),
            "{url}: {body}"
        );
    }
    assert!(
        up.seen.paths().is_empty(),
        "nothing reached the loopback upstream"
    );

    // Naming it as a user would lifts the restriction.
    let named = allow(&up);
    let h2 = start(Setup {
        policy: &named,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let ok = h2
        .client()
        .get(format!("https://localhost:{}/echo", up.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn placeholders_reach_only_their_bound_hosts_and_secrets_never_reach_audit() {
    let up = upstream(true).await;
    let policy = allow(&up);
    let cred = StaticCredential::new(
        "svc",
        "s3cret-value-123",
        vec!["127.0.0.1".into()],
        Apply::ReplacePlaceholder,
    );
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        creds: vec![cred],
        ..Setup::default()
    })
    .await;
    let ph = h.placeholder("svc");

    let bound = format!("https://127.0.0.1:{}/echo", up.addr.port());
    h.client()
        .get(&bound)
        .header("authorization", format!("Bearer {ph}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        up.seen.last().headers["authorization"],
        "Bearer s3cret-value-123"
    );

    // localhost is allowed but the credential is not bound to it: the placeholder goes out untouched.
    let unbound = format!("https://localhost:{}/echo", up.addr.port());
    h.client()
        .get(&unbound)
        .header("authorization", format!("Bearer {ph}"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        up.seen.last().headers["authorization"],
        format!("Bearer {ph}")
    );

    let events = h.events();
    assert!(events.iter().any(|e| matches!(&e.action, AuditAction::SecretInjected { service, host } if service == "svc" && host == "127.0.0.1")));
    assert!(events.iter().any(|e| matches!(&e.action, AuditAction::PlaceholderBlocked { service, host } if service == "svc" && host == "localhost")
        && e.reason.as_deref() == Some("placeholder_blocked")));
    let all = serde_json::to_string(&events).unwrap();
    assert!(
        !all.contains("s3cret-value-123"),
        "a secret reached the audit trail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_flows_token_by_token_and_large_bodies_stream() {
    let up = upstream(true).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let client = h.client();

    let mut sse = client
        .get(format!("https://127.0.0.1:{}/sse", up.addr.port()))
        .send()
        .await
        .unwrap();
    // The upstream holds back the second event until we have seen the first: a buffering proxy would deadlock here.
    let first = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
        .await
        .expect("first event did not arrive while the stream was open");
    assert_eq!(first.unwrap().unwrap(), "data: one\n\n");
    up.seen.sse_release.notify_one();
    let second = tokio::time::timeout(Duration::from_secs(10), sse.chunk())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(second, "data: two\n\n");

    let mut big = client
        .get(format!("https://127.0.0.1:{}/big", up.addr.port()))
        .send()
        .await
        .unwrap();
    let mut total = 0;
    while let Some(chunk) = big.chunk().await.unwrap() {
        total += chunk.len();
    }
    assert_eq!(total, 32 * 1024 * 1024);

    // Chunked upload of 8 MiB from a stream (no Content-Length).
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(4);
    tokio::spawn(async move {
        for _ in 0..128 {
            if tx
                .send(Ok(bytes::Bytes::from(vec![b'u'; 64 * 1024])))
                .await
                .is_err()
            {
                return;
            }
        }
    });
    let stream = futures_stream(rx);
    let resp = client
        .post(format!("https://127.0.0.1:{}/upload", up.addr.port()))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen.last().body_len, 8 * 1024 * 1024);
    tokio::time::sleep(Duration::from_millis(100)).await;
    let events = h.events();
    assert!(events.iter().any(|e| matches!(&e.action, AuditAction::HttpRequest { path, bytes_down, .. } if path == "/big" && *bytes_down == 32 * 1024 * 1024)));
    assert!(events.iter().any(|e| matches!(&e.action, AuditAction::HttpRequest { path, bytes_up, .. } if path == "/upload" && *bytes_up == 8 * 1024 * 1024)));
}

fn futures_stream<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + Sync + 'static {
    struct S<T>(std::sync::Mutex<tokio::sync::mpsc::Receiver<T>>);
    impl<T> futures_core::Stream for S<T> {
        type Item = T;
        fn poll_next(
            self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<T>> {
            self.0.lock().unwrap().poll_recv(cx)
        }
    }
    S(std::sync::Mutex::new(rx))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_relays_both_ways() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream(false).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        ..Setup::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(h.proxy_addr())
        .await
        .unwrap();
    let target = format!("127.0.0.1:{}", up.addr.port());
    let req = format!(
        "GET http://{target}/ws HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{}", short(&head));
    s.write_all(b"ping-frame").await.unwrap();
    let mut buf = [0u8; 10];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"ping-frame");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_gating_reads_the_body_and_filters_model_lists() {
    let up = upstream(true).await;
    let policy = format!(
        "{}[[model]]\naction = \"deny\"\nmodels = [\"claude-*opus*\"]\n",
        allow(&up)
    );
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let base = format!("https://127.0.0.1:{}", up.addr.port());
    let denied = h
        .client()
        .post(format!("{base}/v1/messages"))
        .body(r#"{"model":"claude-opus-4","max_tokens":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    let body = denied.text().await.unwrap();
    assert!(
        body.contains("rule: claude-*opus*")
            && body.contains("sbx policy allow model claude-opus-4"),
        "{body}"
    );
    let ok = h
        .client()
        .post(format!("{base}/v1/chat/completions"))
        .body(r#"{"model":"claude-sonnet-4"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert_eq!(
        up.seen.last().body_len,
        r#"{"model":"claude-sonnet-4"}"#.len(),
        "the buffered body is forwarded intact"
    );
    let gem = h
        .client()
        .post(format!(
            "{base}/v1beta/models/claude-opus-x:generateContent"
        ))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(gem.status(), 403);
    let list: serde_json::Value = h
        .client()
        .get(format!("{base}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list, serde_json::json!({"data":[{"id":"claude-sonnet-4"}]}));
    assert!(
        !up.seen.paths().contains(&"/v1/messages".to_owned()),
        "the denied request never left"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_works_with_the_exported_ca() {
    if std::process::Command::new("curl")
        .arg("--version")
        .output()
        .is_err()
    {
        println!(
            "SKIPPED curl_works_with_the_exported_ca: curl is not installed (cargo xtask ci installs it)"
        );
        return;
    }
    let up = upstream(true).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let ca = h.state.path().join("ca.pem");
    assert!(ca.exists(), "the CA certificate is exported as ca.pem");
    let run = |url: String| {
        let proxy = format!("http://{}", h.proxy_addr());
        let ca = ca.clone();
        tokio::process::Command::new("curl")
            .args(["-sS", "--max-time", "20", "-x", &proxy, "--cacert"])
            .arg(&ca)
            .args(["-w", "\n%{http_code}", &url])
            .output()
    };
    let out = run(format!("https://127.0.0.1:{}/echo", up.addr.port()))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("\n200") && text.contains("\"path\":\"/echo\""),
        "{}{}",
        short(&text),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run("https://denied.test/".to_owned()).await.unwrap();
    assert!(
        !out.status.success(),
        "curl must fail a CONNECT that gets 403"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chains_through_an_upstream_proxy() {
    let up = upstream(true).await;
    let policy = allow(&up);
    // The corporate proxy (another sbx-netproxy, itself intercepting TLS) trusts the upstream's CA.
    let corporate = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    // The sandbox proxy chains through it and trusts its inspection CA as an extra CA.
    let sandbox = start(Setup {
        policy: &policy,
        extra_ca: vec![corporate.ca_pem.clone()],
        upstream_proxy: Some(corporate.proxy_addr()),
        ..Setup::default()
    })
    .await;
    let resp = sandbox
        .client()
        .get(format!("https://127.0.0.1:{}/chained", up.addr.port()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(up.seen.paths(), vec!["/chained".to_owned()]);
    // The corporate proxy records the exchange when the response body ends; give it a moment.
    let mut through_corporate = false;
    for _ in 0..50 {
        through_corporate = corporate.events().iter().any(
            |e| matches!(&e.action, AuditAction::HttpRequest { path, .. } if path == "/chained"),
        );
        if through_corporate {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        through_corporate,
        "the request went through the corporate proxy"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_a_real_sbx_audit_log_without_secrets() {
    use std::sync::Arc;
    let up = upstream(true).await;
    let dir = tempfile::tempdir().unwrap();
    let (handle, guard) =
        sbx_audit::AuditLog::open(dir.path().join("audit"), sbx_audit::WriterConfig::default())
            .unwrap();
    let mut config = sbx_netproxy::ProxyConfig::new(dir.path().join("state"));
    config.extra_ca_pem = vec![up.ca_pem.clone()];
    config.system_roots = false;
    let proxy = sbx_netproxy::Proxy::new(config, Arc::new(handle)).unwrap();
    let policy = sbx_netproxy::simple::SimplePolicy::parse(&[("user", &allow(&up))]).unwrap();
    let cred = StaticCredential::new(
        "svc",
        "s3cret-in-audit-test",
        vec!["127.0.0.1".into()],
        Apply::ReplacePlaceholder,
    );
    let ph = cred.placeholder.clone();
    let creds = sbx_netproxy::simple::StaticInjector::new(vec![cred]);
    let sb = proxy.sandbox("sb-audit", Arc::new(policy), Arc::new(creds));
    let listener = proxy
        .listen_tcp(
            sb,
            "127.0.0.1:0".parse().unwrap(),
            sbx_netproxy::Ingress::Forward,
        )
        .await
        .unwrap();
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(format!("http://{}", listener.local_addr())).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(proxy.ca().cert_pem().as_bytes()).unwrap(),
        )
        .build()
        .unwrap();
    let resp = client
        .get(format!("https://127.0.0.1:{}/audited", up.addr.port()))
        .header("x-key", ph)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.bytes().await.unwrap();
    let denied = client.get("http://denied.test/").send().await.unwrap();
    assert_eq!(denied.status(), 403);
    denied.bytes().await.unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    drop(listener);
    drop(proxy);
    guard.close().unwrap();
    let reader = sbx_audit::Reader::open(dir.path().join("audit")).unwrap();
    let (events, issues) = reader.collect(&sbx_audit::Filter::all().sandbox("sb-audit"));
    assert!(issues.is_empty(), "{issues:?}");
    let kinds: Vec<&str> = events.iter().map(|e| e.action.kind()).collect();
    assert!(
        kinds.contains(&"network_egress")
            && kinds.contains(&"http_request")
            && kinds.contains(&"secret_injected"),
        "{kinds:?}"
    );
    let (denies, _) = reader.collect(&sbx_audit::Filter::all().decision(sbx_audit::Decision::Deny));
    assert!(
        denies
            .iter()
            .any(|e| e.reason.as_deref() == Some("default-deny")),
        "{denies:?}"
    );
    let raw: String = std::fs::read_dir(dir.path().join("audit"))
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.unwrap().path()).ok())
        .collect();
    assert!(
        !raw.contains("s3cret-in-audit-test"),
        "a secret reached the audit log"
    );
}
