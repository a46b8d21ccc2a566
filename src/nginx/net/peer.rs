//! A connection to a peer (Redis, CrowdSec's LAPI) on nginx's event loop:
//! its address in the C layout nginx takes, `ngx_event_connect_peer`, the
//! owner its events find, and its close.

use core::ptr;
use std::net::SocketAddr;

use nginx_sys::{
    ngx_close_connection, ngx_connection_t, ngx_destroy_pool, ngx_event_connect_peer,
    ngx_event_get_peer, ngx_event_t, ngx_log_t, ngx_peer_connection_t, ngx_str_t, NGX_AGAIN,
    NGX_OK,
};

use crate::nginx::net::tls::Tls;

/// An address in the C layout `ngx_event_connect_peer` takes.
pub enum RawAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl RawAddr {
    pub fn of(addr: SocketAddr) -> RawAddr {
        match addr {
            SocketAddr::V4(a) => RawAddr::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(*a.ip()).to_be(),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => RawAddr::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    fn as_ptr_len(&mut self) -> (*mut nginx_sys::sockaddr, u32) {
        match self {
            RawAddr::V4(a) => (
                ptr::from_mut(a).cast(),
                core::mem::size_of::<libc::sockaddr_in>() as u32,
            ),
            RawAddr::V6(a) => (
                ptr::from_mut(a).cast(),
                core::mem::size_of::<libc::sockaddr_in6>() as u32,
            ),
        }
    }
}

/// A connection `connect` started.
pub struct Started {
    pub connection: *mut ngx_connection_t,
    /// Made at once (a loopback peer may be); else it is made when its
    /// write event fires.
    pub connected: bool,
}

/// Starts a non-blocking connection to `addr`, named `name` in nginx's
/// lines, which log to `log`. The address, name and log must outlive the
/// connection.
pub fn connect(
    addr: &mut RawAddr,
    name: &mut ngx_str_t,
    log: &mut ngx_log_t,
) -> Result<Started, String> {
    let (sockaddr, socklen) = addr.as_ptr_len();
    // SAFETY: all-zero is a valid peer (null pointers, no callbacks),
    // which is how nginx's own callers start one.
    let mut peer: ngx_peer_connection_t = unsafe { core::mem::zeroed() };
    peer.sockaddr = sockaddr;
    peer.socklen = socklen;
    peer.name = name;
    peer.get = Some(ngx_event_get_peer);
    peer.log = log;
    peer.tries = 1;
    // SAFETY: the peer is complete; its address, name and log outlive the
    // connection, as the caller guarantees.
    let rc = unsafe { ngx_event_connect_peer(&mut peer) };
    if peer.connection.is_null() || (rc != NGX_OK as isize && rc != NGX_AGAIN as isize) {
        return Err(format!(
            "connect() failed: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(Started {
        connection: peer.connection,
        connected: rc == NGX_OK as isize,
    })
}

/// What a connection [`connect`] made belongs to: its `data`, which the
/// caller set to its owner.
///
/// # Safety
/// `ev` is a read or write event of such a connection, whose `data` is a
/// `T` never freed while the worker runs.
pub unsafe fn owner_of<T>(ev: *mut ngx_event_t) -> &'static mut T {
    // SAFETY: as the caller guarantees.
    unsafe {
        let c = (*ev).data.cast::<ngx_connection_t>();
        &mut *(*c).data.cast::<T>()
    }
}

/// Closes a connection [`connect`] made: TLS ended without waiting for
/// the peer, and the pool made for it destroyed.
///
/// # Safety
/// `c` is a live connection of this worker; nothing refers to it, nor to
/// its pool, afterwards.
pub unsafe fn close(c: *mut ngx_connection_t) {
    // SAFETY: as the caller guarantees.
    unsafe {
        Tls::shutdown(c);
        let pool = (*c).pool;
        ngx_close_connection(c);
        if !pool.is_null() {
            ngx_destroy_pool(pool);
        }
    }
}
