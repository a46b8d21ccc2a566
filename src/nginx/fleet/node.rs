//! Fleet sync for zones with `sync=`: each worker keeps a Redis link for
//! commands (its failures, the bans and unbans it makes), and worker 0 a
//! second one subscribed to the zone's channel (other nodes' bans). All of
//! it runs on the worker's event loop (`link`); requests only queue
//! commands and never wait. What Redis says is applied to the zone here.
//!
//! Worker 0 speaks for the node: its links' state is the zone's
//! `connected`, it logs the link going down (once) and coming back, loads
//! the fleet's bans on every (re)connection and then publishes the bans
//! made here while the link was down.

use core::cell::{Cell, OnceCell};
use core::ops::Deref;
use core::ptr;
use std::rc::Rc;

use nginx_sys::{ngx_cycle_t, ngx_int_t, ngx_log_t, NGX_OK};
use ngx::log::ngx_cycle_log;

use crate::engine::fleet::{Event, Role};
use crate::engine::key::Key;
use crate::engine::table::{Ban, Events, Now, Table, Unacceptable};
use crate::nginx::base::clock::now;
use crate::nginx::base::log::{self, BanBy, Subject, DEFAULT_LOG_LEVEL};
use crate::nginx::base::process::{is_worker_zero, serves_requests};
use crate::nginx::crowdsec::handle::{self as crowdsec, Crowdsec};
use crate::nginx::fleet::conf::FleetConf;
use crate::nginx::fleet::link::{Link, LinkOwner};
use crate::nginx::state::zone::{self, SyncLine, Zone};

/// A zone's fleet: its settings, its zone, and this process's links.
pub struct Fleet {
    pub conf: FleetConf,
    pub zone: Rc<Zone>,
    commands: Cell<*mut Link>,
    subscriber: Cell<*mut Link>,
    /// Worker 0: whether the node's link was last reported up.
    reported_up: Cell<bool>,
    /// Worker 0: the drop since then is logged (one line per drop, however
    /// often the link is made again and fails before it is up).
    down_logged: Cell<bool>,
    /// Worker 0: bans loaded in the running load.
    loaded: Cell<usize>,
    /// Worker 0: outage bans published before the running load.
    published: Cell<usize>,
    /// The zone's CrowdSec, which hears of the bans the fleet's count
    /// makes here (set once the http block is read).
    pub crowdsec: OnceCell<Rc<Crowdsec>>,
}

impl Fleet {
    pub fn new(conf: FleetConf, zone: Rc<Zone>) -> Fleet {
        Fleet {
            conf,
            zone,
            commands: Cell::new(ptr::null_mut()),
            subscriber: Cell::new(ptr::null_mut()),
            reported_up: Cell::new(false),
            down_logged: Cell::new(false),
            loaded: Cell::new(0),
            published: Cell::new(0),
            crowdsec: OnceCell::new(),
        }
    }
}

impl Deref for Fleet {
    type Target = FleetConf;

    fn deref(&self) -> &FleetConf {
        &self.conf
    }
}

/// Starts this worker's links for `fleets`, the running configuration's.
pub fn init_process(
    cycle: &ngx_cycle_t,
    fleets: impl Iterator<Item = &'static Fleet>,
) -> ngx_int_t {
    if !serves_requests() {
        return NGX_OK as _;
    }
    for fleet in fleets {
        let zone = &*fleet.zone;
        fleet
            .commands
            .set(Link::start(fleet, Role::Commands, fleet.addr, cycle.log));
        if is_worker_zero() {
            let now_secs = now().secs();
            zone.with_table(|t| {
                let s = t.sync_stats_mut();
                s.connected = 0;
                // Bans made before the first connection are published on it.
                if s.down_since == 0 {
                    s.down_since = now_secs;
                }
            });
            fleet
                .subscriber
                .set(Link::start(fleet, Role::Subscriber, fleet.addr, cycle.log));
        }
    }
    NGX_OK as _
}

pub fn exit_process(fleets: impl Iterator<Item = &'static Fleet>) {
    for fleet in fleets {
        for cell in [&fleet.commands, &fleet.subscriber] {
            // SAFETY: links live until the process exits; nginx runs this
            // single-threaded, with no handler of theirs on the stack.
            if let Some(link) = unsafe { cell.get().as_mut() } {
                link.stop();
            }
        }
    }
}

