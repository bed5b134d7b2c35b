//! Connecting to the destination: host-side DNS, the restricted-address check on the exact address connected to,
//! TCP_NODELAY, verified TLS (webpki + system roots + extra CAs) with ALPN, and optional chaining through an upstream
//! HTTP proxy via CONNECT.

use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::Uri;
use hyper_util::client::legacy::connect::{Connected, Connection};
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::addr::restricted_category;
use crate::authority::{Authority, Host, normalize_host};
use crate::seam::{EgressPolicy, Verdict};

/// Why an upstream connection failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// Every address the host resolved to is restricted and no rule names it.
    #[error(
        "{host} resolves to {ip} ({category}), which a sandbox may not reach unless a rule names it"
    )]
    PrivateAddress {
        /// The host asked for.
        host: String,
        /// The refused address.
        ip: IpAddr,
        /// Port.
        port: u16,
        /// `loopback`, `private`, `link-local`, ...
        category: &'static str,
        /// The policy's answer.
        verdict: Verdict,
    },
    /// DNS failed or returned nothing.
    #[error("cannot resolve {host}: {detail}")]
    Resolve {
        /// Host.
        host: String,
        /// Detail.
        detail: String,
    },
    /// TCP connect failed.
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// Address.
        addr: String,
        /// Cause.
        source: io::Error,
    },
    /// TLS handshake or verification failed.
    #[error("TLS with {host} failed: {source}")]
    Tls {
        /// Host.
        host: String,
        /// Cause.
        source: io::Error,
    },
    /// Timed out.
    #[error("connecting to {0} timed out")]
    Timeout(String),
    /// The URI has no usable host.
    #[error("invalid upstream URI {0}")]
    InvalidUri(String),
    /// The upstream proxy refused or broke the CONNECT.
    #[error("upstream proxy {proxy}: {detail}")]
    Chain {
        /// The upstream proxy.
        proxy: String,
        /// What went wrong.
        detail: String,
    },
}

/// A corporate proxy to chain through (`host:port`, HTTP CONNECT).
#[derive(Debug, Clone)]
pub struct UpstreamProxy {
    /// Its address as given.
    pub authority: String,
}

/// Build the upstream TLS client configuration.
pub(crate) fn client_config(
    extra_cas: &[CertificateDer<'static>],
    system_roots: bool,
    alpn: &[&[u8]],
) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if system_roots {
        for cert in rustls_native_certs::load_native_certs().certs {
            let _ = roots.add(cert);
        }
    }
    for ca in extra_cas {
        let _ = roots.add(ca.clone());
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap_or_else(|_| ClientConfig::builder_with_protocol_versions(rustls::DEFAULT_VERSIONS));
    let mut cfg = builder.with_root_certificates(roots).with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

/// Resolve `host`, keep only addresses that pass the restricted-address check, connect to the first that answers.
pub(crate) async fn connect_checked(
    policy: &dyn EgressPolicy,
    host: &Host,
    port: u16,
    chain: Option<&UpstreamProxy>,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let name = host.as_policy_str();
    let addrs = resolve(host, port, &name, timeout).await?;
    let mut refused = None;
    let mut allowed = Vec::new();
    for addr in addrs {
        match restricted_category(addr.ip()) {
            None => allowed.push(addr),
            Some(category) => {
                let verdict = policy.allows_address(addr.ip(), port, &name);
                if verdict.allowed {
                    allowed.push(addr);
                } else if refused.is_none() {
                    refused = Some(UpstreamError::PrivateAddress {
                        host: name.clone(),
                        ip: addr.ip(),
                        port,
                        category,
                        verdict,
                    });
                }
            }
        }
    }
    if allowed.is_empty() {
        return Err(refused.unwrap_or_else(|| UpstreamError::Resolve {
            host: name,
            detail: "no addresses".into(),
        }));
    }
    if let Some(proxy) = chain {
        return connect_via_proxy(
            proxy,
            &Authority {
                host: host.clone(),
                port,
            },
            timeout,
        )
        .await;
    }
    let mut last = None;
    for addr in allowed {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                let _ = stream.set_nodelay(true);
                return Ok(stream);
            }
            Ok(Err(source)) => {
                last = Some(UpstreamError::Connect {
                    addr: addr.to_string(),
                    source,
                })
            }
            Err(_) => last = Some(UpstreamError::Timeout(addr.to_string())),
        }
    }
    Err(last.unwrap_or_else(|| UpstreamError::Resolve {
        host: name,
        detail: "no addresses".into(),
    }))
}

async fn resolve(
    host: &Host,
    port: u16,
    name: &str,
    timeout: Duration,
) -> Result<Vec<SocketAddr>, UpstreamError> {
    if let Host::Ip(ip) = host {
        return Ok(vec![SocketAddr::new(*ip, port)]);
    }
    let lookup = tokio::net::lookup_host((name, port));
    match tokio::time::timeout(timeout, lookup).await {
        Ok(Ok(addrs)) => Ok(addrs.collect()),
        Ok(Err(e)) => Err(UpstreamError::Resolve {
            host: name.to_owned(),
            detail: e.to_string(),
        }),
        Err(_) => Err(UpstreamError::Timeout(name.to_owned())),
    }
}

