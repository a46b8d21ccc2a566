//! One Redis connection's conversation, as a state machine over bytes:
//! callers hand it what the socket read ([`Session::feed`]) and send what
//! it queued ([`Session::output`]). RESP is read and written by the
//! `redis-protocol` crate, but for the failure command and its count,
//! which every failing request costs: those are written and read in place
//! (`super::wire`), held by tests to what the crate writes and reads.
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

use super::names::{
    self, BadText, Message, Names, RemoteBan, COUNT_SCRIPT, LOAD_SCRIPT, MAX_RECORD_LEN,
};
use super::sign::Signer;
use super::url::SyncUrl;
use super::wire::{self, Decimal, KeyText};
use crate::engine::key::Key;
use crate::engine::table::Ban;

/// The longest an alert's claim holds (seconds): the window in which
/// nodes may ban the same key before they hear of each other's ban.
const CLAIM_SECS: u32 = 60;
/// Ban records asked for per page while loading.
const LOAD_PAGE: u32 = 500;
/// A reply larger than this means the peer is not a Redis we can trust:
/// the largest one authban asks for is a page of short records (~70 KiB).
const MAX_BUFFERED: usize = 1 << 20;
/// Failures owed a reply beyond this are not sent (the caller counts them
/// dropped): a Redis that answers slowly cannot grow a worker's memory.
pub const MAX_OWED_FAILURES: usize = 4096;
/// Any command beyond this is not sent, bans and unbans included.
pub const MAX_OWED: usize = 2 * MAX_OWED_FAILURES;

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
    /// A page of the bans stored in Redis, during a load, and how many
    /// records of it could not be read (too long, or not a ban record).
    Loaded {
        bans: Vec<Ban>,
        skipped: u32,
    },
    LoadDone,
    /// This node claimed the ban's alert for the fleet (or Redis could not
    /// say whether another node had): it tells CrowdSec.
    AlertClaimed(Ban),
    /// Redis answered a command with an error.
    CommandError(String),
    /// Bans or unbans refused for a missing or wrong signature (the zone
    /// has `sync_key=`), or a signed unban replayed late.
    Forged(u32),
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
    /// A page of the ban index, from `offset`, of at most `limit` records
    /// in all.
    Load {
        offset: u32,
        limit: u32,
    },
    /// The claim of a ban's alert: `OK` if this node made it.
    Claim(Ban),
    /// Replies whose content does not matter (SET, DEL, PUBLISH).
    Ack,
}

pub struct Session {
    role: Role,
    names: Names,
    node: u64,
    out: Vec<u8>,
    input: Vec<u8>,
    /// What each reply owed means, and when (the owner's clock, ms) its
    /// command was queued: the oldest tells when the link is late.
    pending: VecDeque<(u64, Expect)>,
    /// The owner's clock, ms, as last told ([`Session::set_now`]).
    now_ms: u64,
    ready: bool,
    /// The failure command up to its key, as RESP: `EVALSHA`, the count
    /// script's SHA and `1` (known once Redis loaded the script).
    count_head: Option<Box<[u8]>>,
    /// `authban:ZONE:fail:`, which the key follows in a failure's window.
    fail_prefix: Box<[u8]>,
    /// The last findtime a failure was sent with (seconds), and its
    /// argument as RESP (milliseconds): the zone's, the same every time.
    findtime: (u32, Vec<u8>),
    /// Makes every failure's member in a window unique, after
    /// `member_prefix` (`NODE:PID:`).
    seq: u64,
    member_prefix: Box<[u8]>,
    /// `sync_key=`: what is written is signed, what is read verified.
    signer: Option<Signer>,
}

