//! The management endpoint's requests and responses, free of nginx: query
//! parsing, routing, and the JSON and Prometheus renderings. `api` feeds it
//! from a real request and sends what it returns.

use core::fmt::Write;
use std::net::IpAddr;

use crate::engine::directive::parse_time;
use crate::engine::key::Key;
use crate::engine::table::{AddressState, Ban, Policy, Stats};

pub const DEFAULT_LIMIT: usize = 100;
pub const MAX_LIMIT: usize = 1000;
/// A zone holds fewer than 2^32 bans.
pub const MAX_OFFSET: u64 = u32::MAX as u64;

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

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Query {
    pub zone: Option<String>,
    pub addr: Option<Target>,
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
        addr: Target,
    },
    Ban {
        zone: String,
        addr: Target,
        time: Option<u32>,
    },
    Unban {
        zone: String,
        addr: Target,
    },
}

#[derive(Debug, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub reason: String,
}

fn bad_request(reason: impl Into<String>) -> ApiError {
    ApiError {
        status: 400,
        reason: reason.into(),
    }
}

pub fn not_found(reason: impl Into<String>) -> ApiError {
    ApiError {
        status: 404,
        reason: reason.into(),
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
        let name = decode(name).ok_or_else(|| bad_request("malformed query string"))?;
        let value = decode(value).ok_or_else(|| bad_request("malformed query string"))?;
        let duplicate = || bad_request(format!("parameter \"{name}\" given twice"));
        match name.as_str() {
            "zone" => {
                if value.is_empty() {
                    return Err(bad_request("empty zone"));
                }
                if query.zone.replace(value).is_some() {
                    return Err(duplicate());
                }
            }
            "addr" => {
                let target = parse_addr(&value)
                    .map_err(|why| bad_request(format!("invalid addr \"{value}\": {why}")))?;
                if query.addr.replace(target).is_some() {
                    return Err(duplicate());
                }
            }
            "time" => {
                let secs = strict_time(&value).ok_or_else(|| {
                    bad_request(format!(
                        "invalid time \"{value}\": expected an nginx time such as 30m"
                    ))
                })?;
                if query.time.replace(secs).is_some() {
                    return Err(duplicate());
                }
            }
            "format" => {
                let format = match value.as_str() {
                    "json" => Format::Json,
                    "prometheus" => Format::Prometheus,
                    _ => {
                        return Err(bad_request(format!(
                            "invalid format \"{value}\": expected json or prometheus"
                        )))
                    }
                };
                if query.format.replace(format).is_some() {
                    return Err(duplicate());
                }
            }
            "limit" => {
                let limit = number(&value)
                    .filter(|l| (1..=MAX_LIMIT as u64).contains(l))
                    .map(|l| l as usize)
                    .ok_or_else(|| {
                        bad_request(format!(
                            "invalid limit \"{value}\": expected 1 to {MAX_LIMIT}"
                        ))
                    })?;
                if query.limit.replace(limit).is_some() {
                    return Err(duplicate());
                }
            }
            "offset" => {
                let offset = number(&value)
                    .filter(|&o| o <= MAX_OFFSET)
                    .map(|o| o as usize)
                    .ok_or_else(|| bad_request(format!("invalid offset \"{value}\"")))?;
                if query.offset.replace(offset).is_some() {
                    return Err(duplicate());
                }
            }
            _ => return Err(bad_request(format!("unknown parameter \"{name}\""))),
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

/// An nginx time ("90", "30m", "1h30m") whose numbers follow [`number`]'s
/// rule, not zero.
fn strict_time(text: &str) -> Option<u32> {
    let strict = text
        .split(|c: char| !c.is_ascii_digit())
        .filter(|run| !run.is_empty())
        .all(|run| number(run).is_some());
    parse_time(text).filter(|&t| strict && t > 0)
}

/// `ADDR` or `ADDR/LEN`. IPv4-mapped IPv6 folds to IPv4 as client
/// addresses do: `::ffff:a.b.c.d` is `a.b.c.d` and `::ffff:a.b.c.0/120` is
/// `a.b.c.0/24`. Host bits of a network are masked, as the engine does.
pub fn parse_addr(text: &str) -> Result<Target, &'static str> {
    const NOT_AN_ADDRESS: &str = "expected an IP address or CIDR network";
    let (ip_text, len_text) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len)),
        None => (text, None),
    };
    // std's parser takes no leading zeros in IPv4 and no IPv6 scope.
    let ip: IpAddr = ip_text.parse().map_err(|_| NOT_AN_ADDRESS)?;
    let mapped = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped(),
        IpAddr::V4(_) => None,
    };
    let Some(len_text) = len_text else {
        return Ok(Target::Addr(mapped.map_or(ip, IpAddr::V4)));
    };
    let len = number(len_text).and_then(|l| u8::try_from(l).ok());
    let (len, why) = match (ip, mapped) {
        (IpAddr::V4(_), _) => (len.filter(|&l| l <= 32), "prefix length must be 0 to 32"),
        (IpAddr::V6(_), Some(_)) => (
            len.filter(|l| (96..=128).contains(l)),
            "an IPv4-mapped prefix length must be 96 to 128",
        ),
        (IpAddr::V6(_), None) => (len.filter(|&l| l <= 128), "prefix length must be 0 to 128"),
    };
    let len = len.ok_or(why)?;
    // Key::network folds a mapped address to IPv4 and takes its IPv4
    // prefix; for the others the length is already in the family's bits.
    let v4_len = if mapped.is_some() { len - 96 } else { len };
    Ok(Target::Net(Key::network(ip, v4_len, len)))
}

