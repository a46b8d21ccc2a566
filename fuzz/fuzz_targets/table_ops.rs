//! The table under a random sequence of operations with a moving clock,
//! checked against a model of who is banned until when, and of how many
//! failures an address can have in its window.
//!
//! The model learns bans from what the table reports (a failure that bans,
//! a manual ban, `Widened`, `BanDropped` and `Expired` events) and then
//! requires that `check` refuses exactly the addresses a live ban covers,
//! that bans are listed soonest ending first, that counts stay within the
//! window rule's bounds, and that the table survives being re-attached and
//! moved into a table of another size (as a resize or restart does).
#![no_main]

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use arbitrary::Arbitrary;
use authban::engine::key::Key;
use authban::engine::table::{header_len, Event, Events, Failure, Now, Policy, Table, Verdict};
use authban::engine::window;
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input {
    maxretry: u8,
    findtime: u16,
    bantime: u16,
    increment: bool,
    widen: u8,
    /// Selects the region size: small ones force eviction.
    size: u8,
    start_secs: u32,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Fail {
        key: u8,
        gap_ms: u16,
    },
    Check {
        key: u8,
        gap_ms: u16,
        refusing: bool,
    },
    Ban {
        key: u8,
        secs: u16,
    },
    Unban {
        key: u8,
    },
    Expire {
        gap_ms: u16,
    },
    Lookup {
        key: u8,
    },
    Page {
        offset: u8,
        limit: u8,
    },
    Sleep {
        secs: u16,
    },
    Reattach,
    Move {
        size: u8,
    },
}

/// A small universe of keys, so they collide: IPv4 and IPv6 hosts in a few
/// networks, and the networks themselves (the sizes `widen` folds into).
fn key(n: u8) -> Key {
    let host = u32::from(n & 0x0f);
    let net = u32::from(n >> 4 & 0x3);
    match n >> 6 {
        0 => Key::from_ip(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | net << 8 | host))),
        1 => Key::from_ip(IpAddr::V6(Ipv6Addr::from(
            0x2001_0db8_0000_0000_0000_0000_0000_0000u128
                | u128::from(net) << 72
                | u128::from(host & 3) << 64
                | u128::from(host),
        ))),
        2 => {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | net << 8));
            Key::network(ip, [24, 16, 32, 8][host as usize & 3], 128)
        }
        _ => {
            let ip = IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0000u128 | u128::from(net) << 72,
            ));
            Key::network(ip, 32, [64, 56, 48, 128][host as usize & 3])
        }
    }
}

/// Whether `net` is `key` or a network holding it.
fn covers(net: &Key, key: &Key) -> bool {
    net.is_ipv4() == key.is_ipv4()
        && net.raw_prefix() <= key.raw_prefix()
        && Key::from_raw(key.raw_addr(), net.raw_prefix()) == *net
}

struct Region(Vec<u64>);

impl Region {
    fn new(size: u8) -> Region {
        // The header, then from a handful of slots to a few hundred.
        let bytes = header_len() + 256 + usize::from(size) * 64;
        Region(vec![0; bytes.div_ceil(8)])
    }

    fn bytes(&mut self) -> &mut [u8] {
        // SAFETY: a Vec<u64> is initialised and 8-byte aligned.
        unsafe { std::slice::from_raw_parts_mut(self.0.as_mut_ptr().cast(), self.0.len() * 8) }
    }
}

struct Model {
    policy: Policy,
    now_ms: u64,
    /// Bans in force as the table reported them: key -> until.
    bans: HashMap<Key, u32>,
    /// Failure times (seconds) counted since the key's window last restarted.
    failures: HashMap<Key, Vec<u32>>,
    /// False once the table may have forgotten counts the model cannot see
    /// (eviction, a move into another table).
    counts_exact: bool,
    /// TABLE_OPS_TRACE=1 prints each step when replaying an input.
    trace: bool,
}

impl Model {
    fn now(&self) -> Now {
        Now::from_ms(self.now_ms)
    }

