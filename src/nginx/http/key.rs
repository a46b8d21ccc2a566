//! A key zone's key for a request (`authban_zone ... key=EXPR`): the
//! complex value evaluated for the request, then hashed with the zone's
//! secret. An empty value is neither counted nor checked.

use nginx_sys::{ngx_http_complex_value, ngx_str_t, NGX_OK};
use ngx::http::Request;

use crate::engine::key::Key;
use crate::nginx::state::zone::Zone;

/// A key zone's key for `r`: its hash, and the value as the request holds
/// it (for the log line); `None` for an empty value, or an address zone.
pub fn of<'r>(r: &'r Request, zone: &Zone) -> Option<(Key, &'r [u8])> {
    let kz = zone.key_zone()?;
    let hasher = kz.hasher()?;
    let mut value = ngx_str_t::default();
    // SAFETY: a live request; the complex value was compiled for the http
    // block this request's configuration belongs to; nginx writes the
    // result into `value`, its bytes in the request's pool.
    let req = core::ptr::from_ref(r.as_ref()).cast_mut();
    let rc = unsafe { ngx_http_complex_value(req, kz.value, &mut value) };
    if rc != NGX_OK as isize || value.len == 0 || value.data.is_null() {
        return None;
    }
    // SAFETY: `len` bytes at `data`, alive as long as the request.
    let bytes = unsafe { core::slice::from_raw_parts(value.data, value.len) };
    Some((hasher.key_of(bytes), bytes))
}
