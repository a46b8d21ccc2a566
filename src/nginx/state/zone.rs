//! The jail's shared-memory zone: creation, adoption on reload, and locked
//! access to its table with the zone's slab-pool mutex (which nginx's master
//! releases if a worker dies holding it).

use core::alloc::Layout;
use core::cell::{Cell, OnceCell};
use core::ptr::{self, NonNull};
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;

use nginx_sys::{
    ngx_cycle_t, ngx_http_complex_value_t, ngx_log_t, ngx_shm_zone_t, NGX_LOG_INFO, NGX_LOG_NOTICE,
    NGX_LOG_WARN,
};
use ngx::allocator::Allocator;
use ngx::core::SlabPool;
use ngx::log::ngx_cycle_log;

use crate::engine::account::{self, KeyHasher};
use crate::engine::directive::ZoneSpec;
use crate::engine::key::Key;
use crate::engine::log_limit::{Admit, LogLimit};
use crate::engine::table::{self, Events, LayoutError, Now, Policy, Refusals, Table};
use crate::nginx::base::log::{self, BanBy, Subject};

/// One `authban_zone`: its policy from the configuration and, once nginx
/// has mapped the memory, where its table lives.
///
/// Only ever shared (`&Zone`): nginx's zone callback sets where the table
/// lives through a `OnceCell`, so no `&mut Zone` ever aliases the
/// references the configuration and the handlers hold.
pub struct Zone {
    pub name: String,
    pub size: usize,
    /// The policy every table operation applies: configuration, never kept
    /// in the shared memory (the reload rules are in `engine::table`).
    pub policy: Policy,
    /// The state file, absolute, and seconds between writes.
    pub state: Option<PathBuf>,
    pub state_interval: u32,
    /// Per process: a failing state write is reported once, not every time.
    pub state_failing: Cell<bool>,
    /// Per process: lines an attacker can multiply, a few a second.
    log_limits: LogLimits,
    /// Per process: the bans this process found under the lock, refused
    /// again without it while no ban of the zone changed.
    refusals: Refusals,
    /// The cycle the zone is configured in: its core configuration says
    /// which user the workers (which write the state file) run as.
    pub cycle: *mut ngx_cycle_t,
    /// Set by [`init`] once nginx has mapped the zone.
    mapped: OnceCell<Mapped>,
    /// `key=`: what the zone counts by instead of the client address (set
    /// with `keyed` by [`Zone::set_key`]).
    key: Option<KeyZone>,
    /// `key.is_some()`, as one byte for the common path to test.
    keyed: bool,
}

/// A key zone's settings: its key, compiled at configuration, and how its
/// values become table keys.
pub struct KeyZone {
    /// `key=` compiled (`ngx_http_compile_complex_value`), in the
    /// configuration's pool, which outlives the zone.
    pub value: *mut ngx_http_complex_value_t,
    /// `sync_key=`'s secret, which the fleet's nodes share, if the zone has
    /// sync; else the zone's own (made at format) once it is mapped.
    pub fleet_secret: Option<Vec<u8>>,
    /// `familiar=`: seconds a (key, client network) pair stays familiar
    /// after a success. The pairs live in a second table of the zone's
    /// memory ([`Zone::with_familiar`]).
    pub familiar: Option<u32>,
    hasher: OnceCell<KeyHasher>,
}

impl KeyZone {
    pub fn new(
        value: *mut ngx_http_complex_value_t,
        fleet_secret: Option<Vec<u8>>,
        familiar: Option<u32>,
    ) -> KeyZone {
        KeyZone {
            value,
            fleet_secret,
            familiar,
            hasher: OnceCell::new(),
        }
    }

    /// How values become keys, once the zone is mapped.
    pub fn hasher(&self) -> Option<&KeyHasher> {
        self.hasher.get()
    }
}

/// A mapped zone's lock-free ban filter ([`Zone::bans_in_force`]): a
/// pointer, passed in a register.
#[derive(Clone, Copy)]
#[repr(transparent)]
pub struct BanFilter {
    region: *mut u8,
}

