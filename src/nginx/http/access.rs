//! Request handlers: the access phase refuses banned addresses, a
//! precontent handler refuses them in subrequests (which skip the access
//! phase), the header filter and the log phase count failed responses (`$authban_status` is in
//! `variables`).
//!
//! What a check decided travels with the request across internal redirects
//! (`record`): the location that checked a request judges its final
//! response, and a refused request is refused again wherever it is sent.

use core::ptr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nginx_sys::{
    ngx_http_finalize_request, ngx_http_handler_pt, ngx_http_output_header_filter_pt,
    ngx_http_request_t, ngx_http_top_header_filter, ngx_int_t, sockaddr_in, sockaddr_in6, AF_INET,
    AF_INET6, NGX_DECLINED, NGX_DONE, NGX_OK,
};
use ngx::core::Status;
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule, Request};

use crate::engine::account::{self, hash_text};
use crate::engine::key::Key;
use crate::engine::table::{Events, Failure, Now, Table, Verdict};
use crate::nginx::base::clock::now;
use crate::nginx::base::guard;
use crate::nginx::base::log::{self, BanBy, DEFAULT_LOG_LEVEL};
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::declared::DeclaredZone;
use crate::nginx::conf::loc::{self, LocConf};
use crate::nginx::crowdsec::handle as crowdsec;
use crate::nginx::fleet::node as fleet;
use crate::nginx::http::api::API_HANDLER;
use crate::nginx::http::body;
use crate::nginx::http::key;
use crate::nginx::http::realip;
use crate::nginx::http::record::{Outcome, RequestRecord};
use crate::nginx::state::zone::{self, BanFilter, Zone};

/// The request's location configuration, which lives as long as the
/// cycle, so it can be held while the request itself is changed.
fn loc_conf(r: &Request) -> Option<&'static LocConf> {
    Module::location_conf(r.as_ref())
}

/// A location with `authban_api` is never subject to authban: the endpoint
/// that lifts bans must not lock itself out.
fn is_api_location(r: &Request) -> bool {
    NgxHttpCoreModule::location_conf(r.as_ref())
        .and_then(|clcf| clcf.handler)
        .is_some_and(|h| ptr::eq(h as *const (), API_HANDLER as *const ()))
}

/// The client address after the realip module, read per request: realip
/// may rewrite it in every request of a keep-alive connection. IPv4-mapped
/// IPv6 (a dual-stack listener) is folded to IPv4, for keys and ignore
/// lists alike.
pub fn client_ip(r: &Request) -> Option<IpAddr> {
    // SAFETY: a live request has a connection whose sockaddr (if any) is
    // the struct its family names.
    unsafe {
        let sa = (*r.connection()).sockaddr.as_ref()?;
        match u32::from(sa.sa_family) {
            AF_INET => {
                let sin = &*ptr::from_ref(sa).cast::<sockaddr_in>();
                Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            AF_INET6 => {
                let sin6 = &*ptr::from_ref(sa).cast::<sockaddr_in6>();
                Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.__in6_u.__u6_addr8)).to_canonical())
            }
            _ => None,
        }
    }
}

/// What a phase handler tells nginx.
enum Decision {
    Decline,
    Refuse(u16),
}

