//! `$authban_param_NAME`: the CloudStack parameter NAME of the request,
//! decoded (`engine::param`), from the query string, else from the form
//! body `authban_read_body` read. Empty (not "not found") when absent, so
//! complex values and logs see "". Never cached: the body's part appears
//! once the access phase has read it.

use nginx_sys::{
    ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t, ngx_pnalloc, ngx_str_t, NGX_ERROR,
    NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, Request};

use crate::engine::param;
use crate::nginx::base::guard;
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::loc::LocConf;
use crate::nginx::http::body;

/// The variables' common prefix, as nginx's `arg_`.
pub const PREFIX: &str = "authban_param_";

/// The handler of every `$authban_param_NAME`.
///
/// # Safety
/// `r` is a live request, `v` its value to fill and `data` the variable's
/// whole name (an `ngx_str_t`), as nginx passes them to a prefix variable.
pub unsafe extern "C" fn param_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    data: usize,
) -> ngx_int_t {
    // SAFETY: as the function's contract says.
    let (r, v, name): (&Request, _, _) = unsafe {
        (
            Request::from_ngx_http_request(r),
            &mut *v,
            (data as *const ngx_str_t).as_ref(),
        )
    };
    // nginx keeps variable names lowercased: `$authban_param_domainId`
    // looks for `domainid`.
    let name = name.map_or(&[][..], |n| n.as_bytes());
    let name = name.strip_prefix(PREFIX.as_bytes()).unwrap_or_default();
    let Some((data, len)) = guard::catch(r.log(), "$authban_param_", None, || value(r, name))
    else {
        return NGX_ERROR as _;
    };
    v.set_len(len as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    v.set_not_found(0);
    v.data = data;
    NGX_OK as _
}

/// The value's bytes, copied into the request's pool: `None` if that
/// fails.
fn value(r: &Request, name: &[u8]) -> Option<(*mut u8, usize)> {
    let req: &ngx_http_request_t = r.as_ref();
    let body = Module::location_conf(req)
        .filter(|lcf: &&LocConf| lcf.read_body())
        .and_then(|_| body::form(r));
    let found = param::lookup(req.args.as_bytes(), body.as_deref(), name);
    // Longer than a value's 28 bits of length: taken as absent.
    let bytes = found
        .as_deref()
        .filter(|v| v.len() < 1 << 28)
        .unwrap_or_default();
    if bytes.is_empty() {
        return Some((b"".as_ptr().cast_mut(), 0));
    }
    // SAFETY: the request's pool, alive as long as the request.
    let data = unsafe { ngx_pnalloc(req.pool, bytes.len()) }.cast::<u8>();
    if data.is_null() {
        return None;
    }
    // SAFETY: `data` is fresh room for `bytes.len()` bytes.
    unsafe { core::ptr::copy_nonoverlapping(bytes.as_ptr(), data, bytes.len()) };
    Some((data, bytes.len()))
}
