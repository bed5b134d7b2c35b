//! The egress forwarder: a TCP listener inside the sandbox (127.0.0.1:3128) that relays every connection, byte for
//! byte, to the host proxy over the sandbox's one way out (a Unix socket or vsock). It does not parse HTTP: policy,
//! TLS interception and credential injection all happen in the host proxy, outside the sandbox's reach.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::thread;

use crate::transport::{Endpoint, Stream};

/// Binds the forwarder's listener (so readiness can be reported only once it accepts connections).
pub fn bind(listen: SocketAddr) -> io::Result<TcpListener> {
    TcpListener::bind(listen)
}

/// Serves connections forever, one pair of relay threads per connection.
pub fn serve(listener: TcpListener, upstream: Endpoint) {
    for conn in listener.incoming() {
        match conn {
            Ok(client) => {
                let upstream = upstream.clone();
                let spawned = thread::Builder::new()
                    .name("sbx-fwd".into())
                    .spawn(move || relay(client, &upstream));
                if let Err(e) = spawned {
                    eprintln!("sbx-guest: forwarder: cannot start relay thread: {e}");
                }
            }
            Err(e) => eprintln!("sbx-guest: forwarder: accept failed: {e}"),
        }
    }
}

/// Relays one client connection to the upstream until both directions are closed.
fn relay(client: TcpStream, upstream: &Endpoint) {
    let server = match upstream.connect() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("sbx-guest: forwarder: cannot reach the host proxy at {upstream:?}: {e}");
            let _ = (&client).write_all(
                b"HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\n\
                  sbx: the sandbox cannot reach the host egress proxy\n",
            );
            drain_and_close(client);
            return;
        }
    };
    let (Ok(client_up), Ok(server_down)) = (client.try_clone(), server.try_clone()) else {
        eprintln!("sbx-guest: forwarder: cannot duplicate socket handles");
        return;
    };
    let upward = thread::Builder::new()
        .name("sbx-fwd-up".into())
        .spawn(move || {
            copy_then_close(client_up, server_down);
        });
    copy_down(server, client);
    if let Ok(h) = upward {
        let _ = h.join();
    }
}

/// Closes our side without a reset: unread request bytes would make the kernel send RST and the client could lose
/// the 502 we just wrote.
fn drain_and_close(mut client: TcpStream) {
    let _ = client.shutdown(Shutdown::Write);
    let _ = client.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut sink = [0u8; 4096];
    let mut total = 0usize;
    while let Ok(n) = client.read(&mut sink) {
        total += n;
        if n == 0 || total > 1 << 20 {
            break;
        }
    }
}

fn copy_then_close(mut from: TcpStream, mut to: Stream) {
    let _ = io::copy(&mut from, &mut to);
    let _ = to.shutdown(Shutdown::Write);
}

fn copy_down(mut from: Stream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
}
