//! Directive argument parsing, free of nginx so it is unit-tested alone.
//! Errors are [`DirectiveError`]s, phrased as nginx phrases its own; the
//! directive handlers prefix the directive's name and nginx appends the
//! file and line.

use core::fmt;
use std::net::IpAddr;

use ipnet::IpNet;

use crate::engine::fleet::SyncUrl;
use crate::engine::key::Key;
use crate::engine::table::Policy;

/// A zone spans at least this many memory pages (limit_req's rule:
/// `8 * ngx_pagesize`, 32k on 4 KiB pages).
pub const MIN_ZONE_PAGES: usize = 8;
pub const MAX_RETRY: u32 = 65_535;

#[derive(Debug, Clone, PartialEq)]
pub struct ZoneSpec {
    pub name: String,
    pub size: usize,
    pub policy: Policy,
    /// Where bans and offence history persist, if anywhere.
    pub state: Option<String>,
    /// Seconds between state file writes.
    pub state_interval: u32,
    /// The fleet's Redis, if the zone is shared.
    pub sync: Option<SyncUrl>,
    /// Whether bans from the fleet may name networks wider than this zone
    /// makes itself (`sync_wide=on`): an operator's API bans of wide
    /// networks, trusted as far as Redis is.
    pub sync_wide: bool,
    /// `sync_key=FILE`: the key records and messages are signed with.
    pub sync_key: Option<String>,
    /// `rediss://`: the CA file the server's certificate is verified
    /// against (`sync_ca=`), and the client's certificate and key, if
    /// Redis asks for one (`sync_cert=`, `sync_cert_key=`).
    pub sync_ca: Option<String>,
    pub sync_cert: Option<String>,
    pub sync_cert_key: Option<String>,
    /// `key=EXPR`: the zone counts by this nginx complex value (variables
    /// and text), not by the client address.
    pub key: Option<String>,
    /// `familiar=TIME` (key zones only): seconds a (key, client network)
    /// pair stays familiar after a success.
    pub familiar: Option<u32>,
}

pub const DEFAULT_STATE_INTERVAL: u32 = 10;

/// What a value must be, as the end of an "invalid NAME "VALUE": ..."
/// message says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Expected {
    #[error("must be {0} to {1}")]
    Range(u32, u32),
    #[error("expected a time of 1s or more")]
    Time,
    #[error("must be on or off")]
    OnOff,
    #[error("must be off or 2 to 255")]
    Widen,
    #[error("expected a file path")]
    Path,
    #[error("expected variables or text, as limit_req_zone's key")]
    Expression,
    #[error("must be info, notice, warn or error")]
    Level,
    #[error("expected redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)")]
    SyncUrl,
}

/// A directive value authban refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DirectiveError {
    #[error("invalid parameter \"{0}\"")]
    InvalidParameter(String),
    #[error("duplicate parameter \"{0}=\"")]
    DuplicateParameter(String),
    #[error("missing \"zone=NAME:SIZE\"")]
    MissingZone,
    #[error("invalid zone \"{0}\": expected zone=NAME:SIZE")]
    ZoneSyntax(String),
    #[error("invalid zone \"{0}\": empty name")]
    EmptyZoneName(String),
    /// The name is a `zone=NAME` log field (which the fail2ban filter
    /// reads up to a space), a line of the state file and a label.
    #[error("invalid zone name \"{0}\": only letters, digits, \"_\", \"-\" and \".\" are allowed")]
    InvalidZoneName(String),
    #[error("invalid zone size \"{0}\"")]
    InvalidSize(String),
    #[error("zone \"{name}\" is too small: {size} bytes, at least {}", Size(*.min))]
    ZoneTooSmall {
        name: String,
        size: usize,
        min: usize,
    },
    /// `invalid NAME "VALUE": EXPECTED`.
    #[error("invalid {name} \"{value}\": {expected}")]
    InvalidValue {
        name: &'static str,
        value: String,
        expected: Expected,
    },
    /// `sync_wide=` and `sync_key=` mean nothing without a fleet.
    #[error("\"{0}=\" without \"sync=\"")]
    WithoutSync(&'static str),
    #[error("\"{0}=\" without \"sync=rediss://\"")]
    WithoutTls(&'static str),
    /// A certificate is only worth its verification.
    #[error(
        "\"sync=rediss://\" needs \"sync_ca=\", the CA file its certificate is verified against"
    )]
    TlsWithoutCa,
    #[error("\"sync_cert=\" and \"sync_cert_key=\" go together")]
    CertWithoutKey,
    #[error("maxtime ({maxtime}s) is shorter than bantime ({bantime}s)")]
    MaxtimeBelowBantime { maxtime: u32, bantime: u32 },
    #[error("invalid address or network \"{0}\"")]
    InvalidNetwork(String),
    /// Prefixes and widening are an address zone's.
    #[error("\"{0}=\" is for zones keyed on the client address, not with \"key=\"")]
    NotForKeyZones(&'static str),
    /// The nodes must hash a key alike: with the secret they share.
    #[error(
        "a zone with \"key=\" and \"sync=\" needs \"sync_key=\" (the nodes hash keys with it)"
    )]
    KeySyncWithoutSyncKey,
    /// Familiar networks are those of a key.
    #[error("\"familiar=\" without \"key=\"")]
    FamiliarWithoutKey,
}

