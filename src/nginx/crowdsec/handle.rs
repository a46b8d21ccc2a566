//! A zone's CrowdSec as the configuration and the process hooks see it:
//! its settings, its zone, and this process's puller (worker 0) and pusher
//! (any worker that made a ban).

use core::cell::Cell;
use std::rc::Rc;

use nginx_sys::ngx_cycle_t;
use ngx::log::ngx_cycle_log;

use crate::engine::table::Ban;
use crate::nginx::base::process::{is_worker_zero, serves_requests};
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::crowdsec::pull::Puller;
use crate::nginx::crowdsec::push::Pusher;
use crate::nginx::state::zone::Zone;

/// A zone's CrowdSec: its configuration, its zone, and this process's
/// puller (worker 0) and pusher (any worker that made a ban).
pub struct Crowdsec {
    pub conf: CrowdsecConf,
    pub zone: Rc<Zone>,
    puller: Cell<*mut Puller>,
    pusher: Cell<*mut Pusher>,
}

impl Crowdsec {
    pub fn new(conf: CrowdsecConf, zone: Rc<Zone>) -> Crowdsec {
        Crowdsec {
            conf,
            zone,
            puller: Cell::new(core::ptr::null_mut()),
            pusher: Cell::new(core::ptr::null_mut()),
        }
    }
}

/// Worker 0 starts pulling for every zone with `authban_crowdsec`.
pub fn init_process(cycle: &ngx_cycle_t, all: impl Iterator<Item = &'static Crowdsec>) {
    if !serves_requests() || !is_worker_zero() {
        return;
    }
    for cs in all {
        cs.puller.set(Puller::start(&cs.conf, &cs.zone, cycle.log));
    }
}

pub fn exit_process(all: impl Iterator<Item = &'static Crowdsec>) {
    for cs in all {
        // SAFETY: made by this process and never freed; nginx runs this
        // single-threaded, with no handler of theirs on the stack.
        unsafe {
            if let Some(p) = cs.puller.get().as_mut() {
                p.stop();
            }
            if let Some(p) = cs.pusher.get().as_mut() {
                p.stop();
            }
        }
    }
}

/// Whether LAPI hears of the bans made here (machine credentials).
pub fn sends_alerts(cs: &Crowdsec) -> bool {
    cs.conf.machine.is_some()
}

/// A ban made here by count: LAPI hears of it (with machine credentials).
pub fn ban_made(cs: &'static Crowdsec, ban: &Ban) {
    if !sends_alerts(cs) {
        return;
    }
    let mut pusher = cs.pusher.get();
    if pusher.is_null() {
        pusher = Pusher::new(&cs.conf, &cs.zone, ngx_cycle_log().as_ptr());
        cs.pusher.set(pusher);
    }
    // SAFETY: made above or earlier, never freed while the worker runs;
    // called from a request handler or a fleet link's, never from the
    // pusher's own (which holds `&mut` to it).
    unsafe { &mut *pusher }.queue_ban(ban);
}
