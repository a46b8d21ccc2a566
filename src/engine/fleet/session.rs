//! One Redis connection's conversation, as a state machine over bytes:
//! callers hand it what the socket read ([`Session::feed`]) and send what
//! it queued ([`Session::output`]). RESP is read and written by the
//! `redis-protocol` crate, never by hand.
//!
//! A session of [`Role::Commands`] authenticates, selects its database and
//! loads the count script, then takes failures, bans, unbans and loads; one
//! of [`Role::Subscriber`] authenticates and subscribes to the zone's
//! channel, then reports what other nodes publish. Every command's reply
//! is matched in order against what was sent (`pending`).

use std::collections::VecDeque;

use redis_protocol::resp2::decode::decode;
use redis_protocol::resp2::encode::encode_borrowed;
use redis_protocol::resp2::types::{BorrowedFrame, OwnedFrame};

use super::names::{self, Message, Names, RemoteBan, COUNT_SCRIPT};
use super::url::SyncUrl;
use crate::engine::key::Key;
use crate::engine::table::Ban;

/// Keys asked for per SCAN step while loading bans.
const SCAN_COUNT: &str = "500";
/// A reply larger than this means the peer is not a Redis we can trust.
const MAX_BUFFERED: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Commands,
    Subscriber,
}

/// What a session tells its owner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// The handshake is done: commands can be sent, or the subscription
    /// is in place.
    Ready,
    /// Redis refused the handshake (a wrong password, an unknown database):
    /// its error text. The link is of no use until the configuration or
    /// Redis changes.
    Refused(String),
    /// The fleet's failures of a key in its window, this one included.
    FleetCount {
        key: Key,
        count: u32,
    },
    /// Another node's ban or unban.
    Ban(RemoteBan),
    Unban {
        node: u64,
        key: Key,
    },
    /// A page of the bans stored in Redis, during a load.
    Loaded(Vec<Ban>),
    LoadDone,
    /// Redis answered a command with an error.
    CommandError(String),
}

/// A protocol violation: the connection cannot be trusted any more.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broken(pub String);

/// What the reply to a sent command means.
#[derive(Debug)]
enum Expect {
    Handshake,
    /// The last handshake step: its reply makes the session ready.
    HandshakeLast,
    ScriptLoad,
    /// The script again, after Redis forgot it (SCRIPT FLUSH).
    ScriptReload,
    Count(Key),
    Scan,
    Fetch {
        keys: Vec<Key>,
        last: bool,
    },
    /// Replies whose content does not matter (SET, DEL, PUBLISH).
    Ack,
}

pub struct Session {
    role: Role,
    names: Names,
    node: u64,
    out: Vec<u8>,
    input: Vec<u8>,
    pending: VecDeque<Expect>,
    ready: bool,
    script_sha: Option<String>,
    /// Makes every failure's member in a window unique.
    seq: u64,
}

