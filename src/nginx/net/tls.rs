//! `sync=rediss://`: the worker links speak TLS through nginx's own SSL
//! (an `ngx_ssl_t` made when the configuration is read, as
//! `proxy_ssl_trusted_certificate` makes one), and accept a Redis only
//! once its certificate verifies against `sync_ca=` and names the host, as
//! `proxy_ssl_verify on` with `proxy_ssl_name` does.

use core::ffi::{c_char, c_int, CStr};
use core::ptr;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::os::fd::AsRawFd;

use nginx_sys::X509_STORE_CTX;
use nginx_sys::{
    ngx_conf_t, ngx_connection_t, ngx_pcalloc, ngx_pool_cleanup_add, ngx_ssl_certificate,
    ngx_ssl_cleanup_ctx, ngx_ssl_create, ngx_ssl_create_connection, ngx_ssl_handshake,
    ngx_ssl_shutdown, ngx_ssl_t, ngx_ssl_trusted_certificate, ngx_str_t, ERR_clear_error,
    NGX_SSL_TLSv1_2, NGX_SSL_TLSv1_3, SSL_connect, SSL_ctrl, SSL_free, SSL_get0_param,
    SSL_get1_peer_certificate, SSL_get_error, SSL_get_verify_result, SSL_new, SSL_read,
    SSL_set1_host, SSL_set_fd, SSL_set_verify, SSL_write, TLSEXT_NAMETYPE_host_name,
    X509_VERIFY_PARAM_set1_ip_asc, X509_free, X509_verify_cert_error_string, NGX_OK,
    NGX_SSL_BUFFER, NGX_SSL_CLIENT, SSL, SSL_CTRL_SET_TLSEXT_HOSTNAME, SSL_ERROR_SYSCALL,
    SSL_ERROR_WANT_READ, SSL_ERROR_WANT_WRITE, SSL_ERROR_ZERO_RETURN, SSL_VERIFY_NONE,
};

/// How deep a chain `sync_ca=` may vouch for (nginx's
/// `proxy_ssl_verify_depth` default).
const VERIFY_DEPTH: isize = 1;

/// A zone's TLS client context, alive as long as the cycle.
pub struct Tls {
    ssl: *mut ngx_ssl_t,
}

/// A string nginx keeps (in the configuration pool).
fn pool_str(cf: &mut ngx_conf_t, text: &str) -> Result<ngx_str_t, String> {
    // SAFETY: the configuration's pool; the copy lives as long as it.
    let data = unsafe { ngx_pcalloc(cf.pool, text.len() + 1) }.cast::<u8>();
    if data.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: `data` has room for the text and a NUL.
    unsafe { ptr::copy_nonoverlapping(text.as_ptr(), data, text.len()) };
    Ok(ngx_str_t {
        len: text.len(),
        data,
    })
}

impl Tls {
    /// The context for `rediss://`: TLS 1.2 and 1.3, certificates verified
    /// against `ca`, and `cert` with `key` presented when given. nginx
    /// logs the details of a file it cannot use; the caller names the
    /// parameter.
    pub fn new(
        cf: &mut ngx_conf_t,
        ca: &str,
        cert_and_key: Option<(&str, &str)>,
    ) -> Result<Tls, String> {
        // SAFETY: the configuration's pool; zeroed, as nginx's own callers
        // start an ngx_ssl_t.
        let ssl =
            unsafe { ngx_pcalloc(cf.pool, core::mem::size_of::<ngx_ssl_t>()) }.cast::<ngx_ssl_t>();
        if ssl.is_null() {
            return Err("out of memory".into());
        }
        // SAFETY: a zeroed ngx_ssl_t, its log the configuration's.
        unsafe {
            (*ssl).log = cf.log;
            if ngx_ssl_create(
                ssl,
                (NGX_SSL_TLSv1_2 | NGX_SSL_TLSv1_3) as usize,
                ptr::null_mut(),
            ) != NGX_OK as isize
            {
                return Err("cannot create the TLS context".into());
            }
            // Freed with the cycle's pool, as nginx frees its own.
            let cln = ngx_pool_cleanup_add(cf.pool, 0);
            if cln.is_null() {
                return Err("out of memory".into());
            }
            (*cln).handler = Some(ngx_ssl_cleanup_ctx);
            (*cln).data = ssl.cast();
        }
        let mut ca = pool_str(cf, ca)?;
        // SAFETY: a created context; nginx reads the file (relative to its
        // configuration's directory) now.
        if unsafe { ngx_ssl_trusted_certificate(cf, ssl, &mut ca, VERIFY_DEPTH) } != NGX_OK as isize
        {
            return Err("invalid sync_ca: cannot load the CA file".into());
        }
        if let Some((cert, key)) = cert_and_key {
            let (mut cert, mut key) = (pool_str(cf, cert)?, pool_str(cf, key)?);
            // SAFETY: as above.
            let rc = unsafe { ngx_ssl_certificate(cf, ssl, &mut cert, &mut key, ptr::null_mut()) };
            if rc != NGX_OK as isize {
                return Err("invalid sync_cert or sync_cert_key: cannot load them".into());
            }
        }
        Ok(Tls { ssl })
    }

