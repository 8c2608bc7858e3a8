//! IP allowlists (CIDR), per account and per API key.
//!
//! Entries are single addresses (`203.0.113.7`, `2001:db8::7`) or networks
//! (`203.0.113.0/24`, `2001:db8:1::/48`). IPv4-mapped IPv6 (`::ffff:203.0.113.7`, also as a
//! network `::ffff:203.0.113.0/120`) is stored and compared as IPv4, so a dual-stack
//! listener that reports mapped addresses matches IPv4 entries. A list holds at most
//! [`MAX_ALLOWLIST_ENTRIES`] entries, is never empty (no list is `None`, not an empty list),
//! and refuses a network written with host bits set (`10.0.0.1/8`), since that is usually a
//! typo for something narrower.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use thiserror::Error;

/// Most entries one allowlist may hold.
pub const MAX_ALLOWLIST_ENTRIES: usize = 64;
/// Broadest IPv4 network an allowlist may hold and still let an API key withdraw.
pub const WITHDRAW_MIN_PREFIX_V4: u8 = 16;
/// Broadest IPv6 network an allowlist may hold and still let an API key withdraw.
pub const WITHDRAW_MIN_PREFIX_V6: u8 = 48;

/// The address with IPv4-mapped IPv6 turned into IPv4.
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let Some(v4) = v6.addr().to_ipv4_mapped() {
            if v6.prefix_len() >= 96 {
                let prefix = v6.prefix_len() - 96;
                return IpNet::V4(Ipv4Net::new(v4, prefix).expect("prefix at most 32"));
            }
        }
    }
    net
}

/// Why an allowlist was refused.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum IpAllowlistError {
    /// No entries at all.
    #[error("an IP allowlist needs at least one address or network")]
    Empty,
    /// Too many entries.
    #[error("an IP allowlist holds at most {max} entries, found {found}")]
    TooMany {
        /// The limit.
        max: usize,
        /// Entries given.
        found: usize,
    },
    /// An entry is neither an address nor a CIDR network.
    #[error("entry {position} ({entry:?}) is not an IP address or CIDR network (like 203.0.113.0/24 or 2001:db8::/48)")]
    Invalid {
        /// 1-based position in the list.
        position: usize,
        /// The entry, cut to 64 characters.
        entry: String,
    },
    /// A network written with host bits set.
    #[error("entry {position} ({entry:?}) has host bits set; did you mean {suggestion}?")]
    HostBitsSet {
        /// 1-based position in the list.
        position: usize,
        /// The entry as given.
        entry: String,
        /// The network it lies in.
        suggestion: String,
    },
}

/// A validated, normalised, de-duplicated list of networks.
#[derive(Clone, PartialEq, Eq)]
pub struct IpAllowlist {
    nets: Vec<IpNet>,
}

fn cut(s: &str) -> String {
    s.chars().take(64).collect()
}

fn parse_entry(position: usize, raw: &str) -> Result<IpNet, IpAllowlistError> {
    let invalid = || IpAllowlistError::Invalid {
        position,
        entry: cut(raw),
    };
    let net = if raw.contains('/') {
        let net = IpNet::from_str(raw).map_err(|_| invalid())?;
        if net.trunc() != net {
            return Err(IpAllowlistError::HostBitsSet {
                position,
                entry: cut(raw),
                suggestion: canonical_net(net.trunc()).to_string(),
            });
        }
        net
    } else {
        let ip = IpAddr::from_str(raw).map_err(|_| invalid())?;
        match ip {
            IpAddr::V4(v4) => IpNet::V4(Ipv4Net::from(v4)),
            IpAddr::V6(v6) => IpNet::V6(Ipv6Net::from(v6)),
        }
    };
    Ok(canonical_net(net))
}

impl IpAllowlist {
    /// Parses a list separated by commas, spaces or newlines.
    ///
    /// # Errors
    /// [`IpAllowlistError`] naming the first bad entry.
    pub fn parse(text: &str) -> Result<Self, IpAllowlistError> {
        Self::from_entries(
            text.split(|c: char| c == ',' || c.is_whitespace())
                .filter(|s| !s.is_empty()),
        )
    }

    /// Builds a list from separate entries.
    ///
    /// # Errors
    /// [`IpAllowlistError`] naming the first bad entry.
    pub fn from_entries<I, S>(entries: I) -> Result<Self, IpAllowlistError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut nets = Vec::new();
        let mut count = 0usize;
        for (i, entry) in entries.into_iter().enumerate() {
            count += 1;
            if count > MAX_ALLOWLIST_ENTRIES {
                // Keep counting for the message, but stop parsing.
                continue;
            }
            let net = parse_entry(i + 1, entry.as_ref().trim())?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        if count > MAX_ALLOWLIST_ENTRIES {
            return Err(IpAllowlistError::TooMany {
                max: MAX_ALLOWLIST_ENTRIES,
                found: count,
            });
        }
        if nets.is_empty() {
            return Err(IpAllowlistError::Empty);
        }
        Ok(IpAllowlist { nets })
    }

