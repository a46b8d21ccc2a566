//! The table's domain types: what callers give it (policy, time) and what it
//! answers (verdicts, failures, bans, records, events, counters). None of
//! them lives in shared memory.

use crate::engine::key::Key;

/// The longest ban anything may ask for: the management endpoint's `time=`
/// and a record from the fleet alike (a year, as nginx's `y`).
pub const MAX_BAN_SECS: u32 = 365 * 86_400;

/// A zone's rules, from the configuration. The table never stores it: every
/// operation applies the policy its caller attached the table with (see
/// the reload rules in the module documentation).
#[derive(Clone, Copy, Debug, PartialEq)]
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

    /// Whether failures count per address (no network prefixes).
    pub fn counts_hosts(&self) -> bool {
        self.ipv4_prefix == 32 && self.ipv6_prefix == 128
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

/// Monotonic counters since the zone was created. Kept in the locked part
/// of the header, hence `repr(C)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Stats {
    pub failures: u64,
    pub bans: u64,
    pub refused: u64,
    pub expired: u64,
    pub evicted: u64,
    pub bans_dropped: u64,
    /// Network member counts `widen` could not keep: the zone held only
    /// bans, and a ban is never dropped for a count.
    pub widen_skipped: u64,
}

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
pub struct KeyStatus {
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
    pub(super) fn push(&mut self, event: Event) {
        if let Some(slot) = self.items.get_mut(self.len) {
            *slot = Some(event);
            self.len += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Whether another event would be lost.
    pub fn is_full(&self) -> bool {
        self.len == self.items.len()
    }

    pub fn iter(&self) -> impl Iterator<Item = Event> + '_ {
        self.items[..self.len].iter().flatten().copied()
    }
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
    pub(super) fn secs_ceil(self) -> u32 {
        u32::try_from(self.ms.div_ceil(1000)).unwrap_or(u32::MAX)
    }
}
