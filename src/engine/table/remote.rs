//! What other nodes of a fleet decided (`sync=`): their bans, applied to
//! this zone, and bans this node makes because the fleet's failures, not
//! only its own, reached maxretry.

use super::handle::Table;
use super::index::list_of;
use super::layout::SlotKind;
use super::types::{Ban, Events, Now, Policy, MAX_BAN_SECS};
use crate::engine::key::Key;

/// How far ahead of this node's clock another node's ban may start.
pub const MAX_CLOCK_SKEW: u32 = 60;

/// Why a ban from the fleet (Redis) is not applied: it says more than this
/// zone's own policy could ever have made.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Unacceptable {
    #[error("ends later than the longest ban the zone allows")]
    EndsTooLate,
    #[error("starts in the future")]
    StartsLater,
    #[error("names a network wider than the zone bans")]
    TooWide,
}

impl Policy {
    /// The longest ban this zone can make, by failures or by the API.
    pub fn longest_ban(&self) -> u32 {
        let by_failures = if self.increment {
            self.maxtime.max(self.bantime)
        } else {
            self.bantime
        };
        by_failures.max(MAX_BAN_SECS)
    }

    /// The widest network (shortest prefix, in IPv6 bits as keys hold it)
    /// this zone bans by itself in `key`'s family: its own prefix, or the
    /// network `widen` folds into.
    fn widest_own_prefix(&self, key: &Key) -> u8 {
        let (own, widened) = if key.is_ipv4() {
            (96 + self.ipv4_prefix.min(32), 120)
        } else {
            (self.ipv6_prefix.min(128), 48)
        };
        if self.widen > 0 {
            own.min(widened)
        } else {
            own
        }
    }

    /// Whether a ban another node (or whoever writes to Redis) sent is one
    /// this zone could have made: it ends within the longest ban from now,
    /// does not start in the future, and names no network wider than the
    /// zone bans, unless `any_network` (`sync_wide=on`).
    pub fn admits_remote(
        &self,
        ban: &Ban,
        now: Now,
        any_network: bool,
    ) -> Result<(), Unacceptable> {
        let secs = now.secs();
        if ban.until
            > secs
                .saturating_add(self.longest_ban())
                .saturating_add(MAX_CLOCK_SKEW)
        {
            return Err(Unacceptable::EndsTooLate);
        }
        if ban.since > secs.saturating_add(MAX_CLOCK_SKEW) {
            return Err(Unacceptable::StartsLater);
        }
        if !any_network && ban.key.raw_prefix() < self.widest_own_prefix(&ban.key) {
            return Err(Unacceptable::TooWide);
        }
        Ok(())
    }
}

impl Table<'_> {
    /// Applies a ban made elsewhere (a message, or a record loaded from
    /// Redis) with the times it was given there. A ban in force that ends
    /// as late or later is kept; the offence count is the higher of the
    /// two, so escalation follows the address across nodes. Answers the
    /// ban now held if this changed it.
    pub fn apply_remote_ban(&mut self, ban: &Ban, now: Now, events: &mut Events) -> Option<Ban> {
        if ban.until <= now.secs() {
            return None;
        }
        self.expire(now, events);
        let i = self.find_or_insert(&ban.key, events);
        if self.ban_in_force(i, now, events) && self.slots[i as usize].t1 >= ban.until {
            let kept = &mut self.slots[i as usize];
            kept.offences = kept.offences.max(ban.offence);
            return None;
        }
        let was_banned = self.slots[i as usize].kind == SlotKind::BANNED;
        self.unlink(list_of(self.slots[i as usize].kind), i);
        let slot = &mut self.slots[i as usize];
        slot.kind = SlotKind::BANNED;
        slot.offences = slot.offences.max(ban.offence);
        slot.t0 = ban.since;
        slot.t1 = ban.until;
        slot.counts = [ban.failures as u16, (ban.failures >> 16) as u16, 0, 0];
        let held = slot.ban();
        self.insert_by_end(i);
        if was_banned {
            // Replaced (by a later end): every change to a ban in force is
            // one the workers' memories of bans must not outlive.
            self.shared.bans_changed();
        } else {
            self.count_ban(i, 1);
            self.widen_from(i, now, events);
        }
        Some(held)
    }

    /// Bans `key` because `failures` across the fleet reached maxretry,
    /// with this zone's escalation. `None` if it is banned already.
    pub fn ban_by_fleet(
        &mut self,
        key: &Key,
        now: Now,
        failures: u32,
        events: &mut Events,
    ) -> Option<Ban> {
        self.expire(now, events);
        let i = self.find_or_insert(key, events);
        if self.ban_in_force(i, now, events) {
            return None;
        }
        self.age_history(i, now);
        Some(self.ban_for_failures(i, now, failures, events))
    }
}

#[cfg(test)]
mod tests {
    use super::super::types::{Policy, Verdict};
    use super::*;