// nginx calls phase handlers with a live request.
ngx::http_request_handler!(access_handler, |r: &mut Request| {
    // The common cases cost no guard: they cannot panic. The rest runs out
    // of line, in tail calls with their arguments in registers, so that the
    // common cases pay for no more registers than they use: `extern "C"`
    // functions, which never unwind (a panic escaping one aborts, and none
    // can: `checked` catches what its check may throw), so that nothing
    // stands between the calls and the handler's return.

    /// The full check; with `host`, that of the client address `a`, `b`
    /// (`Key::host_v6`'s form, as a native-endian u128's low and high
    /// halves), which the zone's filter did not clear.
    #[inline(never)]
    extern "C" fn checked(r: &mut Request, host: bool, a: u64, b: u64) -> ngx_int_t {
        if let Some(rc) = body::read_first(r, banned_by_address) {
            return rc;
        }
        let decision = if host {
            let host = Key::host_v6((u128::from(b) << 64 | u128::from(a)).to_ne_bytes());
            probed(r, host)
        } else {
            guard::catch(r.log(), "access handler", Decision::Decline, || access(r))
        };
        match decision {
            Decision::Decline => NGX_DECLINED as _,
            Decision::Refuse(status) => {
                // Finalizing here, instead of returning the status, keeps
                // `satisfy any` from letting another access module override
                // the ban.
                // SAFETY: finalizing from a phase handler and returning
                // NGX_DONE is what the core phase checkers do with a status.
                unsafe { ngx_http_finalize_request(r.into(), status as ngx_int_t) };
                NGX_DONE as _
            }
        }
    }

    /// The full check of a client the zone's filter did not clear, from
    /// its key: what `access` and `decide` do for a request without a
    /// record, where authban is on, the location is not the API's and
    /// debug logging is off. The ignore list, then (outside dry run) this
    /// worker's memory of the bans it found, then the table under the
    /// lock, the only part that needs the guard: the rest cannot panic.
    #[inline(always)]
    fn probed(r: &Request, host: Key) -> Decision {
        let Some(lcf) = loc_conf(r) else {
            return Decision::Decline;
        };
        let Some(zone) = lcf.zone() else {
            return Decision::Decline;
        };
        let outcome = if lcf.ignore.is_some() && lcf.is_ignored(host.ip()) {
            Outcome::Ignored
        } else {
            let dry_run = lcf.dry_run();
            let now = now();
            // A client this worker found banned, while no ban changed:
            // refused (and counted) without the lock, or the guard.
            let banned = (!dry_run && zone.refused_at_once(&host, now))
                || guard::catch(r.log(), "access handler", false, || {
                    let mut events = Events::default();
                    // Only the ban's end, with the generation it holds under.
                    let found =
                        zone.with_table(|t| match t.check(&host, now, !dry_run, &mut events) {
                            Verdict::Banned(ban) => Some((ban.until, t.ban_generation())),
                            Verdict::Clear => None,
                        });
                    if !events.is_empty() {
                        zone::log_events(zone, &events, r.log(), DEFAULT_LOG_LEVEL);
                    }
                    let Some(Some((until, generation))) = found else {
                        return false;
                    };
                    if !dry_run {
                        zone.remember_ban(&host, until, generation);
                    }
                    true
                });
            match banned {
                false => Outcome::Passed,
                true if dry_run => Outcome::DryRun,
                true => Outcome::Banned,
            }
        };
        conclude(RequestRecord::attach(r, lcf, outcome), lcf, outcome)
    }

    /// A host key's address as `checked` takes it.
    #[inline(always)]
    fn words(host: &Key) -> (u64, u64) {
        let addr = u128::from_ne_bytes(host.raw_addr());
        (addr as u64, (addr >> 64) as u64)
    }

    /// The client passes: recorded for the response to be judged by this
    /// location.
    #[inline(always)]
    fn pass(r: &mut Request, lcf: &'static LocConf) -> ngx_int_t {
        match RequestRecord::attach(r, lcf, Outcome::Passed) {
            Some(_) => NGX_DECLINED as _,
            None => checked(r, false, 0, 0),
        }
    }

    /// The zone holds bans: its lock-free filter clears the clients no ban
    /// can cover, from the keys `check` would look up, read straight from
    /// the address realip left (no `IpAddr`); the others take the full
    /// check. The ignore list is not looked at: an ignored client the
    /// filter clears is recorded as passed, which `$authban_status` and the
    /// counting tell apart themselves. Loads, a hash and compares: nothing
    /// here can panic. A policy counting networks takes `by_network`.
    #[inline(never)]
    extern "C" fn filtered(
        r: &mut Request,
        lcf: &'static LocConf,
        zone: &'static Zone,
        bans: BanFilter,
    ) -> ngx_int_t {
        // SAFETY: a live request has a connection whose sockaddr (if any)
        // is the struct its family names.
        let Some(sa) = (unsafe { (*r.connection()).sockaddr.as_ref() }) else {
            return checked(r, false, 0, 0);
        };
        // Each family's check inlined apart, so that its constants fold.
        let (host, maybe) = match u32::from(sa.sa_family) {
            AF_INET if zone.policy.ipv4_prefix >= 32 => {
                // SAFETY: the family says so.
                let sin = unsafe { &*ptr::from_ref(sa).cast::<sockaddr_in>() };
                let host = Key::host_v4(sin.sin_addr.s_addr.to_ne_bytes());
                (host, bans.may_cover(&host, &host))
            }
            // An IPv4-mapped address is an IPv4 key: both families whole.
            AF_INET6 if zone.policy.counts_hosts() => {
                // SAFETY: the family says so; every byte of the address
                // union is its 16-byte form.
                let octets = unsafe {
                    (*ptr::from_ref(sa).cast::<sockaddr_in6>())
                        .sin6_addr
                        .__in6_u
                        .__u6_addr8
                };
                let host = Key::host_v6(octets);
                (host, bans.may_cover(&host, &host))
            }
            AF_INET | AF_INET6 => return by_network(r, lcf, zone, bans),
            _ => return checked(r, false, 0, 0),
        };
        if maybe {
            let (a, b) = words(&host);
            return checked(r, true, a, b);
        }
        pass(r, lcf)
    }

    /// [`filtered`] for a policy counting networks: the network's key is
    /// looked up too.
    #[inline(never)]
    extern "C" fn by_network(
        r: &mut Request,
        lcf: &'static LocConf,
        zone: &'static Zone,
        bans: BanFilter,
    ) -> ngx_int_t {
        let Some(ip) = client_ip(r) else {
            return checked(r, false, 0, 0);
        };
        let host = Key::from_ip(ip);
        let net = host.within(zone.policy.ipv4_prefix, zone.policy.ipv6_prefix);
        if bans.may_cover(&host, &net) {
            let (a, b) = words(&host);
            return checked(r, true, a, b);
        }
        pass(r, lcf)
    }

    Status(match passes_at_once(r) {
        Ok(None) => NGX_DECLINED as _,
        Ok(Some((lcf, zone, bans))) => filtered(r, lcf, zone, bans),
        Err(()) => checked(r, false, 0, 0),
    })
});