/// This worker's commands link for the fleet.
///
/// # Safety
/// Called from a request handler or the API, never from inside a link's
/// own event handler (which holds `&mut` to it).
unsafe fn commands(fleet: &Fleet) -> Option<&'static mut Link> {
    // SAFETY: as the caller guarantees; the link is never freed.
    unsafe { fleet.commands.get().as_mut() }
}

fn count(zone: &Zone, f: impl FnOnce(&mut crate::engine::table::SyncStats)) {
    zone.with_table(|t| f(t.sync_stats_mut()));
}

/// What became of a failure the fleet should count.
#[derive(Clone, Copy)]
pub enum FailureSent {
    /// Queued on the link.
    Sent,
    /// Not sent: the link is down, or owes Redis too many replies.
    Dropped,
}

/// Sends a failure to the fleet's count: `None` if the zone has no sync.
/// The caller records the outcome ([`note_failure`]) under the lock it
/// takes anyway to count the failure locally.
pub fn send_failure(fleet: &Fleet, key: &Key) -> Option<FailureSent> {
    // SAFETY: called from the request's log phase or header filter.
    let link = unsafe { commands(fleet) }?;
    let findtime = fleet.zone.policy.findtime;
    Some(
        match link.with_session(|s| s.count_failure(key, findtime)) {
            true => FailureSent::Sent,
            false => FailureSent::Dropped,
        },
    )
}

/// Counts a [`send_failure`] outcome in the zone's sync counters.
pub fn note_failure(t: &mut Table<'_>, sent: FailureSent) {
    let s = t.sync_stats_mut();
    match sent {
        FailureSent::Sent => s.failures_sent += 1,
        FailureSent::Dropped => s.failures_dropped += 1,
    }
}

/// A ban made here (by failures or the API): the fleet gets it.
pub fn ban_made(fleet: &Fleet, ban: &Ban) {
    // SAFETY: called from a request handler or the API.
    if let Some(link) = unsafe { commands(fleet) } {
        publish_ban(&fleet.zone, link, ban);
    }
}

fn publish_ban(zone: &Zone, link: &mut Link, ban: &Ban) -> bool {
    let keep = if zone.policy.increment {
        zone.policy.history
    } else {
        0
    };
    let sent = link.with_session(|s| s.publish_ban(ban, keep));
    if sent {
        count(zone, |s| s.bans_sent += 1);
    }
    sent
}

/// A ban made here by count: the fleet gets it, and CrowdSec hears of it
/// once for the fleet.
pub fn ban_counted(fleet: &'static Fleet, ban: &Ban) {
    // SAFETY: called from a request handler.
    match unsafe { commands(fleet) } {
        Some(link) => {
            publish_ban(&fleet.zone, link, ban);
            alert(fleet, Some(link), ban);
        }
        None => alert(fleet, None, ban),
    }
}

/// CrowdSec hears of a ban by count through the fleet's claim in Redis
/// (the node whose claim is first sends it: once per fleet even when two
/// nodes' counts cross at once), or at once when Redis cannot be asked.
fn alert(fleet: &'static Fleet, link: Option<&mut Link>, ban: &Ban) {
    let Some(cs) = fleet.crowdsec.get() else {
        return;
    };
    if !crowdsec::sends_alerts(cs) {
        return;
    }
    let claimed = link.is_some_and(|l| l.with_session(|s| s.claim_alert(ban)));
    if !claimed {
        crowdsec::ban_made(cs, ban);
    }
}

/// An API unban here: the fleet forgets the key too.
pub fn unban_made(fleet: &Fleet, key: &Key) {
    // SAFETY: called from the API handler.
    let Some(link) = (unsafe { commands(fleet) }) else {
        return;
    };
    if link.with_session(|s| s.publish_unban(key)) {
        count(&fleet.zone, |s| s.unbans_sent += 1);
    }
}

fn log() -> *mut ngx_log_t {
    ngx_cycle_log().as_ptr()
}

/// A ban no location made (the fleet's count, another node): logged at the
/// default level, with the length it was given. Lines for other nodes'
/// bans are rate-limited: whoever writes to Redis can multiply them.
fn log_ban(zone: &Zone, ban: &Ban, by: BanBy) {
    if by == BanBy::Sync && !zone::admit_sync_line(zone, SyncLine::Ban, log()) {
        return;
    }
    let bantime = ban.until - ban.since;
    let keyed = zone.is_key_zone();
    log::ban(
        log(),
        DEFAULT_LOG_LEVEL,
        &zone.name,
        ban,
        bantime,
        by,
        keyed,
    );
}

