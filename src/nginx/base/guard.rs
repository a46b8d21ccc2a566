//! What every `extern "C"` entry point wraps its body in: a panic must not
//! unwind into nginx (undefined behaviour). It is caught, written to the
//! error log at `alert` with its message, and the entry point answers as
//! if authban were off for that call, or fails the configuration.
//!
//! A zone lock held while panicking is released by its guard as the stack
//! unwinds.

use core::ffi::c_char;
use core::ptr;
use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{ngx_conf_t, ngx_log_t};
use ngx::core::NGX_CONF_ERROR;
use ngx::log::ngx_cycle_log;

use crate::nginx::base::log;

/// The panic's message: what `panic!` was given, if it was text.
fn message(payload: &(dyn Any + Send)) -> &str {
    payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(no message)")
}

/// Drops a panic's payload, whose own `Drop` might panic too.
fn dispose(payload: Box<dyn Any + Send>) {
    let _ = catch_unwind(AssertUnwindSafe(move || drop(payload)));
}

/// Runs `f`. If it panics, the panic is logged at `alert` to `log` (the
/// running cycle's if null) as "authban: WHAT panicked: MESSAGE", and
/// `fallback` is returned.
pub fn catch<T>(log: *mut ngx_log_t, what: &str, fallback: T, f: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => value,
        Err(payload) => {
            // nginx sets the cycle (and its log) before loading modules.
            let log = if log.is_null() {
                ngx_cycle_log().as_ptr()
            } else {
                log
            };
            log::panicked(log, what, message(&*payload));
            dispose(payload);
            fallback
        }
    }
}

/// [`catch`] to the running cycle's log, for callers without a log at
/// hand (a request handler should prefer its request's log: the line then
/// names the client and the request).
pub fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch(ptr::null_mut(), "a handler", fallback, f)
}

/// For directive handlers: a panic is reported at `alert` where the
/// configuration is being read (`in FILE:LINE`), and fails it with
/// `NGX_CONF_ERROR`. `cf` is the context nginx passed to the handler.
pub fn catch_conf(cf: *mut ngx_conf_t, what: &str, f: impl FnOnce() -> *mut c_char) -> *mut c_char {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(rc) => rc,
        Err(payload) => {
            log::panicked_in_conf(cf, what, message(&*payload));
            dispose(payload);
            NGX_CONF_ERROR
        }
    }
}
