//! The identity authban counts and bans: one IP address, or one network when
//! a prefix length folds several addresses together.

use core::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address or network, stored as 16 bytes (IPv4 as IPv4-mapped IPv6) and
/// a prefix length counted in IPv6 bits, so both families share one slot
/// layout and one hash.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Key {
    addr: [u8; 16],
    prefix: u8,
}

const V4_MAPPED_PREFIX: [u8; 12] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff];

impl Key {
    /// The key of a single client address; IPv4-mapped IPv6 folds to IPv4 so
    /// a dual-stack listener cannot count one client twice.
    pub fn from_ip(ip: IpAddr) -> Key {
        Key::network(ip, 32, 128)
    }

    /// The key of the network of `v4_prefix` / `v6_prefix` bits holding `ip`.
    pub fn network(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> Key {
        match fold(ip) {
            IpAddr::V4(v4) => {
                let mut addr = [0u8; 16];
                addr[..12].copy_from_slice(&V4_MAPPED_PREFIX);
                addr[12..].copy_from_slice(&v4.octets());
                Key::masked(addr, 96 + v4_prefix.min(32))
            }
            IpAddr::V6(v6) => Key::masked(v6.octets(), v6_prefix.min(128)),
        }
    }

    /// The key of one IPv4 client address (`a.b.c.d` as its four bytes):
    /// [`Key::from_ip`] without the `IpAddr`, for the request path.
    #[inline]
    pub fn host_v4(octets: [u8; 4]) -> Key {
        // `::ffff:a.b.c.d`, built as the two little-endian words the hash
        // reads back, so that the compiler keeps them in registers.
        let low = 0xffff_0000 | u64::from(u32::from_le_bytes(octets)) << 32;
        let mut addr = [0u8; 16];
        addr[8..].copy_from_slice(&low.to_le_bytes());
        Key { addr, prefix: 128 }
    }

    /// The key of one IPv6 client address: [`Key::from_ip`] without the
    /// `IpAddr`; an IPv4-mapped address is its IPv4 one.
    #[inline]
    pub fn host_v6(octets: [u8; 16]) -> Key {
        // A host key has no bits to mask, and the mapped form is how an
        // IPv4 address is stored anyway.
        Key {
            addr: octets,
            prefix: 128,
        }
    }

    /// The network of `v4_prefix` / `v6_prefix` bits holding this key's
    /// address: for a host key, what [`Key::network`] gives for its address.
    #[inline]
    pub fn within(&self, v4_prefix: u8, v6_prefix: u8) -> Key {
        let prefix = if self.is_ipv4() {
            96 + v4_prefix.min(32)
        } else {
            v6_prefix.min(128)
        };
        Key::masked(self.addr, prefix)
    }

    /// Rebuilds a key from its stored form, masking stray host bits.
    pub fn from_raw(addr: [u8; 16], prefix: u8) -> Key {
        let is_v4 = addr[..12] == V4_MAPPED_PREFIX;
        let prefix = if is_v4 {
            prefix.clamp(96, 128)
        } else {
            prefix.min(128)
        };
        Key::masked(addr, prefix)
    }

    #[inline]
    fn masked(addr: [u8; 16], prefix: u8) -> Key {
        let mask = match prefix {
            0 => 0,
            p => u128::MAX << (128 - u32::from(p)),
        };
        let addr = (u128::from_be_bytes(addr) & mask).to_be_bytes();
        Key { addr, prefix }
    }

    /// Parses `ADDR` or `ADDR/LEN` (either family), as the state file and
    /// the tests write keys: an IPv4-mapped address is its IPv4 one, host
    /// bits are dropped.
    pub fn parse(text: &str) -> Option<Key> {
        let (ip_text, len_text) = match text.split_once('/') {
            Some((ip, len)) => (ip, Some(len)),
            None => (text, None),
        };
        let ip: IpAddr = ip_text.parse().ok()?;
        let ip = fold(ip);
        let max = if ip.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            Some(len) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => {
                len.parse::<u8>().ok().filter(|&l| l <= max)?
            }
            Some(_) => return None,
            None => max,
        };
        Some(Key::network(ip, len, len))
    }

    #[inline]
    pub fn raw_addr(&self) -> [u8; 16] {
        self.addr
    }

