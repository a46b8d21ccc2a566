//! One Redis connection of a worker, over nginx's own event loop:
//! `ngx_event_connect_peer`, non-blocking sends and reads in the connection's
//! event handlers. Nothing here blocks, and a request never waits for it:
//! callers queue commands and go on.
//!
//! A healthy idle link holds no timer, so requests never pay for one in
//! nginx's timer tree: the kernel watches it (TCP keepalive every second,
//! and a 2 s limit on unacknowledged data), and a timer runs only while a
//! reply is owed (the oldest owed reply 2 s late closes the link, however
//! many bytes trickle in meanwhile) or the link is down (a new connection
//! after 1 s, then 2 s, then every 3 s, each ±25 % so that a fleet's links
//! do not come back in lockstep).
//!
//! What the conversation means is the engine's ([`Session`]); what the
//! events it reports do to the zone is its owner's (`node`).

use core::ffi::c_void;
use core::ptr;
use core::time::Duration;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;

use nginx_sys::{
    ngx_add_timer, ngx_connection_t, ngx_create_pool, ngx_del_timer, ngx_event_t, ngx_exiting,
    ngx_handle_read_event, ngx_handle_write_event, ngx_log_t, ngx_post_event, ngx_posted_events,
    ngx_str_t, NGX_AGAIN, NGX_LOG_ALERT,
};

use rustix::net::sockopt;

use crate::engine::fleet::{Event, Role, Session};
use crate::engine::table::Ban;
use crate::nginx::base::guard;
use crate::nginx::fleet::conf::FleetConf;
use crate::nginx::net::peer::{self, RawAddr};
use crate::nginx::net::resolve::{Outcome, Resolution, Resolver};
use crate::nginx::net::tls::Tls;
use crate::nginx::state::zone::{self, Zone};

/// What a link belongs to and reports to: its fleet (`node`, above this
/// file), which applies what the link's session reports to the zone.
pub trait LinkOwner {
    fn zone(&self) -> &Zone;
    fn conf(&self) -> &FleetConf;
    /// What the session reported.
    fn on_event(&'static self, link: &mut Link, event: Event);
    /// The link closed (`refused`: Redis refused the handshake).
    fn on_down(&self, link: &mut Link, reason: &str, refused: bool);
}

/// Before the first reconnection attempt; each next one waits twice as
/// long, up to [`RECONNECT_MAX_MS`].
const RECONNECT_MS: usize = 1000;
const RECONNECT_MAX_MS: usize = 3000;
/// A link whose oldest owed reply is this late is dead (a partition, a hung
/// or trickling Redis): it is closed and made again.
const REPLY_TIMEOUT_MS: usize = 2000;
/// Commands queued beyond this while Redis is slow are dropped, so a stuck
/// link cannot grow a worker's memory.
const MAX_QUEUED: usize = 1 << 20;

/// A worker's link to Redis for one zone. Boxed and never moved: nginx's
/// events point at it.
pub struct Link {
    pub zone: &'static Zone,
    fleet: &'static FleetConf,
    owner: &'static dyn LinkOwner,
    pub role: Role,
    session: Option<Session>,
    conn: *mut ngx_connection_t,
    /// Where Redis is: as resolved at configuration, or since (`None`:
    /// the host name did not resolve yet).
    addr: Option<RawAddr>,
    /// `HOST:PORT`, nginx's name for the peer.
    name: ngx_str_t,
    name_text: String,
    /// The host name, for the resolver.
    host: ngx_str_t,
    resolution: Option<Box<Resolution>>,
    /// Our own copy of the cycle's log, quieter: nginx's connect and recv
    /// errors on this connection would be logged every retry; the fleet
    /// logs one line per change of the link's state instead.
    quiet_log: ngx_log_t,
    /// Armed only while the link is down (reconnect) or owes a reply
    /// (deadline).
    tick: ngx_event_t,
    /// What the socket read goes through, kept: a fresh 16 KiB on the
    /// stack per read would be zeroed every time.
    read_buf: Box<[u8]>,
    /// What a read's replies mean, kept between reads (empty) so that a
    /// reply does not pay for a new vector.
    events: Vec<Event>,
    /// Set once the link has been reported down, until it is up again.
    pub down_reported: bool,
    /// Connections closed since the link was last ready: the backoff.
    failed_tries: u32,
    /// Jitter's state (xorshift), seeded per link.
    jitter: u64,
}

/// nginx's cached clock, ms.
fn now_ms() -> u64 {
    // SAFETY: nginx's clock, updated by the worker's own event loop.
    unsafe { nginx_sys::ngx_current_msec as u64 }
}

impl Link {
    /// A link for `owner`'s zone, its timer armed to connect at once.
    pub fn start(
        owner: &'static dyn LinkOwner,
        role: Role,
        addr: Option<SocketAddr>,
        log: *mut ngx_log_t,
    ) -> *mut Link {
        // SAFETY: `log` is the cycle's log, alive for the worker.
        let mut quiet_log = unsafe { *log };
        quiet_log.log_level = NGX_LOG_ALERT as usize;
        let (zone, fleet) = (owner.zone(), owner.conf());
        let url = &fleet.url;
        let name_text = format!("{}:{}", url.host, url.port);
        let host = ngx_str_t {
            len: url.host.len(),
            data: url.host.as_ptr().cast_mut(),
        };
        let link = Box::into_raw(Box::new(Link {
            zone,
            fleet,
            owner,
            role,
            session: None,
            conn: ptr::null_mut(),
            addr: addr.map(RawAddr::of),
            name: ngx_str_t::default(),
            name_text,
            host,
            resolution: None,
            quiet_log,
            // SAFETY: an all-zero event is an idle one, as nginx's
            // ngx_pcalloc'ed events are.
            tick: unsafe { core::mem::zeroed() },
            read_buf: vec![0; 16 * 1024].into_boxed_slice(),
            events: Vec::new(),
            down_reported: false,
            failed_tries: 0,
            jitter: zone::random_seed()[0] | 1,
        }));
        // SAFETY: just allocated and leaked: lives until the worker exits.
        let l = unsafe { &mut *link };
        l.name = ngx_str_t {
            len: l.name_text.len(),
            data: l.name_text.as_ptr().cast_mut(),
        };
        l.resolution = Some(Resolution::new(link.cast(), on_resolved));
        l.tick.handler = Some(on_tick);
        l.tick.data = link.cast::<c_void>();
        l.tick.log = log;
        // The timer must not hold up a graceful shutdown.
        l.tick.set_cancelable(1);
        // SAFETY: the event module is initialised in a worker's init_process.
        unsafe { ngx_add_timer(&mut l.tick, 1) };
        link
    }

