//! `authban_read_body` and `$authban_param_NAME` with a real nginx in
//! front of the mock CloudStack: a POSTed login's form body is read in the
//! access phase, its parameters named, and the upstream still receives it
//! byte for byte (the mock echoes the length and SHA-256 of what it got);
//! bodies not to read (too large, another type, none) pass unread.

mod common;

use sha2::{Digest, Sha256};

use common::*;

/// Zone `z` counts CloudStack's 531 (ban at the 3rd). The server reads
/// form bodies up to its 1k buffer; `/off` does not; `/tiny` takes 100
/// bytes at most. The headers show what the variables read.
const CONF: &str = r#"
    authban_zone zone=z:1m maxretry=3 findtime=1m bantime=1m;
    server {
        listen 127.0.0.1:{port};
        client_body_buffer_size 1k;
        authban_read_body on;
        authban z;
        authban_fail_status 531;
        add_header X-Authban-User "[$authban_param_username]" always;
        add_header X-Authban-Command "[$authban_param_command]" always;
        location /client/api {
            proxy_pass http://MOCK;
        }
        location = /off {
            authban_read_body off;
            proxy_pass http://MOCK/client/api;
        }
        location = /tiny {
            client_max_body_size 100;
            proxy_pass http://MOCK/client/api;
        }
    }
"#;

const FORM: (&str, &str) = ("Content-Type", "application/x-www-form-urlencoded");
const LOGIN: &[u8] = b"command=login&username=admin&password=password&response=json";

fn start() -> (Mock, Nginx) {
    let mock = Mock::start();
    let nginx = Nginx::options()
        .error_log_level("debug")
        .start(&CONF.replace("MOCK", &mock.addr()));
    (mock, nginx)
}

