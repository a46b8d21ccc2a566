//! Key zones (`authban_zone ... key=EXPR`): a request's key (an account
//! name, an API key) becomes a table key by a keyed 128-bit hash (SipHash-
//! 2-4-128, keyed per zone through HMAC-SHA256), so the
//! value itself is never kept, in shared memory, the state file or Redis;
//! only the log line that bans it names it, escaped and cut short.

use std::net::IpAddr;

use core::hash::Hasher;

use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use siphasher::sip128::{Hasher128, SipHasher24};

use crate::engine::key::Key;
use crate::engine::table::Policy;

/// Bytes of a key's value a log line names.
pub const MAX_LOGGED_VALUE: usize = 64;

/// `familiar=`: the network a client address is familiar by, IPv4 /24 and
/// IPv6 /64 (what one home, office or mobile carrier's pool tends to hand
/// out to one user), fixed whatever the location's address zone counts
/// by: a key zone may serve locations with different address zones, or
/// none, and the pairs it keeps must mean the same after a reload.
pub const FAMILIAR_IPV4_PREFIX: u8 = 24;
pub const FAMILIAR_IPV6_PREFIX: u8 = 64;

/// The share of a `familiar=` zone's memory its familiar pairs get, in
/// quarters: the main table keeps 3/4, the pairs 1/4 (a third as many
/// pairs as the zone tracks keys).
pub const FAMILIAR_QUARTERS: usize = 1;

/// The client network `ip` is familiar by.
pub fn familiar_network(ip: IpAddr) -> Key {
    Key::network(ip, FAMILIAR_IPV4_PREFIX, FAMILIAR_IPV6_PREFIX)
}

/// How a `familiar=` zone's region of `len` bytes splits: the main table's
/// length (a whole number of `page` bytes, so that the familiar table
/// after it starts page-aligned) and the familiar table's.
pub fn familiar_split(len: usize, page: usize) -> (usize, usize) {
    let page = page.max(1);
    let fam = (len / 4 * FAMILIAR_QUARTERS).div_ceil(page) * page;
    let main = len.saturating_sub(fam) / page * page;
    (main, len - main)
}

/// The policy a familiar table is used with: its entries are "bans" whose
/// end is the pair's expiry, set by `Table::ban`; nothing is counted,
/// escalated, remembered or widened.
pub fn familiar_policy() -> Policy {
    Policy {
        increment: false,
        history: 1,
        widen: 0,
        ..Policy::default()
    }
}

/// Hashes a key zone's values with its secret: SipHash-2-4, 128 bits out,
/// keyed with 128 bits the zone's secret and name make through HMAC-SHA256
/// once (so that zones sharing a secret hash apart).
#[derive(Clone)]
pub struct KeyHasher {
    keys: (u64, u64),
}

impl KeyHasher {
    /// `secret`: the zone's (made at format, kept in the state file), or
    /// one a fleet shares (from `sync_key=`). `zone` separates zones that
    /// share a secret.
    pub fn new(secret: &[u8], zone: &str) -> KeyHasher {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret)
            .unwrap_or_else(|_| <Hmac<Sha256> as KeyInit>::new(&Default::default()));
        mac.update(b"authban key zone\0");
        mac.update(zone.as_bytes());
        let digest = mac.finalize().into_bytes();
        let word = |at: usize| {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&digest[at..at + 8]);
            u64::from_le_bytes(bytes)
        };
        KeyHasher {
            keys: (word(0), word(8)),
        }
    }

    /// From a table's secret words.
    pub fn from_words(secret: [u64; 2], zone: &str) -> KeyHasher {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&secret[0].to_le_bytes());
        bytes[8..].copy_from_slice(&secret[1].to_le_bytes());
        KeyHasher::new(&bytes, zone)
    }

    fn hash(&self, domain: u8, parts: &[&[u8]]) -> Key {
        let mut h = SipHasher24::new_with_keys(self.keys.0, self.keys.1);
        h.write_u8(domain);
        for part in parts {
            // Lengths first: no two splits of the same bytes hash alike.
            h.write_usize(part.len());
            h.write(part);
        }
        let mut addr = h.finish128().as_bytes();
        // Never an IPv4-mapped form, which keys read as IPv4.
        addr[0] |= 0x80;
        Key::from_raw(addr, 128)
    }

    /// The table key of `value`: its 128-bit hash, as a host key no
    /// address zone shares (key zones hold hashes only).
    pub fn key_of(&self, value: &[u8]) -> Key {
        self.hash(0, &[value])
    }

    /// The familiar table's key of a (key, client network) pair: the
    /// zone's keyed hash of the value's hash and the network, in the same
    /// host-key form as [`KeyHasher::key_of`].
    pub fn pair_key(&self, value_key: &Key, network: &Key) -> Key {
        self.hash(
            1,
            &[
                &value_key.raw_addr(),
                &[value_key.raw_prefix()],
                &network.raw_addr(),
                &[network.raw_prefix()],
            ],
        )
    }
}

/// A hashed key as the API lists it: 32 hex digits.
pub fn hash_text(key: &Key) -> String {
    key.raw_addr().iter().map(|b| format!("{b:02x}")).collect()
}

