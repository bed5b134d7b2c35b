//! IP addresses and CIDR blocks: parsing rule text and canonicalising request addresses.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// A CIDR block (`10.0.0.0/8`, `fd00::/8`); a single address is a block of full length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IpNet {
    /// Network address with the host bits zero.
    pub(crate) addr: IpAddr,
    /// Prefix length in bits.
    pub(crate) prefix: u8,
}

impl IpNet {
    /// A block holding exactly `addr`.
    pub(crate) fn single(addr: IpAddr) -> Self {
        let addr = canonical_ip(addr);
        IpNet {
            addr,
            prefix: max_prefix(addr),
        }
    }

    /// Parses `addr/prefix`. Host bits must be zero so a typo such as `10.0.0.1/8` is caught.
    pub(crate) fn parse_cidr(addr: &str, prefix: &str) -> Result<Self, String> {
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| format!("`{addr}` is not an IPv4 or IPv6 address"))?;
        let ip = canonical_ip(ip);
        let max = max_prefix(ip);
        let prefix: u8 =
            prefix.parse().ok().filter(|p| *p <= max).ok_or_else(|| {
                format!("prefix length `/{prefix}` must be a number from 0 to {max}")
            })?;
        let net = IpNet { addr: ip, prefix };
        if net.network_bits() != bits(ip) {
            let fixed = from_bits(net.network_bits(), ip);
            return Err(format!(
                "`{addr}/{prefix}` has host bits set; did you mean `{fixed}/{prefix}`?"
            ));
        }
        Ok(net)
    }

    /// True when `ip` (already canonical) lies inside the block.
    #[cfg(test)]
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        if std::mem::discriminant(&self.addr) != std::mem::discriminant(&ip) {
            return false;
        }
        mask(bits(ip), self.prefix, ip) == bits(self.addr)
    }

    /// Address bits with everything past the prefix cleared.
    pub(crate) fn network_bits(&self) -> u128 {
        mask(bits(self.addr), self.prefix, self.addr)
    }
}

/// Maps IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`) to IPv4 so they meet IPv4 rules.
pub(crate) fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

/// 32 for IPv4, 128 for IPv6.
pub(crate) fn max_prefix(ip: IpAddr) -> u8 {
    match ip {
        IpAddr::V4(_) => 32,
        IpAddr::V6(_) => 128,
    }
}

/// The address as an integer (IPv4 in the low 32 bits).
pub(crate) fn bits(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

/// Clears the bits past `prefix` of `value` (an address of the same family as `family`).
pub(crate) fn mask(value: u128, prefix: u8, family: IpAddr) -> u128 {
    let width = u32::from(max_prefix(family));
    let host_bits = width - u32::from(prefix.min(max_prefix(family)));
    if host_bits >= 128 {
        0
    } else {
        value & !((1u128 << host_bits) - 1)
    }
}

fn from_bits(value: u128, family: IpAddr) -> IpAddr {
    match family {
        IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::from(u32::try_from(value).unwrap_or(0))),
        IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::from(value)),
    }
}

/// Result of reading a request host as an IPv4 number, the way URL parsers and `inet_aton` do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Ipv4Parse {
    /// Not numeric: a domain name.
    NotIpv4,
    /// A valid IPv4 address in any accepted spelling (`10.1`, `0xa000001`, `012.0.0.1`).
    Addr(Ipv4Addr),
    /// Ends in a number but is not a valid address (`1.2.3.4.5`, `999.1.1.1`): reject it.
    Invalid,
}

