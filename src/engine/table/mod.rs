//! The jail's state: a fixed-size table of addresses laid out in one byte
//! region (nginx shared memory in production, a plain buffer in tests).
//!
//! The region never grows. It holds a header, a hash index of `u32` bucket
//! heads (two slots per bucket on average) and 48-byte slots, so one address
//! costs 50 bytes: about 20,600 per MiB with the ~5 KiB header, IPv6
//! included. Slots sit on intrusive lists: addresses that are only counted,
//! most recently failing first; remembered offenders; and bans, ordered by
//! their end. When the table is full the least recently failing counted
//! address is forgotten, then remembered offenders; a ban is dropped only
//! when nothing else is left, and then the one ending soonest.
//!
//! Callers serialise access (the zone's slab-pool mutex); nothing here
//! allocates or blocks, so the lock is held for a few hundred instructions.
//! One read needs no lock: `may_be_banned`, over atomics in the header, lets
//! a request that no ban can cover skip the lock altogether.

use core::mem::{align_of, size_of};
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use crate::engine::key::Key;
use crate::engine::window::{self, Window, BUCKETS};

/// Bumped whenever the region's layout changes, so a reload with a new
/// module never adopts a zone it cannot read.
pub const LAYOUT_VERSION: u32 = 1;
const MAGIC: u64 = u64::from_le_bytes(*b"AUTHBAN\0");
const NIL: u32 = u32::MAX;
/// Bytes one tracked address costs: its slot and half a bucket head.
pub const BYTES_PER_ADDRESS: usize = size_of::<Slot>() + size_of::<u32>() / 2;
/// Bounded work per call keeps the lock hold time flat.
const EXPIRE_PER_CALL: usize = 2;

#[derive(Clone, Copy, Debug, PartialEq)]
#[repr(C)]
pub struct Policy {
    pub maxretry: u32,
    /// Seconds.
    pub findtime: u32,
    /// Seconds.
    pub bantime: u32,
    /// Repeat offenders get bantime * factor^(earlier bans), up to maxtime.
    pub increment: bool,
    pub factor: f64,
    /// Seconds.
    pub maxtime: u32,
    /// Seconds an address's offences are remembered after its last ban.
    pub history: u32,
    /// Failures and bans count for the network of this many bits.
    pub ipv4_prefix: u8,
    pub ipv6_prefix: u8,
    /// Bans this many members of a wider network at once ban the network;
    /// 0 is off.
    pub widen: u32,
}

impl Default for Policy {
    /// fail2ban's defaults; escalation, network keys and widening off.
    fn default() -> Policy {
        Policy {
            maxretry: 5,
            findtime: 600,
            bantime: 600,
            increment: false,
            factor: 2.0,
            maxtime: 7 * 86_400,
            history: 86_400,
            ipv4_prefix: 32,
            ipv6_prefix: 128,
            widen: 0,
        }
    }
}

impl Policy {
    /// How long a ban lasts for an address banned `earlier` times before,
    /// as long as the zone remembers them.
    pub fn ban_secs(&self, earlier: u8) -> u32 {
        if !self.increment || earlier == 0 {
            return self.bantime;
        }
        let cap = f64::from(self.maxtime.max(self.bantime));
        let secs = f64::from(self.bantime) * self.factor.powi(i32::from(earlier));
        secs.min(cap) as u32
    }

    /// The key failures of `ip` count under.
    pub fn key_of(&self, ip: std::net::IpAddr) -> Key {
        Key::network(ip, self.ipv4_prefix, self.ipv6_prefix)
    }
}

/// The next wider network `widen` folds bans into: IPv6 /128 -> /64 -> /56
/// -> /48, IPv4 /32 -> /24. Prefixes are in IPv6 bits (IPv4 /24 is 120).
pub fn wider_prefix(key: &Key) -> Option<u8> {
    let steps: &[u8] = if key.is_ipv4() { &[120] } else { &[64, 56, 48] };
    steps.iter().copied().find(|&p| p < key.raw_prefix())
}

/// Monotonic counters since the zone was created.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Stats {
    pub failures: u64,
    pub bans: u64,
    pub refused: u64,
    pub expired: u64,
    pub evicted: u64,
    pub bans_dropped: u64,
}

#[repr(C)]
struct List {
    head: u32,
    tail: u32,
}

