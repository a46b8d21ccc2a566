//! Request handlers: the access phase refuses banned addresses, the log
//! phase counts failed responses, and `$authban_status` reports what
//! happened.

use core::mem::size_of;
use core::ptr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::panic::{catch_unwind, AssertUnwindSafe};

use nginx_sys::{
    ngx_cached_time, ngx_conf_t, ngx_http_add_variable, ngx_http_finalize_request,
    ngx_http_output_header_filter_pt, ngx_http_request_t, ngx_http_top_header_filter,
    ngx_http_variable_value_t, ngx_int_t, ngx_pcalloc, ngx_str_t, sockaddr_in, sockaddr_in6,
    AF_INET, AF_INET6, NGX_DECLINED, NGX_DONE, NGX_ERROR, NGX_HTTP_VAR_NOCACHEABLE, NGX_OK,
};
use ngx::http::{HttpModule, HttpModuleLocationConf};
use ngx::{ngx_log_error, ngx_string};

use crate::conf::{self, LocConf};
use crate::module::Module;
use crate::table::{Events, Failure, Now, Verdict};
use crate::zone::{self, Zone};

/// What authban did with a request, for `$authban_status`.
#[derive(Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Outcome {
    Unset = 0,
    Passed,
    Banned,
    Ignored,
    DryRun,
}

impl Outcome {
    fn text(self) -> &'static [u8] {
        match self {
            Outcome::Unset => b"",
            Outcome::Passed => b"PASSED",
            Outcome::Banned => b"BANNED",
            Outcome::Ignored => b"IGNORED",
            Outcome::DryRun => b"DRY_RUN",
        }
    }
}

/// Per request, in the request's pool: what the access phase decided and
/// whether the response was counted already.
#[repr(C)]
struct RequestState {
    outcome: Outcome,
    counted: bool,
}

/// The request's location configuration, which lives as long as the
/// cycle, so it can be held while the request itself is changed.
fn loc_conf(r: &ngx_http_request_t) -> Option<&'static LocConf> {
    let lcf: *const LocConf = Module::location_conf(r)?;
    // SAFETY: location configurations are allocated in the cycle's pool,
    // which outlives every request of the cycle.
    Some(unsafe { &*lcf })
}

fn request_state(r: &ngx_http_request_t) -> Option<&RequestState> {
    let index = Module::module().ctx_index;
    // SAFETY: r->ctx has a slot per http module; ours holds null or the
    // RequestState allocated below from the request's pool.
    unsafe { (*r.ctx.add(index)).cast::<RequestState>().as_ref() }
}

/// Shared, read-only states for the common outcomes: most requests need no
/// per-request allocation. A request that must record more (`counted`) gets
/// its own copy from its pool.
static SHARED_STATES: [RequestState; 5] = [
    RequestState {
        outcome: Outcome::Unset,
        counted: false,
    },
    RequestState {
        outcome: Outcome::Passed,
        counted: false,
    },
    RequestState {
        outcome: Outcome::Banned,
        counted: false,
    },
    RequestState {
        outcome: Outcome::Ignored,
        counted: false,
    },
    RequestState {
        outcome: Outcome::DryRun,
        counted: false,
    },
];

fn is_shared(state: *const RequestState) -> bool {
    SHARED_STATES.as_ptr_range().contains(&state)
}

fn request_state_mut(r: &mut ngx_http_request_t) -> Option<&mut RequestState> {
    let index = Module::module().ctx_index;
    // SAFETY: as in `request_state`; pcalloc memory lives as long as the
    // request, and a shared state is copied before anything writes to it.
    unsafe {
        let slot = r.ctx.add(index);
        let current = (*slot).cast::<RequestState>();
        if current.is_null() || is_shared(current) {
            let own = ngx_pcalloc(r.pool, size_of::<RequestState>()).cast::<RequestState>();
            if let (Some(own), Some(shared)) = (own.as_mut(), current.as_ref()) {
                own.outcome = shared.outcome;
            }
            *slot = own.cast();
        }
        (*slot).cast::<RequestState>().as_mut()
    }
}

fn state(r: &ngx_http_request_t) -> Outcome {
    request_state(r).map_or(Outcome::Unset, |s| s.outcome)
}

fn set_state(r: &mut ngx_http_request_t, outcome: Outcome) {
    let shared = &SHARED_STATES[outcome as usize];
    let index = Module::module().ctx_index;
    // SAFETY: r->ctx has a slot per module; a shared state is only read.
    unsafe { *r.ctx.add(index) = ptr::from_ref(shared).cast_mut().cast() };
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

pub(crate) fn request_log(r: &ngx_http_request_t) -> *mut nginx_sys::ngx_log_t {
    // SAFETY: a live request has a connection and a log.
    unsafe { (*r.connection).log }
}

/// A panic must not unwind into nginx; the zone lock is released by its
/// guard while unwinding, and the request goes on as if authban were off.
pub(crate) fn guarded(fallback: ngx_int_t, f: impl FnOnce() -> ngx_int_t) -> ngx_int_t {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or(fallback)
}

pub unsafe extern "C" fn access_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let r = unsafe { &mut *r };
    guarded(NGX_DECLINED as _, || access(r))
}