    fn banned(&self, key: &Key) -> bool {
        let secs = self.now().secs();
        self.bans
            .iter()
            .any(|(net, &until)| until > secs && covers(net, key))
    }

    fn absorb(&mut self, events: &Events) {
        self.absorb_except(events, None);
    }

    /// As `absorb`, but for one event, which the caller deals with.
    fn absorb_except(&mut self, events: &Events, except: Option<Event>) {
        for event in events.iter().filter(|&e| Some(e) != except) {
            if self.trace {
                eprintln!("  event {event:?}");
            }
            match event {
                Event::Expired(k) => {
                    let until = self.bans.remove(&k);
                    assert!(
                        until.is_some_and(|u| u <= self.now().secs()),
                        "{k} expired early or was never banned: {until:?}"
                    );
                    self.failures.remove(&k);
                }
                Event::Widened { ban, members } => {
                    assert!(u32::from(members) >= self.policy.widen);
                    // The networks widening folds into: IPv4 /24, IPv6 /64, /56, /48.
                    let p = ban.key.raw_prefix();
                    assert!(if ban.key.is_ipv4() {
                        p == 120
                    } else {
                        [64, 56, 48].contains(&p)
                    });
                    // The members inside the network are folded into it.
                    self.bans
                        .retain(|k, _| !(covers(&ban.key, k) && *k != ban.key));
                    self.bans.insert(ban.key, ban.until);
                    self.failures.remove(&ban.key);
                }
                Event::BanDropped(ban) => {
                    self.bans.remove(&ban.key);
                    self.failures.remove(&ban.key);
                }
            }
        }
    }

    /// Bounds on the failures `key` has in its window now.
    fn window_bounds(&self, key: &Key) -> (u32, u32) {
        let secs = self.now().secs();
        let step = window::bucket_secs(self.policy.findtime);
        let seen = self.failures.get(key).map(Vec::as_slice).unwrap_or(&[]);
        let lower = seen
            .iter()
            .filter(|&&s| secs - s <= self.policy.findtime)
            .count();
        let upper = seen
            .iter()
            .filter(|&&s| secs / step - s / step < window::BUCKETS as u32)
            .count();
        (lower as u32, upper as u32)
    }
}