// Subrequests (SSI, mirror, auth_request, add_before_body) skip the access
// phase; this refuses them before their content handler runs. nginx calls
// phase handlers with a live request.
ngx::http_request_handler!(precontent_handler, |r: &mut Request| {
    // Main requests were checked in the access phase: done at once.
    if r.is_main() {
        return Status(NGX_DECLINED as _);
    }
    let decision = guard::catch(r.log(), "precontent handler", Decision::Decline, || {
        subrequest_access(r)
    });
    Status(match decision {
        Decision::Decline => NGX_DECLINED as _,
        // The generic phase checker finalizes the subrequest with it.
        Decision::Refuse(status) => status as ngx_int_t,
    })
});

/// Whether the access check is done at once (`Ok(None)`): nothing was
/// decided for the request and authban is off here, or its zone holds no
/// ban at all (the request is then recorded as passed, one store, for the
/// response to be judged by this location). The address, the ignore list
/// and realip's trust are looked at only when a response fails or a ban
/// exists. Loads, compares and a store: nothing here can panic.
///
/// `Ok(Some(..))`: the zone holds bans, its ban filter decides; `Err`:
/// the full check decides.
#[inline(always)]
#[allow(clippy::type_complexity)]
fn passes_at_once(r: &Request) -> Result<Option<(&'static LocConf, &'static Zone, BanFilter)>, ()> {
    if RequestRecord::find(r).is_some() {
        return Err(());
    }
    let Some(lcf) = loc_conf(r) else {
        return Ok(None);
    };
    let Some(zone) = lcf.zone() else {
        return Ok(None);
    };
    if log::debug_enabled(r.log()) || is_api_location(r) {
        return Err(());
    }
    if lcf.beyond_plain {
        return several_pass_at_once(r, lcf);
    }
    if let Some(bans) = zone.bans_in_force() {
        // A key zone's filter is probed with the request's key, which
        // only the full check reads. Without bans it passes as any zone.
        if zone.is_key_zone() {
            return Err(());
        }
        return Ok(Some((lcf, zone, bans)));
    }
    match RequestRecord::attach(r, lcf, Outcome::Passed) {
        Some(_) => Ok(None),
        None => Err(()),
    }
}

