//! Worker 0's bouncer: LAPI's decisions stream pulled every `interval`
//! (`startup=true` first, then what changed), applied to the zone, which
//! every worker reads. A pull is one [`Exchange`]; the timer runs only
//! between pulls. LAPI down: the bans already pulled hold until their
//! end, one warn, retries 1 s, 2 s, 4 s... apart up to the interval, one
//! notice when it answers again. A refused key: one error, then no more
//! pulls until the configuration is read again (a new key needs a reload
//! anyway).

use core::ffi::c_void;

use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_del_timer, ngx_delete_posted_event, ngx_event_t, ngx_exiting, ngx_log_t,
    ngx_post_event, ngx_posted_next_events,
};
use ngx::log::ngx_cycle_log;

use crate::engine::crowdsec::apply::{Bouncer, Pulled};
use crate::engine::crowdsec::decision::parse_entry;
use crate::engine::crowdsec::http::request;
use crate::engine::crowdsec::stream_index::{Entries, StreamIndex};
use crate::engine::log_limit::LogLimit;
use crate::engine::table::{Events, Table};
use crate::nginx::base::clock::now;
use crate::nginx::base::guard;
use crate::nginx::base::log::{self, DEFAULT_LOG_LEVEL};
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::crowdsec::exchange::{Exchange, Outcome};
use crate::nginx::state::zone;
use crate::nginx::state::zone::Zone;

/// The largest answer read: a startup answer lists every decision active
/// or ended in the last 7 days (about 200 bytes each), so this holds some
/// 300,000; a larger one is an error, never a growing buffer.
const MAX_ANSWER: usize = 64 << 20;
/// An answer larger than this leaves a heap worth giving back.
const TRIM_AFTER: usize = 1 << 20;
/// Decisions applied per lock of the zone and turn of the event loop
/// (about 1.5 ms): requests wait for one batch at most, never for a whole
/// startup answer. (Batches of 250 made the probe's slowest requests
/// slower: four times the lock's hand-overs to the other worker.)
const BATCH: usize = 1000;
/// Bytes of an answer indexed per turn of the event loop (about half a
/// millisecond): a 14 MB startup answer read in one go held worker 0 for
/// some 30 ms.
const INDEX_SLICE: usize = 256 << 10;

/// An answer being applied: its text, where its entries lie (deleted
/// ones first), and how far it got.
struct Applying {
    body: Vec<u8>,
    /// Until the whole answer is indexed, a slice per turn.
    indexing: Option<StreamIndex>,
    index: Entries,
    next: usize,
    startup: bool,
    made: usize,
}

pub struct Puller {
    conf: &'static CrowdsecConf,
    zone: &'static Zone,
    exchange: *mut Exchange,
    timer: ngx_event_t,
    bouncer: Bouncer,
    /// The `startup=true` pull succeeded: later pulls ask what changed.
    started: bool,
    /// An answer being applied, a batch per turn of the event loop.
    applying: Option<Applying>,
    /// What the log last said of LAPI: `Some(true)` reachable.
    reported_up: Option<bool>,
    /// Failed pulls in a row: the backoff.
    failed_tries: u32,
    ban_lines: LogLimit,
    refused_lines: LogLimit,
}

fn cycle_log() -> *mut ngx_log_t {
    ngx_cycle_log().as_ptr()
}

impl Puller {
    /// Worker 0's puller for `zone`, its first pull at once.
    pub fn start(
        conf: &'static CrowdsecConf,
        zone: &'static Zone,
        log: *mut ngx_log_t,
    ) -> *mut Puller {
        let capacity = zone.with_table(|t| t.capacity()).unwrap_or(0);
        let puller = Box::into_raw(Box::new(Puller {
            conf,
            zone,
            exchange: core::ptr::null_mut(),
            // SAFETY: an all-zero event is an idle one.
            timer: unsafe { core::mem::zeroed() },
            bouncer: Bouncer::new(&zone.name, conf.spec.wide, capacity as usize),
            started: false,
            applying: None,
            reported_up: None,
            failed_tries: 0,
            ban_lines: LogLimit::default(),
            refused_lines: LogLimit::default(),
        }));
        // SAFETY: just allocated and leaked: lives until the worker exits.
        let p = unsafe { &mut *puller };
        p.exchange = Exchange::new(conf, puller.cast(), on_done, log);
        p.timer.handler = Some(on_timer);
        p.timer.data = puller.cast();
        p.timer.log = log;
        p.timer.set_cancelable(1);
        p.arm(1);
        puller
    }

