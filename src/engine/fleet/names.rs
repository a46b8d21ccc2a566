//! What a zone keeps in Redis, and the text of it. Every name starts with
//! `authban:ZONE:`, so zones (and other users of the same Redis) never meet:
//!
//! - `authban:ZONE:fail:KEY`: a sorted set of the key's failure times
//!   (milliseconds, Redis's clock), trimmed to findtime and expiring after
//!   it; deleted when the key is banned.
//! - `authban:ZONE:ban:KEY`: `SINCE UNTIL FAILURES OFFENCE`, expiring when
//!   the ban ends (plus history when `increment=on`, so a node that starts
//!   later still escalates).
//! - `authban:ZONE:index`: a sorted set of the banned KEYs, scored by when
//!   their record expires: a load reads the zone's records through it,
//!   newest first, never walking the keyspace.
//! - channel `authban:ZONE:events`: `ban NODE KEY SINCE UNTIL FAILURES
//!   OFFENCE` and `unban NODE KEY`.
//!
//! KEY is an address or `ADDR/LEN`, as the API and the state file write it.

use super::sign::Signer;
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

/// Longest ban record a load accepts: `SINCE UNTIL FAILURES OFFENCE` takes
/// at most 36 bytes, and a signature 65 more; a longer value is not
/// authban's and is skipped.
pub const MAX_RECORD_LEN: usize = 128;

/// One page of a load, bounded on Redis's side: index entries whose record
/// expired are trimmed, then the page's records are read newest first, a
/// record longer than ARGV[4], a key longer than 64 bytes (an IPv6 network
/// takes at most 43) or a name of another type skipped and counted, never
/// sent. KEYS[1] the
/// index, ARGV[1] the records' name prefix, ARGV[2] the page's offset,
/// ARGV[3] its size. Answers `{skipped, listed, {KEY, RECORD, ...}}`.
pub const LOAD_SCRIPT: &str = "\
local now = tonumber(redis.call('TIME')[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. now)
local first = tonumber(ARGV[2])
local names = redis.call('ZREVRANGE', KEYS[1], first, first + tonumber(ARGV[3]) - 1)
local out, skipped = {}, 0
for _, key in ipairs(names) do
  local name = ARGV[1] .. key
  local len = redis.pcall('STRLEN', name)
  if type(len) ~= 'number' or #key > 64 or len > tonumber(ARGV[4]) then
    skipped = skipped + 1
  elseif len > 0 then
    out[#out + 1] = key
    out[#out + 1] = redis.call('GET', name)
  end
end
return {skipped, #names, out}";

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

    /// `authban:ZONE:`, which every name starts with.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub fn fail_key(&self, key: &Key) -> String {
        format!("{}fail:{key}", self.prefix)
    }

    pub fn ban_key(&self, key: &Key) -> String {
        format!("{}ban:{key}", self.prefix)
    }

    /// Claimed by the node that tells CrowdSec of a ban (`SET NX`), so
    /// the fleet sends it once.
    pub fn alert_key(&self, key: &Key) -> String {
        format!("{}alert:{key}", self.prefix)
    }

    pub fn channel(&self) -> String {
        format!("{}events", self.prefix)
    }

    pub fn index_key(&self) -> String {
        format!("{}index", self.prefix)
    }

    /// What a ban record's name starts with (then its KEY).
    pub fn ban_prefix(&self) -> String {
        format!("{}ban:", self.prefix)
    }
}

/// A ban as the fleet passes it around.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RemoteBan {
    pub node: u64,
    pub ban: Ban,
}

/// Why text from Redis is not believed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BadText {
    /// Not authban's (another version's, noise): ignored.
    Malformed,
    /// Unsigned, wrongly signed, or a signed unban replayed later, where
    /// the zone has `sync_key=`: refused and counted.
    Forged,
}

/// How far a signed unban's time may be from this node's clock: an unban
/// seen on the wire cannot be replayed later to lift a newer ban.
pub const MAX_UNBAN_AGE: u32 = 60;

/// `text`, then its signature when the zone signs.
fn signed(text: String, signer: Option<&Signer>) -> String {
    match signer {
        Some(s) => {
            let sig = s.sign(&text);
            text + " " + &sig
        }
        None => text,
    }
}

/// The body of `text` (its signature checked and cut when the zone signs);
/// `prefix` comes before the body in what was signed.
fn verified<'a>(text: &'a str, prefix: &str, signer: Option<&Signer>) -> Result<&'a str, BadText> {
    let Some(s) = signer else { return Ok(text) };
    let (body, sig) = text.rsplit_once(' ').ok_or(BadText::Forged)?;
    if s.verify(&format!("{prefix}{body}"), sig) {
        Ok(body)
    } else {
        Err(BadText::Forged)
    }
}

/// `SINCE UNTIL FAILURES OFFENCE [SIGNATURE]`: a ban record's value; the
/// signature covers the key too (`KEY SINCE UNTIL FAILURES OFFENCE`).
pub fn ban_record(ban: &Ban, signer: Option<&Signer>) -> String {
    let fields = record_fields(ban);
    match signer {
        Some(s) => {
            let sig = s.sign(&format!("{} {fields}", ban.key));
            fields + " " + &sig
        }
        None => fields,
    }
}

fn record_fields(ban: &Ban) -> String {
    format!(
        "{} {} {} {}",
        ban.since, ban.until, ban.failures, ban.offence
    )
}

