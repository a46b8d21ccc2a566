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
use ngx::http::HttpModule;

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
    pub fn text(self) -> &'static [u8] {
        match self {
            Outcome::Passed => b"PASSED",
            Outcome::Banned => b"BANNED",
            Outcome::Ignored => b"IGNORED",
            Outcome::DryRun => b"DRY_RUN",
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
unsafe extern "C" fn record_marker(_data: *mut c_void) {}

/// One stored copy of the marker's address: a function's address taken in
/// two places may differ (codegen units, merged functions), this cannot.
static RECORD_MARKER: unsafe extern "C" fn(*mut c_void) = record_marker;

fn is_marker(handler: nginx_sys::ngx_pool_cleanup_pt) -> bool {
    handler.is_some_and(|h| ptr::eq(h as *const (), RECORD_MARKER as *const ()))
}

impl RequestRecord {
    /// The record of `r`'s main request, if a check made one.
    pub fn find(r: &ngx_http_request_t) -> Option<&'static RequestRecord> {
        let main = r.main.cast_const();
        let index = Module::module().ctx_index;
        // SAFETY: r->ctx has a slot per http module; ours is null or one of
        // our records (set below, on the main request only).
        let cached = unsafe { (*r.main).ctx.add(index).read() }.cast::<RequestRecord>();
        // SAFETY: a cached record lives in the main request's pool.
        if let Some(record) = unsafe { cached.as_ref() } {
            return Some(record);
        }
        // SAFETY: the pool's cleanup list is a null-terminated list that
        // only nginx and its modules append to; our entries carry a
        // RequestRecord as their data (see `attach`).
        unsafe {
            let mut c = (*r.pool).cleanup;
            while let Some(cleanup) = c.as_ref() {
                if is_marker(cleanup.handler) {
                    let record = cleanup.data.cast::<RequestRecord>();
                    if (*record).main == main {
                        *(*r.main).ctx.add(index) = record.cast();
                        return record.as_ref();
                    }
                }
                c = cleanup.next;
            }
        }
        None
    }

    /// Makes the record of `r`'s main request (none may exist yet).
    pub fn attach(
        r: &ngx_http_request_t,
        lcf: &'static LocConf,
        ip: IpAddr,
        trusted_proxy: bool,
        outcome: Outcome,
    ) -> Option<&'static RequestRecord> {
        // SAFETY: r->pool is the request's pool (shared with its
        // subrequests); the cleanup's data is allocated with it.
        let cleanup = unsafe { ngx_pool_cleanup_add(r.pool, size_of::<RequestRecord>()).as_mut() }?;
        let record = cleanup.data.cast::<RequestRecord>();
        if record.is_null() {
            return None;
        }
        // SAFETY: data is fresh, suitably aligned pool memory of the record's
        // size; it is written before the marker makes it findable.
        unsafe {
            ptr::write(
                record,
                RequestRecord {
                    main: r.main.cast_const(),
                    lcf,
                    ip,
                    trusted_proxy,
                    outcome: Cell::new(outcome),
                    refused_with: Cell::new(None),
                    counted: Cell::new(false),
                },
            );
            *(*r.main).ctx.add(Module::module().ctx_index) = record.cast();
        }
        cleanup.handler = Some(RECORD_MARKER);
        // SAFETY: just written; it lives as long as the request's pool.
        unsafe { record.as_ref() }
    }
}