/// `body` in chunks of `size` bytes, as `Transfer-Encoding: chunked`.
fn chunked(body: &[u8], size: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in body.chunks(size) {
        out.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        out.extend_from_slice(chunk);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

fn post(nginx: &Nginx, src: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Reply {
    http_from_ip(src, nginx.port(), "POST", path, headers, Some(body))
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The mock received exactly `body`.
fn assert_received(reply: &Reply, body: &[u8], nginx: &Nginx) {
    let sha = sha256_hex(body);
    let len = body.len().to_string();
    assert_eq!(
        reply.header("X-Mock-Body-Length"),
        Some(len.as_str()),
        "{reply:?}\n{}",
        nginx.diagnostics()
    );
    assert_eq!(reply.header("X-Mock-Body-Sha256"), Some(sha.as_str()));
}

fn user(reply: &Reply) -> Option<&str> {
    reply.header("X-Authban-User")
}

fn assert_logged(nginx: &Nginx, line: &str) {
    assert!(
        nginx.error_log().contains(line),
        "no {line:?}\n{}",
        nginx.diagnostics()
    );
}

#[test]
fn a_posted_login_is_read_named_and_passed_on_byte_for_byte() {
    with_timeout(60, || {
        let (_mock, nginx) = start();

        let reply = post(&nginx, "127.0.0.2", "/client/api", &[FORM], LOGIN);
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        assert_eq!(user(&reply), Some("[admin]"));
        assert_eq!(reply.header("X-Authban-Command"), Some("[login]"));
        assert_received(&reply, LOGIN, &nginx);
        assert_logged(&nginx, "authban: request body read");

        // Chunked, with a charset: the same, as nginx de-chunks it for the
        // upstream anyway.
        let te = ("Transfer-Encoding", "chunked");
        let ct = (
            "Content-Type",
            "application/x-www-form-urlencoded; charset=UTF-8",
        );
        let reply = post(
            &nginx,
            "127.0.0.2",
            "/client/api",
            &[ct, te],
            &chunked(LOGIN, 7),
        );
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        assert_eq!(user(&reply), Some("[admin]"));
        assert_received(&reply, LOGIN, &nginx);

        // Decoded as CloudStack decodes it (which answers 531 to them).
        let body = b"command=login&username=al%69ce+b%2Bc%zz&password=x";
        let reply = post(&nginx, "127.0.0.3", "/client/api", &[FORM], body);
        assert_eq!(reply.status(), Some(531));
        assert_eq!(user(&reply), Some("[alice b+c%zz]"));
        assert_received(&reply, body, &nginx);

        // The query's parameter comes first, as CloudStack takes it.
        let path = "/client/api?username=bob";
        let reply = post(&nginx, "127.0.0.4", path, &[FORM], LOGIN);
        assert_eq!(reply.status(), Some(531));
        assert_eq!(user(&reply), Some("[bob]"));
        assert_eq!(reply.header("X-Authban-Command"), Some("[login]"));

        // A GET reads no body; its query is read.
        let reply = get(nginx.port(), "/client/api?command=listZones&username=carol");
        assert_eq!(user(&reply), Some("[carol]"), "{}", nginx.diagnostics());
        assert_received(&reply, b"", &nginx);
        assert_logged(&nginx, "authban: request body not read: none");
        nginx.assert_clean();
    });
}

#[test]
fn bodies_not_to_read_pass_through_unread() {
    with_timeout(60, || {
        let (_mock, nginx) = start();

        // Larger than client_body_buffer_size.
        let mut big = LOGIN.to_vec();
        big.extend_from_slice(format!("&pad={}", "x".repeat(1500)).as_bytes());
        let reply = post(&nginx, "127.0.0.2", "/client/api", &[FORM], &big);
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        assert_eq!(user(&reply), Some("[]"));
        assert_received(&reply, &big, &nginx);
        assert_logged(
            &nginx,
            "authban: request body not read: larger than client_body_buffer_size",
        );

        // Chunked, its length unknown: read, but (several buffers' worth)
        // nginx wrote it to a temporary file.
        let mut huge = LOGIN.to_vec();
        huge.extend_from_slice(format!("&pad={}", "x".repeat(5000)).as_bytes());
        let te = ("Transfer-Encoding", "chunked");
        let reply = post(
            &nginx,
            "127.0.0.2",
            "/client/api",
            &[FORM, te],
            &chunked(&huge, 500),
        );
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        assert_eq!(user(&reply), Some("[]"));
        assert_received(&reply, &huge, &nginx);
        assert_logged(&nginx, "authban: request body in a temporary file");

        // Another content type.
        let json = ("Content-Type", "application/json");
        let reply = post(&nginx, "127.0.0.2", "/client/api", &[json], LOGIN);
        assert_eq!(user(&reply), Some("[]"), "{}", nginx.diagnostics());
        assert_received(&reply, LOGIN, &nginx);
        assert_logged(
            &nginx,
            "authban: request body not read: not application/x-www-form-urlencoded",
        );

        // `authban_read_body off`: the query only.
        let reply = post(&nginx, "127.0.0.2", "/off?command=login", &[FORM], LOGIN);
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        assert_eq!(user(&reply), Some("[]"));
        assert_eq!(reply.header("X-Authban-Command"), Some("[login]"));
        assert_received(&reply, LOGIN, &nginx);
        nginx.assert_clean();
    });
}

#[test]
fn posted_failures_ban_and_reading_errors_are_nginx_s() {
    with_timeout(60, || {
        let (mock, nginx) = start();
        let bad = b"command=login&username=admin&password=wrong";
        for _ in 0..3 {
            let reply = post(&nginx, "127.0.0.9", "/client/api", &[FORM], bad);
            assert_eq!(reply.status(), Some(531), "{}", nginx.diagnostics());
        }
        // Decided once the body is read: refused, the upstream not asked.
        let reply = post(&nginx, "127.0.0.9", "/client/api", &[FORM], LOGIN);
        assert_eq!(reply.status(), Some(403), "{}", nginx.diagnostics());
        assert_eq!(mock.stats().0, 3);
        // Banned by address, whatever its body says: refused without its
        // body read (this one never comes; reading would wait for it).
        let started = std::time::Instant::now();
        let head_only = [FORM, ("Content-Length", "60")];
        let reply = http_from_ip(
            "127.0.0.9",
            nginx.port(),
            "POST",
            "/client/api",
            &head_only,
            Some(b""),
        );
        assert_eq!(reply.status(), Some(403), "{}", nginx.diagnostics());
        assert!(started.elapsed() < std::time::Duration::from_secs(2));
        assert_logged(
            &nginx,
            "request body not read: the client's address is banned",
        );
        assert_eq!(mock.stats().0, 3);

        // Over client_max_body_size, found while authban reads: 413.
        let te = ("Transfer-Encoding", "chunked");
        let body = chunked(&[b'a'; 500], 100);
        let reply = post(&nginx, "127.0.0.2", "/tiny", &[FORM, te], &body);
        assert_eq!(reply.status(), Some(413), "{}", nginx.diagnostics());
        assert_eq!(mock.stats().0, 3);
        nginx.assert_clean();
    });
}

/// Sends `head`, then `body` in pieces 150 ms apart (`close` before the
/// last one), and reads to the end: what nginx answered, if anything.
fn slow_request(port: u16, head: &str, pieces: &[&[u8]], close: bool) -> String {
    use std::io::{Read, Write};
    use std::net::{Shutdown, TcpStream};
    use std::time::Duration;

    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(HTTP_TIMEOUT)).expect("timeout");
    s.write_all(head.as_bytes()).expect("head");
    for (i, piece) in pieces.iter().enumerate() {
        std::thread::sleep(Duration::from_millis(150));
        if close && i + 1 == pieces.len() {
            let _ = s.shutdown(Shutdown::Both);
            return String::new();
        }
        s.write_all(piece).expect("body");
    }
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A login's request head: `framing` is its Content-Length or
/// Transfer-Encoding header.
fn login_head(framing: &str) -> String {
    format!(
        "POST /client/api HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
         Content-Type: application/x-www-form-urlencoded\r\n{framing}\r\n\r\n"
    )
}

#[test]
fn a_body_arriving_after_the_header_is_read_when_it_arrives() {
    with_timeout(60, || {
        let (mock, nginx) = start();
        let length = format!("Content-Length: {}", LOGIN.len());
        let chunks = chunked(LOGIN, 16);
        for (framing, body) in [
            (length.as_str(), LOGIN),
            ("Transfer-Encoding: chunked", &chunks[..]),
        ] {
            let (a, b) = body.split_at(20);
            let answer = slow_request(nginx.port(), &login_head(framing), &[a, b], false);
            let want = [
                "HTTP/1.1 200 ".to_string(),
                "X-Authban-User: [admin]".to_string(),
                format!("X-Mock-Body-Sha256: {}", sha256_hex(LOGIN)),
            ];
            for line in want {
                assert!(answer.contains(&line), "{answer}\n{}", nginx.diagnostics());
            }
        }

        // A client that leaves mid-body: nothing reaches the upstream, and
        // nginx goes on serving.
        let (a, b) = LOGIN.split_at(20);
        let answer = slow_request(nginx.port(), &login_head(&length), &[a, b], true);
        assert_eq!(answer, "");
        let logged = || nginx.access_log().lines().count() >= 3;
        let seconds = std::time::Duration::from_secs(5);
        assert!(wait_until(seconds, logged), "{}", nginx.diagnostics());
        assert_eq!(mock.stats().0, 2);
        let reply = post(&nginx, "127.0.0.2", "/client/api", &[FORM], LOGIN);
        assert_eq!(reply.status(), Some(200), "{}", nginx.diagnostics());
        nginx.assert_clean();
    });
}

#[test]
fn authban_read_body_takes_on_or_off_once() {
    with_timeout(30, || {
        let (ok, out) = nginx_test_config("authban_read_body maybe;");
        assert!(
            !ok && out.contains("authban_read_body: invalid value \"maybe\""),
            "{out}"
        );
        let (ok, out) = nginx_test_config("authban_read_body on; authban_read_body off;");
        assert!(
            !ok && out.contains("authban_read_body: is duplicate"),
            "{out}"
        );
        let (ok, out) = nginx_test_config("server { location / { authban_read_body on; } }");
        assert!(ok, "{out}");
    });
}
