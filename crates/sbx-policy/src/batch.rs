//! The `policy_check` tool's logic: layer files in authority order, `METHOD URL` lines in,
//! `allow|deny<TAB>explanation` lines out. Kept in the library so tests and tools share it.

use std::io::{self, BufRead, Write};
use std::path::Path;

use crate::decision::{Decision, Reason};
use crate::error::LoadError;
use crate::layer::{LayerLevel, PolicyLayer};
use crate::policy::{NetworkRequest, Policy, Protocol};

/// Loads layer files, the first being the highest authority: levels are given by position
/// (company, org, team, user, then sandbox for the fifth file and any after it).
pub fn load_policy<P: AsRef<Path>>(files: &[P]) -> Result<Policy, LoadError> {
    let mut layers = Vec::with_capacity(files.len());
    for (i, file) in files.iter().enumerate() {
        let level = LayerLevel::ALL[i.min(LayerLevel::ALL.len() - 1)];
        layers.push((level, PolicyLayer::load(file)?));
    }
    Ok(Policy::new(layers))
}

/// A `METHOD URL` line, split into the parts a [`NetworkRequest`] needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestLine {
    /// The method as written.
    pub method: String,
    /// From the URL scheme: `http`/`ws` → HTTP, `https`/`wss` → HTTPS, `tcp` → raw TCP.
    pub protocol: Protocol,
    /// The host as written (brackets kept for IPv6).
    pub host: String,
    /// The explicit port, or the scheme's default.
    pub port: u16,
    /// The raw path with its query (`/` when the URL has none); `None` for `tcp://`.
    pub path: Option<String>,
}

impl RequestLine {
    /// Parses `METHOD URL` (`GET https://api.github.com/repos/x?y=1`, `CONNECT tcp://db:5432`).
    pub fn parse(line: &str) -> Result<Self, String> {
        let mut words = line.split_whitespace();
        let (Some(method), Some(url), None) = (words.next(), words.next(), words.next()) else {
            return Err(format!("expected `METHOD URL`, got `{line}`"));
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| format!("`{url}` has no scheme (http://, https:// or tcp://)"))?;
        let (protocol, default_port) = match scheme.to_ascii_lowercase().as_str() {
            "http" | "ws" => (Protocol::Http, Some(80)),
            "https" | "wss" => (Protocol::Https, Some(443)),
            "tcp" => (Protocol::Tcp, None),
            other => {
                return Err(format!(
                    "unsupported scheme `{other}`: use http, https or tcp"
                ));
            }
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let authority = authority
            .rsplit_once('@')
            .map_or(authority, |(_, host)| host);
        let (host, port) = split_authority(authority)?;
        let port = match (port, default_port) {
            (Some(p), _) | (None, Some(p)) => p,
            (None, None) => return Err(format!("`{url}` needs a port")),
        };
        let path = match protocol {
            Protocol::Tcp => None,
            _ if path.is_empty() => Some("/".to_owned()),
            _ => Some(path.to_owned()),
        };
        Ok(RequestLine {
            method: method.to_owned(),
            protocol,
            host: host.to_owned(),
            port,
            path,
        })
    }

    /// The request to check. For `tcp://` the method is not passed on (raw TCP has none).
    pub fn request(&self) -> NetworkRequest<'_> {
        let mut request = NetworkRequest::new(&self.host, self.port, self.protocol);
        if self.protocol != Protocol::Tcp {
            request = request.with_method(&self.method);
        }
        if let Some(path) = &self.path {
            request = request.with_path(path);
        }
        request
    }
}

fn split_authority(authority: &str) -> Result<(&str, Option<u16>), String> {
    let (host, port) = if authority.starts_with('[') {
        let close = authority
            .find(']')
            .ok_or_else(|| format!("`{authority}` has `[` without `]`"))?;
        let (host, rest) = authority.split_at(close + 1);
        (host, rest.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err("the URL has no host".into());
    }
    let port = match port {
        None => None,
        Some(p) => Some(
            p.parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| format!("port `{p}` must be a number from 1 to 65535"))?,
        ),
    };
    Ok((host, port))
}

/// Decides one input line and formats the output line (without newline).
pub fn check_line(policy: &Policy, line: &str) -> String {
    match RequestLine::parse(line) {
        Ok(parsed) => {
            let decision = policy.check_network(&parsed.request());
            format_decision(&decision, &parsed.host, parsed.port)
        }
        Err(message) => format_decision(
            &Decision::new(false, Reason::InvalidRequest).with_note(message),
            "",
            0,
        ),
    }
}

/// `allow|deny<TAB>explanation`, with the `sbx policy allow network` hint when it would help.
pub fn format_decision(decision: &Decision, host: &str, port: u16) -> String {
    match decision.hint(host, port) {
        Some(hint) => format!("{decision}; to allow: {hint}"),
        None => decision.to_string(),
    }
}

/// Reads request lines from `input` and writes one decision line per request to `output`.
/// Blank lines and lines starting with `#` are skipped.
pub fn run(policy: &Policy, input: impl BufRead, mut output: impl Write) -> io::Result<()> {
    for line in input.lines() {
        let line = line?;
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        writeln!(output, "{}", check_line(policy, trimmed))?;
    }
    output.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines() {
        let r = RequestLine::parse("GET https://user:pw@API.github.com/repos/x?y=1").unwrap();
        assert_eq!(r.protocol, Protocol::Https);
        assert_eq!((r.host.as_str(), r.port), ("API.github.com", 443));
        assert_eq!(r.path.as_deref(), Some("/repos/x?y=1"));
        let r = RequestLine::parse("POST http://[::1]:8080").unwrap();
        assert_eq!(
            (r.host.as_str(), r.port, r.path.as_deref()),
            ("[::1]", 8080, Some("/"))
        );
        let r = RequestLine::parse("CONNECT tcp://db.internal:5432").unwrap();
        assert_eq!((r.protocol, r.port, r.path), (Protocol::Tcp, 5432, None));
        for bad in [
            "GET",
            "GET example.com",
            "GET ftp://x/",
            "GET tcp://x",
            "GET http://:80/",
            "GET http://x:0/",
            "a b c",
        ] {
            assert!(RequestLine::parse(bad).is_err(), "{bad}");
        }
    }
}
