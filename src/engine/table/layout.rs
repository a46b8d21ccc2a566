//! The region's layout and its versioning: where the header, the bucket
//! heads and the slots lie, how a region is formatted, and how a formatted
//! one is recognised (magic, layout version, length) and checked before use.
//!
//! ```text
//! 0            LockedHeader      read and written with the zone locked
//! SHARED_AT    SharedCounters    atomics, also read without the lock
//! buckets_at   [u32; nbuckets]   hash bucket heads
//! slots_at     [Slot; capacity]  48 bytes each
//! ```
//!
//! The two parts of the header are separate types so that no reference
//! ever covers memory another process writes without the lock: a table
//! holds `&mut LockedHeader` (the lock makes it exclusive) and
//! `&SharedCounters` (atomics only), and the lock-free pre-check forms
//! nothing but `&SharedCounters`.

use core::mem::{align_of, size_of};
use core::ptr;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use super::crowdsec_stats::CrowdsecStats;
use super::hash::FILTER_SLOTS;
use super::sync_stats::SyncStats;
use super::types::{Ban, Stats};
use crate::engine::key::Key;
use crate::engine::window::{Window, BUCKETS};

/// Bumped whenever the region's layout changes, so a reload with a new
/// module never adopts a zone it cannot read. 2: the policy left the
/// header, which split into a locked part and shared counters. 3: fleet
/// sync counters in the locked header. 4: `widen_skipped`, and the sync
/// counters of refused, skipped and dropped records. 5: the shared counters
/// gained the ban generation and the refusals counted without the lock (a
/// worker refusing a ban it remembers), so a zone of version 4 cannot be
/// read: it is formatted anew on upgrade. 6: the ban filter's counters are
/// placed by one multiply-fold of the key, not the index's two. 7: the
/// CrowdSec counters in the locked header.
pub const LAYOUT_VERSION: u32 = 7;
pub(super) const MAGIC: u64 = u64::from_le_bytes(*b"AUTHBAN\0");
/// The end of a list or chain.
pub(super) const NIL: u32 = u32::MAX;
/// Bytes one tracked address costs: its slot and half a bucket head.
pub const BYTES_PER_ADDRESS: usize = size_of::<Slot>() + size_of::<u32>() / 2;

/// Where the shared counters start, after the locked header.
pub(super) const SHARED_AT: usize =
    align_up(size_of::<LockedHeader>(), align_of::<SharedCounters>());
/// Bytes of both parts of the header.
pub(super) const HEADER_LEN: usize = SHARED_AT + size_of::<SharedCounters>();
/// The alignment a region must have.
pub(super) const REGION_ALIGN: usize = max(
    max(align_of::<LockedHeader>(), align_of::<SharedCounters>()),
    align_of::<Slot>(),
);

const fn max(a: usize, b: usize) -> usize {
    if a > b {
        a
    } else {
        b
    }
}

const fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct List {
    pub(super) head: u32,
    pub(super) tail: u32,
}

impl List {
    pub(super) const EMPTY: List = List {
        head: NIL,
        tail: NIL,
    };
}

/// Indices of the three lists in [`LockedHeader::lists`].
pub(super) const COUNTED: usize = 0;
pub(super) const BANNED: usize = 1;
/// Counted addresses with a remembered offence history, dropped after the
/// plainly counted ones when the zone is full.
pub(super) const REMEMBERED: usize = 2;

/// The part of the header only read or written with the zone locked.
#[repr(C)]
pub(super) struct LockedHeader {
    pub(super) magic: u64,
    pub(super) layout: u32,
    pub(super) capacity: u32,
    pub(super) nbuckets: u32,
    /// Seconds per window step the running counts were made with: shared
    /// state, changed only by [`Table::apply_findtime`] (which restarts
    /// the counts), never by attaching with another findtime.
    pub(super) bucket_secs: u32,
    pub(super) region_len: u64,
    /// Head of the free list (slots released after use).
    pub(super) free: u32,
    /// Slots below this index have been used at least once; the rest were
    /// never touched, so untouched memory stays out of the workers' RSS.
    pub(super) high_water: u32,
    pub(super) in_use: u32,
    pub(super) lists: [List; 3],
    pub(super) stats: Stats,
    /// Active bans per prefix length (IPv6 bits) of network keys, so a
    /// check looks up only the network sizes that are banned somewhere.
    pub(super) net_bans: [u32; 129],
    /// Fleet sync counters and link state (zones with `sync=`).
    pub(super) sync: SyncStats,
    /// CrowdSec bouncer counters and LAPI state (zones `authban_crowdsec`
    /// names).
    pub(super) crowdsec: CrowdsecStats,
    /// The secret key zones (`key=`) hash their keys with, made at format
    /// (or restored from the state file), so the values never sit here.
    pub(super) key_secret: [u64; 2],
}

