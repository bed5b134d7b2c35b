//! Classifying the first bytes of a connection: TLS (with its SNI) or HTTP (with its Host), or neither.
//!
//! Used after CONNECT (to refuse raw tunnels) and in transparent mode (to learn the destination). Pure and bounded:
//! it looks at most at [`MAX_PEEK`] bytes and never allocates more than the host name it returns.

/// The most bytes the classifier will ever ask for.
pub const MAX_PEEK: usize = 16 * 1024;

/// What the first bytes of a connection are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Classified {
    /// More bytes are needed to decide.
    NeedMore,
    /// A TLS ClientHello; `sni` is its server_name (lower-case), if any.
    Tls {
        /// The SNI host name.
        sni: Option<String>,
    },
    /// An HTTP/1.x request head; `host` is its Host header value, if any.
    Http {
        /// The raw Host header value.
        host: Option<String>,
    },
    /// Neither TLS nor HTTP.
    Other,
}

const METHODS: [&[u8]; 9] = [
    b"GET ",
    b"POST ",
    b"PUT ",
    b"HEAD ",
    b"DELETE ",
    b"OPTIONS ",
    b"PATCH ",
    b"TRACE ",
    b"CONNECT ",
];

/// Classify the bytes seen so far.
#[must_use]
pub fn classify(buf: &[u8]) -> Classified {
    match buf.first() {
        None => Classified::NeedMore,
        Some(0x16) => classify_tls(buf),
        Some(_) => classify_http(buf),
    }
}

/// Classify just enough to tell TLS from HTTP from other (no SNI/Host needed).
#[must_use]
pub fn quick_kind(buf: &[u8]) -> Classified {
    match buf.first() {
        None => Classified::NeedMore,
        Some(0x16) if buf.len() < 3 => Classified::NeedMore,
        Some(0x16) if buf[1] == 3 => Classified::Tls { sni: None },
        Some(_) => match method_prefix(buf) {
            Prefix::Yes => Classified::Http { host: None },
            Prefix::Maybe => Classified::NeedMore,
            Prefix::No => Classified::Other,
        },
    }
}

enum Prefix {
    Yes,
    Maybe,
    No,
}

fn method_prefix(buf: &[u8]) -> Prefix {
    let mut maybe = false;
    for m in METHODS {
        if buf.starts_with(m) {
            return Prefix::Yes;
        }
        if m.starts_with(buf) {
            maybe = true;
        }
    }
    if maybe { Prefix::Maybe } else { Prefix::No }
}