    pub fn is_ready(&self) -> bool {
        self.session.as_ref().is_some_and(Session::is_ready)
    }

    /// Queues commands on a ready link and sends what it can now; false if
    /// the link is not ready (the caller goes on locally).
    pub fn with_session(&mut self, f: impl FnOnce(&mut Session) -> bool) -> bool {
        let Some(session) = self.session.as_mut().filter(|s| s.is_ready()) else {
            return false;
        };
        if session.output().len() > MAX_QUEUED {
            return false;
        }
        session.set_now(now_ms());
        let owed = session.awaiting_reply();
        if !f(session) {
            return false;
        }
        if !owed {
            self.arm(REPLY_TIMEOUT_MS);
        }
        self.post_flush();
        true
    }

    /// One send per pass of the event loop for everything queued in it:
    /// the connection's write event is posted (once), and nginx runs it
    /// after this pass's other events.
    fn post_flush(&mut self) {
        if self.conn.is_null() {
            return;
        }
        // SAFETY: a live connection's write event, from its own worker;
        // nginx's posted queue, which closing the connection leaves.
        unsafe { ngx_post_event((*self.conn).write, ptr::addr_of_mut!(ngx_posted_events)) };
    }

    /// The deadline follows the oldest reply still owed: re-armed for it,
    /// gone when none is owed. False if it has passed already.
    fn follow_deadline(&mut self) -> bool {
        let Some(oldest) = self.session.as_ref().and_then(Session::oldest_owed_ms) else {
            self.disarm();
            return true;
        };
        let due = oldest + REPLY_TIMEOUT_MS as u64;
        let now = now_ms();
        if now >= due {
            return false;
        }
        self.arm((due - now) as usize);
        true
    }

    /// The wait before the next connection: 1 s, 2 s, then 3 s, ±25 %.
    fn backoff_ms(&mut self) -> usize {
        let base = (RECONNECT_MS << self.failed_tries.min(4)).min(RECONNECT_MAX_MS);
        self.failed_tries = self.failed_tries.saturating_add(1);
        let mut x = self.jitter;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter = x;
        let quarter = base / 4;
        base - quarter + (x % (2 * quarter as u64 + 1)) as usize
    }

