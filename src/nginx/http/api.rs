//! The management endpoint (`authban_api;`): nginx's side of it. What a
//! request means and how answers look is decided in `mgmt`; this file reads
//! the request, acts on the zones under their locks, logs, and responds.

use core::ffi::{c_char, c_void};
use core::ptr;
use std::net::IpAddr;

use nginx_sys::{
    ngx_chain_t, ngx_command_t, ngx_conf_t, ngx_http_core_loc_conf_t, ngx_http_finalize_request,
    ngx_http_read_client_request_body, ngx_http_request_t, ngx_int_t, ngx_log_t, ngx_str_t,
    NGX_DONE, NGX_ERROR, NGX_HTTP_INTERNAL_SERVER_ERROR, NGX_HTTP_SPECIAL_RESPONSE, NGX_OK,
};
use ngx::core::{Buffer, Status, NGX_CONF_ERROR, NGX_CONF_OK};
use ngx::http::{
    HTTPStatus, HttpModuleLocationConf, HttpModuleMainConf, Method as HttpMethod,
    NgxHttpCoreModule, Request,
};

use crate::engine::account::hash_text;
use crate::engine::api::{
    self, Action, ApiError, CrowdsecView, Format, Method, Naming, Subject, SyncView, Target,
    ZoneView,
};
use crate::engine::key::Key;
use crate::engine::table::{AddressState, Events, Now, Table, Verdict};
use crate::nginx::base::clock::now;
use crate::nginx::base::guard::guarded;
use crate::nginx::base::log::{self, BanBy, DEFAULT_LOG_LEVEL};
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::declared::DeclaredZone;
use crate::nginx::conf::directives;
use crate::nginx::conf::loc::LocConf;
use crate::nginx::conf::main::ApiLocation;
use crate::nginx::fleet::node as fleet;
use crate::nginx::state::zone::{self, Zone};

const JSON: &str = "application/json";
const PROMETHEUS: &str = "text/plain; version=0.0.4; charset=utf-8";
const ALLOW: &str = "GET, HEAD, POST, DELETE";

/// A location's content handler is one pointer: a second directive that
/// sets it (`proxy_pass`, `fastcgi_pass`, `empty_gif`...) silently wins.
/// nginx prints `"authban_api" directive <this> in FILE:LINE`.
const COMBINED: &core::ffi::CStr = c"cannot be combined with another content handler \
    (proxy_pass, fastcgi_pass, ...) in one location";

fn is_api_handler(clcf: &ngx_http_core_loc_conf_t) -> bool {
    clcf.handler
        .is_some_and(|h| ptr::eq(h as *const (), API_HANDLER as *const ()))
}

pub extern "C" fn set_api(
    cf: *mut ngx_conf_t,
    _cmd: *mut ngx_command_t,
    _conf: *mut c_void,
) -> *mut c_char {
    directives::handle(cf, "authban_api", |d| {
        // Inside a location the core module's location configuration exists.
        let Some(clcf) = NgxHttpCoreModule::location_conf_mut(d.cf) else {
            return NGX_CONF_ERROR;
        };
        if is_api_handler(clcf) {
            return c"is duplicate".as_ptr().cast_mut();
        }
        if clcf.handler.is_some() {
            return COMBINED.as_ptr().cast_mut();
        }
        clcf.handler = Some(API_HANDLER);
        let Some(main) = Module::main_conf_mut(d.cf) else {
            return NGX_CONF_ERROR;
        };
        main.api_locations.push(ApiLocation {
            clcf: ptr::from_mut(clcf),
            file: d.file,
            line: d.line,
        });
        NGX_CONF_OK
    })
}

/// Refuses a location where a content handler set after `authban_api`
/// (`authban_api; proxy_pass ...;`) replaced it. To be called from the
/// module's postconfiguration; the other order is refused by the directive
/// itself.
pub fn check_locations(cf: &ngx_conf_t) -> Result<(), ()> {
    std::panic::catch_unwind(|| check_locations_of(cf)).unwrap_or(Err(()))
}

