//! The proxy object: configuration, per-sandbox state, and the ingress listeners (TCP, Unix socket, or any stream).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::Semaphore;

use crate::body::ProxyBody;
use crate::ca::{CaError, CaStore, CertificateAuthority, FileCaStore};
use crate::io::{BoxIo, ConnGuard, Io, Watched};
use crate::seam::{AuditSink, CredentialInjector, EgressPolicy};
use crate::upstream::{Connector, UpstreamProxy, client_config};

/// Resource limits. The defaults suit an agent sandbox; every field can be changed.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Limits {
    /// Largest request head (HTTP/1 read buffer) and HTTP/2 header list, in bytes.
    pub max_header_bytes: usize,
    /// Most header fields in one HTTP/1 request.
    pub max_headers: usize,
    /// Time allowed to send a whole request head (defeats slow-loris).
    pub header_read_timeout: Duration,
    /// Time allowed for the client's TLS handshake with the proxy.
    pub handshake_timeout: Duration,
    /// How long to wait for the first bytes after CONNECT (or in transparent mode) before treating the stream as a
    /// server-speaks-first raw TCP stream.
    pub first_bytes_timeout: Duration,
    /// A connection with no bytes moving for this long is closed.
    pub idle_timeout: Duration,
    /// No connection lives longer than this.
    pub total_timeout: Duration,
    /// Open client connections per sandbox; more are refused until some close.
    pub max_connections_per_sandbox: usize,
    /// Largest body the proxy buffers (only model-gated requests and model lists are buffered).
    pub max_buffered_body: usize,
    /// Upstream DNS + TCP + TLS timeout.
    pub connect_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            header_read_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            first_bytes_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            total_timeout: Duration::from_secs(6 * 3600),
            max_connections_per_sandbox: 8192,
            max_buffered_body: 8 * 1024 * 1024,
            connect_timeout: Duration::from_secs(15),
        }
    }
}

/// How the proxy is set up.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ProxyConfig {
    /// Where the CA lives (`ca-bundle.pem`, `ca.pem`).
    pub state_dir: PathBuf,
    /// Extra CA certificates (PEM text) trusted for upstream TLS, e.g. a corporate inspection CA.
    pub extra_ca_pem: Vec<String>,
    /// Whether to trust the system's root store in addition to the webpki roots.
    pub system_roots: bool,
    /// An upstream HTTP proxy (`host:port`) to chain through with CONNECT.
    pub upstream_proxy: Option<String>,
    /// Limits.
    pub limits: Limits,
    /// Where the CA private key is kept; `None` keeps it in `state_dir/ca-bundle.pem` ([`FileCaStore`]). The public
    /// certificate is written to `state_dir/ca.pem` either way.
    pub ca_store: Option<Arc<dyn CaStore>>,
}

impl ProxyConfig {
    /// Defaults with the given state directory.
    #[must_use]
    pub fn new(state_dir: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: state_dir.into(),
            extra_ca_pem: Vec::new(),
            system_roots: true,
            upstream_proxy: None,
            limits: Limits::default(),
            ca_store: None,
        }
    }
}

/// Errors setting the proxy up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyError {
    /// The CA could not be loaded or created.
    #[error(transparent)]
    Ca(#[from] CaError),
    /// An extra CA is not PEM certificates.
    #[error("extra CA #{index}: no PEM certificate found (expected -----BEGIN CERTIFICATE-----)")]
    ExtraCa {
        /// Position in `extra_ca_pem`.
        index: usize,
    },
    /// Binding a listener failed.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address or socket path.
        addr: String,
        /// Cause.
        source: std::io::Error,
    },
}

pub(crate) struct Shared {
    pub(crate) ca: CertificateAuthority,
    pub(crate) audit: Arc<dyn AuditSink>,
    pub(crate) limits: Limits,
    tls_any: Arc<rustls::ClientConfig>,
    tls_h1: Arc<rustls::ClientConfig>,
    chain: Option<Arc<UpstreamProxy>>,
}