impl Session {
    /// A session for `zone`'s link, with the handshake queued.
    pub fn new(role: Role, zone: &str, node: u64, url: &SyncUrl) -> Session {
        let names = Names::new(zone);
        let fail_prefix = format!("{}fail:", names.prefix()).into_bytes().into();
        let mut s = Session {
            role,
            names,
            node,
            out: Vec::with_capacity(256),
            input: Vec::new(),
            pending: VecDeque::new(),
            now_ms: 0,
            ready: false,
            count_head: None,
            fail_prefix,
            findtime: (0, b"$1\r\n0\r\n".to_vec()),
            seq: 0,
            member_prefix: format!("{node:016x}:{}:", std::process::id())
                .into_bytes()
                .into(),
            signer: None,
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

    /// The session as of `now_ms` on the owner's clock: the handshake
    /// [`Session::new`] queued is owed from then.
    pub fn at(mut self, now_ms: u64) -> Session {
        self.now_ms = now_ms;
        for (queued, _) in &mut self.pending {
            *queued = now_ms;
        }
        self
    }

    /// The session signing and verifying with `signer` (`sync_key=`).
    pub fn signed_with(mut self, signer: Option<Signer>) -> Session {
        self.signer = signer;
        self
    }

    fn now_secs(&self) -> u32 {
        u32::try_from(self.now_ms / 1000).unwrap_or(u32::MAX)
    }

    /// The owner's clock (ms): commands queued from now on are stamped
    /// with it.
    pub fn set_now(&mut self, now_ms: u64) {
        self.now_ms = now_ms;
    }

    /// When the oldest command still owed a reply was queued: bytes that
    /// trickle in without completing it do not make the link any younger.
    pub fn oldest_owed_ms(&self) -> Option<u64> {
        self.pending.front().map(|(queued, _)| *queued)
    }

    /// Replies owed now.
    pub fn owed(&self) -> usize {
        self.pending.len()
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
        encode_into(&mut self.out, &frames);
        self.pending.push_back((self.now_ms, expect));
    }

    /// Counts one failure of `key` in the fleet's window; the reply comes
    /// back as [`Event::FleetCount`]. False (nothing sent) before the
    /// session is ready.
    ///
    /// The hot command: `EVALSHA SHA 1 WINDOW FINDTIME_MS MEMBER`, written
    /// straight into the output from its precomputed head, the key's text
    /// and two numbers made on the stack; no allocation but the output's
    /// own growth.
    pub fn count_failure(&mut self, key: &Key, findtime_secs: u32) -> bool {
        if self.pending.len() >= MAX_OWED_FAILURES {
            return false;
        }
        let Some(head) = self.count_head.as_deref().filter(|_| self.ready) else {
            return false;
        };
        self.seq += 1;
        if self.findtime.0 != findtime_secs {
            let ms = Decimal::of(u64::from(findtime_secs) * 1000);
            self.findtime.0 = findtime_secs;
            self.findtime.1.clear();
            wire::put_bulk(&mut self.findtime.1, &[ms.as_bytes()]);
        }
        let key_text = KeyText::of(key);
        let seq = Decimal::of(self.seq);
        let out = &mut self.out;
        out.reserve(head.len() + self.fail_prefix.len() + self.member_prefix.len() + 96);
        out.extend_from_slice(head);
        wire::put_bulk(out, &[&self.fail_prefix, key_text.as_bytes()]);
        out.extend_from_slice(&self.findtime.1);
        wire::put_bulk(out, &[&self.member_prefix, seq.as_bytes()]);
        self.pending.push_back((self.now_ms, Expect::Count(*key)));
        true
    }

    /// The count script's SHA, as Redis gave it: the head of every
    /// failure command from now on.
    fn set_script(&mut self, sha: &[u8]) {
        let mut head = b"*6\r\n$7\r\nEVALSHA\r\n".to_vec();
        wire::put_bulk(&mut head, &[sha]);
        head.extend_from_slice(b"$1\r\n1\r\n");
        self.count_head = Some(head.into());
    }

    /// Stores and announces a ban; `keep_secs` after its end the record
    /// stays (the offence history). False before the session is ready.
    pub fn publish_ban(&mut self, ban: &Ban, keep_secs: u32) -> bool {
        if !self.can_send() {
            return false;
        }
        let record = names::ban_record(ban, self.signer.as_ref());
        let expires = ban.until.saturating_add(keep_secs).max(1).to_string();
        let ban_key = self.names.ban_key(&ban.key);
        self.command(&["SET", &ban_key, &record, "EXAT", &expires], Expect::Ack);
        // The index a load reads, newest ending first; records that expired
        // leave it here (by the ban's start, which is about now).
        let index = self.names.index_key();
        let member = ban.key.to_string();
        self.command(&["ZADD", &index, &expires, &member], Expect::Ack);
        let gone = format!("({}", ban.since);
        self.command(&["ZREMRANGEBYSCORE", &index, "-inf", &gone], Expect::Ack);
        let fail_key = self.names.fail_key(&ban.key);
        self.command(&["DEL", &fail_key], Expect::Ack);
        let message = Message::Ban(RemoteBan {
            node: self.node,
            ban: *ban,
        });
        self.publish(&message);
        true
    }

    /// Claims the alert for `ban`: the fleet's first claim wins; the reply
    /// tells ([`Event::AlertClaimed`]). The claim covers the time nodes
    /// can race to the same ban (a minute at most, the ban's length if
    /// shorter), in Redis's clock: a later ban of the key, or one after
    /// an unban that could not reach Redis, is claimed afresh.
    pub fn claim_alert(&mut self, ban: &Ban) -> bool {
        if !self.can_send() {
            return false;
        }
        let alert_key = self.names.alert_key(&ban.key);
        let node = self.node.to_string();
        let secs = ban.until.saturating_sub(ban.since).clamp(1, CLAIM_SECS);
        let secs = secs.to_string();
        let args = ["SET", &alert_key, &node, "EX", &secs, "NX"];
        self.command(&args, Expect::Claim(*ban));
        true
    }

    /// The bans whose claims Redis has not answered: a link that closes
    /// sends their alerts itself rather than lose them.
    pub fn unanswered_claims(&self) -> impl Iterator<Item = Ban> + '_ {
        self.pending.iter().filter_map(|(_, expect)| match expect {
            Expect::Claim(ban) => Some(*ban),
            _ => None,
        })
    }

    /// Forgets a key fleet-wide: its ban record, its failures and its
    /// alert's claim.
    pub fn publish_unban(&mut self, key: &Key) -> bool {
        if !self.can_send() {
            return false;
        }
        let ban_key = self.names.ban_key(key);
        let fail_key = self.names.fail_key(key);
        let alert_key = self.names.alert_key(key);
        self.command(&["DEL", &ban_key, &fail_key, &alert_key], Expect::Ack);
        let index = self.names.index_key();
        self.command(&["ZREM", &index, &key.to_string()], Expect::Ack);
        self.publish(&Message::Unban {
            node: self.node,
            key: *key,
        });
        true
    }

    fn publish(&mut self, message: &Message) {
        let channel = self.names.channel();
        let text = message.text(self.signer.as_ref(), self.now_secs());
        self.command(&["PUBLISH", &channel, &text], Expect::Ack);
    }

    /// Whether a command may be queued: the session is ready for
    /// commands, and what is owed stays bounded.
    fn can_send(&self) -> bool {
        self.ready && self.role == Role::Commands && self.pending.len() < MAX_OWED
    }

    /// Reads the zone's ban records, newest ending first, at most `limit`
    /// of them (what the zone can hold): [`Event::Loaded`] pages, then
    /// [`Event::LoadDone`]. Records are read through the zone's index, in
    /// pages a script bounds on Redis's side (a record of any size is
    /// skipped there, never sent).
    pub fn load_bans(&mut self, limit: u32) -> bool {
        if !self.can_send() {
            return false;
        }
        self.load_page(0, limit.max(1));
        true
    }

    fn load_page(&mut self, offset: u32, limit: u32) {
        let index = self.names.index_key();
        let prefix = self.names.ban_prefix();
        let count = LOAD_PAGE.min(limit - offset).to_string();
        let max_len = MAX_RECORD_LEN.to_string();
        self.command(
            &[
                "EVAL",
                LOAD_SCRIPT,
                "1",
                &index,
                &prefix,
                &offset.to_string(),
                &count,
                &max_len,
            ],
            Expect::Load { offset, limit },
        );
    }

    /// Takes bytes read from the connection; what they mean is appended to
    /// `events`. An error means the connection must be closed.
    pub fn feed(&mut self, data: &[u8], events: &mut Vec<Event>) -> Result<(), Broken> {
        let data = if self.input.is_empty() {
            self.counts_in_place(data, events)
        } else {
            data
        };
        if data.is_empty() {
            return Ok(());
        }
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

    /// The common replies, counts owed to failure commands, read where
    /// they lie (nothing buffered before them): what the full decoder and
    /// [`Session::reply`] would make of them, for much less. What is left
    /// (any other reply, or one not complete yet) is theirs.
    fn counts_in_place<'a>(&mut self, mut data: &'a [u8], events: &mut Vec<Event>) -> &'a [u8] {
        while let Some(&(_, Expect::Count(key))) = self.pending.front() {
            let Some((n, len)) = wire::integer_reply(data) else {
                break;
            };
            self.pending.pop_front();
            events.push(Event::FleetCount {
                key,
                count: u32::try_from(n).unwrap_or(u32::MAX),
            });
            data = &data[len..];
        }
        data
    }

