use super::filter::load_mask;
use super::index::list_of;
use super::layout::{SlotKind, BANNED, COUNTED, NIL, REMEMBERED};
use super::*;
use crate::engine::key::Key;
use crate::engine::window;
use core::sync::atomic::Ordering;
use proptest::prelude::*;
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

const POLICY: Policy = Policy {
    maxretry: 5,
    findtime: 600,
    bantime: 600,
    increment: false,
    factor: 2.0,
    maxtime: 604_800,
    history: 86_400,
    ipv4_prefix: 32,
    ipv6_prefix: 128,
    widen: 0,
};

/// An 8-byte aligned buffer standing in for the shared zone.
struct Region(Vec<u64>);

impl Region {
    fn new(bytes: usize) -> Region {
        Region(vec![0; bytes.div_ceil(8)])
    }

    fn len(&self) -> usize {
        self.0.len() * 8
    }

    /// The region's start, for what shares it without a borrow (the
    /// lock-free pre-check, threads standing in for workers).
    fn base(&mut self) -> *mut u8 {
        self.0.as_mut_ptr().cast::<u8>()
    }

    fn bytes(&mut self) -> &mut [u8] {
        let len = self.len();
        // SAFETY: a Vec<u64> is valid, initialised memory of len bytes.
        unsafe { core::slice::from_raw_parts_mut(self.base(), len) }
    }

    fn table(&mut self, policy: Policy) -> Table<'_> {
        Table::format(self.bytes(), &policy, [0x1234_5678, 0x9abc_def0]).unwrap()
    }

    /// The table formatted earlier, as another worker (or a reloaded
    /// configuration) attaches it with its own policy.
    fn attach(&mut self, policy: Policy) -> Table<'_> {
        Table::attach(self.bytes(), &policy).unwrap()
    }
}

fn v4(n: u32) -> Key {
    Key::from_ip(IpAddr::V4(Ipv4Addr::from(n)))
}

fn v6(n: u128) -> Key {
    Key::from_ip(IpAddr::V6(Ipv6Addr::from(n)))
}

fn at(secs: u64) -> Now {
    Now::from_ms(secs * 1000)
}

/// Walks every structure and checks that they agree.
fn check_invariants(t: &Table) {
    let used = t.hdr.high_water as usize;
    let mut in_use = 0;
    let mut banned = 0;
    for (i, slot) in t.slots[..used].iter().enumerate() {
        match slot.kind {
            SlotKind::COUNTED | SlotKind::BANNED | SlotKind::REMEMBERED => {
                in_use += 1;
                assert_eq!(t.find(&slot.key()), Some(i as u32), "slot {i} not indexed");
                banned += usize::from(slot.kind == SlotKind::BANNED);
            }
            SlotKind::FREE => {}
            other => panic!("slot {i} has kind {other}"),
        }
    }
    assert_eq!(in_use, t.hdr.in_use as usize);
    assert_eq!(banned, t.bans() as usize);
    for (p, &count) in t.hdr.net_bans.iter().enumerate().take(128) {
        assert_eq!(
            load_mask(&t.shared.net_mask) >> p & 1 == 1,
            count > 0,
            "mask bit {p}"
        );
    }
    let filtered: u32 = t
        .shared
        .ban_filter
        .iter()
        .map(|c| u32::from(c.load(Ordering::Relaxed)))
        .sum();
    assert_eq!(
        filtered as usize, banned,
        "ban filter counts every ban once"
    );
    let nets: u32 = t.hdr.net_bans.iter().sum();
    let banned_nets = t.slots[..used]
        .iter()
        .filter(|s| s.kind == SlotKind::BANNED && s.prefix < 128)
        .count();
    assert_eq!(nets as usize, banned_nets);
    let walk = |list: usize| {
        let mut n = 0;
        let mut prev = NIL;
        let mut i = t.hdr.lists[list].head;
        while i != NIL {
            assert_eq!(t.slots[i as usize].prev, prev);
            prev = i;
            i = t.slots[i as usize].next;
            n += 1;
            assert!(n <= used, "list {list} loops");
        }
        assert_eq!(t.hdr.lists[list].tail, prev);
        n
    };
    assert_eq!(walk(COUNTED) + walk(BANNED) + walk(REMEMBERED), in_use);
    for list in [COUNTED, BANNED, REMEMBERED] {
        let mut i = t.hdr.lists[list].head;
        while i != NIL {
            assert_eq!(
                list_of(t.slots[i as usize].kind),
                list,
                "slot {i} on the wrong list"
            );
            i = t.slots[i as usize].next;
        }
    }
    assert_eq!(walk(BANNED), banned);
    let mut i = t.hdr.lists[BANNED].head;
    let mut last_end = 0;
    while i != NIL {
        assert!(t.slots[i as usize].t1 >= last_end, "ban list out of order");
        last_end = t.slots[i as usize].t1;
        i = t.slots[i as usize].next;
    }
    let mut free = 0;
    let mut i = t.hdr.free;
    while i != NIL {
        assert_eq!(t.slots[i as usize].kind, SlotKind::FREE);
        free += 1;
        i = t.slots[i as usize].chain;
    }
    assert_eq!(free + in_use, used);
}

#[test]
fn bans_at_the_maxretry_th_failure() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    let key = v4(0xc000_0207);
    for n in 1..5 {
        assert_eq!(
            t.record_failure(&key, at(1000 + n), &mut ev),
            Failure::Counted(n as u32)
        );
        assert_eq!(t.check(&key, at(1000 + n), true, &mut ev), Verdict::Clear);
    }
    let Failure::Banned(ban) = t.record_failure(&key, at(1005), &mut ev) else {
        panic!("fifth failure must ban");
    };
    assert_eq!(
        (ban.key, ban.since, ban.until, ban.failures),
        (key, 1005, 1605, 5)
    );
    assert_eq!(t.check(&key, at(1006), true, &mut ev), Verdict::Banned(ban));
    assert_eq!(
        t.record_failure(&key, at(1007), &mut ev),
        Failure::AlreadyBanned
    );
    assert_eq!(t.check(&v4(1), at(1006), true, &mut ev), Verdict::Clear);
    let stats = t.stats();
    assert_eq!((stats.failures, stats.bans, stats.refused), (5, 1, 1));
    check_invariants(&t);
}

#[test]
fn a_ban_lasts_at_least_bantime_then_starts_from_zero() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(Policy {
        maxretry: 2,
        findtime: 60,
        bantime: 10,
        ..POLICY
    });
    let mut ev = Events::default();
    let key = v6(0x2001_0db8 << 96 | 7);
    t.record_failure(&key, Now::from_ms(100_000), &mut ev);
    let Failure::Banned(ban) = t.record_failure(&key, Now::from_ms(100_400), &mut ev) else {
        panic!("second failure must ban");
    };
    // 100.4 s + 10 s rounds up to 111: never shorter than bantime.
    assert_eq!(ban.until, 111);
    assert!(matches!(
        t.check(&key, Now::from_ms(110_999), true, &mut ev),
        Verdict::Banned(_)
    ));
    let mut ev = Events::default();
    assert_eq!(
        t.check(&key, Now::from_ms(111_000), true, &mut ev),
        Verdict::Clear
    );
    assert_eq!(ev.iter().collect::<Vec<_>>(), vec![Event::Expired(key)]);
    assert_eq!(
        t.record_failure(&key, at(112), &mut ev),
        Failure::Counted(1)
    );
    assert_eq!(t.stats().expired, 1);
    check_invariants(&t);
}

