//! The management endpoint's grammar is strict and consistent: numbers
//! without sign or leading zeros, percent-escapes of exactly two hex digits,
//! IPv4-mapped IPv6 folded to IPv4 (networks too), an explicit prefix
//! addressing exactly that key (so a ban left by a prefix change on reload
//! can still be seen and deleted), JSON 405 for every method nginx lets
//! through, empty bodies (chunked too) accepted, `until = since + bantime`,
//! and `authban_api` refused next to itself or another content handler.

use std::time::Duration;

use crate::common::*;

/// Zone `g`: the front server (`{port}`, realip) protects `/` and `/fail`
/// and proxies to the back server (`{port2}`), which answers 200 or 401 and
/// serves the endpoint. `{v4}` is the zone's `ipv4_prefix`.
const CONF: &str = r#"
    authban_zone zone=g:1m maxretry=3 findtime=10m bantime=1h ipv4_prefix={v4};

    server {
        listen 127.0.0.1:{port} reuseport;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        location / {
            authban g;
            proxy_pass http://127.0.0.1:{port2};
        }
    }

    server {
        listen 127.0.0.1:{port2};

        location / {
            return 200 "up\n";
        }
        location /fail {
            return 401;
        }
        location = /authban {
            authban_api;
            client_max_body_size 1k;
            allow 127.0.0.1;
            deny all;
        }
    }
"#;

const BANTIME: u64 = 3600;

fn conf(v4_prefix: u8) -> String {
    CONF.replace("{v4}", &v4_prefix.to_string())
}

fn start() -> Nginx {
    Nginx::options().workers(2).start(&conf(32))
}

/// The addresses of the zone's ban list.
fn banned(n: &Nginx) -> Vec<String> {
    api_ok(n, "GET", "?zone=g")
        .arr("ban_list")
        .iter()
        .map(|b| b.str("addr").to_string())
        .collect()
}

fn failures(n: &Nginx) -> u64 {
    api_ok(n, "GET", "")
        .arr("zones")
        .iter()
        .find(|z| z.str("name") == "g")
        .expect("zone g")
        .get("counters")
        .u64("failures")
}

/// `k` failing requests from `addr`, each waited for until counted (the
/// log phase may run just after the client has its answer).
fn fail(n: &Nginx, addr: &str, k: u64) {
    for _ in 0..k {
        let before = failures(n);
        let reply = get_from(n.port(), "/fail", addr);
        assert_eq!(reply.status(), Some(401), "{addr}: {reply:?}");
        assert!(
            wait_until(Duration::from_secs(5), || failures(n) == before + 1),
            "failure of {addr} never counted"
        );
    }
}

fn assert_refused(n: &Nginx, addr: &str) {
    let reply = get_from(n.port(), "/", addr);
    assert_eq!(reply.status(), Some(403), "{addr} should be refused");
}

fn assert_passes(n: &Nginx, addr: &str) {
    let reply = get_from(n.port(), "/", addr);
    assert_eq!(reply.status(), Some(200), "{addr} should pass: {reply:?}");
}

