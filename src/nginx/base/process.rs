//! Which nginx process this is, for work only some of them do.

use nginx_sys::{ngx_process, ngx_uint_t, ngx_worker, NGX_PROCESS_SINGLE, NGX_PROCESS_WORKER};

/// Worker 0, or nginx itself when it runs without a master: the one
/// process that writes state files and speaks for the node in a fleet.
pub fn is_worker_zero() -> bool {
    // SAFETY: process globals nginx sets before init_process.
    unsafe {
        ngx_process == NGX_PROCESS_SINGLE as ngx_uint_t
            || (ngx_process == NGX_PROCESS_WORKER as ngx_uint_t && ngx_worker == 0)
    }
}

/// A process that serves requests: a worker, or nginx without a master
/// (not the master, nor the cache manager and loader).
pub fn serves_requests() -> bool {
    // SAFETY: as above.
    unsafe {
        ngx_process == NGX_PROCESS_SINGLE as ngx_uint_t
            || ngx_process == NGX_PROCESS_WORKER as ngx_uint_t
    }
}