async fn connect_via_proxy(
    proxy: &UpstreamProxy,
    target: &Authority,
    timeout: Duration,
) -> Result<TcpStream, UpstreamError> {
    let chain_err = |detail: String| UpstreamError::Chain {
        proxy: proxy.authority.clone(),
        detail,
    };
    let fut = async {
        let mut stream = TcpStream::connect(proxy.authority.as_str())
            .await
            .map_err(|e| chain_err(e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n");
        stream
            .write_all(req.as_bytes())
            .await
            .map_err(|e| chain_err(e.to_string()))?;
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        // Read byte by byte so no tunnel bytes are consumed past the response head.
        while !head.ends_with(b"\r\n\r\n") {
            if head.len() > 16 * 1024
                || stream
                    .read(&mut byte)
                    .await
                    .map_err(|e| chain_err(e.to_string()))?
                    == 0
            {
                return Err(chain_err("closed during CONNECT".into()));
            }
            head.push(byte[0]);
        }
        let status_line =
            String::from_utf8_lossy(head.split(|&b| b == b'\r').next().unwrap_or_default())
                .into_owned();
        if status_line.split_whitespace().nth(1) != Some("200") {
            return Err(chain_err(format!(
                "CONNECT {target} answered {status_line:?}"
            )));
        }
        Ok(stream)
    };
    tokio::time::timeout(timeout, fut)
        .await
        .map_err(|_| UpstreamError::Timeout(proxy.authority.clone()))?
}

/// TLS on top of a connected stream, verifying `host`.
pub(crate) async fn tls_connect(
    cfg: Arc<ClientConfig>,
    host: &Host,
    tcp: TcpStream,
    timeout: Duration,
) -> Result<TlsStream<TcpStream>, UpstreamError> {
    let name = host.as_policy_str();
    let server_name = match host {
        Host::Ip(ip) => ServerName::IpAddress((*ip).into()),
        Host::Name(n) => {
            ServerName::try_from(n.clone()).map_err(|_| UpstreamError::InvalidUri(n.clone()))?
        }
    };
    let connector = tokio_rustls::TlsConnector::from(cfg);
    match tokio::time::timeout(timeout, connector.connect(server_name, tcp)).await {
        Ok(Ok(s)) => Ok(s),
        Ok(Err(source)) => Err(UpstreamError::Tls { host: name, source }),
        Err(_) => Err(UpstreamError::Timeout(name)),
    }
}

/// An upstream stream, plain or TLS.
pub(crate) enum UpstreamStream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write_vectored(cx, bufs),
        }
    }
    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(s) => s.is_write_vectored(),
            Self::Tls(s) => s.is_write_vectored(),
        }
    }
}

/// The connection type handed to hyper's pooled client.
pub struct UpstreamConn {
    io: TokioIo<UpstreamStream>,
    h2: bool,
}

impl std::fmt::Debug for UpstreamConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamConn")
            .field("h2", &self.h2)
            .finish_non_exhaustive()
    }
}

impl Connection for UpstreamConn {
    fn connected(&self) -> Connected {
        if self.h2 {
            Connected::new().negotiated_h2()
        } else {
            Connected::new()
        }
    }
}

impl hyper::rt::Read for UpstreamConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for UpstreamConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The pooled client's connector: every new upstream connection goes through [`connect_checked`].
#[derive(Clone)]
pub struct Connector {
    pub(crate) policy: Arc<dyn EgressPolicy>,
    pub(crate) tls: Arc<ClientConfig>,
    pub(crate) chain: Option<Arc<UpstreamProxy>>,
    pub(crate) timeout: Duration,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("chain", &self.chain)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for Connector {
    type Response = UpstreamConn;
    type Error = UpstreamError;
    type Future = Pin<Box<dyn Future<Output = Result<UpstreamConn, UpstreamError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), UpstreamError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let raw_host = uri
                .host()
                .ok_or_else(|| UpstreamError::InvalidUri(uri.to_string()))?;
            let host =
                normalize_host(raw_host).map_err(|_| UpstreamError::InvalidUri(uri.to_string()))?;
            let https = uri.scheme_str() == Some("https");
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tcp = connect_checked(
                this.policy.as_ref(),
                &host,
                port,
                this.chain.as_deref(),
                this.timeout,
            )
            .await?;
            if !https {
                return Ok(UpstreamConn {
                    io: TokioIo::new(UpstreamStream::Plain(tcp)),
                    h2: false,
                });
            }
            let tls = tls_connect(this.tls.clone(), &host, tcp, this.timeout).await?;
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(UpstreamConn {
                io: TokioIo::new(UpstreamStream::Tls(Box::new(tls))),
                h2,
            })
        })
    }
}
