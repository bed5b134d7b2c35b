//! Lookup structures that make a decision cost independent of the number of rules: a trie on
//! reversed host labels, and per-prefix-length hash maps for addresses and CIDR blocks.

use std::collections::HashMap;
use std::net::IpAddr;

use crate::host::HostPattern;
use crate::ip::{IpNet, bits, mask};

/// A reference to one host entry: (rule index, target index within the rule).
pub(crate) type EntryRef = (u32, u32);

#[derive(Debug, Default)]
struct Node {
    children: HashMap<Box<str>, u32>,
    /// Fully literal patterns ending exactly here.
    exact: Vec<EntryRef>,
    /// Patterns whose literal suffix ends here, with wildcard labels left of it.
    wildcard: Vec<(HostPattern, EntryRef)>,
}

/// Host-name patterns indexed by their literal suffix, labels right to left
/// (`com` → `github` → entries for `github.com`, `**.github.com`, ...).
#[derive(Debug)]
pub(crate) struct HostIndex {
    nodes: Vec<Node>,
}

impl Default for HostIndex {
    fn default() -> Self {
        HostIndex {
            nodes: vec![Node::default()],
        }
    }
}

impl HostIndex {
    pub(crate) fn insert(&mut self, pattern: &HostPattern, entry: EntryRef) {
        let mut node = 0usize;
        for label in pattern.suffix.iter().rev() {
            node = match self.nodes[node].children.get(label.as_str()) {
                Some(&child) => child as usize,
                None => {
                    let child = self.nodes.len();
                    self.nodes.push(Node::default());
                    self.nodes[node].children.insert(
                        label.as_str().into(),
                        u32::try_from(child).unwrap_or(u32::MAX),
                    );
                    child
                }
            };
        }
        let target = &mut self.nodes[node];
        if pattern.prefix.is_empty() && !pattern.any_depth {
            target.exact.push(entry);
        } else {
            target.wildcard.push((pattern.clone(), entry));
        }
    }

    /// Calls `found` for every entry whose pattern matches the host `labels` (left to right).
    pub(crate) fn lookup(&self, labels: &[&str], mut found: impl FnMut(EntryRef)) {
        let mut node = 0usize;
        self.visit(node, labels, &mut found);
        for i in (0..labels.len()).rev() {
            match self.nodes[node].children.get(labels[i]) {
                Some(&child) => node = child as usize,
                None => return,
            }
            self.visit(node, &labels[..i], &mut found);
            if i == 0 {
                self.nodes[node].exact.iter().copied().for_each(&mut found);
            }
        }
    }

    fn visit(&self, node: usize, rest: &[&str], found: &mut impl FnMut(EntryRef)) {
        for (pattern, entry) in &self.nodes[node].wildcard {
            if pattern.matches_prefix(rest) {
                found(*entry);
            }
        }
    }
}

/// Addresses and CIDR blocks, one hash map per prefix length in use.
#[derive(Debug, Default)]
pub(crate) struct NetIndex {
    v4: Vec<(u8, HashMap<u128, Vec<EntryRef>>)>,
    v6: Vec<(u8, HashMap<u128, Vec<EntryRef>>)>,
}

impl NetIndex {
    pub(crate) fn insert(&mut self, net: &IpNet, entry: EntryRef) {
        let table = match net.addr {
            IpAddr::V4(_) => &mut self.v4,
            IpAddr::V6(_) => &mut self.v6,
        };
        let slot = match table.iter().position(|(p, _)| *p == net.prefix) {
            Some(i) => i,
            None => {
                table.push((net.prefix, HashMap::new()));
                table.len() - 1
            }
        };
        table[slot]
            .1
            .entry(net.network_bits())
            .or_default()
            .push(entry);
    }

    /// Calls `found` for every entry whose block holds `ip` (canonical).
    pub(crate) fn lookup(&self, ip: IpAddr, mut found: impl FnMut(EntryRef)) {
        let table = match ip {
            IpAddr::V4(_) => &self.v4,
            IpAddr::V6(_) => &self.v6,
        };
        let value = bits(ip);
        for (prefix, map) in table {
            if let Some(entries) = map.get(&mask(value, *prefix, ip)) {
                entries.iter().copied().for_each(&mut found);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(index: &HostIndex, host: &str) -> Vec<EntryRef> {
        let labels: Vec<&str> = host.split('.').collect();
        let mut out = Vec::new();
        index.lookup(&labels, |e| out.push(e));
        out.sort_unstable();
        out
    }

    #[test]
    fn host_index_forms() {
        let mut index = HostIndex::default();
        let patterns = [
            "example.com",
            "*.example.com",
            "**.example.com",
            "crl*.digicert.com",
            "**",
            "*",
        ];
        for (i, p) in patterns.iter().enumerate() {
            index.insert(&HostPattern::parse(p).unwrap(), (i as u32, 0));
        }
        assert_eq!(collect(&index, "example.com"), vec![(0, 0), (4, 0)]);
        assert_eq!(
            collect(&index, "a.example.com"),
            vec![(1, 0), (2, 0), (4, 0)]
        );
        assert_eq!(collect(&index, "b.a.example.com"), vec![(2, 0), (4, 0)]);
        assert_eq!(collect(&index, "crl3.digicert.com"), vec![(3, 0), (4, 0)]);
        assert_eq!(collect(&index, "ocsp.digicert.com"), vec![(4, 0)]);
        assert_eq!(collect(&index, "localhost"), vec![(4, 0), (5, 0)]);
    }

    #[test]
    fn net_index() {
        let mut index = NetIndex::default();
        index.insert(&IpNet::parse_cidr("10.0.0.0", "8").unwrap(), (0, 0));
        index.insert(&IpNet::single("10.1.2.3".parse().unwrap()), (1, 0));
        index.insert(&IpNet::parse_cidr("fd00::", "8").unwrap(), (2, 0));
        let find = |ip: &str| {
            let mut out = Vec::new();
            index.lookup(ip.parse().unwrap(), |e| out.push(e));
            out.sort_unstable();
            out
        };
        assert_eq!(find("10.1.2.3"), vec![(0, 0), (1, 0)]);
        assert_eq!(find("10.9.9.9"), vec![(0, 0)]);
        assert_eq!(find("fd00::5"), vec![(2, 0)]);
        assert!(find("192.168.0.1").is_empty());
    }
}