/// The directive handlers report errors as text.
impl From<DirectiveError> for String {
    fn from(err: DirectiveError) -> String {
        err.to_string()
    }
}

fn invalid(name: &'static str, value: &str, expected: Expected) -> DirectiveError {
    DirectiveError::InvalidValue {
        name,
        value: value.to_string(),
        expected,
    }
}

/// A URL for an error message with its credentials hidden: what lies
/// between `://` (else the start) and the last `@` becomes `***`. A
/// malformed value may not say where its password ends, so all of it goes.
pub fn masked_url(value: &str) -> String {
    let Some(at) = value.rfind('@') else {
        return value.to_string();
    };
    let start = value
        .find("://")
        .map(|i| i + 3)
        .filter(|&i| i <= at)
        .unwrap_or(0);
    format!("{}***{}", &value[..start], &value[at..])
}

/// A size as nginx writes one: `32k` when a whole number of KiB or MiB.
struct Size(usize);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            0 => write!(f, "0"),
            n if n % (1 << 20) == 0 => write!(f, "{}m", n >> 20),
            n if n % (1 << 10) == 0 => write!(f, "{}k", n >> 10),
            n => write!(f, "{n}"),
        }
    }
}

/// The largest value nginx's parsers take (`NGX_MAX_SIZE_T_VALUE`,
/// `NGX_MAX_INT_T_VALUE`: the signed maximum of the platform).
const NGX_MAX: u64 = isize::MAX as u64;

/// nginx size syntax (`ngx_parse_size`): bytes, or a number with `k`/`K`
/// or `m`/`M`; authban also takes `g`/`G` (as `ngx_parse_offset`). The
/// number is ASCII digits only, and the result at most nginx's maximum.
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, scale) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1 << 10),
        b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
        b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    if n > NGX_MAX / scale {
        return None;
    }
    usize::try_from(n * scale).ok()
}

/// nginx time syntax in seconds, exactly as `ngx_parse_time(.., is_sec=1)`
/// (`ngx_conf_set_sec_slot`) reads it: numbers with units `y` `M` `w` `d`
/// `h` `m` `s`, each at most once and largest first (`y` only first),
/// spaces allowed after a part (`"1h 30m"`); a number without a unit counts
/// seconds, and so does one after the last unit (`"1h30"` is 3630); `ms` is
/// refused (bans are kept to the second); a value over nginx's maximum is
/// refused. `None` also when the result does not fit 32 bits (136 years).
pub fn parse_time(text: &str) -> Option<u32> {
    // nginx's parsing steps, in the order units must come.
    const START: u8 = 0;
    const SEC: u8 = 7;
    const LAST: u8 = 9;
    let bytes = text.as_bytes();
    let mut step = START;
    let mut valid = false;
    let mut value: u64 = 0;
    let mut total: u64 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i];
        i += 1;
        if c.is_ascii_digit() {
            value = value
                .checked_mul(10)?
                .checked_add(u64::from(c - b'0'))
                .filter(|&v| v <= NGX_MAX)?;
            valid = true;
            continue;
        }
        let (unit, scale): (u8, u64) = match c {
            b'y' if step == START => (1, 365 * 86_400),
            b'M' => (2, 30 * 86_400),
            b'w' => (3, 7 * 86_400),
            b'd' => (4, 86_400),
            b'h' => (5, 3_600),
            // `ms`: milliseconds, which nginx refuses in seconds too.
            b'm' if bytes.get(i) == Some(&b's') => return None,
            b'm' => (6, 60),
            b's' => (SEC, 1),
            // A space right after a number ends it as seconds; nothing but
            // a number may follow.
            b' ' if step < SEC => (LAST, 1),
            _ => return None,
        };
        if unit <= step && unit != LAST {
            return None;
        }
        step = unit;
        if value > NGX_MAX / scale {
            return None;
        }
        total = total.checked_add(value * scale).filter(|&t| t <= NGX_MAX)?;
        value = 0;
        while bytes.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid {
        return None;
    }
    let total = total.checked_add(value).filter(|&t| t <= NGX_MAX)?;
    u32::try_from(total).ok()
}