impl Session {
    /// A session for `zone`'s link, with the handshake queued.
    pub fn new(role: Role, zone: &str, node: u64, url: &SyncUrl) -> Session {
        let mut s = Session {
            role,
            names: Names::new(zone),
            node,
            out: Vec::with_capacity(256),
            input: Vec::new(),
            pending: VecDeque::new(),
            ready: false,
            script_sha: None,
            seq: 0,
        };
        if let Some(password) = &url.password {
            match &url.user {
                Some(user) => s.command(&["AUTH", user, password], Expect::Handshake),
                None => s.command(&["AUTH", password], Expect::Handshake),
            }
        }
        if url.db != 0 {
            s.command(&["SELECT", &url.db.to_string()], Expect::Handshake);
        }
        match role {
            Role::Commands => s.command(&["SCRIPT", "LOAD", COUNT_SCRIPT], Expect::ScriptLoad),
            Role::Subscriber => {
                let channel = s.names.channel();
                s.command(&["SUBSCRIBE", &channel], Expect::HandshakeLast)
            }
        }
        s
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Whether a reply is owed: a link that waits too long is dead.
    pub fn awaiting_reply(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Bytes to send.
    pub fn output(&self) -> &[u8] {
        &self.out
    }

    /// `n` bytes of the output were sent.
    pub fn sent(&mut self, n: usize) {
        self.out.drain(..n.min(self.out.len()));
    }

    fn command(&mut self, args: &[&str], expect: Expect) {
        let frames: Vec<BorrowedFrame<'_>> = args
            .iter()
            .map(|a| BorrowedFrame::BulkString(a.as_bytes()))
            .collect();
        let frame = BorrowedFrame::Array(&frames);
        let start = self.out.len();
        self.out.resize(start + frame.encode_len(false), 0);
        // The buffer was sized by the encoder itself, so it cannot fail.
        let written = encode_borrowed(&mut self.out[start..], &frame, false).unwrap_or(0);
        self.out.truncate(start + written);
        self.pending.push_back(expect);
    }

    /// Counts one failure of `key` in the fleet's window; the reply comes
    /// back as [`Event::FleetCount`]. False (nothing sent) before the
    /// session is ready.
    pub fn count_failure(&mut self, key: &Key, findtime_secs: u32) -> bool {
        let Some(sha) = self.script_sha.clone().filter(|_| self.ready) else {
            return false;
        };
        self.seq += 1;
        let member = format!("{:016x}:{}:{}", self.node, std::process::id(), self.seq);
        let window = self.names.fail_key(key);
        let findtime_ms = (u64::from(findtime_secs) * 1000).to_string();
        self.command(
            &["EVALSHA", &sha, "1", &window, &findtime_ms, &member],
            Expect::Count(*key),
        );
        true
    }

    /// Stores and announces a ban; `keep_secs` after its end the record
    /// stays (the offence history). False before the session is ready.
    pub fn publish_ban(&mut self, ban: &Ban, keep_secs: u32) -> bool {
        if !self.ready || self.role != Role::Commands {
            return false;
        }
        let record = names::ban_record(ban);
        let expires = ban.until.saturating_add(keep_secs).max(1).to_string();
        let ban_key = self.names.ban_key(&ban.key);
        self.command(&["SET", &ban_key, &record, "EXAT", &expires], Expect::Ack);
        let fail_key = self.names.fail_key(&ban.key);
        self.command(&["DEL", &fail_key], Expect::Ack);
        let message = Message::Ban(RemoteBan {
            node: self.node,
            ban: *ban,
        });
        self.publish(&message);
        true
    }

    /// Forgets a key fleet-wide: its ban record and its failures.
    pub fn publish_unban(&mut self, key: &Key) -> bool {
        if !self.ready || self.role != Role::Commands {
            return false;
        }
        let ban_key = self.names.ban_key(key);
        let fail_key = self.names.fail_key(key);
        self.command(&["DEL", &ban_key, &fail_key], Expect::Ack);
        self.publish(&Message::Unban {
            node: self.node,
            key: *key,
        });
        true
    }

    fn publish(&mut self, message: &Message) {
        let channel = self.names.channel();
        self.command(&["PUBLISH", &channel, &message.text()], Expect::Ack);
    }

    /// Reads every ban record of the zone: [`Event::Loaded`] pages, then
    /// [`Event::LoadDone`].
    pub fn load_bans(&mut self) -> bool {
        if !self.ready || self.role != Role::Commands {
            return false;
        }
        self.scan("0");
        true
    }

    fn scan(&mut self, cursor: &str) {
        let pattern = self.names.ban_pattern();
        self.command(
            &["SCAN", cursor, "MATCH", &pattern, "COUNT", SCAN_COUNT],
            Expect::Scan,
        );
    }

    /// Takes bytes read from the connection; what they mean is appended to
    /// `events`. An error means the connection must be closed.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), Broken> {
        self.input.extend_from_slice(data);
        let mut used = 0;
        let result = loop {
            // The decoder takes an empty buffer for a bad frame type.
            if used == self.input.len() {
                break Ok(());
            }
            match decode(&self.input[used..]) {
                Ok(Some((frame, len))) => {
                    used += len;
                    if let Err(broken) = self.reply(frame, events) {
                        break Err(broken);
                    }
                }
                Ok(None) => break Ok(()),
                Err(e) => break Err(Broken(format!("bad reply from Redis: {e}"))),
            }
        };
        self.input.drain(..used);
        if result.is_ok() && self.input.len() > MAX_BUFFERED {
            return Err(Broken("reply too large".into()));
        }
        result
    }

    fn reply(&mut self, frame: OwnedFrame, events: &mut Vec<Event>) -> Result<(), Broken> {
        if self.role == Role::Subscriber && self.ready {
            if let Some(event) = pushed_message(&frame) {
                events.extend(event);
                return Ok(());
            }
        }
        let expect = self
            .pending
            .pop_front()
            .ok_or_else(|| Broken("a reply nobody asked for".into()))?;
        if let OwnedFrame::Error(text) = &frame {
            return match expect {
                Expect::Handshake | Expect::HandshakeLast | Expect::ScriptLoad => {
                    events.push(Event::Refused(text.clone()));
                    Err(Broken(text.clone()))
                }
                Expect::Count(_) if text.starts_with("NOSCRIPT") => {
                    // This failure is lost; the next ones count again.
                    self.command(&["SCRIPT", "LOAD", COUNT_SCRIPT], Expect::ScriptReload);
                    events.push(Event::CommandError(text.clone()));
                    Ok(())
                }
                _ => {
                    events.push(Event::CommandError(text.clone()));
                    Ok(())
                }
            };
        }
        match expect {
            Expect::Handshake | Expect::Ack => {}
            Expect::HandshakeLast => {
                self.ready = true;
                events.push(Event::Ready);
            }
            Expect::ScriptLoad => {
                let sha = text_of(&frame).ok_or_else(|| Broken("bad SCRIPT LOAD reply".into()))?;
                self.script_sha = Some(sha);
                self.ready = true;
                events.push(Event::Ready);
            }
            Expect::ScriptReload => {
                let sha = text_of(&frame).ok_or_else(|| Broken("bad SCRIPT LOAD reply".into()))?;
                self.script_sha = Some(sha);
            }
            Expect::Count(key) => {
                let OwnedFrame::Integer(n) = frame else {
                    return Err(Broken("bad count reply".into()));
                };
                events.push(Event::FleetCount {
                    key,
                    count: u32::try_from(n).unwrap_or(u32::MAX),
                });
            }
            Expect::Scan => self.scanned(frame, events)?,
            Expect::Fetch { keys, last } => {
                let OwnedFrame::Array(values) = frame else {
                    return Err(Broken("bad MGET reply".into()));
                };
                let bans = keys
                    .into_iter()
                    .zip(values)
                    .filter_map(|(key, value)| match value {
                        OwnedFrame::BulkString(v) => names::parse_ban_record(key, &v),
                        _ => None,
                    })
                    .collect();
                events.push(Event::Loaded(bans));
                if last {
                    events.push(Event::LoadDone);
                }
            }
        }
        Ok(())
    }

    /// A SCAN step's reply: fetch the records it named, then scan on.
    fn scanned(&mut self, frame: OwnedFrame, events: &mut Vec<Event>) -> Result<(), Broken> {
        let bad = || Broken("bad SCAN reply".into());
        let OwnedFrame::Array(mut parts) = frame else {
            return Err(bad());
        };
        let (Some(OwnedFrame::Array(found)), Some(cursor)) = (parts.pop(), parts.pop()) else {
            return Err(bad());
        };
        let cursor = text_of(&cursor).ok_or_else(bad)?;
        let last = cursor == "0";
        let mut names_found = Vec::new();
        let mut keys = Vec::new();
        for name in found {
            let OwnedFrame::BulkString(name) = name else {
                return Err(bad());
            };
            if let Some(key) = self.names.key_of_ban_record(&name) {
                keys.push(key);
                names_found.push(String::from_utf8_lossy(&name).into_owned());
            }
        }
        if keys.is_empty() {
            if last {
                events.push(Event::LoadDone);
            }
        } else {
            let mut args = vec!["MGET"];
            args.extend(names_found.iter().map(String::as_str));
            self.command(&args, Expect::Fetch { keys, last });
        }
        if !last {
            self.scan(&cursor);
        }
        Ok(())
    }
}

/// A message pushed to a subscriber: `None` if the frame is a reply.
fn pushed_message(frame: &OwnedFrame) -> Option<Option<Event>> {
    let OwnedFrame::Array(parts) = frame else {
        return None;
    };
    let [kind, _channel, payload] = parts.as_slice() else {
        return None;
    };
    if text_of(kind).as_deref() != Some("message") {
        return None;
    }
    let OwnedFrame::BulkString(payload) = payload else {
        return Some(None);
    };
    // A message we cannot read is ignored: another version's, or noise.
    Some(Message::parse(payload).map(|m| match m {
        Message::Ban(ban) => Event::Ban(ban),
        Message::Unban { node, key } => Event::Unban { node, key },
    }))
}

fn text_of(frame: &OwnedFrame) -> Option<String> {
    match frame {
        OwnedFrame::BulkString(b) | OwnedFrame::SimpleString(b) => {
            String::from_utf8(b.clone()).ok()
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
