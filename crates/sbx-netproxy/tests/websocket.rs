//! WebSockets through the intercepting proxy: HTTP/1.1 Upgrade inside a CONNECT tunnel (TLS to the proxy's leaf, TLS
//! to the upstream) relays both ways; RFC 8441 WebSockets over HTTP/2 are not offered (the proxy's HTTP/2 SETTINGS do
//! not enable extended CONNECT), so clients use HTTP/1.1 for them, and one that tries anyway is refused.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_through_a_mitm_tunnel_relays_both_ways() {
    let up = upstream(true).await;
    let target = format!("127.0.0.1:{}", up.addr.port());
    let policy = allow_policy(std::slice::from_ref(&target));
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let (tcp, head) = connect_tunnel(&h.proxy_addr(), &target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}", short(&head));
    let mut tls = tls_over(tcp, &h.ca_pem, "127.0.0.1", &[b"http/1.1"])
        .await
        .unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {target}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    tls.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut tls).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{}", short(&head));
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    for frame in [&b"\x81\x05hello"[..], &b"\x81\x05world"[..]] {
        tls.write_all(frame).await.unwrap();
        let mut buf = vec![0u8; frame.len()];
        tokio::time::timeout(Duration::from_secs(10), tls.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(buf, frame);
    }
    let seen = up.seen.last();
    assert_eq!(
        (seen.path.as_str(), seen.version.as_str()),
        ("/ws", "HTTP/1.1")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websockets_over_http2_are_not_offered_and_an_attempt_is_refused() {
    let up = upstream(true).await;
    let target = format!("127.0.0.1:{}", up.addr.port());
    let policy = allow_policy(std::slice::from_ref(&target));
    let h = start(Setup {
        policy: &policy,
        extra_ca: vec![up.ca_pem.clone()],
        ..Setup::default()
    })
    .await;
    let (tcp, head) = connect_tunnel(&h.proxy_addr(), &target).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{}", short(&head));
    let tls = tls_over(tcp, &h.ca_pem, "127.0.0.1", &[b"h2"])
        .await
        .unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    // Ordinary HTTP/2 works on this connection...
    let ok = sender
        .send_request(
            hyper::Request::get(format!("https://{target}/plain"))
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    // ...but an RFC 8441 extended CONNECT is refused: the proxy never sent SETTINGS_ENABLE_CONNECT_PROTOCOL, so the
    // HTTP/2 layer rejects it before any tunnel exists, and the upstream never sees a WebSocket request.
    let mut ws = hyper::Request::connect(format!("https://{target}/ws"))
        .version(http::Version::HTTP_2)
        .body(Empty::<Bytes>::new())
        .unwrap();
    ws.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let refused = match sender.send_request(ws).await {
        Ok(resp) => !resp.status().is_success(),
        Err(_) => true,
    };
    assert!(
        refused,
        "extended CONNECT must not open a WebSocket over HTTP/2"
    );
    assert!(!up.seen.paths().contains(&"/ws".to_owned()));
}
