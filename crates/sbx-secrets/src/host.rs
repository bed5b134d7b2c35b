//! Host names: normalisation, binding patterns, and establishing a request's destination from
//! every place it is named (CONNECT target, TLS SNI, Host / `:authority`).
//!
//! A secret is injected only when all of them name the same host after normalisation
//! (lowercase, one trailing dot removed, port dropped) and that host matches a binding exactly
//! (or a `*.suffix` wildcard). Anything odd (userinfo, percent signs, slashes, non-ASCII,
//! empty labels) makes the destination unknown, and an unknown destination gets nothing.

use std::net::Ipv6Addr;

/// Where a request is going, as seen by the proxy. Fill in what is known; every field that is
/// present must agree with the others (and with the request's own Host header and absolute
/// URI authority) or nothing is injected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Destination<'a> {
    /// The host the proxy actually connects to upstream: the CONNECT target (`host:port`), or
    /// for plain HTTP the host it dialled. Always pass it: when the client CONNECTs to an IP
    /// address while claiming a bound name in SNI/Host, the names disagree and nothing is
    /// injected, so a secret can never ride a connection to an address the client chose.
    pub connect_host: Option<&'a str>,
    /// The TLS SNI the client sent (after the proxy terminated TLS).
    pub sni: Option<&'a str>,
    /// The request's Host header or HTTP/2 `:authority`, if the caller extracted it.
    pub authority: Option<&'a str>,
}

/// A host binding: an exact host name, or `*.suffix` for any host below suffix (not suffix
/// itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostPattern {
    /// Exactly this (normalised) host.
    Exact(String),
    /// Any host ending in `.suffix` with at least one more label.
    Subdomains(String),
}

impl HostPattern {
    /// Parses `api.example.com` or `*.example.com`, normalising case and a trailing dot.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(suffix) = text.strip_prefix("*.") {
            let suffix =
                normalize_host(suffix).map_err(|e| format!("host pattern {text:?}: {e}"))?;
            if !suffix.contains('.') {
                return Err(format!(
                    "host pattern {text:?} is too broad: name a domain, not a TLD"
                ));
            }
            return Ok(HostPattern::Subdomains(suffix));
        }
        let host = normalize_host(text).map_err(|e| format!("host pattern {text:?}: {e}"))?;
        if host.contains(':') || text.contains(':') {
            return Err(format!("host pattern {text:?} must not carry a port"));
        }
        Ok(HostPattern::Exact(host))
    }

    /// Whether the normalised `host` matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            HostPattern::Exact(h) => h == host,
            HostPattern::Subdomains(suffix) => host
                .strip_suffix(suffix.as_str())
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty()),
        }
    }
}

impl std::fmt::Display for HostPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostPattern::Exact(h) => f.write_str(h),
            HostPattern::Subdomains(s) => write!(f, "*.{s}"),
        }
    }
}

/// Normalises `host[:port]` to a lowercase host without port or trailing dot. Rejects
/// anything that is not a plain DNS name or IP literal.
pub fn normalize_host(raw: &str) -> Result<String, String> {
    let raw = raw.trim();
    if raw.is_empty() {
        return Err("empty host".into());
    }
    if !raw.is_ascii() {
        return Err("host is not ASCII (IDNs must arrive as punycode)".into());
    }
    if raw.contains(['@', '/', '\\', '%', '?', '#', ' ', '\t'])
        || raw.bytes().any(|b| b.is_ascii_control())
    {
        return Err(format!(
            "host {raw:?} contains characters a host name cannot have"
        ));
    }
    let host = strip_port(raw)?;
    let host = host.to_ascii_lowercase();
    if host.parse::<Ipv6Addr>().is_ok() {
        return Ok(host);
    }
    let host = host.strip_suffix('.').unwrap_or(&host);
    let valid_label = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if host.len() > 253 || !host.split('.').all(valid_label) {
        return Err(format!("{raw:?} is not a valid host name"));
    }
    Ok(host.to_owned())
}

fn strip_port(raw: &str) -> Result<&str, String> {
    if let Some(rest) = raw.strip_prefix('[') {
        let (inside, after) = rest.split_once(']').ok_or("unclosed '[' in host")?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return Err(format!("bad port in {raw:?}"));
        }
        return Ok(inside);
    }
    match raw.matches(':').count() {
        0 => Ok(raw),
        1 => {
            let (host, port) = raw.split_once(':').ok_or("bad port")?;
            if is_port(port) {
                Ok(host)
            } else {
                Err(format!("bad port in {raw:?}"))
            }
        }
        _ if raw.parse::<Ipv6Addr>().is_ok() => Ok(raw),
        _ => Err(format!("{raw:?} is not host[:port]")),
    }
}