const COUNTED: usize = 0;
const BANNED: usize = 1;
/// Counted addresses with a remembered offence history, dropped after the
/// plainly counted ones when the zone is full.
const REMEMBERED: usize = 2;

#[repr(C)]
struct Header {
    magic: u64,
    layout: u32,
    capacity: u32,
    nbuckets: u32,
    bucket_secs: u32,
    region_len: u64,
    seed: [u64; 2],
    policy: Policy,
    /// Head of the free list (slots released after use).
    free: u32,
    /// Slots below this index have been used at least once; the rest were
    /// never touched, so untouched memory stays out of the workers' RSS.
    high_water: u32,
    in_use: u32,
    /// Read without the lock to skip lookups while nothing is banned.
    banned: AtomicU32,
    lists: [List; 3],
    stats: Stats,
    /// Active bans per prefix length (IPv6 bits) of network keys, so a
    /// check looks up only the network sizes that are banned somewhere.
    net_bans: [u32; 129],
    /// Bit p set while net_bans[p] > 0, as two atomic halves: a check walks
    /// only those lengths, and the lock-free pre-check reads it.
    net_mask: [AtomicU64; 2],
    /// Bans counted by a hash of their key: a request whose counter is zero
    /// (and that no banned network holds) is clear without taking the lock.
    ban_filter: [AtomicU16; FILTER_SLOTS],
}

/// Counters in the ban filter (a power of two): 4 KiB of header, so that
/// with up to a few hundred bans most checks need no lock.
const FILTER_SLOTS: usize = 2048;

/// Slot states, kept as a plain byte: the region is shared memory that
/// another process writes, so no Rust enum validity is assumed of it.
struct State;

impl State {
    const FREE: u8 = 0;
    const COUNTED: u8 = 1;
    const BANNED: u8 = 2;
    /// Counted, with an offence history still remembered.
    const REMEMBERED: u8 = 3;
}

fn list_of(state: u8) -> usize {
    match state {
        State::BANNED => BANNED,
        State::REMEMBERED => REMEMBERED,
        _ => COUNTED,
    }
}

#[derive(Clone, Copy)]
#[repr(C)]
struct Slot {
    addr: [u8; 16],
    /// Next slot in the hash bucket, or in the free list.
    chain: u32,
    prev: u32,
    next: u32,
    state: u8,
    prefix: u8,
    /// Bans of this key the zone remembers.
    offences: u8,
    /// Active bans inside this network, for widening.
    members: u8,
    /// Counted: newest window step. Banned: start, unix seconds.
    t0: u32,
    /// Banned: end, unix seconds. Otherwise: end of the last ban, the start
    /// of the offence history (0: none).
    t1: u32,
    /// Counted: window counts. Banned: failures, as two halves of a u32.
    counts: [u16; BUCKETS],
}

const _: () = assert!(size_of::<Slot>() == 48);

/// A ban as the table holds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ban {
    pub key: Key,
    pub since: u32,
    pub until: u32,
    pub failures: u32,
    /// This ban's rank among the key's remembered bans (1: first).
    pub offence: u8,
}

/// What the table knows of one address or network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AddressState {
    /// Failures in the window (while banned: those that led to the ban).
    pub failures: u32,
    pub ban: Option<Ban>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    Clear,
    Banned(Ban),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// Counted; this many failures are in the window now.
    Counted(u32),
    /// This failure crossed maxretry and started the ban.
    Banned(Ban),
    /// The address was banned already; nothing changed.
    AlreadyBanned,
}

/// What outlives the zone in a state file, or moves to a resized zone: a
/// ban in force, or an offence history still remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    pub key: Key,
    pub offences: u8,
    /// End of the last ban, unix seconds (the start of the history).
    pub last_ban_end: u32,
    pub ban: Option<Ban>,
}

/// Something a caller should log once the lock is released.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Expired(Key),
    /// `members` bans inside a network made it a ban of its own.
    Widened {
        ban: Ban,
        members: u8,
    },
    /// A ban forgotten to make room: the zone is too small.
    BanDropped(Ban),
}

/// A bounded buffer of events, so reporting never allocates under the lock.
#[derive(Default, Debug)]
pub struct Events {
    items: [Option<Event>; 8],
    len: usize,
}

impl Events {
    fn push(&mut self, event: Event) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(event);
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
}

