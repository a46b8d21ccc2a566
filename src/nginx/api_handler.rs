//! The management endpoint (`authban_api;`): nginx's side of it. What a
//! request means and how answers look is decided in `mgmt`; this file reads
//! the request, acts on the zones under their locks, logs, and responds.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::net::IpAddr;
use std::sync::Mutex;

use nginx_sys::{
    ngx_command_t, ngx_conf_t, ngx_create_temp_buf, ngx_http_core_loc_conf_t,
    ngx_http_discard_request_body, ngx_http_finalize_request, ngx_http_output_filter,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_http_send_header, ngx_int_t,
    ngx_list_push, ngx_pool_cleanup_add, ngx_str_t, ngx_table_elt_t, NGX_DONE, NGX_ERROR,
    NGX_HTTP_DELETE, NGX_HTTP_GET, NGX_HTTP_HEAD, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_POST,
    NGX_HTTP_SPECIAL_RESPONSE, NGX_LOG_EMERG, NGX_LOG_NOTICE, NGX_OK,
};
use ngx::core::{NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{HttpModuleLocationConf, HttpModuleMainConf, NgxHttpCoreModule};
use ngx::ngx_log_error;

use crate::engine::api::{self, Action, ApiError, Format, Method, Target, ZoneView};
use crate::engine::key::Key;
use crate::engine::table::{AddressState, Events, Verdict};
use crate::nginx::directives::LocConf;
use crate::nginx::handlers::{guarded, now, request_log};
use crate::nginx::module::Module;
use crate::nginx::zone::{self, Zone};

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW: &str = "GET, HEAD, POST, DELETE";

/// A location's content handler is one pointer: a second directive that
/// sets it (`proxy_pass`, `fastcgi_pass`, `empty_gif`...) silently wins.
/// nginx prints `"authban_api" directive <this> in FILE:LINE`.
const COMBINED: &core::ffi::CStr = c"cannot be combined with another content handler \
    (proxy_pass, fastcgi_pass, ...) in one location";

/// A location given `authban_api`, kept until [`check_locations`] has seen
/// that no later directive replaced the handler. Entries belong to the
/// configuration pool they were made in and leave with it (see
/// [`forget_pool`]), so a configuration that fails before its
/// postconfiguration leaves no dangling pointer behind.
struct ApiLocation {
    pool: usize,
    clcf: usize,
    file: String,
    line: usize,
}

// Touched only while nginx reads its configuration, in one thread; the
// lock is there because a static needs one.
static API_LOCATIONS: Mutex<Vec<ApiLocation>> = Mutex::new(Vec::new());

fn api_locations() -> std::sync::MutexGuard<'static, Vec<ApiLocation>> {
    API_LOCATIONS.lock().unwrap_or_else(|e| e.into_inner())
}

fn is_api_handler(clcf: &ngx_http_core_loc_conf_t) -> bool {
    clcf.handler
        .is_some_and(|h| ptr::eq(h as *const (), API_HANDLER as *const ()))
}

pub extern "C" fn set_api(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    let rc = std::panic::catch_unwind(|| {
        // SAFETY: nginx passes a valid context; inside a location the core
        // module's location configuration exists.
        let cf = unsafe { &mut *cf };
        let Some(clcf) = NgxHttpCoreModule::location_conf_mut(cf) else {
            return NGX_CONF_ERROR;
        };
        if is_api_handler(clcf) {
            return c"is duplicate".as_ptr().cast_mut();
        }
        if clcf.handler.is_some() {
            return COMBINED.as_ptr().cast_mut();
        }
        clcf.handler = Some(API_HANDLER);
        let pool = cf.pool;
        // SAFETY: conf_file is set while a file is being parsed.
        let (file, line) = unsafe {
            let conf_file = &*cf.conf_file;
            (
                conf_file.file.name.to_str().unwrap_or("?").to_string(),
                conf_file.line,
            )
        };
        // SAFETY: the pool is the configuration's, alive while it is read.
        let cln = unsafe { ngx_pool_cleanup_add(pool, 0).as_mut() };
        let Some(cln) = cln else {
            return NGX_CONF_ERROR;
        };
        cln.handler = Some(forget_pool);
        cln.data = pool.cast();
        api_locations().push(ApiLocation {
            pool: pool as usize,
            clcf: ptr::from_mut(clcf) as usize,
            file,
            line,
        });
        NGX_CONF_OK
    });
    rc.unwrap_or(NGX_CONF_ERROR)
}

