//! Host names: canonical form of request hosts and compiled host patterns.
//!
//! Both sides are brought to one form before comparing: ASCII lower case, IDNA (punycode) for
//! non-ASCII names, no trailing dot, and numeric IPv4 spellings read as the address they resolve to.

use std::net::{IpAddr, Ipv6Addr};

use crate::glob::Wildcard;
use crate::ip::{Ipv4Parse, canonical_ip, parse_ipv4_lenient};

/// Longest host name accepted (DNS limit).
const MAX_HOST_LEN: usize = 253;

/// A request host in canonical form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum CanonicalHost {
    /// A DNS name: lower-case ASCII (punycode), no trailing dot.
    Name(String),
    /// An IP address (IPv4-mapped IPv6 already mapped to IPv4).
    Ip(IpAddr),
}

/// Brings a request host (as sent by the client: `Example.COM.`, `[::1]`, `bücher.de`,
/// `0x7f.1`) to canonical form. Errors say why the host cannot be a valid destination.
pub(crate) fn canonical_host(raw: &str) -> Result<CanonicalHost, String> {
    if raw.is_empty() {
        return Err("empty host".into());
    }
    if let Some(inner) = raw.strip_prefix('[') {
        let inner = inner
            .strip_suffix(']')
            .ok_or_else(|| format!("unterminated `[` in host `{raw}`"))?;
        let v6: Ipv6Addr = inner
            .parse()
            .map_err(|_| format!("`{inner}` is not an IPv6 address"))?;
        return Ok(CanonicalHost::Ip(canonical_ip(IpAddr::V6(v6))));
    }
    if raw.contains(':') {
        let v6: Ipv6Addr = raw
            .parse()
            .map_err(|_| format!("`{raw}` is neither a host name nor an IPv6 address"))?;
        return Ok(CanonicalHost::Ip(canonical_ip(IpAddr::V6(v6))));
    }
    let ascii = to_ascii(raw)?;
    let name = ascii.strip_suffix('.').unwrap_or(&ascii);
    if name.is_empty() || name.len() > MAX_HOST_LEN {
        return Err(format!("`{raw}` is not a valid host name length"));
    }
    if name.split('.').any(str::is_empty) {
        return Err(format!("`{raw}` has an empty label"));
    }
    match parse_ipv4_lenient(name) {
        Ipv4Parse::Addr(v4) => Ok(CanonicalHost::Ip(IpAddr::V4(v4))),
        Ipv4Parse::Invalid => Err(format!(
            "`{raw}` ends in a number but is not an IPv4 address"
        )),
        Ipv4Parse::NotIpv4 => Ok(CanonicalHost::Name(name.to_owned())),
    }
}

/// IDNA-maps a name (or one label) to lower-case ASCII; ASCII input takes the cheap path.
pub(crate) fn to_ascii(raw: &str) -> Result<String, String> {
    if raw
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
    {
        let lower = raw.to_ascii_lowercase();
        // Labels already in punycode are validated by the IDNA path so `xn--` junk is rejected.
        if !lower.contains("xn--") {
            return Ok(lower);
        }
    }
    let ascii = idna::domain_to_ascii(raw)
        .map_err(|_| format!("`{raw}` is not a valid internationalised host name"))?;
    // UTS 46 in its lenient mode lets some characters through (NUL, `%`, ...) that no resolver
    // should see: a NUL would cut the name short in C code after it matched a rule here.
    if let Some(bad) = ascii
        .chars()
        .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!(
            "`{}` contains {bad:?}, which no host name may hold",
            raw.escape_debug()
        ));
    }
    Ok(ascii)
}

/// How one label of a host pattern matches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum LabelMatcher {
    /// `*`: exactly one label, any text.
    Any,
    /// A literal label or one with `*` inside (`crl*`).
    Glob(Wildcard),
}

impl LabelMatcher {
    fn matches(&self, label: &str) -> bool {
        match self {
            LabelMatcher::Any => true,
            LabelMatcher::Glob(w) => w.matches(label),
        }
    }
}