    fn arm(&mut self, ms: usize) {
        // SAFETY: nginx's flag, written in this process only; timers are
        // used from the worker's own event loop.
        unsafe {
            if ngx_exiting == 0 {
                ngx_add_timer(&mut self.timer, ms);
            }
        }
    }

    /// Goes on with the answer once the event loop has turned: its
    /// connections and timers first. (A timer of 0 ms would not do: armed
    /// from a timer's handler, it runs again in the same pass of nginx's
    /// timers, so a whole answer went in at once.)
    fn next_turn(&mut self) {
        // SAFETY: nginx's flag, written in this process only; our event,
        // posted from the worker's own loop to the queue nginx moves to
        // its posted events at the start of the next pass.
        unsafe {
            if ngx_exiting == 0 && self.timer.posted() == 0 {
                ngx_post_event(&mut self.timer, ptr::addr_of_mut!(ngx_posted_next_events));
            }
        }
    }

    fn exchange(&mut self) -> &mut Exchange {
        // SAFETY: made in `start`, never freed while the worker runs, and
        // a separate allocation from the puller.
        unsafe { &mut *self.exchange }
    }

    fn pull(&mut self) {
        if self.exchange().busy() {
            return;
        }
        let path = if self.started {
            "/v1/decisions/stream"
        } else {
            "/v1/decisions/stream?startup=true"
        };
        let conf = &self.conf;
        let mut out = Vec::with_capacity(256);
        request(
            &mut out,
            "GET",
            &conf.authority,
            path,
            &[("X-Api-Key", conf.key.expose())],
            None,
        );
        self.exchange().start(out, MAX_ANSWER);
    }

    fn pulled(&mut self, outcome: Outcome) {
        let response = match outcome {
            Ok(r) => r,
            Err(why) => return self.failed(&why),
        };
        match response.status {
            200 => {}
            401 | 403 => {
                let (conf, zone) = (self.conf, self.zone);
                self.count(|s| {
                    s.record_error("the bouncer key was refused");
                    s.connected = 0;
                });
                log::crowdsec_refused(
                    cycle_log(),
                    &zone.name,
                    &conf.spec.url,
                    "the bouncer key",
                    response.status,
                    "no more pulls until nginx is reloaded; local bans go on",
                );
                return;
            }
            status => return self.failed(&format!("HTTP {status}")),
        }
        self.applying = Some(Applying {
            body: response.body,
            indexing: Some(StreamIndex::new()),
            index: Vec::new(),
            next: 0,
            startup: !self.started,
            made: 0,
        });
        self.index_slice();
    }

    /// Indexes the next slice of the answer; then, while the answer goes
    /// on, lets the event loop turn before the next.
    fn index_slice(&mut self) {
        let Some(a) = self.applying.as_mut() else {
            return;
        };
        let Some(indexing) = a.indexing.as_mut() else {
            return self.apply_batch();
        };
        match indexing.step(&a.body, INDEX_SLICE) {
            Ok(false) => self.next_turn(),
            Ok(true) => {
                a.index = a
                    .indexing
                    .take()
                    .map(StreamIndex::entries)
                    .unwrap_or_default();
                self.bouncer.forget_ended(now());
                let new = a.index.iter().filter(|(is_new, _)| *is_new).count();
                self.bouncer.reserve(new);
                self.apply_batch();
            }
            Err(e) => {
                let len = self.applying.take().map_or(0, |a| a.body.len());
                release(len);
                self.failed(&format!("not a decisions stream: {e}"));
            }
        }
    }

    /// Applies the next batch of the answer under one lock of the zone;
    /// then, while entries remain, lets the event loop turn (requests and
    /// connections of this worker go first) before the next.
    fn apply_batch(&mut self) {
        let Puller {
            zone,
            bouncer,
            applying,
            ..
        } = self;
        let zone: &Zone = zone;
        let Some(a) = applying.as_mut() else { return };
        let now = now();
        let end = (a.next + BATCH).min(a.index.len());
        let mut out = Pulled::default();
        let mut events = Events::default();
        zone.with_table(|t| {
            for (is_new, range) in &a.index[a.next..end] {
                let entry = parse_entry(a.body.get(range.clone()).unwrap_or_default());
                if *is_new {
                    bouncer.apply_new(t, &entry, now, &mut events, &mut out);
                } else {
                    bouncer.apply_deleted(t, &entry, a.startup, now, &mut events, &mut out);
                }
            }
            count_pulled(t, &out);
        });
        a.next = end;
        a.made += out.applied.len();
        self.log_pulled(&out);
        zone::log_events(self.zone, &events, cycle_log(), DEFAULT_LOG_LEVEL);
        if self
            .applying
            .as_ref()
            .is_some_and(|a| a.next < a.index.len())
        {
            return self.next_turn();
        }
        if let Some(done) = self.applying.take() {
            self.applied(done);
        }
    }