fn is_port(port: &str) -> bool {
    !port.is_empty()
        && port.len() <= 5
        && port.bytes().all(|b| b.is_ascii_digit())
        && port.parse::<u16>().is_ok()
}

/// The single host a request is going to, or why that cannot be established. Considers the
/// destination's fields, the absolute-form URI's authority and every Host header.
pub fn resolve_destination(
    dest: &Destination<'_>,
    head: &http::request::Parts,
) -> Result<String, String> {
    let mut names: Vec<String> = [dest.connect_host, dest.sni, dest.authority]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    if let Some(authority) = head.uri.authority() {
        names.push(authority.as_str().to_owned());
    }
    for value in head.headers.get_all(http::header::HOST) {
        names.push(
            value
                .to_str()
                .map_err(|_| "Host header is not ASCII")?
                .to_owned(),
        );
    }
    agree(&names)
}

/// Like [`resolve_destination`] without a request head (for bodies).
pub fn resolve_names(dest: &Destination<'_>) -> Result<String, String> {
    let names: Vec<String> = [dest.connect_host, dest.sni, dest.authority]
        .into_iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    agree(&names)
}

fn agree(names: &[String]) -> Result<String, String> {
    let mut found: Option<String> = None;
    for name in names {
        let host = normalize_host(name)?;
        match &found {
            Some(first) if *first != host => {
                return Err(format!("destination names disagree: {first:?} vs {host:?}"));
            }
            Some(_) => {}
            None => found = Some(host),
        }
    }
    found.ok_or_else(|| "no destination host known".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalisation() {
        assert_eq!(
            normalize_host("API.Anthropic.COM.").unwrap(),
            "api.anthropic.com"
        );
        assert_eq!(
            normalize_host("api.anthropic.com:443").unwrap(),
            "api.anthropic.com"
        );
        assert_eq!(normalize_host("[::1]:8080").unwrap(), "::1");
        assert_eq!(normalize_host("10.0.0.1:80").unwrap(), "10.0.0.1");
        for bad in [
            "",
            "user@api.anthropic.com",
            "api.anthropic.com@evil.net",
            "evil.net/api.anthropic.com",
            "api.anthropic.com..",
            "a..b",
            "api.anthropic.com:x",
            "api.anthropic.com:99999",
            "api%2eanthropic.com",
            "аpi.anthropic.com",
            "a b",
            "[::1",
            "host:1:2",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn patterns() {
        let exact = HostPattern::parse("API.github.com").unwrap();
        assert!(exact.matches("api.github.com"));
        assert!(!exact.matches("api.github.com.evil.net"));
        assert!(!exact.matches("xapi.github.com"));
        let sub = HostPattern::parse("*.amazonaws.com").unwrap();
        assert!(sub.matches("s3.amazonaws.com"));
        assert!(sub.matches("a.b.amazonaws.com"));
        assert!(!sub.matches("amazonaws.com"));
        assert!(!sub.matches("evilamazonaws.com"));
        assert!(!sub.matches("s3.amazonaws.com.evil.net"));
        assert!(HostPattern::parse("*.com").is_err());
        assert!(HostPattern::parse("a.*.com").is_err());
        assert!(HostPattern::parse("a.com:443").is_err());
    }

    fn head(uri: &str, hosts: &[&str]) -> http::request::Parts {
        let mut b = http::Request::builder().uri(uri);
        for h in hosts {
            b = b.header("host", *h);
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn destination_must_agree_everywhere() {
        let d = Destination {
            connect_host: Some("api.anthropic.com:443"),
            sni: Some("API.anthropic.com"),
            authority: None,
        };
        assert_eq!(
            resolve_destination(&d, &head("/v1", &["api.anthropic.com."])).unwrap(),
            "api.anthropic.com"
        );
        // SNI differs from CONNECT.
        let d2 = Destination {
            sni: Some("evil.net"),
            ..d
        };
        assert!(resolve_destination(&d2, &head("/v1", &[])).is_err());
        // Host header differs.
        assert!(resolve_destination(&d, &head("/v1", &["evil.net"])).is_err());
        // Two Host headers.
        assert!(resolve_destination(&d, &head("/v1", &["api.anthropic.com", "evil.net"])).is_err());
        // Absolute-form URI with userinfo trick.
        assert!(resolve_destination(&d, &head("http://api.anthropic.com@evil.net/", &[])).is_err());
        // Nothing known.
        assert!(resolve_destination(&Destination::default(), &head("/", &[])).is_err());
    }
}
