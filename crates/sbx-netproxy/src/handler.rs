//! One HTTP request through the proxy: find its destination, check it agrees with the tunnel, decide, gate models,
//! inject credentials, forward, stream the answer back, audit.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use crate::authority::{Authority, parse_authority_with_default};
use crate::body::{AuditedBody, ProxyBody, RequestRecord, counted, full};
use crate::deny::{self, Subject};
use crate::io::{ConnGuard, Io};
use crate::model::{ModelSource, body_model, filter_model_list, is_model_list, model_source};
use crate::proxy::{Sandbox, Shared};
use crate::seam::{
    AuditAction, AuditDecision, AuditEvent, Destination, NetworkRequest, Protocol, Verdict,
};
use crate::upstream::UpstreamError;

/// The tunnel a request arrived through, if any.
#[derive(Debug, Clone)]
pub(crate) struct Tunnel {
    /// CONNECT target (or transparent destination).
    pub(crate) target: Authority,
    /// The SNI of the client's TLS handshake.
    pub(crate) sni: Option<String>,
    /// Whether the inner traffic is TLS (scheme https).
    pub(crate) tls: bool,
    /// Whether every inner request must name the tunnel's host (CONNECT and TLS); transparent plain HTTP is judged
    /// request by request instead.
    pub(crate) strict: bool,
}

/// Per-connection context shared by all requests on it.
pub(crate) struct Conn {
    pub(crate) shared: Arc<Shared>,
    pub(crate) sandbox: Arc<Sandbox>,
    pub(crate) guard: Arc<ConnGuard>,
    pub(crate) tunnel: Option<Tunnel>,
    /// Set by the HTTP/1 framing watch when a request head carries both Content-Length and Transfer-Encoding.
    smuggling: Arc<std::sync::atomic::AtomicBool>,
}

impl Conn {
    pub(crate) fn new(
        shared: Arc<Shared>,
        sandbox: Arc<Sandbox>,
        guard: Arc<ConnGuard>,
        tunnel: Option<Tunnel>,
    ) -> Arc<Self> {
        Arc::new(Self {
            shared,
            sandbox,
            guard,
            tunnel,
            smuggling: Arc::default(),
        })
    }

    pub(crate) fn with_tunnel(&self, tunnel: Tunnel) -> Arc<Self> {
        Self::new(
            self.shared.clone(),
            self.sandbox.clone(),
            self.guard.clone(),
            Some(tunnel),
        )
    }

    pub(crate) fn audit(
        &self,
        decision: Option<AuditDecision>,
        action: AuditAction,
        verdict: Option<&Verdict>,
    ) {
        self.shared.audit.record(AuditEvent {
            sandbox: self.sandbox.id.clone(),
            decision,
            action,
            rule: verdict.and_then(|v| v.rule.clone()),
            layer: verdict.and_then(|v| v.layer.clone()),
            reason: verdict.map(|v| v.reason.clone()),
        });
    }
}

/// Serve HTTP/1.1 (with upgrades: CONNECT, WebSocket) on `io` for `conn`.
pub(crate) fn serve_http1(conn: Arc<Conn>, io: impl Io) -> BoxFuture {
    Box::pin(serve_http1_inner(conn, io))
}

/// A boxed, sendable unit future (breaks the type cycle handler → tunnel → handler).
pub(crate) type BoxFuture = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

async fn serve_http1_inner(conn: Arc<Conn>, io: impl Io) {
    let limits = &conn.shared.limits;
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // The framing watch enforces the head deadline from a head's first byte; hyper's would also close idle
        // keep-alive connections (see `framing`).
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .keep_alive(true);
    let svc_conn = conn.clone();
    let service = service_fn(move |req| handle(svc_conn.clone(), req));
    let io = crate::framing::watched(io, conn.smuggling.clone(), limits.header_read_timeout);
    let _ = builder
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades()
        .await;
}

/// Serve HTTP/2 on `io` for `conn`.
pub(crate) fn serve_http2(conn: Arc<Conn>, io: impl Io) -> BoxFuture {
    Box::pin(serve_http2_inner(conn, io))
}