/// A key's value for a log line: printable ASCII as is, anything else
/// (and `"`, `\`) as `\xHH`, cut to [`MAX_LOGGED_VALUE`] bytes of value
/// with `...` after.
pub fn logged_value(value: &[u8]) -> String {
    let cut = value.len() > MAX_LOGGED_VALUE;
    let mut out = String::with_capacity(value.len().min(MAX_LOGGED_VALUE) + 3);
    for &b in &value[..value.len().min(MAX_LOGGED_VALUE)] {
        if b.is_ascii_graphic() && b != b'"' && b != b'\\' || b == b' ' {
            out.push(b as char);
        } else {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    if cut {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn values_hash_apart_by_value_secret_and_zone() {
        let h = KeyHasher::from_words([1, 2], "accounts");
        let admin = h.key_of(b"admin");
        assert_eq!(admin, h.key_of(b"admin"));
        assert_ne!(admin, h.key_of(b"Admin"));
        assert_ne!(
            admin,
            KeyHasher::from_words([1, 3], "accounts").key_of(b"admin")
        );
        assert_ne!(
            admin,
            KeyHasher::from_words([1, 2], "other").key_of(b"admin")
        );
        assert!(!admin.is_ipv4());
        assert_eq!(admin.raw_prefix(), 128);
        assert_eq!(hash_text(&admin).len(), 32);
        // The key reads back as itself, as the state file and Redis write it.
        assert_eq!(Key::parse(&admin.to_string()), Some(admin));
    }

    #[test]
    fn pairs_hash_apart_by_key_network_and_secret() {
        let h = KeyHasher::from_words([1, 2], "accounts");
        let k = h.key_of(b"admin");
        let home = familiar_network("198.51.100.7".parse().unwrap());
        assert_eq!(home, familiar_network("198.51.100.200".parse().unwrap()));
        assert_ne!(home, familiar_network("198.51.101.7".parse().unwrap()));
        let v6 = familiar_network("2001:db8:1:2::7".parse().unwrap());
        assert_eq!(
            v6,
            familiar_network("2001:db8:1:2:ffff::1".parse().unwrap())
        );
        assert_ne!(v6, familiar_network("2001:db8:1:3::7".parse().unwrap()));
        let pair = h.pair_key(&k, &home);
        assert_eq!(pair, h.pair_key(&k, &home));
        assert_ne!(pair, h.pair_key(&h.key_of(b"root"), &home));
        assert_ne!(pair, h.pair_key(&k, &v6));
        assert_ne!(
            pair,
            KeyHasher::from_words([1, 3], "accounts").pair_key(&k, &home)
        );
        // Never the key's own hash, never an IPv4 key.
        assert_ne!(pair, k);
        assert!(!pair.is_ipv4());
        assert_eq!(pair.raw_prefix(), 128);
    }

    #[test]
    fn a_familiar_zone_splits_three_quarters_to_one() {
        let page = 4096;
        for len in [8 * page - page, 10 << 20, (1 << 20) - page, 12345 * page] {
            let (main, fam) = familiar_split(len, page);
            assert_eq!(main + fam, len);
            assert_eq!(main % page, 0, "{len}");
            assert!(fam >= len / 4 && fam < len / 4 + page, "{len}: {fam}");
        }
        assert_eq!(familiar_split(0, page), (0, 0));
    }

    /// The familiar table is a plain `Table`: a pair's "ban" is its
    /// expiry, renewed by `ban`; when full, the pair ending soonest goes.
    #[test]
    fn a_familiar_table_keeps_pairs_until_they_run_out() {
        use crate::engine::table::{capacity_for, Events, Now, Table};
        let mut buf = vec![0u64; 16 * 1024 / 8];
        // SAFETY: a Vec<u64> is initialised and 8-byte aligned.
        let region =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
        let capacity = capacity_for(region.len());
        let mut fam = Table::format(region, &familiar_policy(), [7, 8]).unwrap();
        let h = KeyHasher::from_words([1, 2], "keys");
        let pair = |i: u32| {
            let ip = std::net::Ipv4Addr::from(0xc000_0200 + (i << 8));
            h.pair_key(&h.key_of(b"K"), &familiar_network(ip.into()))
        };
        let at = |secs: u64| Now::from_ms(secs * 1000);
        let familiar = |t: &Table<'_>, i, secs| {
            t.lookup(&pair(i), at(secs))
                .is_some_and(|s| s.ban.is_some())
        };
        let mut events = Events::default();
        fam.ban(&pair(0), at(1000), 100, &mut events);
        assert!(familiar(&fam, 0, 1099));
        assert!(!familiar(&fam, 0, 1100));
        assert!(!familiar(&fam, 1, 1050));
        // Renewed: familiar for its time from the new success.
        fam.ban(&pair(0), at(1090), 100, &mut events);
        assert!(familiar(&fam, 0, 1189));
        // Full: the pair ending soonest gives way, never the table.
        for i in 1..=capacity {
            fam.ban(
                &pair(i),
                at(1100 + u64::from(i)),
                1000,
                &mut Events::default(),
            );
        }
        assert!(!fam.damaged());
        assert_eq!(fam.tracked(), capacity);
        assert!(!familiar(&fam, 0, 1150), "dropped for room");
        assert!(familiar(&fam, capacity, 1150));
    }

    #[test]
    fn logged_values_are_escaped_and_cut() {
        assert_eq!(logged_value(b"admin"), "admin");
        assert_eq!(logged_value(b"a b"), "a b");
        assert_eq!(logged_value(b"a\"b\\c\n\xff"), "a\\x22b\\x5cc\\x0a\\xff");
        let long = vec![b'x'; 100];
        assert_eq!(logged_value(&long), format!("{}...", "x".repeat(64)));
    }

    proptest! {
        #[test]
        fn a_logged_value_is_one_printable_line(value in proptest::collection::vec(any::<u8>(), 0..200)) {
            let text = logged_value(&value);
            prop_assert!(text.bytes().all(|b| b.is_ascii_graphic() || b == b' '));
            prop_assert!(!text.contains('"'));
            prop_assert!(text.len() <= MAX_LOGGED_VALUE * 4 + 3);
        }
    }
}