/// Applies a ban from the fleet if the zone's own policy could have made
/// it; a refused one is counted and logged (rate-limited). Answers the ban
/// now held, if this changed it.
fn apply_remote(
    zone: &Zone,
    fleet: &FleetConf,
    t: &mut Table<'_>,
    ban: &Ban,
    now: Now,
    events: &mut Events,
    refused: &mut Vec<(Ban, Unacceptable)>,
) -> Option<Ban> {
    if let Err(why) = zone.policy.admits_remote(ban, now, fleet.wide) {
        t.sync_stats_mut().records_refused += 1;
        refused.push((*ban, why));
        return None;
    }
    t.apply_remote_ban(ban, now, events)
}

/// Bans or unbans refused for a bad or missing signature (`sync_key=`):
/// counted, and logged (rate-limited), by a link or by the master's load.
pub(crate) fn refused_forged(zone: &Zone, n: u64, log: *mut ngx_log_t) {
    count(zone, |s| s.records_refused += n);
    if zone::admit_sync_line(zone, SyncLine::Refused, log) {
        log::sync_forged(log, &zone.name, n);
    }
}

fn log_refused(zone: &Zone, refused: &[(Ban, Unacceptable)]) {
    for (ban, why) in refused {
        if zone::admit_sync_line(zone, SyncLine::Refused, log()) {
            log::sync_record_refused(log(), &zone.name, ban, why);
        }
    }
}

impl LinkOwner for Fleet {
    fn zone(&self) -> &Zone {
        &self.zone
    }

    fn conf(&self) -> &FleetConf {
        &self.conf
    }

    fn on_event(&'static self, link: &mut Link, event: Event) {
        on_event(self, link, event);
    }

    fn on_down(&self, link: &mut Link, reason: &str, refused: bool) {
        on_down(self, link, reason, refused);
    }
}

/// What a link's session reported.
fn on_event(fleet: &'static Fleet, link: &mut Link, event: Event) {
    let zone = &*fleet.zone;
    match event {
        Event::Ready => {
            link.down_reported = false;
            if is_worker_zero() {
                start_load(fleet, link);
            }
        }
        Event::FleetCount { key, count } => {
            if count < zone.policy.maxretry {
                return;
            }
            let mut events = Events::default();
            let made = zone
                .with_table(|t| t.ban_by_fleet(&key, now(), count, &mut events))
                .flatten();
            if let Some(ban) = made {
                log_ban(zone, &ban, BanBy::Fleet);
                publish_ban(zone, link, &ban);
                alert(fleet, Some(link), &ban);
            }
            zone::log_events(zone, &events, log(), DEFAULT_LOG_LEVEL);
        }
        Event::Ban(remote) if remote.node != fleet.node => {
            let mut events = Events::default();
            let mut refused = Vec::new();
            let applied = zone.with_table(|t| {
                t.sync_stats_mut().bans_received += 1;
                apply_remote(
                    zone,
                    fleet,
                    t,
                    &remote.ban,
                    now(),
                    &mut events,
                    &mut refused,
                )
            });
            if let Some(Some(ban)) = applied {
                log_ban(zone, &ban, BanBy::Sync);
            }
            log_refused(zone, &refused);
            zone::log_events(zone, &events, log(), DEFAULT_LOG_LEVEL);
        }
        Event::Unban { node, key } if node != fleet.node => {
            let known = zone.with_table(|t| {
                t.sync_stats_mut().unbans_received += 1;
                t.unban(&key, now())
            });
            if let Some(Some(_)) = known {
                if zone::admit_sync_line(zone, SyncLine::Unban, log()) {
                    let keyed = zone.is_key_zone();
                    log::unban_sync(log(), &zone.name, Subject { key: &key, keyed });
                }
            }
        }
        Event::Ban(_) | Event::Unban { .. } => {}
        Event::Loaded { bans, skipped } => {
            let applied = apply_loaded(fleet, &bans, u64::from(skipped));
            fleet.loaded.set(fleet.loaded.get() + applied);
        }
        Event::LoadDone => finish_load(fleet),
        Event::AlertClaimed(ban) => {
            if let Some(cs) = fleet.crowdsec.get() {
                crowdsec::ban_made(cs, &ban);
            }
        }
        Event::Forged(n) => refused_forged(zone, u64::from(n), log()),
        Event::CommandError(text) => {
            if zone::admit_sync_line(zone, SyncLine::Error, log()) {
                log::sync_command_error(log(), &zone.name, &fleet.url, &text);
            }
            count(zone, |s| s.record_error(&text));
        }
        // The link closes on a refusal and reports it through `on_down`.
        Event::Refused(_) => {}
    }
}