async fn serve_http2_inner(conn: Arc<Conn>, io: impl Io) {
    let limits = &conn.shared.limits;
    let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    builder
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX))
        .max_concurrent_streams(256);
    let svc_conn = conn.clone();
    let service = service_fn(move |req| handle(svc_conn.clone(), req));
    let _ = builder.serve_connection(TokioIo::new(io), service).await;
}

/// The hyper service: never fails, every problem becomes a response.
pub(crate) async fn handle(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    if req.method() == Method::CONNECT {
        if conn.tunnel.is_some() {
            return Ok(deny::error(
                StatusCode::METHOD_NOT_ALLOWED,
                "CONNECT inside a tunnel is not allowed",
            ));
        }
        return Ok(crate::tunnel::connect(conn, req).await);
    }
    Ok(forward_boxed(conn, req).await)
}

/// Boxed so the (large) request future is allocated once per request and proven `Send` here.
fn forward_boxed(
    conn: Arc<Conn>,
    req: Request<Incoming>,
) -> std::pin::Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>> {
    Box::pin(forward(conn, req))
}

struct Target {
    authority: Authority,
    https: bool,
}

fn header_str<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Work out where a request goes, refusing ambiguity.
fn target_of(conn: &Conn, req: &Request<Incoming>) -> Result<Target, (StatusCode, String)> {
    let bad = |m: String| (StatusCode::BAD_REQUEST, m);
    let https = match (&conn.tunnel, req.uri().scheme_str()) {
        (Some(t), _) => t.tls,
        (None, Some("http")) => false,
        (None, Some(other)) => {
            return Err(bad(format!(
                "scheme {other:?} is not supported in a forward request; use CONNECT for https"
            )));
        }
        (None, None) => {
            return Err(bad(
                "this is a proxy: send absolute-form requests (http://host/path) or CONNECT".into(),
            ));
        }
    };
    let default_port = if https { 443 } else { 80 };
    if req.headers().get_all(header::HOST).iter().count() > 1 {
        return Err(bad("more than one Host header".into()));
    }
    let host_header = header_str(req.headers(), &header::HOST);
    if req.headers().contains_key(header::HOST) && host_header.is_none() {
        return Err(bad("Host header is not valid text".into()));
    }
    let uri_authority = req.uri().authority().map(http::uri::Authority::as_str);
    let raw = match (uri_authority, host_header) {
        (Some(u), Some(h)) if conn.tunnel.as_ref().is_some_and(|t| t.strict) => {
            // Over HTTP/2, :authority and Host must not disagree (RFC 9113 §8.3.1); same for h1 absolute-form in a tunnel.
            let a = parse_authority_with_default(u, Some(default_port))
                .map_err(|e| bad(e.to_string()))?;
            let b = parse_authority_with_default(h, Some(default_port))
                .map_err(|e| bad(e.to_string()))?;
            if a != b {
                return Err((
                    StatusCode::MISDIRECTED_REQUEST,
                    format!(":authority {u} and Host {h} disagree"),
                ));
            }
            u
        }
        (Some(u), _) => u,
        (None, Some(h)) => h,
        (None, None) => match &conn.tunnel {
            Some(t) => {
                return Ok(Target {
                    authority: t.target.clone(),
                    https,
                });
            }
            None => return Err(bad("request without a host".into())),
        },
    };
    let authority = parse_authority_with_default(raw, Some(default_port))
        .map_err(|e| bad(format!("host {raw:?}: {e}")))?;
    Ok(Target { authority, https })
}

/// RFC 9112 framing checks hyper cannot express: a request carrying both Content-Length and Transfer-Encoding is a
/// smuggling attempt; Transfer-Encoding is meaningless (and forbidden) over HTTP/2.
fn framing_error(conn: &Conn, req: &Request<Incoming>) -> Option<&'static str> {
    if conn.smuggling.load(std::sync::atomic::Ordering::Relaxed) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    let h = req.headers();
    let te = h.contains_key(header::TRANSFER_ENCODING);
    if te && h.contains_key(header::CONTENT_LENGTH) {
        return Some("both Content-Length and Transfer-Encoding");
    }
    if te && req.version() == Version::HTTP_2 {
        return Some("Transfer-Encoding over HTTP/2");
    }
    if h.get_all(header::CONTENT_LENGTH).iter().count() > 1 {
        return Some("more than one Content-Length");
    }
    None
}