    /// The whole answer is applied: the pull counts as done.
    fn applied(&mut self, done: Applying) {
        let len = done.body.len();
        let made = done.made;
        drop(done);
        release(len);
        self.started = true;
        self.failed_tries = 0;
        let secs = now().secs();
        self.count(|s| {
            s.pulls += 1;
            s.connected = 1;
            s.last_pull = secs;
        });
        if self.reported_up != Some(true) {
            self.reported_up = Some(true);
            log::crowdsec_up(cycle_log(), &self.zone.name, &self.conf.spec.url, made);
        }
        self.arm(self.conf.spec.interval as usize * 1000);
    }

    /// The next slice or batch of an answer (a turn of the loop), or the
    /// next pull (the timer).
    fn on_timer(&mut self) {
        if self.applying.is_some() {
            self.index_slice();
        } else {
            self.pull();
        }
    }

    fn log_pulled(&self, out: &Pulled) {
        let (z, log) = (self.zone, cycle_log());
        let zone = &z.name;
        let admit = |limit, kind| zone::admit(z, limit, kind, log, DEFAULT_LOG_LEVEL);
        for (ban, labels) in &out.applied {
            if admit(&self.ban_lines, "by=crowdsec") {
                log::ban_crowdsec(log, zone, ban, &labels.scenario, &labels.origin);
            }
        }
        for key in &out.lifted {
            if admit(&self.ban_lines, "by=crowdsec") {
                log::unban_crowdsec(log, zone, key);
            }
        }
        for (ban, why) in &out.refused {
            if admit(&self.refused_lines, "crowdsec decision refused") {
                log::crowdsec_decision_refused(log, zone, ban, why);
            }
        }
    }

    /// A pull failed: counted, logged once per outage, retried sooner than
    /// the interval, backing off.
    fn failed(&mut self, why: &str) {
        self.count(|s| {
            s.record_error(why);
            s.connected = 0;
        });
        if self.reported_up != Some(false) {
            self.reported_up = Some(false);
            log::crowdsec_down(cycle_log(), &self.zone.name, &self.conf.spec.url, why);
        }
        let interval_ms = self.conf.spec.interval as usize * 1000;
        let wait = (1000usize << self.failed_tries.min(10)).min(interval_ms);
        self.failed_tries = self.failed_tries.saturating_add(1);
        self.arm(wait);
    }

    fn count(&self, f: impl FnOnce(&mut crate::engine::table::CrowdsecStats)) {
        self.zone.with_table(|t| f(t.crowdsec_stats_mut()));
    }

    pub fn stop(&mut self) {
        if self.timer.timer_set() != 0 {
            // SAFETY: our armed timer.
            unsafe { ngx_del_timer(&mut self.timer) };
        }
        if self.timer.posted() != 0 {
            // SAFETY: our event, in a posted queue of this worker.
            unsafe { ngx_delete_posted_event(&mut self.timer) };
        }
        self.exchange().stop();
    }
}

/// An answer of `len` bytes was freed: glibc keeps such a heap for the
/// process unless asked to give it back (a startup answer of 100,000
/// decisions left 39 MiB).
fn release(len: usize) {
    if len > TRIM_AFTER {
        // SAFETY: glibc's malloc_trim, from the worker's only thread.
        unsafe { libc::malloc_trim(0) };
    }
}

/// A pull's outcome in the zone's counters, under the lock it took.
fn count_pulled(t: &mut Table<'_>, out: &Pulled) {
    let s = t.crowdsec_stats_mut();
    s.decisions_applied += out.applied.len() as u64;
    s.decisions_deleted += out.lifted.len() as u64;
    s.decisions_refused += out.refused.len() as u64;
    s.decisions_ignored += out.ignored;
    s.decisions_malformed += out.malformed;
}

fn on_done(owner: *mut c_void, outcome: Outcome) {
    // SAFETY: the owner is the puller that made the exchange, never freed
    // while the worker runs; the exchange calls back as its last act.
    let puller = unsafe { &mut *owner.cast::<Puller>() };
    puller.pulled(outcome);
}

unsafe extern "C" fn on_timer(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its puller, never freed while the worker
    // runs.
    let puller = unsafe { &mut *(*ev).data.cast::<Puller>() };
    let log = puller.timer.log;
    guard::catch(log, "crowdsec pull", (), || puller.on_timer());
}