fn check_locations_of(cf: &ngx_conf_t) -> Result<(), ()> {
    let Some(main) = Module::main_conf(cf) else {
        return Ok(());
    };
    for l in &main.api_locations {
        // SAFETY: the entry points to a location configuration allocated in
        // the pool of the configuration that holds the entry.
        let clcf = unsafe { &*l.clcf };
        if is_api_handler(clcf) {
            continue;
        }
        let name = String::from_utf8_lossy(clcf.name.as_bytes());
        // Not ngx_conf_log_error: it would point at the end of the http
        // block, not at the directive.
        log::api_combined(cf.log, &COMBINED.to_string_lossy(), &name, &l.file, l.line);
        return Err(());
    }
    Ok(())
}

/// The content handler, stored once so that `access` can tell an API
/// location by it (a function's address taken twice may differ).
pub(crate) static API_HANDLER: unsafe extern "C" fn(*mut ngx_http_request_t) -> ngx_int_t =
    api_handler;

// nginx calls content handlers with a live request.
ngx::http_request_handler!(api_handler, |r: &mut Request| Status(guarded(
    NGX_HTTP_INTERNAL_SERVER_ERROR as _,
    || serve(r)
)));

struct Reply {
    status: u16,
    content_type: &'static str,
    body: String,
}

impl From<ApiError> for Reply {
    fn from(err: ApiError) -> Reply {
        Reply {
            status: err.status(),
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

fn method_of(r: &Request) -> Option<Method> {
    match r.method() {
        m if m == HttpMethod::GET || m == HttpMethod::HEAD => Some(Method::Get),
        m if m == HttpMethod::POST => Some(Method::Post),
        m if m == HttpMethod::DELETE => Some(Method::Delete),
        _ => None,
    }
}

fn serve(r: &mut Request) -> ngx_int_t {
    let Some(method) = method_of(r) else {
        let rc = r.discard_request_body();
        if !rc.is_ok() {
            return rc.into();
        }
        if r.add_header_out("Allow", ALLOW).is_none() {
            return NGX_HTTP_INTERNAL_SERVER_ERROR as _;
        }
        return send(r, ApiError::MethodNotAllowed.into());
    };
    if r.as_ref().headers_in.chunked() != 0 {
        // A chunked body's length is known only once read: an empty one
        // (just the last chunk) is no body. Reading is bounded by
        // client_max_body_size; errors while reading are nginx's answers.
        // SAFETY: a live request, in its content handler.
        let rc = unsafe { ngx_http_read_client_request_body(r.into(), Some(body_read)) };
        if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t {
            return rc;
        }
        return NGX_DONE as _;
    }
    let has_body = r.as_ref().headers_in.content_length_n > 0;
    let rc = r.discard_request_body();
    if !rc.is_ok() {
        return rc.into();
    }
    if has_body {
        return send(r, ApiError::BodyRefused.into());
    }
    answer(r, method)
}

/// Runs once a chunked body is read; nginx has set its decoded length.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx calls the body handler with a live request.
    let r = unsafe { Request::from_ngx_http_request(r) };
    let rc = guarded(NGX_HTTP_INTERNAL_SERVER_ERROR as _, || {
        match method_of(r) {
            Some(_) if r.as_ref().headers_in.content_length_n > 0 => {
                send(r, ApiError::BodyRefused.into())
            }
            Some(method) => answer(r, method),
            // serve() answered other methods before reading.
            None => NGX_HTTP_INTERNAL_SERVER_ERROR as _,
        }
    });
    // SAFETY: reading took a reference on the request; this releases it.
    unsafe { ngx_http_finalize_request(r.into(), rc) };
}

fn answer(r: &mut Request, method: Method) -> ngx_int_t {
    let args = r.as_ref().args.as_bytes();
    let reply = match api::parse_query(args).and_then(|q| api::route(method, q)) {
        Ok(action) => act(r, action).unwrap_or_else(Reply::from),
        Err(err) => Reply::from(err),
    };
    send(r, reply)
}

fn zones(r: &Request) -> Vec<&'static DeclaredZone> {
    let Some(main) = Module::main_conf(r) else {
        return Vec::new();
    };
    main.zones.iter().map(|z| &**z).collect()
}

fn find_zone(r: &Request, name: &str) -> Result<&'static DeclaredZone, ApiError> {
    zones(r)
        .into_iter()
        .find(|z| z.zone.name == name)
        .ok_or_else(|| ApiError::UnknownZone(name.to_string()))
}