    /// Whether `ip` falls in one of the networks.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = canonical_ip(ip);
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The networks, normalised.
    pub fn entries(&self) -> &[IpNet] {
        &self.nets
    }

    /// Whether every network is at most as broad as [`WITHDRAW_MIN_PREFIX_V4`] /
    /// [`WITHDRAW_MIN_PREFIX_V6`]: a list like `0.0.0.0/0` binds a key to nothing.
    pub fn is_narrow_enough_to_withdraw(&self) -> bool {
        self.nets.iter().all(|n| match n {
            IpNet::V4(v4) => v4.prefix_len() >= WITHDRAW_MIN_PREFIX_V4,
            IpNet::V6(v6) => v6.prefix_len() >= WITHDRAW_MIN_PREFIX_V6,
        })
    }
}

impl fmt::Display for IpAllowlist {
    /// Comma-separated CIDR networks, the form [`IpAllowlist::parse`] reads.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, n) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IpAllowlist({self})")
    }
}

impl FromStr for IpAllowlist {
    type Err = IpAllowlistError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        IpAllowlist::parse(s)
    }
}

impl Serialize for IpAllowlist {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.nets.iter().map(|n| n.to_string()))
    }
}

impl<'de> Deserialize<'de> for IpAllowlist {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(d)?;
        IpAllowlist::from_entries(entries).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn addresses_inside_are_allowed_and_outside_refused() {
        let l = IpAllowlist::parse("203.0.113.0/24, 198.51.100.7\n2001:db8:1::/48").expect("ok");
        assert!(l.contains(ip("203.0.113.200")));
        assert!(l.contains(ip("198.51.100.7")));
        assert!(!l.contains(ip("198.51.100.8")));
        assert!(l.contains(ip("2001:db8:1:ffff::1")));
        assert!(!l.contains(ip("2001:db8:2::1")));
        assert_eq!(
            l.to_string(),
            "203.0.113.0/24,198.51.100.7/32,2001:db8:1::/48"
        );
    }

    #[test]
    fn ipv4_mapped_ipv6_is_treated_as_ipv4_both_ways() {
        let l = IpAllowlist::parse("::ffff:203.0.113.0/120").expect("ok");
        assert_eq!(l.to_string(), "203.0.113.0/24");
        assert!(l.contains(ip("203.0.113.9")));
        let l = IpAllowlist::parse("203.0.113.9").expect("ok");
        assert!(l.contains(ip("::ffff:203.0.113.9")));
        assert!(!l.contains(ip("::ffff:203.0.113.10")));
    }

    #[test]
    fn parse_errors_say_which_entry_and_why() {
        assert_eq!(IpAllowlist::parse(" , "), Err(IpAllowlistError::Empty));
        let e = IpAllowlist::parse("10.0.0.0/8, 10.0.0.300").expect_err("bad");
        assert_eq!(
            e,
            IpAllowlistError::Invalid {
                position: 2,
                entry: "10.0.0.300".into()
            }
        );
        assert!(e.to_string().contains("entry 2"));
        let e = IpAllowlist::parse("10.1.2.3/8").expect_err("host bits");
        assert!(e.to_string().contains("did you mean 10.0.0.0/8"), "{e}");
        assert!(IpAllowlist::parse("10.0.0.0/33").is_err());
        let many: Vec<String> = (0..65).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(
            IpAllowlist::from_entries(&many),
            Err(IpAllowlistError::TooMany { max: 64, found: 65 })
        );
        assert!(IpAllowlist::from_entries(&many[..64]).is_ok());
    }

    #[test]
    fn broad_networks_are_not_enough_to_withdraw() {
        assert!(IpAllowlist::parse("203.0.113.0/24")
            .expect("ok")
            .is_narrow_enough_to_withdraw());
        assert!(!IpAllowlist::parse("0.0.0.0/0")
            .expect("ok")
            .is_narrow_enough_to_withdraw());
        assert!(!IpAllowlist::parse("203.0.113.7, ::/0")
            .expect("ok")
            .is_narrow_enough_to_withdraw());
        assert!(!IpAllowlist::parse("2001:db8::/32")
            .expect("ok")
            .is_narrow_enough_to_withdraw());
    }

    #[test]
    fn round_trips_through_json() {
        let l = IpAllowlist::parse("203.0.113.0/24,2001:db8::1").expect("ok");
        let json = serde_json::to_string(&l).expect("json");
        assert_eq!(json, r#"["203.0.113.0/24","2001:db8::1/128"]"#);
        assert_eq!(
            serde_json::from_str::<IpAllowlist>(&json).expect("parse"),
            l
        );
        assert!(serde_json::from_str::<IpAllowlist>(r#"["nope"]"#).is_err());
    }
}