/// The part of every audit record known before forwarding.
fn record(
    conn: &Conn,
    method: &Method,
    path: &str,
    target: &Target,
    verdict: &Verdict,
    bytes_up: Arc<AtomicU64>,
    started: Instant,
) -> RequestRecord {
    RequestRecord {
        sink: conn.shared.audit.clone(),
        sandbox: conn.sandbox.id.clone(),
        method: method.to_string(),
        host: target.authority.host.as_policy_str(),
        port: target.authority.port,
        path: path.to_owned(),
        status: 0,
        allowed: verdict.allowed,
        rule: verdict.rule.clone(),
        layer: verdict.layer.clone(),
        reason: Some(verdict.reason.clone()),
        bytes_up,
        bytes_down: 0,
        started,
    }
}

fn finish(resp: Response<ProxyBody>, mut rec: RequestRecord) -> Response<ProxyBody> {
    rec.status = resp.status().as_u16();
    resp.map(|b| AuditedBody::new(b, rec).boxed_unsync())
}

fn refuse<B>(
    conn: &Conn,
    req: &Request<B>,
    target: &Target,
    status: StatusCode,
    verdict: Verdict,
    subject: &Subject<'_>,
) -> Response<ProxyBody> {
    let what = format!(
        "{} {}://{}{}",
        req.method(),
        if target.https { "https" } else { "http" },
        target.authority,
        req.uri().path()
    );
    let resp = deny::response(status, &what, &verdict, subject);
    let mut verdict = verdict;
    verdict.allowed = false;
    let rec = record(
        conn,
        req.method(),
        req.uri().path(),
        target,
        &verdict,
        Arc::new(AtomicU64::new(0)),
        Instant::now(),
    );
    finish(resp, rec)
}