fn classify_http(buf: &[u8]) -> Classified {
    match method_prefix(buf) {
        Prefix::No => return Classified::Other,
        Prefix::Maybe => return Classified::NeedMore,
        Prefix::Yes => {}
    }
    let window = &buf[..buf.len().min(MAX_PEEK)];
    let Some(end) = find(window, b"\r\n\r\n") else {
        return if buf.len() >= MAX_PEEK {
            Classified::Other
        } else {
            Classified::NeedMore
        };
    };
    let head = &window[..end];
    let mut host = None;
    for line in head.split(|&b| b == b'\n').skip(1) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        if line[..colon].eq_ignore_ascii_case(b"host") {
            if host.is_some() {
                // Two Host headers: ambiguous, refuse to pick one.
                return Classified::Other;
            }
            let value = std::str::from_utf8(&line[colon + 1..]).ok().map(str::trim);
            host = Some(value.map(str::to_owned));
        }
    }
    match host {
        Some(None) => Classified::Other,
        Some(Some(h)) => Classified::Http { host: Some(h) },
        None => Classified::Http { host: None },
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A bounds-checked big-endian reader over a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.buf.len() < n {
            return None;
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Some(head)
    }
    fn u8(&mut self) -> Option<usize> {
        self.take(1).map(|b| usize::from(b[0]))
    }
    fn u16(&mut self) -> Option<usize> {
        self.take(2)
            .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| (usize::from(b[0]) << 16) | (usize::from(b[1]) << 8) | usize::from(b[2]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = self.u8()?;
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = self.u16()?;
        self.take(n)
    }
}

fn classify_tls(buf: &[u8]) -> Classified {
    // TLS record header: type(1)=22, version(2), length(2). The ClientHello may span records; we only accept one that
    // fits in the first record (all real clients do this up to MAX_PEEK), and ask for more bytes until then.
    if buf.len() < 5 {
        return Classified::NeedMore;
    }
    if buf[1] != 3 {
        return Classified::Other;
    }
    let record_len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if record_len == 0 || record_len > MAX_PEEK {
        return Classified::Other;
    }
    if buf.len() < 5 + record_len {
        return Classified::NeedMore;
    }
    match parse_client_hello(&buf[5..5 + record_len]) {
        Some(sni) => Classified::Tls { sni },
        None => Classified::Other,
    }
}

/// `Some(sni)` for a well-formed ClientHello, `None` for malformed bytes.
fn parse_client_hello(record: &[u8]) -> Option<Option<String>> {
    let mut r = Reader { buf: record };
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let mut body = Reader { buf: r.take(len)? };
    body.take(2 + 32)?; // legacy_version, random
    body.vec8()?; // session id
    body.vec16()?; // cipher suites
    body.vec8()?; // compression methods
    if body.buf.is_empty() {
        return Some(None);
    }
    let mut exts = Reader { buf: body.vec16()? };
    while !exts.buf.is_empty() {
        let ty = exts.u16()?;
        let data = exts.vec16()?;
        if ty == 0 {
            return parse_sni(data).map(Some);
        }
    }
    Some(None)
}

fn parse_sni(data: &[u8]) -> Option<String> {
    let mut r = Reader { buf: data };
    let mut list = Reader { buf: r.vec16()? };
    while !list.buf.is_empty() {
        let kind = list.u8()?;
        let name = list.vec16()?;
        if kind == 0 {
            let s = std::str::from_utf8(name).ok()?;
            return Some(s.to_ascii_lowercase());
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client_hello(sni: Option<&str>) -> Vec<u8> {
        let mut exts = Vec::new();
        if let Some(name) = sni {
            let n = name.as_bytes();
            let mut list = vec![0u8];
            list.extend_from_slice(&(n.len() as u16).to_be_bytes());
            list.extend_from_slice(n);
            let mut data = (list.len() as u16).to_be_bytes().to_vec();
            data.extend_from_slice(&list);
            exts.extend_from_slice(&[0, 0]);
            exts.extend_from_slice(&(data.len() as u16).to_be_bytes());
            exts.extend_from_slice(&data);
        }
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.push(0);
        body.extend_from_slice(&[0, 2, 0x13, 0x01]);
        body.extend_from_slice(&[1, 0]);
        body.extend_from_slice(&(exts.len() as u16).to_be_bytes());
        body.extend_from_slice(&exts);
        let mut hs = vec![1, 0, (body.len() >> 8) as u8, body.len() as u8];
        hs.extend_from_slice(&body);
        let mut rec = vec![0x16, 3, 1, (hs.len() >> 8) as u8, hs.len() as u8];
        rec.extend_from_slice(&hs);
        rec
    }

    #[test]
    fn tls_client_hello_yields_its_sni() {
        let hello = client_hello(Some("API.example.com"));
        assert_eq!(
            classify(&hello),
            Classified::Tls {
                sni: Some("api.example.com".into())
            }
        );
        assert_eq!(classify(&client_hello(None)), Classified::Tls { sni: None });
        assert_eq!(classify(&hello[..hello.len() - 1]), Classified::NeedMore);
    }

    #[test]
    fn http_heads_yield_their_host() {
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a.example\r\n\r\n"),
            Classified::Http {
                host: Some("a.example".into())
            }
        );
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\n"),
            Classified::NeedMore
        );
        assert_eq!(classify(b"GE"), Classified::NeedMore);
        assert_eq!(
            classify(b"GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n"),
            Classified::Other
        );
    }

    #[test]
    fn other_bytes_are_other() {
        assert_eq!(classify(b"SSH-2.0-OpenSSH_9.6\r\n"), Classified::Other);
        assert_eq!(classify(&[0x16, 9, 9, 0, 1, 0]), Classified::Other);
        assert_eq!(quick_kind(b"\x00\x01"), Classified::Other);
        assert_eq!(quick_kind(b"POST /x"), Classified::Http { host: None });
    }
}
