//! `$authban_status`: what authban decided for the request.

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_request_t, ngx_http_variable_value_t, ngx_int_t,
    NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::http::Request;
use ngx::ngx_string;

use crate::nginx::guard;
use crate::nginx::handlers::{decide, Check};
use crate::nginx::request_record::{Outcome, RequestRecord};

/// Declares the variables (preconfiguration).
pub fn add_variables(cf: &mut ngx_conf_t) -> ngx_int_t {
    // nginx copies the name.
    let mut name = ngx_string!("authban_status");
    // SAFETY: `cf` is the configuration being read; the entry returned is
    // null or nginx's, in the configuration pool.
    let var =
        unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as _).as_mut() };
    let Some(var) = var else {
        return NGX_ERROR as _;
    };
    var.get_handler = Some(status_variable);
    var.data = 0;
    NGX_OK as _
}

/// # Safety
/// `r` is a live request and `v` its value to fill, as nginx passes them.
unsafe extern "C" fn status_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and a value to fill.
    let (r, v): (&Request, _) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let outcome = guard::catch(r.log(), "$authban_status", None, || outcome(r));
    // Static text, as nginx's own variables give theirs ("on", "-"):
    // nginx never writes into a variable's value.
    let text = outcome.map_or("", Outcome::name);
    v.set_len(text.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    // Not found where authban is off, so the access log shows "-".
    v.set_not_found(u32::from(text.is_empty()));
    v.data = text.as_ptr().cast_mut();
    NGX_OK as _
}

/// What the access phase decided, or, where no check ran (a `return` in
/// the rewrite phase, a subrequest), the answer it would give now.
fn outcome(r: &Request) -> Option<Outcome> {
    if r.is_main() {
        if let Some(record) = RequestRecord::find(r) {
            return Some(record.outcome.get());
        }
    }
    decide(r, Check::Variable).map(|checked| checked.outcome)
}