    /// (Re)arms the link's one timer.
    fn arm(&mut self, ms: usize) {
        // SAFETY: nginx's flag, written in this process only; timers are
        // used from the worker's own event loop.
        unsafe {
            if ngx_exiting == 0 {
                ngx_add_timer(&mut self.tick, ms);
            }
        }
    }

    fn disarm(&mut self) {
        if self.tick.timer_set() != 0 {
            // SAFETY: our armed timer.
            unsafe { ngx_del_timer(&mut self.tick) };
        }
    }

    /// The kernel watches an idle link: keepalive probes after 1 s of
    /// silence, and data unacknowledged for 2 s, end the connection.
    fn watch_socket(&self) {
        // SAFETY: a live connection's descriptor, open for as long as this
        // borrow (the connection is closed only by this link).
        let fd = unsafe { BorrowedFd::borrow_raw((*self.conn).fd) };
        let second = Duration::from_secs(1);
        let _ = sockopt::set_socket_keepalive(fd, true)
            .and_then(|()| sockopt::set_tcp_keepidle(fd, second))
            .and_then(|()| sockopt::set_tcp_keepintvl(fd, second))
            .and_then(|()| sockopt::set_tcp_keepcnt(fd, 2))
            .and_then(|()| sockopt::set_tcp_user_timeout(fd, REPLY_TIMEOUT_MS as u32));
        // Commands are small and a reply is waited for: no Nagle delay.
        let _ = sockopt::set_tcp_nodelay(fd, true);
    }

    fn connect(&mut self) {
        let signer = self.fleet.signer.clone();
        let session = Session::new(self.role, &self.zone.name, self.node(), self.url())
            .signed_with(signer)
            .at(now_ms());
        let Some(addr) = self.addr.as_mut() else {
            self.closed("host not found", false);
            return;
        };
        let conn = match peer::connect(addr, &mut self.name, &mut self.quiet_log) {
            Ok(conn) => conn,
            Err(reason) => return self.closed(&reason, false),
        };
        self.conn = conn.connection;
        self.session = Some(session);
        self.watch_socket();
        // The handshake is owed a reply, as any command.
        self.arm(REPLY_TIMEOUT_MS);
        let me = ptr::from_mut(self).cast::<c_void>();
        let tls = self.fleet.tls.is_some();
        // SAFETY: nginx returned a live connection with its two events.
        unsafe {
            let c = &mut *self.conn;
            c.data = me;
            if tls {
                // TLS starts once the connection is made.
                (*c.read).handler = Some(on_tls_connect);
                (*c.write).handler = Some(on_tls_connect);
            } else {
                (*c.read).handler = Some(on_read);
                (*c.write).handler = Some(on_write);
            }
        }
        if !tls {
            self.flush();
        } else if conn.connected {
            self.start_tls();
        }
    }

    /// The connection is made: the TLS handshake starts (once; nginx's
    /// handshake handler takes the events over while it runs).
    fn start_tls(&mut self) {
        let Some(tls) = self.fleet.tls.as_ref() else {
            return;
        };
        // SAFETY: our live connection.
        if self.conn.is_null() || unsafe { !(*self.conn).ssl.is_null() } {
            return;
        }
        // TLS state lives in the connection's pool, which a peer
        // connection does not have: made here, destroyed with the
        // connection.
        // SAFETY: our live connection; its log is the link's.
        unsafe {
            let c = &mut *self.conn;
            c.pool = ngx_create_pool(512, c.log);
            if c.pool.is_null() {
                return self.closed("out of memory", false);
            }
        }
        // SAFETY: a live, connected client connection of this worker; the
        // host name lives in the zone's configuration.
        match unsafe { tls.start(self.conn, &self.host) } {
            Err(why) => self.closed(&why, false),
            Ok(true) => self.tls_done(),
            // SAFETY: `start` gave the connection its TLS state.
            Ok(false) => unsafe { (*(*self.conn).ssl).handler = Some(on_tls_handshake) },
        }
    }