#[test]
fn expired_bans_are_reported_even_if_the_address_never_returns() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(Policy {
        maxretry: 1,
        findtime: 60,
        bantime: 5,
        ..POLICY
    });
    let mut ev = Events::default();
    t.record_failure(&v4(1), at(100), &mut ev);
    t.record_failure(&v4(2), at(101), &mut ev);
    let mut ev = Events::default();
    t.record_failure(&v4(3), at(200), &mut ev);
    let expired: Vec<_> = ev.iter().collect();
    assert_eq!(expired, vec![Event::Expired(v4(1)), Event::Expired(v4(2))]);
    assert_eq!(t.bans(), 1);
    check_invariants(&t);
}

/// What the endpoint reports counts only bans in force: every ended one is
/// ended first, a buffer of events at a time, each one reported.
#[test]
fn ending_every_ended_ban_leaves_the_count_of_bans_in_force() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    // 20 bans ending at 110..=129, one more ending at 1100.
    for n in 0..20u32 {
        t.ban(&v4(n), at(100), 10 + n, &mut ev);
    }
    t.ban(&v4(99), at(100), 1000, &mut ev);
    assert_eq!(t.bans(), 21);
    // Nothing ended yet: nothing to do.
    let mut ev = Events::default();
    assert!(!t.end_ended_bans(at(105), &mut ev));
    assert!(ev.is_empty());
    // At 125, 16 have ended: two buffers of 8, then nothing left.
    let mut ended = Vec::new();
    let mut calls = 0;
    loop {
        let mut ev = Events::default();
        let more = t.end_ended_bans(at(125), &mut ev);
        ended.extend(ev.iter());
        calls += 1;
        if !more {
            break;
        }
        assert!(ev.is_full());
    }
    assert_eq!(calls, 2);
    let want: Vec<Event> = (0..16).map(|n| Event::Expired(v4(n))).collect();
    assert_eq!(ended, want);
    assert_eq!(t.bans(), 5);
    assert_eq!(t.bans_page(at(125), 0, 100).len(), 5);
    assert_eq!(t.stats().expired, 16);
    check_invariants(&t);
    // Long after: only the long ban is left.
    let mut ev = Events::default();
    assert!(!t.end_ended_bans(at(1099), &mut ev));
    assert_eq!(ev.iter().count(), 4);
    assert_eq!(t.bans(), 1);
    check_invariants(&t);
}

#[test]
fn a_full_table_forgets_the_least_recently_failing_and_keeps_bans() {
    let mut region = Region::new(16 * 1024);
    let mut t = region.table(POLICY);
    let cap = t.capacity();
    let mut ev = Events::default();
    // Ten bans first, then fill the rest with counted addresses.
    for b in 0..10u32 {
        for s in 0..5u64 {
            t.record_failure(&v4(0x0a00_0000 + b), at(1000 + s), &mut ev);
        }
    }
    assert_eq!(t.bans(), 10);
    for n in 0..cap - 10 {
        t.record_failure(&v4(n + 1), at(1010), &mut ev);
    }
    assert_eq!(t.tracked(), cap);
    // Address 1 fails again, so 2 is now the least recently active.
    t.record_failure(&v4(1), at(1011), &mut ev);
    t.record_failure(&v4(0xffff_0000), at(1012), &mut ev);
    assert!(t.failures(&v4(1), at(1012)).is_some());
    assert!(
        t.failures(&v4(2), at(1012)).is_none(),
        "oldest counted address goes first"
    );
    assert_eq!(t.stats().evicted, 1);
    // Fill with fresh addresses until only bans would be left to drop.
    for n in 0..cap {
        t.record_failure(&v4(0x2000_0000 + n), at(1013), &mut ev);
    }
    assert_eq!(t.bans(), 10, "bans survive while counted addresses remain");
    check_invariants(&t);
    // Now ban everything: the earliest-ending bans are dropped, and said so.
    let mut ev = Events::default();
    for n in 0..cap {
        for _ in 0..5 {
            t.record_failure(&v4(0x3000_0000 + n), at(1020), &mut ev);
        }
    }
    assert_eq!(t.bans(), cap);
    assert!(ev
        .iter()
        .any(|e| matches!(e, Event::BanDropped(b) if b.key == v4(0x0a00_0000))));
    assert_eq!(t.stats().bans_dropped, 10);
    check_invariants(&t);
}

#[test]
fn one_mebibyte_holds_twenty_thousand_addresses() {
    // What nginx's slab allocator leaves of a 1 MiB zone for one allocation.
    let usable = 253 * 4096;
    assert!(capacity_for(usable) >= 20_000, "{}", capacity_for(usable));
    assert_eq!(BYTES_PER_ADDRESS, 50);
    let mut region = Region::new(usable);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    for n in 0..20_000u128 {
        t.record_failure(&v6(0x2001_0db8 << 96 | n), at(5), &mut ev);
    }
    assert_eq!(t.tracked(), 20_000);
    assert_eq!(t.stats().evicted, 0);
    check_invariants(&t);
}

#[test]
fn attach_adopts_only_a_matching_table() {
    let mut region = Region::new(32 * 1024);
    {
        let mut t = region.table(POLICY);
        let mut ev = Events::default();
        for _ in 0..5 {
            t.record_failure(&v4(9), at(50), &mut ev);
        }
    }
    {
        let mut t = Table::attach(region.bytes(), &POLICY).unwrap();
        assert_eq!(t.bans(), 1);
        let mut ev = Events::default();
        assert!(matches!(
            t.check(&v4(9), at(51), true, &mut ev),
            Verdict::Banned(_)
        ));
    }
    let len = region.bytes().len();
    assert_eq!(
        Table::attach(&mut region.bytes()[..len - 8], &POLICY).err(),
        Some(LayoutError::Foreign)
    );
    region.bytes()[0] ^= 1;
    assert_eq!(
        Table::attach(region.bytes(), &POLICY).err(),
        Some(LayoutError::Foreign)
    );
    assert_eq!(
        Table::format(&mut [0u8; 64], &POLICY, [0, 0]).err(),
        Some(LayoutError::TooSmall)
    );
}

#[test]
fn a_new_findtime_restarts_counts_but_keeps_bans() {
    let mut region = Region::new(32 * 1024);
    let mut ev = Events::default();
    {
        let mut t = region.table(POLICY);
        for _ in 0..5 {
            t.record_failure(&v4(1), at(10), &mut ev);
        }
        for _ in 0..4 {
            t.record_failure(&v4(2), at(10), &mut ev);
        }
    }
    {
        // The reload: the master attaches with the new policy and applies
        // its findtime once.
        let mut t = region.attach(Policy {
            findtime: 60,
            ..POLICY
        });
        assert!(t.apply_findtime());
        assert!(!t.apply_findtime(), "applied once");
        assert_eq!(t.failures(&v4(2), at(11)), Some(0));
        assert!(matches!(
            t.check(&v4(1), at(11), true, &mut ev),
            Verdict::Banned(_)
        ));
    }
    let mut t = region.attach(Policy {
        maxretry: 2,
        findtime: 60,
        bantime: 1,
        ..POLICY
    });
    assert!(!t.apply_findtime(), "same findtime: counts kept");
    assert_eq!(
        t.record_failure(&v4(2), at(12), &mut ev),
        Failure::Counted(1)
    );
    assert!(
        matches!(t.record_failure(&v4(2), at(12), &mut ev), Failure::Banned(b) if b.until == 13)
    );
}

