//! A tiny HTTP/1.1 client with timeouts, just enough to test nginx.
//!
//! Failures to connect or to read a well-formed response in time panic
//! (with the port and request line): in a test that is the right outcome.
//! A connection closed without a single response byte is not a failure but
//! [`Reply::Closed`], which is how nginx's `return 444` looks on the wire.

use std::io::{self, Read, Write};
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// Connect, read and write timeout of every request.
pub const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// In order received; names as sent by the server.
    pub headers: Vec<(String, String)>,
    /// De-chunked body.
    pub body: Vec<u8>,
}

impl Response {
    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Response(Response),
    /// The server closed the connection without sending any byte (444).
    Closed,
}

impl Reply {
    /// The status code, `None` for [`Reply::Closed`].
    pub fn status(&self) -> Option<u16> {
        match self {
            Reply::Response(r) => Some(r.status),
            Reply::Closed => None,
        }
    }

    pub fn is_closed(&self) -> bool {
        matches!(self, Reply::Closed)
    }

    /// The response; panics on [`Reply::Closed`].
    pub fn response(&self) -> &Response {
        match self {
            Reply::Response(r) => r,
            Reply::Closed => panic!("expected an HTTP response, the connection was closed"),
        }
    }

    /// The body; panics on [`Reply::Closed`].
    pub fn body(&self) -> &[u8] {
        &self.response().body
    }

    /// The body as (lossy) UTF-8; panics on [`Reply::Closed`].
    pub fn text(&self) -> String {
        self.response().text()
    }

    /// A header of the response; `None` on [`Reply::Closed`].
    pub fn header(&self, name: &str) -> Option<&str> {
        match self {
            Reply::Response(r) => r.header(name),
            Reply::Closed => None,
        }
    }
}

/// One request on a fresh connection to 127.0.0.1:`port`, with
/// `Connection: close` (and `Host`, `Content-Length` unless given).
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    http_at(loopback(port, false), None, method, path, headers, body)
}

/// `GET path`.
pub fn get(port: u16, path: &str) -> Reply {
    http(port, "GET", path, &[], None)
}

/// `GET path` with `X-Forwarded-For: client_addr`: with nginx's realip
/// (`set_real_ip_from 127.0.0.1; real_ip_header X-Forwarded-For;`) this plays
/// any client address, IPv6 included.
pub fn get_from(port: u16, path: &str, client_addr: &str) -> Reply {
    http(port, "GET", path, &[("X-Forwarded-For", client_addr)], None)
}

/// Like [`http`] but from a chosen local address: `127.x.y.z` (any of
/// 127/8 works on Linux loopback) connects to 127.0.0.1, `::1` to [::1].
/// Tests the real peer address without realip.
pub fn http_from_ip(
    local_ip: &str,
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let local = parse_ip(local_ip);
    http_at(
        loopback(port, local.is_ipv6()),
        Some(local),
        method,
        path,
        headers,
        body,
    )
}