/// Percent-decoding (and `+` as space); `None` for an escape that is not
/// `%` and exactly two hex digits, or text that is not UTF-8.
fn decode(raw: &[u8]) -> Option<String> {
    fn hex(b: u8) -> Option<u8> {
        match b {
            b'0'..=b'9' => Some(b - b'0'),
            b'a'..=b'f' => Some(b - b'a' + 10),
            b'A'..=b'F' => Some(b - b'A' + 10),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'%' => {
                let hi = hex(*raw.get(i + 1)?)?;
                let lo = hex(*raw.get(i + 2)?)?;
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
    String::from_utf8(out).ok()
}

/// Decides what a request asks for; the zone's existence is checked later.
pub fn route(method: Method, query: Query) -> Result<Action, ApiError> {
    let paging = query.limit.is_some() || query.offset.is_some();
    if query.time.is_some() && method != Method::Post {
        return Err(bad_request("time applies only to POST"));
    }
    if method != Method::Get && (query.format.is_some() || paging) {
        return Err(bad_request("format, limit and offset apply only to GET"));
    }
    match (method, query.zone, query.addr) {
        (Method::Get, None, None) => {
            if paging {
                return Err(bad_request("limit and offset need zone"));
            }
            Ok(Action::ListZones(query.format.unwrap_or(Format::Json)))
        }
        (Method::Get, Some(zone), None) => match query.format {
            Some(Format::Prometheus) if paging => {
                Err(bad_request("limit and offset apply only to JSON"))
            }
            Some(Format::Prometheus) => Ok(Action::ZoneMetrics(zone)),
            _ => Ok(Action::ShowZone {
                zone,
                offset: query.offset.unwrap_or(0),
                limit: query.limit.unwrap_or(DEFAULT_LIMIT),
            }),
        },
        (Method::Get, Some(zone), Some(addr)) => {
            if query.format == Some(Format::Prometheus) || paging {
                return Err(bad_request(
                    "format, limit and offset do not apply to one addr",
                ));
            }
            Ok(Action::ShowAddress { zone, addr })
        }
        (_, None, Some(_)) => Err(bad_request("addr needs zone")),
        (Method::Post, Some(zone), Some(addr)) => Ok(Action::Ban {
            zone,
            addr,
            time: query.time,
        }),
        (Method::Delete, Some(zone), Some(addr)) => Ok(Action::Unban { zone, addr }),
        (Method::Post | Method::Delete, _, None) => Err(bad_request("zone and addr are required")),
    }
}

/// A zone as the endpoint reports it.
#[derive(Clone, Debug, PartialEq)]
pub struct ZoneView {
    pub name: String,
    pub size: usize,
    pub policy: Policy,
    pub capacity: u32,
    pub tracked: u32,
    pub bans: u32,
    pub stats: Stats,
}

/// JSON string literal with the escapes JSON requires.
fn json_str(out: &mut String, text: &str) {
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn zone_fields(out: &mut String, z: &ZoneView) {
    out.push_str("\"name\":");
    json_str(out, &z.name);
    let p = z.policy;
    let s = z.stats;
    let _ = write!(
        out,
        ",\"size\":{},\"capacity\":{},\"policy\":{{\"maxretry\":{},\"findtime\":{},\"bantime\":{}}},\
         \"tracked\":{},\"bans\":{},\"counters\":{{\"failures\":{},\"bans\":{},\"refused\":{},\
         \"expired\":{},\"evicted\":{},\"bans_dropped\":{}}}",
        z.size,
        z.capacity,
        p.maxretry,
        p.findtime,
        p.bantime,
        z.tracked,
        z.bans,
        s.failures,
        s.bans,
        s.refused,
        s.expired,
        s.evicted,
        s.bans_dropped
    );
}

pub fn zones_json(zones: &[ZoneView]) -> String {
    let mut out = String::from("{\"zones\":[");
    for (n, z) in zones.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('{');
        zone_fields(&mut out, z);
        out.push('}');
    }
    out.push_str("]}\n");
    out
}

fn ban_fields(out: &mut String, ban: &Ban) {
    out.push_str("\"addr\":");
    json_str(out, &ban.key.to_string());
    let _ = write!(
        out,
        ",\"since\":{},\"since_iso\":\"{}\",\"until\":{},\"until_iso\":\"{}\",\"failures\":{}",
        ban.since,
        iso8601(ban.since),
        ban.until,
        iso8601(ban.until),
        ban.failures
    );
}

/// One zone with a page of its bans, soonest ending first; `next_offset`
/// is present when more bans follow.
pub fn zone_json(z: &ZoneView, bans: &[Ban], offset: usize, limit: usize) -> String {
    let mut out = String::from("{");
    zone_fields(&mut out, z);
    let _ = write!(out, ",\"offset\":{offset},\"limit\":{limit},\"ban_list\":[");
    for (n, ban) in bans.iter().enumerate() {
        if n > 0 {
            out.push(',');
        }
        out.push('{');
        ban_fields(&mut out, ban);
        out.push('}');
    }
    out.push(']');
    let shown = offset.saturating_add(bans.len());
    if bans.len() == limit && shown < z.bans as usize {
        let _ = write!(out, ",\"next_offset\":{shown}");
    }
    out.push_str("}\n");
    out
}

/// One key's state. `banned_by` is the ban that refuses a client of this
/// key now when it is not the key's own: a wider network's.
pub fn address_json(
    zone: &str,
    addr: &Key,
    state: &AddressState,
    banned_by: Option<&Ban>,
) -> String {
    let mut out = String::from("{\"zone\":");
    json_str(&mut out, zone);
    out.push_str(",\"addr\":");
    json_str(&mut out, &addr.to_string());
    let _ = write!(
        out,
        ",\"failures\":{},\"banned\":{}",
        state.failures,
        state.ban.is_some()
    );
    if let Some(ban) = &state.ban {
        let _ = write!(
            out,
            ",\"since\":{},\"since_iso\":\"{}\",\"until\":{},\"until_iso\":\"{}\"",
            ban.since,
            iso8601(ban.since),
            ban.until,
            iso8601(ban.until)
        );
    }
    if let Some(ban) = banned_by.filter(|b| b.key != *addr) {
        out.push_str(",\"banned_by\":{");
        ban_fields(&mut out, ban);
        out.push('}');
    }
    out.push_str("}\n");
    out
}

pub fn ban_json(zone: &str, ban: &Ban) -> String {
    let mut out = String::from("{\"zone\":");
    json_str(&mut out, zone);
    out.push_str(",\"banned\":true,");
    ban_fields(&mut out, ban);
    out.push_str("}\n");
    out
}

pub fn unban_json(zone: &str, addr: &Key, state: &AddressState) -> String {
    let mut out = String::from("{\"zone\":");
    json_str(&mut out, zone);
    out.push_str(",\"addr\":");
    json_str(&mut out, &addr.to_string());
    let _ = writeln!(
        out,
        ",\"was_banned\":{},\"failures_forgotten\":{}}}",
        state.ban.is_some(),
        state.failures
    );
    out
}

pub fn error_json(err: &ApiError) -> String {
    let mut out = String::from("{\"error\":");
    json_str(&mut out, &err.reason);
    let _ = writeln!(out, ",\"status\":{}}}", err.status);
    out
}

/// The Prometheus text exposition format, version 0.0.4.
pub fn prometheus(zones: &[ZoneView]) -> String {
    type Metric = (
        &'static str,
        &'static str,
        &'static str,
        fn(&ZoneView) -> u64,
    );
    const METRICS: &[Metric] = &[
        (
            "authban_failures_total",
            "counter",
            "Failed responses counted.",
            |z| z.stats.failures,
        ),
        (
            "authban_bans_total",
            "counter",
            "Bans issued, automatic and manual.",
            |z| z.stats.bans,
        ),
        (
            "authban_refused_total",
            "counter",
            "Requests refused because of a ban.",
            |z| z.stats.refused,
        ),
        (
            "authban_bans_expired_total",
            "counter",
            "Bans that ran out.",
            |z| z.stats.expired,
        ),
        (
            "authban_evicted_total",
            "counter",
            "Addresses forgotten to make room.",
            |z| z.stats.evicted,
        ),
        (
            "authban_bans_dropped_total",
            "counter",
            "Bans dropped because the zone was full.",
            |z| z.stats.bans_dropped,
        ),
        (
            "authban_tracked_addresses",
            "gauge",
            "Addresses the zone holds now.",
            |z| u64::from(z.tracked),
        ),
        ("authban_active_bans", "gauge", "Bans in force now.", |z| {
            u64::from(z.bans)
        }),
        (
            "authban_capacity_addresses",
            "gauge",
            "Addresses the zone can hold.",
            |z| u64::from(z.capacity),
        ),
    ];
    let mut out = String::new();
    for (name, kind, help, value) in METRICS {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for z in zones {
            let _ = writeln!(
                out,
                "{name}{{zone=\"{}\"}} {}",
                label_value(&z.name),
                value(z)
            );
        }
    }
    out
}

fn label_value(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`.
pub fn iso8601(secs: u32) -> String {
    let days = i64::from(secs / 86_400);
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Some(Target::Net(Key::parse("10.0.0.0/8").unwrap()))
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
            assert_eq!(err.status, 400, "{raw}");
            assert!(err.reason.contains(reason), "{raw}: {}", err.reason);
        }
    }

    /// The grammar as a table: each query accepted (with what it means) or
    /// refused (with the start of the reason).
    #[test]
    fn grammar_table() {
        let net = |s: &str| Some(Target::Net(Key::parse(s).unwrap()));
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
            assert_eq!(err.status, 400, "{raw}");
            assert!(err.reason.starts_with(reason), "{raw}: {}", err.reason);
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
    fn address_rendering_names_a_wider_ban() {
        let key = Key::parse("192.0.2.0/24").unwrap();
        let wide = Ban {
            key: Key::parse("192.0.0.0/16").unwrap(),
            since: 100,
            until: 160,
            failures: 0,
            offence: 1,
        };
        let untracked = AddressState {
            failures: 0,
            ban: None,
        };
        let json = address_json("z", &key, &untracked, Some(&wide));
        assert_eq!(
            json,
            "{\"zone\":\"z\",\"addr\":\"192.0.2.0/24\",\"failures\":0,\"banned\":false,\
             \"banned_by\":{\"addr\":\"192.0.0.0/16\",\"since\":100,\
             \"since_iso\":\"1970-01-01T00:01:40Z\",\"until\":160,\
             \"until_iso\":\"1970-01-01T00:02:40Z\",\"failures\":0}}\n"
        );
        // Its own ban is not repeated.
        let own = Ban { key, ..wide };
        let banned = AddressState {
            failures: 3,
            ban: Some(own),
        };
        let json = address_json("z", &key, &banned, Some(&own));
        assert!(!json.contains("banned_by"), "{json}");
        assert!(json.contains("\"banned\":true,\"since\":100"), "{json}");
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
            assert_eq!(r(m, raw).unwrap_err().status, 400, "{m:?} {raw}");
        }
    }

    #[test]
    fn renderings() {
        let zone = ZoneView {
            name: "c\"s".into(),
            size: 1 << 20,
            policy: Policy {
                bantime: 60,
                ..Policy::default()
            },
            capacity: 20_000,
            tracked: 3,
            bans: 2,
            stats: Stats {
                failures: 9,
                ..Stats::default()
            },
        };
        let json = zones_json(std::slice::from_ref(&zone));
        assert!(
            json.starts_with("{\"zones\":[{\"name\":\"c\\\"s\",\"size\":1048576"),
            "{json}"
        );
        let ban = Ban {
            key: Key::parse("192.0.2.1").unwrap(),
            since: 1_764_072_000,
            until: 1_764_072_060,
            failures: 5,
            offence: 1,
        };
        let page = zone_json(&zone, &[ban], 0, 1);
        assert!(
            page.contains("\"until_iso\":\"2025-11-25T12:01:00Z\""),
            "{page}"
        );
        assert!(page.contains("\"next_offset\":1"), "{page}");
        let metrics = prometheus(&[zone]);
        assert!(metrics.contains("# TYPE authban_failures_total counter\n"));
        assert!(
            metrics.contains("authban_failures_total{zone=\"c\\\"s\"} 9\n"),
            "{metrics}"
        );
        assert_eq!(iso8601(0), "1970-01-01T00:00:00Z");
        assert_eq!(iso8601(951_782_400), "2000-02-29T00:00:00Z");
    }
}