    /// Starts TLS on a connected `c`: `Ok(true)` when the handshake is
    /// done already, `Ok(false)` when it goes on (nginx calls the
    /// connection's `ssl.handler` when it ends).
    ///
    /// # Safety
    /// `c` is a live, connected client connection of this worker; `host`
    /// outlives the handshake.
    pub unsafe fn start(&self, c: *mut ngx_connection_t, host: &ngx_str_t) -> Result<bool, String> {
        // SAFETY: as the caller guarantees.
        unsafe {
            if ngx_ssl_create_connection(self.ssl, c, (NGX_SSL_BUFFER | NGX_SSL_CLIENT) as usize)
                != NGX_OK as isize
            {
                return Err("cannot start TLS".into());
            }
            let text = core::slice::from_raw_parts(host.data, host.len);
            expect_name((*(*c).ssl).connection, text)?;
            match ngx_ssl_handshake(c) {
                rc if rc == NGX_OK as isize => Ok(true),
                rc if rc == nginx_sys::NGX_AGAIN as isize => Ok(false),
                _ => Err("TLS handshake failed".into()),
            }
        }
    }

    /// After the handshake: whether it succeeded, and the certificate chain
    /// verified against `sync_ca=` and named the host.
    ///
    /// # Safety
    /// `c` is the connection [`Tls::start`] was given.
    pub unsafe fn verified(c: *mut ngx_connection_t) -> Result<(), String> {
        // SAFETY: as the caller guarantees; `ssl` is set by `start`.
        unsafe {
            let ssl = (*c).ssl;
            if ssl.is_null() || (*ssl).handshaked() == 0 {
                return Err("TLS handshake failed".into());
            }
            verify_result((*ssl).connection)?;
        }
        Ok(())
    }

    /// TLS over a blocking socket (the master's load of a new zone, before
    /// any event loop runs), with this context and the same checks.
    pub fn connect_blocking(&self, socket: TcpStream, host: &str) -> Result<BlockingTls, String> {
        // SAFETY: a created context; the SSL object is freed by the
        // returned value's Drop, or with it on error.
        unsafe {
            let ssl = SSL_new((*self.ssl).ctx);
            if ssl.is_null() {
                return Err("cannot start TLS".into());
            }
            let stream = BlockingTls { ssl, socket };
            // Not nginx's verify callback (the context's): it expects an
            // nginx connection behind the SSL object, and a debug build
            // reads its log. Ours lets the handshake go on, as nginx's
            // does; the verification's result is read after it, as for the
            // links.
            SSL_set_verify(ssl, SSL_VERIFY_NONE as c_int, Some(verify_later));
            expect_name(ssl, host.as_bytes())?;
            if SSL_set_fd(ssl, stream.socket.as_raw_fd()) != 1 || SSL_connect(ssl) != 1 {
                ERR_clear_error();
                return Err("TLS handshake failed".into());
            }
            verify_result(ssl)?;
            Ok(stream)
        }
    }

    /// Ends TLS on a connection about to close, without waiting for the
    /// peer.
    ///
    /// # Safety
    /// `c` is a live connection of this worker.
    pub unsafe fn shutdown(c: *mut ngx_connection_t) {
        // SAFETY: as the caller guarantees.
        unsafe {
            let ssl = (*c).ssl;
            if !ssl.is_null() {
                (*ssl).set_no_wait_shutdown(1);
                let _ = ngx_ssl_shutdown(c);
            }
        }
    }
}

