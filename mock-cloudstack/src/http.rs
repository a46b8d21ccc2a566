//! A deliberately small HTTP/1.0 + HTTP/1.1 server on `std::net`, one thread
//! per connection. Enough for curl and an nginx upstream (keep-alive,
//! pipelining, `Expect: 100-continue`, Content-Length and chunked bodies),
//! with hard limits so a hostile or stuck client only costs one thread for
//! a bounded time.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
const MAX_HEADERS: usize = 100;
/// Beyond this many open connections new ones get a 503, so a connection
/// flood cannot exhaust threads or memory.
const MAX_CONNECTIONS: usize = 512;

pub struct Request {
    pub method: String,
    /// Origin-form path, still percent-encoded, without the query.
    pub path: String,
    /// Raw query string without the `?`.
    pub query: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names lower-cased, in arrival order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn wants_keep_alive(&self) -> bool {
        let tokens = self.header("connection").unwrap_or("").to_ascii_lowercase();
        let has = |t: &str| tokens.split(',').any(|x| x.trim() == t);
        if self.minor_version >= 1 {
            !has("close")
        } else {
            has("keep-alive")
        }
    }
}

pub struct Response {
    pub status: u16,
    /// Extra headers; Content-Length and Connection are added on write.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Appended to the access-log line (e.g. the API command).
    pub log_note: String,
}

impl Response {
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Self {
        Response {
            status,
            headers: vec![("Content-Type".into(), content_type.into())],
            body: body.into(),
            log_note: String::new(),
        }
    }

    pub fn text(status: u16, body: &str) -> Self {
        Self::new(status, "text/plain;charset=utf-8", format!("{body}\n"))
    }
}

pub fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

pub type Handler = dyn Fn(&Request) -> Response + Send + Sync;

pub struct Server {
    listener: TcpListener,
}

impl Server {
    pub fn bind(addr: impl ToSocketAddrs) -> io::Result<Self> {
        Ok(Server {
            listener: TcpListener::bind(addr)?,
        })
    }

    /// The bound address; the way to learn the port after binding port 0.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts forever.
    pub fn run(self, handler: Arc<Handler>) {
        let active = Arc::new(AtomicUsize::new(0));
        for stream in self.listener.incoming() {
            let stream = match stream {
                Ok(s) => s,
                Err(e) => {
                    // Typically EMFILE; back off instead of spinning.
                    log(&format!("accept failed: {e}"));
                    thread::sleep(Duration::from_millis(50));
                    continue;
                }
            };
            if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
                reject_busy(stream);
                continue;
            }
            let guard = ActiveGuard::new(&active);
            let handler = Arc::clone(&handler);
            let spawned = thread::Builder::new()
                .name("mock-cloudstack-conn".into())
                .spawn(move || {
                    let _guard = guard;
                    serve_connection(stream, &*handler);
                });
            if let Err(e) = spawned {
                log(&format!("cannot spawn connection thread: {e}"));
            }
        }
    }
}

/// Decrements the connection count even if the connection thread panics.
struct ActiveGuard(Arc<AtomicUsize>);

impl ActiveGuard {
    fn new(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::SeqCst);
        ActiveGuard(Arc::clone(active))
    }
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

fn reject_busy(mut stream: TcpStream) {
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let resp = Response::text(503, "too many connections");
    let _ = write_response(&mut stream, &resp, false, false);
}

/// Writes one line to stderr without ever panicking (eprintln! panics if
/// stderr is gone, and a closed log pipe must not kill the server).
pub fn log(line: &str) {
    let mut err = io::stderr().lock();
    let _ = writeln!(err, "mock-cloudstack: {line}");
}

