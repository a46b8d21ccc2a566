//! `authban_crowdsec zone=NAME url=http[s]://HOST[:PORT] bouncer_key_file=FILE
//! [machine_credentials_file=FILE] [interval=TIME] [ca=FILE] [wide=on|off]`,
//! read as nginx reads its
//! own directives: every parameter once, each value checked, the error
//! naming the parameter.

use crate::engine::directive::parse_time;

/// LAPI's stream pulls, by default (the Lua bouncer's `UPDATE_FREQUENCY`).
pub const DEFAULT_INTERVAL: u32 = 10;

/// Where LAPI listens: `http://HOST[:PORT][/]` (port 8080 by default, as
/// CrowdSec's), or `https://` (443).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LapiUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
}

impl core::fmt::Display for LapiUrl {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CrowdsecSpec {
    pub zone: String,
    pub url: LapiUrl,
    pub bouncer_key_file: String,
    pub machine_credentials_file: Option<String>,
    /// Seconds between stream pulls.
    pub interval: u32,
    /// `https://`: the certificates LAPI's must verify against.
    pub ca: Option<String>,
    /// Decisions on networks wider than the zone bans by itself are
    /// applied (as `sync_wide=on`).
    pub wide: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CrowdsecDirectiveError {
    #[error("invalid parameter \"{0}\"")]
    InvalidParameter(String),
    #[error("duplicate parameter \"{0}=\"")]
    DuplicateParameter(String),
    #[error("missing \"{0}=\"")]
    Missing(&'static str),
    #[error("invalid url \"{0}\": expected http://HOST[:PORT] (https:// for TLS)")]
    Url(String),
    #[error("invalid interval \"{0}\": expected a time of 1s or more")]
    Interval(String),
    #[error("invalid {0} \"\": expected a file path")]
    EmptyPath(&'static str),
    #[error("invalid wide \"{0}\": expected on or off")]
    Wide(String),
    #[error("an https:// url needs \"ca=\" (the certificates LAPI's must verify against)")]
    TlsWithoutCa,
    #[error("\"ca=\" is for an https:// url")]
    CaWithoutTls,
}

/// Reads the directive's arguments (after its name).
pub fn parse_crowdsec(args: &[&str]) -> Result<CrowdsecSpec, CrowdsecDirectiveError> {
    use CrowdsecDirectiveError as E;
    let (mut zone, mut url, mut key, mut machine, mut interval) = (None, None, None, None, None);
    let (mut ca, mut wide) = (None, None);
    for arg in args {
        let Some((name, value)) = arg.split_once('=') else {
            return Err(E::InvalidParameter((*arg).to_string()));
        };
        let duplicate = || E::DuplicateParameter(name.to_string());
        match name {
            "zone" => {
                if value.is_empty() {
                    return Err(E::Missing("zone"));
                }
                if zone.replace(value.to_string()).is_some() {
                    return Err(duplicate());
                }
            }
            "url" => {
                let parsed = parse_lapi_url(value).ok_or_else(|| E::Url(value.to_string()))?;
                if url.replace(parsed).is_some() {
                    return Err(duplicate());
                }
            }
            "bouncer_key_file" | "machine_credentials_file" | "ca" => {
                let (slot, param) = match name {
                    "bouncer_key_file" => (&mut key, "bouncer_key_file"),
                    "ca" => (&mut ca, "ca"),
                    _ => (&mut machine, "machine_credentials_file"),
                };
                if value.is_empty() {
                    return Err(E::EmptyPath(param));
                }
                if slot.replace(value.to_string()).is_some() {
                    return Err(duplicate());
                }
            }
            "interval" => {
                let secs = parse_time(value)
                    .filter(|&s| s >= 1)
                    .ok_or_else(|| E::Interval(value.to_string()))?;
                if interval.replace(secs).is_some() {
                    return Err(duplicate());
                }
            }
            "wide" => {
                let on = match value {
                    "on" => true,
                    "off" => false,
                    _ => return Err(E::Wide(value.to_string())),
                };
                if wide.replace(on).is_some() {
                    return Err(duplicate());
                }
            }
            _ => return Err(E::InvalidParameter((*arg).to_string())),
        }
    }
    match (&url, &ca) {
        (Some(u), None) if u.tls => return Err(E::TlsWithoutCa),
        (Some(u), Some(_)) if !u.tls => return Err(E::CaWithoutTls),
        _ => {}
    }
    Ok(CrowdsecSpec {
        zone: zone.ok_or(E::Missing("zone"))?,
        url: url.ok_or(E::Missing("url"))?,
        bouncer_key_file: key.ok_or(E::Missing("bouncer_key_file"))?,
        machine_credentials_file: machine,
        interval: interval.unwrap_or(DEFAULT_INTERVAL),
        ca,
        wide: wide.unwrap_or(false),
    })
}

/// `http://HOST[:PORT][/]` or `https://...`: a host name, an IPv4 address
/// or a bracketed IPv6 one; no user, path or query (LAPI's paths are
/// fixed).
pub fn parse_lapi_url(text: &str) -> Option<LapiUrl> {
    let (tls, rest) = if let Some(rest) = text.strip_prefix("http://") {
        (false, rest)
    } else {
        (true, text.strip_prefix("https://")?)
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    let (host, port) = if let Some(v6) = rest.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        host.parse::<std::net::Ipv6Addr>().ok()?;
        (host, after.strip_prefix(':'))
    } else {
        match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        }
    };
    let host_ok = !host.is_empty()
        && host.len() <= 253
        && (host.contains(':')
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'));
    if !host_ok {
        return None;
    }
    let port = match port {
        None if rest.ends_with(']') || !rest.contains(':') => {
            if tls {
                443
            } else {
                8080
            }
        }
        None => return None,
        Some(p) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            p.parse::<u16>().ok().filter(|&p| p > 0)?
        }
        Some(_) => return None,
    };
    Some(LapiUrl {
        tls,
        host: host.to_string(),
        port,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use CrowdsecDirectiveError as E;

    #[test]
    fn reads_the_directive() {
        let spec = parse_crowdsec(&[
            "zone=api",
            "url=http://127.0.0.1:8080",
            "bouncer_key_file=crowdsec/bouncer.key",
            "machine_credentials_file=/etc/crowdsec/authban.yaml",
            "interval=30s",
        ])
        .unwrap();
        assert_eq!(spec.zone, "api");
        assert_eq!(spec.url.to_string(), "http://127.0.0.1:8080");
        assert_eq!(spec.interval, 30);
        assert_eq!(
            spec.machine_credentials_file.as_deref(),
            Some("/etc/crowdsec/authban.yaml")
        );
        let spec = parse_crowdsec(&[
            "url=https://lapi.example/",
            "bouncer_key_file=k",
            "zone=z",
            "ca=c.pem",
        ])
        .unwrap();
        assert_eq!(spec.interval, DEFAULT_INTERVAL);
        assert_eq!(spec.ca.as_deref(), Some("c.pem"));
        assert!(!spec.wide);
        assert_eq!(spec.url.to_string(), "https://lapi.example:443");
        assert_eq!(spec.machine_credentials_file, None);
    }

    #[test]
    fn names_what_is_wrong() {
        let base = ["zone=z", "url=http://h:1", "bouncer_key_file=k"];
        let with = |extra: &str| {
            let mut args = base.to_vec();
            args.push(extra);
            parse_crowdsec(&args).unwrap_err()
        };
        assert_eq!(with("zone=y"), E::DuplicateParameter("zone".into()));
        assert_eq!(with("interval=0"), E::Interval("0".into()));
        assert_eq!(with("interval=10ms"), E::Interval("10ms".into()));
        assert_eq!(with("sync=x"), E::InvalidParameter("sync=x".into()));
        assert_eq!(with("oops"), E::InvalidParameter("oops".into()));
        assert_eq!(with("wide=yes"), E::Wide("yes".into()));
        assert_eq!(with("ca=c.pem"), E::CaWithoutTls);
        assert!(parse_crowdsec(&[base[0], base[2], "wide=on"]).is_err());
        assert_eq!(
            parse_crowdsec(&["zone=z", "url=https://h", "bouncer_key_file=k"]).unwrap_err(),
            E::TlsWithoutCa
        );
        assert_eq!(
            with("machine_credentials_file="),
            E::EmptyPath("machine_credentials_file")
        );
        assert_eq!(
            parse_crowdsec(&["zone=z", "url=http://h"]).unwrap_err(),
            E::Missing("bouncer_key_file")
        );
        assert_eq!(
            parse_crowdsec(&["zone=z", "bouncer_key_file=k"]).unwrap_err(),
            E::Missing("url")
        );
        assert_eq!(
            E::Url("ftp://h".into()).to_string(),
            "invalid url \"ftp://h\": expected http://HOST[:PORT] (https:// for TLS)"
        );
    }

    #[test]
    fn urls() {
        let u = |t: &str| parse_lapi_url(t).map(|u| u.to_string());
        assert_eq!(u("http://[::1]:8081").as_deref(), Some("http://[::1]:8081"));
        assert_eq!(u("http://[::1]").as_deref(), Some("http://[::1]:8080"));
        assert_eq!(u("http://lapi").as_deref(), Some("http://lapi:8080"));
        for bad in [
            "",
            "http://",
            "http://:80",
            "http://h:",
            "http://h:0",
            "http://h:65536",
            "http://u@h:1",
            "http://h:1/v1",
            "http://h:1?x",
            "ftp://h",
            "http://[zz]:1",
            "http://h h",
            "http://h:1:2",
        ] {
            assert_eq!(u(bad), None, "{bad:?}");
        }
    }
}
