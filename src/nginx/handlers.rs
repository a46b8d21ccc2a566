//! Request handlers: the access phase refuses banned addresses, a
//! precontent handler refuses them in subrequests (which skip the access
//! phase), the header filter and the log phase count failed responses, and
//! `$authban_status` reports what happened.
//!
//! What a check decided travels with the request across internal redirects
//! (`request_record`): the location that checked a request judges its final
//! response, and a refused request is refused again wherever it is sent.

use core::ptr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_cached_time, ngx_conf_t, ngx_http_add_variable, ngx_http_finalize_request,
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_http_top_header_filter,
    ngx_http_variable_value_t, ngx_int_t, ngx_log_t, ngx_str_t, sockaddr_in, sockaddr_in6, AF_INET,
    AF_INET6, NGX_DECLINED, NGX_DONE, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule};
use ngx::{ngx_log_error, ngx_string};

use crate::engine::table::{Events, Failure, Now, Verdict};
use crate::nginx::directives::{self, LocConf};
use crate::nginx::module::Module;
use crate::nginx::realip;
use crate::nginx::request_record::{Outcome, RequestRecord};
use crate::nginx::zone::{self, Zone};

/// The request's location configuration, which lives as long as the
/// cycle, so it can be held while the request itself is changed.
fn loc_conf(r: &ngx_http_request_t) -> Option<&'static LocConf> {
    let lcf: *const LocConf = Module::location_conf(r)?;
    // SAFETY: location configurations are allocated in the cycle's pool,
    // which outlives every request of the cycle.
    Some(unsafe { &*lcf })
}

/// A location with `authban_api` is never subject to authban: the endpoint
/// that lifts bans must not lock itself out.
fn is_api_location(r: &ngx_http_request_t) -> bool {
    NgxHttpCoreModule::location_conf(r)
        .and_then(|clcf| clcf.handler)
        .is_some_and(|h| {
            ptr::eq(
                h as *const (),
                crate::nginx::api_handler::API_HANDLER as *const (),
            )
        })
}

/// The client address after the realip module, read per request: realip
/// may rewrite it in every request of a keep-alive connection. IPv4-mapped
/// IPv6 (a dual-stack listener) is folded to IPv4, for keys and ignore
/// lists alike.
fn client_ip(r: &ngx_http_request_t) -> Option<IpAddr> {
    // SAFETY: a live request has a connection with a valid sockaddr whose
    // family says which struct it is.
    unsafe {
        let sa = (*r.connection).sockaddr;
        match u32::from((*sa).sa_family) {
            AF_INET => {
                let sin = &*sa.cast::<sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            AF_INET6 => {
                let sin6 = &*sa.cast::<sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8)).to_canonical())
            }
            _ => None,
        }
    }
}

pub(crate) fn now() -> Now {
    // SAFETY: nginx keeps ngx_cached_time pointing at a valid time slot.
    let tp = unsafe { &*ngx_cached_time };
    Now::from_ms(tp.sec as u64 * 1000 + tp.msec as u64)
}

pub(crate) fn request_log(r: &ngx_http_request_t) -> *mut ngx_log_t {
    // SAFETY: a live request has a connection and a log.
    unsafe { (*r.connection).log }
}

/// A panic must not unwind into nginx; the zone lock is released by its
/// guard while unwinding, and the request goes on as if authban were off.
pub(crate) fn guarded<T>(fallback: T, f: impl FnOnce() -> T) -> T {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

/// What a phase handler tells nginx.
enum Decision {
    Decline,
    Refuse(u16),
}

pub unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let decision = guarded(Decision::Decline, || access(unsafe { &*r }));
    match decision {
        Decision::Decline => NGX_DECLINED as _,
        Decision::Refuse(status) => {
            // Finalizing here, instead of returning the status, keeps
            // `satisfy any` from letting another access module override the
            // ban. SAFETY: finalizing from a phase handler and returning
            // NGX_DONE is what the core phase checkers do with a status.
            unsafe { ngx_http_finalize_request(r, status as ngx_int_t) };
            NGX_DONE as _
        }
    }
}

