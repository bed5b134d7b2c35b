//! End to end on the namespace backend: a sandbox's only way out is its proxy. Real jails, a real supervisor and
//! proxy, a real HTTPS server on the host (with its own CA, trusted through `extra_ca` in `proxy.toml`), curl
//! inside the sandbox, and nothing left behind.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::context::TestContext;
use crate::lifecycle::{context, ls_json, namespaces_available, pid_alive, sandbox_dir, wait_gone};

/// The real credential. Never written anywhere a sandbox or the audit trail can show it; commands run inside get
/// it only in two halves, so not even an exec argv holds it whole.
const SECRET_HEAD: &str = "real-credential-";
const SECRET_TAIL: &str = "7c1d9e0b42";

fn secret() -> String {
    format!("{SECRET_HEAD}{SECRET_TAIL}")
}

/// An HTTPS server on 127.0.0.1 with a certificate for `localhost` from its own test CA. It records the
/// `Authorization` header of every request and counts connections.
struct TestServer {
    port: u16,
    ca_pem: String,
    authorizations: Arc<Mutex<Vec<String>>>,
    connections: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl TestServer {
    fn start() -> TestServer {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, SanType};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "sbx e2e test server CA");
        let ca_pem = ca_params.self_signed(&ca_key).unwrap().pem();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        let cert = params.signed_by(&key, &issuer).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = Arc::new(
            rustls::ServerConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![cert.der().clone()],
                    rustls::pki_types::PrivateKeyDer::Pkcs8(
                        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
                    ),
                )
                .unwrap(),
        );
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let connections = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (auths, conns, stop) = (authorizations.clone(), connections.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            conns.fetch_add(1, Ordering::SeqCst);
                            let (config, auths) = (config.clone(), auths.clone());
                            std::thread::spawn(move || serve_one(stream, config, &auths));
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        TestServer {
            port,
            ca_pem,
            authorizations,
            connections,
            stop,
            thread: Some(thread),
        }
    }

    fn authorizations(&self) -> Vec<String> {
        self.authorizations.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Answers HTTP/1.1 requests on one TLS connection with `200 hello from the host`.
fn serve_one(
    stream: std::net::TcpStream,
    config: Arc<rustls::ServerConfig>,
    auths: &Mutex<Vec<String>>,
) {
    stream.set_nonblocking(false).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let Ok(conn) = rustls::ServerConnection::new(config) else {
        return;
    };
    let mut tls = rustls::StreamOwned::new(conn, stream);
    let mut reader = BufReader::new(&mut tls);
    loop {
        let mut auth = String::new();
        let mut length = 0usize;
        let mut first = true;
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let line = line.trim_end();
            if line.is_empty() && !first {
                break;
            }
            first = false;
            if let Some((k, v)) = line.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "authorization" => auth = v.trim().to_owned(),
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        auths.lock().unwrap().push(auth);
        let reply = "HTTP/1.1 200 OK\r\ncontent-length: 20\r\ncontent-type: text/plain\r\n\r\nhello from the host\n";
        if reader.get_mut().write_all(reply.as_bytes()).is_err() {
            return;
        }
        let _ = reader.get_mut().flush();
    }
}

/// Every process that carries this installation's `SBX_HOME` (supervisors and what they start), and every live
/// Unix socket bound under it.
fn leftovers(ctx: &TestContext) -> Vec<String> {
    let marker = format!("SBX_HOME={}", ctx.home().display());
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let pid = entry.file_name().to_string_lossy().into_owned();
        if !pid.chars().all(|c| c.is_ascii_digit()) || pid == me {
            continue;
        }
        let Ok(environ) = std::fs::read(entry.path().join("environ")) else {
            continue;
        };
        if environ.split(|b| *b == 0).any(|v| v == marker.as_bytes())
            && pid_alive(pid.parse().unwrap())
        {
            let cmd = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
            found.push(format!(
                "process {pid}: {}",
                String::from_utf8_lossy(&cmd).replace('\0', " ")
            ));
        }
    }
    let home = ctx.home().display().to_string();
    for line in std::fs::read_to_string("/proc/net/unix")
        .unwrap_or_default()
        .lines()
    {
        if line.contains(&home) {
            found.push(format!("live socket: {line}"));
        }
    }
    found
}

/// Socket files anywhere under `dir`.
fn socket_files(dir: &Path) -> Vec<PathBuf> {
    use std::os::unix::fs::FileTypeExt;
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_socket() {
            out.push(entry.path());
        } else if ft.is_dir() {
            out.extend(socket_files(&entry.path()));
        }
    }
    out
}