/// A compiled host-name pattern, split for the suffix index: a literal suffix (the labels right of
/// the last wildcard) and the part left of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HostPattern {
    /// Literal labels, left to right (`["digicert", "com"]` for `crl*.digicert.com`).
    pub(crate) suffix: Vec<String>,
    /// Matchers for the labels left of the suffix, left to right.
    pub(crate) prefix: Vec<LabelMatcher>,
    /// `**.` in front: one or more further labels of any text before `prefix`.
    pub(crate) any_depth: bool,
}

impl HostPattern {
    /// Compiles a host pattern (`api.example.com`, `*.npmjs.org`, `**.github.com`, `crl*.digicert.com`).
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let trimmed = text.strip_suffix('.').unwrap_or(text);
        if trimmed.is_empty() {
            return Err("empty host pattern".into());
        }
        if trimmed.len() > MAX_HOST_LEN {
            return Err(format!(
                "host pattern `{text}` is longer than {MAX_HOST_LEN} characters"
            ));
        }
        let labels: Vec<&str> = trimmed.split('.').collect();
        let mut any_depth = false;
        let mut matchers = Vec::with_capacity(labels.len());
        for (i, label) in labels.iter().enumerate() {
            if label.is_empty() {
                return Err(format!("host pattern `{text}` has an empty label"));
            }
            if *label == "**" {
                if i != 0 {
                    return Err(format!(
                        "`**` may only be the first label (as in `**.example.com`), not inside `{text}`"
                    ));
                }
                any_depth = true;
                continue;
            }
            if label.contains("**") {
                return Err(format!(
                    "`**` must be a whole label in `{text}`; use `*` inside a label"
                ));
            }
            matchers.push(compile_label(label, text)?);
        }
        let literal_tail = matchers
            .iter()
            .rev()
            .take_while(|m| matches!(m, LabelMatcher::Glob(w) if w.is_literal()))
            .count();
        let split = matchers.len() - literal_tail;
        let suffix = labels[labels.len() - literal_tail..]
            .iter()
            .map(|l| to_ascii(l))
            .collect::<Result<Vec<_>, _>>()?;
        if let Some(numeric) = numeric_name(&suffix, matchers.len() == literal_tail && !any_depth) {
            return Err(numeric);
        }
        let prefix = matchers[..split].to_vec();
        Ok(HostPattern {
            suffix,
            prefix,
            any_depth,
        })
    }

    /// Matches a whole canonical host name given as its labels, left to right.
    pub(crate) fn matches_labels(&self, labels: &[&str]) -> bool {
        let n = self.suffix.len();
        if labels.len() < n {
            return false;
        }
        let (rest, tail) = labels.split_at(labels.len() - n);
        tail.iter().zip(&self.suffix).all(|(a, b)| *a == b.as_str()) && self.matches_prefix(rest)
    }

    /// Matches the labels left of the suffix (`rest`, left to right).
    pub(crate) fn matches_prefix(&self, rest: &[&str]) -> bool {
        let k = self.prefix.len();
        if self.any_depth {
            if rest.len() < k + 1 {
                return false;
            }
        } else if rest.len() != k {
            return false;
        }
        let tail = &rest[rest.len() - k..];
        self.prefix.iter().zip(tail).all(|(m, l)| m.matches(l))
    }
}

/// A fully literal pattern that reads as an IPv4 number is a mistake: say so.
fn numeric_name(suffix: &[String], fully_literal: bool) -> Option<String> {
    if !fully_literal {
        return None;
    }
    let name = suffix.join(".");
    match parse_ipv4_lenient(&name) {
        Ipv4Parse::NotIpv4 => None,
        _ => Some(format!("`{name}` is not a valid host name or IPv4 address")),
    }
}