// Both read through `region`, which a `BanFilter` only ever holds from a
// mapped zone: formatted by `init_zone` (or adopted from a formatted one)
// before any request, and mapped as long as the cycle. Only the header's
// atomics are read.
impl BanFilter {
    /// Whether the zone holds any ban at all.
    #[inline(always)]
    fn holds_bans(self) -> bool {
        // SAFETY: see above.
        unsafe { table::holds_bans(self.region) }
    }

    /// Whether a ban may cover `host` (counted under `net`), read without
    /// the lock: false for a client no ban can cover.
    #[inline(always)]
    pub fn may_cover(self, host: &Key, net: &Key) -> bool {
        // SAFETY: see above.
        unsafe { table::may_be_banned_within(self.region, host, net) }
    }
}

/// Where a zone's table lives: a region of its slab pool, whose mutex
/// guards the table. A `familiar=` zone's region holds a second table
/// right after the first (page-aligned, `engine::account::familiar_split`):
/// its familiar pairs, under the same lock.
struct Mapped {
    pool: SlabPool,
    region: *mut u8,
    len: usize,
    familiar: Option<(*mut u8, usize)>,
}

impl Zone {
    pub fn new(spec: ZoneSpec, state: Option<PathBuf>, cycle: *mut ngx_cycle_t) -> Zone {
        Zone {
            name: spec.name,
            size: spec.size,
            policy: spec.policy,
            state,
            state_interval: spec.state_interval,
            state_failing: Cell::new(false),
            log_limits: LogLimits::default(),
            refusals: Refusals::default(),
            cycle,
            mapped: OnceCell::new(),
            key: None,
            keyed: false,
        }
    }

    /// A key zone's settings.
    pub fn key_zone(&self) -> Option<&KeyZone> {
        self.key.as_ref()
    }

    /// Makes this a key zone (at configuration).
    pub fn set_key(&mut self, key: Option<KeyZone>) {
        self.keyed = key.is_some();
        self.key = key;
    }

    /// Whether the zone counts by `key=`.
    #[inline(always)]
    pub fn is_key_zone(&self) -> bool {
        self.keyed
    }

    /// A key zone's hasher, from the fleet's secret or the table's (made at
    /// format, or restored from the state file first): set once the table
    /// holds its final secret, in every process that maps the zone.
    pub fn set_key_secret(&self) {
        let Some(k) = &self.key else { return };
        let hasher = match &k.fleet_secret {
            Some(secret) => KeyHasher::new(secret, &self.name),
            None => match self.with_table(|t| t.key_secret()) {
                Some(words) => KeyHasher::from_words(words, &self.name),
                None => return,
            },
        };
        let _ = k.hasher.set(hasher);
    }

    /// `familiar=`'s seconds, if the zone has it.
    #[inline(always)]
    pub fn familiar_secs(&self) -> Option<u32> {
        self.key.as_ref().and_then(|k| k.familiar)
    }

    /// Whether the zone holds a familiar table (a `familiar=` zone, unless
    /// it was adopted on a reload from a zone without one).
    pub fn has_familiar_table(&self) -> bool {
        self.mapped.get().is_some_and(|m| m.familiar.is_some())
    }

    /// The secret a state file keeps for a key zone whose hashes it cannot
    /// make again otherwise (no fleet secret).
    pub fn secret_to_keep(&self, t: &Table<'_>) -> Option<[u64; 2]> {
        self.key
            .as_ref()
            .filter(|k| k.fleet_secret.is_none())
            .map(|_| t.key_secret())
    }

    /// The zone's lock-free ban filter, once nginx has mapped the zone.
    #[inline]
    fn filter(&self) -> Option<BanFilter> {
        self.mapped.get().map(|m| BanFilter { region: m.region })
    }