/// Files under `dir` (not following symlinks) whose bytes contain `needle`.
fn files_containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return out;
    };
    for entry in entries.flatten() {
        let Ok(ft) = entry.file_type() else { continue };
        if ft.is_dir() {
            out.extend(files_containing(&entry.path(), needle));
        } else if ft.is_file()
            && std::fs::read(entry.path())
                .is_ok_and(|data| data.windows(needle.len()).any(|w| w == needle))
        {
            out.push(entry.path());
        }
    }
    out
}

/// Runs a shell snippet in the sandbox: (exit code, stdout, stderr).
fn sh(ctx: &TestContext, name: &str, script: &str) -> (i32, String, String) {
    ctx.sbx(&["exec", name, "sh", "-c", script])
}

/// Kills what a failed test left (it removes the sandboxes, which stops their supervisors and proxies).
struct Cleanup<'a>(&'a TestContext);
impl Drop for Cleanup<'_> {
    fn drop(&mut self) {
        let _ = self.0.sbx(&["rm", "-f", "--all"]);
    }
}

/// `curl` inside, through the sandbox's proxy even for `localhost` (the sandbox's NO_PROXY exempts it otherwise),
/// printing the body and then, on a line of its own, the status code and the proxy's answer to CONNECT.
fn curl_via_proxy(url: &str, extra: &str) -> String {
    format!(
        "curl -sS --max-time 20 --noproxy '' {extra} -w '\\n%{{http_code}} %{{http_connect}}\\n' {url}"
    )
}

/// The response's status code (`000` when there was none).
fn status_of(out: &str) -> &str {
    last_line(out).split(' ').next().unwrap_or_default()
}

/// The proxy's status for the CONNECT request (`000` for plain HTTP).
fn connect_status_of(out: &str) -> &str {
    last_line(out).split(' ').nth(1).unwrap_or_default()
}

fn last_line(out: &str) -> &str {
    out.trim_end().rsplit('\n').next().unwrap_or_default()
}