/// Subrequests (SSI, mirror, auth_request, add_before_body) skip the access
/// phase; this refuses them before their content handler runs.
pub unsafe extern "C" fn precontent_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let decision = guarded(Decision::Decline, || subrequest_access(unsafe { &*r }));
    match decision {
        Decision::Decline => NGX_DECLINED as _,
        // The generic phase checker finalizes the subrequest with it.
        Decision::Refuse(status) => status as ngx_int_t,
    }
}

fn access(r: &ngx_http_request_t) -> Decision {
    if is_api_location(r) {
        return Decision::Decline;
    }
    let record = RequestRecord::find(r);
    if let Some(status) = record.and_then(|rec| rec.refused_with.get()) {
        return Decision::Refuse(status);
    }
    let Some((outcome, lcf, ip)) = decide(r, true) else {
        return Decision::Decline;
    };
    let record = match record {
        Some(record) => {
            // The first check's location keeps judging the response; a
            // later location's zone can still refuse.
            if outcome == Outcome::Banned {
                record.outcome.set(outcome);
            }
            Some(record)
        }
        None => RequestRecord::attach(r, lcf, ip, realip::is_trusted_proxy(r, ip), outcome),
    };
    if outcome != Outcome::Banned {
        return Decision::Decline;
    }
    let status = lcf.refuse_status();
    if let Some(record) = record {
        record.refused_with.set(Some(status));
    }
    Decision::Refuse(status)
}

fn subrequest_access(r: &ngx_http_request_t) -> Decision {
    if ptr::eq(r, r.main) || is_api_location(r) {
        return Decision::Decline;
    }
    if let Some(status) = RequestRecord::find(r).and_then(|rec| rec.refused_with.get()) {
        return Decision::Refuse(status);
    }
    match decide(r, true) {
        Some((Outcome::Banned, lcf, _)) => Decision::Refuse(lcf.refuse_status()),
        _ => Decision::Decline,
    }
}

fn check(zone: &Zone, ip: IpAddr, refusing: bool, log: *mut ngx_log_t) -> Verdict {
    // Every ban holding the address counts, whatever prefix made it: the
    // policy's network, a wider one, or one of a policy before a reload.
    let host = crate::engine::key::Key::from_ip(ip);
    let net = zone.policy.key_of(ip);
    if !zone.may_be_banned(&host, &net) {
        return Verdict::Clear;
    }
    let mut events = Events::default();
    let verdict = zone
        .with_table(|t| t.check(&host, now(), refusing, &mut events))
        .unwrap_or(Verdict::Clear);
    zone::log_events(zone, &events, log, directives::DEFAULT_LOG_LEVEL);
    verdict
}

/// The next header filter in nginx's chain, set once at configuration.
static mut NEXT_HEADER_FILTER: ngx_http_output_header_filter_pt = None;

pub fn install_header_filter() {
    // SAFETY: configuration runs single-threaded; this is how every nginx
    // filter module links itself into the chain.
    unsafe {
        NEXT_HEADER_FILTER = ngx_http_top_header_filter;
        ngx_http_top_header_filter = Some(header_filter);
    }
}

/// Counts a failure as its response header goes out: before the client can
/// see the answer and try again, on this or any other worker.
unsafe extern "C" fn header_filter(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls header filters with a live request.
    guarded((), || count_failure(unsafe { &*r }));
    // SAFETY: the next filter was taken from the chain at configuration.
    match unsafe { NEXT_HEADER_FILTER } {
        Some(next) => unsafe { next(r) },
        None => NGX_OK as _,
    }
}

/// Counts failures that never sent a header (444, a client that left).
pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    guarded((), || count_failure(unsafe { &*r }));
    NGX_OK as _
}

fn final_status(r: &ngx_http_request_t) -> usize {
    // The same rule as the access log's $status.
    if r.err_status != 0 {
        r.err_status
    } else {
        r.headers_out.status
    }
}