/// The general form: any target, optional local address to bind.
pub fn http_at(
    target: SocketAddr,
    local: Option<IpAddr>,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> Reply {
    let what = format!("{method} {path} to {target}");
    let stream = connect(target, local).unwrap_or_else(|e| panic!("{what}: connect: {e}"));
    let mut reader = Reader::new(stream);
    // A write error (EPIPE/ECONNRESET) means the server already closed: the
    // read below then tells whether it answered first.
    let _ = reader.send(target, method, path, headers, body, true);
    match reader.read_reply(method) {
        Ok((reply, _)) => reply,
        Err(e) => panic!("{what}: {e}"),
    }
}

/// A keep-alive connection: several requests over one TCP connection, so a
/// test can tell per-connection state from shared state.
pub struct Conn {
    reader: Reader,
    target: SocketAddr,
    closed: bool,
}

impl Conn {
    /// Connects to 127.0.0.1:`port`.
    pub fn open(port: u16) -> Conn {
        Conn::open_at(loopback(port, false), None)
    }

    /// Connects from a chosen local address (see [`http_from_ip`]).
    pub fn open_from_ip(local_ip: &str, port: u16) -> Conn {
        let local = parse_ip(local_ip);
        Conn::open_at(loopback(port, local.is_ipv6()), Some(local))
    }

    pub fn open_at(target: SocketAddr, local: Option<IpAddr>) -> Conn {
        let stream = connect(target, local).unwrap_or_else(|e| panic!("connect {target}: {e}"));
        Conn {
            reader: Reader::new(stream),
            target,
            closed: false,
        }
    }

    /// Sends one request (keep-alive) and reads its response. Once the
    /// server has closed the connection, every further request is
    /// [`Reply::Closed`].
    pub fn request(
        &mut self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
    ) -> Reply {
        if self.closed {
            return Reply::Closed;
        }
        let _ = self
            .reader
            .send(self.target, method, path, headers, body, false);
        match self.reader.read_reply(method) {
            Ok((reply, keep_alive)) => {
                self.closed = !keep_alive;
                reply
            }
            Err(e) => panic!(
                "{method} {path} on keep-alive connection to {}: {e}",
                self.target
            ),
        }
    }

    pub fn get(&mut self, path: &str) -> Reply {
        self.request("GET", path, &[], None)
    }

    /// `GET` with `X-Forwarded-For: client_addr` (see [`get_from`]).
    pub fn get_from(&mut self, path: &str, client_addr: &str) -> Reply {
        self.request("GET", path, &[("X-Forwarded-For", client_addr)], None)
    }

    /// Whether the server has closed (or announced closing) the connection.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// The client side's local address (which port/IP nginx sees).
    pub fn local_addr(&self) -> SocketAddr {
        self.reader.stream.local_addr().expect("local_addr")
    }
}

fn loopback(port: u16, v6: bool) -> SocketAddr {
    if v6 {
        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
    } else {
        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
    }
}

fn parse_ip(s: &str) -> IpAddr {
    s.parse()
        .unwrap_or_else(|_| panic!("not an IP address: {s:?}"))
}

/// Whether a TCP connection from `src` (bound before connecting; any of
/// 127/8 on loopback) to the same family's loopback address, port `port`, is
/// accepted within one second. A firewall that DROPs `src` makes it time
/// out: `false`, as does a refusal.
pub fn connects_from(src: IpAddr, port: u16) -> bool {
    connect_within(
        loopback(port, src.is_ipv6()),
        Some(src),
        Duration::from_secs(1),
    )
    .is_ok()
}

/// Connects with [`HTTP_TIMEOUT`] on connect, read and write, optionally
/// binding the local address first (std cannot bind before connecting).
fn connect(target: SocketAddr, local: Option<IpAddr>) -> io::Result<TcpStream> {
    connect_within(target, local, HTTP_TIMEOUT)
}

/// [`connect`] with `timeout` on connect, read and write.
fn connect_within(
    target: SocketAddr,
    local: Option<IpAddr>,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let stream = match local {
        None => TcpStream::connect_timeout(&target, timeout)?,
        Some(local) => {
            let domain = if target.is_ipv4() {
                libc::AF_INET
            } else {
                libc::AF_INET6
            };
            // SAFETY: plain socket(2) call; the fd is owned right away.
            let fd = unsafe { libc::socket(domain, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: fd is a fresh descriptor nobody else owns.
            let stream = TcpStream::from(unsafe { OwnedFd::from_raw_fd(fd) });
            // Linux bounds a blocking connect(2) by SO_SNDTIMEO.
            stream.set_write_timeout(Some(timeout))?;
            let (addr, len) = sockaddr(SocketAddr::new(local, 0));
            // SAFETY: addr is a valid sockaddr of length len.
            if unsafe { libc::bind(fd, &addr as *const _ as *const libc::sockaddr, len) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let (addr, len) = sockaddr(target);
            // SAFETY: as above.
            if unsafe { libc::connect(fd, &addr as *const _ as *const libc::sockaddr, len) } != 0 {
                let e = io::Error::last_os_error();
                return Err(if e.raw_os_error() == Some(libc::EINPROGRESS) {
                    io::Error::new(io::ErrorKind::TimedOut, "connect timed out")
                } else {
                    e
                });
            }
            debug_assert_eq!(stream.as_raw_fd(), fd);
            stream
        }
    };
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn sockaddr(addr: SocketAddr) -> (libc::sockaddr_storage, libc::socklen_t) {
    // SAFETY: all-zero is a valid sockaddr_storage.
    let mut storage: libc::sockaddr_storage = unsafe { mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            let sin = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in) };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_port = a.port().to_be();
            sin.sin_addr.s_addr = u32::from_ne_bytes(a.ip().octets());
            mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: as above.
            let sin6 = unsafe { &mut *(&mut storage as *mut _ as *mut libc::sockaddr_in6) };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            mem::size_of::<libc::sockaddr_in6>()
        }
    };
    (storage, len as libc::socklen_t)
}

/// A stream plus the bytes read but not yet consumed (keep-alive leftovers).
struct Reader {
    stream: TcpStream,
    buf: Vec<u8>,
    eof: bool,
}

impl Reader {
    fn new(stream: TcpStream) -> Self {
        Reader {
            stream,
            buf: Vec::new(),
            eof: false,
        }
    }

    fn send(
        &mut self,
        target: SocketAddr,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&[u8]>,
        close: bool,
    ) -> io::Result<()> {
        let has = |name: &str| headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        let mut req = format!("{method} {path} HTTP/1.1\r\n");
        if !has("host") {
            req += &format!("Host: {target}\r\n");
        }
        for (k, v) in headers {
            req += &format!("{k}: {v}\r\n");
        }
        if let Some(b) = body {
            if !has("content-length") && !has("transfer-encoding") {
                req += &format!("Content-Length: {}\r\n", b.len());
            }
        }
        if close && !has("connection") {
            req += "Connection: close\r\n";
        }
        req += "\r\n";
        let mut bytes = req.into_bytes();
        bytes.extend_from_slice(body.unwrap_or_default());
        self.stream.write_all(&bytes)
    }

    /// Reads more bytes; 0 at EOF. A reset counts as EOF: nginx resets
    /// when it closes (444) with unread request bytes pending.
    fn fill(&mut self) -> Result<usize, String> {
        if self.eof {
            return Ok(0);
        }
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return Ok(0);
                }
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::ConnectionReset => {
                    self.eof = true;
                    return Ok(0);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(format!(
                        "no response within {HTTP_TIMEOUT:?} (received so far: {:?})",
                        String::from_utf8_lossy(&self.buf)
                    ))
                }
                Err(e) => return Err(format!("read: {e}")),
            }
        }
    }

    /// Reads until `buf` holds at least `n` bytes.
    fn need(&mut self, n: usize) -> Result<(), String> {
        while self.buf.len() < n {
            if self.fill()? == 0 {
                return Err(format!(
                    "connection closed mid-response (have {} of {n} bytes)",
                    self.buf.len()
                ));
            }
        }
        Ok(())
    }

    /// Position of the first `needle` at or after `from`, reading as needed;
    /// `None` at EOF.
    fn find(&mut self, needle: &[u8], from: usize) -> Result<Option<usize>, String> {
        loop {
            if let Some(i) = self
                .buf
                .get(from..)
                .and_then(|b| b.windows(needle.len()).position(|w| w == needle))
            {
                return Ok(Some(from + i));
            }
            if self.fill()? == 0 {
                return Ok(None);
            }
        }
    }

    /// Reads one response, consuming exactly its bytes. Returns it and
    /// whether the connection may be reused.
    fn read_reply(&mut self, method: &str) -> Result<(Reply, bool), String> {
        loop {
            let Some(head_end) = self.find(b"\r\n\r\n", 0)? else {
                if self.buf.is_empty() {
                    return Ok((Reply::Closed, false));
                }
                return Err(format!(
                    "connection closed mid-headers: {:?}",
                    String::from_utf8_lossy(&self.buf)
                ));
            };
            let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
            self.buf.drain(..head_end + 4);
            let (version, status, headers) = parse_head(&head)?;
            // Interim responses (100 Continue) precede the real one.
            if (100..200).contains(&status) && status != 101 {
                continue;
            }
            let find = |name: &str| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.to_ascii_lowercase())
            };
            let connection = find("connection").unwrap_or_default();
            let mut keep_alive = if version == "HTTP/1.0" {
                connection.contains("keep-alive")
            } else {
                !connection.contains("close")
            };
            let body = if method.eq_ignore_ascii_case("HEAD") || status == 204 || status == 304 {
                Vec::new()
            } else if find("transfer-encoding").is_some_and(|te| te.contains("chunked")) {
                self.read_chunked()?
            } else if let Some(len) = find("content-length") {
                let len: usize = len
                    .trim()
                    .parse()
                    .map_err(|_| format!("bad Content-Length {len:?}"))?;
                self.need(len)?;
                self.buf.drain(..len).collect()
            } else {
                // Delimited by close.
                while self.fill()? > 0 {}
                keep_alive = false;
                mem::take(&mut self.buf)
            };
            let keep_alive = keep_alive && !(self.eof && self.buf.is_empty());
            return Ok((
                Reply::Response(Response {
                    status,
                    headers,
                    body,
                }),
                keep_alive,
            ));
        }
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, String> {
        let mut body = Vec::new();
        loop {
            let eol = self
                .find(b"\r\n", 0)?
                .ok_or("connection closed in chunk size line")?;
            let line = String::from_utf8_lossy(&self.buf[..eol]).into_owned();
            let size_hex = line.split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| format!("bad chunk size line {line:?}"))?;
            self.buf.drain(..eol + 2);
            if size == 0 {
                // Trailers (usually none) end with an empty line.
                loop {
                    let eol = self
                        .find(b"\r\n", 0)?
                        .ok_or("connection closed in chunked trailer")?;
                    self.buf.drain(..eol + 2);
                    if eol == 0 {
                        return Ok(body);
                    }
                }
            }
            self.need(size + 2)?;
            body.extend(self.buf.drain(..size));
            self.buf.drain(..2);
        }
    }
}