/// Pool cleanup: the configuration these entries point into is gone.
unsafe extern "C" fn forget_pool(data: *mut c_void) {
    let pool = data as usize;
    let _ = std::panic::catch_unwind(|| api_locations().retain(|l| l.pool != pool));
}

/// Refuses a location where a content handler set after `authban_api`
/// (`authban_api; proxy_pass ...;`) replaced it. To be called from the
/// module's postconfiguration; the other order is refused by the directive
/// itself.
pub fn check_locations(cf: *mut ngx_conf_t) -> Result<(), ()> {
    std::panic::catch_unwind(|| check_locations_of(cf)).unwrap_or(Err(()))
}

fn check_locations_of(cf: *mut ngx_conf_t) -> Result<(), ()> {
    // SAFETY: called from postconfiguration with a valid context.
    let (pool, log) = unsafe { ((*cf).pool as usize, (*cf).log) };
    let mine: Vec<ApiLocation> = {
        let mut all = api_locations();
        let (mine, others) = all.drain(..).partition(|l| l.pool == pool);
        *all = others;
        mine
    };
    for l in mine {
        // SAFETY: entries of this pool point to location configurations
        // allocated in it, alive until it is destroyed (forget_pool).
        let clcf = unsafe { &*(l.clcf as *const ngx_http_core_loc_conf_t) };
        if is_api_handler(clcf) {
            continue;
        }
        // SAFETY: a location's name points into the configuration pool.
        let name = String::from_utf8_lossy(unsafe { bytes(&clcf.name) });
        // Not ngx_conf_log_error: it would point at the end of the http
        // block, not at the directive.
        ngx_log_error!(
            NGX_LOG_EMERG,
            log,
            "\"authban_api\" directive {} (location \"{}\") in {}:{}",
            COMBINED.to_string_lossy(),
            name,
            l.file,
            l.line
        );
        return Err(());
    }
    Ok(())
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
            body: api::error_json(&err),
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

fn method_of(r: &ngx_http_request_t) -> Option<Method> {
    match r.method as u32 {
        NGX_HTTP_GET | NGX_HTTP_HEAD => Some(Method::Get),
        NGX_HTTP_POST => Some(Method::Post),
        NGX_HTTP_DELETE => Some(Method::Delete),
        _ => None,
    }
}

fn body_refused() -> Reply {
    Reply::from(ApiError {
        status: 400,
        reason: "no request body is expected".into(),
    })
}

fn serve(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some(method) = method_of(r) else {
        // SAFETY: a live request; discarding is always allowed in a handler.
        let rc = unsafe { ngx_http_discard_request_body(r) };
        if rc != NGX_OK as ngx_int_t {
            return rc;
        }
        if add_header(r, "Allow", ALLOW).is_err() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as _;
        }
        let reply = Reply::from(ApiError {
            status: 405,
            reason: "method not allowed: use GET, POST or DELETE".into(),
        });
        return send(r, reply);
    };
    if r.headers_in.chunked() != 0 {
        // A chunked body's length is known only once read: an empty one
        // (just the last chunk) is no body. Reading is bounded by
        // client_max_body_size; errors while reading are nginx's answers.
        // SAFETY: a live request, in its content handler.
        let rc = unsafe { ngx_http_read_client_request_body(r, Some(body_read)) };
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return NGX_DONE as _;
    }
    let has_body = r.headers_in.content_length_n > 0;
    // SAFETY: a live request; discarding is always allowed in a handler.
    let rc = unsafe { ngx_http_discard_request_body(r) };
    if rc != NGX_OK as ngx_int_t {
        return rc;
    }
    if has_body {
        return send(r, body_refused());
    }
    answer(r, method)
}

/// Runs once a chunked body is read; nginx has set its decoded length.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the body handler with a live request.
    let r = unsafe { &mut *r };
    let rc = guarded(NGX_HTTP_INTERNAL_SERVER_ERROR as _, || {
        match method_of(r) {
            Some(_) if r.headers_in.content_length_n > 0 => send(r, body_refused()),
            Some(method) => answer(r, method),
            // serve() answered other methods before reading.
            None => NGX_HTTP_INTERNAL_SERVER_ERROR as _,
        }
    });
    // SAFETY: reading took a reference on the request; this releases it.
    unsafe { ngx_http_finalize_request(r, rc) };
}

