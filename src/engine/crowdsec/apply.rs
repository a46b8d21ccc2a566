//! What a pull of LAPI's decisions stream does to a zone, and the bouncer's
//! memory of which bans came from which decision, so that a deletion lifts
//! exactly what its decision made (never a ban the zone made itself, nor
//! one a longer decision on the same address still holds).
//!
//! The memory is worker 0's own (it alone pulls): a new worker 0 pulls
//! with `startup=true`, which lists every active decision again, and finds
//! its bans already in the zone (see [`Bouncer::apply_new`]).

use std::collections::{BTreeSet, HashMap};

use crate::engine::crowdsec::decision::{Decision, Entry, Unusable};
use crate::engine::key::Key;
use crate::engine::table::{Ban, Events, Now, Table, Unacceptable};

/// A decision's end as this node computes it (its time left from now)
/// moves by a second or so between pulls: ends this close are the same.
const SAME_END_SECS: u32 = 2;

/// What one pull did, for the counters and the log.
#[derive(Debug, Default)]
pub struct Pulled {
    /// Bans made or lengthened, with the decision's labels.
    pub applied: Vec<(Ban, Labels)>,
    /// Keys whose ban a deletion lifted.
    pub lifted: Vec<Key>,
    /// Decisions the zone's policy refused.
    pub refused: Vec<(Ban, Unacceptable)>,
    /// Decisions counted and left alone: not bans, simulated, another
    /// scope, a deletion of nothing authban took from CrowdSec, or this
    /// zone's own bans coming back.
    pub ignored: u64,
    /// Entries that could not be read as decisions at all.
    pub malformed: u64,
}

/// A decision's labels, bounded and printable ([`Decision`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Labels {
    pub scenario: String,
    pub origin: String,
}

/// A ban taken from a decision: its key and the end it was given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Taken {
    key: Key,
    until: u32,
}

/// The bans worker 0 took from decisions, by decision id, and by key for
/// the decisions that share one.
pub struct Bouncer {
    /// `authban/ZONE`: the scenario of the alerts this zone sends, whose
    /// decisions come back through the stream.
    own_scenario: String,
    /// Accept networks wider than the zone bans by itself (`wide=on`).
    wide: bool,
    by_id: HashMap<i64, Taken>,
    by_key: HashMap<Key, Vec<i64>>,
    /// Each remembered decision by when its ban ends: a pull forgets the
    /// ended ones without walking all of them (100,000 took 17 ms).
    by_end: BTreeSet<(u32, i64)>,
    /// At most this many decisions are remembered: the zone's capacity
    /// (it cannot hold more bans).
    limit: usize,
}

impl Bouncer {
    pub fn new(zone: &str, wide: bool, limit: usize) -> Bouncer {
        Bouncer {
            own_scenario: own_scenario(zone),
            wide,
            by_id: HashMap::new(),
            by_key: HashMap::new(),
            by_end: BTreeSet::new(),
            limit,
        }
    }

    /// Decisions remembered.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Applies one entry of the answer's `new` list.
    pub fn apply_new(
        &mut self,
        t: &mut Table<'_>,
        entry: &Entry,
        now: Now,
        events: &mut Events,
        out: &mut Pulled,
    ) {
        let decision = match entry.usable() {
            Ok(d) => d,
            Err(Unusable::Malformed) => return out.malformed += 1,
            Err(_) => return out.ignored += 1,
        };
        let Some(ban) = ban_of(&decision, now) else {
            // Over already: nothing to hold.
            return out.ignored += 1;
        };
        if let Err(why) = t.policy().admits_remote(&ban, now, self.wide) {
            return out.refused.push((ban, why));
        }
        let held = t.lookup(&ban.key, now).and_then(|s| s.ban);
        let echo = decision.origin == "authban" && decision.scenario == self.own_scenario;
        if let Some(held) = held {
            // This zone's own ban coming back: it neither lengthens nor
            // becomes CrowdSec's (a deletion in LAPI does not lift it).
            if echo {
                return out.ignored += 1;
            }
            if held.until.saturating_add(SAME_END_SECS) >= ban.until {
                // Already held: this decision's (before a reload, or a
                // repeat), or a longer ban's, which a deletion must keep.
                if held.until.abs_diff(ban.until) <= SAME_END_SECS {
                    self.remember(decision.id, ban.key, held.until);
                }
                return out.ignored += 1;
            }
        }
        match t.apply_remote_ban(&ban, now, events) {
            Some(made) => {
                self.remember(decision.id, made.key, made.until);
                out.applied.push((made, labels(&decision)));
            }
            None => out.ignored += 1,
        }
    }