    /// The zone's ban filter, while the zone holds any ban, without taking
    /// the lock: a passing request while none does costs one load; the
    /// filter then asks no more of the zone.
    #[inline]
    pub fn bans_in_force(&self) -> Option<BanFilter> {
        let filter = self.filter()?;
        filter.holds_bans().then_some(filter)
    }

    /// Whether `key` may be banned, without taking the lock: the fast path
    /// for the common case of a client the zone does not ban.
    #[inline]
    pub fn may_be_banned(&self, host: &Key, net: &Key) -> bool {
        self.filter().is_some_and(|f| f.may_cover(host, net))
    }

    /// Whether `host` is refused at once, without the lock: this process
    /// found it banned under the lock ([`Zone::remember_ban`]), that ban
    /// has not ended, and no ban of the zone changed since. The refusal is
    /// counted in the zone's statistics. Loads and compares: nothing here
    /// can panic.
    #[inline]
    pub fn refused_at_once(&self, host: &Key, now: Now) -> bool {
        let Some(m) = self.mapped.get() else {
            return false;
        };
        // SAFETY: the region of a mapped zone (see `BanFilter`); this
        // zone's memory of bans is only ever used with its own region.
        unsafe { table::refused_from_memory(m.region, &self.refusals, host, now) }
    }

    /// Remembers, for [`Zone::refused_at_once`], that `host` is covered by
    /// a ban ending at `until`, found under the lock with the table's ban
    /// `generation`.
    #[inline]
    pub fn remember_ban(&self, host: &Key, until: u32, generation: u64) {
        self.refusals.remember(host, until, generation);
    }

