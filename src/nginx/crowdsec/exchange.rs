//! One HTTP exchange with LAPI on nginx's event loop: a connection of its
//! own (LAPI is asked at most every few seconds, so no keep-alive to
//! manage), TLS through nginx's SSL for `https://`, the request sent, the
//! response read by the engine's bounded reader, and one deadline over all
//! of it. Nothing blocks; the owner hears the outcome once, from an event
//! handler, never from inside its own call to [`Exchange::start`].

use core::ffi::c_void;
use core::ptr;

use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_create_pool, ngx_del_timer, ngx_event_t,
    ngx_handle_read_event, ngx_handle_write_event, ngx_log_t, ngx_str_t, NGX_AGAIN, NGX_ERROR,
    NGX_LOG_ALERT,
};

use crate::engine::crowdsec::http::{Response, ResponseReader};
use crate::nginx::base::guard;
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::net::peer::{self, RawAddr};
use crate::nginx::net::tls::Tls;

/// Every exchange ends within this, connecting included: a LAPI that
/// trickles or stalls costs one failed pull, never a stuck one.
pub const DEADLINE_MS: usize = 10_000;

/// What an exchange ended with: the response, or why there is none.
pub type Outcome = Result<Response, String>;

/// The owner's callback: `owner` is the pointer the exchange was made
/// with.
pub type OnDone = fn(owner: *mut c_void, outcome: Outcome);

/// A reusable exchange, one at a time. Boxed and never moved or freed
/// while the worker runs: nginx's events point at it.
pub struct Exchange {
    conf: &'static CrowdsecConf,
    owner: *mut c_void,
    on_done: OnDone,
    conn: *mut ngx_connection_t,
    addr: Option<RawAddr>,
    name: ngx_str_t,
    host: ngx_str_t,
    /// nginx's connect and recv errors on this connection would be logged
    /// every pull; the owner logs one line per change of LAPI's state.
    quiet_log: ngx_log_t,
    /// The deadline while an exchange runs; also how an exchange that
    /// could not even start reports it, from the event loop.
    deadline: ngx_event_t,
    failed: Option<String>,
    out: Vec<u8>,
    sent: usize,
    reader: Option<ResponseReader>,
    read_buf: Box<[u8]>,
}

impl Exchange {
    pub fn new(
        conf: &'static CrowdsecConf,
        owner: *mut c_void,
        on_done: OnDone,
        log: *mut ngx_log_t,
    ) -> *mut Exchange {
        // SAFETY: `log` is the cycle's log, alive for the worker.
        let mut quiet_log = unsafe { *log };
        quiet_log.log_level = NGX_LOG_ALERT as usize;
        let exchange = Box::into_raw(Box::new(Exchange {
            conf,
            owner,
            on_done,
            conn: ptr::null_mut(),
            addr: conf.addr.map(RawAddr::of),
            name: str_of(&conf.authority),
            host: str_of(&conf.spec.url.host),
            quiet_log,
            // SAFETY: an all-zero event is an idle one, as nginx's
            // ngx_pcalloc'ed events are.
            deadline: unsafe { core::mem::zeroed() },
            failed: None,
            out: Vec::new(),
            sent: 0,
            reader: None,
            read_buf: vec![0; 16 * 1024].into_boxed_slice(),
        }));
        // SAFETY: just allocated and leaked: lives until the worker exits.
        let e = unsafe { &mut *exchange };
        e.deadline.handler = Some(on_deadline);
        e.deadline.data = exchange.cast();
        e.deadline.log = log;
        // A pending exchange must not hold up a graceful shutdown.
        e.deadline.set_cancelable(1);
        exchange
    }

    /// Whether an exchange is running.
    pub fn busy(&self) -> bool {
        self.reader.is_some()
    }

    /// Sends `request` (a whole HTTP/1.1 request) and reads a response of
    /// at most `max_body` bytes. The outcome comes later, from the event
    /// loop, even when the connection cannot be made.
    pub fn start(&mut self, request: Vec<u8>, max_body: usize) {
        self.out = request;
        self.sent = 0;
        self.reader = Some(ResponseReader::new(max_body));
        self.arm(DEADLINE_MS);
        if let Err(why) = self.connect() {
            self.close_connection();
            self.failed = Some(why);
            self.arm(0);
        }
    }

