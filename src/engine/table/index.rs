//! The hash index and the intrusive lists: finding a key's slot, taking and
//! releasing slots, and keeping each slot on its list (counted most
//! recently failing first, remembered offenders, bans ordered by end).
//!
//! Every link is read from shared memory, so none is trusted: a walk takes
//! at most `capacity` steps, each to a slot in range, and a link that breaks
//! either rule marks the table damaged ([`Table::damaged`]) and ends the
//! walk instead of spinning, or indexing out of bounds, with the lock held.

use super::handle::Table;
use super::hash::hash;
use super::layout::{Slot, SlotKind, BANNED, COUNTED, NIL, REMEMBERED};
use super::types::{Event, Events};
use crate::engine::key::Key;
use crate::engine::window::Window;

/// The list a slot of `kind` sits on.
pub(super) fn list_of(kind: u8) -> usize {
    match kind {
        SlotKind::BANNED => BANNED,
        SlotKind::REMEMBERED => REMEMBERED,
        _ => COUNTED,
    }
}

/// What is left of one walk along links read from shared memory.
pub(super) struct Steps(u32);

impl Table<'_> {
    /// A walk of at most `capacity` steps: no list or chain is longer.
    pub(super) fn steps(&self) -> Steps {
        Steps(self.hdr.capacity)
    }

    /// Whether a walk may go on to slot `i`: in range, and not past the
    /// zone's capacity in steps. If not, a cycle or a wild index is in
    /// memory: the table is marked damaged and the walk must stop.
    pub(super) fn step(&self, steps: &mut Steps, i: u32) -> bool {
        if (i as usize) < self.slots.len() && steps.0 > 0 {
            steps.0 -= 1;
            return true;
        }
        self.damaged.set(true);
        false
    }

    /// A link read from a slot, if it is NIL or in range; otherwise the
    /// table is damaged, and the link is treated as NIL.
    fn link(&self, i: u32) -> u32 {
        if i == NIL || (i as usize) < self.slots.len() {
            return i;
        }
        self.damaged.set(true);
        NIL
    }

    pub(super) fn bucket_of(&self, key: &Key) -> usize {
        let h = hash(self.shared.seed(), key);
        // Multiply-shift maps the hash onto any bucket count without a modulo.
        (((h >> 32) * u64::from(self.hdr.nbuckets)) >> 32) as usize
    }

    pub(super) fn find(&self, key: &Key) -> Option<u32> {
        let addr = key.raw_addr();
        let prefix = key.raw_prefix();
        let mut steps = self.steps();
        let mut i = self.buckets[self.bucket_of(key)];
        while i != NIL {
            if !self.step(&mut steps, i) {
                return None;
            }
            let slot = &self.slots[i as usize];
            if slot.addr == addr && slot.prefix == prefix {
                return Some(i);
            }
            i = slot.chain;
        }
        None
    }

    /// `key`'s slot, a new one if the table does not hold it yet.
    pub(super) fn find_or_insert(&mut self, key: &Key, events: &mut Events) -> u32 {
        match self.find(key) {
            Some(i) => i,
            None => self.insert(key, events),
        }
    }

    pub(super) fn insert(&mut self, key: &Key, events: &mut Events) -> u32 {
        let i = self.take_slot(events);
        self.place(key, i);
        i
    }

    /// `key`'s slot for bookkeeping a ban needs (a network's member count):
    /// made from a free slot or a counted address, never by dropping a ban,
    /// so a ban just made never makes room for its own bookkeeping. `None`
    /// when only bans are left.
    pub(super) fn find_or_insert_beside_bans(&mut self, key: &Key) -> Option<u32> {
        if let Some(i) = self.find(key) {
            return Some(i);
        }
        let i = self.free_slot().or_else(|| self.evict_counted())?;
        self.place(key, i);
        Some(i)
    }

    /// Gives slot `i`, free, to `key`: indexed, counted, empty.
    fn place(&mut self, key: &Key, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.addr = key.raw_addr();
        slot.prefix = key.raw_prefix();
        slot.kind = SlotKind::COUNTED;
        slot.set_window(Window::default());
        slot.t1 = 0;
        slot.offences = 0;
        slot.members = 0;
        let b = self.bucket_of(key);
        self.slots[i as usize].chain = self.buckets[b];
        self.buckets[b] = i;
        self.push_front(COUNTED, i);
        self.hdr.in_use = self.hdr.in_use.saturating_add(1);
    }

    /// The head of the free list, popped, if it is sound.
    fn pop_free(&mut self) -> Option<u32> {
        let i = self.link(self.hdr.free);
        if i == NIL {
            self.hdr.free = NIL;
            return None;
        }
        self.hdr.free = self.link(self.slots[i as usize].chain);
        Some(i)
    }

    /// A free slot: never used, released, or taken from the least valuable
    /// holder (oldest counted address, else the ban ending soonest).
    fn take_slot(&mut self, events: &mut Events) -> u32 {
        if let Some(i) = self.free_slot().or_else(|| self.evict_counted()) {
            return i;
        }
        let head = self.hdr.lists[BANNED].head;
        if head == NIL {
            // Nothing on any list, yet no slot free: the counts lie.
            self.damaged.set(true);
            return 0;
        }
        events.push(Event::BanDropped(self.slots[head as usize].ban()));
        self.hdr.stats.bans_dropped += 1;
        self.reuse(head)
    }

    /// A slot never used or released.
    fn free_slot(&mut self) -> Option<u32> {
        if let Some(i) = self.pop_free() {
            return Some(i);
        }
        if self.hdr.high_water < self.hdr.capacity {
            self.hdr.high_water += 1;
            return Some(self.hdr.high_water - 1);
        }
        None
    }

    /// The slot of the least recently failing counted address (plainly
    /// counted first, then remembered offenders), forgotten.
    fn evict_counted(&mut self) -> Option<u32> {
        let victim = match [COUNTED, REMEMBERED].map(|l| self.hdr.lists[l].tail) {
            [NIL, NIL] => return None,
            [NIL, tail] | [tail, _] => tail,
        };
        self.hdr.stats.evicted += 1;
        Some(self.reuse(victim))
    }

    fn reuse(&mut self, victim: u32) -> u32 {
        self.forget(victim);
        // Damaged memory may leave no free slot: the victim is reused
        // as it is, and the table is reset once the call returns.
        self.pop_free().unwrap_or(victim)
    }

    /// Removes a slot from the index and its list and frees it.
    pub(super) fn forget(&mut self, i: u32) {
        let slot = self.slots[i as usize];
        match slot.kind {
            SlotKind::COUNTED | SlotKind::REMEMBERED => self.unlink(list_of(slot.kind), i),
            SlotKind::BANNED => {
                self.unlink(BANNED, i);
                self.count_ban(i, -1);
            }
            _ => return,
        }
        let b = self.bucket_of(&slot.key());
        if self.buckets[b] == i {
            self.buckets[b] = self.link(slot.chain);
        } else {
            let mut steps = self.steps();
            let mut p = self.buckets[b];
            while p != NIL && self.step(&mut steps, p) {
                let next = self.slots[p as usize].chain;
                if next == i {
                    self.slots[p as usize].chain = self.link(slot.chain);
                    break;
                }
                p = next;
            }
        }
        let freed = &mut self.slots[i as usize];
        freed.kind = SlotKind::FREE;
        freed.chain = self.hdr.free;
        self.hdr.free = i;
        self.hdr.in_use = self.hdr.in_use.saturating_sub(1);
    }

    pub(super) fn push_front(&mut self, list: usize, i: u32) {
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

    pub(super) fn push_back(&mut self, list: usize, i: u32) {
        let tail = self.hdr.lists[list].tail;
        self.insert_after(list, tail, i);
    }

    /// Inserts after `at` (NIL: at the front).
    fn insert_after(&mut self, list: usize, at: u32, i: u32) {
        if at == NIL {
            return self.push_front(list, i);
        }
        let next = self.link(self.slots[at as usize].next);
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
    pub(super) fn insert_by_end(&mut self, i: u32) {
        let until = self.slots[i as usize].t1;
        let mut steps = self.steps();
        let mut at = self.hdr.lists[BANNED].tail;
        while at != NIL && self.step(&mut steps, at) && self.slots[at as usize].t1 > until {
            at = self.slots[at as usize].prev;
        }
        if at != NIL && (at as usize) >= self.slots.len() {
            at = NIL;
        }
        self.insert_after(BANNED, at, i);
    }

    pub(super) fn unlink(&mut self, list: usize, i: u32) {
        let Slot { prev, next, .. } = self.slots[i as usize];
        let (prev, next) = (self.link(prev), self.link(next));
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