/// Keeps terminal escapes and newlines from client headers out of the log.
fn sanitize(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

enum Failure {
    /// Answer with this status, then close.
    Status(u16, &'static str),
    /// Drop the connection without answering (EOF, I/O error).
    Close,
}

struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Conn {
    /// Reads more bytes; `Ok(false)` on EOF.
    fn read_more(&mut self) -> Result<bool, Failure> {
        let mut chunk = [0u8; 8192];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return Ok(false),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(true);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Failure::Status(408, "request timed out"));
                }
                Err(_) => return Err(Failure::Close),
            }
        }
    }

    /// Ensures at least `len` bytes are buffered.
    fn fill(&mut self, len: usize) -> Result<(), Failure> {
        while self.buf.len() < len {
            if !self.read_more()? {
                return Err(Failure::Close);
            }
        }
        Ok(())
    }

    /// Returns the line starting at `pos` (without CRLF) and the offset
    /// after it, reading more as needed but never more than `limit` bytes.
    fn line_at(&mut self, pos: usize, limit: usize) -> Result<(String, usize), Failure> {
        loop {
            if let Some(i) = self.buf[pos..].iter().position(|&b| b == b'\n') {
                let line = &self.buf[pos..pos + i];
                let line = line.strip_suffix(b"\r").unwrap_or(line);
                return Ok((String::from_utf8_lossy(line).into_owned(), pos + i + 1));
            }
            if self.buf.len() - pos > limit {
                return Err(Failure::Status(400, "line too long"));
            }
            if !self.read_more()? {
                return Err(Failure::Close);
            }
        }
    }

    /// Reads the next request; `Ok(None)` when the client went away cleanly
    /// between requests.
    fn read_request(&mut self) -> Result<Option<Request>, Failure> {
        // RFC 9112 lets servers skip empty lines before a request line.
        let head_end = loop {
            let skip = self
                .buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.buf.drain(..skip);
            if let Some(end) = header_end(&self.buf) {
                break end;
            }
            if self.buf.len() > MAX_HEADER_BYTES {
                return Err(Failure::Status(400, "request header too large"));
            }
            let was_empty = self.buf.is_empty();
            match self.read_more() {
                Ok(true) => {}
                Ok(false) => return Ok(None),
                // An idle keep-alive connection timing out is normal.
                Err(Failure::Status(408, _)) if was_empty => return Ok(None),
                Err(f) => return Err(f),
            }
        };
        if head_end > MAX_HEADER_BYTES {
            return Err(Failure::Status(400, "request header too large"));
        }
        let head = String::from_utf8_lossy(&self.buf[..head_end]).into_owned();
        let mut req = parse_head(&head)?;
        let body_start = head_end;

        let te = req.header("transfer-encoding").map(str::to_ascii_lowercase);
        let lengths: Vec<&str> = req
            .headers
            .iter()
            .filter(|(k, _)| k == "content-length")
            .map(|(_, v)| v.as_str())
            .collect();
        let continue_expected = req.minor_version >= 1
            && req
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"));

        let consumed = if let Some(te) = te {
            if !lengths.is_empty() {
                // Both framings at once is the classic smuggling vector.
                return Err(Failure::Status(
                    400,
                    "both Transfer-Encoding and Content-Length",
                ));
            }
            if te.trim() != "chunked" {
                return Err(Failure::Status(501, "unsupported transfer coding"));
            }
            if continue_expected && self.buf.len() == body_start {
                self.send_continue()?;
            }
            let (body, end) = self.read_chunked(body_start)?;
            req.body = body;
            end
        } else {
            let len = match lengths.first() {
                None => 0,
                Some(first) => {
                    if lengths.iter().any(|l| l != first) {
                        return Err(Failure::Status(400, "conflicting Content-Length"));
                    }
                    if first.is_empty() || !first.bytes().all(|b| b.is_ascii_digit()) {
                        return Err(Failure::Status(400, "bad Content-Length"));
                    }
                    match first.parse::<usize>() {
                        Ok(n) if n <= MAX_BODY_BYTES => n,
                        _ => return Err(Failure::Status(413, "request body too large")),
                    }
                }
            };
            if len > 0 && continue_expected && self.buf.len() == body_start {
                self.send_continue()?;
            }
            self.fill(body_start + len)?;
            req.body = self.buf[body_start..body_start + len].to_vec();
            body_start + len
        };
        // Whatever follows belongs to the next pipelined request.
        self.buf.drain(..consumed);
        Ok(Some(req))
    }

    fn send_continue(&mut self) -> Result<(), Failure> {
        self.stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .map_err(|_| Failure::Close)
    }

    fn read_chunked(&mut self, start: usize) -> Result<(Vec<u8>, usize), Failure> {
        let mut body = Vec::new();
        let mut pos = start;
        loop {
            let (line, next) = self.line_at(pos, 1024)?;
            pos = next;
            let size_text = line.split(';').next().unwrap_or("").trim();
            if size_text.is_empty()
                || size_text.len() > 8
                || !size_text.bytes().all(|b| b.is_ascii_hexdigit())
            {
                return Err(Failure::Status(400, "bad chunk size"));
            }
            let size = usize::from_str_radix(size_text, 16)
                .map_err(|_| Failure::Status(400, "bad chunk size"))?;
            if size == 0 {
                let trailers_start = pos;
                loop {
                    let (line, next) = self.line_at(pos, MAX_HEADER_BYTES)?;
                    pos = next;
                    if line.is_empty() {
                        return Ok((body, pos));
                    }
                    if pos - trailers_start > MAX_HEADER_BYTES {
                        return Err(Failure::Status(400, "trailers too large"));
                    }
                }
            }
            if body.len() + size > MAX_BODY_BYTES {
                return Err(Failure::Status(413, "request body too large"));
            }
            self.fill(pos + size + 2)?;
            if &self.buf[pos + size..pos + size + 2] != b"\r\n" {
                return Err(Failure::Status(400, "bad chunk terminator"));
            }
            body.extend_from_slice(&self.buf[pos..pos + size]);
            pos += size + 2;
        }
    }
}

