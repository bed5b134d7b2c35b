//! Test harness: a real HTTPS upstream with its own CA, the proxy in front of it, and clients that trust the proxy CA.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use sbx_netproxy::simple::{MemoryAudit, SimplePolicy, StaticCredential, StaticInjector};
use sbx_netproxy::{AuditEvent, Ingress, Limits, Listener, Proxy, ProxyConfig};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub type Body = BoxBody<Bytes, Infallible>;

/// What the upstream saw.
#[derive(Default)]
pub struct Seen {
    pub requests: Mutex<Vec<SeenRequest>>,
    pub sse_release: tokio::sync::Notify,
}

#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub version: String,
    pub headers: BTreeMap<String, String>,
    pub body_len: usize,
    /// The raw query string (empty when none).
    pub query: String,
    /// The first 64 KiB of the body.
    pub body: Vec<u8>,
}

impl Seen {
    pub fn paths(&self) -> Vec<String> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }
    pub fn last(&self) -> SeenRequest {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("upstream saw no request")
    }
}

pub struct Upstream {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub seen: Arc<Seen>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn full(s: impl Into<Bytes>) -> Body {
    Full::new(s.into()).boxed()
}

async fn route(seen: Arc<Seen>, mut req: Request<Incoming>) -> Result<Response<Body>, Infallible> {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let mut headers: BTreeMap<String, String> = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    // HTTP/2 carries the host as :authority; record it under `host` like HTTP/1.1 does.
    if let (false, Some(a)) = (headers.contains_key("host"), req.uri().authority()) {
        headers.insert("host".into(), a.as_str().to_owned());
    }
    let version = format!("{:?}", req.version());
    if path == "/ws" {
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            if let Ok(up) = upgrade.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        seen.requests.lock().unwrap().push(SeenRequest {
            method,
            path,
            version,
            headers,
            body_len: 0,
            query,
            body: Vec::new(),
        });
        return Ok(Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(full(""))
            .unwrap());
    }
    let mut body_len = 0;
    let mut kept = Vec::new();
    let mut body = req.into_body();
    while let Some(frame) = body.frame().await {
        match frame {
            Ok(f) => {
                let data = f.data_ref().map_or(&[][..], |d| &d[..]);
                body_len += data.len();
                let room = (64 * 1024usize).saturating_sub(kept.len());
                kept.extend_from_slice(&data[..data.len().min(room)]);
            }
            Err(_) => {
                return Ok(Response::builder()
                    .status(400)
                    .body(full("bad body"))
                    .unwrap());
            }
        }
    }
    let record = SeenRequest {
        method,
        path: path.clone(),
        version,
        headers,
        body_len,
        query,
        body: kept,
    };
    seen.requests.lock().unwrap().push(record.clone());
    let resp = match path.as_str() {
        "/sse" => {
            let seen = seen.clone();
            let stream = async_stream(seen);
            Response::builder()
                .header("content-type", "text/event-stream")
                .body(StreamBody::new(stream).boxed())
                .unwrap()
        }
        "/big" => {
            let total: usize = 32 * 1024 * 1024;
            let chunks = futures_iter(total);
            Response::builder()
                .body(StreamBody::new(chunks).boxed())
                .unwrap()
        }
        "/v1/models" => Response::new(full(
            r#"{"data":[{"id":"claude-opus-4"},{"id":"claude-sonnet-4"}]}"#,
        )),
        _ => {
            let json = serde_json::json!({"method": record.method, "path": record.path, "headers": record.headers, "body_len": body_len, "version": record.version});
            Response::builder()
                .header("content-type", "application/json")
                .body(full(json.to_string()))
                .unwrap()
        }
    };
    Ok(resp)
}

/// SSE: one event now, the second only after the test releases it (proves token-by-token flow).
fn async_stream(
    seen: Arc<Seen>,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(4);
    tokio::spawn(async move {
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: one\n\n"))))
            .await;
        let _ = tokio::time::timeout(Duration::from_secs(20), seen.sse_release.notified()).await;
        let _ = tx
            .send(Ok(Frame::data(Bytes::from_static(b"data: two\n\n"))))
            .await;
    });
    tokio_stream_from(rx)
}

fn tokio_stream_from<T: Send + 'static>(
    rx: tokio::sync::mpsc::Receiver<T>,
) -> impl futures_core::Stream<Item = T> + Send + Sync + 'static {
    ReceiverStream(Mutex::new(rx))
}

struct ReceiverStream<T>(Mutex<tokio::sync::mpsc::Receiver<T>>);
impl<T> futures_core::Stream for ReceiverStream<T> {
    type Item = T;
    fn poll_next(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<T>> {
        self.0.lock().unwrap().poll_recv(cx)
    }
}

fn futures_iter(
    total: usize,
) -> impl futures_core::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + Sync + 'static {
    let (tx, rx) = tokio::sync::mpsc::channel(8);
    tokio::spawn(async move {
        let chunk = Bytes::from(vec![b'z'; 64 * 1024]);
        let mut sent = 0;
        while sent < total {
            if tx.send(Ok(Frame::data(chunk.clone()))).await.is_err() {
                return;
            }
            sent += chunk.len();
        }
    });
    tokio_stream_from(rx)
}

pub struct TestCa {
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    pub fn new() -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "upstream test CA");
        let cert = params.self_signed(&key).unwrap();
        Self {
            pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    pub fn server_config(&self) -> Arc<rustls::ServerConfig> {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![cert.der().clone()],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
            )
            .unwrap();
        cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Arc::new(cfg)
    }
}