/// The part of the header read without the lock by the pre-check: atomics
/// only, written (with the lock held) by the table's ban bookkeeping.
#[repr(C)]
pub(super) struct SharedCounters {
    /// The hash seed, set when the region is formatted.
    pub(super) seed: [AtomicU64; 2],
    /// Bans in force: while zero, no request needs the lock.
    pub(super) banned: AtomicU32,
    /// Changed (with the lock held) whenever a ban in force stops covering
    /// what it covered until its end: lifted (the endpoint, the fleet),
    /// ended (its time up, the zone full, folded into a wider ban),
    /// replaced, and when the table is formatted. New bans leave it alone.
    /// A worker's memory of a ban it saw under the lock ([`Refusals`])
    /// holds only while this is unchanged.
    ///
    /// [`Refusals`]: super::refusals::Refusals
    pub(super) ban_generation: AtomicU64,
    /// Bit p set while net_bans[p] > 0, as two atomic halves: a check walks
    /// only those lengths, and the lock-free pre-check reads it.
    pub(super) net_mask: [AtomicU64; 2],
    /// Bans counted by a hash of their key: a request whose counter is zero
    /// (and that no banned network holds) is clear without taking the lock.
    pub(super) ban_filter: [AtomicU16; FILTER_SLOTS],
    /// Keeps `refused_unlocked` off the cache lines the counters above
    /// share: every refusal of every worker writes it.
    _apart: [u64; 7],
    /// Refusals decided without the lock, from a worker's memory of a ban:
    /// [`Table::stats`](super::handle::Table::stats) adds them to those
    /// counted under it.
    pub(super) refused_unlocked: AtomicU64,
    /// And off the bucket heads that follow.
    _apart_after: [u64; 7],
}

impl SharedCounters {
    /// Marks that a ban in force stopped covering what it covered, or may
    /// end sooner (see `ban_generation`). With the lock held.
    #[inline]
    pub(super) fn bans_changed(&self) {
        self.ban_generation.fetch_add(1, Ordering::Release);
    }

    #[inline]
    pub(super) fn seed(&self) -> [u64; 2] {
        self.seed.each_ref().map(|s| s.load(Ordering::Relaxed))
    }

    /// An empty table's counters. Stores, never a plain write: a worker's
    /// pre-check may be reading them when a damaged zone is reset. The ban
    /// generation moves on rather than restarting, so that no worker's
    /// memory of a ban in the table before survives it.
    pub(super) fn reset(&self, seed: [u64; 2]) {
        self.bans_changed();
        self.refused_unlocked.store(0, Ordering::Release);
        self.banned.store(0, Ordering::Release);
        for half in &self.net_mask {
            half.store(0, Ordering::Release);
        }
        for counter in &self.ban_filter {
            counter.store(0, Ordering::Release);
        }
        for (s, v) in self.seed.iter().zip(seed) {
            s.store(v, Ordering::Release);
        }
    }
}

/// Slot kinds, kept as a plain byte: the region is shared memory that
/// another process writes, so no Rust enum validity is assumed of it.
pub(super) struct SlotKind;

impl SlotKind {
    pub(super) const FREE: u8 = 0;
    pub(super) const COUNTED: u8 = 1;
    pub(super) const BANNED: u8 = 2;
    /// Counted, with an offence history still remembered.
    pub(super) const REMEMBERED: u8 = 3;
}

