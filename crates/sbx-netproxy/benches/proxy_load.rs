//! Load driver for `cargo xtask bench-proxy`: keep-alive and new-connection HTTPS through no proxy, sbx-netproxy (the
//! `proxy` example, as a separate process) and mitmproxy (`mitmdump`, same MITM), against one local HTTPS upstream;
//! then 5,000 concurrent tunnels through sbx-netproxy and its RSS at 1,000 and 5,000 open connections.
//!
//! Run through `cargo xtask bench-proxy`, which builds the proxy and passes `--proxy-bin` (and `--mitmdump` when found).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::TokioIo;
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const PHASE: Duration = Duration::from_secs(4);

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A local HTTPS upstream answering every request with a 2-byte body.
async fn start_upstream(dir: &Path) -> Result<(SocketAddr, PathBuf)> {
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca_cert = ca_params.self_signed(&ca_key)?;
    let issuer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate()?;
    let mut params = CertificateParams::new(vec!["localhost".to_owned()])?;
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse()?));
    let cert = params.signed_by(&key, &issuer)?;
    let ca_path = dir.join("upstream-ca.pem");
    std::fs::write(&ca_path, ca_cert.pem())?;
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
        )?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    // A deep accept queue: the 5,000-connection phase makes the proxy open thousands of upstream connections at once.
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener = socket.listen(4096)?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = listener.accept().await else {
                continue;
            };
            let _ = s.set_nodelay(true);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(s).await else {
                    return;
                };
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                        Bytes::from_static(b"ok"),
                    )))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    Ok((addr, ca_path))
}

#[derive(Clone)]
struct Route {
    proxy: Option<SocketAddr>,
    upstream: SocketAddr,
    tls: Arc<tokio_rustls::TlsConnector>,
}

fn connector(ca_pem: &Path) -> Result<Arc<tokio_rustls::TlsConnector>> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca_pem)? {
        roots.add(cert?)?;
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(tokio_rustls::TlsConnector::from(Arc::new(cfg))))
}

type Sender = hyper::client::conn::http1::SendRequest<Empty<Bytes>>;

async fn open(route: &Route) -> Result<Sender> {
    let r = open_inner(route).await;
    if let Err(e) = &r {
        report_first_error(e);
    }
    r
}

/// Print the first connection error of the run (enough to diagnose a failing route without flooding).
fn report_first_error(e: &anyhow::Error) {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| eprintln!("first connection error: {e:#}"));
}

async fn open_inner(route: &Route) -> Result<Sender> {
    let mut tcp = TcpStream::connect(route.proxy.unwrap_or(route.upstream)).await?;
    tcp.set_nodelay(true)?;
    if route.proxy.is_some() {
        let t = route.upstream;
        tcp.write_all(format!("CONNECT {t} HTTP/1.1\r\nHost: {t}\r\n\r\n").as_bytes())
            .await?;
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            if tcp.read(&mut b).await? == 0 {
                bail!("proxy closed during CONNECT");
            }
            head.push(b[0]);
        }
        if !head.starts_with(b"HTTP/1.1 200") && !head.starts_with(b"HTTP/1.0 200") {
            bail!("CONNECT refused: {}", String::from_utf8_lossy(&head));
        }
    }
    let tls = route
        .tls
        .connect(ServerName::IpAddress(route.upstream.ip().into()), tcp)
        .await?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    Ok(sender)
}

async fn get(sender: &mut Sender, upstream: SocketAddr) -> Result<Duration> {
    let started = Instant::now();
    if let Err(e) = sender.ready().await {
        let e = anyhow::Error::from(e).context("connection not ready");
        report_first_error(&e);
        return Err(e);
    }
    let req = hyper::Request::get("/")
        .header("host", upstream.to_string())
        .body(Empty::new())?;
    let resp = sender.send_request(req).await?;
    if !resp.status().is_success() {
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let e = anyhow::anyhow!(
            "status {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(200)])
        );
        report_first_error(&e);
        return Err(e);
    }
    resp.into_body().collect().await?;
    Ok(started.elapsed())
}

struct Stats {
    requests: usize,
    errors: usize,
    rps: f64,
    p50_us: f64,
    p99_us: f64,
}

fn stats(mut lat: Vec<Duration>, errors: usize, elapsed: Duration) -> Stats {
    lat.sort_unstable();
    let pick = |q: f64| {
        lat.get(((lat.len() as f64 - 1.0) * q) as usize)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e6)
    };
    Stats {
        requests: lat.len(),
        errors,
        rps: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_us: pick(0.5),
        p99_us: pick(0.99),
    }
}

async fn keep_alive(route: &Route, concurrency: usize) -> Stats {
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            let Ok(mut s) = open(&route).await else {
                return (lat, 1);
            };
            while Instant::now() < deadline {
                match get(&mut s, route.upstream).await {
                    Ok(d) => lat.push(d),
                    Err(_) => {
                        errors += 1;
                        match open(&route).await {
                            Ok(n) => s = n,
                            Err(_) => return (lat, errors + 1),
                        }
                    }
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, started).await
}

async fn new_connection_each(route: &Route, concurrency: usize) -> Stats {
    let deadline = Instant::now() + PHASE;
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                let ok = match open(&route).await {
                    Ok(mut s) => get(&mut s, route.upstream).await.is_ok(),
                    Err(_) => false,
                };
                if ok {
                    lat.push(t.elapsed())
                } else {
                    errors += 1
                }
            }
            (lat, errors)
        }));
    }
    collect(tasks, started).await
}

