//! Parsing CONNECT targets / `Host` values and normalising host names.
//!
//! Everything a guest sends as a host goes through [`normalize_host`] before policy sees it: lower-case, no trailing
//! dot, LDH labels only (IDNA names arrive in punycode), IP literals in canonical form. Anything else is refused.

use std::fmt;
use std::net::IpAddr;

/// A host as the proxy uses it: a DNS name or an IP address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    /// A normalised DNS name (lower-case, no trailing dot).
    Name(String),
    /// An IP literal.
    Ip(IpAddr),
}

impl Host {
    /// The form policy and audit see (IP without brackets).
    #[must_use]
    pub fn as_policy_str(&self) -> String {
        match self {
            Self::Name(n) => n.clone(),
            Self::Ip(ip) => ip.to_string(),
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Name(n) => f.write_str(n),
            Self::Ip(IpAddr::V4(v4)) => write!(f, "{v4}"),
            Self::Ip(IpAddr::V6(v6)) => write!(f, "[{v6}]"),
        }
    }
}

/// A host plus port.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// The host.
    pub host: Host,
    /// The port.
    pub port: u16,
}

impl fmt::Display for Authority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Why a host or authority was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// Empty host.
    #[error("empty host")]
    Empty,
    /// Longer than 253 characters, or a label longer than 63.
    #[error("host name too long")]
    TooLong,
    /// A character outside letters, digits, `-`, `_` and `.` (or an empty label).
    #[error(
        "invalid host name {0:?}: only letters, digits, '-', '_' and '.' are allowed (IDNA names in punycode)"
    )]
    InvalidName(String),
    /// Port missing where required.
    #[error("missing port in {0:?}")]
    MissingPort(String),
    /// Port not a number in 1..=65535.
    #[error("invalid port in {0:?}")]
    InvalidPort(String),
    /// Bracketed IPv6 literal that does not parse.
    #[error("invalid IP literal {0:?}")]
    InvalidIp(String),
    /// User info (`user@host`) is not allowed in an authority.
    #[error("user info is not allowed in {0:?}")]
    UserInfo(String),
}

const MAX_HOST_LEN: usize = 253;

/// Normalise a host (no port): lower-case, trailing dot removed, IP literals canonical (brackets optional for IPv6).
///
/// # Errors
/// [`AuthorityError`] naming what is wrong.
pub fn normalize_host(raw: &str) -> Result<Host, AuthorityError> {
    if raw.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| AuthorityError::InvalidIp(raw.to_owned()))?;
        let ip: std::net::Ipv6Addr = inner
            .parse()
            .map_err(|_| AuthorityError::InvalidIp(raw.to_owned()))?;
        return Ok(Host::Ip(IpAddr::V6(ip)));
    }
    if let Ok(ip) = raw.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let name = raw.strip_suffix('.').unwrap_or(raw);
    if name.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if name.len() > MAX_HOST_LEN {
        return Err(AuthorityError::TooLong);
    }
    let mut out = String::with_capacity(name.len());
    for label in name.split('.') {
        if label.is_empty()
            || !label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(AuthorityError::InvalidName(raw.to_owned()));
        }
        if label.len() > 63 {
            return Err(AuthorityError::TooLong);
        }
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(&label.to_ascii_lowercase());
    }
    // A name made only of digits and dots that did not parse as an IP (e.g. "127.1", "0x7f.1") is ambiguous: resolvers
    // read it as an address. Refuse rather than let it dodge the address checks' naming.
    if out
        .split('.')
        .next_back()
        .is_some_and(|l| l.bytes().all(|b| b.is_ascii_digit()) || l.starts_with("0x"))
    {
        return Err(AuthorityError::InvalidName(raw.to_owned()));
    }
    Ok(Host::Name(out))
}

/// Parse `host:port` (CONNECT target): the port is required.
///
/// # Errors
/// [`AuthorityError`] naming what is wrong.
pub fn parse_authority(raw: &str) -> Result<Authority, AuthorityError> {
    parse_authority_with_default(raw, None)
}

/// Parse `host[:port]` (a `Host` header or `:authority`), using `default_port` when no port is given.
///
/// # Errors
/// [`AuthorityError`] naming what is wrong.
pub fn parse_authority_with_default(
    raw: &str,
    default_port: Option<u16>,
) -> Result<Authority, AuthorityError> {
    if raw.contains('@') {
        return Err(AuthorityError::UserInfo(raw.to_owned()));
    }
    let (host_part, port_part) = split_host_port(raw)?;
    let port = match port_part {
        Some(p) => parse_port(p).ok_or_else(|| AuthorityError::InvalidPort(raw.to_owned()))?,
        None => default_port.ok_or_else(|| AuthorityError::MissingPort(raw.to_owned()))?,
    };
    Ok(Authority {
        host: normalize_host(host_part)?,
        port,
    })
}

fn split_host_port(raw: &str) -> Result<(&str, Option<&str>), AuthorityError> {
    if raw.starts_with('[') {
        let end = raw
            .find(']')
            .ok_or_else(|| AuthorityError::InvalidIp(raw.to_owned()))?;
        let (host, rest) = raw.split_at(end + 1);
        return match rest {
            "" => Ok((host, None)),
            _ => rest
                .strip_prefix(':')
                .map(|p| (host, Some(p)))
                .ok_or_else(|| AuthorityError::InvalidPort(raw.to_owned())),
        };
    }
    match raw.rsplit_once(':') {
        // A bare IPv6 literal without brackets is ambiguous with a port: refuse it.
        Some((host, _)) if host.contains(':') => Err(AuthorityError::InvalidIp(raw.to_owned())),
        Some((host, port)) => Ok((host, Some(port))),
        None => Ok((raw, None)),
    }
}

fn parse_port(p: &str) -> Option<u16> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    p.parse::<u16>().ok().filter(|&n| n != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercased_and_lose_the_trailing_dot() {
        assert_eq!(
            normalize_host("API.Example.COM."),
            Ok(Host::Name("api.example.com".into()))
        );
    }

    #[test]
    fn ip_literals_are_canonical() {
        assert_eq!(
            normalize_host("[::FFFF:127.0.0.1]").map(|h| h.to_string()),
            Ok("[::ffff:127.0.0.1]".into())
        );
        assert_eq!(
            normalize_host("10.0.0.1"),
            Ok(Host::Ip("10.0.0.1".parse().unwrap()))
        );
    }

    #[test]
    fn ambiguous_numeric_names_and_bad_characters_are_refused() {
        for bad in [
            "127.1",
            "0x7f.0.0.1",
            "2130706433",
            "a..b",
            "a b",
            "évil.com",
            "a/b",
            "",
            ".",
            "x\0y",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn connect_targets_need_a_valid_port() {
        assert_eq!(parse_authority("example.com:443").map(|a| a.port), Ok(443));
        assert_eq!(
            parse_authority("[::1]:8080").map(|a| a.to_string()),
            Ok("[::1]:8080".into())
        );
        for bad in [
            "example.com",
            "example.com:0",
            "example.com:65536",
            "example.com:+1",
            "::1:80",
            "u@h:1",
            "[::1]x",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad:?} should be refused");
        }
    }

    #[test]
    fn host_headers_use_the_default_port() {
        assert_eq!(
            parse_authority_with_default("Example.com", Some(443)).map(|a| a.to_string()),
            Ok("example.com:443".into())
        );
    }
}
