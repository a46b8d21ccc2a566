//! Making a [`Table`] over a region: formatting a new one, and attaching to
//! a formatted one once its header is checked (`layout` says where things
//! lie; this file trusts nothing it reads there).

use core::cell::Cell;

use super::crowdsec_stats::CrowdsecStats;
use super::handle::Table;
use super::layout::{
    Layout, LayoutError, List, LockedHeader, SharedCounters, Slot, HEADER_LEN, LAYOUT_VERSION,
    MAGIC, NIL, REGION_ALIGN, SHARED_AT,
};
use super::sync_stats::SyncStats;
use super::types::{Policy, Stats};
use crate::engine::window;

impl<'a> Table<'a> {
    /// Lays out an empty table over `region`, to be used with `policy`
    /// (whose findtime sets the window step).
    pub fn format(
        region: &'a mut [u8],
        policy: &Policy,
        seed: [u64; 2],
    ) -> Result<Self, LayoutError> {
        // SAFETY: an exclusive borrow of initialised bytes for 'a.
        unsafe { Self::format_raw(region.as_mut_ptr(), region.len(), policy, seed) }
    }

    /// [`Table::format`] over raw memory, such as a shared zone's.
    ///
    /// # Safety
    /// `base` must point to `len` initialised bytes, readable and writable
    /// for `'a`, that nothing else reads or writes for `'a` but the shared
    /// counters' atomics (the lock-free pre-check of other workers): in
    /// shared memory, the caller holds the zone's lock for `'a`.
    pub unsafe fn format_raw(
        base: *mut u8,
        len: usize,
        policy: &Policy,
        seed: [u64; 2],
    ) -> Result<Self, LayoutError> {
        let layout = Layout::fitting(len).ok_or(LayoutError::TooSmall)?;
        // SAFETY: as guaranteed by the caller; `layout` fits `len`.
        let table = unsafe { Self::split(base, len, &layout, policy)? };
        *table.hdr = LockedHeader {
            magic: MAGIC,
            layout: LAYOUT_VERSION,
            capacity: layout.capacity,
            nbuckets: layout.nbuckets,
            bucket_secs: window::bucket_secs(policy.findtime),
            region_len: len as u64,
            free: NIL,
            high_water: 0,
            in_use: 0,
            lists: [List::EMPTY; 3],
            stats: Stats::default(),
            net_bans: [0; 129],
            sync: SyncStats::EMPTY,
            crowdsec: CrowdsecStats::EMPTY,
            key_secret: key_secret_from(seed),
        };
        table.shared.reset(seed);
        table.buckets.fill(NIL);
        Ok(table)
    }

    /// Opens a table formatted earlier (by this or another process), to be
    /// used with `policy`. What the policy changes, and what it cannot,
    /// is in the module documentation's reload rules.
    pub fn attach(region: &'a mut [u8], policy: &Policy) -> Result<Self, LayoutError> {
        // SAFETY: an exclusive borrow of initialised bytes for 'a.
        unsafe { Self::attach_raw(region.as_mut_ptr(), region.len(), policy) }
    }

    /// [`Table::attach`] over raw memory, such as a shared zone's. The
    /// header must say it is a table of this layout and of exactly `len`
    /// bytes (else `Foreign`), and must not contradict itself (else
    /// `Damaged`).
    ///
    /// # Safety
    /// As for [`Table::format_raw`].
    #[inline]
    pub unsafe fn attach_raw(
        base: *mut u8,
        len: usize,
        policy: &Policy,
    ) -> Result<Self, LayoutError> {
        if len < HEADER_LEN {
            return Err(LayoutError::TooSmall);
        }
        if base.align_offset(REGION_ALIGN) != 0 {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: size and alignment were checked just above, and nobody
        // else touches the locked header meanwhile (the caller's promise).
        let hdr = unsafe { &*base.cast::<LockedHeader>() };
        if hdr.magic != MAGIC || hdr.layout != LAYOUT_VERSION || hdr.region_len != len as u64 {
            return Err(LayoutError::Foreign);
        }
        let layout = Layout::for_capacity(hdr.capacity);
        if layout.nbuckets != hdr.nbuckets || layout.end() > len {
            return Err(LayoutError::Foreign);
        }
        // SAFETY: as guaranteed by the caller; `layout` fits `len`.
        let table = unsafe { Self::split(base, len, &layout, policy)? };
        table.check_header()?;
        Ok(table)
    }

    /// Indices and counters the header holds must point inside the slots
    /// used so far, and the window step must not be zero: nothing read from
    /// shared memory is trusted to index or divide unchecked.
    #[inline(always)]
    fn check_header(&self) -> Result<(), LayoutError> {
        let hdr = &*self.hdr;
        let used = hdr.high_water;
        let index_ok = |i: u32| i == NIL || i < used;
        let lists_ok = hdr
            .lists
            .iter()
            .all(|l| index_ok(l.head) && index_ok(l.tail) && (l.head == NIL) == (l.tail == NIL));
        let ok = hdr.bucket_secs > 0
            && used <= hdr.capacity
            && hdr.in_use <= used
            && index_ok(hdr.free)
            && lists_ok;
        ok.then_some(()).ok_or(LayoutError::Damaged)
    }

    /// The table's parts over `base`, none overlapping another.
    ///
    /// # Safety
    /// As for [`Table::format_raw`].
    #[inline]
    unsafe fn split(
        base: *mut u8,
        len: usize,
        layout: &Layout,
        policy: &Policy,
    ) -> Result<Self, LayoutError> {
        if layout.end() > len {
            return Err(LayoutError::TooSmall);
        }
        if base.align_offset(REGION_ALIGN) != 0 {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: the four parts are disjoint, in bounds (checked against
        // `layout.end()`), and aligned: the region is aligned for all of
        // them and each offset is rounded up to its part's alignment. Every
        // field is an integer or an atomic, valid for any bits. Only the
        // shared counters, all atomics, are touched by other processes
        // without the lock, and they are only ever borrowed shared.
        unsafe {
            Ok(Table {
                hdr: &mut *base.cast::<LockedHeader>(),
                shared: &*base.add(SHARED_AT).cast::<SharedCounters>(),
                buckets: core::slice::from_raw_parts_mut(
                    base.add(layout.buckets_at).cast::<u32>(),
                    layout.nbuckets as usize,
                ),
                slots: core::slice::from_raw_parts_mut(
                    base.add(layout.slots_at).cast::<Slot>(),
                    layout.capacity as usize,
                ),
                policy: *policy,
                damaged: Cell::new(false),
            })
        }
    }
}

/// A key zone's secret from the format's random seed: mixed (splitmix64's
/// finalizer), so it reads as no part of the index's seed.
fn key_secret_from(seed: [u64; 2]) -> [u64; 2] {
    let mix = |mut z: u64| {
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    [
        mix(seed[0] ^ 0x6b65_795f_7365_6372),
        mix(seed[1].rotate_left(17) ^ seed[0]),
    ]
}