async fn collect(
    tasks: Vec<tokio::task::JoinHandle<(Vec<Duration>, usize)>>,
    started: Instant,
) -> Stats {
    let mut lat = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((l, e)) = t.await {
            lat.extend(l);
            errors += e;
        }
    }
    stats(lat, errors, started.elapsed())
}

fn rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN);
    kb / 1024.0
}

/// Open `total` tunnels (one request each), keep them all open, then one more request on each. Returns
/// (errors, RSS at 1,000 open, RSS at `total` open, seconds).
async fn many_connections(route: &Route, total: usize, pid: u32) -> (usize, f64, f64, f64) {
    let started = Instant::now();
    let mut senders = Vec::with_capacity(total);
    let mut errors = 0;
    let mut rss_1000 = f64::NAN;
    while senders.len() + errors < total {
        let batch = (total - senders.len() - errors).min(250);
        let opened = futures_join(batch, route).await;
        for r in opened {
            match r {
                Some(s) => senders.push(s),
                None => errors += 1,
            }
        }
        if rss_1000.is_nan() && senders.len() >= 1000 {
            rss_1000 = rss_mib(pid);
        }
    }
    let rss_all = rss_mib(pid);
    let mut tasks = Vec::new();
    for mut s in senders {
        let up = route.upstream;
        tasks.push(tokio::spawn(async move {
            get(&mut s, up).await.map(|_| s).ok()
        }));
    }
    let mut keep = Vec::new();
    for t in tasks {
        match t.await {
            Ok(Some(s)) => keep.push(s),
            _ => errors += 1,
        }
    }
    drop(keep);
    (errors, rss_1000, rss_all, started.elapsed().as_secs_f64())
}