/// Start an upstream on 127.0.0.1: HTTPS when `tls`, plain HTTP otherwise.
pub async fn upstream(tls: bool) -> Upstream {
    let ca = TestCa::new();
    let cfg = ca.server_config();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let seen2 = seen.clone();
    let task = tokio::spawn(async move {
        let acceptor = tokio_rustls::TlsAcceptor::from(cfg);
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let seen = seen2.clone();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| route(seen.clone(), req));
                let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                if tls {
                    if let Ok(s) = acceptor.accept(stream).await {
                        let _ = builder
                            .serve_connection_with_upgrades(TokioIo::new(s), svc)
                            .await;
                    }
                } else {
                    let _ = builder
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                }
            });
        }
    });
    Upstream {
        addr,
        ca_pem: ca.pem,
        seen,
        task,
    }
}

/// A raw TCP echo server that records what it received.
pub async fn echo_server() -> (SocketAddr, Arc<Mutex<Vec<u8>>>, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let got = Arc::new(Mutex::new(Vec::new()));
    let got2 = got.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                continue;
            };
            let got = got2.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    got.lock().unwrap().extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    (addr, got, task)
}

pub struct Harness {
    pub proxy: Proxy,
    pub listener: Listener,
    pub audit: Arc<MemoryAudit>,
    pub ca_pem: String,
    pub placeholders: Vec<(String, String)>,
    pub state: tempfile::TempDir,
}

impl Harness {
    pub fn proxy_addr(&self) -> String {
        self.listener.local_addr().to_owned()
    }

    pub fn events(&self) -> Vec<AuditEvent> {
        self.audit.events()
    }

    /// A reqwest client through the proxy that trusts only the proxy's CA.
    pub fn client(&self) -> reqwest::Client {
        self.client_builder().build().unwrap()
    }

    pub fn client_builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::all(format!("http://{}", self.proxy_addr())).unwrap())
            .tls_built_in_root_certs(false)
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .timeout(Duration::from_secs(30))
    }

    pub fn placeholder(&self, service: &str) -> String {
        self.placeholders
            .iter()
            .find(|(s, _)| s == service)
            .map(|(_, p)| p.clone())
            .unwrap()
    }
}

#[derive(Default)]
pub struct Setup<'a> {
    pub policy: &'a str,
    pub extra_ca: Vec<String>,
    pub creds: Vec<StaticCredential>,
    pub limits: Limits,
    pub upstream_proxy: Option<String>,
}

pub async fn start(setup: Setup<'_>) -> Harness {
    let state = tempfile::tempdir().unwrap();
    let audit = Arc::new(MemoryAudit::default());
    let mut config = ProxyConfig::new(state.path());
    config.extra_ca_pem = setup.extra_ca;
    config.system_roots = false;
    config.limits = setup.limits;
    config.upstream_proxy = setup.upstream_proxy;
    let proxy = Proxy::new(config, audit.clone()).unwrap();
    let policy = SimplePolicy::parse(&[("test-layer", setup.policy)]).unwrap();
    let injector = StaticInjector::new(setup.creds);
    let placeholders = injector.placeholders();
    let sandbox = proxy.sandbox("sb-test", Arc::new(policy), Arc::new(injector));
    let listener = proxy
        .listen_tcp(sandbox, "127.0.0.1:0".parse().unwrap(), Ingress::Forward)
        .await
        .unwrap();
    let ca_pem = proxy.ca().cert_pem().to_owned();
    Harness {
        proxy,
        listener,
        audit,
        ca_pem,
        placeholders,
        state,
    }
}

pub fn allow_policy(hosts: &[String]) -> String {
    let list: Vec<String> = hosts.iter().map(|h| format!("{h:?}")).collect();
    format!(
        "name = \"test-layer\"\n[[network]]\naction = \"allow\"\nhosts = [{}]\n",
        list.join(", ")
    )
}

/// Open a CONNECT tunnel by hand; returns the stream and the proxy's response head.
pub async fn connect_tunnel(proxy: &str, target: &str) -> (TcpStream, String) {
    let mut s = TcpStream::connect(proxy).await.unwrap();
    s.write_all(format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let head = read_head(&mut s).await;
    (s, head)
}

pub async fn read_head<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(20), s.read(&mut b)).await {
            Ok(Ok(1)) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Read until EOF (or 20 s); returns what arrived.
pub async fn read_all<S: tokio::io::AsyncRead + Unpin>(s: &mut S) -> String {
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS client over `io` that trusts `ca_pem`, sending `sni`.
pub async fn tls_over<S>(
    io: S,
    ca_pem: &str,
    sni: &str,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca_pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let name = rustls_pki_types::ServerName::try_from(sni.to_owned()).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, io)
        .await
}

use rustls_pki_types::pem::PemObject;

/// The first 300 bytes of a response, for assertion messages.
pub fn short(s: &str) -> String {
    s.chars().take(300).collect()
}

impl Harness {
    /// Audit events once `ready` holds for them (records are emitted when response bodies end, just after the client
    /// has read them), or after 3 s whatever they are.
    pub async fn events_when(&self, ready: impl Fn(&[AuditEvent]) -> bool) -> Vec<AuditEvent> {
        for _ in 0..60 {
            let events = self.events();
            if ready(&events) {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.events()
    }
}