    fn connect(&mut self) -> Result<(), String> {
        let addr = self
            .addr
            .as_mut()
            .ok_or("host not found when the configuration was read")?;
        let started = peer::connect(addr, &mut self.name, &mut self.quiet_log)?;
        self.conn = started.connection;
        let me = ptr::from_mut(self).cast::<c_void>();
        // SAFETY: nginx returned a live connection with its two events.
        unsafe {
            let c = &mut *self.conn;
            c.data = me;
            let handler = if self.conf.tls.is_some() {
                on_connected
            } else {
                on_event
            };
            (*c.read).handler = Some(handler);
            (*c.write).handler = Some(handler);
        }
        match (&self.conf.tls, started.connected) {
            (None, _) => self.send(),
            (Some(_), true) => self.start_tls(),
            (Some(_), false) => Ok(()),
        }
    }

    /// The connection is made: TLS starts (nginx's handshake handler takes
    /// the events over while it runs).
    fn start_tls(&mut self) -> Result<(), String> {
        let Some(tls) = self.conf.tls.as_ref() else {
            return Ok(());
        };
        // SAFETY: our live connection; its log is the exchange's. TLS
        // state lives in the connection's pool, which a peer connection
        // does not have: made here, destroyed with the connection.
        unsafe {
            let c = &mut *self.conn;
            if !c.ssl.is_null() {
                return Ok(());
            }
            c.pool = ngx_create_pool(512, c.log);
            if c.pool.is_null() {
                return Err("out of memory".into());
            }
        }
        // SAFETY: a live, connected client connection of this worker; the
        // host name lives in the configuration.
        match unsafe { tls.start(self.conn, &self.host) }? {
            true => self.tls_done(),
            // SAFETY: `start` gave the connection its TLS state.
            false => unsafe {
                (*(*self.conn).ssl).handler = Some(on_tls_handshake);
                Ok(())
            },
        }
    }

    /// The handshake ended: a LAPI whose certificate does not verify, or
    /// does not name the host, is never sent the key.
    fn tls_done(&mut self) -> Result<(), String> {
        // SAFETY: the connection `start_tls` started TLS on.
        unsafe { Tls::verified(self.conn) }?;
        // SAFETY: a live connection with its two events.
        unsafe {
            let c = &mut *self.conn;
            (*c.read).handler = Some(on_event);
            (*c.write).handler = Some(on_event);
        }
        self.send()
    }