    /// Prefix length in IPv6 bits (IPv4 /32 is 128).
    #[inline]
    pub fn raw_prefix(&self) -> u8 {
        self.prefix
    }

    #[inline]
    pub fn is_ipv4(&self) -> bool {
        self.addr[..12] == V4_MAPPED_PREFIX
    }

    /// Prefix length in the address family's own bits.
    pub fn prefix_len(&self) -> u8 {
        if self.is_ipv4() {
            self.prefix - 96
        } else {
            self.prefix
        }
    }

    pub fn ip(&self) -> IpAddr {
        if self.is_ipv4() {
            let o = &self.addr[12..];
            IpAddr::V4(Ipv4Addr::new(o[0], o[1], o[2], o[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(self.addr))
        }
    }

    /// True when this key is a single address, not a wider network.
    pub fn is_host(&self) -> bool {
        self.prefix == 128
    }
}

fn fold(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_host() {
            write!(f, "{}", self.ip())
        } else {
            write!(f, "{}/{}", self.ip(), self.prefix_len())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mapped_ipv6_folds_to_ipv4() {
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        let plain: IpAddr = "192.0.2.7".parse().unwrap();
        assert_eq!(Key::from_ip(mapped), Key::from_ip(plain));
        assert_eq!(Key::from_ip(mapped).to_string(), "192.0.2.7");
    }

    #[test]
    fn networks_mask_host_bits() {
        let ip: IpAddr = "2001:db8:1:2:3:4:5:6".parse().unwrap();
        let key = Key::network(ip, 32, 64);
        assert_eq!(key.to_string(), "2001:db8:1:2::/64");
        let other: IpAddr = "2001:db8:1:2:ffff::1".parse().unwrap();
        assert_eq!(Key::network(other, 32, 64), key);
        let v4: IpAddr = "198.51.100.77".parse().unwrap();
        assert_eq!(Key::network(v4, 24, 128).to_string(), "198.51.100.0/24");
    }

    #[test]
    fn parse_accepts_addresses_and_networks() {
        // Keys as Display (the state file, Redis, the logs) writes them.
        for text in [
            "203.0.113.7",
            "10.0.0.0/8",
            "::1",
            "2001:db8::/48",
            "::/0",
            "0.0.0.0/0",
        ] {
            assert_eq!(Key::parse(text).unwrap().to_string(), text);
        }
        assert_eq!(Key::parse("10.0.0.1").unwrap().to_string(), "10.0.0.1");
        assert_eq!(Key::parse("10.0.0.1/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Key::parse("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(
            Key::parse("::ffff:10.1.2.3").unwrap().to_string(),
            "10.1.2.3"
        );
        assert_eq!(Key::parse("2001:db8::/48").unwrap().prefix_len(), 48);
        assert_eq!(Key::parse("2001:db8::/048").unwrap().prefix_len(), 48);
        for bad in [
            "",
            "10.0.0",
            "10.0.0.1/33",
            "::1/129",
            "10.0.0.1/",
            "x",
            "1.2.3.4/-1",
        ] {
            assert!(Key::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn request_path_keys_are_the_ip_keys() {
        let policies = [(32, 128), (24, 64), (1, 1), (32, 48), (16, 128)];
        for text in [
            "203.0.113.9",
            "0.0.0.0",
            "255.255.255.255",
            "::ffff:198.51.100.7",
            "2001:db8:1:2:3:4:5:6",
            "::",
            "::1",
            "::198.51.100.7",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff",
        ] {
            let ip: IpAddr = text.parse().unwrap();
            let host = match ip {
                IpAddr::V4(v4) => Key::host_v4(v4.octets()),
                IpAddr::V6(v6) => Key::host_v6(v6.octets()),
            };
            assert_eq!(host, Key::from_ip(ip), "{text}");
            for (v4, v6) in policies {
                assert_eq!(host.within(v4, v6), Key::network(ip, v4, v6), "{text}");
            }
        }
    }

    #[test]
    fn raw_round_trip() {
        let key = Key::parse("2001:db8::/56").unwrap();
        assert_eq!(Key::from_raw(key.raw_addr(), key.raw_prefix()), key);
        let v4 = Key::parse("203.0.113.9").unwrap();
        assert_eq!(Key::from_raw(v4.raw_addr(), v4.raw_prefix()), v4);
    }
}