fn answer(r: &mut ngx_http_request_t, method: Method) -> ngx_int_t {
    // SAFETY: r->args points into the request's buffer.
    let args = unsafe { bytes(&r.args) };
    let reply = match api::parse_query(args).and_then(|q| api::route(method, q)) {
        Ok(action) => act(r, action).unwrap_or_else(Reply::from),
        Err(err) => Reply::from(err),
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
        .ok_or_else(|| api::not_found(format!("unknown zone \"{name}\"")))
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
    let log_level = Module::location_conf(r).map_or(
        crate::nginx::directives::DEFAULT_LOG_LEVEL,
        LocConf::log_level,
    );
    match action {
        Action::ListZones(format) => {
            let views: Vec<ZoneView> = zones(r).into_iter().filter_map(view).collect();
            Ok(match format {
                Format::Json => json(api::zones_json(&views)),
                Format::Prometheus => Reply {
                    status: 200,
                    content_type: PROMETHEUS,
                    body: api::prometheus(&views),
                },
            })
        }
        Action::ZoneMetrics(name) => {
            let zone = find_zone(r, &name)?;
            let view = view(zone).ok_or_else(|| unavailable(zone))?;
            Ok(Reply {
                status: 200,
                content_type: PROMETHEUS,
                body: api::prometheus(&[view]),
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
            Ok(json(api::zone_json(&view, &bans, offset, limit)))
        }
        Action::ShowAddress { zone, addr } => {
            let zone = find_zone(r, &zone)?;
            let key = zone_key(zone, addr);
            let now = now();
            let mut events = Events::default();
            let (state, banned_by) = zone
                .with_table(|t| {
                    let state = t.lookup(&key, now);
                    // For a bare address, also the ban a client there meets
                    // now: the engine's own check, counting nothing.
                    // The host's own key, as the access phase checks it,
                    // so bans of any prefix holding it are found.
                    let banned_by = match addr {
                        Target::Addr(ip) => {
                            match t.check(&Key::from_ip(ip), now, false, &mut events) {
                                Verdict::Banned(ban) => Some(ban),
                                Verdict::Clear => None,
                            }
                        }
                        Target::Net(_) => None,
                    };
                    (state, banned_by)
                })
                .ok_or_else(|| unavailable(zone))?;
            zone::log_events(zone, &events, log, log_level);
            let state = match (state, banned_by) {
                (Some(state), _) => state,
                (None, Some(_)) => AddressState {
                    failures: 0,
                    ban: None,
                },
                (None, None) => return Err(untracked(zone, &key)),
            };
            Ok(json(api::address_json(
                &zone.name,
                &key,
                &state,
                banned_by.as_ref(),
            )))
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
            Ok(json(api::ban_json(&zone.name, &ban)))
        }
        Action::Unban { zone, addr } => {
            let zone = find_zone(r, &zone)?;
            let addr = zone_key(zone, addr);
            let state = zone
                .with_table(|t| t.unban(&addr, now()))
                .ok_or_else(|| unavailable(zone))?
                .ok_or_else(|| untracked(zone, &addr))?;
            if state.ban.is_some() {
                ngx_log_error!(
                    NGX_LOG_NOTICE,
                    log,
                    "authban: unban zone={} addr={} reason=api",
                    zone.name,
                    addr
                );
            }
            Ok(json(api::unban_json(&zone.name, &addr, &state)))
        }
    }
}

/// A bare address names the key the zone counts it under (`ipv4_prefix`,
/// `ipv6_prefix`); an explicit network is that key exactly, so a ban made
/// under other prefixes (before a reload) can still be reached.
fn zone_key(zone: &Zone, addr: Target) -> Key {
    match addr {
        Target::Addr(ip) => key_of(zone, ip),
        Target::Net(key) => key,
    }
}

fn key_of(zone: &Zone, ip: IpAddr) -> Key {
    zone.policy.key_of(ip)
}

fn untracked(zone: &Zone, key: &Key) -> ApiError {
    api::not_found(format!("{key} is not tracked in zone \"{}\"", zone.name))
}

fn view_of(zone: &Zone, t: &crate::engine::table::Table<'_>) -> ZoneView {
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
    // `next` (header lists) appeared in nginx 1.23.0.
    #[cfg(nginx1_23)]
    {
        h.next = ptr::null_mut();
    }
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