fn compile_label(label: &str, whole: &str) -> Result<LabelMatcher, String> {
    if label == "*" {
        return Ok(LabelMatcher::Any);
    }
    if label.contains('*') {
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
        {
            return Err(format!(
                "wildcard label `{label}` in `{whole}` may only hold ASCII letters, digits, `-`, `_` and `*`"
            ));
        }
        return Ok(LabelMatcher::Glob(Wildcard::new(
            &label.to_ascii_lowercase(),
        )));
    }
    if label
        .bytes()
        .any(|b| matches!(b, b'/' | b'?' | b'#' | b'@' | b':' | b' ' | b'[' | b']'))
    {
        return Err(format!(
            "`{whole}` is not a host name (unexpected character in `{label}`)"
        ));
    }
    let ascii = to_ascii(label).map_err(|e| format!("{e} (in `{whole}`)"))?;
    if ascii.is_empty() || ascii.contains('.') {
        return Err(format!(
            "label `{label}` of `{whole}` is not a valid host label"
        ));
    }
    Ok(LabelMatcher::Glob(Wildcard::new(&ascii)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> CanonicalHost {
        CanonicalHost::Name(s.into())
    }

    #[test]
    fn canonical_hosts() {
        assert_eq!(canonical_host("Example.COM.").unwrap(), name("example.com"));
        assert_eq!(
            canonical_host("bücher.de").unwrap(),
            name("xn--bcher-kva.de")
        );
        assert_eq!(
            canonical_host("BÜCHER.de").unwrap(),
            name("xn--bcher-kva.de")
        );
        assert_eq!(
            canonical_host("[::1]").unwrap(),
            CanonicalHost::Ip("::1".parse().unwrap())
        );
        assert_eq!(
            canonical_host("[::ffff:10.0.0.1]").unwrap(),
            CanonicalHost::Ip("10.0.0.1".parse().unwrap())
        );
        assert_eq!(
            canonical_host("0x7f.1").unwrap(),
            CanonicalHost::Ip("127.0.0.1".parse().unwrap())
        );
        // Full-width digits map to ASCII digits under IDNA: still the loopback address.
        assert_eq!(
            canonical_host("１２７.０.０.１").unwrap(),
            CanonicalHost::Ip("127.0.0.1".parse().unwrap())
        );
        assert!(canonical_host("").is_err());
        assert!(canonical_host("a..b").is_err());
        assert!(canonical_host("1.2.3.4.5").is_err());
        assert!(canonical_host("[::1").is_err());
        for bad in [
            "x\u{0}.example.com",
            "a%2e.com",
            "a b.com",
            "a/b.com",
            "a@b.com",
            "a\\b.com",
        ] {
            assert!(canonical_host(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn pattern_split() {
        let p = HostPattern::parse("crl*.digicert.com").unwrap();
        assert_eq!(p.suffix, vec!["digicert", "com"]);
        assert_eq!(p.prefix.len(), 1);
        assert!(!p.any_depth);
        let p = HostPattern::parse("**.GitHub.com.").unwrap();
        assert_eq!(p.suffix, vec!["github", "com"]);
        assert!(p.any_depth && p.prefix.is_empty());
        let p = HostPattern::parse("api.*.example.com").unwrap();
        assert_eq!(p.suffix, vec!["example", "com"]);
        assert_eq!(p.prefix.len(), 2);
    }

    #[test]
    fn pattern_errors() {
        for bad in [
            "",
            "a..b",
            "a.**.com",
            "a**.com",
            "ex ample.com",
            "a/b",
            "cr[l.com",
            "1.2.3",
            "*.é*.com",
        ] {
            assert!(HostPattern::parse(bad).is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn prefix_matching() {
        let one = HostPattern::parse("*.example.com").unwrap();
        assert!(one.matches_prefix(&["a"]));
        assert!(!one.matches_prefix(&[]));
        assert!(!one.matches_prefix(&["a", "b"]));
        let many = HostPattern::parse("**.example.com").unwrap();
        assert!(many.matches_prefix(&["a"]));
        assert!(many.matches_prefix(&["a", "b"]));
        assert!(!many.matches_prefix(&[]));
        let inner = HostPattern::parse("crl*.digicert.com").unwrap();
        assert!(inner.matches_prefix(&["crl3"]));
        assert!(!inner.matches_prefix(&["ocsp"]));
    }
}