/// Offset just past the blank line ending the header block, accepting bare
/// LF line endings as well as CRLF.
fn header_end(buf: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < buf.len() {
        if buf[i] == b'\n' {
            match buf.get(i + 1..) {
                Some([b'\n', ..]) => return Some(i + 2),
                Some([b'\r', b'\n', ..]) => return Some(i + 3),
                _ => {}
            }
        }
        i += 1;
    }
    None
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn parse_head(head: &str) -> Result<Request, Failure> {
    let mut lines = head.lines();
    let request_line = lines.next().unwrap_or("");
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(Failure::Status(400, "malformed request line"));
    };
    if !is_token(method) {
        return Err(Failure::Status(400, "bad method"));
    }
    let minor_version = match version {
        "HTTP/1.1" => 1,
        "HTTP/1.0" => 0,
        v if v.starts_with("HTTP/") => {
            return Err(Failure::Status(505, "unsupported HTTP version"))
        }
        _ => return Err(Failure::Status(400, "malformed request line")),
    };
    if !target.starts_with('/') || target.chars().any(|c| c.is_control()) {
        return Err(Failure::Status(400, "bad request target"));
    }
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    // A fragment is never sent by conforming clients; ignore it if present.
    let query = query.split('#').next().unwrap_or("");

    let mut headers = Vec::new();
    for line in lines {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if line.starts_with([' ', '\t']) {
            return Err(Failure::Status(400, "obsolete header folding"));
        }
        let Some((name, value)) = line.split_once(':') else {
            return Err(Failure::Status(400, "malformed header"));
        };
        if !is_token(name) {
            return Err(Failure::Status(400, "malformed header name"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(Failure::Status(400, "too many headers"));
        }
        headers.push((
            name.to_ascii_lowercase(),
            value.trim_matches([' ', '\t']).to_string(),
        ));
    }
    if minor_version == 1 && !headers.iter().any(|(k, _)| k == "host") {
        return Err(Failure::Status(400, "missing Host header"));
    }
    Ok(Request {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        minor_version,
        headers,
        body: Vec::new(),
    })
}

fn write_response(
    stream: &mut TcpStream,
    resp: &Response,
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {} {}\r\n", resp.status, reason(resp.status));
    for (k, v) in &resp.headers {
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    out.push_str(if keep_alive {
        "Connection: keep-alive\r\n\r\n"
    } else {
        "Connection: close\r\n\r\n"
    });
    let mut bytes = out.into_bytes();
    if !head_only {
        bytes.extend_from_slice(&resp.body);
    }
    stream.write_all(&bytes)?;
    stream.flush()
}

fn serve_connection(stream: TcpStream, handler: &Handler) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let _ = stream.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = stream.set_nodelay(true);
    let mut conn = Conn {
        stream,
        buf: Vec::new(),
    };
    loop {
        match conn.read_request() {
            Ok(Some(req)) => {
                let keep_alive = req.wants_keep_alive();
                let resp = handler(&req);
                let mut line = format!("{} {} {}", req.method, req.path, resp.status);
                if let Some(xff) = req.header("x-forwarded-for") {
                    line.push_str(&format!(" xff={xff}"));
                }
                if !resp.log_note.is_empty() {
                    line.push(' ');
                    line.push_str(&resp.log_note);
                }
                log(&sanitize(&line));
                let head_only = req.method == "HEAD";
                if write_response(&mut conn.stream, &resp, keep_alive, head_only).is_err()
                    || !keep_alive
                {
                    break;
                }
            }
            Ok(None) | Err(Failure::Close) => break,
            Err(Failure::Status(status, why)) => {
                log(&format!("- - {status} ({why})"));
                let _ =
                    write_response(&mut conn.stream, &Response::text(status, why), false, false);
                break;
            }
        }
    }
    // Half-close then drain briefly so the client sees our response rather
    // than a reset caused by unread request bytes.
    let _ = conn.stream.shutdown(Shutdown::Write);
    let _ = conn
        .stream
        .set_read_timeout(Some(Duration::from_millis(200)));
    let mut sink = [0u8; 4096];
    let mut drained = 0usize;
    while drained < 64 * 1024 {
        match conn.stream.read(&mut sink) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_end_accepts_crlf_and_lf() {
        assert_eq!(
            header_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nBODY"),
            Some(27)
        );
        assert_eq!(header_end(b"GET / HTTP/1.0\n\nBODY"), Some(16));
        assert_eq!(header_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
    }

    #[test]
    fn parse_head_rejects_garbage_without_panicking() {
        for bad in [
            "",
            "GET",
            "GET /",
            "GET / HTTP/1.1 extra",
            "GET x HTTP/1.1\r\nHost: a\r\n",
            "G(T / HTTP/1.1\r\nHost: a\r\n",
            "GET / HTTP/1.1\r\nno colon\r\n",
            "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n",
            "GET / HTTP/1.1\r\n",
            "GET / FTP/1.0\r\n",
        ] {
            assert!(parse_head(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_head("GET / HTTP/2.0\r\n"),
            Err(Failure::Status(505, _))
        ));
        let req = parse_head("POST /a?b=c HTTP/1.0\r\nX-Y:  z \r\n")
            .ok()
            .unwrap();
        assert_eq!(req.path, "/a");
        assert_eq!(req.query, "b=c");
        assert_eq!(req.header("x-y"), Some("z"));
        assert!(!req.wants_keep_alive());
    }
}
