//! What authban decided for a request, kept where an internal redirect
//! cannot clear it.
//!
//! nginx zeroes every module's request context on an internal redirect
//! (`try_files` to a named location, `error_page`, `X-Accel-Redirect`), so a
//! record there would be lost and the response judged by a location without
//! authban. The record lives in the request pool's cleanup list instead, as
//! realip keeps the original address: found again by its handler and the
//! main request it belongs to. Subrequests share the main request's pool,
//! so they find it too.

use core::cell::Cell;
use core::ffi::c_void;
use core::mem::size_of;
use core::ptr;
use std::net::IpAddr;

use nginx_sys::{ngx_http_request_t, ngx_pool_cleanup_add};
use ngx::http::{HttpModule, Request};

use crate::nginx::directives::LocConf;
use crate::nginx::module::Module;

/// What authban did with a request, for `$authban_status`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    Passed,
    Banned,
    Ignored,
    DryRun,
}

impl Outcome {
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Passed => "PASSED",
            Outcome::Banned => "BANNED",
            Outcome::Ignored => "IGNORED",
            Outcome::DryRun => "DRY_RUN",
        }
    }
}

pub struct RequestRecord {
    main: *const ngx_http_request_t,
    /// The location whose check took the request: its zone, failure
    /// statuses, ignore list and log level judge the final response.
    pub lcf: &'static LocConf,
    pub ip: IpAddr,
    /// The address is a proxy realip trusts: it found no client address.
    pub trusted_proxy: bool,
    pub outcome: Cell<Outcome>,
    /// The status authban refused the request with: it is refused again in
    /// any location it is redirected to.
    pub refused_with: Cell<Option<u16>>,
    /// The final status was counted (header filter or log phase, once).
    pub counted: Cell<bool>,
}

/// The cleanup handler that marks our records; it frees nothing (the pool
/// does), it only tells them from other modules' cleanups.
extern "C" fn record_marker(_data: *mut c_void) {}

/// One stored copy of the marker's address: a function's address taken in
/// two places may differ (codegen units, merged functions), this cannot.
static RECORD_MARKER: extern "C" fn(*mut c_void) = record_marker;

fn is_marker(handler: nginx_sys::ngx_pool_cleanup_pt) -> bool {
    handler.is_some_and(|h| ptr::eq(h as *const (), RECORD_MARKER as *const ()))
}

/// The main request of `r` (`r` itself unless it is a subrequest).
pub fn main_of(r: &Request) -> &Request {
    // SAFETY: every request's `main` is its main request (itself, for a
    // main request), which outlives its subrequests.
    unsafe { &*r.as_ref().main.cast::<Request>() }
}

impl RequestRecord {
    /// The record of `r`'s main request, if a check made one.
    pub fn find(r: &Request) -> Option<&RequestRecord> {
        let main = main_of(r);
        // Our context slot is null or one of our records (set below, on the
        // main request only); nginx zeroes it on an internal redirect.
        if let Some(record) = main.get_module_ctx::<RequestRecord>(Module::module()) {
            return Some(record);
        }
        let main_ptr: *const ngx_http_request_t = main.as_ref();
        // SAFETY: the pool's cleanup list is a null-terminated list that
        // only nginx and its modules append to; our entries carry a
        // RequestRecord as their data (see `attach`), in the main
        // request's pool, which its subrequests share.
        let record = unsafe {
            let mut c = (*r.as_ref().pool).cleanup;
            loop {
                let Some(cleanup) = c.as_ref() else {
                    break None;
                };
                let record = cleanup.data.cast::<RequestRecord>();
                if is_marker(cleanup.handler) && (*record).main == main_ptr {
                    break record.as_ref();
                }
                c = cleanup.next;
            }
        }?;
        main.set_module_ctx(ptr::from_ref(record).cast_mut().cast(), Module::module());
        Some(record)
    }

    /// Makes the record of `r`'s main request (none may exist yet).
    pub fn attach<'r>(
        r: &'r Request,
        lcf: &'static LocConf,
        ip: IpAddr,
        trusted_proxy: bool,
        outcome: Outcome,
    ) -> Option<&'r RequestRecord> {
        let main = main_of(r);
        let value = RequestRecord {
            main: main.as_ref(),
            lcf,
            ip,
            trusted_proxy,
            outcome: Cell::new(outcome),
            refused_with: Cell::new(None),
            counted: Cell::new(false),
        };
        // SAFETY: the request's pool (shared with its subrequests) is live;
        // the cleanup's data is null or fresh, suitably aligned pool memory
        // of the record's size, living as long as the pool. It is written
        // before the marker makes it findable.
        let record = unsafe {
            let cleanup =
                ngx_pool_cleanup_add(r.pool().as_ptr(), size_of::<RequestRecord>()).as_mut()?;
            let record = cleanup.data.cast::<RequestRecord>();
            if record.is_null() {
                return None;
            }
            ptr::write(record, value);
            cleanup.handler = Some(RECORD_MARKER);
            &*record
        };
        main.set_module_ctx(ptr::from_ref(record).cast_mut().cast(), Module::module());
        Some(record)
    }
}
