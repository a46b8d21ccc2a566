//! The request side: the query grammar and routing. Strict: an unknown,
//! repeated or malformed parameter is an error, never silently ignored.

use std::net::IpAddr;

use ipnet::IpNet;

use crate::engine::api::error::{AddrError, ApiError, DEFAULT_LIMIT, MAX_LIMIT, MAX_OFFSET};
use crate::engine::directive::{fold_mapped, net_key, parse_time};
use crate::engine::key::Key;
use crate::engine::param::hex_digit;
use crate::engine::table::MAX_BAN_SECS;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
    Delete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Json,
    Prometheus,
}

/// An `addr` as given: a bare address stands for the key the zone counts
/// it under (its `ipv4_prefix`/`ipv6_prefix` network); an explicit
/// `ADDR/LEN` is exactly that key, whatever the zone's prefixes are now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    Addr(IpAddr),
    Net(Key),
}

/// Whom a find, ban or unban names: an address zone's `addr`, or a key
/// zone's key, by its value (`key`, which the zone hashes) or by its hash
/// as listed (`hash`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Addr(Target),
    /// The value as decoded, any bytes: what the zone's `key=` evaluates to.
    Key(Vec<u8>),
    /// A key zone's table key, read from its 32 hex digits.
    Hash(Key),
}

impl Subject {
    /// The parameter that names it.
    pub fn param(&self) -> &'static str {
        match self {
            Subject::Addr(_) => "addr",
            Subject::Key(_) => "key",
            Subject::Hash(_) => "hash",
        }
    }
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub zone: Option<String>,
    pub addr: Option<Target>,
    /// A key zone's key value, decoded (never empty).
    pub key: Option<Vec<u8>>,
    /// A key zone's key as listed (`key_hash`).
    pub hash: Option<Key>,
    pub time: Option<u32>,
    pub format: Option<Format>,
    pub limit: Option<usize>,
    pub offset: Option<usize>,
}

/// What the endpoint was asked to do, once the query made sense.
#[derive(Debug, PartialEq, Eq)]
pub enum Action {
    ListZones(Format),
    ShowZone {
        zone: String,
        offset: usize,
        limit: usize,
    },
    ZoneMetrics(String),
    ShowAddress {
        zone: String,
        subject: Subject,
    },
    Ban {
        zone: String,
        subject: Subject,
        time: Option<u32>,
    },
    Unban {
        zone: String,
        subject: Subject,
    },
}

/// Sets a parameter once: a second value is an error.
fn once<T>(slot: &mut Option<T>, value: T, name: &str) -> Result<(), ApiError> {
    match slot.replace(value) {
        Some(_) => Err(ApiError::Repeated(name.to_string())),
        None => Ok(()),
    }
}

