//! CONNECT tunnels and transparent connections: classify the first bytes, then intercept TLS, serve inner HTTP, or
//! (only with an explicit raw-TCP rule) relay bytes. Nothing is ever relayed raw without that rule.

use std::net::SocketAddr;
use std::sync::Arc;

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncWriteExt;
use tokio_rustls::LazyConfigAcceptor;

use crate::authority::{Authority, Host, normalize_host, parse_authority};
use crate::body::{ProxyBody, empty};
use crate::classify::{Classified, classify, quick_kind};
use crate::deny::{self, Subject};
use crate::handler::{Conn, Tunnel, serve_http1, serve_http2};
use crate::io::{BoxIo, Prefixed, read_first};
use crate::seam::{AuditAction, AuditDecision, NetworkRequest, Protocol, Verdict};
use crate::upstream::connect_checked;

fn egress(conn: &Conn, target: &Authority, proxy: &str, verdict: &Verdict) {
    let decision = if verdict.allowed {
        AuditDecision::Allow
    } else {
        AuditDecision::Deny
    };
    let action = AuditAction::NetworkEgress {
        host: target.host.as_policy_str(),
        port: target.port,
        proxy: proxy.to_owned(),
    };
    conn.audit(Some(decision), action, Some(verdict));
}

fn check(conn: &Conn, target: &Authority, protocol: Protocol) -> Verdict {
    let host = target.host.as_policy_str();
    conn.sandbox.policy.check_network(&NetworkRequest {
        host: &host,
        port: target.port,
        protocol,
        method: None,
        path: None,
    })
}

/// Handle a CONNECT: refuse at once when no protocol could be allowed to the target, else answer 200 and classify the
/// tunnel's first bytes.
pub(crate) async fn connect(conn: Arc<Conn>, req: Request<Incoming>) -> Response<ProxyBody> {
    let Some(raw) = req.uri().authority().map(|a| a.as_str().to_owned()) else {
        return deny::error(StatusCode::BAD_REQUEST, "CONNECT needs host:port");
    };
    let target = match parse_authority(&raw) {
        Ok(t) => t,
        Err(e) => {
            return deny::error(
                StatusCode::BAD_REQUEST,
                &format!("CONNECT target {raw:?}: {e}"),
            );
        }
    };
    let mut verdict = check(&conn, &target, Protocol::Https);
    if !verdict.allowed {
        let raw_verdict = check(&conn, &target, Protocol::Tcp);
        if raw_verdict.allowed {
            verdict = raw_verdict;
        }
    }
    if !verdict.allowed {
        egress(&conn, &target, "connect", &verdict);
        let host = target.host.as_policy_str();
        let subject = Subject::Network {
            host: &host,
            port: target.port,
            default_port: target.port == 443,
        };
        return deny::response(
            StatusCode::FORBIDDEN,
            &format!("CONNECT {target}"),
            &verdict,
            &subject,
        );
    }
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        if let Ok(upgraded) = on_upgrade.await {
            let io: BoxIo = Box::new(TokioIo::new(upgraded));
            let guard = conn.guard.clone();
            let _ = guard.watch(run_connect_tunnel(conn, io, target)).await;
        }
    });
    Response::new(empty())
}

async fn run_connect_tunnel(conn: Arc<Conn>, mut io: BoxIo, target: Authority) {
    let (first, kind) =
        read_first(&mut io, conn.shared.limits.first_bytes_timeout, quick_kind).await;
    match kind {
        Classified::Tls { .. } => {
            let verdict = check(&conn, &target, Protocol::Https);
            egress(&conn, &target, "connect", &verdict);
            if verdict.allowed {
                intercept_tls(conn, Box::new(Prefixed::new(first, io)), target, true).await;
            }
        }
        Classified::Http { .. } => {
            egress(
                &conn,
                &target,
                "connect",
                &check(&conn, &target, Protocol::Http),
            );
            let tunnel = Tunnel {
                target,
                sni: None,
                tls: false,
                strict: true,
            };
            serve_http1(conn.with_tunnel(tunnel), Prefixed::new(first, io)).await;
        }
        Classified::Other | Classified::NeedMore => {
            relay_raw(conn, io, first, target, "connect").await
        }
    }
}

