//! `authban_read_body`: the access handler reads a small form body before
//! it decides, so that `$authban_param_NAME` (and what is keyed on it)
//! sees a POSTed login's parameters.
//!
//! As nginx's mirror module does: `ngx_http_read_client_request_body`, then
//! the phases resume from the access handler, which runs again with the
//! body read. The body stays in memory (one buffer where nginx can) and is
//! kept for the upstream (`preserve_body`), which sends it as it would
//! have. Whether authban read it is told by the body's post handler, which
//! survives internal redirects, unlike a module context.

use core::ptr;
use std::borrow::Cow;

use nginx_sys::{
    ngx_http_core_run_phases, ngx_http_finalize_request, ngx_http_read_client_request_body,
    ngx_http_request_t, ngx_int_t, NGX_DONE, NGX_ERROR, NGX_HTTP_SPECIAL_RESPONSE,
};
use ngx::http::{HttpModuleLocationConf, NgxHttpCoreModule, Request};

use crate::engine::param;
use crate::nginx::base::{guard, log};
use crate::nginx::conf::accessor::Module;
use crate::nginx::conf::loc::LocConf;

/// What the access handler returns first where `authban_read_body` is on:
/// `Some(NGX_DONE)` while the body is read (the handler runs again once it
/// is), `Some(status)` if reading failed (nginx's 400, 413, 500), `None`
/// to go on deciding (a body read already, or one not to read).
/// `refused_anyway`: whether the request is refused whatever its body
/// says (a ban of its address); its body is then not read.
pub fn read_first(r: &mut Request, refused_anyway: fn(&Request) -> bool) -> Option<ngx_int_t> {
    let lcf: &LocConf = Module::location_conf(r.as_ref())?;
    if !lcf.read_body() {
        return None;
    }
    guard::catch(r.log(), "authban_read_body", None, || {
        start(r, refused_anyway)
    })
}

fn start(r: &mut Request, refused_anyway: fn(&Request) -> bool) -> Option<ngx_int_t> {
    let req: &ngx_http_request_t = r.as_ref();
    // The second run, with the body read (or none to read).
    if !r.is_main() || !req.request_body.is_null() {
        return None;
    }
    if let Some(why) = not_to_read(r) {
        log::debug_body(r.log(), why);
        return None;
    }
    if refused_anyway(r) {
        log::debug_body(r.log(), "not read: the client's address is banned");
        return None;
    }
    let req: *mut ngx_http_request_t = r.into();
    // SAFETY: a live main request whose body nobody read or discarded, in
    // its access phase: nginx reads it and calls `body_read` once done
    // (at once if it came with the header), holding a reference until we
    // finalize with NGX_DONE.
    let rc = unsafe {
        (*req).set_request_body_in_single_buf(1);
        ngx_http_read_client_request_body(req, Some(body_read))
    };
    if rc >= NGX_HTTP_SPECIAL_RESPONSE as ngx_int_t || rc == NGX_ERROR as ngx_int_t {
        // nginx dropped its reference; the access phase finalizes with it.
        return Some(rc);
    }
    // SAFETY: drops the reference the read took, as the mirror module does;
    // `body_read` resumes the phases.
    unsafe { ngx_http_finalize_request(req, NGX_DONE as ngx_int_t) };
    Some(NGX_DONE as ngx_int_t)
}

/// Why this request's body is not read, if it is not.
fn not_to_read(r: &Request) -> Option<&'static str> {
    let req: &ngx_http_request_t = r.as_ref();
    if req.discard_body() != 0 {
        return Some("not read: discarded");
    }
    let length = req.headers_in.content_length_n;
    let chunked = req.headers_in.chunked() != 0;
    if length <= 0 && !chunked {
        return Some("not read: none");
    }
    // SAFETY: null or the request's Content-Type header.
    let content_type = unsafe { req.headers_in.content_type.as_ref() };
    if !content_type.is_some_and(|h| param::is_form(h.value.as_bytes())) {
        return Some("not read: not application/x-www-form-urlencoded");
    }
    let limit = NgxHttpCoreModule::location_conf(req).map_or(0, |c| c.client_body_buffer_size);
    // A chunked body's length is known only once read: one larger than the
    // buffer ends in a temporary file, which `form` does not read.
    if !chunked && usize::try_from(length).map_or(true, |l| l > limit) {
        return Some("not read: larger than client_body_buffer_size");
    }
    None
}

/// The body's post handler: the phases resume at the access handler.
///
/// # Safety
/// `r` is the live request whose body nginx read, as nginx passes it.
unsafe extern "C" fn body_read(r: *mut ngx_http_request_t) {
    // SAFETY: nginx passes the live request whose body it read; what
    // follows is the mirror module's body handler.
    unsafe {
        log::debug_body((*(*r).connection).log, "read");
        // Kept for the upstream, which would free it after sending.
        (*r).set_preserve_body(1);
        (*r).write_event_handler = Some(ngx_http_core_run_phases);
        ngx_http_core_run_phases(r);
    }
}

/// The form body authban read for this request, in memory: `None` if it
/// read none, or nginx wrote it to a temporary file.
pub fn form(r: &Request) -> Option<Cow<'_, [u8]>> {
    let req: &ngx_http_request_t = r.as_ref();
    // SAFETY: null or the main request's body, which lives as long as it.
    let body = unsafe { req.request_body.as_ref() }?;
    if !body
        .post_handler
        .is_some_and(|h| ptr::eq(h as *const (), body_read as *const ()))
    {
        return None;
    }
    let mut parts: Vec<&[u8]> = Vec::new();
    let mut link = body.bufs;
    // SAFETY: the body's chain, as nginx keeps it for the request.
    while let Some(cl) = unsafe { link.as_ref() } {
        // SAFETY: as above: each link holds a buffer, or null.
        if let Some(b) = unsafe { cl.buf.as_ref() } {
            if b.temporary() != 0 || b.memory() != 0 || b.mmap() != 0 {
                let len = (b.last as usize).saturating_sub(b.pos as usize);
                if len > 0 {
                    // SAFETY: a buffer in memory holds its bytes from pos
                    // to last, for the request's life.
                    parts.push(unsafe { core::slice::from_raw_parts(b.pos, len) });
                }
            } else if b.in_file() != 0 && b.file_last > b.file_pos {
                log::debug_body(
                    r.log(),
                    "in a temporary file: parameters read from the query only",
                );
                return None;
            }
        }
        link = cl.next;
    }
    Some(match parts.as_slice() {
        [] => Cow::Borrowed(&[]),
        [one] => Cow::Borrowed(one),
        _ => Cow::Owned(parts.concat()),
    })
}
