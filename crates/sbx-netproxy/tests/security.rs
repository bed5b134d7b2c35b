//! The attacks a sandboxed agent would try, each against the real proxy.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use sbx_netproxy::simple::{MemoryAudit, SimplePolicy};
use sbx_netproxy::{
    AuditAction, AuditDecision, Ingress, Limits, NoCredentials, Proxy, ProxyConfig,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn allow(up: &Upstream) -> String {
    allow_policy(&[
        format!("127.0.0.1:{}", up.addr.port()),
        format!("localhost:{}", up.addr.port()),
    ])
}

async fn closed_without_data(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_connect_is_not_a_raw_tunnel() {
    let (echo, got, _task) = echo_server().await;
    // The echo port is allowed for HTTP(S) by host name only: no explicit raw-TCP rule for it.
    let policy = format!(
        "{}[[network]]\naction = \"allow\"\nhosts = [\"example.test\"]\n",
        allow_policy(&[]).replace("hosts = []", "hosts = [\"nothing.test\"]")
    );
    let h = start(Setup {
        policy: &policy,
        ..Setup::default()
    })
    .await;
    let (mut s, head) = connect_tunnel(&h.proxy_addr(), "example.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}", short(&head));
    s.write_all(b"SSH-2.0-OpenSSH_9.6\r\n").await.unwrap();
    assert!(
        closed_without_data(&mut s).await,
        "non-TLS, non-HTTP bytes must not be relayed"
    );
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| e.decision == Some(AuditDecision::Deny)
                && e.reason
                    .as_deref()
                    .is_some_and(|r| r.starts_with("raw-tcp-refused"))),
        "{events:#?}"
    );
    assert!(got.lock().unwrap().is_empty());

    // With an explicit ip:port rule, raw TCP is relayed.
    let raw_policy = allow_policy(&[format!("127.0.0.1:{}", echo.port())]);
    let h2 = start(Setup {
        policy: &raw_policy,
        ..Setup::default()
    })
    .await;
    let (mut s, head) =
        connect_tunnel(&h2.proxy_addr(), &format!("127.0.0.1:{}", echo.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}", short(&head));
    s.write_all(b"\x00\x01raw-bytes").await.unwrap();
    let mut buf = [0u8; 11];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"\x00\x01raw-bytes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sni_that_differs_from_the_connect_target_is_refused() {
    let up = upstream(true).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let (s, head) = connect_tunnel(&h.proxy_addr(), &format!("localhost:{}", up.addr.port())).await;
    assert!(head.starts_with("HTTP/1.1 200"));
    let tls = tls_over(s, &h.ca_pem, "evil.test", &[b"http/1.1"]).await;
    assert!(tls.is_err(), "a leaf must not be minted for a fronted name");
    assert!(
        h.events()
            .iter()
            .any(|e| e.reason.as_deref() == Some("sni-mismatch"))
    );
    assert!(up.seen.paths().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_inner_request_must_name_the_tunnel_host() {
    let up = upstream(true).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let port = up.addr.port();

    // HTTP/1.1: Host names another (also allowed!) host than the CONNECT target.
    let (s, _) = connect_tunnel(&h.proxy_addr(), &format!("localhost:{port}")).await;
    let mut tls = tls_over(s, &h.ca_pem, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    tls.write_all(format!("GET /fronted HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 421"), "{}", short(&head));

    // HTTP/2: a second stream on the same connection with a different :authority.
    let (s, _) = connect_tunnel(&h.proxy_addr(), &format!("localhost:{port}")).await;
    let tls = tls_over(s, &h.ca_pem, "localhost", &[b"h2"]).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let ok = http::Request::get(format!("https://localhost:{port}/same"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(ok).await.unwrap().status(), 200);
    let other = http::Request::get(format!("https://127.0.0.1:{port}/other"))
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    assert_eq!(sender.send_request(other).await.unwrap().status(), 421);
    assert_eq!(up.seen.paths(), vec!["/same".to_owned()]);
    assert!(
        h.events_when(|ev| ev
            .iter()
            .filter(|e| e.reason.as_deref() == Some("host-mismatch"))
            .count()
            >= 2)
            .await
            .iter()
            .filter(|e| e.reason.as_deref() == Some("host-mismatch"))
            .count()
            >= 2
    );
}

async fn raw_exchange(proxy: &str, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(bytes).await.unwrap();
    read_all(&mut s).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_never_reaches_upstream() {
    let up = upstream(false).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        ..Setup::default()
    })
    .await;
    let t = format!("127.0.0.1:{}", up.addr.port());

    // CL.TE: a front end honouring Content-Length would forward "GET /admin" as a second request.
    let clte = format!(
        "POST http://{t}/echo HTTP/1.1\r\nHost: {t}\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET http://{t}/admin HTTP/1.1\r\nHost: {t}\r\n\r\n"
    );
    let out = raw_exchange(&h.proxy_addr(), clte.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 400") && out.contains("request-smuggling"),
        "{}",
        short(&out)
    );
    assert!(!out.contains("/admin"), "{}", short(&out));
    // TE.CL with an obfuscated Transfer-Encoding.
    let tecl = format!(
        "POST http://{t}/echo HTTP/1.1\r\nHost: {t}\r\nTransfer-Encoding: chunked, identity\r\nContent-Length: 40\r\n\r\n5\r\nAAAAA\r\n0\r\n\r\nGET http://{t}/admin2 HTTP/1.1\r\n\r\n"
    );
    let out = raw_exchange(&h.proxy_addr(), tecl.as_bytes()).await;
    assert!(out.starts_with("HTTP/1.1 400"), "{}", short(&out));
    // obs-fold header continuation.
    let fold = format!("GET http://{t}/fold HTTP/1.1\r\nHost: {t}\r\nX-A: a\r\n  folded\r\n\r\n");
    assert!(
        raw_exchange(&h.proxy_addr(), fold.as_bytes())
            .await
            .starts_with("HTTP/1.1 400")
    );
    // Bad chunk size.
    let bad_chunk = format!(
        "POST http://{t}/chunk HTTP/1.1\r\nHost: {t}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nAAAA\r\n0\r\n\r\n"
    );
    let _ = raw_exchange(&h.proxy_addr(), bad_chunk.as_bytes()).await;
    // Two different Content-Lengths.
    let two_cl = format!(
        "POST http://{t}/cl HTTP/1.1\r\nHost: {t}\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nAB"
    );
    assert!(
        raw_exchange(&h.proxy_addr(), two_cl.as_bytes())
            .await
            .starts_with("HTTP/1.1 400")
    );

    let seen = up.seen.paths();
    for smuggled in ["/admin", "/admin2", "/fold", "/cl"] {
        assert!(
            !seen.contains(&smuggled.to_owned()),
            "{smuggled} reached upstream: {seen:?}"
        );
    }
    // A bad chunk may start a request upstream, but never a complete one.
    assert!(
        up.seen
            .requests
            .lock()
            .unwrap()
            .iter()
            .all(|r| r.path != "/chunk"),
        "{seen:?}"
    );
    // hyper frames a CL+TE request by Transfer-Encoding alone, drops Content-Length and closes the connection after
    // answering (RFC 9112 §6.3); the proxy re-frames what it forwards, so upstream never sees conflicting framing.
    for r in up.seen.requests.lock().unwrap().iter() {
        assert!(
            !(r.headers.contains_key("content-length")
                && r.headers.contains_key("transfer-encoding")),
            "{r:?}"
        );
        assert_eq!(
            r.body_len, 0,
            "the smuggled bytes were not forwarded as body either: {r:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let up = upstream(false).await;
    let policy = allow(&up);
    let h = start(Setup {
        policy: &policy,
        ..Setup::default()
    })
    .await;
    let t = format!("127.0.0.1:{}", up.addr.port());
    let big = format!(
        "GET http://{t}/big-head HTTP/1.1\r\nHost: {t}\r\nX-Big: {}\r\n\r\n",
        "a".repeat(100 * 1024)
    );
    let out = raw_exchange(&h.proxy_addr(), big.as_bytes()).await;
    assert!(
        out.starts_with("HTTP/1.1 431") || out.is_empty(),
        "{}",
        short(&out)
    );
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let out = raw_exchange(
        &h.proxy_addr(),
        format!("GET http://{t}/many HTTP/1.1\r\nHost: {t}\r\n{many}\r\n").as_bytes(),
    )
    .await;
    assert!(
        out.starts_with("HTTP/1.1 431") || out.is_empty(),
        "{}",
        short(&out)
    );
    assert!(up.seen.paths().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_loris_clients_cannot_exhaust_the_proxy() {
    let up = upstream(false).await;
    let policy = allow(&up);
    let mut limits = Limits::default();
    limits.max_connections_per_sandbox = 4;
    limits.header_read_timeout = Duration::from_millis(800);
    let h = start(Setup {
        policy: &policy,
        limits,
        ..Setup::default()
    })
    .await;
    let t = format!("127.0.0.1:{}", up.addr.port());

    // Fill every slot with clients that dribble a header byte every 100 ms.
    let mut lorises = Vec::new();
    for _ in 0..4 {
        let mut s = TcpStream::connect(h.proxy_addr()).await.unwrap();
        s.write_all(format!("GET http://{t}/slow HTTP/1.1\r\nHost: {t}\r\nX-Slow: ").as_bytes())
            .await
            .unwrap();
        lorises.push(tokio::spawn(async move {
            for _ in 0..100 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                if s.write_all(b"a").await.is_err() {
                    return true;
                }
            }
            false
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    // While the slots are full, a fifth connection is turned away.
    let mut fifth = TcpStream::connect(h.proxy_addr()).await.unwrap();
    assert!(closed_without_data(&mut fifth).await);
    // The head timeout frees the slots; a normal client then gets through.
    let mut served = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        if let Ok(r) = h.client().get(format!("http://{t}/after")).send().await
            && r.status() == 200
        {
            served = true;
            break;
        }
    }
    assert!(served, "a normal client was starved");
    for l in lorises {
        assert!(l.await.unwrap(), "a slow-loris connection was kept open");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unix_socket_ingress_tags_connections_with_their_sandbox() {
    let up = upstream(false).await;
    let dir = tempfile::tempdir().unwrap();
    let audit = Arc::new(MemoryAudit::default());
    let proxy = Proxy::new(ProxyConfig::new(dir.path().join("state")), audit.clone()).unwrap();
    let policy = SimplePolicy::parse(&[("l", &allow(&up))]).unwrap();
    let sb = proxy.sandbox("sb-unix", Arc::new(policy), Arc::new(NoCredentials));
    let sock = dir.path().join("proxy.sock");
    let _l = proxy
        .listen_unix(sb, &sock, Ingress::Forward)
        .await
        .unwrap();
    let mut s = tokio::net::UnixStream::connect(&sock).await.unwrap();
    let t = format!("127.0.0.1:{}", up.addr.port());
    s.write_all(
        format!("GET http://{t}/via-unix HTTP/1.1\r\nHost: {t}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await
    .unwrap();
    let out = read_all(&mut s).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{}", short(&out));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let events = audit.events();
    assert!(events.iter().any(|e| e.sandbox == "sb-unix"
        && matches!(&e.action, AuditAction::HttpRequest { path, .. } if path == "/via-unix")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transparent_mode_classifies_by_sni_and_host_and_refuses_raw() {
    let up = upstream(true).await;
    let plain = upstream(false).await;
    let (echo, got, _t) = echo_server().await;
    let policy = allow_policy(&[
        format!("localhost:{}", up.addr.port()),
        format!("127.0.0.1:{}", plain.addr.port()),
    ]);
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let sb = {
        let p = SimplePolicy::parse(&[("test-layer", &policy)]).unwrap();
        h.proxy
            .sandbox("sb-transparent", Arc::new(p), Arc::new(NoCredentials))
    };
    let spawn = |dst: std::net::SocketAddr| {
        let (client, server) = tokio::io::duplex(64 * 1024);
        tokio::spawn(h.proxy.clone().serve_connection(
            sb.clone(),
            server,
            Ingress::Transparent { original_dst: dst },
        ));
        client
    };

    // TLS: destination learned from SNI.
    let io = spawn(up.addr);
    let mut tls = tls_over(io, &h.ca_pem, "localhost", &[b"http/1.1"])
        .await
        .unwrap();
    tls.write_all(
        format!(
            "GET /transparent-tls HTTP/1.1\r\nHost: localhost:{}\r\nConnection: close\r\n\r\n",
            up.addr.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let out = read_all(&mut tls).await;
    assert!(out.starts_with("HTTP/1.1 200"), "{}", short(&out));

    // HTTP: destination learned from Host.
    let mut io = spawn(plain.addr);
    io.write_all(
        format!(
            "GET /transparent-http HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n\r\n",
            plain.addr.port()
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    assert!(read_all(&mut io).await.starts_with("HTTP/1.1 200"));

    // Raw bytes to a port with no raw rule: refused.
    let mut io = spawn(echo);
    io.write_all(b"\x00raw").await.unwrap();
    let mut buf = [0u8; 8];
    assert!(matches!(
        tokio::time::timeout(Duration::from_secs(10), io.read(&mut buf)).await,
        Ok(Ok(0))
    ));
    assert!(got.lock().unwrap().is_empty());
    let events = h.events();
    assert!(events.iter().any(|e| e.sandbox == "sb-transparent"
        && matches!(&e.action, AuditAction::NetworkEgress { proxy, .. } if proxy == "transparent")
        && e.decision == Some(AuditDecision::Deny)));
    assert_eq!(up.seen.paths(), vec!["/transparent-tls".to_owned()]);
    assert_eq!(plain.seen.paths(), vec!["/transparent-http".to_owned()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_tunnels_are_closed() {
    let mut limits = Limits::default();
    limits.idle_timeout = Duration::from_millis(300);
    limits.first_bytes_timeout = Duration::from_secs(30);
    let h = start(Setup {
        policy: &allow_policy(&["example.test".to_owned()]),
        limits,
        ..Setup::default()
    })
    .await;
    let (mut s, head) = connect_tunnel(&h.proxy_addr(), "example.test:443").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}", short(&head));
    let started = std::time::Instant::now();
    assert!(closed_without_data(&mut s).await);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "an idle tunnel was held open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_keep_alive_connections_outlive_the_head_timeout_but_silent_ones_do_not() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upstream(false).await;
    let policy = allow(&up);
    let mut limits = Limits::default();
    limits.header_read_timeout = Duration::from_millis(400);
    let h = start(Setup {
        policy: &policy,
        limits,
        ..Setup::default()
    })
    .await;
    let t = format!("127.0.0.1:{}", up.addr.port());
    let mut s = TcpStream::connect(h.proxy_addr()).await.unwrap();
    for round in 0..2 {
        s.write_all(format!("GET http://{t}/ka{round} HTTP/1.1\r\nHost: {t}\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let head = read_head(&mut s).await;
        assert!(
            head.starts_with("HTTP/1.1 200"),
            "round {round}: {}",
            short(&head)
        );
        let len: usize = head
            .lines()
            .find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length: ")
                    .map(str::to_owned)
            })
            .and_then(|v| v.trim().parse().ok())
            .unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).await.unwrap();
        // Idle between requests for well over the head timeout: the connection stays (idle timeout applies).
        tokio::time::sleep(Duration::from_millis(1200)).await;
    }
    assert_eq!(up.seen.paths(), ["/ka0", "/ka1"]);
    // A connection that never starts a request is closed once the head timeout passes.
    let mut silent = TcpStream::connect(h.proxy_addr()).await.unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 1];
    let n = tokio::time::timeout(Duration::from_secs(10), silent.read(&mut buf))
        .await
        .expect("a silent connection was held open")
        .unwrap_or(0);
    assert_eq!(n, 0);
    assert!(started.elapsed() < Duration::from_secs(5));
}
