//! Key zones (`authban_zone ... key=EXPR`): a request's key (an account
//! name, an API key) becomes a table key by a keyed 128-bit hash, so the
//! value itself is never kept, in shared memory, the state file or Redis;
//! only the log line that bans it names it, escaped and cut short.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::engine::key::Key;

/// Bytes of a key's value a log line names.
pub const MAX_LOGGED_VALUE: usize = 64;

/// Hashes a key zone's values with its secret.
#[derive(Clone)]
pub struct KeyHasher {
    mac: Hmac<Sha256>,
}

impl KeyHasher {
    /// `secret`: the zone's (made at format, kept in the state file), or
    /// one a fleet shares (from `sync_key=`). `zone` separates zones that
    /// share a secret.
    pub fn new(secret: &[u8], zone: &str) -> KeyHasher {
        // HMAC takes a key of any length: this cannot fail.
        let mut mac =
            <Hmac<Sha256> as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable_hmac());
        mac.update(b"authban key zone\0");
        mac.update(zone.as_bytes());
        mac.update(b"\0");
        KeyHasher { mac }
    }

    /// From a table's secret words.
    pub fn from_words(secret: [u64; 2], zone: &str) -> KeyHasher {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&secret[0].to_le_bytes());
        bytes[8..].copy_from_slice(&secret[1].to_le_bytes());
        KeyHasher::new(&bytes, zone)
    }

    /// The table key of `value`: 128 bits of its HMAC, as a host key no
    /// address zone shares (key zones hold hashes only).
    pub fn key_of(&self, value: &[u8]) -> Key {
        let mut mac = self.mac.clone();
        mac.update(value);
        let digest = mac.finalize().into_bytes();
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&digest[..16]);
        // Never an IPv4-mapped form, which keys read as IPv4.
        addr[0] |= 0x80;
        Key::from_raw(addr, 128)
    }
}

#[cold]
fn unreachable_hmac() -> Hmac<Sha256> {
    // HMAC-SHA256 accepts every key length; an empty key is still a key.
    <Hmac<Sha256> as Mac>::new_from_slice(&[0]).expect("HMAC takes any key")
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