#[test]
fn numbers_and_escapes_are_strict() {
    with_timeout(60, || {
        let n = start();
        api_ok(&n, "POST", "?zone=g&addr=192.0.2.1");
        let before = api(&n, "GET", "?zone=g").text();
        // (method, query, reason prefix)
        let refused = [
            ("GET", "?zone=g&limit=%2B5", "invalid limit \"+5\""),
            ("GET", "?zone=g&limit=+5", "invalid limit \" 5\""),
            ("GET", "?zone=g&offset=%2B5", "invalid offset \"+5\""),
            ("GET", "?zone=g&limit=05", "invalid limit \"05\""),
            ("GET", "?zone=g&limit=0005", "invalid limit \"0005\""),
            ("GET", "?zone=g&offset=00", "invalid offset \"00\""),
            ("GET", "?zone=g&offset=%2D0", "invalid offset \"-0\""),
            ("GET", "?zone=g&offset=99999999999", "invalid offset"),
            ("GET", "?zone=%+1", "malformed query string"),
            ("GET", "?zone=%-1", "malformed query string"),
            ("GET", "?zone=%1", "malformed query string"),
            ("GET", "?zone=g%", "malformed query string"),
            ("GET", "?zo%+ne=g", "malformed query string"),
            ("GET", "?zone=g&addr=1.1.1.1/0000032", "invalid addr"),
            ("GET", "?zone=g&addr=1.1.1.1/032", "invalid addr"),
            ("GET", "?zone=g&addr=1.1.1.1/%2B32", "invalid addr"),
            ("GET", "?zone=g&addr=1.1.1.1/", "invalid addr"),
            ("GET", "?zone=g&addr=2001:db8::/064", "invalid addr"),
            ("GET", "?zone=g&addr=01.1.1.1", "invalid addr"),
            ("GET", "?zone=g&addr=::ffff:1.1.1.0/95", "invalid addr"),
            ("GET", "?zone=g&addr=::ffff:1.1.1.0/129", "invalid addr"),
            ("GET", "?zone=g&addr=fe80::1%25eth0", "invalid addr"),
            ("POST", "?zone=g&addr=192.0.2.9&time=%2B5m", "invalid time"),
            ("POST", "?zone=g&addr=192.0.2.9&time=05m", "invalid time"),
            ("POST", "?zone=g&addr=192.0.2.9&time=1h05m", "invalid time"),
            ("POST", "?zone=g&addr=192.0.2.9&time=-5m", "invalid time"),
            ("POST", "?zone=g&addr=192.0.2.9/032", "invalid addr"),
        ];
        for (method, query, reason) in refused {
            let got = api_err(&n, method, query, 400);
            assert!(got.starts_with(reason), "{method} {query}: {got:?}");
        }
        assert_eq!(api(&n, "GET", "?zone=g").text(), before, "state changed");

        // The same numbers written plainly are accepted.
        let page = api_ok(&n, "GET", "?zone=g&limit=5&offset=0");
        assert_eq!((page.u64("limit"), page.u64("offset")), (5, 0));
        api_ok(&n, "GET", "?zone=g&limit=1000&offset=10");
        api_ok(&n, "GET", "?zone=%67");
        let state = api_ok(&n, "GET", "?zone=g&addr=192.0.2.1%2F32");
        assert_eq!(state.str("addr"), "192.0.2.1");
        let ban = api_ok(&n, "POST", "?zone=g&addr=192.0.2.9&time=1h30m");
        let len = ban.u64("until") - ban.u64("since");
        // 5400 exactly once until_is_since_plus_bantime passes.
        assert!((5400..=5401).contains(&len), "{ban:?}");
        // The longest ban: a year, however written.
        for time in ["1y", "31536000", "52w1d"] {
            let ban = api_ok(&n, "POST", &format!("?zone=g&addr=192.0.2.10&time={time}"));
            let len = ban.u64("until") - ban.u64("since");
            assert!((31_536_000..=31_536_001).contains(&len), "{time}: {ban:?}");
        }
        n.assert_clean();
    });
}

#[test]
fn mapped_ipv6_folds_to_ipv4_networks_too() {
    with_timeout(60, || {
        let n = start();
        let state = api_ok(&n, "POST", "?zone=g&addr=::ffff:192.0.2.4");
        assert_eq!(state.str("addr"), "192.0.2.4");
        let ban = api_ok(&n, "POST", "?zone=g&addr=::ffff:198.51.100.0/120");
        assert_eq!(ban.str("addr"), "198.51.100.0/24", "{ban:?}");
        // Host bits are masked, as for IPv4 networks.
        let state = api_ok(&n, "GET", "?zone=g&addr=::ffff:198.51.100.77/120");
        assert_eq!(state.str("addr"), "198.51.100.0/24", "{state:?}");
        let state = api_ok(&n, "GET", "?zone=g&addr=::ffff:192.0.2.4/128");
        assert_eq!(state.str("addr"), "192.0.2.4", "{state:?}");
        assert_refused(&n, "198.51.100.200");
        assert_refused(&n, "192.0.2.4");
        assert_passes(&n, "198.51.101.1");
        // One key: the IPv4 spelling deletes the mapped one's ban.
        let gone = api_ok(&n, "DELETE", "?zone=g&addr=198.51.100.0/24");
        assert!(gone.bool("was_banned"), "{gone:?}");
        assert_passes(&n, "198.51.100.200");
        n.assert_clean();
    });
}

#[test]
fn every_method_nginx_lets_through_gets_json_405() {
    with_timeout(60, || {
        let n = start();
        for method in [
            "PUT", "PATCH", "OPTIONS", "PROPFIND", "MKCOL", "LOCK", "FOO",
        ] {
            for body in [None, Some(&b"x=1"[..])] {
                let what = format!("{method} (body {body:?})");
                let reply = http(
                    n.port2(),
                    method,
                    "/authban?zone=g&addr=192.0.2.1",
                    &[],
                    body,
                );
                let reason = json_error(&what, &reply, 405);
                assert!(reason.starts_with("method not allowed"), "{what}: {reason}");
                assert_eq!(reply.header("allow"), Some("GET, HEAD, POST, DELETE"));
            }
        }
        // nginx itself refuses TRACE (ngx_http_process_request_header, and
        // the same in HTTP/2 and HTTP/3) before any location is chosen: its
        // own HTML 405, which no module can replace. A limit of nginx.
        let reply = http(n.port2(), "TRACE", "/authban", &[], None);
        assert_eq!(reply.status(), Some(405), "{reply:?}");
        assert_ne!(reply.header("content-type"), Some("application/json"));
        assert!(n.wait_for_error_log("client sent TRACE method", Duration::from_secs(5)));
        n.assert_clean();
    });
}