fn access(r: &mut ngx_http_request_t) -> ngx_int_t {
    let Some((outcome, lcf)) = decide(r, true) else {
        return NGX_DECLINED as _;
    };
    set_state(r, outcome);
    if outcome != Outcome::Banned {
        return NGX_DECLINED as _;
    }
    let status = lcf.refuse_status();
    // Finalizing here, instead of returning the status, keeps `satisfy any`
    // from letting another access module override the ban.
    // SAFETY: finalizing from a phase handler and returning NGX_DONE is what
    // the core phase checkers do with a status code.
    unsafe { ngx_http_finalize_request(r, status as ngx_int_t) };
    NGX_DONE as _
}

fn check(zone: &Zone, ip: IpAddr, refusing: bool, log: *mut nginx_sys::ngx_log_t) -> Verdict {
    let key = zone.policy.key_of(ip);
    if !zone.may_be_banned(&key) {
        return Verdict::Clear;
    }
    let mut events = Events::default();
    let verdict = zone
        .with_table(|t| t.check(&key, now(), refusing, &mut events))
        .unwrap_or(Verdict::Clear);
    zone::log_events(zone, &events, log, conf::DEFAULT_LOG_LEVEL);
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
    let req = unsafe { &mut *r };
    if ptr::eq(req, req.main) {
        guarded(NGX_OK as _, || {
            count_failure(req);
            NGX_OK as _
        });
    }
    // SAFETY: the next filter was taken from the chain at configuration.
    match unsafe { NEXT_HEADER_FILTER } {
        Some(next) => unsafe { next(r) },
        None => NGX_OK as _,
    }
}

/// Counts failures that never sent a header (444, a client that left).
pub unsafe extern "C" fn log_handler(r: *mut ngx_http_request_t) -> ngx_int_t {
    // SAFETY: nginx calls phase handlers with a live request.
    let r = unsafe { &mut *r };
    guarded(NGX_OK as _, || {
        count_failure(r);
        NGX_OK as _
    })
}

fn final_status(r: &ngx_http_request_t) -> usize {
    // The same rule as the access log's $status.
    if r.err_status != 0 {
        r.err_status
    } else {
        r.headers_out.status
    }
}

fn count_failure(r: &mut ngx_http_request_t) {
    let Some(lcf) = loc_conf(r) else { return };
    let Some(zone) = lcf.zone() else { return };
    let status = final_status(r);
    if !lcf.fail_status().iter().any(|&s| usize::from(s) == status) {
        return;
    }
    match request_state_mut(r) {
        Some(s) if s.counted || s.outcome == Outcome::Banned => return,
        Some(s) => s.counted = true,
        None => return,
    }
    let Some(ip) = client_ip(r) else { return };
    if lcf.is_ignored(ip) {
        return;
    }
    let key = zone.policy.key_of(ip);
    let mut events = Events::default();
    let result = zone.with_table(|t| t.record_failure(&key, now(), &mut events));
    let log = request_log(r);
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
    let (r, v) = unsafe { (&mut *r, &mut *v) };
    let outcome = guarded(Outcome::Unset as u8 as _, || variable_outcome(r) as u8 as _);
    let text: &'static [u8] = match outcome {
        1 => Outcome::Passed.text(),
        2 => Outcome::Banned.text(),
        3 => Outcome::Ignored.text(),
        4 => Outcome::DryRun.text(),
        _ => Outcome::Unset.text(),
    };
    v.set_len(text.len() as u32);
    v.set_valid(1);
    v.set_no_cacheable(1);
    // Not found where authban is off, so the access log shows "-".
    v.set_not_found(u32::from(text.is_empty()));
    v.data = text.as_ptr().cast_mut();
    NGX_OK as _
}

/// What the access phase decided, or, where it did not run (a request
/// redirected internally, a subrequest), the answer it would give now.
fn variable_outcome(r: &ngx_http_request_t) -> Outcome {
    match state(r) {
        Outcome::Unset => decide(r, false).map_or(Outcome::Unset, |(outcome, _)| outcome),
        recorded => recorded,
    }
}

/// The verdict for this request where authban is on (`None` elsewhere, or
/// for a client without an IP address). `refusing` counts a refusal in the
/// zone's statistics, as the access phase does outside dry run.
fn decide(r: &ngx_http_request_t, refusing: bool) -> Option<(Outcome, &'static LocConf)> {
    let lcf = loc_conf(r)?;
    let zone = lcf.zone()?;
    let ip = client_ip(r)?;
    if lcf.is_ignored(ip) {
        return Some((Outcome::Ignored, lcf));
    }
    let dry_run = lcf.dry_run();
    let outcome = match check(zone, ip, refusing && !dry_run, request_log(r)) {
        Verdict::Clear => Outcome::Passed,
        Verdict::Banned(_) if dry_run => Outcome::DryRun,
        Verdict::Banned(_) => Outcome::Banned,
    };
    Some((outcome, lcf))
}