    fn reply(&mut self, frame: OwnedFrame, events: &mut Vec<Event>) -> Result<(), Broken> {
        if self.role == Role::Subscriber && self.ready {
            if let Some(event) = self.pushed_message(&frame) {
                events.extend(event);
                return Ok(());
            }
        }
        let expect = self
            .pending
            .pop_front()
            .ok_or_else(|| Broken("a reply nobody asked for".into()))?;
        let (_, expect) = expect;
        if let OwnedFrame::Error(text) = &frame {
            return match expect {
                Expect::Handshake | Expect::HandshakeLast | Expect::ScriptLoad => {
                    events.push(Event::Refused(text.clone()));
                    Err(Broken(text.clone()))
                }
                Expect::Load { .. } => {
                    // What was loaded stays; the node goes on without the rest.
                    events.push(Event::CommandError(text.clone()));
                    events.push(Event::LoadDone);
                    Ok(())
                }
                Expect::Claim(ban) => {
                    // Better twice than never.
                    events.push(Event::CommandError(text.clone()));
                    events.push(Event::AlertClaimed(ban));
                    Ok(())
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
                self.set_script(sha.as_bytes());
                self.ready = true;
                events.push(Event::Ready);
            }
            Expect::ScriptReload => {
                let sha = text_of(&frame).ok_or_else(|| Broken("bad SCRIPT LOAD reply".into()))?;
                self.set_script(sha.as_bytes());
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
            Expect::Load { offset, limit } => self.loaded(frame, offset, limit, events)?,
            Expect::Claim(ban) => match frame {
                OwnedFrame::SimpleString(_) => events.push(Event::AlertClaimed(ban)),
                OwnedFrame::Null => {}
                _ => {
                    // The link goes; the alert does not.
                    events.push(Event::AlertClaimed(ban));
                    return Err(Broken("bad claim reply".into()));
                }
            },
        }
        Ok(())
    }

    /// A page of the load: `[skipped, listed, [KEY, RECORD, ...]]`.
    fn loaded(
        &mut self,
        frame: OwnedFrame,
        offset: u32,
        limit: u32,
        events: &mut Vec<Event>,
    ) -> Result<(), Broken> {
        let bad = || Broken("bad load reply".into());
        let OwnedFrame::Array(parts) = frame else {
            return Err(bad());
        };
        let [OwnedFrame::Integer(skipped), OwnedFrame::Integer(listed), OwnedFrame::Array(pairs)] =
            parts.as_slice()
        else {
            return Err(bad());
        };
        let asked = LOAD_PAGE.min(limit - offset);
        let listed = u32::try_from(*listed)
            .ok()
            .filter(|&n| n <= asked)
            .ok_or_else(bad)?;
        if pairs.len() % 2 != 0 || pairs.len() / 2 > listed as usize {
            return Err(bad());
        }
        let mut skipped = u32::try_from(*skipped).unwrap_or(u32::MAX);
        let mut forged = 0u32;
        let mut bans = Vec::with_capacity(pairs.len() / 2);
        for pair in pairs.chunks_exact(2) {
            let ban = match pair {
                [OwnedFrame::BulkString(name), OwnedFrame::BulkString(record)] => {
                    core::str::from_utf8(name)
                        .ok()
                        .and_then(Key::parse)
                        .ok_or(BadText::Malformed)
                        .and_then(|key| names::parse_ban_record(key, record, self.signer.as_ref()))
                }
                _ => Err(BadText::Malformed),
            };
            match ban {
                Ok(ban) => bans.push(ban),
                Err(BadText::Malformed) => skipped = skipped.saturating_add(1),
                Err(BadText::Forged) => forged += 1,
            }
        }
        events.push(Event::Loaded { bans, skipped });
        if forged > 0 {
            events.push(Event::Forged(forged));
        }
        let next = offset + listed;
        if listed == asked && next < limit {
            self.load_page(next, limit);
        } else {
            events.push(Event::LoadDone);
        }
        Ok(())
    }
}

/// Encodes a command (an array of bulk strings) at the end of `out`.
fn encode_into(out: &mut Vec<u8>, args: &[BorrowedFrame<'_>]) {
    let frame = BorrowedFrame::Array(args);
    let start = out.len();
    out.resize(start + frame.encode_len(false), 0);
    // The buffer was sized by the encoder itself, so it cannot fail.
    let written = encode_borrowed(&mut out[start..], &frame, false).unwrap_or(0);
    out.truncate(start + written);
}

impl Session {
    /// A message pushed to a subscriber: `None` if the frame is a reply.
    fn pushed_message(&self, frame: &OwnedFrame) -> Option<Option<Event>> {
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
        Some(
            match Message::parse(payload, self.signer.as_ref(), self.now_secs()) {
                Ok(Message::Ban(ban)) => Some(Event::Ban(ban)),
                Ok(Message::Unban { node, key }) => Some(Event::Unban { node, key }),
                Err(BadText::Malformed) => None,
                Err(BadText::Forged) => Some(Event::Forged(1)),
            },
        )
    }
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