/// The egress proxy. Cheap to clone.
#[derive(Clone)]
pub struct Proxy {
    pub(crate) shared: Arc<Shared>,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("ca", &self.shared.ca)
            .field("limits", &self.shared.limits)
            .finish_non_exhaustive()
    }
}

pub(crate) type HttpClient = Client<Connector, ProxyBody>;

/// Everything the proxy knows about one sandbox: its policy, its credentials, its connection slots and its pooled
/// upstream connections.
pub struct Sandbox {
    pub(crate) id: String,
    pub(crate) policy: Arc<dyn EgressPolicy>,
    pub(crate) injector: Arc<dyn CredentialInjector>,
    pub(crate) client: HttpClient,
    pub(crate) client_h1: HttpClient,
    connections: Arc<Semaphore>,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// The sandbox id connections are tagged with.
    #[must_use]
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// How a connection reached the proxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Ingress {
    /// The client speaks proxy protocol (absolute-form HTTP, CONNECT).
    Forward,
    /// The guest redirected a connection to `original_dst` to the proxy; classify it by SNI / Host.
    Transparent {
        /// Where the guest was connecting to.
        original_dst: SocketAddr,
    },
}

/// A running listener; stops accepting when dropped.
#[derive(Debug)]
pub struct Listener {
    local: String,
    task: tokio::task::JoinHandle<()>,
}

