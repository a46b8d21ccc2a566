//! What authban tells LAPI as a machine: its login, and a ban it made as
//! an alert carrying one decision, in the shapes LAPI 1.4.6 accepts (see
//! `tests/common/crowdsec.rs`). Written with serde, so every value is
//! escaped as JSON wants.

use serde::{Deserialize, Serialize};

use crate::engine::api::iso8601;
use crate::engine::table::Ban;

/// `POST /v1/watchers/login`'s body.
pub fn login_body(machine_id: &str, password: &str) -> Vec<u8> {
    #[derive(Serialize)]
    struct Login<'a> {
        machine_id: &'a str,
        password: &'a str,
    }
    serde_json::to_vec(&Login {
        machine_id,
        password,
    })
    .unwrap_or_default()
}

/// A login's token and when it expires (unix seconds).
#[derive(Clone, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    pub expires: u64,
}

impl core::fmt::Debug for Token {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Token(.., expires {})", self.expires)
    }
}

/// Reads a login's answer: `{"code":200,"expire":"RFC 3339","token":"JWT"}`.
/// A token that is not printable ASCII (it goes into a header) or an
/// expiry that is not a time is no token.
pub fn parse_login(body: &[u8]) -> Option<Token> {
    #[derive(Deserialize)]
    struct Answer {
        token: String,
        expire: String,
    }
    let answer: Answer = serde_json::from_slice(body).ok()?;
    let printable = !answer.token.is_empty()
        && answer.token.len() <= 8192
        && answer.token.bytes().all(|b| b.is_ascii_graphic());
    if !printable {
        return None;
    }
    Some(Token {
        expires: parse_rfc3339(&answer.expire)?,
        token: answer.token,
    })
}

/// `YYYY-MM-DDTHH:MM:SS[.frac](Z|±HH:MM)` to unix seconds.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |from: usize, len: usize| -> Option<i64> {
        let s = text.get(from..from + len)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let (year, month, day) = (num(0, 4)?, num(5, 2)?, num(8, 2)?);
    let (hour, minute, second) = (num(11, 2)?, num(14, 2)?, num(17, 2)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut i = 19;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let digits = b[i..].iter().take_while(|c| c.is_ascii_digit()).count();
        if digits == 0 {
            return None;
        }
        i += digits;
    }
    let offset = match &text[i..] {
        "Z" | "z" => 0,
        zone if zone.len() == 6
            && matches!(zone.as_bytes()[0], b'+' | b'-')
            && zone.as_bytes()[3] == b':' =>
        {
            let (h, m) = (num(i + 1, 2)?, num(i + 4, 2)?);
            let secs = h * 3600 + m * 60;
            if zone.starts_with('-') {
                -secs
            } else {
                secs
            }
        }
        _ => return None,
    };
    // Howard Hinnant's days-from-civil algorithm.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hour * 3600 + minute * 60 + second - offset;
    u64::try_from(secs).ok()
}