/// `zone=NAME:SIZE [maxretry=N] [findtime=TIME] [bantime=TIME]
/// [state=PATH] [state_interval=TIME] [increment=on|off] [factor=F]
/// [maxtime=TIME] [history=TIME] [ipv4_prefix=N] [ipv6_prefix=N] [widen=K|off]
/// [sync=redis[s]://...] [sync_wide=on|off] [sync_key=FILE] [sync_ca=FILE]
/// [sync_cert=FILE sync_cert_key=FILE]`.
/// A zone must span at least [`MIN_ZONE_PAGES`] of `page_size` bytes
/// (nginx's `ngx_pagesize`).
pub fn parse_zone(args: &[&str], page_size: usize) -> Result<ZoneSpec, DirectiveError> {
    let mut zone: Option<(String, usize)> = None;
    let mut policy = Policy::default();
    let mut state = None;
    let mut state_interval = DEFAULT_STATE_INTERVAL;
    let mut sync = None;
    let mut sync_wide = false;
    let mut sync_key = None;
    let mut sync_ca = None;
    let mut sync_cert = None;
    let mut sync_cert_key = None;
    let mut key = None;
    let mut familiar = None;
    let mut seen: Vec<&str> = Vec::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(DirectiveError::InvalidParameter(arg.to_string()));
        };
        if seen.contains(&name) {
            return Err(DirectiveError::DuplicateParameter(name.to_string()));
        }
        seen.push(name);
        match name {
            "zone" => {
                let Some((zone_name, size)) = value.split_once(':') else {
                    return Err(DirectiveError::ZoneSyntax(value.to_string()));
                };
                if zone_name.is_empty() {
                    return Err(DirectiveError::EmptyZoneName(value.to_string()));
                }
                if !is_zone_name(zone_name) {
                    return Err(DirectiveError::InvalidZoneName(
                        zone_name.escape_debug().to_string(),
                    ));
                }
                let size = parse_size(size)
                    .ok_or_else(|| DirectiveError::InvalidSize(size.to_string()))?;
                let min = MIN_ZONE_PAGES.saturating_mul(page_size);
                if size < min {
                    return Err(DirectiveError::ZoneTooSmall {
                        name: zone_name.to_string(),
                        size,
                        min,
                    });
                }
                zone = Some((zone_name.to_string(), size));
            }
            "maxretry" => {
                policy.maxretry = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_RETRY).contains(n))
                    .ok_or_else(|| invalid("maxretry", value, Expected::Range(1, MAX_RETRY)))?;
            }
            "findtime" => policy.findtime = positive_time("findtime", value)?,
            "bantime" => policy.bantime = positive_time("bantime", value)?,
            "maxtime" => policy.maxtime = positive_time("maxtime", value)?,
            "history" => policy.history = positive_time("history", value)?,
            "state_interval" => state_interval = positive_time("state_interval", value)?,
            "familiar" => familiar = Some(positive_time("familiar", value)?),
            "state" => {
                if value.is_empty() {
                    return Err(invalid("state", value, Expected::Path));
                }
                state = Some(value.to_string());
            }
            "sync" => {
                sync = Some(
                    SyncUrl::parse(value)
                        .ok_or_else(|| invalid("sync", &masked_url(value), Expected::SyncUrl))?,
                );
            }
            "increment" => {
                policy.increment = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid("increment", value, Expected::OnOff)),
                }
            }
            "factor" => {
                policy.factor = value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && (1.0..=1000.0).contains(f))
                    .ok_or_else(|| invalid("factor", value, Expected::Range(1, 1000)))?;
            }
            "ipv4_prefix" => policy.ipv4_prefix = prefix_len("ipv4_prefix", value, 32)?,
            "ipv6_prefix" => policy.ipv6_prefix = prefix_len("ipv6_prefix", value, 128)?,
            "widen" => {
                policy.widen = match value {
                    "off" => 0,
                    _ => value
                        .parse::<u32>()
                        .ok()
                        .filter(|k| (2..=255).contains(k))
                        .ok_or_else(|| invalid("widen", value, Expected::Widen))?,
                }
            }
            "sync_key" | "sync_ca" | "sync_cert" | "sync_cert_key" => {
                let param = match name {
                    "sync_key" => ("sync_key", &mut sync_key),
                    "sync_ca" => ("sync_ca", &mut sync_ca),
                    "sync_cert" => ("sync_cert", &mut sync_cert),
                    _ => ("sync_cert_key", &mut sync_cert_key),
                };
                if value.is_empty() {
                    return Err(invalid(param.0, value, Expected::Path));
                }
                *param.1 = Some(value.to_string());
            }
            "key" => {
                if value.is_empty() {
                    return Err(invalid("key", value, Expected::Expression));
                }
                key = Some(value.to_string());
            }
            "sync_wide" => {
                sync_wide = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(invalid("sync_wide", value, Expected::OnOff)),
                }
            }
            _ => return Err(DirectiveError::InvalidParameter(arg.to_string())),
        }
    }
    let (name, size) = zone.ok_or(DirectiveError::MissingZone)?;
    if familiar.is_some() && key.is_none() {
        return Err(DirectiveError::FamiliarWithoutKey);
    }
    if key.is_some() {
        for param in ["ipv4_prefix", "ipv6_prefix", "widen"] {
            if seen.contains(&param) {
                return Err(DirectiveError::NotForKeyZones(param));
            }
        }
        if sync.is_some() && sync_key.is_none() {
            return Err(DirectiveError::KeySyncWithoutSyncKey);
        }
    }
    if sync.is_none() {
        for param in ["sync_wide", "sync_key"] {
            if seen.contains(&param) {
                return Err(DirectiveError::WithoutSync(param));
            }
        }
    }
    let tls = sync.as_ref().is_some_and(|u| u.tls);
    if !tls {
        for param in ["sync_ca", "sync_cert", "sync_cert_key"] {
            if seen.contains(&param) {
                return Err(DirectiveError::WithoutTls(param));
            }
        }
    }
    if tls && sync_ca.is_none() {
        return Err(DirectiveError::TlsWithoutCa);
    }
    if sync_cert.is_some() != sync_cert_key.is_some() {
        return Err(DirectiveError::CertWithoutKey);
    }
    // The default cap on escalated bans follows a longer bantime; only a
    // maxtime given shorter than bantime is a contradiction.
    if !seen.contains(&"maxtime") {
        policy.maxtime = policy.maxtime.max(policy.bantime);
    }
    if policy.maxtime < policy.bantime {
        return Err(DirectiveError::MaxtimeBelowBantime {
            maxtime: policy.maxtime,
            bantime: policy.bantime,
        });
    }
    Ok(ZoneSpec {
        name,
        size,
        policy,
        state,
        state_interval,
        sync,
        sync_wide,
        sync_key,
        sync_ca,
        sync_cert,
        sync_cert_key,
        key,
        familiar,
    })
}