fuzz_target!(|input: Input| {
    let bantime = u32::from(input.bantime % 120) + 1;
    let policy = Policy {
        maxretry: u32::from(input.maxretry % 6) + 1,
        findtime: u32::from(input.findtime % 300) + 1,
        bantime,
        increment: input.increment,
        factor: 1.5,
        maxtime: bantime * 4,
        history: 300,
        widen: match input.widen % 4 {
            0 | 1 => 0,
            k => u32::from(k),
        },
        ..Policy::default()
    };
    // Room to spare before the clock saturates in 2106.
    let start = u64::from(input.start_secs % 4_000_000_000);
    let mut model = Model {
        policy,
        now_ms: start * 1000,
        bans: HashMap::new(),
        failures: HashMap::new(),
        counts_exact: true,
        trace: std::env::var_os("TABLE_OPS_TRACE").is_some(),
    };
    let mut region = Region::new(input.size);
    let seed = [input.start_secs.into(), 0x5eed];
    let mut table = Table::format(region.bytes(), &policy, seed).unwrap();
    // Regions the table moves into; the last one is in use.
    let mut moved: Vec<Region> = Vec::new();

    let trace = model.trace;
    if trace {
        eprintln!("{policy:?} capacity {}", table.capacity());
    }
    for op in input.ops.into_iter().take(500) {
        if trace {
            let bans: Vec<String> = model.bans.iter().map(|(k, u)| format!("{k}:{u}")).collect();
            eprintln!("t={} {op:?} model bans {bans:?}", model.now_ms);
        }
        let mut ev = Events::default();
        match op {
            Op::Fail { key: k, gap_ms } => {
                model.now_ms += u64::from(gap_ms);
                let k = key(k);
                let now = model.now();
                let evicted = table.stats().evicted;
                let was_banned = model.bans.get(&k).is_some_and(|&u| u > now.secs());
                let result = table.record_failure(&k, now, &mut ev);
                if table.stats().evicted != evicted {
                    model.counts_exact = false;
                }
                // A full zone may drop the ban this failure just made, to
                // make room for its network's member count (`widen`): that
                // comes after the ban, so its failures are checked first.
                let own_drop = match result {
                    Failure::Banned(ban) => Some(Event::BanDropped(ban)),
                    _ => None,
                };
                model.absorb_except(&ev, own_drop);
                match result {
                    Failure::AlreadyBanned => assert!(was_banned, "{k} is not banned"),
                    Failure::Counted(n) => {
                        assert!(!was_banned, "{k} is banned");
                        model.failures.entry(k).or_default().push(now.secs());
                        let (lower, upper) = model.window_bounds(&k);
                        assert!(n <= upper, "{k}: {n} > {upper}");
                        assert!(!model.counts_exact || n >= lower, "{k}: {n} < {lower}");
                        assert!(n < policy.maxretry);
                    }
                    Failure::Banned(ban) => {
                        assert!(!was_banned, "{k} is banned");
                        model.failures.entry(k).or_default().push(now.secs());
                        let (_, upper) = model.window_bounds(&k);
                        assert!(
                            ban.failures <= upper && ban.failures >= policy.maxretry,
                            "{ban:?}: upper {upper}"
                        );
                        // A ban starts at the next whole second, so that it
                        // lasts its full length (until = since + length).
                        let since = model.now_ms.div_ceil(1000);
                        assert_eq!((ban.key, u64::from(ban.since)), (k, since));
                        check_ban_length(&policy, ban.until, model.now_ms);
                        model.failures.remove(&k);
                        record_ban(&mut model, &ev, ban.key, ban.until);
                    }
                }
            }
            Op::Check {
                key: k,
                gap_ms,
                refusing,
            } => {
                model.now_ms += u64::from(gap_ms);
                let k = key(k);
                let refused = table.stats().refused;
                let verdict = table.check(&k, model.now(), refusing, &mut ev);
                model.absorb(&ev);
                let banned = matches!(verdict, Verdict::Banned(_));
                assert_eq!(banned, model.banned(&k), "{k}: {verdict:?}");
                if let Verdict::Banned(ban) = verdict {
                    assert!(covers(&ban.key, &k));
                    assert_eq!(model.bans.get(&ban.key), Some(&ban.until));
                }
                let counted = u64::from(banned && refusing);
                assert_eq!(table.stats().refused, refused + counted);
            }
            Op::Ban { key: k, secs } => {
                let k = key(k);
                let secs = u32::from(secs % 1000);
                let evicted = table.stats().evicted;
                let ban = table.ban(&k, model.now(), secs, &mut ev);
                if table.stats().evicted != evicted {
                    model.counts_exact = false;
                }
                model.absorb(&ev);
                assert_eq!(ban.key, k);
                assert_eq!(u64::from(ban.since), model.now_ms.div_ceil(1000));
                assert_eq!(
                    u64::from(ban.until) * 1000,
                    (model.now_ms + u64::from(secs) * 1000).next_multiple_of(1000)
                );
                model.failures.remove(&k);
                record_ban(&mut model, &ev, ban.key, ban.until);
            }
            Op::Unban { key: k } => {
                let k = key(k);
                let state = table.unban(&k, model.now());
                let until = model.bans.remove(&k);
                let live = until.filter(|&u| u > model.now().secs());
                assert_eq!(state.and_then(|s| s.ban).map(|b| b.until), live, "{k}");
                model.failures.remove(&k);
                assert_eq!(table.lookup(&k, model.now()), None);
            }
            Op::Expire { gap_ms } => {
                model.now_ms += u64::from(gap_ms);
                table.expire(model.now(), &mut ev);
                model.absorb(&ev);
            }
            Op::Lookup { key: k } => {
                let k = key(k);
                let now = model.now();
                let state = table.lookup(&k, now);
                let own_ban = model.bans.get(&k).filter(|&&u| u > now.secs());
                assert_eq!(
                    state.and_then(|s| s.ban).map(|b| b.until),
                    own_ban.copied(),
                    "{k}"
                );
                if own_ban.is_none() {
                    let (lower, upper) = model.window_bounds(&k);
                    let n = state.map_or(0, |s| s.failures);
                    assert!(n <= upper, "{k}: {n} > {upper}");
                    assert!(!model.counts_exact || n >= lower, "{k}: {n} < {lower}");
                }
            }
            Op::Page { offset, limit } => {
                let now = model.now();
                let all = table.bans_page(now, 0, usize::MAX);
                let page = table.bans_page(now, offset.into(), limit.into());
                let end = (usize::from(offset) + usize::from(limit)).min(all.len());
                assert_eq!(page, all[usize::from(offset).min(end)..end]);
                assert!(all.windows(2).all(|w| w[0].until <= w[1].until));
                let live: HashMap<Key, u32> = model
                    .bans
                    .iter()
                    .filter(|(_, &u)| u > now.secs())
                    .map(|(k, &u)| (*k, u))
                    .collect();
                assert_eq!(all.len(), live.len());
                for ban in &all {
                    assert_eq!(live.get(&ban.key), Some(&ban.until));
                }
            }
            Op::Sleep { secs } => model.now_ms += u64::from(secs) * 1000,
            Op::Reattach => {
                let (stats, tracked, bans) = (table.stats(), table.tracked(), table.bans());
                let bytes = match moved.last_mut() {
                    Some(r) => r.bytes(),
                    None => region.bytes(),
                };
                table = Table::attach(bytes, &policy).expect("reattach");
                assert_eq!(table.policy(), policy);
                assert_eq!(
                    (table.stats(), table.tracked(), table.bans()),
                    (stats, tracked, bans)
                );
            }
            Op::Move { size } => {
                let now = model.now();
                let records = table.records(now);
                moved.push(Region::new(size));
                let bytes = moved.last_mut().unwrap().bytes();
                table = Table::format(bytes, &policy, [seed[0], size.into()]).unwrap();
                // Counts do not move; bans do, unless the new table is full
                // and says so.
                model.failures.clear();
                model.counts_exact = false;
                model.bans.retain(|_, &mut u| u > now.secs());
                let mut dropped = Vec::new();
                for r in &records {
                    assert!(table.restore(r, now, &mut ev), "{r:?}");
                    for e in ev.iter() {
                        if let Event::BanDropped(ban) = e {
                            dropped.push(ban.key);
                        }
                    }
                    model.absorb(&ev);
                    ev = Events::default();
                }
                for r in &records {
                    let kept = table.lookup(&r.key, now).and_then(|s| s.ban);
                    match r.ban {
                        Some(ban) if !dropped.contains(&r.key) => assert_eq!(kept, Some(ban)),
                        _ => assert_eq!(kept, None),
                    }
                }
            }
        }
        assert!(table.tracked() <= table.capacity());
        assert!(table.bans() <= table.tracked());
        // Nothing the operations do leaves the region looking damaged.
        assert!(!table.damaged());
    }
});

/// Notes a ban the table reported (after the call's events), unless the
/// same call folded it into a widened ban or dropped it again to make room
/// for the network widening inserted.
fn record_ban(model: &mut Model, events: &Events, key: Key, until: u32) {
    let gone = events.iter().any(|e| match e {
        Event::Widened { .. } => true,
        Event::BanDropped(b) => b.key == key && b.until == until,
        Event::Expired(_) => false,
    });
    if !gone {
        model.bans.insert(key, until);
    }
}

/// A ban lasts at least bantime (rounded up to the second) and at most
/// maxtime.
fn check_ban_length(policy: &Policy, until: u32, now_ms: u64) {
    let until_ms = u64::from(until) * 1000;
    assert!(until_ms >= now_ms + u64::from(policy.bantime) * 1000);
    assert!(until_ms < now_ms + (u64::from(policy.maxtime) + 1) * 1000);
}