    /// The handshake ended: a Redis whose certificate does not verify is
    /// refused (a configuration problem, logged as such); a verified one
    /// gets the session's bytes.
    fn tls_done(&mut self) {
        // SAFETY: the connection `start_tls` started TLS on.
        if let Err(why) = unsafe { Tls::verified(self.conn) } {
            let refused = why.starts_with("certificate");
            self.closed(&why, refused);
            return;
        }
        // SAFETY: a live connection with its two events.
        unsafe {
            let c = &mut *self.conn;
            (*c.read).handler = Some(on_read);
            (*c.write).handler = Some(on_write);
        }
        self.flush();
        self.read();
    }

    fn node(&self) -> u64 {
        self.fleet.node
    }

    fn url(&self) -> &crate::engine::fleet::SyncUrl {
        &self.fleet.url
    }

    /// Sends what the session queued, as far as the socket takes it.
    fn flush(&mut self) {
        while !self.conn.is_null() {
            let Some(session) = self.session.as_mut() else {
                return;
            };
            let out = session.output();
            if out.is_empty() {
                break;
            }
            // SAFETY: a live connection; `send` takes a buffer and its
            // length, and never keeps them.
            let n = unsafe {
                let c = &mut *self.conn;
                match c.send {
                    Some(send) => send(c, out.as_ptr().cast_mut(), out.len()),
                    None => nginx_sys::NGX_ERROR as isize,
                }
            };
            if n > 0 {
                session.sent(n as usize);
            } else if n == NGX_AGAIN as isize {
                break;
            } else {
                let reason = format!("send() failed: {}", std::io::Error::last_os_error());
                self.closed(&reason, false);
                return;
            }
        }
        // SAFETY: a live connection's write event, from its own worker.
        if !self.conn.is_null() && unsafe { ngx_handle_write_event((*self.conn).write, 0) } != 0 {
            self.closed("cannot watch the connection", false);
        }
    }

    /// Reads what Redis sent and acts on it.
    fn read(&mut self) {
        let mut events = core::mem::take(&mut self.events);
        self.read_with(&mut events);
        events.clear();
        // A burst of replies leaves no large vector behind.
        events.shrink_to(64);
        self.events = events;
    }

    fn read_with(&mut self, events: &mut Vec<Event>) {
        while !self.conn.is_null() {
            // SAFETY: a live connection; `recv` fills at most `len` bytes.
            let n = unsafe {
                let c = &mut *self.conn;
                match c.recv {
                    Some(recv) => recv(c, self.read_buf.as_mut_ptr(), self.read_buf.len()),
                    None => nginx_sys::NGX_ERROR as isize,
                }
            };
            if n == NGX_AGAIN as isize {
                break;
            }
            if n <= 0 {
                let reason = if n == 0 {
                    "connection closed by Redis".to_string()
                } else {
                    format!("recv() failed: {}", std::io::Error::last_os_error())
                };
                self.closed(&reason, false);
                break;
            }
            let Some(session) = self.session.as_mut() else {
                return;
            };
            session.set_now(now_ms());
            let fed = session.feed(&self.read_buf[..n as usize], events);
            if session.is_ready() {
                self.failed_tries = 0;
            }
            let refused = events.iter().find_map(|e| match e {
                Event::Refused(text) => Some(text.clone()),
                _ => None,
            });
            // Events first: a reply before the breakage or a late one
            // still counts (an alert's claim answered is this node's).
            for event in events.drain(..) {
                if !matches!(event, Event::Refused(_)) {
                    self.owner.on_event(self, event);
                }
            }
            if let Err(broken) = fed {
                match refused {
                    Some(text) => self.closed(&text, true),
                    None => self.closed(&broken.0, false),
                }
                break;
            }
            if self.conn.is_null() {
                break;
            }
            // Only completed replies move the deadline, to the next owed.
            if !self.follow_deadline() {
                self.closed(&self.late(), false);
                break;
            }
        }
        // SAFETY: a live connection's read event, from its own worker.
        if !self.conn.is_null() && unsafe { ngx_handle_read_event((*self.conn).read, 0) } != 0 {
            self.closed("cannot watch the connection", false);
        }
        self.flush();
    }

    /// Closes the connection (if any) and reports why; the timer makes a
    /// new one. `refused`: Redis refused the handshake.
    fn closed(&mut self, reason: &str, refused: bool) {
        self.close_connection();
        let unanswered: Vec<Ban> = self
            .session
            .take()
            .map(|s| s.unanswered_claims().collect())
            .unwrap_or_default();
        let wait = self.backoff_ms();
        self.arm(wait);
        self.owner.on_down(self, reason, refused);
        // Claims Redis never answered: their alerts go anyway.
        for ban in unanswered {
            self.owner.on_event(self, Event::AlertClaimed(ban));
        }
    }

