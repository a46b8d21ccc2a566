//! `sync_key=FILE`: every ban record and message a zone writes to Redis is
//! signed with HMAC-SHA256 under a key the nodes share, and what is read
//! back is believed only with a valid signature. What is signed names the
//! zone, so a record cannot be moved to another zone.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Shortest key accepted: 128 bits.
pub const MIN_KEY_LEN: usize = 16;
/// A signature as written: the MAC in lowercase hex.
pub const SIGNATURE_LEN: usize = 64;

/// A zone's key, ready to sign and verify.
#[derive(Clone)]
pub struct Signer {
    mac: Hmac<Sha256>,
    zone: String,
}

impl core::fmt::Debug for Signer {
    /// Never the key.
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Signer({})", self.zone)
    }
}

impl Signer {
    /// A signer for `zone`; `None` if the key is shorter than
    /// [`MIN_KEY_LEN`].
    pub fn new(key: &[u8], zone: &str) -> Option<Signer> {
        if key.len() < MIN_KEY_LEN {
            return None;
        }
        Some(Signer {
            mac: Hmac::<Sha256>::new_from_slice(key).ok()?,
            zone: zone.to_string(),
        })
    }

    fn mac_of(&self, text: &str) -> Hmac<Sha256> {
        let mut mac = self.mac.clone();
        // Zone names have no spaces: "ZONE TEXT" is unambiguous.
        mac.update(self.zone.as_bytes());
        mac.update(b" ");
        mac.update(text.as_bytes());
        mac
    }

    /// The signature of `text` in this zone.
    pub fn sign(&self, text: &str) -> String {
        let tag = self.mac_of(text).finalize().into_bytes();
        let mut hex = String::with_capacity(SIGNATURE_LEN);
        for b in tag {
            hex.push(char::from_digit(u32::from(b >> 4), 16).unwrap_or('0'));
            hex.push(char::from_digit(u32::from(b & 15), 16).unwrap_or('0'));
        }
        hex
    }

    /// Whether `signature` is this zone's for `text` (compared in constant
    /// time).
    pub fn verify(&self, text: &str, signature: &str) -> bool {
        let Some(tag) = unhex(signature) else {
            return false;
        };
        self.mac_of(text).verify_slice(&tag).is_ok()
    }
}

fn unhex(text: &str) -> Option<[u8; 32]> {
    let bytes = text.as_bytes();
    if bytes.len() != SIGNATURE_LEN {
        return None;
    }
    let mut out = [0u8; 32];
    // One spelling: lowercase, as written.
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    for (i, pair) in bytes.chunks_exact(2).enumerate() {
        out[i] = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// Longest key file read: a key is a line of text, not a document.
const MAX_KEY_FILE: u64 = 4096;

/// The key in `path`: its bytes, the final line ending cut (so `echo` and
/// editors make the same key), at least [`MIN_KEY_LEN`] of them.
pub fn read_key(path: &std::path::Path) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let file = std::fs::File::open(path).map_err(|e| e.to_string())?;
    let mut key = Vec::new();
    file.take(MAX_KEY_FILE + 1)
        .read_to_end(&mut key)
        .map_err(|e| e.to_string())?;
    if key.len() as u64 > MAX_KEY_FILE {
        return Err(format!("longer than {MAX_KEY_FILE} bytes"));
    }
    while key.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
        key.pop();
    }
    if key.len() < MIN_KEY_LEN {
        return Err(format!("shorter than {MIN_KEY_LEN} bytes"));
    }
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_and_verifies_per_zone() {
        let key = b"0123456789abcdef0123";
        let cs = Signer::new(key, "cs").unwrap();
        let sig = cs.sign("1 2 3 4");
        assert_eq!(sig.len(), SIGNATURE_LEN);
        assert!(cs.verify("1 2 3 4", &sig));
        assert!(!cs.verify("1 2 3 5", &sig));
        assert!(!cs.verify("1 2 3 4", &sig.to_uppercase()));
        assert!(!cs.verify("1 2 3 4", &sig[..62]));
        assert!(!cs.verify("1 2 3 4", ""));
        // Another zone, or another key, signs differently.
        assert!(!Signer::new(key, "other").unwrap().verify("1 2 3 4", &sig));
        let other = Signer::new(b"another key of 16+ bytes", "cs").unwrap();
        assert!(!other.verify("1 2 3 4", &sig));
        assert!(Signer::new(b"short", "cs").is_none());
        assert_eq!(format!("{cs:?}"), "Signer(cs)");
    }

    #[test]
    fn a_key_file_is_one_line_of_at_least_16_bytes() {
        let dir = std::env::temp_dir().join(format!("authban-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "0123456789abcdef\n").unwrap();
        assert_eq!(read_key(&path).unwrap(), b"0123456789abcdef");
        std::fs::write(&path, "short\n").unwrap();
        assert!(read_key(&path).unwrap_err().contains("shorter than 16"));
        std::fs::write(&path, vec![b'k'; 5000]).unwrap();
        assert!(read_key(&path).unwrap_err().contains("longer than"));
        assert!(read_key(&dir.join("missing")).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// RFC 4231, test case 1: HMAC-SHA256 of "Hi There" under twenty 0x0b
    /// bytes, signed as zone "Hi", text "There".
    #[test]
    fn the_construction_is_hmac_sha256_of_zone_space_text() {
        let s = Signer::new(&[0x0b; 20], "Hi").unwrap();
        let want = "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7";
        assert_eq!(s.sign("There"), want);
        assert!(s.verify("There", want));
    }
}