async fn forward(conn: Arc<Conn>, mut req: Request<Incoming>) -> Response<ProxyBody> {
    let started = Instant::now();
    let target = match target_of(&conn, &req) {
        Ok(t) => t,
        Err((status, message)) => return deny::error(status, &message),
    };
    let host = target.authority.host.as_policy_str();
    let port = target.authority.port;
    let fixed = Subject::Fixed;

    if let Some(t) = conn.tunnel.as_ref().filter(|t| t.strict) {
        let sni_ok = t.sni.as_deref().is_none_or(|s| s == host);
        if t.target != target.authority || !sni_ok {
            let v = Verdict::proxy_deny("host-mismatch");
            return refuse(
                &conn,
                &req,
                &target,
                StatusCode::MISDIRECTED_REQUEST,
                v,
                &fixed,
            );
        }
    }
    if let Some(problem) = framing_error(&conn, &req) {
        let v = Verdict::proxy_deny("request-smuggling");
        let v = Verdict {
            reason: format!("request-smuggling ({problem})"),
            ..v
        };
        let mut resp = refuse(&conn, &req, &target, StatusCode::BAD_REQUEST, v, &fixed);
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        return resp;
    }

    let protocol = if target.https {
        Protocol::Https
    } else {
        Protocol::Http
    };
    let path = req.uri().path().to_owned();
    let verdict = conn.sandbox.policy.check_network(&NetworkRequest {
        host: &host,
        port,
        protocol,
        method: Some(req.method().as_str()),
        path: Some(&path),
    });
    let default_port = port == if target.https { 443 } else { 80 };
    let subject = Subject::Network {
        host: &host,
        port,
        default_port,
    };
    if !verdict.allowed {
        return refuse(
            &conn,
            &req,
            &target,
            StatusCode::FORBIDDEN,
            verdict,
            &subject,
        );
    }

    // Model gating: the only place a request body is buffered, and then only up to the limit.
    let bytes_up = Arc::new(AtomicU64::new(0));
    let upgrade = is_upgrade(&req);
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (mut head, incoming) = req.into_parts();
    let body = match gate_model(&conn, &host, &head, &path, incoming, &bytes_up).await {
        Ok(body) => body,
        Err((status, verdict, model)) => {
            let req = Request::from_parts(head, ());
            let subject = model.as_deref().map_or(Subject::Fixed, Subject::Model);
            return refuse(&conn, &req, &target, status, verdict, &subject);
        }
    };

    // Build the upstream request.
    let scheme = if target.https { "https" } else { "http" };
    let pq = head
        .uri
        .path_and_query()
        .map_or("/", http::uri::PathAndQuery::as_str)
        .to_owned();
    // The scheme's default port is left out, so the Host / :authority upstream sees is what the client sent (and
    // what a SigV4 signature covers).
    let wire_authority = if default_port {
        target.authority.host.to_string()
    } else {
        target.authority.to_string()
    };
    let uri: Uri = match format!("{scheme}://{wire_authority}{pq}").parse() {
        Ok(u) => u,
        Err(_) => return deny::error(StatusCode::BAD_REQUEST, "unparseable request target"),
    };
    let mut rec = record(
        &conn,
        &head.method,
        &path,
        &target,
        &verdict,
        bytes_up.clone(),
        started,
    );
    head.uri = uri;
    head.version = Version::HTTP_11;
    strip_hop_by_hop(&mut head.headers, upgrade);
    head.headers.remove(header::HOST);
    let list_models = is_model_list(&head.method, &path);
    if list_models {
        head.headers.insert(
            header::ACCEPT_ENCODING,
            HeaderValue::from_static("identity"),
        );
    }
    let sni = conn.tunnel.as_ref().and_then(|t| t.sni.clone());
    let connect_host = conn
        .tunnel
        .as_ref()
        .filter(|t| t.strict)
        .map_or(host.clone(), |t| t.target.host.as_policy_str());
    let dest = Destination {
        connect_host: &connect_host,
        sni: sni.as_deref(),
        authority: &host,
    };
    let report = conn.sandbox.injector.inject(&dest, &mut head);
    audit_injection(&conn, report);
    let body = match crate::credentials::apply_to_body(&conn, &dest, &mut head, body).await {
        Ok(body) => body,
        Err((status, verdict)) => {
            let req = Request::from_parts(head, ());
            return refuse(&conn, &req, &target, status, verdict, &fixed);
        }
    };

    let client = if upgrade {
        &conn.sandbox.client_h1
    } else {
        &conn.sandbox.client
    };
    let upstream_req = Request::from_parts(head, body);
    let mut resp = match client.request(upstream_req).await {
        Ok(r) => r,
        Err(e) => {
            rec.allowed = false;
            return upstream_failure(&e, rec, &target);
        }
    };

    if let (Some(client_upgrade), StatusCode::SWITCHING_PROTOCOLS) = (client_upgrade, resp.status())
    {
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        let guard = conn.guard.clone();
        tokio::spawn(async move {
            if let (Ok(a), Ok(b)) = (client_upgrade.await, upstream_upgrade.await) {
                let (mut a, mut b) = (TokioIo::new(a), TokioIo::new(b));
                let _ = guard
                    .watch(tokio::io::copy_bidirectional(&mut a, &mut b))
                    .await;
            }
        });
    }

    let (mut parts, incoming) = resp.into_parts();
    strip_hop_by_hop(
        &mut parts.headers,
        parts.status == StatusCode::SWITCHING_PROTOCOLS,
    );
    let mut body: ProxyBody = incoming
        .map_err(|e| -> crate::body::BoxError { Box::new(e) })
        .boxed_unsync();
    if list_models && parts.status.is_success() {
        body = filter_models(&conn, &host, body, &mut parts.headers).await;
    }
    finish(Response::from_parts(parts, body), rec)
}

/// Audit what credential injection did: `secret_injected` per applied credential, `placeholder_blocked` per
/// placeholder headed to a host it is not bound to.
pub(crate) fn audit_injection(conn: &Conn, report: crate::seam::InjectionReport) {
    for (service, h) in report.injected {
        conn.audit(
            Some(AuditDecision::Allow),
            AuditAction::SecretInjected { service, host: h },
            None,
        );
    }
    for (service, h) in report.blocked {
        let v = Verdict::proxy_deny("placeholder_blocked");
        conn.audit(
            Some(AuditDecision::Deny),
            AuditAction::PlaceholderBlocked { service, host: h },
            Some(&v),
        );
    }
}