/// Loaded records the zone's policy admits go in: bans in force as the
/// fleet has them, ended ones as offence history, for escalation. The
/// others, and `skipped` records the load could not read, are counted.
pub(crate) fn apply_loaded(fleet: &Fleet, bans: &[Ban], skipped: u64) -> usize {
    let zone = &*fleet.zone;
    let now = now();
    let mut events = Events::default();
    let mut refused = Vec::new();
    let applied = zone.with_table(|t| {
        t.sync_stats_mut().records_skipped += skipped;
        let mut applied = 0;
        for ban in bans {
            if ban.until > now.secs() {
                let held = apply_remote(zone, fleet, t, ban, now, &mut events, &mut refused);
                applied += usize::from(held.is_some());
            } else if zone.policy.admits_remote(ban, now, fleet.wide).is_ok() {
                let record = crate::engine::table::Record {
                    key: ban.key,
                    offences: ban.offence,
                    last_ban_end: ban.until,
                    ban: None,
                };
                t.restore(&record, now, &mut events);
            }
        }
        applied
    });
    log_refused(zone, &refused);
    applied.unwrap_or(0)
}

/// Worker 0, once both its links are ready: publish the bans made here
/// while the link was down (they are this node's news), then load the
/// fleet's bans (which then hold them too).
fn start_load(fleet: &Fleet, ready: &mut Link) {
    let commands = fleet.commands.get();
    let subscriber = fleet.subscriber.get();
    let this = ptr::from_mut(ready);
    // The other link, through its pointer only if it is not this one.
    // SAFETY: links are never freed; the one not handling this event is
    // not borrowed anywhere.
    let other_ready = |p: *mut Link| p == this || unsafe { p.as_ref() }.is_some_and(Link::is_ready);
    if !(other_ready(commands) && other_ready(subscriber)) {
        return;
    }
    fleet.loaded.set(0);
    let zone = &*fleet.zone;
    let commands = if commands == this {
        ready
    } else {
        // SAFETY: as above: a different, unborrowed link, never freed.
        match unsafe { commands.as_mut() } {
            Some(link) => link,
            None => return,
        }
    };
    let now = now();
    let outage_bans = zone
        .with_table(|t| {
            let since = t.sync_stats().down_since;
            t.records(now)
                .into_iter()
                .filter_map(|r| r.ban)
                .filter(|b| b.since >= since)
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let published = outage_bans
        .iter()
        .filter(|ban| publish_ban(zone, commands, ban))
        .count();
    fleet.published.set(published);
    let capacity = zone.with_table(|t| t.capacity()).unwrap_or(0);
    let started = commands.with_session(|s| s.load_bans(capacity));
    if !started {
        on_down(fleet, commands, "cannot start loading bans", false);
    }
}

/// The load is done: the node is part of the fleet again.
fn finish_load(fleet: &Fleet) {
    let zone = &*fleet.zone;
    zone.with_table(|t| {
        let s = t.sync_stats_mut();
        s.connected = 1;
        s.down_since = 0;
    });
    fleet.down_logged.set(false);
    let published = fleet.published.get();
    if !fleet.reported_up.replace(true) || published > 0 {
        log::sync_up(log(), &zone.name, &fleet.url, fleet.loaded.get(), published);
    }
}

/// A link closed: the node goes on locally. Worker 0 reports it once.
fn on_down(fleet: &Fleet, link: &mut Link, reason: &str, refused: bool) {
    let zone = &*fleet.zone;
    if link.down_reported {
        return;
    }
    link.down_reported = true;
    let now_secs = now().secs();
    let reporter = is_worker_zero();
    zone.with_table(|t| {
        let s = t.sync_stats_mut();
        s.record_error(reason);
        if reporter {
            s.connected = 0;
            if s.down_since == 0 {
                s.down_since = now_secs;
            }
        }
    });
    if !reporter {
        return;
    }
    // One line per drop for the node, whichever of worker 0's links saw
    // it, however often the link is made again before it is up.
    fleet.reported_up.set(false);
    if fleet.down_logged.replace(true) {
        return;
    }
    if refused {
        log::sync_refused(log(), &zone.name, &fleet.url, reason);
    } else {
        log::sync_down(log(), &zone.name, &fleet.url, reason);
    }
}