    /// Runs `f` on the table with the zone locked. The guard unlocks even if
    /// `f` panics, so a bug cannot leave the zone locked for every worker.
    ///
    /// A table found damaged (a header that contradicts itself, a list that
    /// loops) is formatted again before the lock is released, logged at
    /// `alert`, and `None` is returned: nothing is decided from memory
    /// that cannot be trusted, and no walk spins with the lock held.
    pub fn with_table<R>(&self, f: impl FnOnce(&mut Table<'_>) -> R) -> Option<R> {
        let m = self.mapped.get()?;
        let why = {
            let _locked = m.pool.lock();
            // SAFETY: the region lies inside the zone's mapping, which lives
            // as long as the cycle, and the lock, held until the table is
            // gone, makes this the only table over it.
            let attached = unsafe { Table::attach_raw(m.region, m.len, &self.policy) };
            let why = match attached {
                Ok(mut table) => {
                    let result = f(&mut table);
                    if !table.damaged() {
                        return Some(result);
                    }
                    "a list loops or links outside the zone"
                }
                Err(LayoutError::Foreign) => "its header was overwritten",
                Err(_) => "its header contradicts itself",
            };
            // SAFETY: as above; the zone is still locked. The region formats
            // as it did when the zone was created (same length and address);
            // were it to fail, the next use would find it damaged again.
            let _ = unsafe { Table::format_raw(m.region, m.len, &self.policy, random_seed()) };
            why
        };
        log::zone_damaged(ngx_cycle_log().as_ptr(), &self.name, why);
        None
    }
}

impl Zone {
    /// Runs `f` on the zone's table and its familiar table, with the zone
    /// locked: `None` if the zone holds no familiar table. A familiar table
    /// found damaged is formatted again (logged at `alert`) and `None`
    /// returned, as [`Zone::with_table`] does for the main table.
    pub fn with_familiar<R>(
        &self,
        f: impl FnOnce(&mut Table<'_>, &mut Table<'_>) -> R,
    ) -> Option<R> {
        let m = self.mapped.get()?;
        let (fam_region, fam_len) = m.familiar?;
        let fam_policy = account::familiar_policy();
        let why = {
            let _locked = m.pool.lock();
            // SAFETY: both regions lie inside the zone's mapping, which
            // lives as long as the cycle, apart from each other; the lock,
            // held until both tables are gone, makes these the only tables
            // over them.
            let attached = unsafe {
                (
                    Table::attach_raw(m.region, m.len, &self.policy),
                    Table::attach_raw(fam_region, fam_len, &fam_policy),
                )
            };
            let (main_damaged, fam_damaged, why) = match attached {
                (Ok(mut table), Ok(mut fam)) => {
                    let result = f(&mut table, &mut fam);
                    if !table.damaged() && !fam.damaged() {
                        return Some(result);
                    }
                    let why = "a list loops or links outside the zone";
                    (table.damaged(), fam.damaged(), why)
                }
                // The main table's own use repairs it.
                (Err(_), _) => return None,
                (Ok(_), Err(_)) => (false, true, "its familiar table's header was overwritten"),
            };
            // SAFETY: as above, still locked, the tables over the regions
            // gone; each region formats as it did at the zone's creation.
            unsafe {
                if main_damaged {
                    let _ = Table::format_raw(m.region, m.len, &self.policy, random_seed());
                }
                if fam_damaged {
                    let _ = Table::format_raw(fam_region, fam_len, &fam_policy, random_seed());
                }
            }
            why
        };
        log::zone_damaged(ngx_cycle_log().as_ptr(), &self.name, why);
        None
    }
}

/// Two random words (the zone's hash seed; a fleet node's id).
pub fn random_seed() -> [u64; 2] {
    let state = std::collections::hash_map::RandomState::new();
    let mut one = state.build_hasher();
    one.write_u8(1);
    let mut two = state.build_hasher();
    two.write_u8(2);
    [one.finish(), two.finish()]
}

/// What [`init`] did with a zone's memory.
pub enum Init {
    /// The table of the zone before a reload, kept with its counts and bans.
    Adopted,
    /// A new, empty table.
    Fresh,
}

/// Sets up a zone's table in the memory nginx just mapped (in the master:
/// at start-up, and on every reload): the old zone's table when nginx
/// reuses it (same name, size and tag) and it is ours, else a new one.
///
/// # Safety
/// `shm_zone` is a zone nginx created and mapped for `zone`.
pub unsafe fn init(
    zone: &Zone,
    shm_zone: &ngx_shm_zone_t,
    log: *mut ngx_log_t,
) -> Result<Init, ()> {
    // SAFETY: guaranteed by the caller: the zone is mapped and nginx has
    // initialised its slab pool, not yet shared with any worker.
    let mut pool = unsafe { SlabPool::from_shm_zone(shm_zone) }.ok_or(())?;
    if !pool.as_ref().data.is_null() {
        if let Some((region, len, familiar)) = adopt(zone, &mut pool, shm_zone.shm.size, log) {
            let _ = zone.mapped.set(Mapped {
                pool,
                region,
                len,
                familiar,
            });
            return Ok(Init::Adopted);
        }
    }
    // Keep one page back for nginx's own small allocations in the pool.
    let page = rustix::param::page_size();
    let pages = pool.as_ref().pfree.saturating_sub(1);
    let len = pages * page;
    let layout = Layout::from_size_align(len, 1).map_err(|_| ())?;
    let region = pool.allocate(layout).map_err(|_| ())?.cast::<u8>().as_ptr();
    let (main_len, fam_len) = match zone.familiar_secs() {
        Some(_) => account::familiar_split(len, page),
        None => (len, 0),
    };
    // SAFETY: the slab pool returned `len` page-aligned bytes, and no
    // worker maps the zone yet: nothing else refers to them.
    if unsafe { Table::format_raw(region, main_len, &zone.policy, random_seed()) }.is_err() {
        return Err(());
    }
    let familiar = if fam_len > 0 {
        // SAFETY: the `fam_len` bytes after the main table's, page-aligned
        // (its length is a whole number of pages), inside the allocation.
        let fam = unsafe { region.add(main_len) };
        // SAFETY: as above; nothing else refers to them yet.
        let formatted =
            unsafe { Table::format_raw(fam, fam_len, &account::familiar_policy(), random_seed()) };
        if formatted.is_err() {
            return Err(());
        }
        Some((fam, fam_len))
    } else {
        None
    };
    pool.as_mut().data = region.cast();
    let _ = zone.mapped.set(Mapped {
        pool,
        region,
        len: main_len,
        familiar,
    });
    Ok(Init::Fresh)
}

/// Takes over the table of the zone before a reload, if it is ours, and
/// applies the new configuration's findtime to it (see the reload rules in
/// `engine::table`: the rest of the policy needs nothing here, every
/// operation takes it from the configuration). Answers the region, its
/// length and, for a `familiar=` zone, its familiar table's region (right
/// after the main table) if it did; else frees it.
///
/// A `familiar=` zone adopted from a zone without a familiar table keeps
/// its main table and has none (said in the log): its memory is all the
/// main table's, and the old cycle's workers still use it so.
#[allow(clippy::type_complexity)]
fn adopt(
    zone: &Zone,
    pool: &mut SlabPool,
    shm_size: usize,
    log: *mut ngx_log_t,
) -> Option<(*mut u8, usize, Option<(*mut u8, usize)>)> {
    let region = pool.as_ref().data.cast::<u8>();
    let pool_start = ptr::from_ref(pool.as_ref()).cast::<u8>();
    // What the mapping holds from the region on: a damaged header may claim
    // any length, and no slice may reach past the mapping.
    let room = (region as usize)
        .checked_sub(pool_start as usize)
        .and_then(|offset| shm_size.checked_sub(offset))
        .unwrap_or(0);
    let adopted = if room < table::header_len() {
        None
    } else {
        let _locked = pool.lock();
        // SAFETY: the region was ours in the previous cycle and at least a
        // header's worth of it is mapped; the lock keeps the old cycle's
        // workers out while it is read.
        let len = unsafe { table::stored_len(region) }.min(room);
        // SAFETY: `len` bytes from `region` lie inside the mapping; the
        // lock makes this the only table over them. `attach_raw` refuses a
        // header whose length is not `len`, or of another layout.
        unsafe { Table::attach_raw(region, len, &zone.policy) }
            .ok()
            .map(|mut t| {
                t.apply_findtime();
                let tracked = t.tracked();
                let familiar = zone
                    .familiar_secs()
                    .and_then(|_| adopt_familiar(region, len, room));
                (len, tracked, familiar)
            })
    };
    if let Some((len, tracked, familiar)) = adopted {
        log::zone_kept(log, &zone.name, tracked);
        if zone.familiar_secs().is_some() && familiar.is_none() {
            log::familiar_unavailable(log, &zone.name);
        }
        return Some((region, len, familiar));
    }
    log::zone_other_layout(log, &zone.name);
    if let Some(block) = NonNull::new(region) {
        // SAFETY: the block was allocated from this pool by an earlier cycle
        // (the layout's size is not used to free it) and nothing else refers
        // to it once the zone starts empty.
        unsafe { pool.deallocate(block, Layout::new::<u8>()) };
    }
    pool.as_mut().data = ptr::null_mut();
    None
}

/// The familiar table after an adopted main table of `main_len` bytes at
/// `region`, `room` bytes of which are mapped, if one is there. Called
/// with the zone locked.
fn adopt_familiar(region: *mut u8, main_len: usize, room: usize) -> Option<(*mut u8, usize)> {
    let fam_room = room.checked_sub(main_len)?;
    if fam_room < table::header_len() {
        return None;
    }
    // SAFETY: `main_len` < `room`: still inside the mapping.
    let fam = unsafe { region.add(main_len) };
    if fam.align_offset(rustix::param::page_size()) != 0 {
        return None;
    }
    // SAFETY: a header's worth of bytes from `fam` is mapped, page-aligned;
    // the caller's lock keeps the old cycle's workers out.
    let len = unsafe { table::stored_len(fam) }.min(fam_room);
    // SAFETY: `len` bytes from `fam` lie inside the mapping, after the main
    // table's; the lock makes this the only table over them.
    unsafe { Table::attach_raw(fam, len, &account::familiar_policy()) }
        .ok()
        .map(|_| (fam, len))
}

#[derive(Default)]
struct LogLimits {
    expired: LogLimit,
    zone_full: LogLimit,
    trusted_proxy: LogLimit,
    sync_ban: LogLimit,
    sync_unban: LogLimit,
    sync_error: LogLimit,
    sync_refused: LogLimit,
}

/// Lines about what arrives from Redis: whoever writes to it can send them
/// by the hundred thousand.
#[derive(Clone, Copy)]
pub enum SyncLine {
    /// `ban ... by=sync`.
    Ban,
    /// `unban ... reason=sync`.
    Unban,
    /// `sync error from ...`.
    Error,
    /// `refused a ban from the fleet`.
    Refused,
}

/// Whether to write a line about what Redis sent, a few a second (each
/// kind its own limit, with a summary of what was dropped).
pub fn admit_sync_line(zone: &Zone, line: SyncLine, log: *mut ngx_log_t) -> bool {
    let limits = &zone.log_limits;
    let (limit, kind, level) = match line {
        SyncLine::Ban => (&limits.sync_ban, "by=sync", NGX_LOG_WARN),
        SyncLine::Unban => (&limits.sync_unban, "reason=sync", NGX_LOG_NOTICE),
        SyncLine::Error => (&limits.sync_error, "sync error", NGX_LOG_INFO),
        SyncLine::Refused => (&limits.sync_refused, "refused from the fleet", NGX_LOG_WARN),
    };
    admit(zone, limit, kind, log, level as usize)
}

/// Whether to write a line limited by `limit`, after a summary of the lines
/// of its kind that were dropped.
pub fn admit(zone: &Zone, limit: &LogLimit, kind: &str, log: *mut ngx_log_t, level: usize) -> bool {
    match limit.admit(crate::nginx::base::clock::now().secs()) {
        Admit::Drop => false,
        Admit::Write {
            suppressed,
            over_secs,
        } => {
            if suppressed > 0 {
                log::suppressed(log, level, &zone.name, suppressed, kind, over_secs);
            }
            true
        }
    }
}

/// A failure left on an address realip trusts is not charged: realip found
/// no client address (no header, or one it could not parse, or one naming
/// a trusted proxy), and banning the proxy would ban every client behind it.
pub fn log_trusted_proxy_failure(zone: &Zone, ip: std::net::IpAddr, log: *mut ngx_log_t) {
    let kind = "failure from trusted proxy";
    if admit(
        zone,
        &zone.log_limits.trusted_proxy,
        kind,
        log,
        NGX_LOG_WARN as usize,
    ) {
        log::trusted_proxy_failure(log, &zone.name, ip);
    }
}

/// Reports of events to the log, after the lock is released.
/// `level` is the ban message level, used for bans the events report.
pub fn log_events(zone: &Zone, events: &Events, log: *mut ngx_log_t, level: usize) {
    if events.is_empty() {
        return;
    }
    for event in events.iter() {
        match event {
            table::Event::Expired(key) => {
                let limit = &zone.log_limits.expired;
                if admit(zone, limit, "reason=expired", log, NGX_LOG_NOTICE as usize) {
                    let subject = Subject {
                        key: &key,
                        keyed: zone.is_key_zone(),
                    };
                    log::unban_expired(log, &zone.name, subject);
                }
            }
            table::Event::Widened { ban, members } => {
                let bantime = zone.policy.ban_secs(ban.offence.saturating_sub(1));
                log::ban(
                    log,
                    level,
                    &zone.name,
                    &ban,
                    bantime,
                    BanBy::Widened(members),
                    false,
                );
            }
            table::Event::BanDropped(ban) => {
                let limit = &zone.log_limits.zone_full;
                if admit(zone, limit, "reason=zone_full", log, NGX_LOG_WARN as usize) {
                    let subject = Subject {
                        key: &ban.key,
                        keyed: zone.is_key_zone(),
                    };
                    log::unban_zone_full(log, &zone.name, subject);
                }
            }
        }
    }
}