    fn with_table(policy: Policy, f: impl FnOnce(&mut Table<'_>)) {
        let mut region = vec![0u8; 64 * 1024];
        let mut t = Table::format(&mut region, &policy, [1, 2]).unwrap();
        f(&mut t);
    }

    fn key(text: &str) -> Key {
        Key::parse(text).unwrap()
    }

    const NOW: Now = Now { ms: 1_000_000_000 };

    fn remote(k: &str, until: u32, offence: u8) -> Ban {
        Ban {
            key: key(k),
            since: NOW.secs() - 10,
            until,
            failures: 7,
            offence,
        }
    }

    #[test]
    fn a_remote_ban_refuses_here_with_its_own_times() {
        with_table(Policy::default(), |t| {
            let mut ev = Events::default();
            let ban = remote("192.0.2.1", NOW.secs() + 100, 1);
            assert_eq!(t.apply_remote_ban(&ban, NOW, &mut ev), Some(ban));
            assert_eq!(
                t.check(&key("192.0.2.1"), NOW, true, &mut ev),
                Verdict::Banned(ban)
            );
            // The same ban again, or a shorter one, changes nothing.
            assert_eq!(t.apply_remote_ban(&ban, NOW, &mut ev), None);
            let shorter = remote("192.0.2.1", NOW.secs() + 50, 1);
            assert_eq!(t.apply_remote_ban(&shorter, NOW, &mut ev), None);
            // A longer one extends it.
            let longer = remote("192.0.2.1", NOW.secs() + 500, 2);
            assert_eq!(t.apply_remote_ban(&longer, NOW, &mut ev), Some(longer));
            assert_eq!(t.bans(), 1);
            // An ended one is ignored.
            let ended = remote("192.0.2.2", NOW.secs(), 1);
            assert_eq!(t.apply_remote_ban(&ended, NOW, &mut ev), None);
        });
    }

    #[test]
    fn what_the_zone_could_not_have_made_is_not_admitted() {
        let policy = Policy::default();
        let now = NOW.secs();
        let ok = remote("192.0.2.1", now + 600, 1);
        assert_eq!(policy.admits_remote(&ok, NOW, false), Ok(()));
        // The forged ban of all of IPv4 until 2106.
        let all = Ban {
            key: key("0.0.0.0/0"),
            since: 0,
            until: u32::MAX,
            failures: 1,
            offence: 255,
        };
        assert_eq!(
            policy.admits_remote(&all, NOW, true),
            Err(Unacceptable::EndsTooLate)
        );
        let wide = Ban {
            until: now + 60,
            ..all
        };
        assert_eq!(
            policy.admits_remote(&wide, NOW, false),
            Err(Unacceptable::TooWide)
        );
        assert_eq!(policy.admits_remote(&wide, NOW, true), Ok(()));
        // The API's longest ban, a year, passes; a second more does not.
        let year = remote("192.0.2.1", now + MAX_BAN_SECS + MAX_CLOCK_SKEW, 1);
        assert_eq!(policy.admits_remote(&year, NOW, false), Ok(()));
        let more = Ban {
            until: year.until + 1,
            ..year
        };
        assert_eq!(
            policy.admits_remote(&more, NOW, false),
            Err(Unacceptable::EndsTooLate)
        );
        let later = Ban {
            since: now + MAX_CLOCK_SKEW + 1,
            ..ok
        };
        assert_eq!(
            policy.admits_remote(&later, NOW, false),
            Err(Unacceptable::StartsLater)
        );
        // A /24 only where the zone widens to it, or counts /24s itself.
        let net = remote("192.0.2.0/24", now + 60, 1);
        assert_eq!(
            policy.admits_remote(&net, NOW, false),
            Err(Unacceptable::TooWide)
        );
        let widening = Policy { widen: 3, ..policy };
        assert_eq!(widening.admits_remote(&net, NOW, false), Ok(()));
        let per_24 = Policy {
            ipv4_prefix: 24,
            ..policy
        };
        assert_eq!(per_24.admits_remote(&net, NOW, false), Ok(()));
        let v6 = remote("2001:db8::/48", now + 60, 1);
        assert_eq!(widening.admits_remote(&v6, NOW, false), Ok(()));
        let v6 = remote("2001:db8::/40", now + 60, 1);
        assert_eq!(
            widening.admits_remote(&v6, NOW, false),
            Err(Unacceptable::TooWide)
        );
    }

    #[test]
    fn escalation_follows_remote_offences() {
        let policy = Policy {
            increment: true,
            bantime: 60,
            maxretry: 3,
            ..Policy::default()
        };
        with_table(policy, |t| {
            let mut ev = Events::default();
            let k = key("192.0.2.1");
            // Another node banned it twice already; the ban ended.
            let ban = remote("192.0.2.1", NOW.secs() + 1, 2);
            t.apply_remote_ban(&ban, NOW, &mut ev);
            let later = Now::from_ms(NOW.ms + 5_000);
            let third = t.ban_by_fleet(&k, later, 3, &mut ev).unwrap();
            assert_eq!(third.offence, 3);
            assert_eq!(third.until - third.since, 60 * 4);
            // Banned already: nothing more.
            assert_eq!(t.ban_by_fleet(&k, later, 4, &mut ev), None);
        });
    }
}
