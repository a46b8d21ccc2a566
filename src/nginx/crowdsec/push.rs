//! Bans this worker made by count, sent to LAPI as alerts (with
//! `machine_credentials_file=`), so that every bouncer of that LAPI, a
//! firewall's included, applies them. Each worker sends its own bans:
//! made lazily at its first ban, it logs in (`POST /v1/watchers/login`),
//! keeps the token until a minute before it expires, and posts one alert
//! per ban. Idle, it holds no timer and no connection.
//!
//! Bounded: at most [`MAX_QUEUED`] bans wait; one that cannot be sent
//! after [`MAX_TRIES`] tries, or has ended meanwhile, is counted in
//! `alerts_failed`. Refused credentials: one error, then nothing more is
//! sent until nginx is reloaded.

use core::ffi::c_void;
use std::collections::VecDeque;

use nginx_sys::{ngx_add_timer, ngx_del_timer, ngx_event_t, ngx_exiting, ngx_log_t};
use ngx::log::ngx_cycle_log;

use crate::engine::crowdsec::alert::{alert_body, login_body, parse_login, Token};
use crate::engine::crowdsec::http::request;
use crate::engine::log_limit::LogLimit;
use crate::engine::table::{Ban, CrowdsecStats};
use crate::nginx::base::clock::now;
use crate::nginx::base::guard;
use crate::nginx::base::log::{self, DEFAULT_LOG_LEVEL};
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::crowdsec::exchange::{Exchange, Outcome};
use crate::nginx::state::zone;
use crate::nginx::state::zone::Zone;

/// Bans waiting for LAPI, per worker and zone.
const MAX_QUEUED: usize = 1024;
/// Tries per ban (LAPI down: 1 s, 2 s, 4 s apart).
const MAX_TRIES: u32 = 4;
/// LAPI's answers to a login or an alert are small.
const MAX_ANSWER: usize = 64 * 1024;
/// A token this close to its end is renewed first.
const RENEW_BEFORE_SECS: u64 = 60;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Asked {
    Nothing,
    Login,
    Alert,
}

pub struct Pusher {
    conf: &'static CrowdsecConf,
    zone: &'static Zone,
    exchange: *mut Exchange,
    /// Armed only while a failed send waits to be tried again.
    retry: ngx_event_t,
    queue: VecDeque<Ban>,
    token: Option<Token>,
    asked: Asked,
    /// Failed tries of the ban at the head of the queue.
    tries: u32,
    /// LAPI refused the credentials: nothing more is sent.
    refused: bool,
    lines: LogLimit,
}

fn cycle_log() -> *mut ngx_log_t {
    ngx_cycle_log().as_ptr()
}

impl Pusher {
    pub fn new(
        conf: &'static CrowdsecConf,
        zone: &'static Zone,
        log: *mut ngx_log_t,
    ) -> *mut Pusher {
        let pusher = Box::into_raw(Box::new(Pusher {
            conf,
            zone,
            exchange: core::ptr::null_mut(),
            // SAFETY: an all-zero event is an idle one.
            retry: unsafe { core::mem::zeroed() },
            queue: VecDeque::new(),
            token: None,
            asked: Asked::Nothing,
            tries: 0,
            refused: false,
            lines: LogLimit::default(),
        }));
        // SAFETY: just allocated and leaked: lives until the worker exits.
        let p = unsafe { &mut *pusher };
        p.exchange = Exchange::new(conf, pusher.cast(), on_done, log);
        p.retry.handler = Some(on_retry);
        p.retry.data = pusher.cast();
        p.retry.log = log;
        p.retry.set_cancelable(1);
        pusher
    }

    fn exchange(&mut self) -> &mut Exchange {
        // SAFETY: made in `new`, never freed while the worker runs, and a
        // separate allocation from the pusher.
        unsafe { &mut *self.exchange }
    }

    pub fn queue_ban(&mut self, ban: &Ban) {
        if self.refused || self.queue.len() >= MAX_QUEUED {
            self.count(|s| s.alerts_failed += 1);
            return;
        }
        self.queue.push_back(*ban);
        self.next();
    }