    /// Applies one entry of the answer's `deleted` list: the ban its
    /// decision made is lifted if the zone still holds that ban, and any
    /// other decision on the same key still in force takes its place.
    ///
    /// `startup`: the answer to `startup=true`, which lists every decision
    /// deleted or ended lately and then every active one. Its deletions of
    /// decisions this bouncer never saw (made before a reload or a
    /// restart, the ban kept in the zone or its state file) lift a ban
    /// that only a decision makes (no failures, no offence); the active
    /// decisions, applied after, hold what must stay.
    pub fn apply_deleted(
        &mut self,
        t: &mut Table<'_>,
        entry: &Entry,
        startup: bool,
        now: Now,
        events: &mut Events,
        out: &mut Pulled,
    ) {
        let Entry::Decision(raw) = entry else {
            return out.malformed += 1;
        };
        let Some(taken) = raw.id.and_then(|id| self.forget(id)) else {
            if startup {
                if let Ok(key) = raw.key() {
                    let held = t.lookup(&key, now).and_then(|s| s.ban);
                    if held.is_some_and(|b| b.failures == 0 && b.offence == 0) {
                        t.unban(&key, now);
                        return out.lifted.push(key);
                    }
                }
            }
            // Not one of ours, or a deletion repeated (LAPI lists each
            // at least once).
            return out.ignored += 1;
        };
        let held = t.lookup(&taken.key, now).and_then(|s| s.ban);
        let ours = held.is_some_and(|b| b.until.abs_diff(taken.until) <= SAME_END_SECS);
        if !ours {
            return out.ignored += 1;
        }
        t.unban(&taken.key, now);
        out.lifted.push(taken.key);
        // Another decision on the key that still holds: its ban again.
        let still = self
            .by_key
            .get(&taken.key)
            .into_iter()
            .flatten()
            .filter_map(|id| self.by_id.get(id))
            .map(|k| k.until)
            .max();
        if let Some(until) = still {
            let ban = Ban {
                key: taken.key,
                since: now.secs(),
                until,
                failures: 0,
                offence: 0,
            };
            t.apply_remote_ban(&ban, now, events);
        }
    }

    /// Forgets decisions whose ban has ended (LAPI may never list an ended
    /// decision as deleted to a bouncer that was not pulling then).
    pub fn forget_ended(&mut self, now: Now) {
        let secs = now.secs();
        while self.by_end.first().is_some_and(|&(until, _)| until <= secs) {
            if let Some((_, id)) = self.by_end.pop_first() {
                self.forget(id);
            }
        }
    }

    /// Room for `more` decisions, made before a large answer is applied:
    /// the maps then do not grow (and rehash everything) between batches.
    pub fn reserve(&mut self, more: usize) {
        let more = more.min(self.limit.saturating_sub(self.by_id.len()));
        self.by_id.reserve(more);
        self.by_key.reserve(more);
    }

    fn remember(&mut self, id: i64, key: Key, until: u32) {
        if let Some(old) = self.by_id.get(&id).copied() {
            if old.key == key {
                self.by_end.remove(&(old.until, id));
                self.by_end.insert((until, id));
                self.by_id.insert(id, Taken { key, until });
                return;
            }
            self.forget(id);
        }
        if self.by_id.len() >= self.limit {
            return;
        }
        self.by_id.insert(id, Taken { key, until });
        self.by_key.entry(key).or_default().push(id);
        self.by_end.insert((until, id));
    }

    fn forget(&mut self, id: i64) -> Option<Taken> {
        let taken = self.by_id.remove(&id)?;
        self.by_end.remove(&(taken.until, id));
        if let Some(ids) = self.by_key.get_mut(&taken.key) {
            ids.retain(|&i| i != id);
            if ids.is_empty() {
                self.by_key.remove(&taken.key);
            }
        }
        Some(taken)
    }
}