pub fn parse_ban_record(key: Key, value: &[u8], signer: Option<&Signer>) -> Result<Ban, BadText> {
    let text = core::str::from_utf8(value).map_err(|_| BadText::Malformed)?;
    let body = verified(text, &format!("{key} "), signer)?;
    let mut fields = body.split(' ');
    let ban = ban_fields(key, &mut fields).ok_or(BadText::Malformed)?;
    fields
        .next()
        .is_none()
        .then_some(ban)
        .ok_or(BadText::Malformed)
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
    /// `ban NODE KEY SINCE UNTIL FAILURES OFFENCE` or `unban NODE KEY`; a
    /// signing zone adds its signature, and to an unban the time it was
    /// made (`now_secs`) first.
    pub fn text(&self, signer: Option<&Signer>, now_secs: u32) -> String {
        let text = match self {
            Message::Ban(RemoteBan { node, ban }) => {
                format!("ban {node:016x} {} {}", ban.key, record_fields(ban))
            }
            Message::Unban { node, key } if signer.is_some() => {
                format!("unban {node:016x} {key} {now_secs}")
            }
            Message::Unban { node, key } => format!("unban {node:016x} {key}"),
        };
        signed(text, signer)
    }

    pub fn parse(
        payload: &[u8],
        signer: Option<&Signer>,
        now_secs: u32,
    ) -> Result<Message, BadText> {
        let text = core::str::from_utf8(payload).map_err(|_| BadText::Malformed)?;
        let body = verified(text, "", signer)?;
        Message::parse_body(body, signer.is_some(), now_secs)
    }

    fn parse_body(body: &str, signed: bool, now_secs: u32) -> Result<Message, BadText> {
        let malformed = || BadText::Malformed;
        let mut fields = body.split(' ');
        let kind = fields.next().ok_or_else(malformed)?;
        let node = fields
            .next()
            .and_then(|n| u64::from_str_radix(n, 16).ok())
            .ok_or_else(malformed)?;
        let key = fields.next().and_then(Key::parse).ok_or_else(malformed)?;
        let message = match kind {
            "ban" => Message::Ban(RemoteBan {
                node,
                ban: ban_fields(key, &mut fields).ok_or_else(malformed)?,
            }),
            "unban" => {
                if signed {
                    let at: u32 = fields
                        .next()
                        .and_then(|t| t.parse().ok())
                        .ok_or_else(malformed)?;
                    if at.abs_diff(now_secs) > MAX_UNBAN_AGE {
                        return Err(BadText::Forged);
                    }
                }
                Message::Unban { node, key }
            }
            _ => return Err(malformed()),
        };
        match fields.next() {
            None => Ok(message),
            Some(_) => Err(malformed()),
        }
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
        assert_eq!(names.index_key(), "authban:cs:index");
        assert_eq!(names.ban_prefix(), "authban:cs:ban:");
        assert!(LOAD_SCRIPT.contains("#key > 64"));
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
            assert_eq!(
                Message::parse(message.text(None, 0).as_bytes(), None, 0),
                Ok(message)
            );
        }
        let b = ban("192.0.2.7");
        assert_eq!(
            parse_ban_record(b.key, ban_record(&b, None).as_bytes(), None),
            Ok(b)
        );
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
            assert_eq!(
                Message::parse(bad.as_bytes(), None, 0),
                Err(BadText::Malformed),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_signing_zone_believes_only_its_own_signatures() {
        let signer = Signer::new(b"a fleet key of some length", "cs").unwrap();
        let other = Signer::new(b"a fleet key of some length", "other").unwrap();
        let s = Some(&signer);
        let now = 1_700_000_100;
        let b = ban("192.0.2.7");
        let record = ban_record(&b, s);
        assert_eq!(record.len(), "1700000000 1700000600 25 2".len() + 65);
        assert!(record.len() <= MAX_RECORD_LEN);
        assert_eq!(parse_ban_record(b.key, record.as_bytes(), s), Ok(b));
        // Moved to another key or zone, altered, or unsigned: forged.
        let moved = Key::parse("192.0.2.8").unwrap();
        assert_eq!(
            parse_ban_record(moved, record.as_bytes(), s),
            Err(BadText::Forged)
        );
        assert_eq!(
            parse_ban_record(b.key, record.as_bytes(), Some(&other)),
            Err(BadText::Forged)
        );
        let altered = record.replacen("1700000600", "1900000600", 1);
        assert_eq!(
            parse_ban_record(b.key, altered.as_bytes(), s),
            Err(BadText::Forged)
        );
        let plain = ban_record(&b, None);
        assert_eq!(
            parse_ban_record(b.key, plain.as_bytes(), s),
            Err(BadText::Forged)
        );

        let banned = Message::Ban(RemoteBan { node: 7, ban: b });
        let unbanned = Message::Unban {
            node: 7,
            key: b.key,
        };
        for m in [banned, unbanned] {
            let text = m.text(s, now);
            assert_eq!(Message::parse(text.as_bytes(), s, now + 5), Ok(m));
            assert_eq!(
                Message::parse(text.as_bytes(), Some(&other), now),
                Err(BadText::Forged)
            );
            assert_eq!(
                Message::parse(m.text(None, now).as_bytes(), s, now),
                Err(BadText::Forged)
            );
        }
        // A signed unban replayed later is refused.
        let old = unbanned.text(s, now);
        assert_eq!(
            Message::parse(old.as_bytes(), s, now + MAX_UNBAN_AGE + 1),
            Err(BadText::Forged)
        );
    }
}