/// `POST /v1/alerts`'s body for a ban authban made in `zone`: one alert,
/// scenario `authban/ZONE`, carrying one decision of type ban for the
/// ban's time left from `now` (unix seconds).
pub fn alert_body(zone: &str, ban: &Ban, now: u32) -> Vec<u8> {
    #[derive(Serialize)]
    struct Source {
        scope: &'static str,
        value: String,
    }
    #[derive(Serialize)]
    struct Decision<'a> {
        origin: &'static str,
        #[serde(rename = "type")]
        kind: &'static str,
        scope: &'static str,
        value: String,
        duration: String,
        scenario: &'a str,
    }
    #[derive(Serialize)]
    struct Alert<'a> {
        scenario: &'a str,
        scenario_hash: &'static str,
        scenario_version: &'static str,
        message: String,
        events_count: u32,
        start_at: String,
        stop_at: String,
        capacity: u32,
        leakspeed: &'static str,
        simulated: bool,
        events: [(); 0],
        source: Source,
        decisions: [Decision<'a>; 1],
    }
    let scenario = format!("authban/{zone}");
    let scope = if ban.key.raw_prefix() == 128 {
        "Ip"
    } else {
        "Range"
    };
    let value = ban.key.to_string();
    let alert = Alert {
        scenario: &scenario,
        scenario_hash: "",
        scenario_version: "",
        message: format!(
            "authban: zone {zone} banned {value} after {} failures",
            ban.failures
        ),
        events_count: ban.failures.max(1),
        start_at: iso8601(ban.since),
        stop_at: iso8601(now),
        capacity: 0,
        leakspeed: "0",
        simulated: false,
        events: [],
        source: Source {
            scope,
            value: value.clone(),
        },
        decisions: [Decision {
            origin: "authban",
            kind: "ban",
            scope,
            value,
            duration: format!("{}s", ban.until.saturating_sub(now).max(1)),
            scenario: &scenario,
        }],
    };
    serde_json::to_vec(&[alert]).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::key::Key;

    #[test]
    fn login_both_ways() {
        assert_eq!(
            login_body("node\"1", "p"),
            br#"{"machine_id":"node\"1","password":"p"}"#
        );
        let token =
            parse_login(br#"{"code":200,"expire":"2026-12-05T16:43:26Z","token":"eyJh.eyJ.sig"}"#)
                .unwrap();
        assert_eq!(token.token, "eyJh.eyJ.sig");
        assert_eq!(token.expires, 1_796_489_006);
        assert!(!format!("{token:?}").contains("eyJ"));
        assert_eq!(parse_login(br#"{"code":401,"message":"no"}"#), None);
        assert_eq!(
            parse_login(br#"{"expire":"2026-12-05T16:43:26Z","token":"a b"}"#),
            None
        );
    }

    #[test]
    fn rfc3339_round_trips_iso8601() {
        for secs in [0u32, 86_399, 951_782_400, 1_796_489_006, u32::MAX] {
            assert_eq!(parse_rfc3339(&iso8601(secs)), Some(u64::from(secs)));
        }
        assert_eq!(
            parse_rfc3339("2026-12-05T17:43:26.5+01:00"),
            Some(1_796_489_006)
        );
        assert_eq!(
            parse_rfc3339("2026-12-05T15:43:26-01:00"),
            Some(1_796_489_006)
        );
        for bad in [
            "",
            "2026-12-05",
            "2026-13-05T00:00:00Z",
            "2026-12-05T24:00:00Z",
            "2026-12-05T00:00:00",
            "2026-12-05T00:00:00.Z",
            "x026-12-05T00:00:00Z",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn an_alert_as_lapi_takes_it() {
        let ban = Ban {
            key: Key::parse("192.0.2.7").unwrap(),
            since: 1_796_489_000,
            until: 1_796_489_600,
            failures: 25,
            offence: 1,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&alert_body("api", &ban, 1_796_489_006)).unwrap();
        let alert = &body[0];
        assert_eq!(alert["scenario"], "authban/api");
        assert_eq!(alert["events_count"], 25);
        assert_eq!(alert["source"]["scope"], "Ip");
        assert_eq!(alert["events"], serde_json::json!([]));
        let d = &alert["decisions"][0];
        assert_eq!(d["type"], "ban");
        assert_eq!(d["origin"], "authban");
        assert_eq!(d["value"], "192.0.2.7");
        assert_eq!(d["duration"], "594s");
        let range = Ban {
            key: Key::parse("2001:db8::/48").unwrap(),
            ..ban
        };
        let body: serde_json::Value =
            serde_json::from_slice(&alert_body("api", &range, 1_796_489_006)).unwrap();
        assert_eq!(body[0]["decisions"][0]["scope"], "Range");
        assert_eq!(body[0]["decisions"][0]["value"], "2001:db8::/48");
    }
}
