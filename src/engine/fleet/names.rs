//! What a zone keeps in Redis, and the text of it. Every name starts with
//! `authban:ZONE:`, so zones (and other users of the same Redis) never meet:
//!
//! - `authban:ZONE:fail:KEY`: a sorted set of the key's failure times
//!   (milliseconds, Redis's clock), trimmed to findtime and expiring after
//!   it; deleted when the key is banned.
//! - `authban:ZONE:ban:KEY`: `SINCE UNTIL FAILURES OFFENCE`, expiring when
//!   the ban ends (plus history when `increment=on`, so a node that starts
//!   later still escalates).
//! - channel `authban:ZONE:events`: `ban NODE KEY SINCE UNTIL FAILURES
//!   OFFENCE` and `unban NODE KEY`.
//!
//! KEY is an address or `ADDR/LEN`, as the API and the state file write it.

use crate::engine::key::Key;
use crate::engine::table::Ban;

/// Adds one failure to a key's window and answers how many are in it:
/// atomic in Redis, on Redis's clock, so nodes' clocks need not agree on
/// the window. KEYS[1] the window, ARGV[1] findtime in ms, ARGV[2] a
/// member unique to this failure.
pub const COUNT_SCRIPT: &str = "\
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - tonumber(ARGV[1]))
redis.call('ZADD', KEYS[1], now, ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return redis.call('ZCARD', KEYS[1])";

/// A zone's names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    prefix: String,
}

impl Names {
    pub fn new(zone: &str) -> Names {
        Names {
            prefix: format!("authban:{zone}:"),
        }
    }

    pub fn fail_key(&self, key: &Key) -> String {
        format!("{}fail:{key}", self.prefix)
    }

    pub fn ban_key(&self, key: &Key) -> String {
        format!("{}ban:{key}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    /// A SCAN pattern matching the zone's ban records, glob characters of
    /// the zone name escaped.
    pub fn ban_pattern(&self) -> String {
        let mut pattern = String::with_capacity(self.prefix.len() + 8);
        for c in self.prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                pattern.push('\\');
            }
            pattern.push(c);
        }
        pattern.push_str("ban:*");
        pattern
    }

    /// The key a ban record's name is about.
    pub fn key_of_ban_record(&self, name: &[u8]) -> Option<Key> {
        let name = core::str::from_utf8(name).ok()?;
        Key::parse(name.strip_prefix(&self.prefix)?.strip_prefix("ban:")?)
    }
}

/// A ban as the fleet passes it around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteBan {
    pub node: u64,
    pub ban: Ban,
}

/// `SINCE UNTIL FAILURES OFFENCE`: a ban record's value.
pub fn ban_record(ban: &Ban) -> String {
    format!(
        "{} {} {} {}",
        ban.since, ban.until, ban.failures, ban.offence
    )
}

pub fn parse_ban_record(key: Key, value: &[u8]) -> Option<Ban> {
    let text = core::str::from_utf8(value).ok()?;
    let mut fields = text.split(' ');
    let ban = ban_fields(key, &mut fields)?;
    fields.next().is_none().then_some(ban)
}

fn ban_fields<'a>(key: Key, fields: &mut impl Iterator<Item = &'a str>) -> Option<Ban> {
    let mut number = || fields.next()?.parse::<u32>().ok();
    let (since, until, failures, offence) = (number()?, number()?, number()?, number()?);
    (since <= until).then_some(Ban {
        key,
        since,
        until,
        failures,
        offence: u8::try_from(offence).ok()?,
    })
}

/// A message on the zone's channel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message {
    Ban(RemoteBan),
    Unban { node: u64, key: Key },
}

impl Message {
    pub fn text(&self) -> String {
        match self {
            Message::Ban(RemoteBan { node, ban }) => {
                format!("ban {node:016x} {} {}", ban.key, ban_record(ban))
            }
            Message::Unban { node, key } => format!("unban {node:016x} {key}"),
        }
    }

    pub fn parse(payload: &[u8]) -> Option<Message> {
        let text = core::str::from_utf8(payload).ok()?;
        let mut fields = text.split(' ');
        let kind = fields.next()?;
        let node = u64::from_str_radix(fields.next()?, 16).ok()?;
        let key = Key::parse(fields.next()?)?;
        let message = match kind {
            "ban" => Message::Ban(RemoteBan {
                node,
                ban: ban_fields(key, &mut fields)?,
            }),
            "unban" => Message::Unban { node, key },
            _ => return None,
        };
        fields.next().is_none().then_some(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ban(key: &str) -> Ban {
        Ban {
            key: Key::parse(key).unwrap(),
            since: 1_700_000_000,
            until: 1_700_000_600,
            failures: 25,
            offence: 2,
        }
    }

    #[test]
    fn names_are_prefixed_per_zone() {
        let names = Names::new("cs");
        let key = Key::parse("2001:db8::/64").unwrap();
        assert_eq!(names.ban_key(&key), "authban:cs:ban:2001:db8::/64");
        assert_eq!(names.fail_key(&key), "authban:cs:fail:2001:db8::/64");
        assert_eq!(names.channel(), "authban:cs:events");
        assert_eq!(
            names.key_of_ban_record(b"authban:cs:ban:2001:db8::/64"),
            Some(key)
        );
        assert_eq!(names.key_of_ban_record(b"authban:other:ban:1.2.3.4"), None);
        assert_eq!(Names::new("a*b").ban_pattern(), "authban:a\\*b:ban:*");
    }

    #[test]
    fn messages_round_trip() {
        for message in [
            Message::Ban(RemoteBan {
                node: 0xfeed,
                ban: ban("192.0.2.7"),
            }),
            Message::Unban {
                node: u64::MAX,
                key: Key::parse("10.0.0.0/8").unwrap(),
            },
        ] {
            assert_eq!(Message::parse(message.text().as_bytes()), Some(message));
        }
        let b = ban("192.0.2.7");
        assert_eq!(parse_ban_record(b.key, ban_record(&b).as_bytes()), Some(b));
    }

    #[test]
    fn damaged_text_is_refused() {
        for bad in [
            "",
            "ban",
            "ban zz 1.2.3.4 1 2 3 4",
            "ban 1 1.2.3.4 1 2 3",
            "ban 1 1.2.3.4 1 2 3 4 5",
            "ban 1 1.2.3.4 5 2 3 4",
            "ban 1 1.2.3.4 1 2 3 300",
            "unban 1 notanaddress",
            "kick 1 1.2.3.4",
        ] {
            assert_eq!(Message::parse(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