/// [`passes_at_once`] for a location with several zones, a key zone, or
/// `authban_read_body`: done at once while none of its zones holds a ban
/// and no body is to be read; else the full check.
#[inline(never)]
#[allow(clippy::type_complexity)]
fn several_pass_at_once(
    r: &Request,
    lcf: &'static LocConf,
) -> Result<Option<(&'static LocConf, &'static Zone, BanFilter)>, ()> {
    // `authban_read_body`: `checked` reads the body first.
    if lcf.read_body() || lcf.all_zones().any(|d| d.zone.bans_in_force().is_some()) {
        return Err(());
    }
    match RequestRecord::attach(r, lcf, Outcome::Passed) {
        Some(_) => Ok(None),
        None => Err(()),
    }
}

fn access(r: &Request) -> Decision {
    let record = RequestRecord::find(r);
    let lcf = loc_conf(r);
    let zone = lcf.and_then(LocConf::zone);
    // Where authban is off and nothing was decided before: done.
    if record.is_none() && zone.is_none() {
        return Decision::Decline;
    }
    if is_api_location(r) {
        return Decision::Decline;
    }
    if let Some(status) = record.and_then(RequestRecord::refused_with) {
        log::debug_refused_again(r.log(), status, false);
        return Decision::Refuse(status);
    }
    if zone.is_none() {
        return Decision::Decline;
    }
    let Some(checked) = decide(r, Check::Access) else {
        return Decision::Decline;
    };
    let Checked {
        outcome,
        lcf,
        zone_index,
        ..
    } = checked;
    let record = match record {
        Some(record) => {
            // The first check's location keeps judging the response; a
            // later location's zone can still refuse.
            if outcome == Outcome::Banned {
                record.set_outcome(outcome);
            }
            Some(record)
        }
        None => RequestRecord::attach(r, lcf, outcome),
    };
    if let Some(record) = record.filter(|rec| core::ptr::eq(rec.lcf(), lcf)) {
        record.set_decided_by(zone_index);
    }
    conclude(record, lcf, outcome)
}

/// What the access phase does with a check's outcome, now in the request's
/// `record`: a banned client is refused with the location's status, which
/// the record keeps for wherever the request is sent next.
#[inline(always)]
fn conclude(record: Option<RequestRecord>, lcf: &LocConf, outcome: Outcome) -> Decision {
    if outcome != Outcome::Banned {
        return Decision::Decline;
    }
    let status = lcf.refuse_status();
    if let Some(record) = record {
        record.set_refused_with(status);
    }
    Decision::Refuse(status)
}

fn subrequest_access(r: &Request) -> Decision {
    if is_api_location(r) {
        return Decision::Decline;
    }
    if let Some(status) = RequestRecord::find(r).and_then(RequestRecord::refused_with) {
        log::debug_refused_again(r.log(), status, true);
        return Decision::Refuse(status);
    }
    match decide(r, Check::Subrequest) {
        Some(checked) if checked.outcome == Outcome::Banned => {
            let status = checked.lcf.refuse_status();
            log::debug_subrequest_refused(r.log(), &checked.zone.name, checked.ip, status);
            Decision::Refuse(status)
        }
        _ => Decision::Decline,
    }
}