/// Reads `host` as an IPv4 address in the WHATWG URL / `inet_aton` spellings, so a host such as
/// `2130706433` or `0x7f.1` (both 127.0.0.1) is recognised as the address a resolver would use.
pub(crate) fn parse_ipv4_lenient(host: &str) -> Ipv4Parse {
    let parts: Vec<&str> = host.split('.').collect();
    let Some(last) = parts.last() else {
        return Ipv4Parse::NotIpv4;
    };
    let all_digits = !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit());
    if !all_digits && parse_ipv4_number(last).is_none() {
        return Ipv4Parse::NotIpv4;
    }
    if parts.len() > 4 {
        return Ipv4Parse::Invalid;
    }
    let mut numbers = Vec::with_capacity(parts.len());
    for part in &parts {
        match parse_ipv4_number(part) {
            Some(n) => numbers.push(n),
            None => return Ipv4Parse::Invalid,
        }
    }
    let Some((last, leading)) = numbers.split_last() else {
        return Ipv4Parse::Invalid;
    };
    if leading.iter().any(|n| *n > 255) {
        return Ipv4Parse::Invalid;
    }
    let last_bits = 8 * (5 - numbers.len() as u32);
    if last_bits < 64 && *last >= (1u64 << last_bits) {
        return Ipv4Parse::Invalid;
    }
    let mut value: u64 = *last;
    for (i, n) in leading.iter().enumerate() {
        value += n << (8 * (3 - i as u32));
    }
    match u32::try_from(value) {
        Ok(v) => Ipv4Parse::Addr(Ipv4Addr::from(v)),
        Err(_) => Ipv4Parse::Invalid,
    }
}

/// One part of a lenient IPv4 address: decimal, `0x` hex or leading-zero octal.
fn parse_ipv4_number(part: &str) -> Option<u64> {
    if part.is_empty() || part.len() > 20 {
        return None;
    }
    let (digits, radix) =
        if let Some(hex) = part.strip_prefix("0x").or_else(|| part.strip_prefix("0X")) {
            (hex, 16)
        } else if part.len() > 1 && part.starts_with('0') {
            (&part[1..], 8)
        } else {
            (part, 10)
        };
    if digits.is_empty() {
        return Some(0);
    }
    if !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    u64::from_str_radix(digits, radix).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_contains() {
        let net = IpNet::parse_cidr("10.0.0.0", "8").unwrap();
        assert!(net.contains("10.200.3.4".parse().unwrap()));
        assert!(!net.contains("11.0.0.1".parse().unwrap()));
        assert!(!net.contains("::a00:1".parse().unwrap()));
        let v6 = IpNet::parse_cidr("fd00::", "8").unwrap();
        assert!(v6.contains("fd12::1".parse().unwrap()));
        assert!(!v6.contains("fe80::1".parse().unwrap()));
        let all = IpNet::parse_cidr("0.0.0.0", "0").unwrap();
        assert!(all.contains("1.2.3.4".parse().unwrap()));
    }

    #[test]
    fn cidr_errors_are_specific() {
        let err = IpNet::parse_cidr("10.0.0.1", "8").unwrap_err();
        assert!(err.contains("did you mean `10.0.0.0/8`"), "{err}");
        assert!(IpNet::parse_cidr("10.0.0.0", "33").is_err());
        assert!(IpNet::parse_cidr("10.0.0", "8").is_err());
        assert!(IpNet::parse_cidr("fd00::", "129").is_err());
    }

    #[test]
    fn mapped_v6_becomes_v4() {
        let ip = canonical_ip("::ffff:127.0.0.1".parse().unwrap());
        assert_eq!(ip, IpAddr::V4(Ipv4Addr::LOCALHOST));
    }

    #[test]
    fn lenient_ipv4_spellings() {
        let lo = Ipv4Parse::Addr(Ipv4Addr::LOCALHOST);
        assert_eq!(parse_ipv4_lenient("127.0.0.1"), lo);
        assert_eq!(parse_ipv4_lenient("2130706433"), lo);
        assert_eq!(parse_ipv4_lenient("0x7f.1"), lo);
        assert_eq!(parse_ipv4_lenient("0177.0.0.1"), lo);
        assert_eq!(parse_ipv4_lenient("127.1"), lo);
        assert_eq!(parse_ipv4_lenient("example.com"), Ipv4Parse::NotIpv4);
        assert_eq!(parse_ipv4_lenient("1.2.3.4.5"), Ipv4Parse::Invalid);
        assert_eq!(parse_ipv4_lenient("256.1.1.1"), Ipv4Parse::Invalid);
        assert_eq!(parse_ipv4_lenient("foo.09"), Ipv4Parse::Invalid);
        assert_eq!(
            parse_ipv4_lenient("99999999999999999999"),
            Ipv4Parse::Invalid
        );
    }
}