#[test]
fn threads_sharing_one_region_agree() {
    use std::sync::{Arc, Mutex};
    let region = Arc::new(Mutex::new(Region::new(256 * 1024)));
    let policy = Policy {
        maxretry: 1000,
        findtime: 600,
        bantime: 600,
        ..POLICY
    };
    region.lock().unwrap().table(policy);
    let threads: Vec<_> = (0..4u32)
        .map(|t| {
            let region = Arc::clone(&region);
            std::thread::spawn(move || {
                for n in 0..2000u32 {
                    // Each lock is one worker's critical section.
                    let mut guard = region.lock().unwrap();
                    let mut table = guard.attach(policy);
                    let mut ev = Events::default();
                    table.record_failure(&v4(n % 700), at(100), &mut ev);
                    table.check(&v4(t), at(100), true, &mut ev);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut guard = region.lock().unwrap();
    let t = guard.attach(POLICY);
    assert_eq!(t.stats().failures, 8000);
    // Each thread fails addresses 0..600 three times and 600..700 twice.
    assert_eq!(t.tracked(), 700);
    assert_eq!(t.failures(&v4(0), at(100)), Some(12));
    assert_eq!(t.failures(&v4(699), at(100)), Some(8));
    check_invariants(&t);
}

/// A zone holding only bans: the ban a failure just made, or the
/// management endpoint or the fleet just made, stays; the network count
/// `widen` wanted is what gives way, and is counted.
#[test]
fn a_new_ban_in_a_zone_full_of_bans_is_kept_and_the_widen_count_skipped() {
    let policy = Policy {
        maxretry: 3,
        bantime: 60,
        widen: 3,
        ..POLICY
    };
    let mut region = Region::new(32 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    let capacity = t.capacity();
    // Day-long bans in distinct /24s, twice the capacity: their /24
    // counts are evicted by later bans until the zone holds only bans.
    for n in 0..2 * capacity {
        t.ban(&v4(0x0b00_0000 + (n << 8)), at(10), 86_400, &mut ev);
    }
    assert_eq!(t.bans(), capacity);
    let attacker = v4(0xc633_6407);
    for _ in 0..3 {
        t.record_failure(&attacker, at(20), &mut ev);
    }
    assert!(
        matches!(t.check(&attacker, at(21), true, &mut ev), Verdict::Banned(b) if b.key == attacker),
        "the ban a failure made must hold"
    );
    assert!(t.stats().widen_skipped >= 1, "{:?}", t.stats());
    // The management endpoint's ban, shortest of all, holds too.
    let short = v4(0xc633_6508);
    t.ban(&short, at(22), 3600, &mut ev);
    assert!(t.lookup(&short, at(23)).is_some_and(|s| s.ban.is_some()));
    // So does the fleet's.
    let remote = Ban {
        key: v4(0xc633_6609),
        since: 22,
        until: 100,
        failures: 3,
        offence: 1,
    };
    t.apply_remote_ban(&remote, at(22), &mut ev);
    assert!(matches!(
        t.check(&remote.key, at(23), true, &mut ev),
        Verdict::Banned(_)
    ));
    check_invariants(&t);
}

proptest! {
    /// The window rule: maxretry failures within any findtime-long span
    /// always ban, and a ban needs maxretry failures within four window
    /// steps (findtime plus one step, and up to 2 s of rounding).
    #[test]
    fn window_never_lets_maxretry_through(
        maxretry in 1u32..8,
        findtime in 1u32..200,
        gaps in proptest::collection::vec(0u64..120_000, 1..60),
    ) {
        let policy = Policy { maxretry, findtime, bantime: 1_000_000, ..POLICY };
        let mut region = Region::new(16 * 1024);
        let mut t = region.table(policy);
        let key = v4(77);
        let step = window::bucket_secs(findtime);
        let mut now_ms = 1_000_000_000u64;
        let mut seen: Vec<u32> = Vec::new();
        for gap in gaps {
            now_ms += gap;
            let now = Now::from_ms(now_ms);
            let secs = now.secs();
            seen.push(secs);
            let within_findtime = seen.iter().filter(|&&s| s + findtime >= secs).count() as u32;
            let within_slack = seen.iter().filter(|&&s| s + 4 * step > secs).count() as u32;
            let mut ev = Events::default();
            match t.record_failure(&key, now, &mut ev) {
                Failure::Counted(_) => prop_assert!(within_findtime < maxretry),
                Failure::Banned(_) => {
                    prop_assert!(within_slack >= maxretry);
                    break;
                }
                Failure::AlreadyBanned => prop_assert!(false, "ban was never reported"),
            }
        }
    }

    /// Random traffic on a tiny table keeps every structure consistent and
    /// agrees with a simple model on who is banned.
    #[test]
    fn random_traffic_keeps_the_table_consistent(
        ops in proptest::collection::vec((0u32..40, 0u64..3000, any::<bool>()), 1..400),
    ) {
        let policy = Policy { maxretry: 3, findtime: 10, bantime: 5, increment: true, history: 20, ..POLICY };
        let mut region = Region::new(header_len() + 4096);
        let mut t = region.table(policy);
        prop_assert!(t.capacity() > 40, "no eviction here: the model has none");
        let mut now_ms = 50_000_000u64;
        let mut bans: HashMap<Key, u32> = HashMap::new();
        for (addr, gap, fail) in ops {
            now_ms += gap;
            let now = Now::from_ms(now_ms);
            let key = if addr % 2 == 0 { v4(addr) } else { v6(u128::from(addr)) };
            let mut ev = Events::default();
            if fail {
                if let Failure::Banned(ban) = t.record_failure(&key, now, &mut ev) {
                    bans.insert(key, ban.until);
                }
            } else {
                let verdict = t.check(&key, now, true, &mut ev);
                let banned_in_model = bans.get(&key).is_some_and(|&until| until > now.secs());
                prop_assert_eq!(matches!(verdict, Verdict::Banned(_)), banned_in_model);
            }
            check_invariants(&t);
        }
    }
}

#[test]
fn manual_bans_cover_networks_and_unban_forgets() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    let net = Key::parse("2001:db8:1::/48").unwrap();
    let ban = t.ban(&net, at(100), 60, &mut ev);
    assert_eq!((ban.until, ban.failures), (160, 0));
    let inside = Key::parse("2001:db8:1:2::9").unwrap();
    let outside = Key::parse("2001:db8:2::9").unwrap();
    assert_eq!(
        t.check(&inside, at(101), true, &mut ev),
        Verdict::Banned(ban)
    );
    assert_eq!(t.check(&outside, at(101), true, &mut ev), Verdict::Clear);
    let v4net = Key::parse("198.51.100.0/24").unwrap();
    t.ban(&v4net, at(100), 60, &mut ev);
    assert!(matches!(
        t.check(&v4(0xc633_6407), at(101), true, &mut ev),
        Verdict::Banned(_)
    ));
    assert_eq!(
        t.check(&v4(0xc633_6507), at(101), true, &mut ev),
        Verdict::Clear
    );
    // Unbanning the network frees the addresses inside it.
    let state = t.unban(&net, at(102)).unwrap();
    assert_eq!(state.ban.map(|b| b.key), Some(net));
    assert_eq!(t.check(&inside, at(103), true, &mut ev), Verdict::Clear);
    assert_eq!(t.unban(&net, at(103)), None);
    assert_eq!(t.hdr.net_bans[48], 0);
    assert_eq!(t.hdr.net_bans[120], 1);
    check_invariants(&t);
}

#[test]
fn a_manual_ban_replaces_the_running_one_and_keeps_its_failures() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    for _ in 0..3 {
        t.record_failure(&v4(5), at(10), &mut ev);
    }
    let ban = t.ban(&v4(5), at(11), 5, &mut ev);
    assert_eq!((ban.failures, ban.until), (3, 16));
    let longer = t.ban(&v4(5), at(12), 100, &mut ev);
    assert_eq!((longer.failures, longer.until), (3, 112));
    assert_eq!(t.bans(), 1);
    let state = t.lookup(&v4(5), at(13)).unwrap();
    assert_eq!(state.ban, Some(longer));
    let unbanned = t.unban(&v4(5), at(14)).unwrap();
    assert_eq!(unbanned.failures, 3);
    assert_eq!(t.lookup(&v4(5), at(14)), None);
    assert_eq!(t.bans(), 0);
    check_invariants(&t);
}

#[test]
fn ban_pages_walk_bans_soonest_ending_first() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    for n in 0..10u32 {
        t.ban(&v4(n), at(100), 100 - n, &mut ev);
    }
    let first = t.bans_page(at(100), 0, 4);
    assert_eq!(
        first.iter().map(|b| b.key).collect::<Vec<_>>(),
        vec![v4(9), v4(8), v4(7), v4(6)]
    );
    let rest = t.bans_page(at(100), 8, 4);
    assert_eq!(
        rest.iter().map(|b| b.key).collect::<Vec<_>>(),
        vec![v4(1), v4(0)]
    );
    // Bans past their end are not listed even before they are reaped.
    assert_eq!(t.bans_page(at(195), 0, 100).len(), 5);
    check_invariants(&t);
}

#[test]
fn repeat_offenders_get_longer_bans_up_to_maxtime() {
    let policy = Policy {
        maxretry: 1,
        bantime: 10,
        increment: true,
        factor: 2.0,
        maxtime: 35,
        history: 1000,
        ..POLICY
    };
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    let key = v4(42);
    let mut now = 1000;
    let mut lengths = Vec::new();
    for _ in 0..4 {
        let Failure::Banned(ban) = t.record_failure(&key, at(now), &mut ev) else {
            panic!("maxretry=1 bans at once");
        };
        lengths.push((ban.until - ban.since, ban.offence));
        now = u64::from(ban.until);
        assert_eq!(t.check(&key, at(now), true, &mut ev), Verdict::Clear);
    }
    assert_eq!(lengths, vec![(10, 1), (20, 2), (35, 3), (35, 4)]);
    // Once the history is forgotten, the next ban is a first offence again.
    now += 1000;
    let Failure::Banned(ban) = t.record_failure(&key, at(now), &mut ev) else {
        panic!("bans again");
    };
    assert_eq!((ban.until - ban.since, ban.offence), (10, 1));
    check_invariants(&t);
}

#[test]
fn offence_history_is_the_last_thing_dropped_before_bans() {
    let policy = Policy {
        maxretry: 1,
        bantime: 5,
        increment: true,
        history: 100_000,
        ..POLICY
    };
    let mut region = Region::new(16 * 1024);
    let mut ev = Events::default();
    {
        let mut t = region.table(policy);
        t.record_failure(&v4(1), at(100), &mut ev);
        assert_eq!(t.check(&v4(1), at(110), true, &mut ev), Verdict::Clear);
    }
    // Counted addresses come and go; the remembered offender stays.
    let two = Policy {
        maxretry: 2,
        ..policy
    };
    let mut t = region.attach(two);
    let cap = t.capacity();
    for n in 0..cap * 3 {
        t.record_failure(&v4(1000 + n), at(120), &mut ev);
    }
    assert_eq!(t.lookup(&v4(1), at(120)).map(|s| s.failures), Some(0));
    t.record_failure(&v4(1), at(121), &mut ev);
    let Failure::Banned(ban) = t.record_failure(&v4(1), at(121), &mut ev) else {
        panic!("second failure bans");
    };
    assert_eq!((ban.offence, ban.until - ban.since), (2, 10));
    check_invariants(&t);
}

#[test]
fn network_keys_share_one_count() {
    let policy = Policy {
        maxretry: 2,
        ipv6_prefix: 64,
        ipv4_prefix: 24,
        ..POLICY
    };
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    let a = policy.key_of("2001:db8:1:2::a".parse().unwrap());
    let b = policy.key_of("2001:db8:1:2:ffff::b".parse().unwrap());
    let other = policy.key_of("2001:db8:1:3::a".parse().unwrap());
    assert_eq!(a, b);
    assert_eq!(a.to_string(), "2001:db8:1:2::/64");
    assert_eq!(t.record_failure(&a, at(10), &mut ev), Failure::Counted(1));
    assert!(matches!(
        t.record_failure(&b, at(10), &mut ev),
        Failure::Banned(_)
    ));
    assert_eq!(t.check(&other, at(11), true, &mut ev), Verdict::Clear);
    let v4a = policy.key_of("198.51.100.7".parse().unwrap());
    assert_eq!(v4a.to_string(), "198.51.100.0/24");
}

#[test]
fn widening_bans_the_network_at_the_kth_member_and_folds_members() {
    let policy = Policy {
        maxretry: 1,
        widen: 3,
        ..POLICY
    };
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    let host = |s: &str| Key::parse(s).unwrap();
    t.record_failure(&host("2001:db8:1:2::1"), at(10), &mut ev);
    t.record_failure(&host("2001:db8:1:2::2"), at(10), &mut ev);
    // Two members in one /64, one elsewhere: no widening yet.
    t.record_failure(&host("2001:db8:1:3::1"), at(10), &mut ev);
    assert!(ev.iter().all(|e| !matches!(e, Event::Widened { .. })));
    assert_eq!(
        t.check(&host("2001:db8:1:2::99"), at(11), true, &mut ev),
        Verdict::Clear
    );
    let mut ev = Events::default();
    t.record_failure(&host("2001:db8:1:2::3"), at(12), &mut ev);
    let widened: Vec<_> = ev
        .iter()
        .filter_map(|e| match e {
            Event::Widened { ban, members } => Some((ban.key.to_string(), members)),
            _ => None,
        })
        .collect();
    assert_eq!(widened, vec![("2001:db8:1:2::/64".to_string(), 3)]);
    assert!(matches!(
        t.check(&host("2001:db8:1:2::99"), at(13), true, &mut ev),
        Verdict::Banned(b) if b.key.to_string() == "2001:db8:1:2::/64"
    ));
    // The three member bans folded into the /64; the other /64's stays.
    assert_eq!(t.bans(), 2);
    assert_eq!(t.lookup(&host("2001:db8:1:2::1"), at(13)), None);
    check_invariants(&t);
    // IPv4: /32 -> /24.
    for n in 1..=3 {
        t.record_failure(&host(&format!("198.51.100.{n}")), at(20), &mut ev);
    }
    assert!(matches!(
        t.check(&host("198.51.100.200"), at(21), true, &mut ev),
        Verdict::Banned(b) if b.key.to_string() == "198.51.100.0/24"
    ));
    check_invariants(&t);
}

#[test]
fn members_whose_bans_end_no_longer_count_toward_widening() {
    let policy = Policy {
        maxretry: 1,
        bantime: 5,
        widen: 2,
        ..POLICY
    };
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    t.record_failure(&v4(0x0a00_0001), at(10), &mut ev);
    // The first ban ends before the second member is banned.
    assert_eq!(
        t.check(&v4(0x0a00_0001), at(16), true, &mut ev),
        Verdict::Clear
    );
    t.record_failure(&v4(0x0a00_0002), at(17), &mut ev);
    assert_eq!(
        t.check(&v4(0x0a00_0099), at(17), true, &mut ev),
        Verdict::Clear
    );
    t.record_failure(&v4(0x0a00_0003), at(17), &mut ev);
    assert!(matches!(
        t.check(&v4(0x0a00_0099), at(17), true, &mut ev),
        Verdict::Banned(_)
    ));
    check_invariants(&t);
}

proptest! {
    /// Widening, escalation and a full table together never break the
    /// structures, and a widened network refuses the addresses inside it.
    #[test]
    fn widening_under_pressure_stays_consistent(
        ops in proptest::collection::vec((0u32..64, 0u64..4000, 0u8..3), 1..400),
    ) {
        let policy = Policy {
            maxretry: 2, findtime: 30, bantime: 20, increment: true, history: 60,
            widen: 2, ..POLICY
        };
        let mut region = Region::new(header_len() + 1400);
        let mut t = region.table(policy);
        let mut now_ms = 10_000_000u64;
        for (n, gap, op) in ops {
            now_ms += gap;
            let now = Now::from_ms(now_ms);
            // Few /64s and /24s, so members crowd into the same networks.
            let key = if n % 2 == 0 {
                v4(0x0a00_0000 | ((n % 6) << 8) | n)
            } else {
                v6(0x2001_0db8_u128 << 96 | u128::from(n % 4) << 64 | u128::from(n))
            };
            let mut ev = Events::default();
            match op {
                0 => {
                    t.record_failure(&key, now, &mut ev);
                    let widened = ev.iter().any(|e| matches!(e, Event::Widened { .. }));
                    if widened {
                        let mut ev = Events::default();
                        prop_assert!(matches!(t.check(&key, now, true, &mut ev), Verdict::Banned(_)));
                    }
                }
                1 => { t.check(&key, now, true, &mut ev); }
                _ => { t.unban(&key, now); }
            }
            check_invariants(&t);
        }
    }
}

#[test]
fn records_round_trip_into_a_table_of_another_size() {
    let policy = Policy {
        maxretry: 1,
        bantime: 100,
        increment: true,
        history: 1000,
        ..POLICY
    };
    let mut big = Region::new(64 * 1024);
    let mut t = big.table(policy);
    let mut ev = Events::default();
    t.record_failure(&v4(1), at(10), &mut ev);
    t.record_failure(&v4(2), at(10), &mut ev);
    t.check(&v4(2), at(111), true, &mut ev); // ends 2's ban: history only
    t.record_failure(&v4(3), at(112), &mut ev);
    let net = Key::parse("2001:db8::/48").unwrap();
    t.ban(&net, at(112), 500, &mut ev);
    let records = t.records(at(112));
    // 1 and 2: histories (their bans ended at 110); 3 and the /48: bans.
    assert_eq!(records.len(), 4, "{records:?}");
    let mut small = Region::new(16 * 1024);
    let mut s = small.table(policy);
    for r in &records {
        assert!(s.restore(r, at(113), &mut ev));
    }
    assert!(
        !s.restore(&records[0], at(113), &mut ev),
        "present keys stay"
    );
    assert!(
        matches!(s.check(&v4(3), at(113), true, &mut ev), Verdict::Banned(b) if b.until == 212)
    );
    assert!(matches!(
        s.check(&Key::parse("2001:db8::5").unwrap(), at(113), true, &mut ev),
        Verdict::Banned(_)
    ));
    assert_eq!(s.check(&v4(2), at(113), true, &mut ev), Verdict::Clear);
    // 2 is a second-time offender in the new table too.
    let Failure::Banned(ban) = s.record_failure(&v4(2), at(114), &mut ev) else {
        panic!("bans");
    };
    assert_eq!((ban.offence, ban.until - ban.since), (2, 200));
    // Expired bans are not restored.
    let mut later = Region::new(16 * 1024);
    let mut l = later.table(policy);
    assert!(!l.restore(
        &records.iter().find(|r| r.key == v4(3)).copied().unwrap(),
        at(5000),
        &mut ev
    ));
    check_invariants(&s);
}

#[test]
fn a_ban_that_ended_unnoticed_is_kept_as_history() {
    let policy = Policy {
        maxretry: 1,
        bantime: 10,
        increment: true,
        history: 1000,
        ..POLICY
    };
    let mut region = Region::new(16 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    t.record_failure(&v4(7), at(100), &mut ev);
    // No request since the ban ended at 110: the slot still says banned.
    let records = t.records(at(200));
    assert_eq!(
        records,
        vec![Record {
            key: v4(7),
            offences: 1,
            last_ban_end: 110,
            ban: None
        }]
    );
    assert!(t.records(at(1200)).is_empty(), "history ran out");
}

#[test]
fn the_lock_free_precheck_never_misses_a_ban() {
    let mut region = Region::new(64 * 1024);
    let mut ev = Events::default();
    let net = Key::parse("2001:db8:4::/48").unwrap();
    let inside = Key::parse("2001:db8:4::9").unwrap();
    let base = region.base().cast_const();
    {
        let mut t = region.table(Policy {
            maxretry: 1,
            ..POLICY
        });
        for n in 0..300 {
            t.record_failure(&v4(n), at(10), &mut ev);
        }
        t.ban(&net, at(10), 60, &mut ev);
    }
    // SAFETY: the region was formatted just above and is not borrowed now.
    let maybe = |key: &Key| unsafe { may_be_banned(base, key) };
    assert!(
        (0..300).all(|n| maybe(&v4(n))),
        "every banned address passes the precheck"
    );
    assert!(
        maybe(&inside),
        "a banned network's addresses go to the lookup"
    );
    let clear = (1000..3000).filter(|&n| !maybe(&v4(n))).count();
    assert!(
        clear > 1500,
        "most other addresses skip the lock: {clear} of 2000"
    );
}

#[test]
fn bans_of_a_previous_prefix_keep_refusing_after_a_policy_change() {
    let mut region = Region::new(64 * 1024);
    let base = region.base().cast_const();
    let mut ev = Events::default();
    let host = Key::parse("192.0.2.10").unwrap();
    let net24 = Key::parse("192.0.2.0/24").unwrap();
    {
        let mut t = region.table(POLICY);
        t.ban(&host, at(10), 600, &mut ev);
        t.ban(
            &Key::parse("198.51.100.16/28").unwrap(),
            at(10),
            600,
            &mut ev,
        );
    }
    {
        // The reload: failures now count per /24.
        let mut t = region.attach(Policy {
            ipv4_prefix: 24,
            ..POLICY
        });
        assert!(matches!(
            t.check(&host, at(11), true, &mut ev),
            Verdict::Banned(b) if b.key == host
        ));
        assert!(matches!(
            t.check(&Key::parse("198.51.100.20").unwrap(), at(11), true, &mut ev),
            Verdict::Banned(_)
        ));
        assert_eq!(
            t.check(&Key::parse("192.0.2.11").unwrap(), at(11), true, &mut ev),
            Verdict::Clear
        );
    }
    // SAFETY: the region was formatted above and is not borrowed now.
    let maybe = |host: &Key, net: &Key| unsafe { may_be_banned_within(base, host, net) };
    assert!(maybe(&host, &net24), "the old /32 ban passes the precheck");
    let in28 = Key::parse("198.51.100.20").unwrap();
    assert!(maybe(&in28, &Key::parse("198.51.100.0/24").unwrap()));
}

#[test]
fn the_precheck_of_a_policy_network_uses_its_filter_not_the_mask() {
    let mut region = Region::new(64 * 1024);
    let base = region.base().cast_const();
    let mut ev = Events::default();
    let policy = Policy {
        ipv4_prefix: 24,
        ..POLICY
    };
    {
        let mut t = region.table(policy);
        t.ban(&Key::parse("192.0.2.0/24").unwrap(), at(10), 600, &mut ev);
    }
    let maybe = |ip: &str| {
        let host = Key::parse(ip).unwrap();
        let net = policy.key_of(host.ip());
        // SAFETY: the region was formatted above and is not borrowed now.
        unsafe { may_be_banned_within(base, &host, &net) }
    };
    assert!(maybe("192.0.2.77"));
    let clear = (0..2000u32)
        .filter(|n| !maybe(&format!("10.{}.{}.1", n / 256, n % 256)))
        .count();
    assert!(clear > 1500, "other /24s skip the lock: {clear} of 2000");
}

#[test]
fn a_manual_reban_after_an_unnoticed_end_counts_its_member_once() {
    let policy = Policy {
        maxretry: 1,
        bantime: 5,
        widen: 3,
        ..POLICY
    };
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(policy);
    let mut ev = Events::default();
    t.record_failure(&v4(0x0a00_0001), at(10), &mut ev);
    t.record_failure(&v4(0x0a00_0002), at(10), &mut ev);
    // 10.0.0.1's ban ended at 15 but nothing has looked at it since.
    t.ban(&v4(0x0a00_0001), at(20), 60, &mut ev);
    let net = t.find(&Key::parse("10.0.0.0/24").unwrap()).unwrap();
    // 10.0.0.2's ban ended too (noticed or not), so one live member at most.
    assert!(t.slots[net as usize].members <= 2);
    assert_eq!(
        t.check(&v4(0x0a00_0099), at(20), true, &mut ev),
        Verdict::Clear,
        "two live members do not widen at widen=3"
    );
    check_invariants(&t);
}

/// The reload rules of the module documentation: maxretry and bantime
/// apply from the next operation to the counts already held, bans in force
/// keep their end, and only `apply_findtime` (the master, once) changes the
/// window step, restarting the counts.
#[test]
fn a_reload_applies_the_new_policy_from_the_next_operation_and_keeps_bans() {
    let old = POLICY; // maxretry 5, bantime 600
    let new = Policy {
        maxretry: 3,
        bantime: 60,
        ..POLICY
    };
    let mut region = Region::new(32 * 1024);
    let mut ev = Events::default();
    let old_ban = {
        let mut t = region.table(old);
        for _ in 0..4 {
            t.record_failure(&v4(1), at(10), &mut ev);
        }
        let Failure::Banned(ban) = t.record_failure(&v4(1), at(10), &mut ev) else {
            panic!("fifth failure bans");
        };
        for _ in 0..3 {
            t.record_failure(&v4(2), at(10), &mut ev);
        }
        ban
    };
    {
        let mut t = region.attach(new);
        assert!(!t.apply_findtime(), "same findtime: nothing restarts");
        assert_eq!(t.policy(), new);
        // Counts are kept; a count already at the new maxretry is not banned
        // by the reload itself.
        assert_eq!(t.failures(&v4(2), at(11)), Some(3));
        assert_eq!(t.check(&v4(2), at(11), true, &mut ev), Verdict::Clear);
        // The ban in force keeps its end, whatever the new bantime.
        assert_eq!(
            t.check(&v4(1), at(11), true, &mut ev),
            Verdict::Banned(old_ban)
        );
        assert_eq!(old_ban.until, 610);
        // The next failure applies the new maxretry and bantime.
        let Failure::Banned(ban) = t.record_failure(&v4(2), at(12), &mut ev) else {
            panic!("fourth failure bans at maxretry=3");
        };
        assert_eq!((ban.failures, ban.until - ban.since), (4, 60));
        assert_eq!(
            t.record_failure(&v4(3), at(12), &mut ev),
            Failure::Counted(1)
        );
        assert_eq!(
            t.record_failure(&v4(3), at(12), &mut ev),
            Failure::Counted(2)
        );
    }
    {
        // A worker of the old cycle, still draining, applies the old policy
        // to the same counts.
        let mut t = region.attach(old);
        assert_eq!(
            t.record_failure(&v4(3), at(13), &mut ev),
            Failure::Counted(3)
        );
        assert_eq!(
            t.record_failure(&v4(3), at(13), &mut ev),
            Failure::Counted(4)
        );
    }
    {
        // Attaching with another findtime changes nothing by itself: the
        // step is the zone's, so old and new workers count alike.
        let t = region.attach(Policy {
            findtime: 60,
            ..new
        });
        assert_eq!(t.failures(&v4(3), at(14)), Some(4));
    }
    let mut t = region.attach(Policy {
        findtime: 60,
        ..new
    });
    assert!(t.apply_findtime(), "a new findtime restarts the counts");
    assert_eq!(t.failures(&v4(3), at(14)), Some(0));
    assert_eq!(
        t.check(&v4(1), at(14), true, &mut ev),
        Verdict::Banned(old_ban),
        "bans are kept"
    );
    assert!(matches!(
        t.check(&v4(2), at(14), true, &mut ev),
        Verdict::Banned(b) if b.until == 72
    ));
    check_invariants(&t);
}

#[test]
fn attach_refuses_a_header_that_contradicts_itself() {
    let mut region = Region::new(32 * 1024);
    let mut ev = Events::default();
    {
        let mut t = region.table(POLICY);
        t.record_failure(&v4(1), at(10), &mut ev);
    }
    let damage = [
        |t: &mut Table| t.hdr.high_water = t.hdr.capacity + 1,
        |t: &mut Table| t.hdr.in_use = t.hdr.high_water + 1,
        |t: &mut Table| t.hdr.free = 7,
        |t: &mut Table| t.hdr.lists[COUNTED].head = 99,
        |t: &mut Table| t.hdr.lists[BANNED].tail = 0,
        |t: &mut Table| t.hdr.bucket_secs = 0,
    ];
    for (n, damage) in damage.iter().enumerate() {
        let mut t = region.table(POLICY);
        t.record_failure(&v4(1), at(10), &mut ev);
        damage(&mut t);
        assert_eq!(
            Table::attach(region.bytes(), &POLICY).err(),
            Some(LayoutError::Damaged),
            "damage {n}"
        );
    }
    // A length that is not the region's is another table's.
    let t = region.table(POLICY);
    t.hdr.region_len += 4096;
    assert_eq!(
        Table::attach(region.bytes(), &POLICY).err(),
        Some(LayoutError::Foreign)
    );
    let len = region.len();
    // SAFETY: the region's first header_len() bytes are readable, aligned.
    assert_eq!(unsafe { stored_len(region.base()) }, len + 4096);
}

/// A loop in damaged memory ends the walk after at most `capacity` steps,
/// marks the table damaged, and formatting the region again makes it sound.
#[test]
fn a_list_that_loops_marks_the_table_damaged_instead_of_spinning() {
    let mut region = Region::new(32 * 1024);
    let mut ev = Events::default();
    let policy = Policy {
        maxretry: 1,
        ..POLICY
    };
    {
        let mut t = region.table(policy);
        for n in 0..3 {
            t.record_failure(&v4(n), at(10 + u64::from(n)), &mut ev);
        }
        assert!(!t.damaged());
        // The ban list's tail points back at its head.
        let (head, tail) = (t.hdr.lists[BANNED].head, t.hdr.lists[BANNED].tail);
        t.slots[tail as usize].next = head;
    }
    {
        let t = region.attach(policy);
        let page = t.bans_page(at(20), 0, usize::MAX);
        assert!(page.len() <= t.capacity() as usize);
        assert!(t.damaged(), "the walk noticed the loop");
    }
    {
        // The walk that folds bans into a widened network, too.
        let mut t = region.attach(Policy { widen: 1, ..policy });
        t.ban(&v4(0x0a00_0001), at(20), 60, &mut ev);
        assert!(t.damaged());
    }
    {
        // A bucket chain that loops: a key that is not there, in the same
        // bucket as one that is, is looked up in vain, and said so.
        let mut t = region.table(policy);
        t.record_failure(&v4(1), at(10), &mut ev);
        let i = t.find(&v4(1)).unwrap();
        t.slots[i as usize].chain = i;
        let b = t.bucket_of(&v4(1));
        let absent = (2..)
            .map(v4)
            .find(|k| t.bucket_of(k) == b)
            .expect("another key in the bucket");
        assert_eq!(t.find(&absent), None);
        assert!(t.damaged());
        // Inserting the absent key walks nothing more: still bounded.
        t.record_failure(&absent, at(11), &mut ev);
    }
    {
        // A link out of range is never followed.
        let mut t = region.table(policy);
        t.record_failure(&v4(1), at(10), &mut ev);
        t.record_failure(&v4(2), at(10), &mut ev);
        let i = t.find(&v4(1)).unwrap();
        t.slots[i as usize].next = 0xdead_beef;
        t.slots[i as usize].prev = 0xdead_beef;
        t.unban(&v4(1), at(11));
        assert!(t.damaged());
    }
    // What the zone does then: format the region again, and go on.
    let mut t = region.table(policy);
    assert!(!t.damaged());
    assert_eq!(t.tracked(), 0);
    assert!(matches!(
        t.record_failure(&v4(1), at(30), &mut ev),
        Failure::Banned(_)
    ));
    check_invariants(&t);
}

/// The lock-free pre-check against concurrent bans and unbans: writers
/// ban and unban under a mutex (the zone's lock) while readers run
/// `may_be_banned_within` without it. Each key has an epoch, odd while its
/// ban is complete: a writer makes it odd after the ban, and even before
/// the unban. A reader that sees the same odd epoch before and after its
/// pre-check read while the ban was in force throughout, and must see it.
#[test]
fn the_lock_free_precheck_sees_every_completed_ban_under_concurrency() {
    use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64};
    use std::sync::Mutex;

    /// The region's start, shared by the threads as workers share a zone.
    struct Shared(*mut u8, usize);
    // SAFETY: the region outlives the scoped threads; its tables are only
    // formed under `lock`, and the pre-check reads atomics only.
    unsafe impl Sync for Shared {}
    impl Shared {
        fn base(&self) -> *mut u8 {
            self.0
        }
    }

    const KEYS: u32 = 48;
    let rounds: u32 = if cfg!(miri) { 3 } else { 400 };
    let mut region = Region::new(64 * 1024);
    region.table(POLICY);
    let shared = Shared(region.base(), region.len());
    let lock = Mutex::new(());
    let epochs: Vec<AtomicU32> = (0..KEYS).map(|_| AtomicU32::new(0)).collect();
    let stop = AtomicBool::new(false);
    let checked = AtomicU64::new(0);
    // Even keys are hosts; odd ones /24 networks, read through a host
    // inside them, so both the filter and the length mask are exercised.
    let banned_key = |k: u32| {
        if k % 2 == 0 {
            v4(0x0a00_0000 | k)
        } else {
            Key::parse(&format!("10.1.{k}.0/24")).unwrap()
        }
    };
    let client = |k: u32| {
        if k % 2 == 0 {
            (v4(0x0a00_0000 | k), v4(0x0a00_0000 | k))
        } else {
            let host = Key::parse(&format!("10.1.{k}.7")).unwrap();
            (host, host)
        }
    };
    let with_table = |f: &mut dyn FnMut(&mut Table)| {
        let _locked = lock.lock().unwrap();
        // SAFETY: the region was formatted above; the mutex makes this the
        // only table over it, and the readers only touch the atomics.
        let mut t = unsafe { Table::attach_raw(shared.base(), shared.1, &POLICY) }.unwrap();
        f(&mut t);
        assert!(!t.damaged());
    };
    std::thread::scope(|s| {
        let writers: Vec<_> = (0..2u32)
            .map(|w| {
                let (epochs, with_table, checked) = (&epochs, &with_table, &checked);
                s.spawn(move || {
                    // At least `rounds`, and on until the readers (which a
                    // busy machine may not schedule at once) checked some.
                    let started = std::time::Instant::now();
                    for round in 0.. {
                        let enough = round >= rounds && checked.load(Ordering::Relaxed) >= 100;
                        if enough || started.elapsed() > std::time::Duration::from_secs(20) {
                            break;
                        }
                        for k in (w..KEYS).step_by(2) {
                            let epoch = &epochs[k as usize];
                            let e = epoch.load(Ordering::Relaxed);
                            let key = banned_key(k);
                            if e % 2 == 0 {
                                with_table(&mut |t| {
                                    t.ban(&key, at(100), 600, &mut Events::default());
                                });
                                epoch.store(e + 1, Ordering::Release);
                            } else {
                                epoch.store(e + 1, Ordering::Release);
                                with_table(&mut |t| {
                                    assert!(t.unban(&key, at(100)).is_some());
                                });
                            }
                        }
                    }
                })
            })
            .collect();
        for r in 0..2u64 {
            let (epochs, stop, checked, shared) = (&epochs, &stop, &checked, &shared);
            s.spawn(move || {
                let mut x = 0x9e37_79b9_7f4a_7c15u64 ^ r;
                while !stop.load(Ordering::Relaxed) {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = (x % u64::from(KEYS)) as u32;
                    let (host, net) = client(k);
                    let before = epochs[k as usize].load(Ordering::Acquire);
                    // SAFETY: the region is formatted and outlives the scope.
                    let maybe = unsafe { may_be_banned_within(shared.base(), &host, &net) };
                    let after = epochs[k as usize].load(Ordering::Acquire);
                    if before == after && before % 2 == 1 {
                        assert!(
                            maybe,
                            "missed the ban of {} (epoch {before})",
                            banned_key(k)
                        );
                        checked.fetch_add(1, Ordering::Relaxed);
                    }
                }
            });
        }
        for w in writers {
            w.join().unwrap();
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(
        checked.load(Ordering::Relaxed) > 0,
        "no read overlapped a completed ban"
    );
    let t = region.attach(POLICY);
    check_invariants(&t);
}

/// Runs `change` on `t` and tells whether the ban generation moved.
fn moves_generation(t: &mut Table<'_>, change: impl FnOnce(&mut Table<'_>)) -> bool {
    let before = t.ban_generation();
    change(t);
    t.ban_generation() != before
}

#[test]
fn every_way_a_ban_stops_covering_moves_the_ban_generation() {
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(POLICY);
    let mut ev = Events::default();
    let fail = |t: &mut Table<'_>, key: &Key, secs: u64, ev: &mut Events| {
        for _ in 0..POLICY.maxretry {
            t.record_failure(key, at(secs), ev);
        }
    };
    // New bans, failures, checks and counted addresses leave it alone: a
    // worker's memory of the bans it saw stays good through an attack.
    assert!(!moves_generation(&mut t, |t| {
        fail(t, &v4(1), 100, &mut ev);
        t.ban(&v4(2), at(100), 600, &mut ev);
        t.ban(&Key::parse("2001:db8::/48").unwrap(), at(100), 600, &mut ev);
        t.record_failure(&v4(3), at(100), &mut ev);
        t.record_failure(&v4(2), at(100), &mut ev);
        t.check(&v4(1), at(101), true, &mut ev);
        t.unban(&v4(3), at(101));
        let ban = Ban {
            key: v4(4),
            since: 90,
            until: 700,
            failures: 0,
            offence: 1,
        };
        t.apply_remote_ban(&ban, at(101), &mut ev);
    }));
    assert_eq!(t.bans(), 4);
    // Lifted through the endpoint or by the fleet (both unban).
    assert!(moves_generation(&mut t, |t| {
        t.unban(&v4(1), at(102)).unwrap();
    }));
    // Replaced by the endpoint: the new end may be sooner.
    assert!(moves_generation(&mut t, |t| {
        t.ban(&v4(2), at(102), 5, &mut ev);
    }));
    // Replaced from the fleet (a later end).
    assert!(moves_generation(&mut t, |t| {
        let ban = Ban {
            key: v4(4),
            since: 90,
            until: 800,
            failures: 0,
            offence: 1,
        };
        assert!(t.apply_remote_ban(&ban, at(102), &mut ev).is_some());
    }));
    // Ended by its time: noticed by a check...
    assert!(moves_generation(&mut t, |t| {
        assert_eq!(t.check(&v4(2), at(107), true, &mut ev), Verdict::Clear);
    }));
    // ... by a failure's expiry, or by the ban list's reading.
    fail(&mut t, &v4(5), 200, &mut ev);
    assert!(moves_generation(&mut t, |t| {
        t.record_failure(&v4(6), at(900), &mut ev);
    }));
    fail(&mut t, &v4(7), 1000, &mut ev);
    assert!(moves_generation(&mut t, |t| {
        let mut ev = Events::default();
        while t.end_ended_bans(at(1700), &mut ev) {
            ev = Events::default();
        }
    }));
    check_invariants(&t);

    // Folded into a wider ban (its members forgotten).
    let mut region = Region::new(64 * 1024);
    let mut t = region.table(Policy {
        maxretry: 1,
        widen: 2,
        ..POLICY
    });
    t.record_failure(&Key::parse("198.51.100.1").unwrap(), at(10), &mut ev);
    assert!(moves_generation(&mut t, |t| {
        t.record_failure(&Key::parse("198.51.100.2").unwrap(), at(10), &mut ev);
    }));
    assert_eq!(t.bans(), 1, "the /24 alone");

    // Dropped when the zone holds nothing but bans.
    let mut region = Region::new(16 * 1024);
    let mut t = region.table(Policy {
        maxretry: 1,
        ..POLICY
    });
    let cap = t.capacity();
    for n in 0..cap {
        t.record_failure(&v4(n + 1), at(10), &mut ev);
    }
    assert_eq!(t.bans(), cap);
    assert!(moves_generation(&mut t, |t| {
        let mut ev = Events::default();
        t.record_failure(&v4(cap + 1), at(11), &mut ev);
        assert!(ev.iter().any(|e| matches!(e, Event::BanDropped(_))));
    }));
    let before = t.ban_generation();

    // Formatted anew (a damaged zone): the generation moves on, it does
    // not start again where a worker may remember it.
    let t = region.table(POLICY);
    assert_ne!(t.ban_generation(), before);
    assert_ne!(t.ban_generation(), 0);
}

#[test]
fn a_remembered_ban_refuses_until_its_end_or_any_ban_change() {
    let mut region = Region::new(64 * 1024);
    let base = region.base().cast_const();
    let refusals = Refusals::default();
    let mut ev = Events::default();
    let host = v4(0xc000_0201);
    let other = v4(0xc000_0202);
    // SAFETY: the region is formatted below before any call, and every
    // call is made while no table borrows it.
    let refused =
        |key: &Key, secs: u64| unsafe { refused_from_memory(base, &refusals, key, at(secs)) };
    // Nothing remembered: nothing refused, even in an empty region's
    // first generation.
    let generation = {
        let mut t = region.table(POLICY);
        let ban = t.ban(&host, at(100), 60, &mut ev);
        assert_eq!(ban.until, 160);
        t.ban(&other, at(100), 600, &mut ev);
        t.ban_generation()
    };
    assert!(!refused(&host, 101));
    refusals.remember(&host, 160, generation);
    assert!(refused(&host, 101));
    assert!(refused(&host, 159));
    // The end is the table's: not refused from its second on.
    assert!(!refused(&host, 160));
    assert!(!refused(&other, 101), "only what was remembered");
    // A new ban elsewhere keeps the memory good.
    {
        let mut t = region.attach(POLICY);
        t.ban(&v4(9), at(102), 60, &mut ev);
    }
    assert!(refused(&host, 102));
    // Unbanning anything else forgets it all: the change is not examined.
    {
        let mut t = region.attach(POLICY);
        t.unban(&other, at(103)).unwrap();
    }
    assert!(!refused(&host, 103));
    // Remembered again under the new generation, then lifted.
    let generation = region.attach(POLICY).ban_generation();
    refusals.remember(&host, 160, generation);
    assert!(refused(&host, 104));
    {
        let mut t = region.attach(POLICY);
        t.unban(&host, at(105)).unwrap();
    }
    assert!(!refused(&host, 105));
    // Refusals made from memory count with those made under the lock.
    let mut t = region.attach(POLICY);
    assert_eq!(t.stats().refused, 4);
    t.ban(&host, at(106), 60, &mut ev);
    assert!(matches!(
        t.check(&host, at(106), true, &mut ev),
        Verdict::Banned(_)
    ));
    assert_eq!(t.stats().refused, 5);
}

#[test]
fn memories_of_bans_that_collide_replace_each_other() {
    let mut region = Region::new(64 * 1024);
    let base = region.base().cast_const();
    let refusals = Refusals::default();
    let mut ev = Events::default();
    let generation = {
        let mut t = region.table(POLICY);
        for n in 0..1000 {
            t.ban(&v4(n), at(100), 60, &mut ev);
        }
        t.ban_generation()
    };
    for n in 0..1000 {
        refusals.remember(&v4(n), 160, generation);
    }
    // SAFETY: formatted above, and no table borrows it now.
    let refused = |n: u32| unsafe { refused_from_memory(base, &refusals, &v4(n), at(101)) };
    let held = (0..1000).filter(|&n| refused(n)).count();
    assert!(held > 0 && held <= 64, "{held} remembered");
    assert!(refused(999), "the last remembered is held");
    // An address never banned is never refused, whatever it collides with.
    assert!((5000..10_000).all(|n| !refused(n)));
}