/// ASCII letters, digits, `_`, `-` and `.`: a name that reads back as one
/// word wherever it is written.
pub fn is_zone_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn prefix_len(name: &'static str, value: &str, max: u8) -> Result<u8, DirectiveError> {
    value
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=max).contains(p))
        .ok_or_else(|| invalid(name, value, Expected::Range(1, u32::from(max))))
}

fn positive_time(name: &'static str, value: &str) -> Result<u32, DirectiveError> {
    parse_time(value)
        .filter(|&t| t > 0)
        .ok_or_else(|| invalid(name, value, Expected::Time))
}

/// An HTTP status within `range`.
pub fn parse_status(
    text: &str,
    range: core::ops::RangeInclusive<u16>,
) -> Result<u16, DirectiveError> {
    text.parse::<u16>()
        .ok()
        .filter(|s| range.contains(s) && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            let expected = Expected::Range(u32::from(*range.start()), u32::from(*range.end()));
            invalid("status", text, expected)
        })
}

/// An address or network; host bits are dropped (as nginx's `allow` does).
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d/96+n`) is folded to IPv4 (`/n`), as
/// clients are: written either way, it matches the same clients.
pub fn parse_network(text: &str) -> Result<IpNet, DirectiveError> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| DirectiveError::InvalidNetwork(text.to_string()))?,
    };
    Ok(fold_mapped(net))
}

/// An IPv4-mapped IPv6 network of 96 bits or more as the IPv4 network it
/// maps; any other network as it is.
pub fn fold_mapped(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else { return net };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(len)) => ipnet::Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
        _ => net,
    }
}

/// The table key of a network (host bits dropped). IPv4-mapped networks
/// should be folded first ([`fold_mapped`]).
pub fn net_key(net: IpNet) -> Key {
    match net.trunc() {
        IpNet::V4(v4) => Key::network(IpAddr::V4(v4.addr()), v4.prefix_len(), 128),
        IpNet::V6(v6) => Key::network(IpAddr::V6(v6.addr()), 32, v6.prefix_len()),
    }
}

/// Log levels a ban message may use, as nginx numbers them.
pub fn parse_log_level(text: &str) -> Result<usize, DirectiveError> {
    match text {
        "error" => Ok(4),
        "warn" => Ok(5),
        "notice" => Ok(6),
        "info" => Ok(7),
        _ => Err(invalid("level", text, Expected::Level)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: usize = 4096;

    #[test]
    fn key_zones() {
        let spec = parse_zone(&["zone=a:1m", "key=$arg_apikey"], PAGE).unwrap();
        assert_eq!(spec.key.as_deref(), Some("$arg_apikey"));
        assert_eq!(parse_zone(&["zone=a:1m"], PAGE).unwrap().key, None);
        let err = |args: &[&str]| parse_zone(args, PAGE).unwrap_err();
        assert_eq!(
            err(&["zone=a:1m", "key="]),
            invalid("key", "", Expected::Expression)
        );
        for param in ["ipv4_prefix=24", "ipv6_prefix=64", "widen=3"] {
            let name = param.split('=').next().unwrap();
            assert_eq!(
                err(&["zone=a:1m", "key=$x", param]),
                DirectiveError::NotForKeyZones(match name {
                    "ipv4_prefix" => "ipv4_prefix",
                    "ipv6_prefix" => "ipv6_prefix",
                    _ => "widen",
                })
            );
        }
        assert_eq!(
            err(&["zone=a:1m", "key=$x", "sync=redis://127.0.0.1"]),
            DirectiveError::KeySyncWithoutSyncKey
        );
        assert!(parse_zone(
            &[
                "zone=a:1m",
                "key=$x",
                "sync=redis://127.0.0.1",
                "sync_key=k"
            ],
            PAGE
        )
        .is_ok());
    }

    #[test]
    fn familiar_networks() {
        let spec = parse_zone(&["zone=a:1m", "key=$arg_apikey", "familiar=30d"], PAGE).unwrap();
        assert_eq!(spec.familiar, Some(30 * 86_400));
        assert_eq!(
            parse_zone(&["zone=a:1m", "key=$x"], PAGE).unwrap().familiar,
            None
        );
        let err = |args: &[&str]| parse_zone(args, PAGE).unwrap_err();
        assert_eq!(
            err(&["zone=a:1m", "familiar=30d"]),
            DirectiveError::FamiliarWithoutKey
        );
        assert_eq!(
            err(&["zone=a:1m", "familiar=30d"]).to_string(),
            "\"familiar=\" without \"key=\""
        );
        for bad in ["0", "", "-1", "30x", "d"] {
            assert_eq!(
                err(&["zone=a:1m", "key=$x", &format!("familiar={bad}")]),
                invalid("familiar", bad, Expected::Time),
                "{bad}"
            );
        }
        assert_eq!(
            err(&["zone=a:1m", "key=$x", "familiar=1d", "familiar=2d"]),
            DirectiveError::DuplicateParameter("familiar".into())
        );
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("10m"), Some(10 << 20));
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("40000"), Some(40000));
        for bad in ["", "m", "10x", "-1", "1.5m", "99999999999999999999"] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn times() {
        assert_eq!(parse_time("10m"), Some(600));
        assert_eq!(parse_time("1h"), Some(3600));
        assert_eq!(parse_time("1h30m"), Some(5400));
        assert_eq!(parse_time("90"), Some(90));
        assert_eq!(parse_time("1w"), Some(604_800));
        assert_eq!(parse_time("2s"), Some(2));
        for bad in ["", "10x", "500ms", "m", "1m1h", "10m10m", "99999y"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    /// `ngx_parse_time(.., 1)` case by case, quirks included: these are
    /// what nginx's own second-valued directives take.
    #[test]
    fn times_as_nginx_reads_them() {
        let accepted: &[(&str, u32)] = &[
            ("1h 30m", 5400),
            ("1h   30m", 5400),
            ("1d 1h 1m 1s", 90_061),
            ("1y", 31_536_000),
            ("1y1M1w1d1h1m1s", 31_536_000 + 2_592_000 + 604_800 + 90_061),
            ("1M", 2_592_000),
            ("0", 0),
            ("00010", 10),
            // A number after the last unit counts seconds.
            ("1h30", 3630),
            ("1s1", 2),
            ("1s 1", 2),
            // A space after a bare number ends it as seconds.
            ("5 ", 5),
            (" 5", 5),
            ("5 5", 10),
            ("1h5 ", 3605),
            // A unit without a number is zero of it.
            ("1hm", 3600),
            ("h1", 1),
            ("4294967295", u32::MAX),
            ("136y", 136 * 31_536_000),
        ];
        for &(text, secs) in accepted {
            assert_eq!(parse_time(text), Some(secs), "{text:?}");
        }
        let refused = [
            "s",
            " ",
            "1m 1h",
            "1y1y",
            "1d1y",
            "1h 1h",
            "1m1ms",
            "1ms",
            "5 m",
            "5 5 ",
            "5 5s",
            "1s5 ",
            "1s 5 ",
            "1H",
            "1D",
            "+1",
            "-1",
            "1.5h",
            "1h\t30m",
            // Over 32 bits (nginx would take them), then over nginx's own
            // limit.
            "4294967296",
            "137y",
            "9223372036854775807",
            "9223372036854775808",
            "292471208678y",
            "292471208677y 1y",
        ];
        for text in refused {
            assert_eq!(parse_time(text), None, "{text:?}");
        }
    }

    #[test]
    fn sizes_as_nginx_reads_them() {
        assert_eq!(parse_size("1g"), Some(1 << 30));
        assert_eq!(parse_size("0032k"), Some(32 << 10));
        assert_eq!(parse_size("9223372036854775807"), Some(isize::MAX as usize));
        for bad in [
            "9223372036854775808",
            "9007199254740992k",
            "8796093022208m",
            "8589934592g",
            "1kb",
            "1 k",
            " 1k",
            "k",
            "+1k",
        ] {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
    }

    #[test]
    fn the_smallest_zone_is_eight_pages() {
        assert!(parse_zone(&["zone=z:32k"], 4096).is_ok());
        assert_eq!(
            parse_zone(&["zone=z:32767"], 4096).unwrap_err().to_string(),
            "zone \"z\" is too small: 32767 bytes, at least 32k"
        );
        assert_eq!(
            parse_zone(&["zone=z:256k"], 65_536)
                .unwrap_err()
                .to_string(),
            "zone \"z\" is too small: 262144 bytes, at least 512k"
        );
        assert!(parse_zone(&["zone=z:512k"], 65_536).is_ok());
        assert!(parse_zone(&["zone=z:16k"], 2048).is_ok());
    }

    #[test]
    fn messages_word_for_word() {
        let err = |args: &[&str]| parse_zone(args, PAGE).unwrap_err().to_string();
        assert_eq!(
            err(&["zone=x:1m", "maxretry=0"]),
            "invalid maxretry \"0\": must be 1 to 65535"
        );
        assert_eq!(
            err(&["zone=x:1m", "findtime=500ms"]),
            "invalid findtime \"500ms\": expected a time of 1s or more"
        );
        assert_eq!(
            err(&["zone=x:1m", "ipv4_prefix=33"]),
            "invalid ipv4_prefix \"33\": must be 1 to 32"
        );
        assert_eq!(
            err(&["zone=x:1m", "factor=0.5"]),
            "invalid factor \"0.5\": must be 1 to 1000"
        );
        assert_eq!(
            err(&["zone=x:1m", "widen=1"]),
            "invalid widen \"1\": must be off or 2 to 255"
        );
        assert_eq!(
            err(&["zone=x:1m", "state="]),
            "invalid state \"\": expected a file path"
        );
        assert_eq!(
            parse_status("600", 100..=599).unwrap_err().to_string(),
            "invalid status \"600\": must be 100 to 599"
        );
        assert_eq!(
            parse_log_level("debug").unwrap_err().to_string(),
            "invalid level \"debug\": must be info, notice, warn or error"
        );
        assert_eq!(
            parse_network("10.0.0.0/40").unwrap_err().to_string(),
            "invalid address or network \"10.0.0.0/40\""
        );
    }

    #[test]
    fn zone_defaults_and_parameters() {
        let spec = parse_zone(&["zone=cs:10m"], PAGE).unwrap();
        assert_eq!(spec.name, "cs");
        assert_eq!(spec.size, 10 << 20);
        assert_eq!(spec.policy, Policy::default());
        assert_eq!((spec.state, spec.state_interval), (None, 10));
        let spec = parse_zone(
            &[
                "zone=cs:1m",
                "maxretry=25",
                "findtime=10m",
                "bantime=1h",
                "state=/var/lib/authban/cs.state",
                "state_interval=30s",
                "increment=on",
                "factor=1.5",
                "maxtime=1d",
                "history=2d",
                "ipv4_prefix=24",
                "ipv6_prefix=64",
                "widen=3",
            ],
            PAGE,
        )
        .unwrap();
        assert_eq!(
            spec.policy,
            Policy {
                maxretry: 25,
                findtime: 600,
                bantime: 3600,
                increment: true,
                factor: 1.5,
                maxtime: 86_400,
                history: 172_800,
                ipv4_prefix: 24,
                ipv6_prefix: 64,
                widen: 3,
            }
        );
        assert_eq!(spec.state.as_deref(), Some("/var/lib/authban/cs.state"));
        assert_eq!(spec.state_interval, 30);
    }

    #[test]
    fn zone_errors_name_the_problem() {
        let err = |args: &[&str]| parse_zone(args, PAGE).unwrap_err().to_string();
        assert!(err(&["maxretry=3"]).contains("missing \"zone=NAME:SIZE\""));
        assert!(err(&["zone=cs"]).contains("expected zone=NAME:SIZE"));
        assert!(err(&["zone=:1m"]).contains("empty name"));
        assert!(err(&["zone=cs:abc"]).contains("invalid zone size \"abc\""));
        assert!(err(&["zone=cs:4k"]).contains("too small"));
        assert!(err(&["zone=cs:1m", "maxretry=0"]).contains("invalid maxretry \"0\""));
        assert!(err(&["zone=cs:1m", "findtime=soon"]).contains("invalid findtime \"soon\""));
        assert!(err(&["zone=ab:1m", "zone=x:1m"]).contains("duplicate parameter \"zone=\""));
        assert!(err(&["zone=cs:1m", "maxretry=2", "maxretry=3"]).contains("duplicate parameter"));
        assert!(err(&["zone=cs:1m", "increment=yes"]).contains("invalid increment"));
        assert!(err(&["zone=cs:1m", "factor=0.5"]).contains("invalid factor"));
        assert!(err(&["zone=cs:1m", "factor=nan"]).contains("invalid factor"));
        assert!(err(&["zone=cs:1m", "ipv6_prefix=129"]).contains("invalid ipv6_prefix"));
        assert!(err(&["zone=cs:1m", "ipv4_prefix=0"]).contains("invalid ipv4_prefix"));
        assert!(err(&["zone=cs:1m", "widen=1"]).contains("invalid widen"));
        assert_eq!(
            err(&["zone=cs:1m", "sync_key=/k"]),
            "\"sync_key=\" without \"sync=\""
        );
        assert_eq!(
            err(&["zone=cs:1m", "sync_wide=on"]),
            "\"sync_wide=\" without \"sync=\""
        );
        assert!(
            err(&["zone=cs:1m", "sync=redis://h", "sync_wide=yes"]).contains("must be on or off")
        );
        let spec = parse_zone(
            &["zone=cs:1m", "sync=redis://h", "sync_wide=on", "sync_key=k"],
            4096,
        )
        .unwrap();
        assert!(spec.sync_wide);
        assert_eq!(spec.sync_key.as_deref(), Some("k"));
        assert_eq!(
            err(&["zone=cs:1m", "sync=redis://h", "sync_ca=/ca"]),
            "\"sync_ca=\" without \"sync=rediss://\""
        );
        assert!(err(&["zone=cs:1m", "sync=rediss://h"]).contains("needs \"sync_ca=\""));
        assert!(err(&[
            "zone=cs:1m",
            "sync=rediss://h",
            "sync_ca=/ca",
            "sync_cert=/c"
        ])
        .contains("go together"));
        let tls = parse_zone(
            &[
                "zone=cs:1m",
                "sync=rediss://h",
                "sync_ca=/ca",
                "sync_cert=/c",
                "sync_cert_key=/k",
            ],
            4096,
        )
        .unwrap();
        assert_eq!(
            (
                tls.sync_ca.as_deref(),
                tls.sync_cert.as_deref(),
                tls.sync_cert_key.as_deref()
            ),
            (Some("/ca"), Some("/c"), Some("/k"))
        );
        assert!(err(&["zone=cs:1m", "state="]).contains("invalid state"));
        assert!(err(&["zone=cs:1m", "state_interval=0"]).contains("invalid state_interval"));
        assert_eq!(
            err(&["zone=cs:1m", "sync=redis:/h"]),
            "invalid sync \"redis:/h\": expected redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)"
        );
        assert!(err(&["zone=cs:1m", "bantime=1d", "maxtime=1h"]).contains("shorter than bantime"));
        assert!(err(&["zone=cs:1m", "bantime=0"]).contains("invalid bantime \"0\""));
        assert!(err(&["zone=cs:1m", "color=red"]).contains("invalid parameter \"color=red\""));
        assert!(err(&["zone=cs:1m", "oops"]).contains("invalid parameter \"oops\""));
    }

    #[test]
    fn zone_names_are_one_word() {
        for good in ["cs", "CloudStack_2", "a.b-c", "0", "x.y.z", "_", "-"] {
            let spec = parse_zone(&[&format!("zone={good}:1m")], PAGE).unwrap();
            assert_eq!(spec.name, good);
        }
        let err = |name: &str| {
            parse_zone(&[&format!("zone={name}:1m")], PAGE)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("x addr=6.6.6.6"),
            "invalid zone name \"x addr=6.6.6.6\": only letters, digits, \"_\", \"-\" \
             and \".\" are allowed"
        );
        for bad in [
            "my zone", "zöne", "a\"b", "a/b", "a=b", "a&b", "a{b}", "tab\t", "a\\b",
        ] {
            assert!(err(bad).starts_with("invalid zone name"), "{bad:?}");
        }
        // Control characters are shown escaped, never written raw.
        assert!(err("a\nb").contains("\"a\\nb\""), "{}", err("a\nb"));
        assert!(err(":1m").contains("empty name"));
    }

    #[test]
    fn default_maxtime_follows_a_longer_bantime() {
        let spec = parse_zone(&["zone=cs:1m", "bantime=30d"], PAGE).unwrap();
        assert_eq!(
            (spec.policy.bantime, spec.policy.maxtime),
            (2_592_000, 2_592_000)
        );
        let spec = parse_zone(&["zone=cs:1m", "bantime=8d", "increment=off"], PAGE).unwrap();
        assert_eq!(spec.policy.maxtime, 8 * 86_400);
        let spec = parse_zone(&["zone=cs:1m", "bantime=1h"], PAGE).unwrap();
        assert_eq!(spec.policy.maxtime, 7 * 86_400, "the default stays 7 days");
        let err = parse_zone(&["zone=cs:1m", "bantime=30d", "maxtime=1d"], PAGE)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("maxtime (86400s) is shorter than bantime"),
            "{err}"
        );
    }

    #[test]
    fn ipv4_mapped_networks_fold_to_ipv4() {
        let net = |t: &str| parse_network(t).unwrap().to_string();
        assert_eq!(net("::ffff:198.51.100.0/120"), "198.51.100.0/24");
        assert_eq!(net("::ffff:198.51.100.7"), "198.51.100.7/32");
        assert_eq!(net("::ffff:0.0.0.0/96"), "0.0.0.0/0");
        assert_eq!(net("::ffff:198.51.100.9/120"), "198.51.100.0/24");
        // Shorter than /96 is an IPv6 network, which no IPv4 client is in.
        assert_eq!(net("::/0"), "::/0");
        assert_eq!(net("2001:db8::/32"), "2001:db8::/32");
    }

    #[test]
    fn malformed_sync_values_never_show_a_password() {
        let err = |value: &str| {
            parse_zone(&["zone=cs:1m", &format!("sync={value}")], PAGE)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("redis://:hunter2@h:notaport"),
            "invalid sync \"redis://***@h:notaport\": expected redis://[:PASSWORD@]HOST[:PORT][/DB] (rediss:// for TLS)"
        );
        for (value, shown) in [
            ("redis://u:hunter2@h/x", "redis://***@h/x"),
            ("redis://hunter2@h", "redis://***@h"),
            ("redis://:hun@ter2@h:1:2", "redis://***@h:1:2"),
            ("redis://:hunter2@", "redis://***@"),
            ("redis:/:hunter2@h", "***@h"),
            ("http://:hunter2@h", "http://***@h"),
            (":hunter2@h:1", "***@h:1"),
            ("hunter2@redis://h x", "***@redis://h x"),
            ("redis://:%zzhunter2@h", "redis://***@h"),
            ("redis://h:x", "redis://h:x"),
        ] {
            let message = err(value);
            assert!(
                message.contains(&format!("\"{shown}\"")),
                "{value}: {message}"
            );
            if value.contains('@') {
                assert!(
                    !message.contains("hunter2") && !message.contains("ter2"),
                    "{message}"
                );
            }
        }
    }

    #[test]
    fn statuses_networks_levels() {
        assert_eq!(parse_status("531", 100..=599), Ok(531));
        assert!(parse_status("600", 100..=599).is_err());
        assert!(parse_status("+401", 100..=599).is_err());
        assert_eq!(
            parse_network("127.0.0.1/8").unwrap().to_string(),
            "127.0.0.0/8"
        );
        assert_eq!(parse_network("::1").unwrap().to_string(), "::1/128");
        assert!(parse_network("300.0.0.1").is_err());
        assert!(parse_network("10.0.0.0/40").is_err());
        assert_eq!(parse_log_level("warn"), Ok(5));
        assert!(parse_log_level("debug").is_err());
    }
}
