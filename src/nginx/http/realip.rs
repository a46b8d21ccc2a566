//! Which addresses realip trusts (`set_real_ip_from`): a failure left on such
//! an address is the proxy's, not a client's, and is never charged to it.
//!
//! realip keeps its configuration private, so this reads the one field every
//! nginx since 1.3 has put first in it: the array of trusted networks. The
//! module is found by name, so a build without realip simply trusts nobody.

use core::ffi::CStr;
use core::sync::atomic::{AtomicUsize, Ordering};
use std::net::IpAddr;

use nginx_sys::{ngx_array_t, ngx_cidr_t, ngx_conf_t, ngx_http_request_t, AF_INET, AF_INET6};

const NOT_LOADED: usize = usize::MAX;

/// realip's `ctx_index` in the cycle being configured or run.
static REALIP_CTX_INDEX: AtomicUsize = AtomicUsize::new(NOT_LOADED);

/// Looks realip up among the cycle's modules (postconfiguration).
pub fn find_module(cf: &ngx_conf_t) {
    let mut index = NOT_LOADED;
    // SAFETY: cf->cycle->modules holds modules_n module pointers during
    // configuration; their names are static C strings.
    unsafe {
        let cycle = &*cf.cycle;
        if !cycle.modules.is_null() {
            let modules = core::slice::from_raw_parts(cycle.modules, cycle.modules_n);
            for &module in modules.iter().filter(|m| !m.is_null()) {
                let name = (*module).name;
                if !name.is_null() && CStr::from_ptr(name).to_bytes() == b"ngx_http_realip_module" {
                    index = (*module).ctx_index;
                }
            }
        }
    }
    REALIP_CTX_INDEX.store(index, Ordering::Relaxed);
}

/// Whether `ip` is listed in `set_real_ip_from` for `r`'s location.
pub fn is_trusted_proxy(r: &ngx_http_request_t, ip: IpAddr) -> bool {
    let index = REALIP_CTX_INDEX.load(Ordering::Relaxed);
    if index == NOT_LOADED || r.loc_conf.is_null() {
        return false;
    }
    // SAFETY: loc_conf has a slot per http module; realip's holds its
    // location configuration, whose first field is `ngx_array_t *from`
    // (null, or an array of ngx_cidr_t) in every nginx this module builds
    // for (1.22 and later; unchanged since 1.3).
    let from = unsafe {
        let conf = *r.loc_conf.add(index);
        if conf.is_null() {
            return false;
        }
        (*conf.cast::<*const ngx_array_t>()).as_ref()
    };
    let Some(from) = from else { return false };
    if from.elts.is_null() || from.size != core::mem::size_of::<ngx_cidr_t>() {
        return false;
    }
    // SAFETY: the array holds nelts ngx_cidr_t, checked by its element size.
    let cidrs = unsafe { core::slice::from_raw_parts(from.elts.cast::<ngx_cidr_t>(), from.nelts) };
    cidrs.iter().any(|cidr| contains(cidr, ip))
}

fn contains(cidr: &ngx_cidr_t, ip: IpAddr) -> bool {
    match (u32::try_from(cidr.family).unwrap_or(0), ip) {
        (AF_INET, IpAddr::V4(v4)) => {
            // SAFETY: the family says which member of the union is set.
            let net = unsafe { cidr.u.in_ };
            let addr = u32::from(v4).to_be();
            addr & net.mask == net.addr
        }
        (AF_INET6, IpAddr::V6(v6)) => {
            // SAFETY: as above; in6_addr is a union of byte, word and dword
            // views of the same 16 bytes.
            let (addr, mask) = unsafe {
                let net = cidr.u.in6;
                (net.addr.__in6_u.__u6_addr8, net.mask.__in6_u.__u6_addr8)
            };
            v6.octets()
                .iter()
                .zip(addr.iter().zip(mask.iter()))
                .all(|(b, (a, m))| b & m == *a)
        }
        // An IPv4 client of an IPv6 listener is folded to IPv4 before this.
        (AF_INET6, IpAddr::V4(v4)) => contains(cidr, IpAddr::V6(v4.to_ipv6_mapped())),
        _ => false,
    }
}
