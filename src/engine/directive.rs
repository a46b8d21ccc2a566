//! Directive argument parsing, free of nginx so it is unit-tested alone.
//! Errors are short phrases; the directive handlers prefix the directive's
//! name and nginx appends the file and line.

use ipnet::IpNet;
use std::net::IpAddr;

use crate::engine::table::Policy;

/// nginx's own minimum for a zone (limit_req's rule): eight 4 KiB pages.
pub const MIN_ZONE_SIZE: usize = 8 * 4096;
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
}

pub const DEFAULT_STATE_INTERVAL: u32 = 10;

/// nginx size syntax: bytes, or a number with k/K or m/M (and g/G).
pub fn parse_size(text: &str) -> Option<usize> {
    let (digits, unit) = match text.as_bytes().last()? {
        b'k' | b'K' => (&text[..text.len() - 1], 1024),
        b'm' | b'M' => (&text[..text.len() - 1], 1024 * 1024),
        b'g' | b'G' => (&text[..text.len() - 1], 1024 * 1024 * 1024),
        _ => (text, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<usize>().ok()?.checked_mul(unit)
}

/// nginx time syntax in seconds ("90", "10m", "1h30m", "1w"); milliseconds
/// are refused because bans are kept to the second.
pub fn parse_time(text: &str) -> Option<u32> {
    if text.is_empty() {
        return None;
    }
    let mut total: u64 = 0;
    let mut number: Option<u64> = None;
    let mut last_unit = u64::MAX;
    let mut bytes = text.bytes().peekable();
    while let Some(b) = bytes.next() {
        if b.is_ascii_digit() {
            let n = number.unwrap_or(0).checked_mul(10)? + u64::from(b - b'0');
            number = Some(n);
            continue;
        }
        let unit = match b {
            b'y' => 365 * 86_400,
            b'M' => 30 * 86_400,
            b'w' => 7 * 86_400,
            b'd' => 86_400,
            b'h' => 3_600,
            b'm' if bytes.peek() == Some(&b's') => return None,
            b'm' => 60,
            b's' => 1,
            _ => return None,
        };
        // Units must come once each, largest first, as nginx requires.
        if unit >= last_unit {
            return None;
        }
        last_unit = unit;
        total = total.checked_add(number.take()?.checked_mul(unit)?)?;
    }
    if let Some(n) = number {
        if last_unit == 1 {
            return None;
        }
        total = total.checked_add(n)?;
    }
    u32::try_from(total).ok()
}

/// `zone=NAME:SIZE [maxretry=N] [findtime=TIME] [bantime=TIME]
/// [state=PATH] [state_interval=TIME] [increment=on|off] [factor=F]
/// [maxtime=TIME] [history=TIME] [ipv4_prefix=N] [ipv6_prefix=N] [widen=K|off]`.
pub fn parse_zone(args: &[&str]) -> Result<ZoneSpec, String> {
    let mut zone: Option<(String, usize)> = None;
    let mut policy = Policy::default();
    let mut state = None;
    let mut state_interval = DEFAULT_STATE_INTERVAL;
    let mut seen: Vec<&str> = Vec::new();
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(format!("invalid parameter \"{arg}\""));
        };
        if seen.contains(&name) {
            return Err(format!("duplicate parameter \"{name}=\""));
        }
        seen.push(name);
        match name {
            "zone" => {
                let Some((zone_name, size)) = value.split_once(':') else {
                    return Err(format!("invalid zone \"{value}\": expected zone=NAME:SIZE"));
                };
                if zone_name.is_empty() {
                    return Err(format!("invalid zone \"{value}\": empty name"));
                }
                let size =
                    parse_size(size).ok_or_else(|| format!("invalid zone size \"{size}\""))?;
                if size < MIN_ZONE_SIZE {
                    return Err(format!(
                        "zone \"{zone_name}\" is too small: {size} bytes, at least 32k"
                    ));
                }
                zone = Some((zone_name.to_string(), size));
            }
            "maxretry" => {
                policy.maxretry = value
                    .parse::<u32>()
                    .ok()
                    .filter(|n| (1..=MAX_RETRY).contains(n))
                    .ok_or_else(|| {
                        format!("invalid maxretry \"{value}\": must be 1 to {MAX_RETRY}")
                    })?;
            }
            "findtime" => policy.findtime = positive_time("findtime", value)?,
            "bantime" => policy.bantime = positive_time("bantime", value)?,
            "maxtime" => policy.maxtime = positive_time("maxtime", value)?,
            "history" => policy.history = positive_time("history", value)?,
            "state_interval" => state_interval = positive_time("state_interval", value)?,
            "state" => {
                if value.is_empty() {
                    return Err("invalid state \"\": expected a file path".into());
                }
                state = Some(value.to_string());
            }
            "increment" => {
                policy.increment = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(format!("invalid increment \"{value}\": must be on or off")),
                }
            }
            "factor" => {
                policy.factor = value
                    .parse::<f64>()
                    .ok()
                    .filter(|f| f.is_finite() && (1.0..=1000.0).contains(f))
                    .ok_or_else(|| format!("invalid factor \"{value}\": must be 1 to 1000"))?;
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
                        .ok_or_else(|| {
                            format!("invalid widen \"{value}\": must be off or 2 to 255")
                        })?,
                }
            }
            _ => return Err(format!("invalid parameter \"{arg}\"")),
        }
    }
    let (name, size) = zone.ok_or("missing \"zone=NAME:SIZE\"")?;
    // The default cap on escalated bans follows a longer bantime; only a
    // maxtime given shorter than bantime is a contradiction.
    if !seen.contains(&"maxtime") {
        policy.maxtime = policy.maxtime.max(policy.bantime);
    }
    if policy.maxtime < policy.bantime {
        return Err(format!(
            "maxtime ({}s) is shorter than bantime ({}s)",
            policy.maxtime, policy.bantime
        ));
    }
    Ok(ZoneSpec {
        name,
        size,
        policy,
        state,
        state_interval,
    })
}

