//! The sandbox's one way out: processes inside reach the host only through the agent's forwarder and the bind-mounted
//! proxy socket. The host side here is a minimal HTTP relay (sbx-netproxy, the real policy proxy, plugs into the
//! same socket); it maps `allowed.test` to a loopback server of the host and refuses every other host with 403.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

/// A loopback HTTP server that answers every request with the request line it saw.
fn origin_server() -> (u16, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            while reader
                .read_line(&mut String::new())
                .map(|n| n > 2)
                .unwrap_or(false)
            {}
            log.lock().unwrap().push(line.trim().to_owned());
            let body = format!("origin saw: {}", line.trim());
            let mut conn = conn;
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, seen)
}

/// Reads one absolute-form request from the sandbox and relays it, or answers 403.
fn relay(client: UnixStream, origin_port: u16) {
    let mut reader = BufReader::new(client.try_clone().unwrap());
    let mut request_line = String::new();
    reader.read_line(&mut request_line).unwrap();
    let mut head = Vec::new();
    loop {
        let mut l = String::new();
        if reader.read_line(&mut l).unwrap() == 0 || l == "\r\n" {
            break;
        }
        head.push(l);
    }
    let mut client = client;
    let parts: Vec<&str> = request_line.split_whitespace().collect();
    let url = parts.get(1).copied().unwrap_or("");
    let Some(rest) = url.strip_prefix("http://allowed.test") else {
        let body = format!("blocked by test relay: no rule allows {url}\n");
        let _ = write!(
            client,
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    };
    let path = rest
        .split_once('/')
        .map_or("/".to_owned(), |(_, p)| format!("/{p}"));
    let mut upstream = TcpStream::connect(("127.0.0.1", origin_port)).unwrap();
    write!(upstream, "{} {path} HTTP/1.1\r\n", parts[0]).unwrap();
    for h in head {
        upstream.write_all(h.as_bytes()).unwrap();
    }
    upstream.write_all(b"\r\n").unwrap();
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).unwrap();
    let _ = client.write_all(&response);
}

#[test]
fn curl_reaches_an_allowed_host_only_through_the_proxy_socket() {
    if !namespaces_available("curl_reaches_an_allowed_host_only_through_the_proxy_socket") {
        return;
    }
    let (origin_port, seen) = origin_server();
    let sock_dir = tempfile::tempdir().unwrap();
    let proxy_sock = sock_dir.path().join("proxy.sock");
    let listener = UnixListener::bind(&proxy_sock).unwrap();
    thread::spawn(move || {
        for conn in listener.incoming().flatten() {
            thread::spawn(move || relay(conn, origin_port));
        }
    });
    let (mut config, _g) = config("egress");
    config.proxy_socket = Some(proxy_sock);
    let sb = spawn(&config);
    let (code, out, err) = sh(
        &sb,
        &format!("curl -sS -m 10 http://allowed.test:{origin_port}/hello"),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out, "origin saw: GET /hello HTTP/1.1");
    assert_eq!(seen.lock().unwrap().as_slice(), ["GET /hello HTTP/1.1"]);
    let (code, out, _) = sh(
        &sb,
        "curl -sS -m 10 -o /dev/stderr -w '%{http_code}' http://denied.test/",
    );
    assert_eq!((code, out.as_str()), (0, "403"));
    // Bypassing the proxy variables does not bypass the proxy: there is no other route.
    let (code, _, _) = sh(
        &sb,
        &format!("curl --noproxy '*' -sS -m 3 http://127.0.0.1:{origin_port}/direct"),
    );
    assert_ne!(code, 0);
    assert_eq!(
        seen.lock().unwrap().len(),
        1,
        "the origin was reached directly"
    );
    sb.stop(Duration::from_secs(5)).unwrap();
}

#[test]
fn the_sandbox_ca_is_trusted_and_named_in_the_environment() {
    if !namespaces_available("the_sandbox_ca_is_trusted_and_named_in_the_environment") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca.pem");
    std::fs::write(
        &ca,
        "-----BEGIN CERTIFICATE-----\nc2J4LXRlc3QtY2E=\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (mut config, _g) = config("egress-ca");
    config.ca_file = Some(ca);
    let sb = spawn(&config);
    let (code, out, err) = sh(
        &sb,
        "echo $NODE_EXTRA_CA_CERTS $REQUESTS_CA_BUNDLE $SSL_CERT_FILE $GIT_SSL_CAINFO $CURL_CA_BUNDLE; \
         grep -c c2J4LXRlc3QtY2E= $SSL_CERT_FILE $NODE_EXTRA_CA_CERTS",
    );
    assert_eq!(code, 0, "{err}");
    let bundle = "/etc/ssl/certs/sbx-ca-bundle.pem";
    let local = "/usr/local/share/ca-certificates/sbx-sandbox-ca.crt";
    assert_eq!(
        out,
        format!("{local} {bundle} {bundle} {bundle} {bundle}\n{bundle}:1\n{local}:1\n")
    );
    sb.stop(Duration::from_secs(5)).unwrap();
}