#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Slot {
    pub(super) addr: [u8; 16],
    /// Next slot in the hash bucket, or in the free list.
    pub(super) chain: u32,
    pub(super) prev: u32,
    pub(super) next: u32,
    /// A [`SlotKind`].
    pub(super) kind: u8,
    pub(super) prefix: u8,
    /// Bans of this key the zone remembers.
    pub(super) offences: u8,
    /// Active bans inside this network, for widening.
    pub(super) members: u8,
    /// Counted: newest window step. Banned: start, unix seconds.
    pub(super) t0: u32,
    /// Banned: end, unix seconds. Otherwise: end of the last ban, the start
    /// of the offence history (0: none).
    pub(super) t1: u32,
    /// Counted: window counts. Banned: failures, as two halves of a u32.
    pub(super) counts: [u16; BUCKETS],
}

const _: () = assert!(size_of::<Slot>() == 48);

impl Slot {
    pub(super) fn key(&self) -> Key {
        Key::from_raw(self.addr, self.prefix)
    }

    pub(super) fn window(&self) -> Window {
        Window {
            newest: self.t0,
            counts: self.counts,
        }
    }

    pub(super) fn set_window(&mut self, win: Window) {
        self.t0 = win.newest;
        self.counts = win.counts;
    }

    #[inline]
    pub(super) fn ban(&self) -> Ban {
        Ban {
            key: self.key(),
            since: self.t0,
            until: self.t1,
            failures: u32::from(self.counts[0]) | (u32::from(self.counts[1]) << 16),
            offence: self.offences,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LayoutError {
    TooSmall,
    Misaligned,
    /// Not a table, or one written by another layout version or size.
    Foreign,
    /// A table of this layout whose header contradicts itself (an index
    /// past the slots, a zero window step): memory was overwritten.
    Damaged,
}

pub(super) struct Layout {
    pub(super) capacity: u32,
    pub(super) nbuckets: u32,
    pub(super) buckets_at: usize,
    pub(super) slots_at: usize,
}

impl Layout {
    pub(super) fn for_capacity(capacity: u32) -> Layout {
        let nbuckets = capacity.div_ceil(2).max(1);
        let buckets_at = align_up(HEADER_LEN, align_of::<u32>());
        let slots_at = align_up(
            buckets_at + nbuckets as usize * size_of::<u32>(),
            align_of::<Slot>(),
        );
        Layout {
            capacity,
            nbuckets,
            buckets_at,
            slots_at,
        }
    }

    pub(super) fn end(&self) -> usize {
        self.slots_at + self.capacity as usize * size_of::<Slot>()
    }

    /// The largest table that fits `len` bytes.
    pub(super) fn fitting(len: usize) -> Option<Layout> {
        let estimate = len.saturating_sub(HEADER_LEN) / BYTES_PER_ADDRESS;
        let mut capacity = u32::try_from(estimate).unwrap_or(NIL - 1);
        loop {
            let layout = Layout::for_capacity(capacity);
            if layout.end() <= len {
                return (capacity > 0).then_some(layout);
            }
            capacity = capacity.checked_sub(1)?;
        }
    }
}

/// Addresses a region of `len` bytes can track.
pub fn capacity_for(len: usize) -> u32 {
    Layout::fitting(len).map_or(0, |l| l.capacity)
}

/// The length a formatted region records for itself, 0 if it is not one
/// (another magic or layout version). Only the header says so: a damaged
/// header can claim any length, so the caller clamps it to the memory it
/// really has, and [`Table::attach_raw`] refuses a length that differs.
///
/// # Safety
/// `region` must point to at least [`header_len`] readable bytes, aligned
/// for the header, that nobody writes meanwhile (the zone is locked, or
/// not yet shared).
pub unsafe fn stored_len(region: *const u8) -> usize {
    let hdr = region.cast::<LockedHeader>();
    // SAFETY: guaranteed by the caller; the fields are plain integers, read
    // by value without forming a reference to the header.
    let (magic, layout, len) = unsafe {
        (
            ptr::read(ptr::addr_of!((*hdr).magic)),
            ptr::read(ptr::addr_of!((*hdr).layout)),
            ptr::read(ptr::addr_of!((*hdr).region_len)),
        )
    };
    if magic != MAGIC || layout != LAYOUT_VERSION {
        return 0;
    }
    usize::try_from(len).unwrap_or(0)
}

/// Bytes of the header: a region shorter than this is never a table.
pub const fn header_len() -> usize {
    HEADER_LEN
}