    /// Sends what is left of the request, as far as the socket takes it.
    fn send(&mut self) -> Result<(), String> {
        while self.sent < self.out.len() {
            let rest = &self.out[self.sent..];
            // SAFETY: a live connection; `send` takes a buffer and its
            // length, and never keeps them.
            let n = unsafe {
                let c = &mut *self.conn;
                match c.send {
                    Some(send) => send(c, rest.as_ptr().cast_mut(), rest.len()),
                    None => NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                break;
            }
            if n <= 0 {
                return Err(format!(
                    "send() failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            self.sent += n as usize;
        }
        if self.sent == self.out.len() {
            // The request is out: the next write event would be a no-op.
            self.out = Vec::new();
        }
        // SAFETY: a live connection's events, from its own worker.
        unsafe {
            if ngx_handle_write_event((*self.conn).write, 0) != 0
                || ngx_handle_read_event((*self.conn).read, 0) != 0
            {
                return Err("cannot watch the connection".into());
            }
        }
        Ok(())
    }

    /// Reads what LAPI sent: the response once it is whole.
    fn receive(&mut self) -> Result<Option<Response>, String> {
        loop {
            // SAFETY: a live connection; `recv` fills at most `len` bytes.
            let n = unsafe {
                let c = &mut *self.conn;
                match c.recv {
                    Some(recv) => recv(c, self.read_buf.as_mut_ptr(), self.read_buf.len()),
                    None => NGX_ERROR as isize,
                }
            };
            let Some(reader) = self.reader.as_mut() else {
                return Ok(None);
            };
            if n == NGX_AGAIN as isize {
                break;
            }
            if n == 0 {
                return Err(reader.closed().to_string());
            }
            if n < 0 {
                return Err(format!(
                    "recv() failed: {}",
                    std::io::Error::last_os_error()
                ));
            }
            if let Some(response) = reader
                .feed(&self.read_buf[..n as usize])
                .map_err(|e| e.to_string())?
            {
                return Ok(Some(response));
            }
        }
        // SAFETY: a live connection's read event, from its own worker.
        if unsafe { ngx_handle_read_event((*self.conn).read, 0) } != 0 {
            return Err("cannot watch the connection".into());
        }
        Ok(None)
    }

    /// A connection event: send what is left, read what came.
    fn on_event(&mut self) {
        if self.conn.is_null() {
            return;
        }
        let step = if self.out.is_empty() {
            Ok(())
        } else {
            self.send()
        };
        match step.and_then(|()| self.receive()) {
            Ok(None) => {}
            Ok(Some(response)) => self.finish(Ok(response)),
            Err(why) => self.finish(Err(why)),
        }
    }

    /// The deadline passed, or an exchange that never started reports.
    fn on_deadline(&mut self) {
        let outcome = match self.failed.take() {
            Some(why) => why,
            None => format!("no answer within {}s", DEADLINE_MS / 1000),
        };
        self.finish(Err(outcome));
    }

    /// Ends the exchange and tells the owner: the last thing any handler
    /// of the exchange does, since the owner may start the next one.
    fn finish(&mut self, outcome: Outcome) {
        if self.reader.take().is_none() {
            return;
        }
        self.disarm();
        self.close_connection();
        self.out = Vec::new();
        let (owner, on_done) = (self.owner, self.on_done);
        on_done(owner, outcome);
    }

    fn arm(&mut self, ms: usize) {
        // SAFETY: nginx's flag, written in this process only; timers are
        // used from the worker's own event loop.
        unsafe {
            if nginx_sys::ngx_exiting == 0 {
                ngx_add_timer(&mut self.deadline, ms);
            }
        }
    }

    fn disarm(&mut self) {
        if self.deadline.timer_set() != 0 {
            // SAFETY: our armed timer.
            unsafe { ngx_del_timer(&mut self.deadline) };
        }
    }

    /// At worker exit: the connection goes, and the owner hears nothing.
    pub fn stop(&mut self) {
        self.reader = None;
        self.disarm();
        self.close_connection();
    }

    fn close_connection(&mut self) {
        if self.conn.is_null() {
            return;
        }
        // SAFETY: our live connection; nothing refers to it afterwards.
        unsafe { peer::close(self.conn) };
        self.conn = ptr::null_mut();
    }
}

fn str_of(text: &str) -> ngx_str_t {
    ngx_str_t {
        len: text.len(),
        data: text.as_ptr().cast_mut(),
    }
}

unsafe extern "C" fn on_event(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for our connection's events.
    let e = unsafe { peer::owner_of::<Exchange>(ev) };
    let log = e.deadline.log;
    guard::catch(log, "crowdsec exchange", (), || e.on_event());
}

unsafe extern "C" fn on_connected(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for our connection's events.
    let e = unsafe { peer::owner_of::<Exchange>(ev) };
    let log = e.deadline.log;
    guard::catch(log, "crowdsec connect", (), || {
        if let Err(why) = e.start_tls() {
            e.finish(Err(why));
        }
    });
}

unsafe extern "C" fn on_tls_handshake(c: *mut ngx_connection_t) {
    // SAFETY: nginx calls this for our connection, whose data is its
    // exchange.
    let e = unsafe { &mut *(*c).data.cast::<Exchange>() };
    let log = e.deadline.log;
    guard::catch(log, "crowdsec TLS handshake", (), || {
        if let Err(why) = e.tls_done() {
            e.finish(Err(why));
        }
    });
}

unsafe extern "C" fn on_deadline(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its exchange, never freed while the
    // worker runs.
    let e = unsafe { &mut *(*ev).data.cast::<Exchange>() };
    let log = e.deadline.log;
    guard::catch(log, "crowdsec deadline", (), || e.on_deadline());
}