/// Parses the query string strictly: an unknown, repeated or malformed
/// parameter is an error, never silently ignored.
pub fn parse_query(raw: &[u8]) -> Result<Query, ApiError> {
    let mut query = Query::default();
    for pair in raw.split(|&b| b == b'&').filter(|p| !p.is_empty()) {
        let (name, value) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        let name = decode(name).ok_or(ApiError::MalformedQuery)?;
        if name == "key" {
            // Any bytes: a key's value need not be UTF-8. Never echoed.
            let value = decode_bytes(value).ok_or(ApiError::MalformedQuery)?;
            if value.is_empty() {
                return Err(ApiError::EmptyKey);
            }
            once(&mut query.key, value, &name)?;
            continue;
        }
        let value = decode(value).ok_or(ApiError::MalformedQuery)?;
        match name.as_str() {
            "zone" => {
                if value.is_empty() {
                    return Err(ApiError::EmptyZone);
                }
                once(&mut query.zone, value, &name)?;
            }
            "addr" => {
                let target =
                    parse_addr(&value).map_err(|why| ApiError::InvalidAddr { value, why })?;
                once(&mut query.addr, target, &name)?;
            }
            "hash" => {
                let hash = parse_hash(&value).ok_or(ApiError::InvalidHash)?;
                once(&mut query.hash, hash, &name)?;
            }
            "time" => {
                let secs = match strict_time(&value) {
                    Ok(secs) => secs,
                    Err(TimeError::Invalid) => return Err(ApiError::InvalidTime(value)),
                    Err(TimeError::TooLong) => return Err(ApiError::TimeTooLong(value)),
                };
                once(&mut query.time, secs, &name)?;
            }
            "format" => {
                let format = match value.as_str() {
                    "json" => Format::Json,
                    "prometheus" => Format::Prometheus,
                    _ => return Err(ApiError::InvalidFormat(value)),
                };
                once(&mut query.format, format, &name)?;
            }
            "limit" => {
                let limit = number(&value)
                    .filter(|l| (1..=MAX_LIMIT as u64).contains(l))
                    .map(|l| l as usize)
                    .ok_or(ApiError::InvalidLimit(value))?;
                once(&mut query.limit, limit, &name)?;
            }
            "offset" => {
                let offset = number(&value)
                    .filter(|&o| o <= MAX_OFFSET)
                    .map(|o| o as usize)
                    .ok_or(ApiError::InvalidOffset(value))?;
                once(&mut query.offset, offset, &name)?;
            }
            _ => return Err(ApiError::UnknownParameter(name)),
        }
    }
    Ok(query)
}

/// A decimal number as the endpoint takes it: ASCII digits only, no sign,
/// no leading zero but in "0" itself, so each value has one spelling.
fn number(text: &str) -> Option<u64> {
    let digits = text.bytes().all(|b| b.is_ascii_digit());
    if text.is_empty() || !digits || (text.len() > 1 && text.starts_with('0')) {
        return None;
    }
    // Only digits are left, so this cannot meet a sign; it fails on overflow.
    text.parse().ok()
}

enum TimeError {
    Invalid,
    TooLong,
}

/// An nginx time ("90", "30m", "1h30m", "1h 30m") whose numbers follow
/// [`number`]'s rule, not zero, at most [`MAX_BAN_SECS`]: a longer one is
/// refused, not clamped, so the caller learns that it was not applied.
fn strict_time(text: &str) -> Result<u32, TimeError> {
    // Spelled as [`number`] wants, however large (a run is all digits).
    let strict = text
        .split(|c: char| !c.is_ascii_digit())
        .all(|run| run.len() < 2 || !run.starts_with('0'));
    if !strict {
        return Err(TimeError::Invalid);
    }
    match parse_time(text) {
        Some(0) => Err(TimeError::Invalid),
        Some(secs) if secs > MAX_BAN_SECS => Err(TimeError::TooLong),
        Some(secs) => Ok(secs),
        // Well formed but past 32 bits: the same text with every number 1
        // parses.
        None if parse_time(&ones(text)).is_some() => Err(TimeError::TooLong),
        None => Err(TimeError::Invalid),
    }
}

/// `text` with each run of digits replaced by `1`.
fn ones(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_digits = false;
    for c in text.chars() {
        let digit = c.is_ascii_digit();
        if !digit {
            out.push(c);
        } else if !in_digits {
            out.push('1');
        }
        in_digits = digit;
    }
    out
}

/// `ADDR` or `ADDR/LEN`. IPv4-mapped IPv6 folds to IPv4 as client
/// addresses do: `::ffff:a.b.c.d` is `a.b.c.d` and `::ffff:a.b.c.0/120` is
/// `a.b.c.0/24`. Host bits of a network are masked, as the engine does.
pub fn parse_addr(text: &str) -> Result<Target, AddrError> {
    let (ip_text, len_text) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text, None),
    };
    // std's parser takes no leading zeros in IPv4 and no IPv6 scope.
    let ip: IpAddr = ip_text.parse().map_err(|_| AddrError::NotAnAddress)?;
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    };
    let Some(len_text) = len_text else {
        return Ok(Target::Addr(mapped.map_or(ip, IpAddr::V4)));
    };
    let why = match (ip, mapped) {
        (IpAddr::V4(_), _) => AddrError::V4PrefixLen,
        (IpAddr::V6(_), Some(_)) => AddrError::MappedPrefixLen,
        (IpAddr::V6(_), None) => AddrError::V6PrefixLen,
    };
    let len = number(len_text)
        .and_then(|l| u8::try_from(l).ok())
        .ok_or(why)?;
    let net = IpNet::new(ip, len).map_err(|_| why)?.trunc();
    // An IPv4-mapped network is an IPv4 one, so at least the 96 bits of
    // the mapping prefix are given.
    if mapped.is_some() && len < 96 {
        return Err(why);
    }
    Ok(Target::Net(net_key(fold_mapped(net))))
}

