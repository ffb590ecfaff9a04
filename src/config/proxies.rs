//! `server.forwarded_allow_ips`: the peers whose forwarding headers are believed, as
//! CIDR blocks parsed when the configuration is loaded.

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use super::units::OneOrMany;

/// A CIDR block such as `10.0.0.0/8` or `::1/128`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    /// `"10.0.0.0/8"`, `"192.0.2.7"` (a single address) or `"*"` (everything).
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        if text.trim() == "*" {
            return Ok(vec![
                Cidr {
                    network: IpAddr::from([0, 0, 0, 0]),
                    prefix: 0,
                },
                Cidr {
                    network: IpAddr::from([0u16; 8]),
                    prefix: 0,
                },
            ]);
        }
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .trim()
            .parse()
            .map_err(|_| format!("{text:?} is not an IP address or CIDR block"))?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            Some(p) => p
                .trim()
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..={max}"))?,
            None => max,
        };
        Ok(vec![Cidr { network, prefix }])
    }

    /// True if `ip` (an IPv4-mapped IPv6 address counts as IPv4) is in the block.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        let (a, b, bits) = match (self.network, ip) {
            (IpAddr::V4(n), IpAddr::V4(i)) => (u32::from(n) as u128, u32::from(i) as u128, 32),
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        if self.prefix == 0 {
            return true;
        }
        let shift = bits - u32::from(self.prefix);
        (a >> shift) == (b >> shift)
    }
}

/// The peers whose forwarding headers are believed (`server.forwarded_allow_ips`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "OneOrMany", into = "Vec<String>")]
pub struct TrustedProxies {
    entries: Vec<String>,
    blocks: Vec<Cidr>,
    unix: bool,
}

impl TrustedProxies {
    /// Parse `server.forwarded_allow_ips`.
    pub fn parse(entries: &[String]) -> Result<Self, String> {
        let mut blocks = Vec::new();
        let mut unix = false;
        for entry in entries {
            if entry.trim() == "unix" {
                unix = true;
            } else {
                blocks.extend(Cidr::parse_list(entry)?);
            }
        }
        Ok(Self {
            entries: entries.to_vec(),
            blocks,
            unix,
        })
    }

    /// True when no peer is trusted.
    pub fn is_empty(&self) -> bool {
        self.blocks.is_empty() && !self.unix
    }

    /// True when peers on unix-socket listeners are trusted (the entry `"unix"`).
    pub fn trusts_unix(&self) -> bool {
        self.unix
    }

    /// True if `ip` is in one of the trusted blocks.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.blocks.iter().any(|block| block.contains(ip))
    }
}

impl TryFrom<OneOrMany> for TrustedProxies {
    type Error = String;

    fn try_from(entries: OneOrMany) -> Result<Self, String> {
        Self::parse(&entries.into_vec())
    }
}

impl From<TrustedProxies> for Vec<String> {
    fn from(proxies: TrustedProxies) -> Vec<String> {
        proxies.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidr_blocks_match_by_prefix() {
        let proxies = TrustedProxies::parse(&["10.0.0.0/8".into(), "::1".into()]).unwrap();
        assert!(proxies.trusts("10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("::ffff:10.1.2.3".parse().unwrap()));
        assert!(proxies.trusts("::1".parse().unwrap()));
        assert!(!proxies.trusts("11.0.0.1".parse().unwrap()));
        let any = TrustedProxies::parse(&["*".into()]).unwrap();
        assert!(any.trusts("203.0.113.9".parse().unwrap()));
        assert!(any.trusts("2001:db8::1".parse().unwrap()));
        assert!(TrustedProxies::parse(&["10.0.0.0/33".into()]).is_err());
        assert!(TrustedProxies::parse(&["example.org".into()]).is_err());
    }
}