#[derive(Debug, PartialEq, Eq)]
pub enum LayoutError {
    TooSmall,
    Misaligned,
    /// Not a table, or one written by another layout version or size.
    Foreign,
}

/// Wall-clock time as the table sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    pub ms: u64,
}

impl Now {
    pub fn from_ms(ms: u64) -> Now {
        Now { ms }
    }

    pub fn secs(self) -> u32 {
        u32::try_from(self.ms / 1000).unwrap_or(u32::MAX)
    }

    /// The first whole second at or after now.
    fn secs_ceil(self) -> u32 {
        u32::try_from(self.ms.div_ceil(1000)).unwrap_or(u32::MAX)
    }
}

pub struct Table<'a> {
    hdr: &'a mut Header,
    buckets: &'a mut [u32],
    slots: &'a mut [Slot],
}

fn align_up(n: usize, align: usize) -> usize {
    n.div_ceil(align) * align
}

struct Layout {
    capacity: u32,
    nbuckets: u32,
    buckets_at: usize,
    slots_at: usize,
}

impl Layout {
    fn for_capacity(capacity: u32) -> Layout {
        let nbuckets = capacity.div_ceil(2).max(1);
        let buckets_at = align_up(size_of::<Header>(), align_of::<u32>());
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

    fn end(&self) -> usize {
        self.slots_at + self.capacity as usize * size_of::<Slot>()
    }

    /// The largest table that fits `len` bytes.
    fn fitting(len: usize) -> Option<Layout> {
        let estimate = len.saturating_sub(size_of::<Header>()) / BYTES_PER_ADDRESS;
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

/// Whether `key` may be banned, read without the lock: false when the zone
/// bans nobody, or when neither the key's filter counter nor any banned
/// network length could cover it. A stale read only lets a request that
/// races a brand-new ban through, as if it came a moment earlier.
///
/// # Safety
/// `region` must point to a region formatted by [`Table::format`].
pub unsafe fn may_be_banned(region: *const u8, key: &Key) -> bool {
    // SAFETY: as for `may_be_banned_within`.
    unsafe { may_be_banned_within(region, key, key) }
}

/// [`may_be_banned`] for a client `host` whose failures count under `net`
/// (the policy's network for it, or `host` itself). A ban of `net` is found
/// through the filter, so its length need not be in the mask test: only
/// bans of other lengths (wider networks, or a previous policy's) are.
///
/// # Safety
/// `region` must point to a region formatted by [`Table::format`].
pub unsafe fn may_be_banned_within(region: *const u8, host: &Key, net: &Key) -> bool {
    // SAFETY: the caller guarantees a formatted region. The fields read are
    // atomics written under the lock by other processes, or the seed,
    // written once before any worker exists.
    let hdr = unsafe { &*region.cast::<Header>() };
    if hdr.banned.load(Ordering::Acquire) == 0 {
        return false;
    }
    let filtered = |key: &Key| {
        let slot = hash(hdr.seed, key) as usize & (FILTER_SLOTS - 1);
        hdr.ban_filter[slot].load(Ordering::Acquire) != 0
    };
    let mut lengths = shorter_prefixes(host);
    if net != host {
        lengths &= !(1u128 << net.raw_prefix());
    }
    filtered(host) || (net != host && filtered(net)) || load_mask(&hdr.net_mask) & lengths != 0
}

fn hash(seed: [u64; 2], key: &Key) -> u64 {
    let addr = key.raw_addr();
    let hi = u64::from_le_bytes(addr[..8].try_into().unwrap_or_default());
    let lo = u64::from_le_bytes(addr[8..].try_into().unwrap_or_default());
    let h = fold_mul(hi ^ seed[0], lo ^ seed[1] ^ u64::from(key.raw_prefix()));
    fold_mul(h, 0x9e37_79b9_7f4a_7c15 ^ seed[0])
}

fn load_mask(mask: &[AtomicU64; 2]) -> u128 {
    u128::from(mask[0].load(Ordering::Acquire)) | u128::from(mask[1].load(Ordering::Acquire)) << 64
}

/// Prefix lengths (bits) of the networks that could hold `key`: shorter
/// than its own, and for IPv4 only IPv4 networks (96 bits and more).
fn shorter_prefixes(key: &Key) -> u128 {
    let below = match key.raw_prefix() {
        0 => 0,
        p => u128::MAX >> (128 - u32::from(p)),
    };
    let floor = if key.is_ipv4() { !0u128 << 96 } else { !0u128 };
    below & floor
}

/// The length a formatted region records for itself, 0 if it is not one.
///
/// # Safety
/// `region` must point to at least a header's worth of readable bytes,
/// aligned for it.
pub unsafe fn stored_len(region: *const u8) -> usize {
    // SAFETY: guaranteed by the caller; the fields are plain integers.
    let hdr = unsafe { &*region.cast::<Header>() };
    if hdr.magic != MAGIC || hdr.layout != LAYOUT_VERSION {
        return 0;
    }
    usize::try_from(hdr.region_len).unwrap_or(0)
}

impl<'a> Table<'a> {
    /// Lays out an empty table over `region`.
    pub fn format(
        region: &'a mut [u8],
        policy: Policy,
        seed: [u64; 2],
    ) -> Result<Self, LayoutError> {
        let layout = Layout::fitting(region.len()).ok_or(LayoutError::TooSmall)?;
        let len = region.len();
        let table = Self::split(region, &layout)?;
        *table.hdr = Header {
            magic: MAGIC,
            layout: LAYOUT_VERSION,
            capacity: layout.capacity,
            nbuckets: layout.nbuckets,
            bucket_secs: window::bucket_secs(policy.findtime),
            region_len: len as u64,
            seed,
            policy,
            free: NIL,
            high_water: 0,
            in_use: 0,
            banned: AtomicU32::new(0),
            lists: [
                List {
                    head: NIL,
                    tail: NIL,
                },
                List {
                    head: NIL,
                    tail: NIL,
                },
                List {
                    head: NIL,
                    tail: NIL,
                },
            ],
            stats: Stats::default(),
            net_bans: [0; 129],
            net_mask: [const { AtomicU64::new(0) }; 2],
            ban_filter: [const { AtomicU16::new(0) }; FILTER_SLOTS],
        };
        table.buckets.fill(NIL);
        Ok(table)
    }

    /// Opens a table formatted earlier (by this or another process).
    pub fn attach(region: &'a mut [u8]) -> Result<Self, LayoutError> {
        if region.len() < size_of::<Header>() {
            return Err(LayoutError::TooSmall);
        }
        if region.as_ptr().align_offset(align_of::<Header>()) != 0 {
            return Err(LayoutError::Misaligned);
        }
        // SAFETY: size and alignment were checked just above, and every bit
        // pattern of the header's plain integer fields is a valid value.
        let hdr = unsafe { &*region.as_ptr().cast::<Header>() };
        if hdr.magic != MAGIC
            || hdr.layout != LAYOUT_VERSION
            || hdr.region_len != region.len() as u64
        {
            return Err(LayoutError::Foreign);
        }
        let layout = Layout::for_capacity(hdr.capacity);
        if layout.nbuckets != hdr.nbuckets || layout.end() > region.len() {
            return Err(LayoutError::Foreign);
        }
        Self::split(region, &layout)
    }

    fn split(region: &'a mut [u8], layout: &Layout) -> Result<Self, LayoutError> {
        if layout.end() > region.len() {
            return Err(LayoutError::TooSmall);
        }
        if region.as_ptr().align_offset(align_of::<Header>()) != 0 {
            return Err(LayoutError::Misaligned);
        }
        let base = region.as_mut_ptr();
        // SAFETY: the three parts are disjoint, in bounds (checked against
        // `layout.end()`), and aligned: the region is aligned for the header
        // and the offsets are rounded up to each part's alignment. The fields
        // are integers and a float, valid for any bits, but for the policy's
        // `increment` flag, which only this module writes (format and
        // set_policy) into regions whose magic and layout version it checks.
        unsafe {
            Ok(Table {
                hdr: &mut *base.cast::<Header>(),
                buckets: core::slice::from_raw_parts_mut(
                    base.add(layout.buckets_at).cast::<u32>(),
                    layout.nbuckets as usize,
                ),
                slots: core::slice::from_raw_parts_mut(
                    base.add(layout.slots_at).cast::<Slot>(),
                    layout.capacity as usize,
                ),
            })
        }
    }

    pub fn capacity(&self) -> u32 {
        self.hdr.capacity
    }

    pub fn policy(&self) -> Policy {
        self.hdr.policy
    }

    /// Addresses held: counted or banned.
    pub fn tracked(&self) -> u32 {
        self.hdr.in_use
    }

    pub fn bans(&self) -> u32 {
        self.hdr.banned.load(Ordering::Relaxed)
    }

    pub fn stats(&self) -> Stats {
        self.hdr.stats
    }

    /// Applies a reloaded configuration's policy. A new findtime changes the
    /// window's step, so running counts restart; bans are kept.
    pub fn set_policy(&mut self, policy: Policy) {
        let step = window::bucket_secs(policy.findtime);
        if step != self.hdr.bucket_secs {
            let used = self.hdr.high_water as usize;
            for slot in self.slots[..used].iter_mut() {
                if matches!(slot.state, State::COUNTED | State::REMEMBERED) {
                    slot.set_window(Window::default());
                }
            }
            self.hdr.bucket_secs = step;
        }
        self.hdr.policy = policy;
    }

    /// Whether `key`, or a banned network holding it, is banned now.
    /// `refusing` counts the request as refused (false in dry run, where
    /// nothing is refused).
    pub fn check(&mut self, key: &Key, now: Now, refusing: bool, events: &mut Events) -> Verdict {
        if self.bans() == 0 {
            return Verdict::Clear;
        }
        self.expire_bans(now, events);
        let Some(i) = self.find_ban(key) else {
            return Verdict::Clear;
        };
        let slot = self.slots[i as usize];
        if slot.t1 <= now.secs() {
            self.end_ban(i, events);
            return Verdict::Clear;
        }
        if refusing {
            self.hdr.stats.refused += 1;
        }
        Verdict::Banned(slot.ban())
    }

    /// The banned slot covering `key`: its own, else the longest banned
    /// network holding it.
    fn find_ban(&self, key: &Key) -> Option<u32> {
        let banned = |i: u32| self.slots[i as usize].state == State::BANNED;
        if let Some(i) = self.find(key).filter(|&i| banned(i)) {
            return Some(i);
        }
        // Banned network lengths that could hold the key, longest first.
        let mut lengths = load_mask(&self.hdr.net_mask) & shorter_prefixes(key);
        while lengths != 0 {
            let p = 127 - lengths.leading_zeros();
            lengths &= !(1u128 << p);
            let net = Key::from_raw(key.raw_addr(), p as u8);
            if let Some(i) = self.find(&net).filter(|&i| banned(i)) {
                return Some(i);
            }
        }
        None
    }

    /// Bans `key` (an address or a network) for `secs` from now, whatever
    /// its failures: the management endpoint's ban. A ban in force is
    /// replaced, so the new duration holds.
    pub fn ban(&mut self, key: &Key, now: Now, secs: u32, events: &mut Events) -> Ban {
        self.expire(now, events);
        let i = match self.find(key) {
            Some(i) => i,
            None => self.insert(key, events),
        };
        // A ban that ended unnoticed is ended first, so that widening counts
        // the new ban as a new member (and the old one left the count).
        let slot = self.slots[i as usize];
        if slot.state == State::BANNED && slot.t1 <= now.secs() {
            self.end_ban(i, events);
        }
        let state = self.state_of(i, now);
        let ban = self.ban_slot(i, now, secs, state.failures);
        if state.ban.is_none() {
            self.widen_from(i, now, events);
        }
        ban
    }

    /// Ends `key`'s ban, if any, and forgets its failures. `None` if the
    /// table does not know the key.
    pub fn unban(&mut self, key: &Key, now: Now) -> Option<AddressState> {
        let i = self.find(key)?;
        let state = self.state_of(i, now);
        self.forget(i);
        Some(state)
    }

    /// What the table holds of `key` itself (not of networks holding it).
    pub fn lookup(&self, key: &Key, now: Now) -> Option<AddressState> {
        Some(self.state_of(self.find(key)?, now))
    }

    /// Failures of `key` still in the window, if it is tracked.
    pub fn failures(&self, key: &Key, now: Now) -> Option<u32> {
        self.lookup(key, now).map(|s| s.failures)
    }

    /// Bans in force, soonest ending first, skipping `offset` of them.
    pub fn bans_page(&self, now: Now, offset: usize, limit: usize) -> Vec<Ban> {
        let mut page = Vec::with_capacity(limit.min(self.bans() as usize));
        let mut i = self.hdr.lists[BANNED].head;
        let mut skipped = 0;
        while i != NIL && page.len() < limit {
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
        let history = self.hdr.policy.history;
        let used = self.hdr.high_water as usize;
        self.slots[..used]
            .iter()
            .filter_map(|slot| {
                let in_use = matches!(
                    slot.state,
                    State::COUNTED | State::REMEMBERED | State::BANNED
                );
                let banned = slot.state == State::BANNED && slot.t1 > secs;
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
        let live_history = record.offences > 0
            && record.last_ban_end.saturating_add(self.hdr.policy.history) > secs;
        if (live_ban.is_none() && !live_history) || self.find(&record.key).is_some() {
            return false;
        }
        let i = self.insert(&record.key, events);
        self.slots[i as usize].offences = record.offences;
        self.slots[i as usize].t1 = record.last_ban_end;
        if let Some(ban) = live_ban {
            self.unlink(COUNTED, i);
            let slot = &mut self.slots[i as usize];
            slot.state = State::BANNED;
            slot.t0 = ban.since;
            slot.t1 = ban.until;
            slot.counts = [ban.failures as u16, (ban.failures >> 16) as u16, 0, 0];
            self.insert_by_end(i);
            self.count_ban(i, 1);
        } else if self.hdr.policy.increment {
            self.unlink(COUNTED, i);
            self.slots[i as usize].state = State::REMEMBERED;
            self.push_front(REMEMBERED, i);
        }
        true
    }

    fn state_of(&self, i: u32, now: Now) -> AddressState {
        let slot = &self.slots[i as usize];
        if slot.state == State::BANNED {
            if slot.t1 > now.secs() {
                let ban = slot.ban();
                return AddressState {
                    failures: ban.failures,
                    ban: Some(ban),
                };
            }
            return AddressState {
                failures: 0,
                ban: None,
            };
        }
        AddressState {
            failures: slot.window().total(now.secs() / self.hdr.bucket_secs),
            ban: None,
        }
    }

    /// Counts one failed response of `key`; bans it at the maxretry-th
    /// failure in the window.
    pub fn record_failure(&mut self, key: &Key, now: Now, events: &mut Events) -> Failure {
        self.expire(now, events);
        let i = match self.find(key) {
            Some(i) => i,
            None => self.insert(key, events),
        };
        if self.slots[i as usize].state == State::BANNED {
            if self.slots[i as usize].t1 > now.secs() {
                return Failure::AlreadyBanned;
            }
            self.end_ban(i, events);
        }
        self.age_history(i, now);
        self.hdr.stats.failures += 1;
        let step = now.secs() / self.hdr.bucket_secs;
        let mut win = self.slots[i as usize].window();
        let failures = win.add(step);
        self.slots[i as usize].set_window(win);
        let policy = self.hdr.policy;
        if failures >= policy.maxretry {
            let secs = policy.ban_secs(self.slots[i as usize].offences);
            let ban = self.ban_slot(i, now, secs, failures);
            self.widen_from(i, now, events);
            return Failure::Banned(ban);
        }
        let list = list_of(self.slots[i as usize].state);
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
        let history = self.hdr.policy.history;
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

    /// Forgets the offences of a key whose history ran out.
    fn age_history(&mut self, i: u32, now: Now) {
        let slot = self.slots[i as usize];
        if slot.offences == 0 || slot.t1.saturating_add(self.hdr.policy.history) > now.secs() {
            return;
        }
        self.slots[i as usize].offences = 0;
        if slot.state == State::REMEMBERED {
            self.unlink(REMEMBERED, i);
            self.slots[i as usize].state = State::COUNTED;
            self.push_front(COUNTED, i);
        }
    }

    /// After slot `i`'s ban started: counts it as a member of its wider
    /// network, banning that network when `widen` members are banned, and
    /// so on up the chain of wider networks.
    fn widen_from(&mut self, mut i: u32, now: Now, events: &mut Events) {
        let policy = self.hdr.policy;
        if policy.widen == 0 {
            return;
        }
        loop {
            let member = self.slots[i as usize].key();
            let Some(prefix) = wider_prefix(&member) else {
                return;
            };
            let net = Key::from_raw(member.raw_addr(), prefix);
            let j = match self.find(&net) {
                Some(j) => j,
                None => self.insert(&net, events),
            };
            // A full zone may have given the member's own slot away.
            let still_banned = self.slots[i as usize].state == State::BANNED
                && self.slots[i as usize].key() == member;
            if !still_banned || self.slots[j as usize].state == State::BANNED {
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
        let mut i = self.hdr.lists[BANNED].head;
        while i != NIL {
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
        let was_banned = self.slots[i as usize].state == State::BANNED;
        self.unlink(list_of(self.slots[i as usize].state), i);
        let slot = &mut self.slots[i as usize];
        slot.state = State::BANNED;
        slot.offences = slot.offences.saturating_add(1);
        // Since rounds up, so that until = since + secs exactly and a ban
        // never ends early because of rounding.
        slot.t0 = now.secs_ceil();
        slot.t1 = slot.t0.saturating_add(secs);
        slot.counts = [failures as u16, (failures >> 16) as u16, 0, 0];
        let ban = slot.ban();
        self.insert_by_end(i);
        if !was_banned {
            self.count_ban(i, 1);
        }
        self.hdr.stats.bans += 1;
        ban
    }

    /// Keeps the ban counters (all bans, and network bans per prefix) in
    /// step as slot `i` starts (+1) or stops (-1) being a ban.
    fn count_ban(&mut self, i: u32, delta: i32) {
        let prefix = usize::from(self.slots[i as usize].prefix);
        if delta > 0 {
            self.hdr.banned.fetch_add(1, Ordering::Release);
        } else {
            self.hdr.banned.fetch_sub(1, Ordering::Release);
        }
        let filter =
            hash(self.hdr.seed, &self.slots[i as usize].key()) as usize & (FILTER_SLOTS - 1);
        let counter = &self.hdr.ban_filter[filter];
        if delta > 0 {
            counter.fetch_add(1, Ordering::Release);
        } else {
            counter.fetch_sub(1, Ordering::Release);
        }
        if prefix < 128 {
            let count = &mut self.hdr.net_bans[prefix];
            *count = count.saturating_add_signed(delta);
            let half = &self.hdr.net_mask[prefix / 64];
            let bit = 1u64 << (prefix % 64);
            if *count > 0 {
                half.fetch_or(bit, Ordering::Release);
            } else {
                half.fetch_and(!bit, Ordering::Release);
            }
        }
        if delta < 0 && self.hdr.policy.widen > 0 {
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
        let policy = self.hdr.policy;
        let slot = &mut self.slots[i as usize];
        slot.state = if policy.increment && policy.history > 0 {
            State::REMEMBERED
        } else {
            State::COUNTED
        };
        slot.set_window(Window::default());
        slot.members = 0;
        let list = list_of(slot.state);
        self.push_back(list, i);
        events.push(Event::Expired(key));
    }

    fn find(&self, key: &Key) -> Option<u32> {
        let addr = key.raw_addr();
        let prefix = key.raw_prefix();
        let mut i = self.buckets[self.bucket_of(key)];
        while i != NIL {
            let slot = self.slots.get(i as usize)?;
            if slot.addr == addr && slot.prefix == prefix {
                return Some(i);
            }
            i = slot.chain;
        }
        None
    }

    fn insert(&mut self, key: &Key, events: &mut Events) -> u32 {
        let i = self.take_slot(events);
        let slot = &mut self.slots[i as usize];
        slot.addr = key.raw_addr();
        slot.prefix = key.raw_prefix();
        slot.state = State::COUNTED;
        slot.set_window(Window::default());
        slot.t1 = 0;
        slot.offences = 0;
        slot.members = 0;
        let b = self.bucket_of(key);
        self.slots[i as usize].chain = self.buckets[b];
        self.buckets[b] = i;
        self.push_front(COUNTED, i);
        self.hdr.in_use += 1;
        i
    }

    /// A free slot: never used, released, or taken from the least valuable
    /// holder (oldest counted address, else the ban ending soonest).
    fn take_slot(&mut self, events: &mut Events) -> u32 {
        if self.hdr.free != NIL {
            let i = self.hdr.free;
            self.hdr.free = self.slots[i as usize].chain;
            return i;
        }
        if self.hdr.high_water < self.hdr.capacity {
            self.hdr.high_water += 1;
            return self.hdr.high_water - 1;
        }
        let victim = match [COUNTED, REMEMBERED].map(|l| self.hdr.lists[l].tail) {
            [NIL, NIL] => {
                let head = self.hdr.lists[BANNED].head;
                events.push(Event::BanDropped(self.slots[head as usize].ban()));
                self.hdr.stats.bans_dropped += 1;
                head
            }
            [NIL, tail] | [tail, _] => {
                self.hdr.stats.evicted += 1;
                tail
            }
        };
        self.forget(victim);
        let i = self.hdr.free;
        self.hdr.free = self.slots[i as usize].chain;
        i
    }

    /// Removes a slot from the index and its list and frees it.
    fn forget(&mut self, i: u32) {
        let slot = self.slots[i as usize];
        match slot.state {
            State::COUNTED | State::REMEMBERED => self.unlink(list_of(slot.state), i),
            State::BANNED => {
                self.unlink(BANNED, i);
                self.count_ban(i, -1);
            }
            _ => return,
        }
        let b = self.bucket_of(&slot.key());
        if self.buckets[b] == i {
            self.buckets[b] = slot.chain;
        } else {
            let mut p = self.buckets[b];
            while p != NIL {
                let next = self.slots[p as usize].chain;
                if next == i {
                    self.slots[p as usize].chain = slot.chain;
                    break;
                }
                p = next;
            }
        }
        let freed = &mut self.slots[i as usize];
        freed.state = State::FREE;
        freed.chain = self.hdr.free;
        self.hdr.free = i;
        self.hdr.in_use -= 1;
    }

    fn bucket_of(&self, key: &Key) -> usize {
        let h = hash(self.hdr.seed, key);
        // Multiply-shift maps the hash onto any bucket count without a modulo.
        (((h >> 32) * u64::from(self.hdr.nbuckets)) >> 32) as usize
    }

    fn push_front(&mut self, list: usize, i: u32) {
        let head = self.hdr.lists[list].head;
        let slot = &mut self.slots[i as usize];
        slot.prev = NIL;
        slot.next = head;
        match head {
            NIL => self.hdr.lists[list].tail = i,
            h => self.slots[h as usize].prev = i,
        }
        self.hdr.lists[list].head = i;
    }

    fn push_back(&mut self, list: usize, i: u32) {
        let tail = self.hdr.lists[list].tail;
        self.insert_after(list, tail, i);
    }

    /// Inserts after `at` (NIL: at the front).
    fn insert_after(&mut self, list: usize, at: u32, i: u32) {
        if at == NIL {
            return self.push_front(list, i);
        }
        let next = self.slots[at as usize].next;
        let slot = &mut self.slots[i as usize];
        slot.prev = at;
        slot.next = next;
        self.slots[at as usize].next = i;
        match next {
            NIL => self.hdr.lists[list].tail = i,
            n => self.slots[n as usize].prev = i,
        }
    }

    /// Keeps the ban list ordered by end time; new bans nearly always end
    /// last, so the walk from the tail stops at once.
    fn insert_by_end(&mut self, i: u32) {
        let until = self.slots[i as usize].t1;
        let mut at = self.hdr.lists[BANNED].tail;
        while at != NIL && self.slots[at as usize].t1 > until {
            at = self.slots[at as usize].prev;
        }
        self.insert_after(BANNED, at, i);
    }

    fn unlink(&mut self, list: usize, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        match prev {
            NIL => self.hdr.lists[list].head = next,
            p => self.slots[p as usize].next = next,
        }
        match next {
            NIL => self.hdr.lists[list].tail = prev,
            n => self.slots[n as usize].prev = prev,
        }
    }
}

fn fold_mul(a: u64, b: u64) -> u64 {
    let product = u128::from(a) * u128::from(b);
    (product as u64) ^ ((product >> 64) as u64)
}

impl Slot {
    fn key(&self) -> Key {
        Key::from_raw(self.addr, self.prefix)
    }

    fn window(&self) -> Window {
        Window {
            newest: self.t0,
            counts: self.counts,
        }
    }

    fn set_window(&mut self, win: Window) {
        self.t0 = win.newest;
        self.counts = win.counts;
    }

    fn ban(&self) -> Ban {
        Ban {
            key: self.key(),
            since: self.t0,
            until: self.t1,
            failures: u32::from(self.counts[0]) | (u32::from(self.counts[1]) << 16),
            offence: self.offences,
        }
    }
}

#[cfg(test)]
mod tests;