fn check(zone: &Zone, ip: IpAddr, refusing: bool, log: *mut nginx_sys::ngx_log_t) -> Verdict {
    // Every ban holding the address counts, whatever prefix made it: the
    // policy's network, a wider one, or one of a policy before a reload.
    let host = Key::from_ip(ip);
    let net = if zone.policy.counts_hosts() {
        host
    } else {
        zone.policy.key_of(ip)
    };
    check_keys(zone, &host, &net, refusing, log)
}

/// The table's verdict on `host`, counted under `net`, unless the zone's
/// lock-free filter clears it first.
fn check_keys(
    zone: &Zone,
    host: &Key,
    net: &Key,
    refusing: bool,
    log: *mut nginx_sys::ngx_log_t,
) -> Verdict {
    if !zone.may_be_banned(host, net) {
        return Verdict::Clear;
    }
    let mut events = Events::default();
    let verdict = zone
        .with_table(|t| t.check(host, now(), refusing, &mut events))
        .unwrap_or(Verdict::Clear);
    zone::log_events(zone, &events, log, DEFAULT_LOG_LEVEL);
    verdict
}

/// The familiar table's key of the pair (`key`, the network of `ip`) in a
/// `familiar=` key zone; `None` for an address realip trusts (it found no
/// client address: the network would be the proxy's, every client's).
fn familiar_pair(r: &Request, zone: &Zone, key: &Key, ip: IpAddr) -> Option<Key> {
    let hasher = zone.key_zone()?.hasher()?;
    if realip::is_trusted_proxy(r.as_ref(), ip) {
        return None;
    }
    Some(hasher.pair_key(key, &account::familiar_network(ip)))
}

/// Whether `pair` is familiar now in `zone`'s familiar table.
fn is_familiar_pair(fam: &Table<'_>, pair: &Key, now: Now) -> bool {
    fam.lookup(pair, now).is_some_and(|s| s.ban.is_some())
}

/// A `familiar=` key zone's verdict on `key` for a client at `ip`: a ban
/// of the key does not hold for a network familiar with it (nor is that
/// request counted as refused).
fn check_key_familiar(r: &Request, zone: &Zone, key: &Key, ip: IpAddr, refusing: bool) -> Verdict {
    if !zone.may_be_banned(key, key) {
        return Verdict::Clear;
    }
    let Some(pair) = familiar_pair(r, zone, key, ip) else {
        return check_keys(zone, key, key, refusing, r.log());
    };
    let now = now();
    let mut events = Events::default();
    let verdict = zone
        .with_familiar(|t, fam| {
            let familiar = is_familiar_pair(fam, &pair, now);
            match t.check(key, now, refusing && !familiar, &mut events) {
                Verdict::Banned(_) if familiar => Verdict::Clear,
                verdict => verdict,
            }
        })
        .unwrap_or(Verdict::Clear);
    zone::log_events(zone, &events, r.log(), DEFAULT_LOG_LEVEL);
    verdict
}

/// Whether a zone of the location that judges the client's address bans
/// it (and refuses: not in dry run, not ignored): the request is refused
/// whatever its body says, so `authban_read_body` does not read it. The
/// access check that follows refuses it and counts the refusal.
fn banned_by_address(r: &Request) -> bool {
    let Some(lcf) = loc_conf(r) else {
        return false;
    };
    // Most of the time no address zone holds a ban: nothing to look up.
    let mut holding = lcf
        .all_zones()
        .filter(|d| !d.zone.is_key_zone() && d.zone.bans_in_force().is_some())
        .peekable();
    if lcf.dry_run() || holding.peek().is_none() {
        return false;
    }
    let Some(ip) = client_ip(r).filter(|&ip| !lcf.is_ignored(ip)) else {
        return false;
    };
    holding.any(|d| matches!(check(&d.zone, ip, false, r.log()), Verdict::Banned(_)))
}

