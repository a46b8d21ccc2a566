//! The bytes of the one hot command and its reply, written and read in
//! place: a failure's `EVALSHA` goes straight into the session's output
//! and its count (`:N\r\n`) is read where it lies, with no frame built,
//! no allocation and no `core::fmt`. Each failing request pays for these,
//! so they are the only RESP authban writes and reads by hand; the tests
//! hold them to what the `redis-protocol` crate writes and reads, which
//! does everything else.

use std::net::Ipv6Addr;

use crate::engine::key::Key;

/// A number's decimal digits, on the stack.
pub struct Decimal {
    buf: [u8; 20],
    start: usize,
}

impl Decimal {
    pub fn of(mut n: u64) -> Decimal {
        let mut d = Decimal {
            buf: [b'0'; 20],
            start: 20,
        };
        loop {
            d.start -= 1;
            d.buf[d.start] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                return d;
            }
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[self.start..]
    }
}

/// A key's text on the stack, byte for byte what its `Display` writes
/// (`ADDR` or `ADDR/LEN`, IPv6 as the standard library writes it).
pub struct KeyText {
    /// The longest: 39 bytes of IPv6, or `::ffff:` and 15 of IPv4, and `/128`.
    buf: [u8; 48],
    len: usize,
}

impl KeyText {
    pub fn of(key: &Key) -> KeyText {
        let mut t = KeyText {
            buf: [0; 48],
            len: 0,
        };
        let raw = key.raw_addr();
        if key.is_ipv4() {
            t.ipv4([raw[12], raw[13], raw[14], raw[15]]);
        } else {
            t.ipv6(Ipv6Addr::from(raw));
        }
        if !key.is_host() {
            t.push(b'/');
            t.decimal(key.prefix_len());
        }
        t
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    fn decimal(&mut self, n: u8) {
        if n >= 100 {
            self.push(b'0' + n / 100);
        }
        if n >= 10 {
            self.push(b'0' + n / 10 % 10);
        }
        self.push(b'0' + n % 10);
    }

    fn ipv4(&mut self, octets: [u8; 4]) {
        for (i, o) in octets.into_iter().enumerate() {
            if i > 0 {
                self.push(b'.');
            }
            self.decimal(o);
        }
    }

    fn hex(&mut self, n: u16) {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut shift = 12;
        while shift > 0 && n >> shift == 0 {
            shift -= 4;
        }
        loop {
            self.push(DIGITS[usize::from((n >> shift) & 0xf)]);
            if shift == 0 {
                return;
            }
            shift -= 4;
        }
    }

    /// As `<Ipv6Addr as Display>` (RFC 5952): `::ffff:` and IPv4 for a
    /// mapped address, else lowercase hex groups with the first longest
    /// run of two or more zero groups written `::`.
    fn ipv6(&mut self, ip: Ipv6Addr) {
        if let Some(v4) = ip.to_ipv4_mapped() {
            for &b in b"::ffff:" {
                self.push(b);
            }
            return self.ipv4(v4.octets());
        }
        let groups = ip.segments();
        let (mut best, mut best_len, mut run, mut run_len) = (0, 0, 0, 0);
        for (i, &g) in groups.iter().enumerate() {
            if g == 0 {
                if run_len == 0 {
                    run = i;
                }
                run_len += 1;
                if run_len > best_len {
                    (best, best_len) = (run, run_len);
                }
            } else {
                run_len = 0;
            }
        }
        if best_len > 1 {
            self.groups(&groups[..best]);
            self.push(b':');
            self.push(b':');
            self.groups(&groups[best + best_len..]);
        } else {
            self.groups(&groups);
        }
    }

    fn groups(&mut self, part: &[u16]) {
        for (i, &g) in part.iter().enumerate() {
            if i > 0 {
                self.push(b':');
            }
            self.hex(g);
        }
    }
}

/// Appends a bulk string made of `parts`, one after the other.
pub fn put_bulk(out: &mut Vec<u8>, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.push(b'$');
    if len < 100 {
        // The common lengths, without the general number's work.
        if len >= 10 {
            out.push(b'0' + (len / 10) as u8);
        }
        out.push(b'0' + (len % 10) as u8);
    } else {
        out.extend_from_slice(Decimal::of(len as u64).as_bytes());
    }
    out.extend_from_slice(b"\r\n");
    for p in parts {
        out.extend_from_slice(p);
    }
    out.extend_from_slice(b"\r\n");
}

/// An integer reply at the start of `data` and the bytes it takes, if it
/// is a complete one of the plain form Redis writes (`:`, an optional
/// `-`, 1 to 18 digits, CRLF). Anything else, incomplete or not, is left
/// to the full decoder.
pub fn integer_reply(data: &[u8]) -> Option<(i64, usize)> {
    let rest = data.strip_prefix(b":")?;
    let (negative, digits_at) = match rest.first() {
        Some(b'-') => (true, 2),
        _ => (false, 1),
    };
    let mut n: i64 = 0;
    let mut at = digits_at;
    while let Some(&b) = data.get(at) {
        if !b.is_ascii_digit() {
            break;
        }
        n = n * 10 + i64::from(b - b'0');
        at += 1;
        if at - digits_at > 18 {
            return None;
        }
    }
    if at == digits_at || data.get(at..at + 2) != Some(b"\r\n") {
        return None;
    }
    Some((if negative { -n } else { n }, at + 2))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use redis_protocol::resp2::decode::decode;
    use redis_protocol::resp2::types::OwnedFrame;

    fn key_text(key: &Key) -> String {
        String::from_utf8(KeyText::of(key).as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn key_text_is_the_display_text() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "10.0.0.1",
            "192.0.2.0/24",
            "0.0.0.0/0",
            "::",
            "::/0",
            "::1",
            "1::",
            "2001:db8::/64",
            "2001:db8:1:2:3:4:5:6",
            "2001:0:0:1:0:0:0:1",
            "2001:0:0:1:0:0:1:1",
            "1:0:1:0:1:0:1:0",
            "::fffe:0:0/96",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128",
            "ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124",
        ] {
            let key = Key::parse(text).unwrap();
            assert_eq!(key_text(&key), key.to_string(), "{text}");
        }
        // A network given as mapped IPv6 is an IPv4 one.
        let mapped = Key::from_raw([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4], 127);
        assert_eq!(key_text(&mapped), mapped.to_string());
    }

    proptest! {
        #[test]
        fn any_key_text_is_the_display_text(
            groups in proptest::array::uniform8(prop_oneof![Just(0u16), Just(1u16), any::<u16>()]),
            prefix in 0u8..=128,
        ) {
            let mut raw = [0u8; 16];
            for (i, g) in groups.iter().enumerate() {
                raw[2 * i..2 * i + 2].copy_from_slice(&g.to_be_bytes());
            }
            let key = Key::from_raw(raw, prefix);
            prop_assert_eq!(key_text(&key), key.to_string());
        }

        #[test]
        fn any_ipv4_key_text_is_the_display_text(octets in any::<[u8; 4]>(), len in 0u8..=32) {
            let key = Key::network(std::net::IpAddr::from(octets), len, 128);
            prop_assert_eq!(key_text(&key), key.to_string());
        }

        #[test]
        fn decimals_are_the_display_text(n in prop_oneof![0u64..1000, any::<u64>()]) {
            let (ours, std) = (Decimal::of(n), n.to_string());
            prop_assert_eq!(ours.as_bytes(), std.as_bytes());
        }

        /// Whatever the bytes, the in-place reading agrees with the crate:
        /// the same integer and length, or it leaves them to the crate.
        #[test]
        fn integer_replies_read_as_the_decoder_reads_them(
            body in prop_oneof![
                "-?[0-9]{1,20}",
                "[-+0-9]{0,4}",
                any::<String>(),
            ],
            end in prop_oneof![Just("\r\n"), Just("\r"), Just(""), Just("\n"), Just("\r\n:1\r\n")],
        ) {
            let data = format!(":{body}{end}").into_bytes();
            if let Some((n, len)) = integer_reply(&data) {
                let decoded = decode(&data).ok().flatten();
                prop_assert_eq!(decoded, Some((OwnedFrame::Integer(n), len)));
            }
        }
    }

    #[test]
    fn integer_replies_of_every_common_form() {
        for (data, want) in [
            (&b":0\r\n"[..], Some((0, 4))),
            (b":25\r\n:3\r\n", Some((25, 5))),
            (b":-1\r\n", Some((-1, 5))),
            (
                b":999999999999999999\r\n",
                Some((999_999_999_999_999_999, 21)),
            ),
            (b":1000000000000000000\r\n", None),
            (b":+1\r\n", None),
            (b":1\r", None),
            (b":\r\n", None),
            (b":-\r\n", None),
            (b"+OK\r\n", None),
            (b"", None),
        ] {
            assert_eq!(
                integer_reply(data),
                want,
                "{:?}",
                String::from_utf8_lossy(data)
            );
        }
    }

    #[test]
    fn bulk_strings_are_the_crates() {
        use redis_protocol::resp2::encode::encode_borrowed;
        use redis_protocol::resp2::types::BorrowedFrame;
        for parts in [
            &[&b""[..]][..],
            &[b"a", b"bc"],
            &[&[b'x'; 9][..]],
            &[&[b'x'; 10][..]],
            &[&[b'x'; 99][..]],
            &[&[b'x'; 100][..]],
            &[&[b'x'; 300][..], b"yz"],
        ] {
            let mut ours = Vec::new();
            put_bulk(&mut ours, parts);
            let joined = parts.concat();
            let frame = BorrowedFrame::BulkString(&joined);
            let mut theirs = vec![0; frame.encode_len(false)];
            encode_borrowed(&mut theirs, &frame, false).unwrap();
            assert_eq!(ours, theirs);
        }
    }
}
