//! The management endpoint (`authban_api;`): nginx's side of it. What a
//! request means and how answers look is decided in `mgmt`; this file reads
//! the request, acts on the zones under their locks, logs, and responds.

use core::ffi::{c_char, c_void};
use core::ptr;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_create_temp_buf, ngx_http_discard_request_body,
    ngx_http_output_filter, ngx_http_request_t, ngx_http_send_header, ngx_int_t, ngx_list_push,
    ngx_str_t, ngx_table_elt_t, NGX_ERROR, NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD,
    NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_POST, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

use crate::conf::LocConf;
use crate::handlers::{guarded, now, request_log};
use crate::mgmt::{self, Action, ApiError, Format, Method, ZoneView};
use crate::module::Module;
use crate::table::Events;
use crate::zone::{self, Zone};

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";

pub extern "C" fn set_api(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    // SAFETY: nginx passes a valid context; inside a location the core
    // module's location configuration exists.
    let clcf = unsafe { NgxHttpCoreModule::location_conf_mut(&*cf) };
    match clcf {
        Some(clcf) => {
            clcf.handler = Some(API_HANDLER);
            NGX_CONF_OK
        }
        None => NGX_CONF_ERROR,
    }
}

/// The content handler, stored once so that `handlers` can tell an API
/// location by it (a function's address taken twice may differ).
pub(crate) static API_HANDLER: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t =
    api_handler;

unsafe extern "C" fn api_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls content handlers with a live request.
    let r = unsafe { &mut *r };
    guarded(NGX_HTTP_INTERNAL_SERVER_ERROR as _, || serve(r))
}

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        Reply {
            status: err.status,
            content_type: JSON,
            body: mgmt::error_json(&err),
        }
    }
}

fn json(body: String) -> Reply {
    Reply {
        status: 200,
        content_type: JSON,
        body,
    }
}

fn serve(r: &mut ngx_http_request_t) -> ngx_int_t {
    let method = match r.method as u32 {
        NGX_HTTP_GET | NGX_HTTP_HEAD => Some(Method::Get),
        NGX_HTTP_POST => Some(Method::Post),
        NGX_HTTP_DELETE => Some(Method::Delete),
        _ => None,
    };
    let has_body = r.headers_in.content_length_n > 0 || r.headers_in.chunked() != 0;
    // SAFETY: a live request; discarding is always allowed in a handler.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    let reply = match method {
        None => {
            if add_header(r, "Allow", "GET, HEAD, POST, DELETE").is_err() {
                return NGX_HTTP_INTERNAL_SERVER_ERROR as _;
            }
            Reply::from(ApiError {
                status: 405,
                reason: "method not allowed: use GET, POST or DELETE".into(),
            })
        }
        Some(_) if has_body => Reply::from(ApiError {
            status: 400,
            reason: "no request body is expected".into(),
        }),
        Some(method) => {
            // SAFETY: r->args points into the request's buffer.
            let args = unsafe { bytes(&r.args) };
            match mgmt::parse_query(args).and_then(|q| mgmt::route(method, q)) {
                Ok(action) => act(r, action).unwrap_or_else(Reply::from),
                Err(err) => Reply::from(err),
            }
        }
    };
    send(r, reply)
}

/// # Safety
/// `s` must describe readable memory (or be empty).
unsafe fn bytes(s: &ngx_str_t) -> &[u8] {
    if s.len == 0 || s.data.is_null() {
        return &[];
    }
    // SAFETY: guaranteed by the caller.
    unsafe { core::slice::from_raw_parts(s.data, s.len) }
}

fn zones(r: &ngx_http_request_t) -> Vec<&'static Zone> {
    let Some(main) = Module::main_conf(r) else {
        return Vec::new();
    };
    main.zones
        .iter()
        // SAFETY: zones live in the configuration pool for the cycle.
        .filter_map(|&z| unsafe { z.as_ref() })
        .collect()
}

fn find_zone(r: &ngx_http_request_t, name: &str) -> Result<&'static Zone, ApiError> {
    zones(r)
        .into_iter()
        .find(|z| z.name == name)
        .ok_or_else(|| mgmt::not_found(format!("unknown zone \"{name}\"")))
}

fn view(zone: &Zone) -> Option<ZoneView> {
    zone.with_table(|t| view_of(zone, t))
}

fn unavailable(zone: &Zone) -> ApiError {
    ApiError {
        status: 503,
        reason: format!("zone \"{}\" is not available", zone.name),
    }
}

