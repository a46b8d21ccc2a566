//! The clock every zone operation reads: nginx's cached time of day, the
//! same in a request, a timer and the master's zone creation.

use nginx_sys::ngx_timeofday;

use crate::engine::table::Now;

/// Now, in milliseconds, as nginx last updated its cached time (once per
/// event loop iteration).
pub fn now() -> Now {
    let tp = ngx_timeofday();
    Now::from_ms(tp.sec as u64 * 1000 + tp.msec as u64)
}