#[test]
fn proxy_injects_credentials_applies_policy_live_and_logs_without_the_secret() {
    if !namespaces_available(
        "proxy_injects_credentials_applies_policy_live_and_logs_without_the_secret",
    ) {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let server = TestServer::start();
    let port = server.port;
    let ca_file = ctx.dir.path().join("server-ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).unwrap();
    ctx.write(
        &ctx.home().join("config/proxy.toml"),
        &format!("extra_ca = [{:?}]\n", ca_file.display().to_string()),
    );
    let ws = ctx.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    ctx.ok(&[
        "secret",
        "set-custom",
        "--host",
        "localhost",
        "--env",
        "TEST_TOKEN",
        "-t",
        &secret(),
    ]);
    ctx.ok(&["create", "--name", "box", "shell", ws.to_str().unwrap()]);
    let ca_in_sandbox = std::fs::read_to_string(sandbox_dir(&ctx, "box").join("ca.pem")).unwrap();
    assert!(
        ca_in_sandbox.contains("BEGIN CERTIFICATE"),
        "{ca_in_sandbox}"
    );
    let url = format!("https://localhost:{port}/v1/items");
    let with_token = "-H \"Authorization: Bearer $TEST_TOKEN\"";

    // Loopback needs a rule naming it: blocked before, allowed right after `sbx policy allow` on the running box.
    let (_, out, _) = sh(&ctx, "box", &curl_via_proxy(&url, with_token));
    assert_eq!(
        (status_of(&out), connect_status_of(&out)),
        ("000", "403"),
        "not allowed yet: {out}"
    );
    assert_eq!(server.connections.load(Ordering::SeqCst), 0);
    let allowed = ctx.ok(&["policy", "allow", "network", &format!("localhost:{port}")]);
    assert!(allowed.contains("allowed"), "{allowed}");
    let (code, out, err) = sh(&ctx, "box", &curl_via_proxy(&url, with_token));
    assert_eq!(
        (code, status_of(&out)),
        (0, "200"),
        "allowed now: {out}{err}"
    );
    assert!(out.contains("hello from the host"), "{out}");
    assert_eq!(
        server.authorizations(),
        [format!("Bearer {}", secret())],
        "the server sees the real credential"
    );

    // A host no rule allows: 403 naming the reason and the command that would allow it.
    let (_, out, _) = sh(&ctx, "box", &curl_via_proxy("http://blocked.invalid/x", ""));
    assert_eq!(status_of(&out), "403", "{out}");
    assert!(
        out.contains("rule: ") && out.contains("reason: default-deny"),
        "the rule and the reason: {out}"
    );
    assert!(
        out.contains("sbx policy allow network blocked.invalid"),
        "what to type: {out}"
    );
    let (_, out, _) = sh(&ctx, "box", &curl_via_proxy("https://blocked.invalid/", ""));
    assert_eq!(
        connect_status_of(&out),
        "403",
        "HTTPS to a blocked host: {out}"
    );

    // The sandbox sees only the placeholder: in its environment and in its files.
    let env = ctx.ok(&["exec", "box", "env"]);
    let placeholder = env
        .lines()
        .find_map(|l| l.strip_prefix("TEST_TOKEN="))
        .unwrap_or_else(|| panic!("TEST_TOKEN is not in the sandbox env: {env}"))
        .to_owned();
    assert!(placeholder.starts_with("sbx-ph-"), "{placeholder}");
    assert!(!env.contains(&secret()));
    ctx.ok(&[
        "exec",
        "box",
        "sh",
        "-c",
        &format!(
            "env > {}/env.txt; env > ${{HOME:-/root}}/env.txt",
            ws.display()
        ),
    ]);
    let (code, out, _) = sh(
        &ctx,
        "box",
        &format!(
            "v={SECRET_HEAD}; v=\"${{v}}{SECRET_TAIL}\"; grep -rIl -- \"$v\" / --exclude-dir=proc --exclude-dir=sys \
             --exclude-dir=dev 2>/dev/null; grep -c -- \"$TEST_TOKEN\" ${{HOME:-/root}}/env.txt"
        ),
    );
    assert_eq!(code, 0, "{out}");
    assert_eq!(
        out, "1\n",
        "no file inside holds the secret; the placeholder is in the file written"
    );
    assert!(
        std::fs::read_to_string(ws.join("env.txt"))
            .unwrap()
            .contains(&placeholder)
    );

    // The policy log shows both decisions, as tables and as JSON.
    let log = ctx.ok(&["policy", "log"]);
    let (blocked, allowed) = log.split_once("Allowed").expect("an Allowed table");
    assert!(
        blocked.contains("Blocked") && blocked.contains("blocked.invalid"),
        "{log}"
    );
    assert!(allowed.contains(&format!("localhost:{port}")), "{log}");
    let json: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["policy", "log", "box", "--json"]))
            .unwrap_or_else(|e| panic!("policy log --json: {e}"));
    let hosts = |table: &str| -> Vec<String> {
        json[table]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["host"].as_str().unwrap().to_owned())
            .collect()
    };
    assert!(
        hosts("blocked")
            .iter()
            .any(|h| h.contains("blocked.invalid")),
        "{json}"
    );
    assert!(
        hosts("allowed").iter().any(|h| h.contains("localhost")),
        "{json}"
    );
    let limited: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["policy", "log", "--json", "--limit", "1"])).unwrap();
    assert_eq!(limited["blocked"].as_array().unwrap().len(), 1);
    let other: serde_json::Value =
        serde_json::from_str(&ctx.ok(&["policy", "log", "no-such-box", "--json"])).unwrap();
    assert!(other["blocked"].as_array().unwrap().is_empty());

    // stop/start keeps the sandbox's files; the restarted proxy still injects.
    let sup = ls_json(&ctx)[0]["supervisor_pid"].as_i64().unwrap();
    let init: i64 = std::fs::read_to_string(sandbox_dir(&ctx, "box").join("jail/init.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    ctx.ok(&["stop", "box"]);
    wait_gone(sup);
    wait_gone(init);
    assert_eq!(leftovers(&ctx), Vec::<String>::new(), "after stop");
    ctx.ok(&["start", "box"]);
    assert!(
        ctx.ok(&["exec", "box", "sh", "-c", "cat ${HOME:-/root}/env.txt"])
            .contains("TEST_TOKEN=sbx-ph-")
    );
    let (code, out, err) = sh(&ctx, "box", &curl_via_proxy(&url, with_token));
    assert_eq!((code, status_of(&out)), (0, "200"), "{out}{err}");
    assert_eq!(server.authorizations().len(), 2);
    assert_eq!(server.authorizations()[1], format!("Bearer {}", secret()));

    // rm removes the sandbox and leaves no process and no socket behind.
    let sup = ls_json(&ctx)[0]["supervisor_pid"].as_i64().unwrap();
    ctx.ok(&["rm", "-f", "box"]);
    wait_gone(sup);
    assert!(!sandbox_dir(&ctx, "box").exists());
    assert_eq!(leftovers(&ctx), Vec::<String>::new(), "after rm");
    assert_eq!(socket_files(&ctx.home()), Vec::<PathBuf>::new());

    // The audit trail recorded every step, and nothing under SBX_HOME holds the secret in clear.
    let audit = ctx.home().join("state/audit");
    let mut text = String::new();
    for entry in std::fs::read_dir(&audit).unwrap().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    for kind in [
        "sandbox_created",
        "sandbox_started",
        "sandbox_stopped",
        "sandbox_removed",
        "\"exec\"",
        "\"mount\"",
        "secret_injected",
        "http_request",
    ] {
        assert!(text.contains(kind), "no {kind} event in the audit trail");
    }
    assert!(
        !text.contains(&secret()),
        "the audit trail holds the secret"
    );
    assert_eq!(
        files_containing(&ctx.home(), secret().as_bytes()),
        Vec::<PathBuf>::new(),
        "files under SBX_HOME holding the secret in clear"
    );
    assert_eq!(
        files_containing(&ws, secret().as_bytes()),
        Vec::<PathBuf>::new()
    );
}

#[test]
fn nothing_leaves_a_sandbox_but_through_its_proxy_and_host_files_stay_out() {
    if !namespaces_available(
        "nothing_leaves_a_sandbox_but_through_its_proxy_and_host_files_stay_out",
    ) {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let server = TestServer::start();
    let port = server.port;
    // Even a rule allowing the host service does not open a path around the proxy.
    ctx.ok(&["policy", "allow", "network", &format!("localhost:{port}")]);
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    udp.set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let udp_port = udp.local_addr().unwrap().port();

    let outside = ctx.dir.path().join("outside");
    std::fs::create_dir_all(&outside).unwrap();
    std::fs::write(outside.join("private.txt"), "host-only data\n").unwrap();
    let ws = ctx.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    let host_home = PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()));
    for (link, target) in [
        ("shadow", PathBuf::from("/etc/shadow")),
        ("ssh", host_home.join(".ssh")),
        ("outside", outside.join("private.txt")),
    ] {
        std::os::unix::fs::symlink(target, ws.join(link)).unwrap();
    }
    ctx.ok(&["create", "--name", "jailed", "shell", ws.to_str().unwrap()]);

    let started = Instant::now();
    for (what, script) in [
        (
            "TCP to the host's loopback service",
            format!("curl -sS --noproxy '*' --max-time 5 -k https://localhost:{port}/"),
        ),
        (
            "TCP to an outside address",
            "curl -sS --noproxy '*' --max-time 5 http://1.1.1.1/".to_owned(),
        ),
        (
            "UDP to an outside address",
            "bash -c 'echo x > /dev/udp/1.1.1.1/53'".to_owned(),
        ),
        ("ICMP", "ping -c 1 -W 2 1.1.1.1".to_owned()),
        ("DNS", "getent hosts example.com".to_owned()),
        (
            "the host's /etc/shadow through a workspace symlink",
            format!("cat {}/shadow", ws.display()),
        ),
        (
            "~/.ssh through a workspace symlink",
            format!("ls {}/ssh/", ws.display()),
        ),
        (
            "a host file outside the workspace through a symlink",
            format!("cat {}/outside", ws.display()),
        ),
        (
            "a host file outside the workspace by its path",
            format!("cat {}/private.txt", outside.display()),
        ),
        (
            "the host's ~/.ssh",
            format!("ls {}/.ssh", host_home.display()),
        ),
    ] {
        let (code, out, err) = sh(&ctx, "jailed", &script);
        assert_ne!(code, 0, "{what} must fail, but `{script}` did: {out}{err}");
        assert!(!out.contains("host-only data") && !out.contains("hello from the host"));
    }
    // UDP to the host's loopback lands in the sandbox's own loopback, never on the host.
    let (code, _, err) = sh(
        &ctx,
        "jailed",
        &format!("bash -c 'echo leak > /dev/udp/127.0.0.1/{udp_port}'"),
    );
    let mut buf = [0u8; 64];
    assert!(
        udp.recv_from(&mut buf).is_err(),
        "a UDP datagram reached the host (exit {code}: {err})"
    );
    assert_eq!(
        server.connections.load(Ordering::SeqCst),
        0,
        "something reached the host's loopback server around the proxy"
    );
    // The proxy path itself works, so the failures above are isolation, not a broken sandbox.
    let (_, out, _) = sh(
        &ctx,
        "jailed",
        &curl_via_proxy("http://blocked.invalid/", ""),
    );
    assert_eq!(status_of(&out), "403", "{out}");
    assert!(started.elapsed() < Duration::from_secs(120));

    let sup = ls_json(&ctx)[0]["supervisor_pid"].as_i64().unwrap();
    ctx.ok(&["rm", "-f", "jailed"]);
    wait_gone(sup);
    assert_eq!(leftovers(&ctx), Vec::<String>::new());
    assert_eq!(socket_files(&ctx.home()), Vec::<PathBuf>::new());
}