/// Runs `f` on the zone's table once every ban whose time is up is ended
/// and logged, so that what it reports (`bans`) counts bans in force.
/// Ending is done a buffer of events per lock hold, `f` in the last one.
fn in_force<R>(
    zone: &Zone,
    log: *mut ngx_log_t,
    level: usize,
    mut f: impl FnMut(&Table<'_>, Now) -> R,
) -> Option<R> {
    let now = now();
    // Each round but the last ends a full buffer, so the zone's capacity
    // bounds the rounds; the bound is taken in the first.
    let mut rounds_left: Option<u32> = None;
    loop {
        let mut events = Events::default();
        let done = zone.with_table(|t| {
            let left = rounds_left.get_or_insert(t.capacity());
            *left = left.saturating_sub(1);
            let more = *left > 0 && t.end_ended_bans(now, &mut events);
            (!more).then(|| f(t, now))
        })?;
        zone::log_events(zone, &events, log, level);
        if done.is_some() {
            return done;
        }
    }
}

fn view(declared: &DeclaredZone, log: *mut ngx_log_t, level: usize) -> Option<ZoneView> {
    in_force(&declared.zone, log, level, |t, _| view_of(declared, t))
}

fn unavailable(zone: &Zone) -> ApiError {
    ApiError::Unavailable(zone.name.clone())
}

fn act(r: &Request, action: Action) -> Result<Reply, ApiError> {
    let log = r.log();
    let log_level = Module::location_conf(r).map_or(DEFAULT_LOG_LEVEL, LocConf::log_level);
    match action {
        Action::ListZones(format) => {
            let views: Vec<ZoneView> = zones(r)
                .into_iter()
                .filter_map(|z| view(z, log, log_level))
                .collect();
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
            let declared = find_zone(r, &name)?;
            let view = view(declared, log, log_level).ok_or_else(|| unavailable(&declared.zone))?;
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
            let declared = find_zone(r, &zone)?;
            let zone = &*declared.zone;
            let (view, bans) = in_force(zone, log, log_level, |t, now| {
                (view_of(declared, t), t.bans_page(now, offset, limit))
            })
            .ok_or_else(|| unavailable(zone))?;
            Ok(json(api::zone_json(&view, &bans, offset, limit)))
        }
        Action::ShowAddress { zone, subject } => {
            let zone = &*find_zone(r, &zone)?.zone;
            let key = zone_key(zone, &subject)?;
            let now = now();
            let mut events = Events::default();
            let (state, banned_by) = zone
                .with_table(|t| {
                    let state = t.lookup(&key, now);
                    // For a bare address, also the ban a client there meets
                    // now: the engine's own check, counting nothing.
                    // The host's own key, as the access phase checks it,
                    // so bans of any prefix holding it are found.
                    let banned_by = match &subject {
                        Subject::Addr(Target::Addr(ip)) => {
                            match t.check(&Key::from_ip(*ip), now, false, &mut events) {
                                Verdict::Banned(ban) => Some(ban),
                                Verdict::Clear => None,
                            }
                        }
                        _ => None,
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
                naming(zone),
                &key,
                &state,
                banned_by.as_ref(),
            )))
        }
        Action::Ban {
            zone,
            subject,
            time,
        } => {
            let declared = find_zone(r, &zone)?;
            let zone = &*declared.zone;
            let addr = zone_key(zone, &subject)?;
            let secs = time.unwrap_or(zone.policy.bantime);
            let mut events = Events::default();
            let ban = zone
                .with_table(|t| t.ban(&addr, now(), secs, &mut events))
                .ok_or_else(|| unavailable(zone))?;
            match &subject {
                // The log line names the value, as a ban by failures does.
                Subject::Key(value) => {
                    log::ban_key(log, log_level, &zone.name, value, &ban, secs, BanBy::Api);
                }
                _ => log::ban(log, log_level, &zone.name, &ban, secs, BanBy::Api, false),
            }
            if let Some(f) = &declared.fleet {
                fleet::ban_made(f, &ban);
            }
            zone::log_events(zone, &events, log, log_level);
            Ok(json(api::ban_json(&zone.name, naming(zone), &ban)))
        }
        Action::Unban { zone, subject } => {
            let declared = find_zone(r, &zone)?;
            let zone = &*declared.zone;
            let addr = zone_key(zone, &subject)?;
            let state = zone
                .with_table(|t| t.unban(&addr, now()))
                .ok_or_else(|| unavailable(zone))?
                .ok_or_else(|| untracked(zone, &addr))?;
            if state.ban.is_some() {
                let keyed = zone.is_key_zone();
                log::unban_api(log, &zone.name, log::Subject { key: &addr, keyed });
            }
            if let Some(f) = &declared.fleet {
                fleet::unban_made(f, &addr);
            }
            Ok(json(api::unban_json(
                &zone.name,
                naming(zone),
                &addr,
                &state,
            )))
        }
    }
}

/// The table key a find, ban or unban names in `zone`: an address zone
/// takes `addr` only, a key zone `key` (hashed with the zone's secret) or
/// `hash` only.
fn zone_key(zone: &Zone, subject: &Subject) -> Result<Key, ApiError> {
    match (zone.key_zone(), subject) {
        (None, Subject::Addr(target)) => Ok(addr_key(zone, *target)),
        (Some(_), Subject::Addr(_)) => Err(ApiError::AddrInKeyZone(zone.name.clone())),
        (None, Subject::Key(_) | Subject::Hash(_)) => Err(ApiError::KeyInAddressZone {
            zone: zone.name.clone(),
            param: subject.param(),
        }),
        (Some(kz), Subject::Key(value)) => kz
            .hasher()
            .map(|h| h.key_of(value))
            .ok_or_else(|| unavailable(zone)),
        (Some(_), Subject::Hash(key)) => Ok(*key),
    }
}

fn naming(zone: &Zone) -> Naming {
    Naming::of(zone.is_key_zone())
}

/// A bare address names the key the zone counts it under (`ipv4_prefix`,
/// `ipv6_prefix`); an explicit network is that key exactly, so a ban made
/// under other prefixes (before a reload) can still be reached.
fn addr_key(zone: &Zone, addr: Target) -> Key {
    match addr {
        Target::Addr(ip) => key_of(zone, ip),
        Target::Net(key) => key,
    }
}

fn key_of(zone: &Zone, ip: IpAddr) -> Key {
    zone.policy.key_of(ip)
}

fn untracked(zone: &Zone, key: &Key) -> ApiError {
    if zone.is_key_zone() {
        return ApiError::UntrackedKey {
            hash: hash_text(key),
            zone: zone.name.clone(),
        };
    }
    ApiError::Untracked {
        key: *key,
        zone: zone.name.clone(),
    }
}

fn view_of(declared: &DeclaredZone, t: &Table<'_>) -> ZoneView {
    let zone = &*declared.zone;
    ZoneView {
        name: zone.name.clone(),
        keyed: zone.is_key_zone(),
        size: zone.size,
        policy: t.policy(),
        capacity: t.capacity(),
        tracked: t.tracked(),
        bans: t.bans(),
        stats: t.stats(),
        sync: declared.fleet.as_ref().map(|f| SyncView {
            url: f.url.to_string(),
            stats: *t.sync_stats(),
        }),
        crowdsec: declared.crowdsec.get().map(|cs| CrowdsecView {
            url: cs.conf.spec.url.to_string(),
            stats: *t.crowdsec_stats(),
        }),
    }
}

fn send(r: &mut Request, reply: Reply) -> ngx_int_t {
    let Ok(status) = HTTPStatus::from_u16(reply.status) else {
        return NGX_HTTP_INTERNAL_SERVER_ERROR as _;
    };
    r.set_status(status);
    r.set_content_length_n(reply.body.len());
    let headers = &mut r.as_mut().headers_out;
    headers.content_type = ngx_str_t {
        len: reply.content_type.len(),
        data: reply.content_type.as_ptr().cast_mut(),
    };
    headers.content_type_len = reply.content_type.len();
    headers.content_type_lowcase = ptr::null_mut();
    let rc = r.send_header();
    if rc == Status::NGX_ERROR || rc.0 > NGX_OK as ngx_int_t || r.header_only() {
        return rc.into();
    }
    let Some(mut buf) = r.pool().create_buffer_from_str(&reply.body) else {
        return NGX_ERROR as _;
    };
    buf.set_last_buf(r.is_main());
    buf.set_last_in_chain(true);
    let mut out = ngx_chain_t {
        buf: buf.as_ngx_buf_mut(),
        next: ptr::null_mut(),
    };
    r.output_filter(&mut out).into()
}