    /// Starts the next exchange, if one is due and none runs.
    fn next(&mut self) {
        if self.exchange().busy() || self.retry.timer_set() != 0 || self.refused {
            return;
        }
        let now = now().secs();
        // Bans that ended while waiting are not worth an alert.
        while self.queue.front().is_some_and(|b| b.until <= now) {
            self.queue.pop_front();
            self.tries = 0;
            self.count(|s| s.alerts_failed += 1);
        }
        let Some(ban) = self.queue.front().copied() else {
            return;
        };
        let conf = &self.conf;
        let Some(machine) = conf.machine.as_ref() else {
            return;
        };
        let mut out = Vec::with_capacity(1024);
        let fresh = self
            .token
            .as_ref()
            .is_some_and(|t| t.expires > u64::from(now) + RENEW_BEFORE_SECS);
        if fresh {
            let bearer = format!("Bearer {}", self.token.as_ref().map_or("", |t| &t.token));
            let body = alert_body(&self.zone.name, &ban, now);
            request(
                &mut out,
                "POST",
                &conf.authority,
                "/v1/alerts",
                &[("Authorization", &bearer)],
                Some(&body),
            );
            self.asked = Asked::Alert;
        } else {
            let body = login_body(&machine.login, machine.password());
            request(
                &mut out,
                "POST",
                &conf.authority,
                "/v1/watchers/login",
                &[],
                Some(&body),
            );
            self.asked = Asked::Login;
        }
        self.exchange().start(out, MAX_ANSWER);
    }

    fn answered(&mut self, outcome: Outcome) {
        let asked = core::mem::replace(&mut self.asked, Asked::Nothing);
        let response = match outcome {
            Ok(r) => r,
            Err(why) => return self.failed(&why),
        };
        match (asked, response.status) {
            (Asked::Login, 200) => match parse_login(&response.body) {
                Some(token) => self.token = Some(token),
                None => return self.failed("LAPI's login answer has no token"),
            },
            (Asked::Login, 401 | 403) => return self.credentials_refused(response.status),
            (Asked::Alert, 200 | 201) => {
                self.queue.pop_front();
                self.tries = 0;
                self.count(|s| s.alerts_sent += 1);
            }
            // The token ended early (LAPI restarted with a new secret):
            // a new login, as a try of this ban's.
            (Asked::Alert, 401) => {
                self.token = None;
                return self.failed("the token was refused");
            }
            (_, status) => return self.failed(&format!("HTTP {status}")),
        }
        self.next();
    }

    /// The send failed: tried again after 1 s, 2 s, 4 s; then the ban is
    /// given up (counted and logged).
    fn failed(&mut self, why: &str) {
        self.count(|s| s.record_error(why));
        self.tries += 1;
        if self.tries >= MAX_TRIES {
            self.tries = 0;
            if let Some(ban) = self.queue.pop_front() {
                self.count(|s| s.alerts_failed += 1);
                let z = self.zone;
                let log = cycle_log();
                if zone::admit(z, &self.lines, "crowdsec alert", log, DEFAULT_LOG_LEVEL) {
                    log::crowdsec_alert_failed(log, &z.name, &ban.key, why);
                }
            }
            return self.next();
        }
        // SAFETY: nginx's flag, written in this process only; the timer is
        // used from the worker's own event loop.
        unsafe {
            if ngx_exiting == 0 {
                ngx_add_timer(&mut self.retry, 1000 << (self.tries - 1));
            }
        }
    }

    fn credentials_refused(&mut self, status: u16) {
        self.refused = true;
        let dropped = self.queue.len() as u64;
        self.queue.clear();
        self.count(|s| {
            s.record_error("the machine credentials were refused");
            s.alerts_failed += dropped;
        });
        let (conf, zone) = (self.conf, self.zone);
        log::crowdsec_refused(
            cycle_log(),
            &zone.name,
            &conf.spec.url,
            "the machine credentials",
            status,
            "this worker sends no alerts until nginx is reloaded",
        );
    }

    fn count(&self, f: impl FnOnce(&mut CrowdsecStats)) {
        self.zone.with_table(|t| f(t.crowdsec_stats_mut()));
    }

    pub fn stop(&mut self) {
        if self.retry.timer_set() != 0 {
            // SAFETY: our armed timer.
            unsafe { ngx_del_timer(&mut self.retry) };
        }
        self.exchange().stop();
    }
}

fn on_done(owner: *mut c_void, outcome: Outcome) {
    // SAFETY: the owner is the pusher that made the exchange, never freed
    // while the worker runs; the exchange calls back as its last act.
    let pusher = unsafe { &mut *owner.cast::<Pusher>() };
    pusher.answered(outcome);
}

unsafe extern "C" fn on_retry(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its pusher, never freed while the worker
    // runs.
    let pusher = unsafe { &mut *(*ev).data.cast::<Pusher>() };
    let log = pusher.retry.log;
    guard::catch(log, "crowdsec alert", (), || pusher.next());
}