/// Relay raw bytes only when policy has an explicit raw-TCP rule for the target; otherwise refuse and audit.
async fn relay_raw(conn: Arc<Conn>, mut io: BoxIo, first: Vec<u8>, target: Authority, proxy: &str) {
    let verdict = check(&conn, &target, Protocol::Tcp);
    if !verdict.allowed {
        let refused = Verdict {
            reason: format!("raw-tcp-refused ({})", verdict.reason),
            ..verdict
        };
        egress(&conn, &target, proxy, &refused);
        let _ = io.shutdown().await;
        return;
    }
    let limits = &conn.shared.limits;
    let upstream = connect_checked(
        conn.sandbox.policy.as_ref(),
        &target.host,
        target.port,
        None,
        limits.connect_timeout,
    )
    .await;
    let mut upstream = match upstream {
        Ok(s) => s,
        Err(e) => {
            let v = match &e {
                crate::upstream::UpstreamError::PrivateAddress { verdict, .. } => Verdict {
                    reason: "private-address".into(),
                    ..verdict.clone()
                },
                other => Verdict::proxy_deny(&format!("upstream-error ({other})")),
            };
            egress(&conn, &target, proxy, &v);
            return;
        }
    };
    egress(&conn, &target, &format!("{proxy}-raw"), &verdict);
    if upstream.write_all(&first).await.is_ok() {
        let _ = tokio::io::copy_bidirectional(&mut io, &mut upstream).await;
    }
}

/// Terminate the client's TLS with a leaf for `target`, refusing a ClientHello whose SNI names another host.
async fn intercept_tls(conn: Arc<Conn>, io: BoxIo, target: Authority, strict: bool) {
    let limits = &conn.shared.limits;
    let acceptor = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), io);
    let Ok(Ok(start)) = tokio::time::timeout(limits.handshake_timeout, acceptor).await else {
        return;
    };
    let sni = start.client_hello().server_name().map(str::to_owned);
    let sni_host = match sni.as_deref().map(normalize_host) {
        None => None,
        Some(Ok(h)) => Some(h),
        Some(Err(_)) => {
            egress(
                &conn,
                &target,
                "connect",
                &Verdict::proxy_deny("invalid-sni"),
            );
            return;
        }
    };
    if let Some(h) = &sni_host
        && *h != target.host
    {
        // Domain fronting: the TLS name differs from the CONNECT target (or transparent destination).
        egress(
            &conn,
            &target,
            "connect",
            &Verdict::proxy_deny("sni-mismatch"),
        );
        return;
    }
    let Ok(config) = conn.shared.ca.server_config(&target.host) else {
        return;
    };
    let Ok(Ok(tls)) =
        tokio::time::timeout(limits.handshake_timeout, start.into_stream(config)).await
    else {
        return;
    };
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let sni = sni_host.map(|h| h.as_policy_str());
    let tunnel = Tunnel {
        target,
        sni,
        tls: true,
        strict,
    };
    let inner = conn.with_tunnel(tunnel);
    if h2 {
        serve_http2(inner, tls).await;
    } else {
        serve_http1(inner, tls).await;
    }
}

/// A redirected connection: learn the destination from SNI or Host, then the same policy as CONNECT.
pub(crate) async fn transparent(conn: Arc<Conn>, mut io: BoxIo, original_dst: SocketAddr) {
    let (first, kind) = read_first(&mut io, conn.shared.limits.first_bytes_timeout, classify).await;
    let fallback = Authority {
        host: Host::Ip(original_dst.ip()),
        port: original_dst.port(),
    };
    match kind {
        Classified::Tls { sni } => {
            let host = match sni.as_deref().map(normalize_host) {
                None => Host::Ip(original_dst.ip()),
                Some(Ok(h)) => h,
                Some(Err(_)) => {
                    egress(
                        &conn,
                        &fallback,
                        "transparent",
                        &Verdict::proxy_deny("invalid-sni"),
                    );
                    return;
                }
            };
            let target = Authority {
                host,
                port: original_dst.port(),
            };
            let verdict = check(&conn, &target, Protocol::Https);
            egress(&conn, &target, "transparent", &verdict);
            if verdict.allowed {
                intercept_tls(conn, Box::new(Prefixed::new(first, io)), target, true).await;
            }
        }
        Classified::Http { .. } => {
            // Each request is judged (and connected) by its own Host; the original IP is not trusted for routing.
            let tunnel = Tunnel {
                target: fallback,
                sni: None,
                tls: false,
                strict: false,
            };
            serve_http1(conn.with_tunnel(tunnel), Prefixed::new(first, io)).await;
        }
        Classified::Other | Classified::NeedMore => {
            relay_raw(conn, io, first, fallback, "transparent").await
        }
    }
}