/// A key zone's key from its hash as listed: exactly 32 hex digits (either
/// case) whose first is 8 to f, as every hashed key's is.
pub fn parse_hash(text: &str) -> Option<Key> {
    let digits = text.as_bytes();
    if digits.len() != 32 {
        return None;
    }
    let mut addr = [0u8; 16];
    for (byte, pair) in addr.iter_mut().zip(digits.chunks_exact(2)) {
        *byte = hex_digit(pair[0])? << 4 | hex_digit(pair[1])?;
    }
    (addr[0] & 0x80 != 0).then(|| Key::from_raw(addr, 128))
}

/// Percent-decoding (and `+` as space); `None` for an escape that is not
/// `%` and exactly two hex digits, or text that is not UTF-8.
fn decode(raw: &[u8]) -> Option<String> {
    String::from_utf8(decode_bytes(raw)?).ok()
}

/// [`decode`] to bytes, whatever they are.
fn decode_bytes(raw: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = hex_digit(*raw.get(i + 1)?)?;
                let lo = hex_digit(*raw.get(i + 2)?)?;
                out.push(hi << 4 | lo);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Some(out)
}

/// Decides what a request asks for; the zone's existence, and whether its
/// kind takes the subject named (`addr` or `key`/`hash`), are checked later.
pub fn route(method: Method, query: Query) -> Result<Action, ApiError> {
    let paging = query.limit.is_some() || query.offset.is_some();
    if query.time.is_some() && method != Method::Post {
        return Err(ApiError::TimeOnlyForPost);
    }
    if method != Method::Get && (query.format.is_some() || paging) {
        return Err(ApiError::OnlyForGet);
    }
    let mut subjects = [
        query.addr.map(Subject::Addr),
        query.key.map(Subject::Key),
        query.hash.map(Subject::Hash),
    ]
    .into_iter()
    .flatten();
    let subject = subjects.next();
    if subjects.next().is_some() {
        return Err(ApiError::OneSubject);
    }
    match (method, query.zone, subject) {
        (Method::Get, None, None) => {
            if paging {
                return Err(ApiError::PagingNeedsZone);
            }
            Ok(Action::ListZones(query.format.unwrap_or(Format::Json)))
        }
        (Method::Get, Some(zone), None) => match query.format {
            Some(Format::Prometheus) if paging => Err(ApiError::PagingOnlyJson),
            Some(Format::Prometheus) => Ok(Action::ZoneMetrics(zone)),
            _ => Ok(Action::ShowZone {
                zone,
                offset: query.offset.unwrap_or(0),
                limit: query.limit.unwrap_or(DEFAULT_LIMIT),
            }),
        },
        (_, None, Some(subject)) => Err(ApiError::NeedsZone(subject.param())),
        (Method::Get, Some(zone), Some(subject)) => {
            if query.format == Some(Format::Prometheus) || paging {
                return Err(ApiError::NotForOne(subject.param()));
            }
            Ok(Action::ShowAddress { zone, subject })
        }
        (Method::Post, Some(_), Some(Subject::Hash(_))) => Err(ApiError::NoBanByHash),
        (Method::Post, Some(zone), Some(subject)) => Ok(Action::Ban {
            zone,
            subject,
            time: query.time,
        }),
        (Method::Delete, Some(zone), Some(subject)) => Ok(Action::Unban { zone, subject }),
        (Method::Post | Method::Delete, _, None) => Err(ApiError::ZoneAndAddrRequired),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key as the endpoint names it: `ADDR` (a host) or `ADDR/LEN`.
    fn key(text: &str) -> Key {
        match parse_addr(text).unwrap() {
            Target::Addr(ip) => Key::from_ip(ip),
            Target::Net(key) => key,
        }
    }

    fn query(raw: &str) -> Result<Query, ApiError> {
        parse_query(raw.as_bytes())
    }

    #[test]
    fn queries_parse_strictly() {
        let q = query("zone=cs&addr=2001%3Adb8%3A%3A1&time=30m").unwrap();
        assert_eq!(q.zone.as_deref(), Some("cs"));
        assert_eq!(q.addr, Some(Target::Addr("2001:db8::1".parse().unwrap())));
        assert_eq!(q.time, Some(1800));
        assert_eq!(
            query("addr=10.0.0.0%2F8").unwrap().addr,
            Some(Target::Net(key("10.0.0.0/8")))
        );
        for (raw, reason) in [
            ("colour=red", "unknown parameter \"colour\""),
            ("zone=a&zone=b", "given twice"),
            ("addr=10.0.0.300", "invalid addr"),
            ("time=5ms", "invalid time"),
            ("time=0", "invalid time"),
            ("format=xml", "invalid format"),
            ("limit=0", "invalid limit"),
            ("limit=1001", "invalid limit"),
            ("offset=-1", "invalid offset"),
            ("zone=%zz", "malformed"),
            ("zone=", "empty zone"),
        ] {
            let err = query(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw}");
            assert!(err.reason().contains(reason), "{raw}: {}", err.reason());
        }
    }

    /// The grammar as a table: each query accepted (with what it means) or
    /// refused (with the start of the reason).
    #[test]
    fn grammar_table() {
        let net = |s: &str| Some(Target::Net(key(s)));
        let ip = |s: &str| Some(Target::Addr(s.parse().unwrap()));
        let accepted: &[(&str, Query)] = &[
            ("", Query::default()),
            ("&&zone=cs&", zone_q("cs")),
            ("zone=%63%53", zone_q("cS")),
            ("zone=c+s", zone_q("c s")),
            ("zone=%01", zone_q("\u{1}")),
            ("limit=1", limit_q(1)),
            ("limit=1000", limit_q(1000)),
            ("limit=10", limit_q(10)),
            ("offset=0", offset_q(0)),
            ("offset=4294967295", offset_q(4_294_967_295)),
            ("time=90", time_q(90)),
            ("time=1h30m", time_q(5400)),
            ("time=1h0m", time_q(3600)),
            ("time=10d", time_q(864_000)),
            ("addr=1.1.1.4", addr_q(ip("1.1.1.4"))),
            ("addr=::ffff:1.1.1.4", addr_q(ip("1.1.1.4"))),
            ("addr=::ffff:101:104", addr_q(ip("1.1.1.4"))),
            ("addr=2001:db8::1", addr_q(ip("2001:db8::1"))),
            ("addr=::1.1.1.4", addr_q(ip("::101:104"))),
            ("addr=1.1.1.1/32", addr_q(net("1.1.1.1"))),
            ("addr=1.1.1.9/24", addr_q(net("1.1.1.0/24"))),
            ("addr=1.1.1.9/0", addr_q(net("0.0.0.0/0"))),
            ("addr=1.1.1.9%2F8", addr_q(net("1.0.0.0/8"))),
            ("addr=::ffff:1.1.1.0/120", addr_q(net("1.1.1.0/24"))),
            ("addr=::ffff:1.1.1.7/120", addr_q(net("1.1.1.0/24"))),
            ("addr=::ffff:1.1.1.4/128", addr_q(net("1.1.1.4/32"))),
            ("addr=::ffff:0.0.0.0/96", addr_q(net("0.0.0.0/0"))),
            ("addr=2001:db8::/128", addr_q(net("2001:db8::"))),
            ("addr=2001:db8::1/64", addr_q(net("2001:db8::/64"))),
            ("addr=::/0", addr_q(net("::/0"))),
        ];
        for (raw, want) in accepted {
            assert_eq!(query(raw).as_ref(), Ok(want), "{raw}");
        }
        let refused = [
            ("limit=%2B5", "invalid limit \"+5\""),
            ("limit=+5", "invalid limit \" 5\""),
            ("limit=05", "invalid limit"),
            ("limit=-1", "invalid limit"),
            ("limit=1e2", "invalid limit"),
            ("limit=", "invalid limit"),
            ("limit=%EF%BC%95", "invalid limit"),
            ("offset=%2B5", "invalid offset \"+5\""),
            ("offset=00", "invalid offset"),
            ("offset=01", "invalid offset"),
            ("offset=4294967296", "invalid offset"),
            ("offset=99999999999999999999999", "invalid offset"),
            ("offset=", "invalid offset"),
            ("time=+5m", "invalid time"),
            ("time=%2B5m", "invalid time"),
            ("time=05m", "invalid time"),
            ("time=1h05m", "invalid time"),
            ("time=0m", "invalid time"),
            ("time=", "invalid time"),
            ("time=5ms", "invalid time"),
            ("zone=%+1", "malformed"),
            ("zone=%-1", "malformed"),
            ("zone=% 1", "malformed"),
            ("zone=%1", "malformed"),
            ("zone=%", "malformed"),
            ("zone=%g0", "malformed"),
            ("zone=%C3%28", "malformed"),
            ("z%+1ne=cs", "malformed"),
            (
                "addr=1.1.1.1/0000032",
                "invalid addr \"1.1.1.1/0000032\": prefix length",
            ),
            ("addr=1.1.1.1/032", "invalid addr"),
            ("addr=1.1.1.1/00", "invalid addr"),
            ("addr=1.1.1.1/+8", "invalid addr"),
            ("addr=1.1.1.1/%2B8", "invalid addr"),
            (
                "addr=1.1.1.1/33",
                "invalid addr \"1.1.1.1/33\": prefix length must be 0 to 32",
            ),
            ("addr=1.1.1.1/", "invalid addr"),
            ("addr=1.1.1.1/8/8", "invalid addr"),
            ("addr=1.1.1.1/256", "invalid addr"),
            (
                "addr=01.1.1.1",
                "invalid addr \"01.1.1.1\": expected an IP address",
            ),
            ("addr=1.1.1", "invalid addr"),
            ("addr=", "invalid addr"),
            ("addr=fe80::1%25eth0", "invalid addr"),
            ("addr=[::1]", "invalid addr"),
            ("addr=2001:db8::/129", "invalid addr"),
            ("addr=2001:db8::/064", "invalid addr"),
            (
                "addr=::ffff:1.1.1.0/95",
                "invalid addr \"::ffff:1.1.1.0/95\": an IPv4-mapped",
            ),
            ("addr=::ffff:1.1.1.0/24", "invalid addr"),
            ("addr=::ffff:1.1.1.0/129", "invalid addr"),
        ];
        for (raw, reason) in refused {
            let err = query(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw}");
            assert!(err.reason().starts_with(reason), "{raw}: {}", err.reason());
        }
    }

    fn zone_q(zone: &str) -> Query {
        Query {
            zone: Some(zone.into()),
            ..Query::default()
        }
    }

    fn limit_q(limit: usize) -> Query {
        Query {
            limit: Some(limit),
            ..Query::default()
        }
    }

    fn offset_q(offset: usize) -> Query {
        Query {
            offset: Some(offset),
            ..Query::default()
        }
    }

    fn time_q(time: u32) -> Query {
        Query {
            time: Some(time),
            ..Query::default()
        }
    }

    fn addr_q(addr: Option<Target>) -> Query {
        Query {
            addr,
            ..Query::default()
        }
    }

    #[test]
    fn routing() {
        let r = |m, raw: &str| route(m, query(raw).unwrap());
        assert_eq!(r(Method::Get, ""), Ok(Action::ListZones(Format::Json)));
        assert_eq!(
            r(Method::Get, "format=prometheus"),
            Ok(Action::ListZones(Format::Prometheus))
        );
        assert_eq!(
            r(Method::Get, "zone=cs&limit=5&offset=10"),
            Ok(Action::ShowZone {
                zone: "cs".into(),
                offset: 10,
                limit: 5
            })
        );
        assert!(matches!(
            r(Method::Post, "zone=cs&addr=1.2.3.4&time=1h"),
            Ok(Action::Ban {
                time: Some(3600),
                ..
            })
        ));
        assert!(matches!(
            r(Method::Delete, "zone=cs&addr=1.2.3.4"),
            Ok(Action::Unban { .. })
        ));
        for (m, raw) in [
            (Method::Post, "zone=cs"),
            (Method::Delete, ""),
            (Method::Get, "addr=1.2.3.4"),
            (Method::Get, "zone=cs&time=1h"),
            (Method::Post, "zone=cs&addr=1.2.3.4&limit=3"),
            (Method::Get, "limit=3"),
        ] {
            assert_eq!(r(m, raw).unwrap_err().status(), 400, "{m:?} {raw}");
        }
    }

    /// `key` (a key zone's value, any bytes once decoded) and `hash` (its
    /// hash as listed), and how they route.
    #[test]
    fn key_and_hash_grammar() {
        let hasher = crate::engine::account::KeyHasher::from_words([7, 9], "keys");
        let listed = hasher.key_of(b"K-1");
        let hex = crate::engine::account::hash_text(&listed);
        assert_eq!(query("key=K-1").unwrap().key.as_deref(), Some(&b"K-1"[..]));
        assert_eq!(
            query("key=a%2Bb+c%25").unwrap().key.as_deref(),
            Some(&b"a+b c%"[..])
        );
        // Not UTF-8, still a value a request can carry.
        assert_eq!(
            query("key=%FF%00").unwrap().key.as_deref(),
            Some(&[0xff, 0][..])
        );
        assert_eq!(query(&format!("hash={hex}")).unwrap().hash, Some(listed));
        assert_eq!(
            query(&format!("hash={}", hex.to_uppercase())).unwrap().hash,
            Some(listed)
        );
        for key in (0..50u8).map(|i| hasher.key_of(&[i])) {
            let text = crate::engine::account::hash_text(&key);
            assert_eq!(parse_hash(&text), Some(key), "{text}");
        }
        let refused = [
            ("key=", "empty key"),
            ("key=a&key=b", "parameter \"key\" given twice"),
            ("key=%zz", "malformed query string"),
            ("key=%", "malformed query string"),
            ("hash=", "invalid hash: expected the 32 hex digits"),
            ("hash=0123456789abcdef0123456789abcdef", "invalid hash"),
            ("hash=8123456789abcdef0123456789abcde", "invalid hash"),
            ("hash=8123456789abcdef0123456789abcdef0", "invalid hash"),
            ("hash=8123456789abcdef0123456789abcdeg", "invalid hash"),
            ("hash=+123456789abcdef0123456789abcdef", "invalid hash"),
            ("hash=2001:db8::1", "invalid hash"),
        ];
        for (raw, reason) in refused {
            let err = query(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw}");
            assert!(err.reason().starts_with(reason), "{raw}: {}", err.reason());
        }
        // A refused hash is not echoed: it may be a value given by mistake.
        assert!(!query("hash=SECRET")
            .unwrap_err()
            .reason()
            .contains("SECRET"));

        let r = |m, raw: &str| route(m, query(raw).unwrap());
        let by_key = || Subject::Key(b"K 1".to_vec());
        assert_eq!(
            r(Method::Get, "zone=keys&key=K+1"),
            Ok(Action::ShowAddress {
                zone: "keys".into(),
                subject: by_key()
            })
        );
        assert_eq!(
            r(Method::Post, "zone=keys&key=K%201&time=1h"),
            Ok(Action::Ban {
                zone: "keys".into(),
                subject: by_key(),
                time: Some(3600)
            })
        );
        assert_eq!(
            r(Method::Delete, "key=K+1&zone=keys"),
            Ok(Action::Unban {
                zone: "keys".into(),
                subject: by_key()
            })
        );
        for m in [Method::Get, Method::Delete] {
            let action = r(m, &format!("zone=keys&hash={hex}")).unwrap();
            let (Action::ShowAddress { subject, .. } | Action::Unban { subject, .. }) = action
            else {
                panic!("{m:?}: {action:?}");
            };
            assert_eq!(subject, Subject::Hash(listed));
        }
        for (m, raw, reason) in [
            (
                Method::Post,
                format!("zone=keys&hash={hex}"),
                "hash applies only to GET and DELETE: ban a key by its value",
            ),
            (
                Method::Get,
                "zone=keys&key=a&addr=192.0.2.1".into(),
                "give only one of addr, key and hash",
            ),
            (
                Method::Delete,
                format!("zone=keys&key=a&hash={hex}"),
                "give only one of addr, key and hash",
            ),
            (Method::Get, "key=a".into(), "key needs zone"),
            (Method::Delete, format!("hash={hex}"), "hash needs zone"),
            (Method::Post, "addr=192.0.2.1".into(), "addr needs zone"),
            (
                Method::Get,
                "zone=keys&key=a&limit=5".into(),
                "format, limit and offset do not apply to one key",
            ),
            (
                Method::Get,
                format!("zone=keys&hash={hex}&format=prometheus"),
                "format, limit and offset do not apply to one hash",
            ),
            (
                Method::Post,
                "zone=keys".into(),
                "zone and addr (or key, hash) are required",
            ),
        ] {
            let err = r(m, &raw).unwrap_err();
            assert_eq!(
                (err.status(), err.reason().as_str()),
                (400, reason),
                "{m:?} {raw}"
            );
        }
    }

    /// Longer than a year is refused with its reason, never clamped.
    #[test]
    fn times_past_a_year_are_refused() {
        assert_eq!(parse_time("1y"), Some(MAX_BAN_SECS));
        assert_eq!(query("time=1y").unwrap().time, Some(MAX_BAN_SECS));
        assert_eq!(query("time=31536000").unwrap().time, Some(MAX_BAN_SECS));
        assert_eq!(query("time=52w1d").unwrap().time, Some(MAX_BAN_SECS));
        for raw in [
            "time=31536001",
            "time=1y1s",
            "time=53w",
            "time=100y",
            "time=4294967295",
            "time=4294967296",
            "time=99999999999999999999999",
            "time=137y",
            "time=1y+1s",
        ] {
            let err = query(raw).unwrap_err();
            assert_eq!(err.status(), 400, "{raw}");
            let value = raw.strip_prefix("time=").unwrap().replace('+', " ");
            assert_eq!(
                err.reason(),
                format!("invalid time \"{value}\": at most 1y"),
                "{raw}"
            );
        }
        // Malformed stays malformed, however large its numbers.
        for raw in ["time=99999999999999999999ms", "time=05y", "time=1y1y"] {
            let reason = query(raw).unwrap_err().reason();
            assert!(
                reason.ends_with("expected an nginx time such as 30m"),
                "{raw}: {reason}"
            );
        }
    }

    #[test]
    fn spaced_nginx_times() {
        assert_eq!(query("time=1h+30m").unwrap().time, Some(5400));
        assert_eq!(query("time=1h%2030m").unwrap().time, Some(5400));
        assert_eq!(query("time=1d+1h+1m+1s").unwrap().time, Some(90_061));
        for raw in ["time=1h+05m", "time=0h+0m", "time=30m+1h", "time=1h+1h"] {
            assert!(query(raw).is_err(), "{raw}");
        }
    }
}