fn prefix_len(what: &str, value: &str, max: u8) -> Result<u8, String> {
    value
        .parse::<u8>()
        .ok()
        .filter(|p| (1..=max).contains(p))
        .ok_or_else(|| format!("invalid {what} \"{value}\": must be 1 to {max}"))
}

fn positive_time(what: &str, value: &str) -> Result<u32, String> {
    parse_time(value)
        .filter(|&t| t > 0)
        .ok_or_else(|| format!("invalid {what} \"{value}\": expected a time of 1s or more"))
}

/// An HTTP status within `range`.
pub fn parse_status(text: &str, range: core::ops::RangeInclusive<u16>) -> Result<u16, String> {
    text.parse::<u16>()
        .ok()
        .filter(|s| range.contains(s) && text.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            format!(
                "invalid status \"{text}\": must be {} to {}",
                range.start(),
                range.end()
            )
        })
}

/// An address or network; host bits are dropped (as nginx's `allow` does).
/// IPv4-mapped IPv6 (`::ffff:a.b.c.d/96+n`) is folded to IPv4 (`/n`), as
/// clients are: written either way, it matches the same clients.
pub fn parse_network(text: &str) -> Result<IpNet, String> {
    let net = match text.parse::<IpNet>() {
        Ok(net) => net.trunc(),
        Err(_) => text
            .parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("invalid address or network \"{text}\""))?,
    };
    Ok(fold_mapped(net))
}

fn fold_mapped(net: IpNet) -> IpNet {
    let IpNet::V6(v6) = net else { return net };
    match (v6.addr().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
        (Some(v4), Some(len)) => ipnet::Ipv4Net::new(v4, len).map_or(net, IpNet::V4),
        _ => net,
    }
}

/// Log levels a ban message may use, as nginx numbers them.
pub fn parse_log_level(text: &str) -> Result<usize, String> {
    match text {
        "error" => Ok(4),
        "warn" => Ok(5),
        "notice" => Ok(6),
        "info" => Ok(7),
        _ => Err(format!(
            "invalid level \"{text}\": must be info, notice, warn or error"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        for bad in ["", "10x", "500ms", "m", "1m1h", "1s1", "10m10m", "99999y"] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn zone_defaults_and_parameters() {
        let spec = parse_zone(&["zone=cs:10m"]).unwrap();
        assert_eq!(spec.name, "cs");
        assert_eq!(spec.size, 10 << 20);
        assert_eq!(spec.policy, Policy::default());
        assert_eq!((spec.state, spec.state_interval), (None, 10));
        let spec = parse_zone(&[
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
        ])
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
        let err = |args: &[&str]| parse_zone(args).unwrap_err();
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
        assert!(err(&["zone=cs:1m", "state="]).contains("invalid state"));
        assert!(err(&["zone=cs:1m", "state_interval=0"]).contains("invalid state_interval"));
        assert!(err(&["zone=cs:1m", "bantime=1d", "maxtime=1h"]).contains("shorter than bantime"));
        assert!(err(&["zone=cs:1m", "bantime=0"]).contains("invalid bantime \"0\""));
        assert!(err(&["zone=cs:1m", "color=red"]).contains("invalid parameter \"color=red\""));
        assert!(err(&["zone=cs:1m", "oops"]).contains("invalid parameter \"oops\""));
    }

    #[test]
    fn default_maxtime_follows_a_longer_bantime() {
        let spec = parse_zone(&["zone=cs:1m", "bantime=30d"]).unwrap();
        assert_eq!(
            (spec.policy.bantime, spec.policy.maxtime),
            (2_592_000, 2_592_000)
        );
        let spec = parse_zone(&["zone=cs:1m", "bantime=8d", "increment=off"]).unwrap();
        assert_eq!(spec.policy.maxtime, 8 * 86_400);
        let spec = parse_zone(&["zone=cs:1m", "bantime=1h"]).unwrap();
        assert_eq!(spec.policy.maxtime, 7 * 86_400, "the default stays 7 days");
        let err = parse_zone(&["zone=cs:1m", "bantime=30d", "maxtime=1d"]).unwrap_err();
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