type GateRefusal = (StatusCode, Verdict, Option<String>);

/// Read the model a request names (path, or JSON body buffered up to the limit) and check it against policy.
async fn gate_model(
    conn: &Conn,
    host: &str,
    head: &http::request::Parts,
    path: &str,
    incoming: Incoming,
    bytes_up: &Arc<AtomicU64>,
) -> Result<ProxyBody, GateRefusal> {
    let check = |model: String| {
        let v = conn.sandbox.policy.check_model(host, &model);
        if v.allowed {
            Ok(())
        } else {
            Err((StatusCode::FORBIDDEN, v, Some(model)))
        }
    };
    match model_source(&head.method, path) {
        None => Ok(counted(incoming, bytes_up.clone())),
        Some(ModelSource::Path(model)) => {
            check(model)?;
            Ok(counted(incoming, bytes_up.clone()))
        }
        Some(ModelSource::JsonBody) => {
            let limit = conn.shared.limits.max_buffered_body;
            let bytes = collect_limited(incoming, limit).await.ok_or_else(|| {
                let v = Verdict::proxy_deny(&format!(
                    "body-too-large (model-gated requests are buffered up to {limit} bytes)"
                ));
                (StatusCode::PAYLOAD_TOO_LARGE, v, None)
            })?;
            if let Some(model) = body_model(&bytes) {
                check(model)?;
            }
            bytes_up.fetch_add(bytes.len() as u64, std::sync::atomic::Ordering::Relaxed);
            Ok(full(bytes))
        }
    }
}

/// Buffer a model list (bounded), drop the models policy denies, fix Content-Length.
async fn filter_models(
    conn: &Conn,
    host: &str,
    body: ProxyBody,
    headers: &mut HeaderMap,
) -> ProxyBody {
    let encoded = headers
        .get(header::CONTENT_ENCODING)
        .is_some_and(|v| v.as_bytes() != b"identity");
    if encoded {
        return body;
    }
    let Some(bytes) = collect_limited(body, conn.shared.limits.max_buffered_body).await else {
        return deny_body("model list larger than the buffering limit, or broken");
    };
    let policy = &conn.sandbox.policy;
    match filter_model_list(&bytes, |m| !policy.check_model(host, m).allowed) {
        Some(filtered) => {
            headers.insert(header::CONTENT_LENGTH, HeaderValue::from(filtered.len()));
            full(filtered)
        }
        None => full(bytes),
    }
}

/// Collect a body up to `limit` bytes; `None` when it is larger or fails.
pub(crate) async fn collect_limited<B>(mut body: B, limit: usize) -> Option<Bytes>
where
    B: http_body::Body<Data = Bytes> + Unpin,
{
    let mut out = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame.ok()?.data_ref() {
            if out.len() + data.len() > limit {
                return None;
            }
            out.extend_from_slice(data);
        }
    }
    Some(out.freeze())
}

/// A body that fails at once: the client sees the response cut off rather than a silently altered list.
fn deny_body(message: &str) -> ProxyBody {
    struct Failing(Option<crate::body::BoxError>);
    impl http_body::Body for Failing {
        type Data = Bytes;
        type Error = crate::body::BoxError;
        fn poll_frame(
            mut self: std::pin::Pin<&mut Self>,
            _cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
            std::task::Poll::Ready(self.0.take().map(Err))
        }
    }
    Failing(Some(message.into())).boxed_unsync()
}

fn is_upgrade<B>(req: &Request<B>) -> bool {
    req.version() == Version::HTTP_11
        && req.headers().contains_key(header::UPGRADE)
        && header_str(req.headers(), &header::CONNECTION).is_some_and(|c| {
            c.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
}

/// Remove hop-by-hop headers (RFC 9110 §7.6.1), including any named in Connection; keep `Upgrade` for upgrades.
fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // Most requests name nothing in Connection; skip the scan (and its allocation) then.
    if headers.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .filter(|n| !(keep_upgrade && n == header::UPGRADE))
            .collect();
        for name in named {
            headers.remove(name);
        }
    }
    // Pre-parsed names: removing by `&str` parses the name again on every call (measurable per request).
    static PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
    static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
    for name in [
        &KEEP_ALIVE,
        &PROXY_CONNECTION,
        &header::PROXY_AUTHORIZATION,
        &header::PROXY_AUTHENTICATE,
        &header::TE,
        &header::TRAILER,
        &header::TRANSFER_ENCODING,
    ] {
        headers.remove(name);
    }
    if keep_upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    } else {
        headers.remove(header::CONNECTION);
        headers.remove(header::UPGRADE);
    }
}

