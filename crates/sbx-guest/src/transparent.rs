//! The transparent egress path of the microVM: TCP connections that ignored the proxy variables are redirected here
//! by nftables; each is handed to the host proxy as an HTTP `CONNECT` to its original destination, so policy and
//! audit still apply (the proxy decides on the address, and on the SNI/Host when it inspects the stream).

use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use crate::transport::Endpoint;

/// `SO_ORIGINAL_DST` (linux/netfilter_ipv4.h).
const SO_ORIGINAL_DST: libc::c_int = 80;
/// Longest proxy answer head accepted.
const MAX_HEAD: usize = 8192;

/// The destination a redirected connection was headed for.
pub fn original_destination(stream: &TcpStream) -> io::Result<SocketAddrV4> {
    // SAFETY: sockaddr_in is plain data; zero is a valid value.
    let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    // SAFETY: the fd is a live socket; `addr`/`len` point at a sockaddr_in and its size, which the call fills.
    let rc = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_IP,
            SO_ORIGINAL_DST,
            (&raw mut addr).cast(),
            &raw mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
        u16::from_be(addr.sin_port),
    ))
}

/// The CONNECT request for `dest`.
pub fn connect_request(dest: SocketAddrV4) -> String {
    format!("CONNECT {dest} HTTP/1.1\r\nHost: {dest}\r\nProxy-Connection: keep-alive\r\n\r\n")
}

/// Reads the proxy's answer head and says whether it is a 2xx.
pub fn read_connect_answer(upstream: &mut impl Read) -> io::Result<bool> {
    let mut head = Vec::with_capacity(256);
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() >= MAX_HEAD || upstream.read(&mut byte)? == 0 {
            return Ok(false);
        }
        head.push(byte[0]);
    }
    let status = head.split(|b| *b == b' ').nth(1).unwrap_or_default();
    Ok(status.first() == Some(&b'2') && status.len() == 3)
}

/// Serves redirected connections forever.
pub fn serve(listener: TcpListener, upstream: Endpoint) {
    for client in listener.incoming().flatten() {
        let upstream = upstream.clone();
        crate::session::spawn_named("sbx-transparent", move || {
            let _ = relay(client, &upstream);
        });
    }
}

fn relay(client: TcpStream, upstream: &Endpoint) -> io::Result<()> {
    let dest = original_destination(&client)?;
    let mut up = upstream.connect()?;
    up.write_all(connect_request(dest).as_bytes())?;
    if !read_connect_answer(&mut up)? {
        return Ok(());
    }
    let up_read = up.try_clone()?;
    let mut client_read = client.try_clone()?;
    let mut down = client;
    let t = std::thread::spawn(move || {
        let mut up_read = up_read;
        let _ = io::copy(&mut up_read, &mut down);
        let _ = down.shutdown(std::net::Shutdown::Write);
    });
    let _ = io::copy(&mut client_read, &mut up);
    let _ = up.shutdown(std::net::Shutdown::Write);
    let _ = t.join();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_names_the_original_destination() {
        let req = connect_request(SocketAddrV4::new(Ipv4Addr::new(93, 184, 216, 34), 443));
        assert!(
            req.starts_with("CONNECT 93.184.216.34:443 HTTP/1.1\r\nHost: 93.184.216.34:443\r\n")
        );
        assert!(req.ends_with("\r\n\r\n"));
    }

    #[test]
    fn only_a_2xx_answer_opens_the_tunnel() {
        assert!(
            read_connect_answer(&mut &b"HTTP/1.1 200 Connection established\r\n\r\nrest"[..])
                .unwrap()
        );
        assert!(!read_connect_answer(&mut &b"HTTP/1.1 403 Forbidden\r\nX: y\r\n\r\n"[..]).unwrap());
        assert!(!read_connect_answer(&mut &b"HTTP/1.1 200 but truncated"[..]).unwrap());
        assert!(!read_connect_answer(&mut &b"HTTP/1.1 2000 x\r\n\r\n"[..]).unwrap());
        let huge = vec![b'a'; MAX_HEAD + 10];
        assert!(!read_connect_answer(&mut huge.as_slice()).unwrap());
    }

    #[test]
    fn a_socket_that_was_not_redirected_has_no_original_destination() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        // Without a NAT redirect (no conntrack entry) the kernel has nothing to report.
        assert!(original_destination(&s).is_err());
        drop(c);
    }
}
