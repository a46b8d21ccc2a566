//! The lock-free ban filter: a counting filter of banned keys and a mask of
//! banned network lengths, both atomics in the shared counters, so that a
//! request no ban can cover is decided without taking the zone's lock.
//!
//! Writers (with the lock held) add a ban to the counters before anything
//! can find it under the lock, and take it out only once it has ended, so a
//! reader that starts after a ban was made always sees it; a stale read
//! only lets a request that races a brand-new ban through, as if it came a
//! moment earlier.
//!
//! The reads without the lock are `Relaxed`: a reader that reads a ban's
//! increment learns nothing else from it (it takes the lock, which orders
//! what it reads next), and one that reads zero passes. What a reader is
//! sure to see is what happens-before its read, through any synchronisation
//! (the API's answer, a later request): coherence gives that for a relaxed
//! load as for an acquiring one.

use core::sync::atomic::{AtomicU64, Ordering};

use super::handle::Table;
use super::hash::filter_slot;
use super::layout::{self, SharedCounters};
use crate::engine::key::Key;

/// Whether `key` may be banned, read without the lock: false when the zone
/// bans nobody, or when neither the key's filter counter nor any banned
/// network length could cover it. A stale read only lets a request that
/// races a brand-new ban through, as if it came a moment earlier.
///
/// # Safety
/// `region` must point to a region formatted by [`Table::format`] (or
/// `format_raw`) that stays mapped during the call.
pub unsafe fn may_be_banned(region: *const u8, key: &Key) -> bool {
    // SAFETY: as for `may_be_banned_within`, guaranteed by the caller.
    unsafe { may_be_banned_within(region, key, key) }
}

/// [`may_be_banned`] for a client `host` whose failures count under `net`
/// (the policy's network for it, or `host` itself: the two are taken for
/// the same key when their lengths are the same). A ban of `net` is found
/// through the filter, so its length need not be in the mask test: only
/// bans of other lengths (wider networks, or a previous policy's) are.
///
/// # Safety
/// `region` must point to a region formatted by [`Table::format`] (or
/// `format_raw`) that stays mapped during the call.
#[inline(always)]
pub unsafe fn may_be_banned_within(region: *const u8, host: &Key, net: &Key) -> bool {
    // SAFETY: the caller guarantees a formatted, mapped region; the
    // counters lie at SHARED_AT, aligned. Only they are borrowed, and they
    // are atomics that others only ever access atomically: nothing here
    // aliases the header or slots that lock holders write.
    let shared = unsafe { &*region.add(layout::SHARED_AT).cast::<SharedCounters>() };
    shared.may_be_banned_within(host, net)
}

/// Whether the zone holds any ban at all: one atomic load, the cost of a
/// passing request while no ban is in force.
///
/// # Safety
/// As for [`may_be_banned_within`].
pub unsafe fn holds_bans(region: *const u8) -> bool {
    // SAFETY: as for `may_be_banned_within`.
    let shared = unsafe { &*region.add(layout::SHARED_AT).cast::<SharedCounters>() };
    shared.banned.load(Ordering::Relaxed) != 0
}

impl SharedCounters {
    /// Loads, a multiply-fold hash or two and compares: the cost of a
    /// passing request while bans exist (cheapest test first; the answer is
    /// their plain OR). With no ban in force the mask and every counter
    /// are zero, so the count of bans need not be read: callers read it
    /// first ([`holds_bans`]) to skip even this.
    #[inline(always)]
    fn may_be_banned_within(&self, host: &Key, net: &Key) -> bool {
        // `net` is `host`'s network: the same key exactly when it has the
        // same length.
        let distinct = net.raw_prefix() != host.raw_prefix();
        let mut lengths = shorter_prefixes(host);
        if distinct {
            lengths &= !(1u128 << net.raw_prefix());
        }
        // Half by half: an IPv4 key needs only the upper one.
        let [low, high] = [lengths as u64, (lengths >> 64) as u64];
        if (high != 0 && self.net_mask[1].load(Ordering::Relaxed) & high != 0)
            || (low != 0 && self.net_mask[0].load(Ordering::Relaxed) & low != 0)
        {
            return true;
        }
        let seed = self.seed();
        self.filtered(seed, host) || (distinct && self.filtered(seed, net))
    }

    /// Whether `key`'s filter counter is taken.
    #[inline(always)]
    fn filtered(&self, seed: [u64; 2], key: &Key) -> bool {
        self.ban_filter[filter_slot(seed, key)].load(Ordering::Relaxed) != 0
    }
}

#[inline]
pub(super) fn load_mask(mask: &[AtomicU64; 2]) -> u128 {
    u128::from(mask[0].load(Ordering::Acquire)) | u128::from(mask[1].load(Ordering::Acquire)) << 64
}

/// Prefix lengths (bits) of the networks that could hold `key`: shorter
/// than its own, and for IPv4 only IPv4 networks (96 bits and more).
#[inline]
pub(super) fn shorter_prefixes(key: &Key) -> u128 {
    let below = match key.raw_prefix() {
        0 => 0,
        p => u128::MAX >> (128 - u32::from(p)),
    };
    let floor = if key.is_ipv4() { !0u128 << 96 } else { !0u128 };
    below & floor
}

impl Table<'_> {
    /// Keeps the filter, the count of bans and the banned network lengths
    /// in step as slot `i` starts (+1) or stops (-1) being a ban.
    pub(super) fn filter_ban(&mut self, i: u32, delta: i32) {
        let slot = self.slots[i as usize];
        let shared = self.shared;
        if delta > 0 {
            shared.banned.fetch_add(1, Ordering::Release);
        } else {
            // Whatever ends it (the endpoint, the fleet, its time, a full
            // zone, a wider ban): no worker may refuse from memory of it.
            shared.bans_changed();
            shared.banned.fetch_sub(1, Ordering::Release);
        }
        let filter = filter_slot(shared.seed(), &slot.key());
        let counter = &shared.ban_filter[filter];
        if delta > 0 {
            counter.fetch_add(1, Ordering::Release);
        } else {
            counter.fetch_sub(1, Ordering::Release);
        }
        let prefix = usize::from(slot.prefix);
        if prefix < 128 {
            let count = &mut self.hdr.net_bans[prefix];
            *count = count.saturating_add_signed(delta);
            let half = &shared.net_mask[prefix / 64];
            let bit = 1u64 << (prefix % 64);
            if *count > 0 {
                half.fetch_or(bit, Ordering::Release);
            } else {
                half.fetch_and(!bit, Ordering::Release);
            }
        }
    }
}
