//! A worker's memory of the bans it confirmed under the zone's lock, so
//! that a banned client hammering the server (the common case of an attack
//! once it is banned) is refused without taking the lock again.
//!
//! An entry holds a client's host key, the end of the ban that covered it
//! (its own, or a network's) and the zone's ban generation read under the
//! same lock. The generation changes, with the lock held, whenever a ban in
//! force is lifted, ended, replaced or the table formatted (see
//! `SharedCounters::ban_generation`); nothing else can make a ban stop
//! covering a key before its end. So while the generation read now equals
//! the entry's, the ban the entry saw still holds, and it holds until the
//! entry's end: the client is refused as the table would refuse it.
//!
//! The generation is read `Acquire` without the lock: a change that
//! happens-before the read (an unban whose answer the client got, then a
//! new request) is seen, by coherence, as the ban filter's reads are; one
//! racing with it only refuses a request that came a moment earlier. The
//! memory itself is per process (nginx workers are single-threaded) and
//! never shared; an entry a collision overwrote is found again under the
//! lock.

use core::cell::Cell;
use core::sync::atomic::Ordering;

use super::layout::{self, SharedCounters};
use super::types::Now;
use crate::engine::key::Key;

/// Entries (a power of two): direct-mapped by the key's address.
const ENTRIES: usize = 64;
const ENTRY_BITS: u32 = ENTRIES.trailing_zeros();

#[derive(Clone, Copy)]
struct Entry {
    key: Key,
    /// End of the ban, unix seconds: 0 (an empty entry) never holds.
    until: u32,
    generation: u64,
}

/// One process's memory of the bans of one zone (see the module
/// documentation).
pub struct Refusals {
    entries: [Cell<Entry>; ENTRIES],
}

impl Default for Refusals {
    fn default() -> Refusals {
        let empty = Entry {
            key: Key::host_v6([0; 16]),
            until: 0,
            generation: 0,
        };
        Refusals {
            entries: core::array::from_fn(|_| Cell::new(empty)),
        }
    }
}

impl Refusals {
    #[inline(always)]
    fn entry(&self, key: &Key) -> &Cell<Entry> {
        let addr = u128::from_ne_bytes(key.raw_addr());
        let folded = (addr as u64) ^ ((addr >> 64) as u64);
        let i = folded.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> (64 - ENTRY_BITS);
        &self.entries[i as usize & (ENTRIES - 1)]
    }

    /// Remembers that `key` is covered by a ban ending at `until`, as seen
    /// under the zone's lock with the table's `generation`
    /// ([`Table::ban_generation`](super::handle::Table::ban_generation)).
    #[inline]
    pub fn remember(&self, key: &Key, until: u32, generation: u64) {
        self.entry(key).set(Entry {
            key: *key,
            until,
            generation,
        });
    }

    /// Whether `key` is remembered banned under `generation` at `now`.
    #[inline(always)]
    fn holds(&self, key: &Key, generation: impl FnOnce() -> u64, now: Now) -> bool {
        let entry = self.entry(key).get();
        entry.key == *key && entry.until > now.secs() && entry.generation == generation()
    }
}

/// Whether `host` is refused from `refusals`, without the lock: remembered
/// banned, that ban not yet ended, and no ban of the zone changed since.
/// The refusal is then counted in the zone's statistics.
///
/// # Safety
/// `region` must point to a region formatted by [`Table::format`] (or
/// `format_raw`) that stays mapped during the call, and `refusals` must be
/// used with that region only (its generations are that table's).
///
/// [`Table::format`]: super::handle::Table::format
#[inline(always)]
pub unsafe fn refused_from_memory(
    region: *const u8,
    refusals: &Refusals,
    host: &Key,
    now: Now,
) -> bool {
    // SAFETY: the caller guarantees a formatted, mapped region; the
    // counters lie at SHARED_AT, aligned, and are atomics only ever
    // accessed atomically (as in `filter::may_be_banned_within`).
    let shared = unsafe { &*region.add(layout::SHARED_AT).cast::<SharedCounters>() };
    let generation = || shared.ban_generation.load(Ordering::Acquire);
    if !refusals.holds(host, generation, now) {
        return false;
    }
    shared.refused_unlocked.fetch_add(1, Ordering::Relaxed);
    true
}