/// The blocking load's verify callback: the handshake goes on, and the
/// result is read after it ([`verify_result`]).
unsafe extern "C" fn verify_later(_ok: c_int, _store: *mut X509_STORE_CTX) -> c_int {
    1
}

/// Makes the handshake's verification check that the certificate names
/// `host`: a name (as X509_check_host does; sent as SNI too), or an
/// address (its IP subjectAltName; no SNI, RFC 6066).
///
/// # Safety
/// `conn` is a live SSL object before its handshake.
unsafe fn expect_name(conn: *mut SSL, host: &[u8]) -> Result<(), String> {
    let mut name = host.to_vec();
    name.push(0);
    let name = name.as_mut_ptr().cast::<c_char>();
    let is_ip = core::str::from_utf8(host).is_ok_and(|h| h.parse::<std::net::IpAddr>().is_ok());
    // SAFETY: as the caller guarantees; OpenSSL copies the name.
    let set = unsafe {
        if is_ip {
            X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(conn), name)
        } else {
            SSL_ctrl(
                conn,
                SSL_CTRL_SET_TLSEXT_HOSTNAME as c_int,
                TLSEXT_NAMETYPE_host_name as _,
                name.cast(),
            );
            SSL_set1_host(conn, name)
        }
    };
    if set != 1 {
        return Err("cannot set the name to verify".into());
    }
    Ok(())
}

/// Whether the peer sent a certificate that verified against `sync_ca=`
/// and named the host.
///
/// # Safety
/// `conn` is a live SSL object after its handshake.
unsafe fn verify_result(conn: *mut SSL) -> Result<(), String> {
    // SAFETY: as the caller guarantees.
    unsafe {
        // No certificate at all verifies as X509_V_OK: refuse that too.
        let cert = SSL_get1_peer_certificate(conn);
        if cert.is_null() {
            return Err("certificate verify failed: no certificate".into());
        }
        X509_free(cert);
        let rc = SSL_get_verify_result(conn);
        if rc != 0 {
            let why = CStr::from_ptr(X509_verify_cert_error_string(rc));
            return Err(format!(
                "certificate verify failed: {}",
                why.to_string_lossy()
            ));
        }
    }
    Ok(())
}

/// A verified TLS connection over a blocking socket (the socket's own
/// timeouts bound every read and write).
pub struct BlockingTls {
    ssl: *mut SSL,
    socket: TcpStream,
}

impl BlockingTls {
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// A failed SSL_read or SSL_write as an I/O error; a timeout is
    /// `WouldBlock`, as on a plain socket.
    fn error(&self, rc: c_int) -> io::Error {
        let os = io::Error::last_os_error();
        // SAFETY: our live SSL object; then this thread's OpenSSL errors
        // are cleared, so none is reported later by nginx.
        let code = unsafe {
            let code = SSL_get_error(self.ssl, rc);
            ERR_clear_error();
            code as u32
        };
        match code {
            SSL_ERROR_ZERO_RETURN => io::Error::from(io::ErrorKind::UnexpectedEof),
            SSL_ERROR_WANT_READ | SSL_ERROR_WANT_WRITE => io::ErrorKind::WouldBlock.into(),
            SSL_ERROR_SYSCALL if os.raw_os_error().unwrap_or(0) != 0 => os,
            _ => io::Error::other("TLS error"),
        }
    }
}

impl Read for BlockingTls {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: our live SSL object; OpenSSL writes at most `len` bytes.
        let n = unsafe { SSL_read(self.ssl, buf.as_mut_ptr().cast(), len) };
        if n > 0 {
            return Ok(n as usize);
        }
        match self.error(n) {
            e if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            e => Err(e),
        }
    }
}

impl Write for BlockingTls {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let len = c_int::try_from(buf.len()).unwrap_or(c_int::MAX);
        // SAFETY: our live SSL object; OpenSSL reads at most `len` bytes.
        let n = unsafe { SSL_write(self.ssl, buf.as_ptr().cast(), len) };
        if n > 0 {
            return Ok(n as usize);
        }
        Err(self.error(n))
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for BlockingTls {
    fn drop(&mut self) {
        // SAFETY: ours, freed once.
        unsafe { SSL_free(self.ssl) };
    }
}
