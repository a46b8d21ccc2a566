//! HTTP/1.1 for LAPI without I/O: a request written into a buffer, and a
//! response read from whatever bytes arrive, in any pieces. The head is
//! parsed by `httparse`; the body is framed by `Content-Length` or chunked
//! encoding, and bounded: a peer that sends more than the caller allows,
//! or never ends, is an error, never a growing buffer.

/// Headers a response may carry.
const MAX_HEADERS: usize = 32;
/// Bytes of a response head (status line and headers).
pub const MAX_HEAD: usize = 16 * 1024;

/// Writes a request. `body` is JSON when present.
pub fn request(
    out: &mut Vec<u8>,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) {
    out.extend_from_slice(method.as_bytes());
    out.push(b' ');
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
    out.extend_from_slice(host.as_bytes());
    // LAPI refuses a machine's login without NAME/VERSION.
    out.extend_from_slice(b"\r\nUser-Agent: authban/");
    out.extend_from_slice(env!("CARGO_PKG_VERSION").as_bytes());
    out.extend_from_slice(b"\r\nAccept: application/json\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if let Some(body) = body {
        out.extend_from_slice(b"Content-Type: application/json\r\nContent-Length: ");
        out.extend_from_slice(body.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
    } else {
        out.extend_from_slice(b"\r\n");
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum HttpError {
    #[error("malformed response: {0}")]
    Malformed(&'static str),
    #[error("response head over {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("response body over {0} bytes")]
    BodyTooLong(usize),
    #[error("response without Content-Length or chunked encoding")]
    Unframed,
    #[error("connection closed before the response ended")]
    Truncated,
}

/// A complete response.
#[derive(Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// The server said it closes the connection after this response.
    pub close: bool,
    pub body: Vec<u8>,
}

enum Body {
    Length(usize),
    /// Chunked: reading a chunk's size line, or `left` bytes of a chunk
    /// (then its CRLF), or the trailer after the last chunk.
    ChunkSize,
    Chunk {
        left: usize,
    },
    ChunkEnd,
    Trailer,
}

/// Reads one response from bytes fed in any pieces.
pub struct ResponseReader {
    max_body: usize,
    buf: Vec<u8>,
    head: Option<(u16, bool, Body)>,
    body: Vec<u8>,
}

impl ResponseReader {
    /// A reader refusing bodies over `max_body` bytes.
    pub fn new(max_body: usize) -> ResponseReader {
        ResponseReader {
            max_body,
            buf: Vec::new(),
            head: None,
            body: Vec::new(),
        }
    }

    /// Takes more bytes: `Ok(Some(..))` once the response is whole (bytes
    /// after it are ignored: LAPI is asked one request at a time).
    pub fn feed(&mut self, bytes: &[u8]) -> Result<Option<Response>, HttpError> {
        let searched = self.buf.len().saturating_sub(3);
        self.buf.extend_from_slice(bytes);
        if self.head.is_none() {
            // Parsed once whole: a peer trickling its head a byte at a time
            // costs a search of the new bytes, not a parse of them all.
            if !self.buf[searched..].windows(4).any(|w| w == b"\r\n\r\n") {
                if self.buf.len() > MAX_HEAD {
                    return Err(HttpError::HeadTooLong);
                }
                return Ok(None);
            }
            let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
            let mut parsed = httparse::Response::new(&mut headers);
            let consumed = match parsed.parse(&self.buf) {
                Ok(httparse::Status::Complete(n)) => n,
                Ok(httparse::Status::Partial) if self.buf.len() > MAX_HEAD => {
                    return Err(HttpError::HeadTooLong)
                }
                Ok(httparse::Status::Partial) => return Ok(None),
                Err(httparse::Error::TooManyHeaders) => {
                    return Err(HttpError::Malformed("too many headers"))
                }
                Err(_) => return Err(HttpError::Malformed("head")),
            };
            if consumed > MAX_HEAD {
                return Err(HttpError::HeadTooLong);
            }
            let status = parsed.code.ok_or(HttpError::Malformed("status"))?;
            let (mut length, mut chunked, mut close) = (None, false, false);
            for h in parsed.headers.iter() {
                let value = core::str::from_utf8(h.value)
                    .map_err(|_| HttpError::Malformed("header value"))?
                    .trim();
                if h.name.eq_ignore_ascii_case("content-length") {
                    let n: usize = value
                        .parse()
                        .map_err(|_| HttpError::Malformed("Content-Length"))?;
                    if length.replace(n).is_some_and(|m| m != n) {
                        return Err(HttpError::Malformed("Content-Length"));
                    }
                } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                    chunked = value.eq_ignore_ascii_case("chunked");
                    if !chunked {
                        return Err(HttpError::Malformed("Transfer-Encoding"));
                    }
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close = value.eq_ignore_ascii_case("close");
                }
            }
            // No body at all: 1xx, 204, 304 (LAPI sends none of them).
            let bodiless = matches!(status, 100..=199 | 204 | 304);
            let body = match (chunked, length) {
                (true, _) => Body::ChunkSize,
                (false, Some(n)) if n > self.max_body => {
                    return Err(HttpError::BodyTooLong(self.max_body))
                }
                (false, Some(n)) => Body::Length(n),
                (false, None) if bodiless => Body::Length(0),
                (false, None) => return Err(HttpError::Unframed),
            };
            self.buf.drain(..consumed);
            self.head = Some((status, close, body));
        }
        self.read_body()
    }

    fn read_body(&mut self) -> Result<Option<Response>, HttpError> {
        // What is read is dropped from the buffer once, at the end: a body
        // of many chunks costs no copy per chunk.
        let mut at = 0;
        let result = self.read_body_from(&mut at);
        self.buf.drain(..at.min(self.buf.len()));
        result
    }

    fn read_body_from(&mut self, at: &mut usize) -> Result<Option<Response>, HttpError> {
        let Some((status, close, body)) = self.head.as_mut() else {
            return Ok(None);
        };
        loop {
            let rest = &self.buf[*at..];
            match body {
                Body::Length(n) => {
                    if rest.len() < *n {
                        return Ok(None);
                    }
                    self.body.extend_from_slice(&rest[..*n]);
                    *at += *n;
                    let (status, close) = (*status, *close);
                    return Ok(Some(Response {
                        status,
                        close,
                        body: core::mem::take(&mut self.body),
                    }));
                }
                Body::ChunkSize => {
                    let Some(end) = find_crlf(rest) else {
                        if rest.len() > 1024 {
                            return Err(HttpError::Malformed("chunk size"));
                        }
                        return Ok(None);
                    };
                    let line = core::str::from_utf8(&rest[..end])
                        .map_err(|_| HttpError::Malformed("chunk size"))?;
                    // Chunk extensions (`;name=value`) are ignored.
                    let hex = line.split(';').next().unwrap_or("").trim();
                    if hex.is_empty() || hex.len() > 15 {
                        return Err(HttpError::Malformed("chunk size"));
                    }
                    let size = usize::from_str_radix(hex, 16)
                        .map_err(|_| HttpError::Malformed("chunk size"))?;
                    *at += end + 2;
                    if size == 0 {
                        *body = Body::Trailer;
                    } else if self.body.len() + size > self.max_body {
                        return Err(HttpError::BodyTooLong(self.max_body));
                    } else {
                        *body = Body::Chunk { left: size };
                    }
                }
                Body::Chunk { left } => {
                    let n = (*left).min(rest.len());
                    self.body.extend_from_slice(&rest[..n]);
                    *at += n;
                    *left -= n;
                    if *left > 0 {
                        return Ok(None);
                    }
                    *body = Body::ChunkEnd;
                }
                Body::ChunkEnd => {
                    if rest.len() < 2 {
                        return Ok(None);
                    }
                    if &rest[..2] != b"\r\n" {
                        return Err(HttpError::Malformed("chunk end"));
                    }
                    *at += 2;
                    *body = Body::ChunkSize;
                }
                Body::Trailer => {
                    // Trailer fields, if any, then an empty line.
                    let Some(end) = find_crlf(rest) else {
                        if rest.len() > MAX_HEAD {
                            return Err(HttpError::HeadTooLong);
                        }
                        return Ok(None);
                    };
                    *at += end + 2;
                    if end == 0 {
                        let (status, close) = (*status, *close);
                        return Ok(Some(Response {
                            status,
                            close,
                            body: core::mem::take(&mut self.body),
                        }));
                    }
                }
            }
        }
    }

    /// The peer closed the connection: an unfinished response is lost.
    pub fn closed(&self) -> HttpError {
        HttpError::Truncated
    }
}

fn find_crlf(bytes: &[u8]) -> Option<usize> {
    bytes.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn whole(max: usize, bytes: &[u8]) -> Result<Option<Response>, HttpError> {
        ResponseReader::new(max).feed(bytes)
    }

    /// The same bytes fed one at a time give the same answer.
    fn bytewise(max: usize, bytes: &[u8]) -> Result<Option<Response>, HttpError> {
        let mut r = ResponseReader::new(max);
        for (i, b) in bytes.iter().enumerate() {
            match r.feed(core::slice::from_ref(b)) {
                Ok(None) => {}
                Ok(Some(done)) => {
                    assert_eq!(i, bytes.len() - 1, "answered early");
                    return Ok(Some(done));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    #[test]
    fn a_request_as_lapi_wants_it() {
        let mut out = Vec::new();
        request(
            &mut out,
            "POST",
            "127.0.0.1:8080",
            "/v1/watchers/login",
            &[("X-Api-Key", "k")],
            Some(b"{}"),
        );
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("POST /v1/watchers/login HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.contains("\r\nUser-Agent: authban/"));
        assert!(text.contains("\r\nX-Api-Key: k\r\n"));
        assert!(text.ends_with("Content-Length: 2\r\n\r\n{}"));
    }

    #[test]
    fn lengths_and_chunks_in_any_pieces() {
        let plain =
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 5\r\n\r\nhello";
        let chunked = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3;x=y\r\nhel\r\n2\r\nlo\r\n0\r\nX-Trailer: 1\r\n\r\n";
        for (bytes, close) in [(&plain[..], false), (&chunked[..], true)] {
            let want = Response {
                status: 200,
                close,
                body: b"hello".to_vec(),
            };
            assert_eq!(whole(100, bytes), Ok(Some(want)));
            let want = Response {
                status: 200,
                close,
                body: b"hello".to_vec(),
            };
            assert_eq!(bytewise(100, bytes), Ok(Some(want)));
        }
        assert_eq!(
            whole(100, b"HTTP/1.1 204 No Content\r\n\r\n")
                .unwrap()
                .unwrap()
                .body,
            b""
        );
    }

    #[test]
    fn bounded_against_a_hostile_peer() {
        assert_eq!(
            whole(4, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"),
            Err(HttpError::BodyTooLong(4))
        );
        assert_eq!(
            bytewise(4, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n"),
            Err(HttpError::BodyTooLong(4))
        );
        let mut endless = ResponseReader::new(10);
        let mut failed = None;
        for _ in 0..2000 {
            if let Err(e) = endless.feed(b"X-Header: aaaaaaaaaaaaaaaaaaaa\r\n") {
                failed = Some(e);
                break;
            }
        }
        assert!(failed.is_some(), "a head that never ends is refused");
        assert_eq!(
            whole(10, b"HTTP/1.1 200 OK\r\n\r\nbody"),
            Err(HttpError::Unframed)
        );
        assert_eq!(
            whole(
                10,
                b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
            ),
            Err(HttpError::Malformed("Content-Length"))
        );
        assert_eq!(
            whole(10, b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(HttpError::Malformed("Transfer-Encoding"))
        );
        assert_eq!(
            whole(
                10,
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"
            ),
            Err(HttpError::Malformed("chunk size"))
        );
        assert!(whole(10, b"SMTP ready\r\n\r\n").is_err());
    }
}