impl Listener {
    /// The bound address (`127.0.0.1:PORT`) or socket path.
    #[must_use]
    pub fn local_addr(&self) -> &str {
        &self.local
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Proxy {
    /// Set the proxy up: load or create the CA, build upstream TLS.
    ///
    /// # Errors
    /// [`ProxyError`] for CA or extra-CA problems.
    pub fn new(config: ProxyConfig, audit: Arc<dyn AuditSink>) -> Result<Self, ProxyError> {
        // Two descriptors per intercepted connection: lift the soft open-file limit to the hard one.
        crate::fdlimit::raise_fd_limit();
        let ca = match &config.ca_store {
            Some(store) => {
                CertificateAuthority::load_or_create_in(store.as_ref(), &config.state_dir)?
            }
            None => CertificateAuthority::load_or_create_in(
                &FileCaStore::new(&config.state_dir),
                &config.state_dir,
            )?,
        };
        let mut extra = Vec::new();
        for (index, pem) in config.extra_ca_pem.iter().enumerate() {
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(pem.as_bytes())
                    .filter_map(Result::ok)
                    .collect();
            if certs.is_empty() {
                return Err(ProxyError::ExtraCa { index });
            }
            extra.extend(certs);
        }
        let shared = Shared {
            ca,
            audit,
            limits: config.limits,
            tls_any: client_config(&extra, config.system_roots, &[b"h2", b"http/1.1"]),
            tls_h1: client_config(&extra, config.system_roots, &[b"http/1.1"]),
            chain: config
                .upstream_proxy
                .map(|authority| Arc::new(UpstreamProxy { authority })),
        };
        Ok(Self {
            shared: Arc::new(shared),
        })
    }

    /// The sandbox CA (its PEM goes into guest trust stores).
    #[must_use]
    pub fn ca(&self) -> &CertificateAuthority {
        &self.shared.ca
    }

    /// Register a sandbox with its policy and credentials.
    pub fn sandbox(
        &self,
        id: &str,
        policy: Arc<dyn EgressPolicy>,
        injector: Arc<dyn CredentialInjector>,
    ) -> Arc<Sandbox> {
        let make = |tls: Arc<rustls::ClientConfig>| {
            let connector = Connector {
                policy: policy.clone(),
                tls,
                chain: self.shared.chain.clone(),
                timeout: self.shared.limits.connect_timeout,
            };
            Client::builder(TokioExecutor::new())
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                .pool_idle_timeout(Duration::from_secs(60))
                // Idle upstream connections kept per host: enough for an agent's parallel requests; each costs a TLS
                // session and buffers (~40 KiB), so the pool is not a second copy of every client connection.
                .pool_max_idle_per_host(POOL_IDLE_PER_HOST)
                .build(connector)
        };
        Arc::new(Sandbox {
            id: id.to_owned(),
            client: make(self.shared.tls_any.clone()),
            client_h1: make(self.shared.tls_h1.clone()),
            policy,
            injector,
            connections: Arc::new(Semaphore::new(
                self.shared.limits.max_connections_per_sandbox,
            )),
        })
    }

    /// Listen on a loopback TCP address for `sandbox`; every accepted connection is that sandbox's.
    ///
    /// # Errors
    /// [`ProxyError::Bind`].
    pub async fn listen_tcp(
        &self,
        sandbox: Arc<Sandbox>,
        addr: SocketAddr,
        ingress: Ingress,
    ) -> Result<Listener, ProxyError> {
        let listener = bind_tcp(addr).map_err(|source| ProxyError::Bind {
            addr: addr.to_string(),
            source,
        })?;
        let local = listener
            .local_addr()
            .map_err(|source| ProxyError::Bind {
                addr: addr.to_string(),
                source,
            })?
            .to_string();
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                tokio::spawn(
                    this.clone()
                        .serve_connection(sandbox.clone(), stream, ingress),
                );
            }
        });
        Ok(Listener { local, task })
    }

    /// Listen on a Unix domain socket for `sandbox` (the path is replaced if it exists, and made mode 0600).
    ///
    /// # Errors
    /// [`ProxyError::Bind`].
    pub async fn listen_unix(
        &self,
        sandbox: Arc<Sandbox>,
        path: &Path,
        ingress: Ingress,
    ) -> Result<Listener, ProxyError> {
        use std::os::unix::fs::PermissionsExt;
        let bind_err = |source| ProxyError::Bind {
            addr: path.display().to_string(),
            source,
        };
        match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(bind_err(e)),
            _ => {}
        }
        let listener = bind_unix(path).map_err(bind_err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
        let this = self.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                tokio::spawn(
                    this.clone()
                        .serve_connection(sandbox.clone(), stream, ingress),
                );
            }
        });
        Ok(Listener {
            local: path.display().to_string(),
            task,
        })
    }

    /// Serve one already-accepted connection for `sandbox` (any byte stream: TCP, Unix socket, vsock, ...).
    pub async fn serve_connection(self, sandbox: Arc<Sandbox>, io: impl Io, ingress: Ingress) {
        let Ok(permit) = sandbox.connections.clone().try_acquire_owned() else {
            tracing::warn!(sandbox = %sandbox.id, "connection limit reached; refusing a connection");
            return;
        };
        let limits = &self.shared.limits;
        let guard = Arc::new(ConnGuard::new(
            permit,
            limits.idle_timeout,
            limits.total_timeout,
        ));
        let io: BoxIo = Box::new(Watched::new(io, guard.activity.clone()));
        let conn = crate::handler::Conn::new(self.shared.clone(), sandbox, guard.clone(), None);
        let work = async move {
            match ingress {
                Ingress::Forward => crate::handler::serve_http1(conn, io).await,
                Ingress::Transparent { original_dst } => {
                    crate::tunnel::transparent(conn, io, original_dst).await
                }
            }
        };
        let _ = guard.watch(work).await;
    }
}

/// Idle pooled upstream connections per host and sandbox.
const POOL_IDLE_PER_HOST: usize = 64;

/// Accept backlog: bursts of thousands of connects (an agent's parallel tool calls, the concurrency bench) must not
/// overflow the queue; the kernel caps it at `net.core.somaxconn`.
const BACKLOG: u32 = 4096;

fn bind_tcp(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

fn bind_unix(path: &Path) -> std::io::Result<tokio::net::UnixListener> {
    use rustix::net::{AddressFamily, SocketAddrUnix, SocketFlags, SocketType};
    let fd = rustix::net::socket_with(
        AddressFamily::UNIX,
        SocketType::STREAM,
        SocketFlags::CLOEXEC | SocketFlags::NONBLOCK,
        None,
    )?;
    rustix::net::bind(&fd, &SocketAddrUnix::new(path)?)?;
    rustix::net::listen(&fd, i32::try_from(BACKLOG).unwrap_or(i32::MAX))?;
    tokio::net::UnixListener::from_std(std::os::unix::net::UnixListener::from(fd))
}