type Head = (String, u16, Vec<(String, String)>);

fn parse_head(head: &str) -> Result<Head, String> {
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    let version = parts.next().unwrap_or_default().to_string();
    let status = parts
        .next()
        .and_then(|s| s.parse().ok())
        .filter(|_| version.starts_with("HTTP/"))
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers = lines
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect();
    Ok((version, status, headers))
}

/// A plain TCP listener on 127.0.0.1 that accepts every connection and
/// closes it at once: "another port of the host" for firewall tests (see
/// [`connects_from`]). Its thread stops on drop.
pub struct AcceptAll {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptAll {
    /// Listens on 127.0.0.1:`port` (bound in the calling thread's network
    /// namespace; the accepting thread inherits it).
    pub fn start(port: u16) -> AcceptAll {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))
            .unwrap_or_else(|e| panic!("listen on 127.0.0.1:{port}: {e}"));
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                drop(conn);
            }
        });
        AcceptAll {
            port,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
}

impl Drop for AcceptAll {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wake the accept: 127.0.0.1 itself is never firewalled by a test.
        let woken =
            connect_within(loopback(self.port, false), None, Duration::from_secs(1)).is_ok();
        if let Some(t) = self.thread.take() {
            if woken {
                let _ = t.join();
            }
        }
    }
}
