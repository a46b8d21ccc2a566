//! The [`Table`] itself: a handle over a formatted region, holding the
//! locked header, the shared counters, the buckets and the slots, and the
//! policy it applies. Its operations are split by concern across the
//! files beside this one.

use core::cell::Cell;
use core::sync::atomic::Ordering;

use super::crowdsec_stats::CrowdsecStats;
use super::layout::{LockedHeader, SharedCounters, Slot, SlotKind};
use super::sync_stats::SyncStats;
use super::types::{Policy, Stats};
use crate::engine::window::{self, Window};

/// A table over a region, attached with the policy its operations apply.
/// Only one exists at a time per region: the zone's lock (or an exclusive
/// borrow) guarantees it.
pub struct Table<'a> {
    pub(super) hdr: &'a mut LockedHeader,
    pub(super) shared: &'a SharedCounters,
    pub(super) buckets: &'a mut [u32],
    pub(super) slots: &'a mut [Slot],
    pub(super) policy: Policy,
    /// Set when a walk met a cycle or a link out of range.
    pub(super) damaged: Cell<bool>,
}

impl Table<'_> {
    pub fn capacity(&self) -> u32 {
        self.hdr.capacity
    }

    /// The policy this table applies: the one it was attached with.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Addresses held: counted or banned.
    pub fn tracked(&self) -> u32 {
        self.hdr.in_use
    }

    pub fn bans(&self) -> u32 {
        self.shared.banned.load(Ordering::Relaxed)
    }

    /// The zone's counters: `refused` includes the refusals workers
    /// decided without the lock, from their memory of a ban.
    pub fn stats(&self) -> Stats {
        let mut stats = self.hdr.stats;
        let unlocked = self.shared.refused_unlocked.load(Ordering::Relaxed);
        stats.refused = stats.refused.wrapping_add(unlocked);
        stats
    }

    /// The zone's ban generation, read with the lock held: a ban found
    /// now can be remembered with it ([`Refusals::remember`]).
    ///
    /// [`Refusals::remember`]: super::refusals::Refusals::remember
    pub fn ban_generation(&self) -> u64 {
        self.shared.ban_generation.load(Ordering::Relaxed)
    }

    /// The zone's fleet sync counters and link state.
    pub fn sync_stats(&self) -> &SyncStats {
        &self.hdr.sync
    }

    pub fn sync_stats_mut(&mut self) -> &mut SyncStats {
        &mut self.hdr.sync
    }

    /// The zone's CrowdSec counters and LAPI state.
    /// The secret a key zone hashes its keys with.
    pub fn key_secret(&self) -> [u64; 2] {
        self.hdr.key_secret
    }

    /// The secret a state file kept: set before its records are restored,
    /// so that their hashed keys are the ones requests will hash to.
    pub fn set_key_secret(&mut self, secret: [u64; 2]) {
        self.hdr.key_secret = secret;
    }

    pub fn crowdsec_stats(&self) -> &CrowdsecStats {
        &self.hdr.crowdsec
    }

    pub fn crowdsec_stats_mut(&mut self) -> &mut CrowdsecStats {
        &mut self.hdr.crowdsec
    }

    /// Whether an operation found the region damaged (a list that loops, a
    /// link out of range). Its results mean nothing then, and the region
    /// should be formatted again.
    pub fn damaged(&self) -> bool {
        self.damaged.get()
    }

    /// Makes the policy's findtime the window step of the shared counts,
    /// as a reload does once (see the reload rules above). A new step
    /// restarts every running count, as counts of another step cannot be
    /// converted; bans and offence histories are kept. True if it did.
    pub fn apply_findtime(&mut self) -> bool {
        let step = window::bucket_secs(self.policy.findtime);
        if step == self.hdr.bucket_secs {
            return false;
        }
        let used = self.hdr.high_water as usize;
        for slot in self.slots[..used].iter_mut() {
            if matches!(slot.kind, SlotKind::COUNTED | SlotKind::REMEMBERED) {
                slot.set_window(Window::default());
            }
        }
        self.hdr.bucket_secs = step;
        true
    }
}