/// A zone's verdict on this request: on its client address, or on its
/// key (a key zone; an empty key is clear).
fn verdict_of(r: &Request, zone: &Zone, ip: IpAddr, refusing: bool) -> Verdict {
    if zone.is_key_zone() {
        // No ban in the zone: its key need not be read, nor hashed.
        if zone.bans_in_force().is_none() {
            return Verdict::Clear;
        }
        match key::of(r, zone) {
            Some((k, _)) if zone.has_familiar_table() => {
                check_key_familiar(r, zone, &k, ip, refusing)
            }
            // A hash: no network holds it.
            Some((k, _)) => check_keys(zone, &k, &k, refusing, r.log()),
            None => Verdict::Clear,
        }
    } else {
        check(zone, ip, refusing, r.log())
    }
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

// Counts a failure as its response header goes out: before the client can
// see the answer and try again, on this or any other worker. nginx calls
// header filters with a live request.
ngx::http_request_handler!(header_filter, |r: &mut Request| {
    // A 2xx passes `may_count` only where some zone has `familiar=`.
    if may_count(r) {
        guard::catch(r.log(), "header filter", (), || judge_response(r));
    }
    // SAFETY: the next filter was taken from the chain at configuration,
    // and is called as nginx would, with the request nginx passed.
    Status(unsafe { NEXT_HEADER_FILTER.map_or(NGX_OK as _, |next| next(r.into())) })
});

// Counts failures that never sent a header (444, a client that left).
// nginx calls phase handlers with a live request.
ngx::http_request_handler!(log_handler, |r: &mut Request| {
    if may_count(r) {
        guard::catch(r.log(), "log handler", (), || count_failure(r));
    }
    Status(NGX_OK as _)
});

/// A response the header filter looks at: a success that may make its
/// client familiar, or a failure to count.
#[inline(never)]
fn judge_response(r: &Request) {
    if (200..300).contains(&final_status(r.as_ref())) {
        note_success(r);
    } else {
        count_failure(r);
    }
}

/// The phase handlers `module` installs.
pub const ACCESS_HANDLER: ngx_http_handler_pt = Some(access_handler);
pub const PRECONTENT_HANDLER: ngx_http_handler_pt = Some(precontent_handler);
pub const LOG_HANDLER: ngx_http_handler_pt = Some(log_handler);

fn final_status(r: &ngx_http_request_t) -> usize {
    // The same rule as the access log's $status.
    if r.err_status != 0 {
        r.err_status
    } else {
        r.headers_out.status
    }
}

/// Whether the response may be a failure to count: most are of a status
/// no location counts, and are done with here, before any other work.
fn may_count(r: &Request) -> bool {
    r.is_main() && loc::may_be_fail_status(final_status(r.as_ref()))
}

/// A success (2xx) of the main request: for each `familiar=` key zone of
/// the location that judges it whose key the request has, the pair (key,
/// client network) is made familiar for the zone's time, or its time
/// renewed. Not for a refused request, nor an address realip trusts.
fn note_success(r: &Request) {
    let lcf = match RequestRecord::find(r) {
        Some(record) if record.refused_with().is_some() => return,
        Some(record) => record.lcf(),
        None => match loc_conf(r) {
            Some(lcf) if !is_api_location(r) => lcf,
            _ => return,
        },
    };
    let Some(ip) = client_ip(r) else { return };
    let now = now();
    for declared in lcf.all_zones() {
        let zone = &*declared.zone;
        let Some(secs) = zone.familiar_secs() else {
            continue;
        };
        let Some(pair) = key::of(r, zone).and_then(|(k, _)| familiar_pair(r, zone, &k, ip)) else {
            continue;
        };
        // A pair renewed in the last 64th of its time is left as it is:
        // a busy owner's every call does not rewrite it.
        let fresh_from = now.secs().saturating_add(secs - secs / 64);
        let mut events = Events::default();
        zone.with_familiar(|_, fam| {
            let fresh = fam
                .lookup(&pair, now)
                .and_then(|s| s.ban)
                .is_some_and(|b| b.until >= fresh_from);
            if !fresh {
                fam.ban(&pair, now, secs, &mut events);
            }
        });
        // The familiar table's events (pairs that ran out, or were dropped
        // for room) are no bans: not logged.
        log::debug_familiar(r.log(), &zone.name, ip, secs);
    }
}

/// Counts the main request's final status once. Subrequests never count:
/// what they answer reaches the client through the main request's status
/// (an auth_request's 401 becomes the request's 401), which counts.
fn count_failure(r: &Request) {
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
            let Some(record) = RequestRecord::attach(r, lcf, Outcome::Passed) else {
                return;
            };
            record
        }
    };
    let lcf = record.lcf();
    if lcf.zone().is_none() {
        return;
    }
    let status = final_status(r.as_ref());
    if record.counted()
        || record.refused_with().is_some()
        || !lcf.fail_status().iter().any(|&s| usize::from(s) == status)
    {
        return;
    }
    record.set_counted();
    // The address as realip left it, which an internal redirect keeps.
    let Some(ip) = client_ip(r) else { return };
    if lcf.is_ignored(ip) {
        return;
    }
    let log = r.log();
    let trusted_proxy = realip::is_trusted_proxy(r.as_ref(), ip);
    for declared in lcf.all_zones() {
        let zone = &*declared.zone;
        let (key, value) = if zone.is_key_zone() {
            match key::of(r, zone) {
                // A familiar network's failures do not count toward the
                // key (its address zone, if any, still counts them).
                Some((k, _)) if familiar_failure(r, zone, &k, ip) => {
                    log::debug_familiar_failure(log, &zone.name, ip, status);
                    continue;
                }
                Some((k, v)) => (k, Some(v)),
                None => continue,
            }
        } else {
            // A failure left on an address realip trusts is not charged to
            // it: banning the proxy would ban every client behind it. A key
            // zone counts it all the same.
            if trusted_proxy {
                log::debug_trusted_proxy(log, &zone.name, ip, status);
                zone::log_trusted_proxy_failure(zone, ip, log);
                continue;
            }
            (zone.policy.key_of(ip), None)
        };
        count_in(lcf, declared, &key, value, status, log);
    }
}

