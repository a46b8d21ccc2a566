//! The jail's rules: counting failures in the window, banning at
//! maxretry, escalating repeat offenders, widening to networks, ending bans
//! and forgetting idle addresses, and what the table tells of them.
//!
//! Every rule reads the policy the table was attached with
//! ([`Table::policy`]), never one stored in shared memory.

use super::filter::{load_mask, shorter_prefixes};
use super::handle::Table;
use super::index::list_of;
use super::layout::{SlotKind, BANNED, COUNTED, NIL, REMEMBERED};
use super::types::{wider_prefix, Ban, Event, Events, Failure, KeyStatus, Now, Record, Verdict};
use crate::engine::key::Key;
use crate::engine::window::Window;

/// Bounded work per call keeps the lock hold time flat.
const EXPIRE_PER_CALL: usize = 2;

impl Table<'_> {
    /// Whether `key`, or a banned network holding it, is banned now.
    /// `refusing` counts the request as refused (false in dry run, where
    /// nothing is refused).
    #[inline(always)]
    pub fn check(&mut self, key: &Key, now: Now, refusing: bool, events: &mut Events) -> Verdict {
        if self.bans() == 0 {
            return Verdict::Clear;
        }
        self.expire_bans(now, events);
        // A ban that ended but is not reaped yet must not hide a wider one
        // still in force: end it and look again (found by fuzzing).
        let secs = now.secs();
        let i = loop {
            let Some(i) = self.find_ban(key) else {
                return Verdict::Clear;
            };
            if self.slots[i as usize].t1 > secs {
                break i;
            }
            self.end_ban(i, events);
        };
        if refusing {
            self.hdr.stats.refused += 1;
        }
        Verdict::Banned(self.slots[i as usize].ban())
    }

    /// The banned slot covering `key`: its own, else the longest banned
    /// network holding it.
    #[inline]
    fn find_ban(&self, key: &Key) -> Option<u32> {
        let banned = |i: u32| self.slots[i as usize].kind == SlotKind::BANNED;
        if let Some(i) = self.find(key).filter(|&i| banned(i)) {
            return Some(i);
        }
        // Banned network lengths that could hold the key, longest first:
        // out of line, so that a host's own ban (the refusal's common
        // case) pays nothing for them.
        #[inline(never)]
        fn network_ban(t: &Table<'_>, key: &Key) -> Option<u32> {
            let mut lengths = load_mask(&t.shared.net_mask) & shorter_prefixes(key);
            while lengths != 0 {
                let p = 127 - lengths.leading_zeros();
                lengths &= !(1u128 << p);
                let net = Key::from_raw(key.raw_addr(), p as u8);
                if let Some(i) = t.find(&net) {
                    if t.slots[i as usize].kind == SlotKind::BANNED {
                        return Some(i);
                    }
                }
            }
            None
        }
        network_ban(self, key)
    }

    /// Bans `key` (an address or a network) for `secs` from now, whatever
    /// its failures: the management endpoint's ban. A ban in force is
    /// replaced, so the new duration holds.
    pub fn ban(&mut self, key: &Key, now: Now, secs: u32, events: &mut Events) -> Ban {
        self.expire(now, events);
        let i = self.find_or_insert(key, events);
        // A ban that ended unnoticed is ended first, so that widening counts
        // the new ban as a new member (and the old one left the count).
        self.ban_in_force(i, now, events);
        let status = self.status_of(i, now);
        let ban = self.ban_slot(i, now, secs, status.failures);
        if status.ban.is_none() {
            self.widen_from(i, now, events);
        }
        ban
    }

    /// Ends `key`'s ban, if any, and forgets its failures. `None` if the
    /// table does not know the key.
    pub fn unban(&mut self, key: &Key, now: Now) -> Option<KeyStatus> {
        let i = self.find(key)?;
        let status = self.status_of(i, now);
        self.forget(i);
        Some(status)
    }

    /// What the table holds of `key` itself (not of networks holding it).
    pub fn lookup(&self, key: &Key, now: Now) -> Option<KeyStatus> {
        Some(self.status_of(self.find(key)?, now))
    }

    /// Failures of `key` still in the window, if it is tracked.
    pub fn failures(&self, key: &Key, now: Now) -> Option<u32> {
        self.lookup(key, now).map(|s| s.failures)
    }

    /// Bans in force, soonest ending first, skipping `offset` of them.
    pub fn bans_page(&self, now: Now, offset: usize, limit: usize) -> Vec<Ban> {
        let mut page = Vec::with_capacity(limit.min(self.bans() as usize));
        let mut steps = self.steps();
        let mut i = self.hdr.lists[BANNED].head;
        let mut skipped = 0;
        while i != NIL && page.len() < limit && self.step(&mut steps, i) {
            let slot = &self.slots[i as usize];
            if slot.t1 > now.secs() {
                if skipped < offset {
                    skipped += 1;
                } else {
                    page.push(slot.ban());
                }
            }
            i = slot.next;
        }
        page
    }

    /// Every ban in force and every remembered offence history.
    pub fn records(&self, now: Now) -> Vec<Record> {
        let secs = now.secs();
        let history = self.policy.history;
        let used = self.hdr.high_water as usize;
        self.slots[..used]
            .iter()
            .filter_map(|slot| {
                let in_use = matches!(
                    slot.kind,
                    SlotKind::COUNTED | SlotKind::REMEMBERED | SlotKind::BANNED
                );
                let banned = slot.kind == SlotKind::BANNED && slot.t1 > secs;
                // A ban that ended unnoticed (nobody came back since) is a
                // history like any other: t1 is where it ended.
                let remembered = in_use
                    && !banned
                    && slot.offences > 0
                    && slot.t1.saturating_add(history) > secs;
                (banned || remembered).then(|| Record {
                    key: slot.key(),
                    offences: slot.offences,
                    last_ban_end: slot.t1,
                    ban: banned.then(|| slot.ban()),
                })
            })
            .collect()
    }

    /// Puts back a record from a state file or an older zone. Bans that
    /// ended and histories that ran out are skipped; a key already present
    /// is left as it is.
    pub fn restore(&mut self, record: &Record, now: Now, events: &mut Events) -> bool {
        let secs = now.secs();
        let live_ban = record.ban.filter(|b| b.until > secs);
        let live_history =
            record.offences > 0 && record.last_ban_end.saturating_add(self.policy.history) > secs;
        if (live_ban.is_none() && !live_history) || self.find(&record.key).is_some() {
            return false;
        }
        let i = self.insert(&record.key, events);
        self.slots[i as usize].offences = record.offences;
        self.slots[i as usize].t1 = record.last_ban_end;
        if let Some(ban) = live_ban {
            self.unlink(COUNTED, i);
            let slot = &mut self.slots[i as usize];
            slot.kind = SlotKind::BANNED;
            slot.t0 = ban.since;
            slot.t1 = ban.until;
            slot.counts = [ban.failures as u16, (ban.failures >> 16) as u16, 0, 0];
            self.insert_by_end(i);
            self.count_ban(i, 1);
        } else if self.policy.increment {
            self.unlink(COUNTED, i);
            self.slots[i as usize].kind = SlotKind::REMEMBERED;
            self.push_front(REMEMBERED, i);
        }
        true
    }

    fn status_of(&self, i: u32, now: Now) -> KeyStatus {
        let slot = &self.slots[i as usize];
        if slot.kind == SlotKind::BANNED {
            if slot.t1 > now.secs() {
                let ban = slot.ban();
                return KeyStatus {
                    failures: ban.failures,
                    ban: Some(ban),
                };
            }
            return KeyStatus {
                failures: 0,
                ban: None,
            };
        }
        KeyStatus {
            failures: slot.window().total(now.secs() / self.hdr.bucket_secs),
            ban: None,
        }
    }

    /// Counts one failed response of `key`; bans it at the maxretry-th
    /// failure in the window.
    pub fn record_failure(&mut self, key: &Key, now: Now, events: &mut Events) -> Failure {
        self.expire(now, events);
        let i = self.find_or_insert(key, events);
        if self.ban_in_force(i, now, events) {
            return Failure::AlreadyBanned;
        }
        self.age_history(i, now);
        self.hdr.stats.failures += 1;
        let step = now.secs() / self.hdr.bucket_secs;
        let mut win = self.slots[i as usize].window();
        let failures = win.add(step);
        self.slots[i as usize].set_window(win);
        if failures >= self.policy.maxretry {
            return Failure::Banned(self.ban_for_failures(i, now, failures, events));
        }
        let list = list_of(self.slots[i as usize].kind);
        self.unlink(list, i);
        self.push_front(list, i);
        Failure::Counted(failures)
    }

    /// Ends bans whose time is up and forgets counted addresses whose
    /// window emptied, a few per call.
    pub fn expire(&mut self, now: Now, events: &mut Events) {
        self.expire_bans(now, events);
        let secs = now.secs();
        let step = secs / self.hdr.bucket_secs;
        let history = self.policy.history;
        for list in [COUNTED, REMEMBERED] {
            for _ in 0..EXPIRE_PER_CALL {
                let tail = self.hdr.lists[list].tail;
                if tail == NIL {
                    break;
                }
                let slot = &self.slots[tail as usize];
                let idle = slot.window().total(step) == 0 && slot.members == 0;
                let forgotten = list == COUNTED || slot.t1.saturating_add(history) <= secs;
                if !(idle && forgotten) {
                    break;
                }
                self.forget(tail);
            }
        }
    }

    /// Ends the bans whose time is up, a few per call: all a request check
    /// needs, so its cost stays one comparison when none has ended.
    #[inline(always)]
    fn expire_bans(&mut self, now: Now, events: &mut Events) {
        let secs = now.secs();
        for _ in 0..EXPIRE_PER_CALL {
            let head = self.hdr.lists[BANNED].head;
            if head == NIL || self.slots[head as usize].t1 > secs {
                break;
            }
            self.end_ban(head, events);
        }
    }

    /// Ends bans whose time is up, soonest ending first, until the first
    /// ban left is in force or `events` is full (each ending is an event
    /// to log), at most the zone's capacity. For reporting the bans in
    /// force: [`Table::bans`] counts bans nobody ended yet. Returns whether
    /// ended bans are left, for the caller to log the events and call
    /// again.
    pub fn end_ended_bans(&mut self, now: Now, events: &mut Events) -> bool {
        let secs = now.secs();
        let mut steps = self.steps();
        loop {
            let head = self.hdr.lists[BANNED].head;
            // A failed step marks the table damaged, which its user repairs.
            if head == NIL || !self.step(&mut steps, head) || self.slots[head as usize].t1 > secs {
                return false;
            }
            if events.is_full() {
                return true;
            }
            self.end_ban(head, events);
        }
    }

    /// Whether slot `i` is banned now. A ban whose time is up but that
    /// nobody noticed yet is ended here.
    pub(super) fn ban_in_force(&mut self, i: u32, now: Now, events: &mut Events) -> bool {
        let slot = self.slots[i as usize];
        if slot.kind != SlotKind::BANNED {
            return false;
        }
        if slot.t1 > now.secs() {
            return true;
        }
        self.end_ban(i, events);
        false
    }

    /// Bans slot `i` because `failures` reached maxretry: for as long as
    /// its offences escalate to, and as a member of its wider network.
    pub(super) fn ban_for_failures(
        &mut self,
        i: u32,
        now: Now,
        failures: u32,
        events: &mut Events,
    ) -> Ban {
        let secs = self.policy.ban_secs(self.slots[i as usize].offences);
        let ban = self.ban_slot(i, now, secs, failures);
        self.widen_from(i, now, events);
        ban
    }

    /// Forgets the offences of a key whose history ran out.
    pub(super) fn age_history(&mut self, i: u32, now: Now) {
        let slot = self.slots[i as usize];
        if slot.offences == 0 || slot.t1.saturating_add(self.policy.history) > now.secs() {
            return;
        }
        self.slots[i as usize].offences = 0;
        if slot.kind == SlotKind::REMEMBERED {
            self.unlink(REMEMBERED, i);
            self.slots[i as usize].kind = SlotKind::COUNTED;
            self.push_front(COUNTED, i);
        }
    }

    /// After slot `i`'s ban started: counts it as a member of its wider
    /// network, banning that network when `widen` members are banned, and
    /// so on up the chain of wider networks.
    pub(super) fn widen_from(&mut self, mut i: u32, now: Now, events: &mut Events) {
        let policy = self.policy;
        if policy.widen == 0 {
            return;
        }
        loop {
            let member = self.slots[i as usize].key();
            let Some(prefix) = wider_prefix(&member) else {
                return;
            };
            let net = Key::from_raw(member.raw_addr(), prefix);
            // A zone holding only bans has no room for the network's count:
            // the count is skipped, never the member's ban.
            let Some(j) = self.find_or_insert_beside_bans(&net) else {
                self.hdr.stats.widen_skipped += 1;
                return;
            };
            if self.slots[j as usize].kind == SlotKind::BANNED {
                return;
            }
            let members = self.slots[j as usize].members.saturating_add(1);
            self.slots[j as usize].members = members;
            if u32::from(members) < policy.widen {
                return;
            }
            let secs = policy.ban_secs(self.slots[j as usize].offences);
            let ban = self.ban_slot(j, now, secs, u32::from(members));
            self.fold_into(&net);
            events.push(Event::Widened { ban, members });
            i = j;
        }
    }

    /// Drops the bans inside `net`, now that `net` itself is banned.
    fn fold_into(&mut self, net: &Key) {
        let mut steps = self.steps();
        let mut i = self.hdr.lists[BANNED].head;
        while i != NIL && self.step(&mut steps, i) {
            let slot = self.slots[i as usize];
            let next = slot.next;
            if slot.prefix > net.raw_prefix() && Key::from_raw(slot.addr, net.raw_prefix()) == *net
            {
                self.forget(i);
            }
            i = next;
        }
    }

    fn ban_slot(&mut self, i: u32, now: Now, secs: u32, failures: u32) -> Ban {
        let was_banned = self.slots[i as usize].kind == SlotKind::BANNED;
        self.unlink(list_of(self.slots[i as usize].kind), i);
        let slot = &mut self.slots[i as usize];
        slot.kind = SlotKind::BANNED;
        slot.offences = slot.offences.saturating_add(1);
        // Since rounds up, so that until = since + secs exactly and a ban
        // never ends early because of rounding.
        slot.t0 = now.secs_ceil();
        slot.t1 = slot.t0.saturating_add(secs);
        slot.counts = [failures as u16, (failures >> 16) as u16, 0, 0];
        let ban = slot.ban();
        self.insert_by_end(i);
        if was_banned {
            // Replaced: the new end may come sooner.
            self.shared.bans_changed();
        } else {
            self.count_ban(i, 1);
        }
        self.hdr.stats.bans += 1;
        ban
    }

    /// Keeps the ban counters (the filter, all bans, network bans per
    /// prefix, and the members of a wider network) in step as slot `i`
    /// starts (+1) or stops (-1) being a ban.
    pub(super) fn count_ban(&mut self, i: u32, delta: i32) {
        self.filter_ban(i, delta);
        if delta < 0 && self.policy.widen > 0 {
            let member = self.slots[i as usize].key();
            if let Some(net) = wider_prefix(&member).map(|p| Key::from_raw(member.raw_addr(), p)) {
                if let Some(j) = self.find(&net) {
                    let slot = &mut self.slots[j as usize];
                    slot.members = slot.members.saturating_sub(1);
                }
            }
        }
    }

    /// Turns a ban back into a counted address with an empty window, last in
    /// line to be kept: it has not failed since.
    fn end_ban(&mut self, i: u32, events: &mut Events) {
        let key = self.slots[i as usize].key();
        self.unlink(BANNED, i);
        self.count_ban(i, -1);
        self.hdr.stats.expired += 1;
        let policy = self.policy;
        let slot = &mut self.slots[i as usize];
        slot.kind = if policy.increment && policy.history > 0 {
            SlotKind::REMEMBERED
        } else {
            SlotKind::COUNTED
        };
        slot.set_window(Window::default());
        slot.members = 0;
        let list = list_of(slot.kind);
        self.push_back(list, i);
        events.push(Event::Expired(key));
    }
}
