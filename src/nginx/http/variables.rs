//! `$authban_status`: what authban decided for the request;
//! `$authban_zone` and `$authban_key`: which zone and key refused it;
//! `$authban_param_NAME` (`param`); and the internal variable whose slot
//! keeps that decision (`record`).

use nginx_sys::{
    ngx_conf_t, ngx_http_add_variable, ngx_http_get_variable_index, ngx_http_request_t,
    ngx_http_variable_value_t, ngx_int_t, ngx_pnalloc, ngx_str_t, NGX_ERROR,
    NGX_HTTP_VAR_NOCACHEABLE, NGX_HTTP_VAR_NOHASH, NGX_HTTP_VAR_PREFIX, NGX_OK,
};
use ngx::http::{HttpModuleMainConf, Request};
use ngx::ngx_string;

use crate::nginx::base::guard;
use crate::nginx::conf::accessor::Module;
use crate::nginx::http::access::{client_ip, decide, key_text, Check};
use crate::nginx::http::param::{self, param_variable};
use crate::nginx::http::record::{Outcome, RequestRecord};
use crate::nginx::state::zone::Zone;

/// The variable whose per-request slot holds authban's record
/// (`record`): internal, never in the hash of names.
const RECORD_VARIABLE: &str = "authban_internal_record";

/// Declares the variables (preconfiguration), and finds the index of the
/// record's slot for this configuration's requests.
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
    for (name, handler) in [
        ("authban_zone", zone_variable as VariableHandler),
        ("authban_key", key_variable as VariableHandler),
    ] {
        let mut name = ngx_str_t {
            len: name.len(),
            data: name.as_ptr().cast_mut(),
        };
        // SAFETY: as above; nginx copies the name.
        let var =
            unsafe { ngx_http_add_variable(cf, &mut name, NGX_HTTP_VAR_NOCACHEABLE as _).as_mut() };
        let Some(var) = var else {
            return NGX_ERROR as _;
        };
        var.get_handler = Some(handler);
    }
    let mut prefix = ngx_str_t {
        len: param::PREFIX.len(),
        data: param::PREFIX.as_ptr().cast_mut(),
    };
    // SAFETY: as above; nginx hands each `$authban_param_NAME` the handler
    // with its whole name in `data`.
    let flags = NGX_HTTP_VAR_PREFIX | NGX_HTTP_VAR_NOCACHEABLE;
    let var = unsafe { ngx_http_add_variable(cf, &mut prefix, flags as _).as_mut() };
    let Some(var) = var else {
        return NGX_ERROR as _;
    };
    var.get_handler = Some(param_variable);
    let mut record = ngx_str_t {
        len: RECORD_VARIABLE.len(),
        data: RECORD_VARIABLE.as_ptr().cast_mut(),
    };
    // SAFETY: as above; nginx copies the name in both calls.
    let (var, index) = unsafe {
        let flags = NGX_HTTP_VAR_NOHASH | NGX_HTTP_VAR_NOCACHEABLE;
        let var = ngx_http_add_variable(cf, &mut record, flags as _).as_mut();
        (var, ngx_http_get_variable_index(cf, &mut record))
    };
    let (Some(var), Ok(index), Some(main)) =
        (var, usize::try_from(index), Module::main_conf_mut(&*cf))
    else {
        return NGX_ERROR as _;
    };
    var.get_handler = Some(record_variable);
    main.record_index = Some(index);
    NGX_OK as _
}

/// The record's variable, named by a configuration: never found, and the
/// record in the slot left as it is (only nginx's "not found" flag is set).
///
/// # Safety
/// `v` is the request's value to fill, as nginx passes it.
unsafe extern "C" fn record_variable(
    _r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes the request's value for this variable.
    unsafe { (*v).set_not_found(1) };
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

type VariableHandler = unsafe extern "C" fn(
    *mut ngx_http_request_t,
    *mut ngx_http_variable_value_t,
    usize,
) -> ngx_int_t;

/// The zone that banned the request and the key it banned (its address or
/// network, or a key zone's hash), where authban refused it (or, in dry
/// run, would have).
fn refusal(r: &Request) -> Option<(&'static Zone, String)> {
    let (zone, ip) = if let Some(record) = RequestRecord::find(r).filter(|_| r.is_main()) {
        if !matches!(record.outcome(), Outcome::Banned | Outcome::DryRun) {
            return None;
        }
        let zone = record.lcf().all_zones().nth(record.decided_by())?;
        (&*zone.zone, client_ip(r)?)
    } else {
        let checked = decide(r, Check::Variable)?;
        if !matches!(checked.outcome, Outcome::Banned | Outcome::DryRun) {
            return None;
        }
        (checked.zone, checked.ip)
    };
    Some((zone, key_text(r, zone, ip)))
}

/// Sets `v` to `text`, copied into the request's pool; not found if empty.
fn set_text(r: &Request, v: &mut ngx_http_variable_value_t, text: &str) -> ngx_int_t {
    v.set_valid(1);
    v.set_no_cacheable(1);
    if text.is_empty() {
        v.set_not_found(1);
        return NGX_OK as _;
    }
    // SAFETY: the request's pool, alive as long as the request.
    let data = unsafe { ngx_pnalloc(r.as_ref().pool, text.len()) }.cast::<u8>();
    if data.is_null() {
        return NGX_ERROR as _;
    }
    // SAFETY: `data` has room for the text.
    unsafe { core::ptr::copy_nonoverlapping(text.as_ptr(), data, text.len()) };
    v.data = data;
    v.set_len(text.len() as u32);
    v.set_not_found(0);
    NGX_OK as _
}

/// `$authban_zone`: the zone that refused the request.
///
/// # Safety
/// `r` is a live request and `v` its value to fill, as nginx passes them.
unsafe extern "C" fn zone_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and a value to fill.
    let (r, v): (&Request, _) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let name = guard::catch(r.log(), "$authban_zone", None, || {
        refusal(r).map(|(zone, _)| zone.name.clone())
    });
    set_text(r, v, name.as_deref().unwrap_or(""))
}

/// `$authban_key`: the key the refusing zone banned.
///
/// # Safety
/// `r` is a live request and `v` its value to fill, as nginx passes them.
unsafe extern "C" fn key_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and a value to fill.
    let (r, v): (&Request, _) = unsafe { (Request::from_ngx_http_request(r), &mut *v) };
    let key = guard::catch(r.log(), "$authban_key", None, || refusal(r).map(|(_, k)| k));
    set_text(r, v, key.as_deref().unwrap_or(""))
}

/// What the access phase decided, or, where no check ran (a `return` in
/// the rewrite phase, a subrequest), the answer it would give now.
fn outcome(r: &Request) -> Option<Outcome> {
    if r.is_main() {
        if let Some(record) = RequestRecord::find(r) {
            // A request passed while no ban existed was not looked at
            // further: whether its address is ignored is told now.
            let ignored = record.outcome() == Outcome::Passed
                && client_ip(r).is_some_and(|ip| record.lcf().is_ignored(ip));
            return Some(if ignored {
                Outcome::Ignored
            } else {
                record.outcome()
            });
        }
    }
    decide(r, Check::Variable).map(|checked| checked.outcome)
}