fn act(r: &ngx_http_request_t, action: Action) -> Result<Reply, ApiError> {
    let log = request_log(r);
    let log_level =
        Module::location_conf(r).map_or(crate::conf::DEFAULT_LOG_LEVEL, LocConf::log_level);
    match action {
        Action::ListZones(format) => {
            let views: Vec<ZoneView> = zones(r).into_iter().filter_map(view).collect();
            Ok(match format {
                Format::Json => json(mgmt::zones_json(&views)),
                Format::Prometheus => Reply {
                    status: 200,
                    content_type: PROMETHEUS,
                    body: mgmt::prometheus(&views),
                },
            })
        }
        Action::ZoneMetrics(name) => {
            let zone = find_zone(r, &name)?;
            let view = view(zone).ok_or_else(|| unavailable(zone))?;
            Ok(Reply {
                status: 200,
                content_type: PROMETHEUS,
                body: mgmt::prometheus(&[view]),
            })
        }
        Action::ShowZone {
            zone,
            offset,
            limit,
        } => {
            let zone = find_zone(r, &zone)?;
            let now = now();
            let (view, bans) = zone
                .with_table(|t| {
                    let bans = t.bans_page(now, offset, limit);
                    (view_of(zone, t), bans)
                })
                .ok_or_else(|| unavailable(zone))?;
            Ok(json(mgmt::zone_json(&view, &bans, offset, limit)))
        }
        Action::ShowAddress { zone, addr } => {
            let zone = find_zone(r, &zone)?;
            let addr = zone_key(zone, addr);
            let state = zone
                .with_table(|t| t.lookup(&addr, now()))
                .ok_or_else(|| unavailable(zone))?
                .ok_or_else(|| {
                    mgmt::not_found(format!("{addr} is not tracked in zone \"{}\"", zone.name))
                })?;
            Ok(json(mgmt::address_json(&zone.name, &addr, &state)))
        }
        Action::Ban { zone, addr, time } => {
            let zone = find_zone(r, &zone)?;
            let addr = zone_key(zone, addr);
            let secs = time.unwrap_or(zone.policy.bantime);
            let mut events = Events::default();
            let ban = zone
                .with_table(|t| t.ban(&addr, now(), secs, &mut events))
                .ok_or_else(|| unavailable(zone))?;
            ngx_log_error!(
                log_level,
                log,
                "authban: ban zone={} addr={} failures={} bantime={}s offence={} by=api",
                zone.name,
                ban.key,
                ban.failures,
                secs,
                ban.offence
            );
            zone::log_events(zone, &events, log, log_level);
            Ok(json(mgmt::ban_json(&zone.name, &ban)))
        }
        Action::Unban { zone, addr } => {
            let zone = find_zone(r, &zone)?;
            let addr = zone_key(zone, addr);
            let state = zone
                .with_table(|t| t.unban(&addr, now()))
                .ok_or_else(|| unavailable(zone))?
                .ok_or_else(|| {
                    mgmt::not_found(format!("{addr} is not tracked in zone \"{}\"", zone.name))
                })?;
            if state.ban.is_some() {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "authban: unban zone={} addr={} reason=api",
                    zone.name,
                    addr
                );
            }
            Ok(json(mgmt::unban_json(&zone.name, &addr, &state)))
        }
    }
}

/// A single address names the network the zone counts it under
/// (`ipv4_prefix`, `ipv6_prefix`); a network is taken as given.
fn zone_key(zone: &Zone, addr: crate::key::Key) -> crate::key::Key {
    if addr.is_host() {
        zone.policy.key_of(addr.ip())
    } else {
        addr
    }
}

fn view_of(zone: &Zone, t: &crate::table::Table<'_>) -> ZoneView {
    ZoneView {
        name: zone.name.clone(),
        size: zone.size,
        policy: t.policy(),
        capacity: t.capacity(),
        tracked: t.tracked(),
        bans: t.bans(),
        stats: t.stats(),
    }
}

fn add_header(
    r: &mut ngx_http_request_t,
    key: &'static str,
    value: &'static str,
) -> Result<(), ()> {
    // SAFETY: headers_out.headers is the request's output header list.
    let h = unsafe { ngx_list_push(&mut r.headers_out.headers) }.cast::<ngx_table_elt_t>();
    // SAFETY: ngx_list_push returned room for one element, or null.
    let h = unsafe { h.as_mut() }.ok_or(())?;
    h.hash = 1;
    h.key = ngx_str_t {
        len: key.len(),
        data: key.as_ptr().cast_mut(),
    };
    h.value = ngx_str_t {
        len: value.len(),
        data: value.as_ptr().cast_mut(),
    };
    h.lowcase_key = ptr::null_mut();
    h.next = ptr::null_mut();
    Ok(())
}

fn send(r: &mut ngx_http_request_t, reply: Reply) -> ngx_int_t {
    let body = reply.body.as_bytes();
    r.headers_out.status = usize::from(reply.status);
    r.headers_out.content_length_n = body.len() as _;
    r.headers_out.content_type = ngx_str_t {
        len: reply.content_type.len(),
        data: reply.content_type.as_ptr().cast_mut(),
    };
    r.headers_out.content_type_len = reply.content_type.len();
    r.headers_out.content_type_lowcase = ptr::null_mut();
    // SAFETY: a live request whose headers were just filled in.
    let rc = unsafe { ngx_http_send_header(r) };
    if rc == NGX_ERROR as ngx_int_t || rc > NGX_OK as ngx_int_t || r.header_only() != 0 {
        return rc;
    }
    // SAFETY: the buffer comes from the request's pool and is filled with
    // exactly `body.len()` bytes before it is sent.
    unsafe {
        let b = ngx_create_temp_buf(r.pool, body.len().max(1));
        let Some(b) = b.as_mut() else {
            return NGX_ERROR as _;
        };
        ptr::copy_nonoverlapping(body.as_ptr(), b.pos, body.len());
        b.last = b.pos.add(body.len());
        b.set_last_buf(u32::from(ptr::eq(r, r.main)));
        b.set_last_in_chain(1);
        let mut out = nginx_sys::ngx_chain_t {
            buf: b,
            next: ptr::null_mut(),
        };
        ngx_http_output_filter(r, &mut out)
    }
}