/// Issue #9: a secret added while the sandbox runs takes effect without a restart: the running proxy injects it and
/// the next command started inside gets its placeholder; the placeholder of a secret that was there before stays.
#[test]
fn a_secret_added_to_a_running_sandbox_is_injected_without_a_restart() {
    if !namespaces_available("a_secret_added_to_a_running_sandbox_is_injected_without_a_restart") {
        return;
    }
    let ctx = context();
    let _cleanup = Cleanup(&ctx);
    let server = TestServer::start();
    let port = server.port;
    let ca_file = ctx.dir.path().join("server-ca.pem");
    std::fs::write(&ca_file, &server.ca_pem).unwrap();
    ctx.write(
        &ctx.home().join("config/proxy.toml"),
        &format!("extra_ca = [{:?}]\n", ca_file.display().to_string()),
    );
    let ws = ctx.dir.path().join("project");
    std::fs::create_dir_all(&ws).unwrap();
    ctx.ok(&[
        "secret",
        "set-custom",
        "--host",
        "early.invalid",
        "--env",
        "EARLY_TOKEN",
        "-t",
        "early-value",
    ]);
    ctx.ok(&["create", "--name", "live", "shell", ws.to_str().unwrap()]);
    ctx.ok(&["policy", "allow", "network", &format!("localhost:{port}")]);
    let env_before = ctx.ok(&["exec", "live", "env"]);
    let early = env_before
        .lines()
        .find_map(|l| l.strip_prefix("EARLY_TOKEN="))
        .unwrap_or_else(|| panic!("EARLY_TOKEN missing: {env_before}"))
        .to_owned();
    assert!(!env_before.contains("LATE_TOKEN="), "{env_before}");

    // Added while the sandbox runs.
    ctx.ok(&[
        "secret",
        "set-custom",
        "--host",
        "localhost",
        "--env",
        "LATE_TOKEN",
        "-t",
        &secret(),
    ]);
    let env_after = ctx.ok(&["exec", "live", "env"]);
    let late = env_after
        .lines()
        .find_map(|l| l.strip_prefix("LATE_TOKEN="))
        .unwrap_or_else(|| panic!("LATE_TOKEN is not in a new command's env: {env_after}"))
        .to_owned();
    assert!(late.starts_with("sbx-ph-"), "{late}");
    assert!(!env_after.contains(&secret()));
    assert!(
        env_after.contains(&format!("EARLY_TOKEN={early}")),
        "the earlier placeholder is unchanged: {env_after}"
    );
    let url = format!("https://localhost:{port}/v1/items");
    let (code, out, err) = sh(
        &ctx,
        "live",
        &curl_via_proxy(&url, "-H \"Authorization: Bearer $LATE_TOKEN\""),
    );
    assert_eq!((code, status_of(&out)), (0, "200"), "{out}{err}");
    assert_eq!(
        server.authorizations(),
        [format!("Bearer {}", secret())],
        "the running proxy injected the secret added after the start"
    );

    // Removed while it runs: the placeholder is no longer replaced.
    ctx.ok(&["secret", "rm", "late-token"]);
    assert!(!ctx.ok(&["exec", "live", "env"]).contains("LATE_TOKEN="));
    let (_, out, _) = sh(
        &ctx,
        "live",
        &curl_via_proxy(&url, &format!("-H \"Authorization: Bearer {late}\"")),
    );
    assert_eq!(status_of(&out), "200", "{out}");
    assert_eq!(
        server.authorizations().last().cloned(),
        Some(format!("Bearer {late}")),
        "a removed secret is not injected any more"
    );
    let sup = ls_json(&ctx)[0]["supervisor_pid"].as_i64().unwrap();
    ctx.ok(&["rm", "-f", "live"]);
    wait_gone(sup);
    assert_eq!(leftovers(&ctx), Vec::<String>::new(), "after rm");
}