async fn futures_join(n: usize, route: &Route) -> Vec<Option<Sender>> {
    let mut tasks = Vec::new();
    for _ in 0..n {
        let route = route.clone();
        tasks.push(tokio::spawn(async move {
            let mut s = open(&route).await.ok()?;
            get(&mut s, route.upstream).await.ok()?;
            Some(s)
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.ok().flatten());
    }
    out
}

struct Child {
    child: tokio::process::Child,
    addr: SocketAddr,
}

async fn start_sbx(
    bin: &Path,
    dir: &Path,
    upstream: SocketAddr,
    upstream_ca: &Path,
) -> Result<Child> {
    let policy = dir.join("policy.toml");
    std::fs::write(
        &policy,
        format!("name = \"bench\"\n[[network]]\naction = \"allow\"\nhosts = [\"{upstream}\"]\n"),
    )?;
    let mut child = tokio::process::Command::new(bin)
        .args(["--listen", "127.0.0.1:0", "--policy"])
        .arg(&policy)
        .arg("--state-dir")
        .arg(dir.join("sbx-state"))
        .arg("--extra-ca")
        .arg(upstream_ca)
        // The production configuration: every request is written to a tamper-evident sbx-audit log.
        .arg("--audit-dir")
        .arg(dir.join("audit"))
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    while let Some(line) = lines.next_line().await? {
        if let Some(addr) = line.strip_prefix("listening on ") {
            return Ok(Child {
                addr: addr.parse()?,
                child,
            });
        }
    }
    bail!("the proxy exited before listening")
}

async fn start_mitm(bin: &Path, dir: &Path) -> Result<Child> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let confdir = dir.join("mitm");
    let child = tokio::process::Command::new(bin)
        .args([
            "-q",
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            &port.to_string(),
        ])
        .arg("--set")
        .arg(format!("confdir={}", confdir.display()))
        // mitmproxy rejects the test upstream's rcgen chain; skipping its upstream verification only makes it faster,
        // so the comparison stays conservative.
        .arg("--ssl-insecure")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", bin.display()))?;
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse()?;
    for _ in 0..300 {
        if confdir.join("mitmproxy-ca-cert.pem").exists() && TcpStream::connect(addr).await.is_ok()
        {
            return Ok(Child { child, addr });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    bail!("mitmdump did not start listening")
}

fn row(name: &str, s: &Stats) -> String {
    format!(
        "| {name} | {:.0} | {:.0} | {:.0} | {} | {} |",
        s.rps, s.p50_us, s.p99_us, s.requests, s.errors
    )
}

/// `--latency-rounds N`: only the single keep-alive connection, `N` rounds in which the routes take turns (so drift in
/// load hits all alike); prints every round and each route's medians, and the added p50 against `direct`.
async fn latency_rounds(routes: &[(&str, Route)], rounds: usize) {
    let mut rows: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); routes.len()];
    for round in 0..rounds {
        for (i, (name, route)) in routes.iter().enumerate() {
            let s = keep_alive(route, 1).await;
            println!(
                "round {round}: {name}: {:.0} req/s, p50 {:.0} µs",
                s.rps, s.p50_us
            );
            rows[i].0.push(s.rps);
            rows[i].1.push(s.p50_us);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut direct = f64::NAN;
    println!(
        "\n| route (keep-alive, 1 connection; median of {rounds}) | req/s | p50 µs | added p50 µs |\n|---|---|---|---|"
    );
    for ((name, _), (rps, p50)) in routes.iter().zip(rows.iter_mut()) {
        let (rps, p50) = (median(rps), median(p50));
        if *name == "direct" {
            direct = p50;
        }
        println!("| {name} | {rps:.0} | {p50:.0} | {:+.0} |", p50 - direct);
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("SKIPPED proxy_load: run it with `cargo xtask bench-proxy`");
        return Ok(());
    }
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(PathBuf::from)
    };
    let proxy_bin = value("--proxy-bin").context("--proxy-bin PATH is required")?;
    let mitmdump = value("--mitmdump");
    let hudsucker = value("--hudsucker");
    let connections: usize = value("--connections")
        .and_then(|p| p.to_str()?.parse().ok())
        .unwrap_or(5000);

    // The driver holds both ends of every connection it measures (client sockets and the upstream's accepted ones).
    let fds = sbx_netproxy::raise_fd_limit();
    let dir = tempfile::tempdir()?;
    let (upstream, upstream_ca) = start_upstream(dir.path()).await?;
    let sbx = start_sbx(&proxy_bin, dir.path(), upstream, &upstream_ca).await?;
    let sbx_pid = sbx.child.id().context("proxy pid")?;
    let mut routes = vec![
        (
            "direct",
            Route {
                proxy: None,
                upstream,
                tls: connector(&upstream_ca)?,
            },
        ),
        (
            "sbx-netproxy",
            Route {
                proxy: Some(sbx.addr),
                upstream,
                tls: connector(&dir.path().join("sbx-state/ca.pem"))?,
            },
        ),
    ];
    // The latency anchor: a bare hudsucker MITM with no-op handlers (xtask/hudsucker-probe), started the same
    // way and writing its CA to the same place.
    let hud = match &hudsucker {
        Some(bin) => {
            let hud_dir = dir.path().join("hudsucker");
            std::fs::create_dir_all(&hud_dir)?;
            let h = start_sbx(bin, &hud_dir, upstream, &upstream_ca).await?;
            routes.push((
                "hudsucker",
                Route {
                    proxy: Some(h.addr),
                    upstream,
                    tls: connector(&hud_dir.join("sbx-state/ca.pem"))?,
                },
            ));
            Some(h)
        }
        None => None,
    };
    let mitm = match &mitmdump {
        Some(bin) => {
            let m = start_mitm(bin, dir.path()).await?;
            routes.push((
                "mitmproxy",
                Route {
                    proxy: Some(m.addr),
                    upstream,
                    tls: connector(&dir.path().join("mitm/mitmproxy-ca-cert.pem"))?,
                },
            ));
            Some(m)
        }
        None => None,
    };

    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "phase length {PHASE:?} per cell; client, upstream and proxies share this machine's cores; \
         load average at start: {}; driver open-file limit: {:?}\n",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        fds.map(|f| f.after)
    );
    if let Some(rounds) = value("--latency-rounds").and_then(|p| p.to_str()?.parse().ok()) {
        latency_rounds(&routes, rounds).await;
        drop((mitm, hud, sbx));
        return Ok(());
    }
    println!("| route | req/s | p50 µs | p99 µs | requests | errors |\n|---|---|---|---|---|---|");
    let mut p50 = Vec::new();
    for (conc, label) in [
        (1, "keep-alive, 1 connection"),
        (32, "keep-alive, 32 connections"),
    ] {
        for (name, route) in &routes {
            let s = keep_alive(route, conc).await;
            if conc == 1 {
                p50.push((*name, s.p50_us));
            }
            println!("{}", row(&format!("{name} ({label})"), &s));
        }
    }
    for (name, route) in &routes {
        let s = new_connection_each(route, 8).await;
        println!(
            "{}",
            row(
                &format!("{name} (new TLS connection per request, 8 parallel)"),
                &s
            )
        );
    }
    let direct = p50
        .iter()
        .find(|(n, _)| *n == "direct")
        .map_or(f64::NAN, |(_, v)| *v);
    for (name, v) in &p50 {
        if *name != "direct" {
            println!(
                "\nadded p50 latency, keep-alive, {name}: {:.0} µs",
                v - direct
            );
        }
    }
    let (errors, rss_1000, rss_all, secs) =
        many_connections(&routes[1].1, connections, sbx_pid).await;
    println!(
        "\nsbx-netproxy: {connections} concurrent intercepted connections (each: CONNECT + TLS + 2 requests): {errors} errors, {secs:.1} s; \
         RSS {rss_1000:.1} MiB at 1,000 open, {rss_all:.1} MiB at {connections} open"
    );
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!(
        "load average at end: {}",
        load.split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    drop(mitm);
    drop(hud);
    drop(sbx);
    Ok(())
}