/// Whether a failure of `key` from `ip` comes from a network familiar with
/// it, in a zone with a familiar table.
fn familiar_failure(r: &Request, zone: &Zone, key: &Key, ip: IpAddr) -> bool {
    if !zone.has_familiar_table() {
        return false;
    }
    let Some(pair) = familiar_pair(r, zone, key, ip) else {
        return false;
    };
    let now = now();
    zone.with_familiar(|_, fam| is_familiar_pair(fam, &pair, now))
        .unwrap_or(false)
}

/// Counts one failure of `key` in a zone of the location `lcf` (`value`: a
/// key zone's key as the request gave it).
fn count_in(
    lcf: &'static LocConf,
    declared: &'static DeclaredZone,
    key: &Key,
    value: Option<&[u8]>,
    status: usize,
    log: *mut nginx_sys::ngx_log_t,
) {
    let zone = &*declared.zone;
    // A dry-run location tells the fleet nothing: a canary trying a stricter
    // policy must not make other nodes ban. Otherwise the fleet counts the
    // failure too (it is only queued), noted under the one lock that
    // counts it here.
    let dry_run = lcf.dry_run();
    let sent = declared
        .fleet
        .as_ref()
        .filter(|_| !dry_run)
        .and_then(|f| fleet::send_failure(f, key));
    let mut events = Events::default();
    let result = zone.with_table(|t| {
        if let Some(sent) = sent {
            fleet::note_failure(t, sent);
        }
        t.record_failure(key, now(), &mut events)
    });
    match result {
        Some(Failure::Counted(failures)) => {
            log::debug_counted(log, &zone.name, key, status, failures);
        }
        Some(Failure::Banned(ban)) => {
            log::debug_counted(log, &zone.name, key, status, ban.failures);
            let by = if dry_run {
                BanBy::DryRun
            } else {
                BanBy::Failures
            };
            let bantime = zone.policy.ban_secs(ban.offence.saturating_sub(1));
            match value {
                Some(value) => {
                    log::ban_key(log, lcf.log_level(), &zone.name, value, &ban, bantime, by)
                }
                None => log::ban(log, lcf.log_level(), &zone.name, &ban, bantime, by, false),
            }
            if !dry_run {
                match &declared.fleet {
                    Some(f) => fleet::ban_counted(f, &ban),
                    None => {
                        if let Some(cs) = declared.crowdsec.get() {
                            crowdsec::ban_made(cs, &ban);
                        }
                    }
                }
            }
        }
        Some(Failure::AlreadyBanned) => {
            log::debug_already_banned(log, &zone.name, key, status);
        }
        None => {}
    }
    zone::log_events(zone, &events, log, lcf.log_level());
}