#[test]
fn empty_bodies_are_no_body_and_others_are_refused() {
    with_timeout(60, || {
        let n = start();
        let chunked = [("Transfer-Encoding", "chunked")];
        let length0 = [("Content-Length", "0")];
        // Empty: Content-Length 0, or chunked with only the last chunk.
        for (method, query) in [
            ("GET", "?zone=g"),
            ("POST", "?zone=g&addr=192.0.2.1"),
            ("DELETE", "?zone=g&addr=192.0.2.1"),
        ] {
            let path = format!("/authban{query}");
            let what = format!("{method} {query} Content-Length: 0");
            json_ok(&what, &http(n.port2(), method, &path, &length0, None));
            if method == "DELETE" {
                api_ok(&n, "POST", "?zone=g&addr=192.0.2.1");
            }
            let what = format!("{method} {query} empty chunked");
            let reply = http(n.port2(), method, &path, &chunked, Some(b"0\r\n\r\n"));
            json_ok(&what, &reply);
        }
        // Chunk extensions and trailers still make an empty body.
        let reply = http(
            n.port2(),
            "GET",
            "/authban",
            &chunked,
            Some(b"0;ext=1\r\nX-Trailer: y\r\n\r\n"),
        );
        json_ok("empty chunked with trailer", &reply);

        // A body with content is refused, and changes nothing.
        let before = api(&n, "GET", "?zone=g").text();
        for (headers, body) in [
            (&[][..], &b"addr=192.0.2.2"[..]),
            (&chunked[..], &b"1\r\nx\r\n0\r\n\r\n"[..]),
            (&chunked[..], &b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"[..]),
        ] {
            let reply = http(
                n.port2(),
                "POST",
                "/authban?zone=g&addr=192.0.2.2",
                headers,
                Some(body),
            );
            let what = format!("POST with {headers:?} {body:?}");
            assert_eq!(
                json_error(&what, &reply, 400),
                "no request body is expected"
            );
        }
        assert_eq!(api(&n, "GET", "?zone=g").text(), before, "state changed");
        api_err(&n, "GET", "?zone=g&addr=192.0.2.2", 404);

        // Keep-alive: the empty body was consumed, the next request parses.
        let mut conn = Conn::open(n.port2());
        for _ in 0..2 {
            let reply = conn.request("GET", "/authban?zone=g", &chunked, Some(b"0\r\n\r\n"));
            json_ok("keep-alive empty chunked", &reply);
        }
        let reply = conn.request("GET", "/authban", &[], None);
        json_ok("keep-alive after", &reply);

        // Over client_max_body_size: nginx's own 413 while reading.
        let big = format!("800\r\n{}\r\n0\r\n\r\n", "x".repeat(0x800));
        let reply = http(
            n.port2(),
            "POST",
            "/authban?zone=g&addr=192.0.2.2",
            &chunked,
            Some(big.as_bytes()),
        );
        assert_eq!(reply.status(), Some(413), "{reply:?}");
        api_err(&n, "GET", "?zone=g&addr=192.0.2.2", 404);
        n.assert_clean();
    });
}

#[test]
fn until_is_since_plus_bantime() {
    with_timeout(60, || {
        let n = start();
        // Manual bans, several times so a whole-second start is unlikely
        // to hide an off-by-one.
        for (i, (time, secs)) in [("", BANTIME), ("&time=90", 90), ("&time=1d", 86_400)]
            .iter()
            .cycle()
            .take(6)
            .enumerate()
        {
            let ban = api_ok(&n, "POST", &format!("?zone=g&addr=192.0.2.{}{time}", i + 1));
            assert_eq!(ban.u64("until") - ban.u64("since"), *secs, "{ban:?}");
            let state = api_ok(&n, "GET", &format!("?zone=g&addr=192.0.2.{}", i + 1));
            assert_eq!(state.u64("until") - state.u64("since"), *secs, "{state:?}");
        }
        // An automatic ban.
        fail(&n, "198.51.100.7", 3);
        let state = api_ok(&n, "GET", "?zone=g&addr=198.51.100.7");
        assert!(state.bool("banned"), "{state:?}");
        assert_eq!(
            state.u64("until") - state.u64("since"),
            BANTIME,
            "{state:?}"
        );
        for ban in api_ok(&n, "GET", "?zone=g").arr("ban_list") {
            let len = ban.u64("until") - ban.u64("since");
            assert!([BANTIME, 90, 86_400].contains(&len), "{ban:?}");
        }
        n.assert_clean();
    });
}

/// A ban made under ipv4_prefix=32 stays after a reload to ipv4_prefix=24.
/// A bare address now means its /24 (and shows the old ban refusing it);
/// the explicit /32 addresses the old ban exactly, so it can be deleted.
#[test]
fn explicit_prefix_addresses_a_ban_left_by_a_prefix_change() {
    with_timeout(60, || {
        let mut n = start();
        fail(&n, "192.0.2.10", 3);
        api_ok(&n, "POST", "?zone=g&addr=192.0.2.11");
        assert_eq!(banned(&n).len(), 2);
        n.reload_with(&conf(24));
        let mut list = banned(&n);
        list.sort();
        assert_eq!(list, ["192.0.2.10", "192.0.2.11"], "bans kept over reload");

        // Without prefix: the zone's key, the /24, which holds nothing of
        // its own, and the old ban that refuses the address.
        let state = api_ok(&n, "GET", "?zone=g&addr=192.0.2.10");
        assert_eq!(state.str("addr"), "192.0.2.0/24", "{state:?}");
        assert!(!state.bool("banned"), "{state:?}");
        assert_eq!(
            state.get("banned_by").str("addr"),
            "192.0.2.10",
            "{state:?}"
        );
        let reason = api_err(&n, "GET", "?zone=g&addr=192.0.2.0/24", 404);
        assert!(
            reason.starts_with("192.0.2.0/24 is not tracked"),
            "{reason}"
        );
        // With it: exactly the old ban, in both spellings.
        for addr in ["192.0.2.10/32", "192.0.2.10%2F32", "::ffff:192.0.2.10/128"] {
            let state = api_ok(&n, "GET", &format!("?zone=g&addr={addr}"));
            assert_eq!(state.str("addr"), "192.0.2.10", "{state:?}");
            assert!(state.bool("banned"), "{state:?}");
            assert_eq!(state.u64("failures"), 3, "{state:?}");
        }
        let gone = api_ok(&n, "DELETE", "?zone=g&addr=192.0.2.10/32");
        assert_eq!(gone.str("addr"), "192.0.2.10");
        assert!(gone.bool("was_banned"), "{gone:?}");
        let gone = api_ok(&n, "DELETE", "?zone=g&addr=192.0.2.11%2F32");
        assert!(gone.bool("was_banned"), "{gone:?}");
        assert!(banned(&n).is_empty(), "{:?}", banned(&n));
        api_err(&n, "GET", "?zone=g&addr=192.0.2.10/32", 404);

        // A bare address reports the network ban that refuses it.
        api_ok(&n, "POST", "?zone=g&addr=192.0.0.0/16");
        let state = api_ok(&n, "GET", "?zone=g&addr=192.0.2.10");
        assert_eq!(state.str("addr"), "192.0.2.0/24");
        assert!(!state.bool("banned"), "{state:?}");
        assert_eq!(state.get("banned_by").str("addr"), "192.0.0.0/16");
        // An explicit network is exactly that key: it is not tracked.
        api_err(&n, "GET", "?zone=g&addr=192.0.2.0/24", 404);
        n.assert_clean();
    });
}

/// `nginx -t` on a location; returns whether it passed and the output.
fn test_location(body: &str) -> (bool, String) {
    nginx_test_config(&format!(
        "server {{ listen 127.0.0.1:{{port}}; location /a {{ {body} }} }}"
    ))
}

#[test]
fn authban_api_is_alone_in_its_location() {
    with_timeout(60, || {
        let (ok, out) = test_location("authban_api;");
        assert!(ok, "{out}");
        let (ok, out) = test_location("authban_api; authban_api;");
        assert!(!ok, "{out}");
        assert!(
            out.contains("\"authban_api\" directive is duplicate"),
            "{out}"
        );
        for other in [
            "proxy_pass http://127.0.0.1:9;",
            "fastcgi_pass 127.0.0.1:9;",
            "empty_gif;",
        ] {
            let (ok, out) = test_location(&format!("{other} authban_api;"));
            assert!(!ok, "{other}: {out}");
            assert!(
                out.contains(
                    "\"authban_api\" directive cannot be combined with another content handler"
                ),
                "{other}: {out}"
            );
        }
    });
}

/// The other order: the content handler's directive comes last and
/// overwrites ours, which postconfiguration finds.
#[test]
fn authban_api_followed_by_another_handler_is_refused() {
    with_timeout(60, || {
        for other in ["proxy_pass http://127.0.0.1:9;", "empty_gif;"] {
            let (ok, out) = test_location(&format!("authban_api; {other}"));
            assert!(!ok, "{other}: {out}");
            assert!(
                out.contains(
                    "\"authban_api\" directive cannot be combined with another content handler"
                ),
                "{other}: {out}"
            );
            assert!(out.contains("location \"/a\""), "{other}: {out}");
        }
    });
}