/// The scenario of the alerts zone `zone` sends.
pub fn own_scenario(zone: &str) -> String {
    format!("authban/{zone}")
}

/// The ban a decision asks for from now: to the end of its time left,
/// rounded up to a second; `None` if it is over.
fn ban_of(decision: &Decision, now: Now) -> Option<Ban> {
    if decision.millis_left <= 0 {
        return None;
    }
    let end_ms = now.ms.saturating_add(decision.millis_left as u64);
    let until = u32::try_from(end_ms.div_ceil(1000)).unwrap_or(u32::MAX);
    Some(Ban {
        key: decision.key,
        since: now.secs(),
        until,
        failures: 0,
        // No offence of its own: the zone's history of the address, if
        // any, is kept as it is.
        offence: 0,
    })
}

fn labels(decision: &Decision) -> Labels {
    Labels {
        scenario: decision.scenario.clone(),
        origin: decision.origin.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::crowdsec::decision::parse_entry;
    use crate::engine::crowdsec::stream_index::index_stream;
    use crate::engine::table::{Policy, Verdict};

    const NOW: Now = Now {
        ms: 1_700_000_000_000,
    };

    fn with_table(policy: Policy, f: impl FnOnce(&mut Table<'_>)) {
        let mut region = vec![0u8; 64 * 1024];
        let mut t = Table::format(&mut region, &policy, [1, 2]).unwrap();
        f(&mut t);
    }

    fn entries(json: &str) -> Vec<Entry> {
        let body = format!("{{\"new\":{json},\"deleted\":null}}");
        let body = body.as_bytes();
        index_stream(body)
            .unwrap()
            .into_iter()
            .map(|(_, range)| parse_entry(&body[range]))
            .collect()
    }

    fn decision(id: i64, value: &str, duration: &str, origin: &str, scenario: &str) -> String {
        let scope = if value.contains('/') { "Range" } else { "Ip" };
        format!(
            r#"{{"id":{id},"type":"ban","scope":"{scope}","value":"{value}","duration":"{duration}","origin":"{origin}","scenario":"{scenario}"}}"#
        )
    }

    fn key(text: &str) -> Key {
        Key::parse(text).unwrap()
    }

    fn banned(t: &mut Table<'_>, ip: &str, now: Now) -> bool {
        let mut ev = Events::default();
        matches!(t.check(&key(ip), now, true, &mut ev), Verdict::Banned(_))
    }

    fn pull(b: &mut Bouncer, t: &mut Table<'_>, new: &[String], deleted: &[String]) -> Pulled {
        pull_as(b, t, new, deleted, false)
    }

    fn pull_as(
        b: &mut Bouncer,
        t: &mut Table<'_>,
        new: &[String],
        deleted: &[String],
        startup: bool,
    ) -> Pulled {
        let mut out = Pulled::default();
        let mut ev = Events::default();
        for e in entries(&format!("[{}]", deleted.join(","))) {
            b.apply_deleted(t, &e, startup, NOW, &mut ev, &mut out);
        }
        for e in entries(&format!("[{}]", new.join(","))) {
            b.apply_new(t, &e, NOW, &mut ev, &mut out);
        }
        out
    }

    #[test]
    fn a_decision_bans_until_its_end_and_its_deletion_lifts_it() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 100);
            let d = decision(1, "192.0.2.7", "59m59.5s", "cscli", "manual");
            let out = pull(&mut b, t, core::slice::from_ref(&d), &[]);
            assert_eq!(out.applied.len(), 1);
            let (ban, labels) = &out.applied[0];
            assert_eq!(ban.until, NOW.secs() + 3600);
            assert_eq!(labels.origin, "cscli");
            assert!(banned(t, "192.0.2.7", NOW));
            // The same decision again (a startup pull after a reload, with
            // a second less left) changes nothing.
            let again = decision(1, "192.0.2.7", "59m58.9s", "cscli", "manual");
            let out = pull(&mut b, t, &[again], &[]);
            assert!(out.applied.is_empty());
            assert_eq!(out.ignored, 1);
            let out = pull(&mut b, t, &[], core::slice::from_ref(&d));
            assert_eq!(out.lifted, vec![key("192.0.2.7")]);
            assert!(!banned(t, "192.0.2.7", NOW));
            // Deletions come at least once: a repeat lifts nothing.
            let out = pull(&mut b, t, &[], &[d]);
            assert!(out.lifted.is_empty());
            assert_eq!(out.ignored, 1);
            assert!(b.is_empty());
        });
    }

    #[test]
    fn a_startup_pull_lifts_what_was_deleted_before_this_bouncer_ran() {
        with_table(Policy::default(), |t| {
            let mut before = Bouncer::new("api", false, 100);
            let gone = decision(1, "192.0.2.7", "1h", "cscli", "x");
            let kept = decision(2, "192.0.2.8", "1h", "cscli", "x");
            pull(&mut before, t, &[gone.clone(), kept.clone()], &[]);
            let mut ev = Events::default();
            let own = t.ban(&key("192.0.2.9"), NOW, 600, &mut ev);
            // A new worker 0 (a reload): its startup answer lists the
            // deleted decision, one on the zone's own ban, and the rest.
            let mut after = Bouncer::new("api", false, 100);
            let own_deleted = decision(3, "192.0.2.9", "-1s", "cscli", "x");
            let out = pull_as(
                &mut after,
                t,
                core::slice::from_ref(&kept),
                &[gone.clone(), own_deleted],
                true,
            );
            assert_eq!(out.lifted, vec![key("192.0.2.7")]);
            assert!(!banned(t, "192.0.2.7", NOW));
            assert!(banned(t, "192.0.2.8", NOW));
            assert_eq!(t.lookup(&key("192.0.2.9"), NOW).unwrap().ban, Some(own));
            // Outside a startup answer, an unknown deletion is a repeat.
            pull(&mut after, t, &[], core::slice::from_ref(&kept));
            let out = pull(&mut after, t, &[], &[kept]);
            assert!(out.lifted.is_empty());
        });
    }

    #[test]
    fn a_deletion_keeps_a_longer_ban_the_zone_made_itself() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 100);
            let mut ev = Events::default();
            t.ban(&key("192.0.2.7"), NOW, 7200, &mut ev);
            let d = decision(1, "192.0.2.7", "1h", "cscli", "manual");
            let out = pull(&mut b, t, core::slice::from_ref(&d), &[]);
            assert!(out.applied.is_empty(), "a shorter decision changes nothing");
            let out = pull(&mut b, t, &[], &[d]);
            assert!(out.lifted.is_empty());
            assert!(banned(t, "192.0.2.7", NOW));
        });
    }

    #[test]
    fn deleting_one_of_two_decisions_on_an_address_keeps_the_other() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 100);
            let short = decision(1, "192.0.2.7", "1h", "crowdsec", "ssh-bf");
            let long = decision(2, "192.0.2.7", "4h", "CAPI", "http-probing");
            pull(&mut b, t, &[short.clone(), long.clone()], &[]);
            let out = pull(&mut b, t, &[], &[long]);
            assert_eq!(out.lifted.len(), 1);
            let held = t.lookup(&key("192.0.2.7"), NOW).unwrap().ban.unwrap();
            assert_eq!(held.until, NOW.secs() + 3600, "the short decision holds");
            pull(&mut b, t, &[], &[short]);
            assert!(!banned(t, "192.0.2.7", NOW));
        });
    }

    #[test]
    fn the_zones_own_ban_coming_back_changes_nothing() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 100);
            let mut ev = Events::default();
            let own = t.ban(&key("192.0.2.7"), NOW, 600, &mut ev);
            // LAPI's time left, a second later, rounds to a later end.
            let echo = decision(9, "192.0.2.7", "10m0.9s", "authban", "authban/api");
            let out = pull(&mut b, t, core::slice::from_ref(&echo), &[]);
            assert!(out.applied.is_empty());
            assert_eq!(t.lookup(&key("192.0.2.7"), NOW).unwrap().ban, Some(own));
            // Deleted in LAPI: the zone's own ban stays.
            let out = pull(&mut b, t, &[], &[echo]);
            assert!(out.lifted.is_empty());
            assert!(banned(t, "192.0.2.7", NOW));
            // Another zone's alert is CrowdSec's like any decision.
            let other = decision(10, "192.0.2.8", "10m", "authban", "authban/other");
            assert_eq!(pull(&mut b, t, &[other], &[]).applied.len(), 1);
        });
    }

    #[test]
    fn what_the_zone_cannot_hold_is_refused_or_ignored_and_counted() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 100);
            let new = [
                decision(1, "198.51.100.0/24", "1h", "cscli", "x"),
                decision(2, "192.0.2.1", "9000h", "cscli", "x"),
                decision(3, "192.0.2.2", "-5ms", "cscli", "x"),
                r#"{"id":4,"type":"captcha","scope":"Ip","value":"192.0.2.3","duration":"1h"}"#
                    .to_string(),
                r#"{"id":5,"type":"ban","scope":"Country","value":"FR","duration":"1h"}"#
                    .to_string(),
                "17".to_string(),
            ];
            let out = pull(&mut b, t, &new, &[]);
            let why: Vec<_> = out.refused.iter().map(|(_, w)| *w).collect();
            assert_eq!(why, [Unacceptable::TooWide, Unacceptable::EndsTooLate]);
            assert_eq!((out.ignored, out.malformed), (3, 1));
            assert_eq!(t.bans(), 0);
            // `wide=on`: the range is a ban.
            let mut wide = Bouncer::new("api", true, 100);
            let range = decision(1, "198.51.100.0/24", "1h", "cscli", "x");
            assert_eq!(pull(&mut wide, t, &[range], &[]).applied.len(), 1);
            assert!(banned(t, "198.51.100.9", NOW));
        });
    }

    #[test]
    fn memory_is_bounded_and_ended_decisions_are_forgotten() {
        with_table(Policy::default(), |t| {
            let mut b = Bouncer::new("api", false, 3);
            let new: Vec<_> = (1..=5)
                .map(|i| decision(i, &format!("192.0.2.{i}"), &format!("{i}m"), "cscli", "x"))
                .collect();
            let out = pull(&mut b, t, &new, &[]);
            assert_eq!(out.applied.len(), 5);
            assert_eq!(b.len(), 3);
            b.forget_ended(Now::from_ms(NOW.ms + 150_000));
            assert_eq!(b.len(), 1);
        });
    }

    /// The three maps tell the same story.
    fn assert_consistent(b: &Bouncer) {
        assert_eq!(b.by_end.len(), b.by_id.len());
        for &(until, id) in &b.by_end {
            let taken = b.by_id[&id];
            assert_eq!(taken.until, until);
            assert!(b.by_key[&taken.key].contains(&id));
        }
        let listed: usize = b.by_key.values().map(Vec::len).sum();
        assert_eq!(listed, b.by_id.len());
    }

    proptest::proptest! {
        /// Decisions made, changed, deleted and ended in any order: what
        /// is remembered stays consistent, bounded, and forgets exactly
        /// the decisions whose ban ended.
        #[test]
        fn what_is_remembered_stays_consistent(
            steps in proptest::collection::vec((0u8..4, 1i64..12, 0u8..4, 1u32..20), 0..60),
        ) {
            let mut b = Bouncer::new("api", false, 8);
            let mut region = vec![0u8; 64 * 1024];
            let mut t = Table::format(&mut region, &Policy::default(), [1, 2]).unwrap();
            let mut now = NOW;
            for (op, id, host, minutes) in steps {
                let d = decision(id, &format!("192.0.2.{host}"), &format!("{minutes}m"), "cscli", "x");
                let (mut out, mut ev) = (Pulled::default(), Events::default());
                match op {
                    0 | 1 => {
                        for e in entries(&format!("[{d}]")) {
                            b.apply_new(&mut t, &e, now, &mut ev, &mut out);
                        }
                    }
                    2 => {
                        for e in entries(&format!("[{d}]")) {
                            b.apply_deleted(&mut t, &e, false, now, &mut ev, &mut out);
                        }
                    }
                    _ => {
                        now = Now::from_ms(now.ms + u64::from(minutes) * 30_000);
                        b.forget_ended(now);
                        proptest::prop_assert!(b.by_id.values().all(|t| t.until > now.secs()));
                    }
                }
                proptest::prop_assert!(b.len() <= 8);
                assert_consistent(&b);
            }
        }
    }
}
