//! One entry of a rule's `hosts` list: which destination (name pattern, address, CIDR or
//! `localhost`) and which port.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::host::HostPattern;
use crate::ip::IpNet;

/// Which hosts a target covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum HostSpec {
    /// A host-name pattern.
    Name(HostPattern),
    /// An address or CIDR block.
    Net(IpNet),
    /// `localhost`: a service on the user's own machine (the name and the loopback addresses).
    Localhost,
}

/// Which ports a target covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortSpec {
    /// No port written: HTTP and HTTPS on ports 80 and 443 (for a deny: every port).
    Web,
    /// `:PORT`: that port, any protocol.
    Exact(u16),
}

/// A parsed `hosts` entry, keeping the text as written for explanations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub(crate) host: HostSpec,
    pub(crate) port: PortSpec,
    pub(crate) text: String,
}

impl Target {
    /// Parses `api.example.com`, `*.npmjs.org:8443`, `10.0.0.0/8:5432`, `[fd00::]/8:5432`,
    /// `[::1]:8080`, `192.168.1.10`, `localhost:11434`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("empty host entry".into());
        }
        if let Some(c) = text.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!(
                "host entry `{text}` contains {c:?}; write one host per entry"
            ));
        }
        if text.contains("://") {
            return Err(format!(
                "host entry `{text}` is a URL; write the host only (and `:port` if needed)"
            ));
        }
        let (host, port) = split_port(text)?;
        let host = parse_host_spec(host, text)?;
        Ok(Target {
            host,
            port,
            text: text.to_owned(),
        })
    }
}

/// Splits `host[:port]`, honouring `[v6]` brackets and bare IPv6.
fn split_port(text: &str) -> Result<(&str, PortSpec), String> {
    if text.starts_with('[') {
        let close = text
            .find(']')
            .ok_or_else(|| format!("`{text}` has `[` without a closing `]`"))?;
        let after = &text[close + 1..];
        // `[fd00::]/8:5432`: the prefix length sits after the bracket.
        let (prefix_part, port_part) = match after.find(':') {
            Some(at) => (&after[..at], Some(&after[at + 1..])),
            None => (after, None),
        };
        if !prefix_part.is_empty() && !prefix_part.starts_with('/') {
            return Err(format!("unexpected `{prefix_part}` after `]` in `{text}`"));
        }
        let host = &text[..close + 1 + prefix_part.len()];
        return Ok((host, parse_port(port_part, text)?));
    }
    match text.matches(':').count() {
        0 => Ok((text, PortSpec::Web)),
        1 => {
            let (host, port) = text.split_once(':').unwrap_or((text, ""));
            Ok((host, parse_port(Some(port), text)?))
        }
        _ => Ok((text, PortSpec::Web)),
    }
}

fn parse_port(port: Option<&str>, whole: &str) -> Result<PortSpec, String> {
    let Some(port) = port else {
        return Ok(PortSpec::Web);
    };
    match port.parse::<u16>() {
        Ok(p) if p != 0 && port.bytes().all(|b| b.is_ascii_digit()) => Ok(PortSpec::Exact(p)),
        _ => Err(format!(
            "port `{port}` in `{whole}` must be a number from 1 to 65535"
        )),
    }
}

fn parse_host_spec(host: &str, whole: &str) -> Result<HostSpec, String> {
    if let Some(rest) = host.strip_prefix('[') {
        let (addr, prefix) = match rest.split_once(']') {
            Some((addr, tail)) => (addr, tail.strip_prefix('/')),
            None => return Err(format!("`{whole}` has `[` without a closing `]`")),
        };
        let v6: Ipv6Addr = addr
            .parse()
            .map_err(|_| format!("`{addr}` in `{whole}` is not an IPv6 address"))?;
        return match prefix {
            Some(p) => Ok(HostSpec::Net(IpNet::parse_cidr(addr, p)?)),
            None => Ok(HostSpec::Net(IpNet::single(IpAddr::V6(v6)))),
        };
    }
    if host.contains(':') {
        // Bare IPv6, no port possible.
        return match host.split_once('/') {
            Some((addr, p)) => Ok(HostSpec::Net(IpNet::parse_cidr(addr, p)?)),
            None => host
                .parse::<Ipv6Addr>()
                .map(|v6| HostSpec::Net(IpNet::single(IpAddr::V6(v6))))
                .map_err(|_| {
                    format!("`{whole}` is not a host; write IPv6 in brackets to add a port: `[fd00::1]:5432`")
                }),
        };
    }
    if let Some((addr, p)) = host.split_once('/') {
        return Ok(HostSpec::Net(IpNet::parse_cidr(addr, p)?));
    }
    if let Ok(v4) = host.parse::<Ipv4Addr>() {
        return Ok(HostSpec::Net(IpNet::single(IpAddr::V4(v4))));
    }
    if host.eq_ignore_ascii_case("localhost") || host.eq_ignore_ascii_case("localhost.") {
        return Ok(HostSpec::Localhost);
    }
    HostPattern::parse(host).map(HostSpec::Name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let t = Target::parse("api.example.com").unwrap();
        assert!(matches!(t.host, HostSpec::Name(_)));
        assert_eq!(t.port, PortSpec::Web);
        let t = Target::parse("*.npmjs.org:8443").unwrap();
        assert_eq!(t.port, PortSpec::Exact(8443));
        let t = Target::parse("10.0.0.0/8:5432").unwrap();
        assert_eq!(
            t.host,
            HostSpec::Net(IpNet::parse_cidr("10.0.0.0", "8").unwrap())
        );
        assert_eq!(t.port, PortSpec::Exact(5432));
        let t = Target::parse("[fd00::]/8:5432").unwrap();
        assert_eq!(
            t.host,
            HostSpec::Net(IpNet::parse_cidr("fd00::", "8").unwrap())
        );
        assert_eq!(t.port, PortSpec::Exact(5432));
        let t = Target::parse("[::1]:8080").unwrap();
        assert_eq!(t.host, HostSpec::Net(IpNet::single("::1".parse().unwrap())));
        let t = Target::parse("fd00::/8").unwrap();
        assert_eq!(t.port, PortSpec::Web);
        let t = Target::parse("192.168.1.10").unwrap();
        assert_eq!(
            t.host,
            HostSpec::Net(IpNet::single("192.168.1.10".parse().unwrap()))
        );
        let t = Target::parse("localhost:11434").unwrap();
        assert_eq!(
            (t.host, t.port),
            (HostSpec::Localhost, PortSpec::Exact(11434))
        );
    }

    #[test]
    fn errors_name_the_problem() {
        let cases = [
            ("", "empty"),
            ("a.com:0", "from 1 to 65535"),
            ("a.com:70000", "from 1 to 65535"),
            ("a.com:x", "from 1 to 65535"),
            ("10.0.0.0/33", "prefix length"),
            ("10.0.0.1/8", "host bits"),
            ("[fd00::", "closing"),
            ("[fd00::]x", "unexpected"),
            ("[zz::]", "not an IPv6"),
            ("https://a.com", "URL"),
            ("a.com b.com", "one host per entry"),
            ("fd00::1:zz:5432", "brackets"),
        ];
        for (input, want) in cases {
            let err = Target::parse(input).unwrap_err();
            assert!(err.contains(want), "{input}: {err}");
        }
    }
}