/// Who asks for a verdict.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Check {
    /// The access phase (refusals count in the zone's statistics).
    Access,
    /// A subrequest's precontent check (so do these).
    Subrequest,
    /// `$authban_status` where no check ran: counts nothing.
    Variable,
}

/// A verdict, and what it was taken with.
pub struct Checked {
    pub outcome: Outcome,
    pub lcf: &'static LocConf,
    /// The zone that banned the request (else the location's first), and
    /// its place among the location's zones.
    pub zone: &'static Zone,
    pub zone_index: usize,
    pub ip: IpAddr,
}

/// The verdict for this request where authban is on (`None` elsewhere, or
/// for a client without an IP address). A check of the access phase or of
/// a subrequest counts a refusal in the zone's statistics, outside dry run.
pub fn decide(r: &Request, by: Check) -> Option<Checked> {
    let lcf = loc_conf(r)?;
    let first = lcf.zone()?;
    let ip = client_ip(r)?;
    let mut decided = first;
    let mut zone_index = 0;
    let outcome = if lcf.is_ignored(ip) {
        Outcome::Ignored
    } else {
        let dry_run = lcf.dry_run();
        let refusing = by != Check::Variable && !dry_run;
        // Refused if any of the location's zones bans it.
        let banning = lcf
            .all_zones()
            .enumerate()
            .find(|(_, d)| matches!(verdict_of(r, &d.zone, ip, refusing), Verdict::Banned(_)));
        match banning {
            None => Outcome::Passed,
            Some((i, d)) => {
                decided = &d.zone;
                zone_index = i;
                if dry_run {
                    Outcome::DryRun
                } else {
                    Outcome::Banned
                }
            }
        }
    };
    if by != Check::Variable && log::debug_enabled(r.log()) {
        let key = key_text(r, decided, ip);
        log::debug_check(r.log(), &decided.name, ip, &key, outcome.name());
    }
    Some(Checked {
        outcome,
        lcf,
        zone: decided,
        zone_index,
        ip,
    })
}

/// The key `zone` judges this request by, as `$authban_key` and the debug
/// lines show it: the address or network, or a key zone's hash (never its
/// value); empty for a key zone the request gives no key.
pub fn key_text(r: &Request, zone: &Zone, ip: IpAddr) -> String {
    if zone.is_key_zone() {
        key::of(r, zone).map_or_else(String::new, |(k, _)| hash_text(&k))
    } else {
        zone.policy.key_of(ip).to_string()
    }
}