/// Counts the main request's final status once. Subrequests never count:
/// what they answer reaches the client through the main request's status
/// (an auth_request's 401 becomes the request's 401), which counts.
fn count_failure(r: &ngx_http_request_t) {
    if !ptr::eq(r, r.main) {
        return;
    }
    let record = match RequestRecord::find(r) {
        Some(record) => record,
        // No check ran (a `return` in the rewrite phase answered first):
        // the location the response leaves from judges it.
        None => {
            let Some(lcf) = loc_conf(r).filter(|lcf| lcf.zone().is_some()) else {
                return;
            };
            if is_api_location(r) {
                return;
            }
            let Some(ip) = client_ip(r) else { return };
            let trusted = realip::is_trusted_proxy(r, ip);
            let Some(record) = RequestRecord::attach(r, lcf, ip, trusted, Outcome::Passed) else {
                return;
            };
            record
        }
    };
    let lcf = record.lcf;
    let Some(zone) = lcf.zone() else { return };
    let status = final_status(r);
    if record.counted.get()
        || record.refused_with.get().is_some()
        || !lcf.fail_status().iter().any(|&s| usize::from(s) == status)
    {
        return;
    }
    record.counted.set(true);
    let ip = record.ip;
    if lcf.is_ignored(ip) {
        return;
    }
    let log = request_log(r);
    if record.trusted_proxy {
        zone::log_trusted_proxy_failure(zone, ip, log);
        return;
    }
    let key = zone.policy.key_of(ip);
    let mut events = Events::default();
    let result = zone.with_table(|t| t.record_failure(&key, now(), &mut events));
    if let Some(Failure::Banned(ban)) = result {
        let verb = if lcf.dry_run() { "would ban" } else { "ban" };
        ngx_log_error!(
            lcf.log_level(),
            log,
            "authban: {} zone={} addr={} failures={} bantime={}s offence={}",
            verb,
            zone.name,
            ban.key,
            ban.failures,
            zone.policy.ban_secs(ban.offence.saturating_sub(1)),
            ban.offence
        );
    }
    zone::log_events(zone, &events, log, lcf.log_level());
}

static mut STATUS_VARIABLE: ngx_str_t = ngx_string!("authban_status");

pub fn add_variables(cf: *mut ngx_conf_t) -> ngx_int_t {
    // SAFETY: called from preconfiguration with a valid cf; nginx copies
    // the name it is given.
    let var = unsafe {
        ngx_http_add_variable(
            cf,
            core::ptr::addr_of_mut!(STATUS_VARIABLE),
            NGX_HTTP_VAR_NOCACHEABLE as _,
        )
    };
    // SAFETY: null or a variable entry nginx owns.
    let Some(var) = (unsafe { var.as_mut() }) else {
        return NGX_ERROR as _;
    };
    var.get_handler = Some(status_variable);
    var.data = 0;
    NGX_OK as _
}

unsafe extern "C" fn status_variable(
    r: *mut ngx_http_request_t,
    v: *mut ngx_http_variable_value_t,
    _data: usize,
) -> ngx_int_t {
    // SAFETY: nginx passes a live request and a value to fill.
    let (r, v) = unsafe { (&*r, &mut *v) };
    let text: &'static [u8] = guarded(None, || variable_outcome(r)).map_or(b"", Outcome::text);
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
fn variable_outcome(r: &ngx_http_request_t) -> Option<Outcome> {
    if ptr::eq(r, r.main) {
        if let Some(record) = RequestRecord::find(r) {
            return Some(record.outcome.get());
        }
    }
    decide(r, false).map(|(outcome, _, _)| outcome)
}

/// The verdict for this request where authban is on (`None` elsewhere, or
/// for a client without an IP address). `refusing` counts a refusal in the
/// zone's statistics, as the access phase does outside dry run.
fn decide(r: &ngx_http_request_t, refusing: bool) -> Option<(Outcome, &'static LocConf, IpAddr)> {
    let lcf = loc_conf(r)?;
    let zone = lcf.zone()?;
    let ip = client_ip(r)?;
    if lcf.is_ignored(ip) {
        return Some((Outcome::Ignored, lcf, ip));
    }
    let dry_run = lcf.dry_run();
    let outcome = match check(zone, ip, refusing && !dry_run, request_log(r)) {
        Verdict::Clear => Outcome::Passed,
        Verdict::Banned(_) if dry_run => Outcome::DryRun,
        Verdict::Banned(_) => Outcome::Banned,
    };
    Some((outcome, lcf, ip))
}
