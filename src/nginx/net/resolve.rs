//! A fleet's Redis host name, resolved again while nginx runs with nginx's
//! own asynchronous resolver (`resolver` at the http level), as nginx does
//! for `proxy_pass` with variables: on the event loop, never blocking a
//! worker. Without a `resolver`, the name is only resolved when nginx reads
//! its configuration.

use core::cell::Cell;
use core::ffi::{c_void, CStr};
use core::ptr;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use nginx_sys::{
    ngx_http_core_loc_conf_t, ngx_msec_t, ngx_resolve_name, ngx_resolve_name_done,
    ngx_resolve_start, ngx_resolver_ctx_t, ngx_resolver_strerror, ngx_resolver_t, ngx_str_t,
    NGX_OK,
};

/// `resolver_timeout`'s default.
const DEFAULT_TIMEOUT_MS: ngx_msec_t = 30_000;

/// nginx's resolver of the http level, if `resolver` names servers there.
#[derive(Clone, Copy)]
pub struct Resolver {
    resolver: *mut ngx_resolver_t,
    timeout: ngx_msec_t,
}

impl Resolver {
    /// The resolver `http_core` (the http level's core location
    /// configuration) holds, if configured: nginx gives every http block a
    /// resolver, one with no servers when none is configured.
    ///
    /// # Safety
    /// `http_core` is null or the running cycle's http-level configuration.
    pub unsafe fn of(http_core: *const ngx_http_core_loc_conf_t) -> Option<Resolver> {
        // SAFETY: as the caller guarantees; the resolver lives as long as
        // the cycle.
        let clcf = unsafe { http_core.as_ref()? };
        let configured = unsafe { clcf.resolver.as_ref() }.is_some_and(|r| r.connections.nelts > 0);
        // The http level itself is never merged: an unset timeout is
        // nginx's default there.
        let timeout = match clcf.resolver_timeout {
            ngx_msec_t::MAX => DEFAULT_TIMEOUT_MS,
            set => set,
        };
        configured.then_some(Resolver {
            resolver: clcf.resolver,
            timeout,
        })
    }
}

/// What a resolution ended with: an address, or why not.
pub type Outcome = Result<IpAddr, String>;

/// One resolution at a time, in its own allocation (nginx keeps a pointer
/// to it while the query runs, and may answer before `start` returns).
pub struct Resolution {
    ctx: Cell<*mut ngx_resolver_ctx_t>,
    outcome: Cell<Option<Outcome>>,
    in_start: Cell<bool>,
    /// Called with `owner` when an answer comes later than `start`.
    on_done: fn(*mut c_void),
    owner: *mut c_void,
}

impl Resolution {
    pub fn new(owner: *mut c_void, on_done: fn(*mut c_void)) -> Box<Resolution> {
        Box::new(Resolution {
            ctx: Cell::new(ptr::null_mut()),
            outcome: Cell::new(None),
            in_start: Cell::new(false),
            on_done,
            owner,
        })
    }

    /// Asks for `name`'s address. An answer nginx has at once (cached) is
    /// ready when this returns ([`Resolution::take`]); a later one calls
    /// `on_done`.
    ///
    /// `name` must stay valid until the answer (it is the fleet's URL,
    /// alive for the cycle).
    pub fn start(&self, resolver: Resolver, name: ngx_str_t) -> Result<(), String> {
        self.cancel();
        self.outcome.set(None);
        // SAFETY: a configured resolver of the running cycle; no temporary
        // context (the name is not an address literal).
        let ctx = unsafe { ngx_resolve_start(resolver.resolver, ptr::null_mut()) };
        if ctx.is_null() || ctx as isize == -1 {
            return Err("cannot start resolving".into());
        }
        // SAFETY: a fresh context nginx allocated for us.
        unsafe {
            (*ctx).name = name;
            (*ctx).handler = Some(on_resolved);
            (*ctx).data = ptr::from_ref(self).cast_mut().cast();
            (*ctx).timeout = resolver.timeout;
        }
        self.ctx.set(ctx);
        self.in_start.set(true);
        // SAFETY: the context is complete; on error nginx frees it.
        let rc = unsafe { ngx_resolve_name(ctx) };
        self.in_start.set(false);
        if rc != NGX_OK as isize {
            self.ctx.set(ptr::null_mut());
            return Err("cannot start resolving".into());
        }
        Ok(())
    }

    /// The answer, once it came.
    pub fn take(&self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// Gives up a query still running (a worker exiting).
    pub fn cancel(&self) {
        let ctx = self.ctx.replace(ptr::null_mut());
        if !ctx.is_null() {
            // SAFETY: our context, still registered with the resolver.
            unsafe { ngx_resolve_name_done(ctx) };
        }
    }
}

/// The first address of an answer, or nginx's reason for none.
fn outcome_of(ctx: &ngx_resolver_ctx_t) -> Outcome {
    if ctx.state != 0 || ctx.naddrs == 0 || ctx.addrs.is_null() {
        // SAFETY: nginx's static, NUL-terminated error strings.
        let why = unsafe { CStr::from_ptr(ngx_resolver_strerror(ctx.state)) };
        return Err(format!("cannot resolve: {}", why.to_string_lossy()));
    }
    // SAFETY: `naddrs` > 0 addresses, each a sockaddr of its family.
    unsafe {
        let sa = (*ctx.addrs).sockaddr;
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let sin = &*sa.cast::<libc::sockaddr_in>();
                Ok(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))))
            }
            libc::AF_INET6 => {
                let sin6 = &*sa.cast::<libc::sockaddr_in6>();
                Ok(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
            }
            _ => Err("cannot resolve: no IP address".into()),
        }
    }
}

unsafe extern "C" fn on_resolved(ctx: *mut ngx_resolver_ctx_t) {
    // SAFETY: nginx calls this once with the context `start` set up, whose
    // data is the Resolution (boxed, alive until its link stops).
    let resolution = unsafe { &*(*ctx).data.cast::<Resolution>() };
    // SAFETY: as above.
    let outcome = outcome_of(unsafe { &*ctx });
    resolution.ctx.set(ptr::null_mut());
    // SAFETY: done with the context; nginx frees it.
    unsafe { ngx_resolve_name_done(ctx) };
    resolution.outcome.set(Some(outcome));
    if !resolution.in_start.get() {
        (resolution.on_done)(resolution.owner);
    }
}