    fn on_tick(&mut self) {
        // SAFETY: nginx's flag, written in this process only.
        if unsafe { ngx_exiting } != 0 {
            return;
        }
        if self.conn.is_null() {
            self.reconnect();
        } else if !self.follow_deadline() {
            self.closed(&self.late(), false);
        }
    }

    /// A new connection; a host name is resolved again first when nginx
    /// has a `resolver` (a Redis that moved), or must be because it never
    /// resolved.
    fn reconnect(&mut self) {
        let fleet = self.fleet;
        let literal = fleet.url.host.parse::<std::net::IpAddr>().is_ok();
        // SAFETY: the http level's configuration of this cycle.
        let resolver = unsafe { Resolver::of(fleet.http_core) };
        if literal || (self.addr.is_some() && (self.failed_tries == 0 || resolver.is_none())) {
            return self.connect();
        }
        let Some(resolver) = resolver else {
            self.closed("host not found, and no resolver defined to find it", false);
            return;
        };
        let Some(resolution) = self.resolution.as_ref() else {
            return;
        };
        if let Err(why) = resolution.start(resolver, self.host) {
            return self.closed(&why, false);
        }
        // nginx may have had the answer at once.
        if let Some(outcome) = resolution.take() {
            self.resolved(outcome);
        }
    }

    /// The resolver answered: connect to the address, or wait and retry.
    fn resolved(&mut self, outcome: Outcome) {
        match outcome {
            Ok(ip) => {
                let port = self.fleet.url.port;
                self.addr = Some(RawAddr::of(SocketAddr::new(ip, port)));
                self.connect();
            }
            Err(why) => self.closed(&why, false),
        }
    }

    /// Why a link whose oldest owed reply is late is closed.
    fn late(&self) -> String {
        let what = if self.is_ready() {
            "reply"
        } else {
            "answer to the handshake"
        };
        format!("no {what} from Redis within 2s")
    }

    /// At worker exit: the connection goes, the timer with it.
    pub fn stop(&mut self) {
        self.disarm();
        if let Some(resolution) = &self.resolution {
            resolution.cancel();
        }
        self.close_connection();
        // Alerts whose claims are still owed go with the worker, as the
        // alerts its pusher still holds do.
        self.session = None;
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

unsafe extern "C" fn on_read(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for our connection's read event.
    let link = unsafe { peer::owner_of::<Link>(ev) };
    let log = link.tick.log;
    guard::catch(log, "fleet link read", (), || link.read());
}

unsafe extern "C" fn on_write(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for our connection's write event.
    let link = unsafe { peer::owner_of::<Link>(ev) };
    let log = link.tick.log;
    guard::catch(log, "fleet link write", (), || link.flush());
}

/// A resolution's late answer, for the link that asked.
fn on_resolved(owner: *mut c_void) {
    // SAFETY: the owner is the link that started the resolution, never
    // freed while the worker runs; nginx calls back from its event loop,
    // with no handler of the link on the stack.
    let link = unsafe { &mut *owner.cast::<Link>() };
    let log = link.tick.log;
    guard::catch(log, "fleet link resolver", (), || {
        if let Some(outcome) = link.resolution.as_ref().and_then(|r| r.take()) {
            link.resolved(outcome);
        }
    });
}

unsafe extern "C" fn on_tls_connect(ev: *mut ngx_event_t) {
    // SAFETY: nginx calls this for our connection's events.
    let link = unsafe { peer::owner_of::<Link>(ev) };
    let log = link.tick.log;
    guard::catch(log, "fleet link connect", (), || link.start_tls());
}

unsafe extern "C" fn on_tls_handshake(c: *mut ngx_connection_t) {
    // SAFETY: nginx calls this for our connection, whose data is its link.
    let link = unsafe { &mut *(*c).data.cast::<Link>() };
    let log = link.tick.log;
    guard::catch(log, "fleet link TLS handshake", (), || link.tls_done());
}

unsafe extern "C" fn on_tick(ev: *mut ngx_event_t) {
    // SAFETY: the timer's data is its link, never freed while the worker
    // runs.
    let link = unsafe { &mut *(*ev).data.cast::<Link>() };
    let log = link.tick.log;
    guard::catch(log, "fleet link timer", (), || link.on_tick());
}