/// Turn a pooled-client error into a response; a restricted address becomes a 403 naming `private-address`.
fn upstream_failure(
    err: &hyper_util::client::legacy::Error,
    mut rec: RequestRecord,
    target: &Target,
) -> Response<ProxyBody> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = source {
        if let Some(up) = e.downcast_ref::<UpstreamError>() {
            return upstream_error_response(up, rec, target);
        }
        source = e.source();
    }
    rec.reason = Some("upstream-error".into());
    finish(
        deny::error(
            StatusCode::BAD_GATEWAY,
            &format!("upstream {}: {err}", target.authority),
        ),
        rec,
    )
}

fn upstream_error_response(
    err: &UpstreamError,
    mut rec: RequestRecord,
    target: &Target,
) -> Response<ProxyBody> {
    match err {
        UpstreamError::PrivateAddress {
            host,
            ip,
            port,
            verdict,
            ..
        } => {
            rec.rule = verdict.rule.clone();
            rec.layer = verdict.layer.clone();
            rec.reason = Some("private-address".into());
            let verdict = Verdict {
                reason: "private-address".into(),
                ..verdict.clone()
            };
            let ip_text = if ip.is_loopback() && host == "localhost" {
                "localhost".to_owned()
            } else {
                ip.to_string()
            };
            let subject = Subject::Network {
                host: &ip_text,
                port: *port,
                default_port: false,
            };
            let what = format!("{} (resolved to {ip}: {err})", target.authority);
            finish(
                deny::response(StatusCode::FORBIDDEN, &what, &verdict, &subject),
                rec,
            )
        }
        UpstreamError::Timeout(_) => {
            rec.reason = Some("upstream-timeout".into());
            finish(
                deny::error(StatusCode::GATEWAY_TIMEOUT, &err.to_string()),
                rec,
            )
        }
        _ => {
            rec.reason = Some("upstream-error".into());
            finish(deny::error(StatusCode::BAD_GATEWAY, &err.to_string()), rec)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_do_not_reach_upstream() {
        let mut h = headers(&[
            ("connection", "keep-alive, X-Sandbox-Token"),
            ("connection", "x-second"),
            ("x-sandbox-token", "must not be forwarded"),
            ("x-second", "neither"),
            ("keep-alive", "timeout=5"),
            ("proxy-connection", "keep-alive"),
            ("proxy-authorization", "Basic c2VjcmV0"),
            ("proxy-authenticate", "Basic"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("accept", "*/*"),
            ("authorization", "Bearer end-to-end"),
        ]);
        strip_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
        left.sort_unstable();
        assert_eq!(left, ["accept", "authorization"]);
    }

    #[test]
    fn an_upgrade_keeps_only_connection_upgrade() {
        let mut h = headers(&[
            ("connection", "Upgrade, x-private"),
            ("upgrade", "websocket"),
            ("x-private", "1"),
            ("proxy-authorization", "Basic c2VjcmV0"),
        ]);
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(header::CONNECTION).unwrap(), "upgrade");
        assert_eq!(h.get(header::UPGRADE).unwrap(), "websocket");
        assert!(h.get("x-private").is_none());
        assert!(h.get(header::PROXY_AUTHORIZATION).is_none());
        assert_eq!(h.len(), 2);
    }

    #[test]
    fn without_a_connection_header_only_the_fixed_set_goes() {
        let mut h = headers(&[("te", "trailers"), ("x-kept", "1")]);
        strip_hop_by_hop(&mut h, false);
        assert_eq!(
            h.keys().map(HeaderName::as_str).collect::<Vec<_>>(),
            ["x-kept"]
        );
    }
}
