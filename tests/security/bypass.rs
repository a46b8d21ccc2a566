//! No way around a ban: internal redirects, error pages, subrequests, the
//! management location, a prefix change, realip failures, a flood of bans.
//!
//! Every server proxies to an upstream server in the same nginx (`{port2}`)
//! that logs each request it gets with the client's `X-Forwarded-For`, so a
//! test can tell exactly what reached the upstream from which client.

use std::fs;
use std::thread;
use std::time::{Duration, Instant};

use crate::common::*;

/// Lines of one kind a worker writes per second (`src/engine/log_limit.rs`).
const BURST: u64 = 5;

/// Realip from loopback, the upstream (401 everywhere but `/ok`, an
/// `X-Accel-Redirect` at `/accel`) and an access log of the front.
const BASE: &str = r#"
    set_real_ip_from 127.0.0.1;
    set_real_ip_from ::1;
    real_ip_header X-Forwarded-For;
    log_format up '$http_x_forwarded_for $request_uri $status';
    log_format front 'addr=$remote_addr status=$status ab=$authban_status uri=$request_uri';
    access_log {dir}/front.log front;
    addition_types *;
    server {
        listen 127.0.0.1:{port2};
        access_log {dir}/upstream.log up;
        location / { return 401; }
        location /ok { return 200 "upstream ok\n"; }
        location /accel {
            add_header X-Accel-Redirect /internal-401;
            return 200;
        }
    }
"#;

const UP: &str = "http://127.0.0.1:{port2}";

fn start(conf: &str) -> Nginx {
    Nginx::options()
        .workers(2)
        .start(&format!("{BASE}\n{}", conf.replace("UP", UP)))
}

/// As [`start`], with workers as root so that they may write a state file
/// in a private temp dir.
fn start_as_root(conf: &str) -> Nginx {
    Nginx::options()
        .workers(2)
        .main_line("user root;")
        .start(&format!("{BASE}\n{}", conf.replace("UP", UP)))
}

/// Requests from `addr` that reached the upstream. The upstream logs a
/// request after its response left, maybe after the client got the front's
/// answer, so the count is read once it holds still for 100 ms.
fn upstream_hits(n: &Nginx, addr: &str) -> usize {
    settled_count(|| {
        let log = fs::read_to_string(n.dir().join("upstream.log")).unwrap_or_default();
        log.lines()
            .filter(|l| l.split(' ').next() == Some(addr))
            .count()
    })
}

fn status_from(n: &Nginx, path: &str, addr: &str) -> Option<u16> {
    get_from(n.port(), path, addr).status()
}

/// Writes `{dir}/www/<name>` with `content`.
fn write_www(n: &Nginx, name: &str, content: &str) {
    let path = n.dir().join("www").join(name);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

/// `maxretry` failures of `path` from `addr`, each answered `status`,
/// then a refusal; returns the upstream hits the failures made.
fn fail_until_banned(n: &Nginx, path: &str, addr: &str, maxretry: usize, status: u16) -> usize {
    for i in 1..=maxretry {
        assert_eq!(
            status_from(n, path, addr),
            Some(status),
            "failure {i} of {path} from {addr}\n{}",
            n.diagnostics()
        );
    }
    let hits = upstream_hits(n, addr);
    assert_eq!(
        status_from(n, path, addr),
        Some(403),
        "{path} from {addr} after {maxretry} failures\n{}",
        n.diagnostics()
    );
    hits
}

/// A 401 that ends in a location without authban (a named location, an
/// error page, an `X-Accel-Redirect` target) still counts in the zone of
/// the location that checked the request, once per request.
#[test]
fn failures_count_across_internal_redirects() {
    with_timeout(60, || {
        let n = start(
            r#"
            authban_zone zone=z:1m maxretry=3 findtime=10m bantime=1h;
            server {
                listen 127.0.0.1:{port};
                root {dir}/www;
                location /tf { authban z; try_files /nonexistent @app; }
                location @app { proxy_pass UP; }
                location /icpt {
                    authban z;
                    proxy_intercept_errors on;
                    error_page 401 /err.html;
                    proxy_pass UP;
                }
                location = /err.html { internal; }
                location /named {
                    authban z;
                    proxy_intercept_errors on;
                    error_page 401 = @app;
                    proxy_pass UP;
                }
                location /accel { authban z; proxy_pass UP; }
                location /internal-401 { internal; return 401; }
            }
            "#,
        );
        write_www(&n, "err.html", "denied\n");
        let cases = [
            ("/tf", "192.0.2.1", 1),
            ("/icpt", "192.0.2.2", 1),
            ("/named", "192.0.2.3", 2),
            ("/accel", "192.0.2.4", 1),
        ];
        for (path, addr, hits_per_request) in cases {
            let hits = fail_until_banned(&n, path, addr, 3, 401);
            assert_eq!(hits, 3 * hits_per_request, "{path}");
            for _ in 0..3 {
                assert_eq!(status_from(&n, path, addr), Some(403), "{path}");
            }
            assert_eq!(
                upstream_hits(&n, addr),
                hits,
                "{path}: refused requests reached the upstream"
            );
        }
        let bans = n.error_log().matches("authban: ban zone=z").count();
        assert_eq!(bans, cases.len(), "{}", n.error_log());
        n.assert_clean();
    });
}

/// `error_page 403` pointing at a proxying location (named or not) cannot
/// carry a refused request to the upstream; an error location answering
/// with `return` still shows its own page.
#[test]
fn a_refusal_is_final_through_error_pages() {
    with_timeout(60, || {
        let n = start(
            r#"
            authban_zone zone=z:1m maxretry=3 findtime=10m bantime=1h;
            server {
                listen 127.0.0.1:{port};
                location /r1 { authban z; error_page 403 = @fwd; proxy_pass UP; }
                location @fwd { proxy_pass UP; }
                location /r2 { authban z; error_page 403 /fwd2; proxy_pass UP; }
                location /fwd2 { proxy_pass UP/ok; }
                location /r3 { authban z; error_page 403 /banned; proxy_pass UP; }
                location = /banned { internal; return 403 "banned page\n"; }
                location /r4 { authban z; authban_status 444; error_page 403 444 = @fwd; proxy_pass UP; }
            }
            "#,
        );
        let addr = "198.51.100.7";
        let hits = fail_until_banned(&n, "/r1", addr, 3, 401);
        for path in ["/r1", "/r2", "/r1/again", "/r2/again"] {
            assert_eq!(status_from(&n, path, addr), Some(403), "{path}");
        }
        let page = get_from(n.port(), "/r3", addr);
        assert_eq!(page.status(), Some(403));
        assert_eq!(
            page.text(),
            "banned page\n",
            "a `return` error page still answers"
        );
        assert!(get_from(n.port(), "/r4", addr).is_closed(), "444 closes");
        thread::sleep(Duration::from_millis(200));
        assert_eq!(
            upstream_hits(&n, addr),
            hits,
            "a refused request reached the upstream"
        );
        // A client that is not banned still gets the error pages' targets.
        assert_eq!(status_from(&n, "/r2", "198.51.100.8"), Some(401));
        n.assert_clean();
    });
}

/// SSI, mirror, auth_request and add_before_body make subrequests, which
/// skip nginx's access phase: a banned client gets none of them to the
/// upstream. Subrequest failures do not count on their own: the main
/// request's final status does, once.
#[test]
fn subrequests_of_a_banned_client_are_refused() {
    with_timeout(60, || {
        let n = start(
            r#"
            authban_zone zone=z:1m maxretry=3 findtime=10m bantime=1h;
            server {
                listen 127.0.0.1:{port};
                root {dir}/www;
                location /client/ { authban z; proxy_pass UP; }
                location = /page.html { ssi on; }
                location = /mirrored.html { mirror /client/mirror; }
                location = /protected.html { auth_request /client/auth; }
                location = /guarded.html { authban z; auth_request /client/auth; }
                location = /before.html { add_before_body /client/before; }
            }
            "#,
        );
        write_www(
            &n,
            "page.html",
            "page <!--# include virtual=\"/client/ssi\" --> end\n",
        );
        for page in [
            "mirrored.html",
            "protected.html",
            "guarded.html",
            "before.html",
        ] {
            write_www(&n, page, "static\n");
        }
        let pages = [
            "/page.html",
            "/mirrored.html",
            "/protected.html",
            "/before.html",
        ];

        // A clean client: every page reaches the upstream through its
        // subrequest (the mechanism works), and nothing bans it.
        let clean = "203.0.113.9";
        for _ in 0..4 {
            for page in pages {
                get_from(n.port(), page, clean);
            }
        }
        let expected = 4 * pages.len();
        assert!(
            wait_until(Duration::from_secs(3), || upstream_hits(&n, clean)
                == expected),
            "subrequests of a clean client: {} of {expected}",
            upstream_hits(&n, clean)
        );
        assert_eq!(
            status_from(&n, "/client/x", clean),
            Some(401),
            "subrequest failures banned"
        );

        // Banned: nothing more reaches the upstream.
        let addr = "203.0.113.66";
        let hits = fail_until_banned(&n, "/client/x", addr, 3, 401);
        for page in pages {
            let reply = get_from(n.port(), page, addr);
            assert!(
                !reply.text().contains("upstream"),
                "{page}: upstream content for a banned client"
            );
        }
        assert_eq!(status_from(&n, "/protected.html", addr), Some(403));
        thread::sleep(Duration::from_millis(300));
        assert_eq!(
            upstream_hits(&n, addr),
            hits,
            "a subrequest reached the upstream"
        );

        // A location with authban counts its own final 401 from the
        // auth subrequest once per request: banned after exactly 3.
        let once = "203.0.113.77";
        let hits = fail_until_banned(&n, "/guarded.html", once, 3, 401);
        assert_eq!(hits, 3);
        n.assert_clean();
    });
}

/// With `authban` at server level, the management location is still
/// reachable when its own client is banned, even by a ban of every
/// address, and across a restart from the state file.
#[test]
fn the_management_location_never_locks_itself_out() {
    with_timeout(60, || {
        let dir = std::env::temp_dir().join(format!("authban-sec-api-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let conf = format!(
            r#"
            authban_zone zone=z:1m maxretry=3 bantime=1h state={}/z.state;
            server {{
                listen 127.0.0.1:{{port}};
                authban z;
                location = /authban {{ authban_api; }}
                location / {{ proxy_pass UP; }}
            }}
            "#,
            dir.display()
        );
        let api = |n: &Nginx, method: &str, query: &str| {
            http(n.port(), method, &format!("/authban{query}"), &[], None).status()
        };
        let n = start_as_root(&conf);
        assert_eq!(api(&n, "POST", "?zone=z&addr=127.0.0.1"), Some(200));
        assert_eq!(
            get(n.port(), "/elsewhere").status(),
            Some(403),
            "the ban holds elsewhere"
        );
        assert_eq!(api(&n, "GET", "?zone=z"), Some(200));
        assert_eq!(api(&n, "POST", "?zone=z&addr=0.0.0.0%2F0"), Some(200));
        assert_eq!(
            status_from(&n, "/x", "192.0.2.200"),
            Some(403),
            "0.0.0.0/0 refuses all"
        );
        assert_eq!(api(&n, "GET", "?zone=z"), Some(200));
        n.assert_clean();
        assert!(n.stop().success());

        let n = start_as_root(&conf);
        assert_eq!(status_from(&n, "/x", "192.0.2.200"), Some(403), "restored");
        assert_eq!(api(&n, "DELETE", "?zone=z&addr=0.0.0.0%2F0"), Some(200));
        assert_eq!(api(&n, "DELETE", "?zone=z&addr=127.0.0.1"), Some(200));
        assert_eq!(status_from(&n, "/x", "192.0.2.200"), Some(401));
        n.assert_clean();
        drop(n);
        let _ = fs::remove_dir_all(&dir);
    });
}

/// Bans made under one prefix keep refusing after a reload, or a restart
/// from the state file, with another prefix.
#[test]
fn bans_survive_a_prefix_change() {
    with_timeout(60, || {
        let dir = std::env::temp_dir().join(format!("authban-sec-prefix-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        let conf = |prefix: u8| {
            format!(
                r#"
                authban_zone zone=z:1m maxretry=2 bantime=1h ipv4_prefix={prefix} state={}/z.state;
                server {{
                    listen 127.0.0.1:{{port}};
                    location / {{ authban z; proxy_pass UP; }}
                }}
                "#,
                dir.display()
            )
        };
        let full = |prefix: u8| format!("{BASE}\n{}", conf(prefix).replace("UP", UP));
        let mut n = start_as_root(&conf(32));
        fail_until_banned(&n, "/x", "192.0.2.10", 2, 401);
        n.reload_with(&full(24));
        assert!(n.wait_for_error_log("kept across reload", Duration::from_secs(5)));
        thread::sleep(Duration::from_millis(300));
        for _ in 0..4 {
            assert_eq!(
                status_from(&n, "/x", "192.0.2.10"),
                Some(403),
                "after reload"
            );
        }
        assert_eq!(
            status_from(&n, "/x", "192.0.2.11"),
            Some(401),
            "its /24 is not banned"
        );
        n.assert_clean();
        assert!(n.stop().success());

        let n = start_as_root(&conf(24));
        assert_eq!(
            status_from(&n, "/x", "192.0.2.10"),
            Some(403),
            "after restart"
        );
        assert_eq!(status_from(&n, "/x", "192.0.2.12"), Some(401));
        n.assert_clean();
        drop(n);
        let _ = fs::remove_dir_all(&dir);
    });
}

/// realip leaves the proxy's own address when the header is missing or
/// unusable; a client must not get the proxy (and everyone behind it)
/// banned that way, nor by naming a trusted address itself.
#[test]
fn a_client_cannot_get_the_trusted_proxy_banned() {
    with_timeout(60, || {
        let n = start(
            r#"
            authban_zone zone=z:1m maxretry=2 bantime=1h;
            server {
                listen 127.0.0.1:{port};
                location / { authban z; proxy_pass UP; }
            }
            "#,
        );
        let digits = "9".repeat(8192);
        for xff in [
            "garbage",
            "fe80::1%eth0",
            digits.as_str(),
            "127.0.0.1",
            "::1",
        ] {
            for _ in 0..3 {
                let reply = http(n.port(), "GET", "/x", &[("X-Forwarded-For", xff)], None);
                assert_ne!(reply.status(), Some(403), "XFF {:.20}", xff);
            }
        }
        for _ in 0..3 {
            assert_eq!(get(n.port(), "/x").status(), Some(401), "no header at all");
        }
        assert_eq!(
            status_from(&n, "/x", "192.0.2.50"),
            Some(401),
            "a real client"
        );
        assert!(
            !n.error_log().contains("authban: ban "),
            "{}",
            n.error_log()
        );
        assert!(
            n.error_log()
                .contains("authban: failure from trusted proxy 127.0.0.1 not counted zone=z"),
            "{}",
            n.error_log()
        );
        // Real clients are still banned as before.
        fail_until_banned(&n, "/x", "192.0.2.51", 2, 401);
        n.assert_clean();
    });
}

/// A flood of bans from one IPv6 /64 (`ipv6_prefix=128`) logs a few
/// `zone_full` lines a second per worker and a summary of the rest; with the
/// README's advice (`ipv6_prefix=64`) it cannot push an older ban out.
#[test]
fn a_flood_of_bans_is_summed_up_in_the_log_and_resisted_by_the_advice() {
    with_timeout(90, || {
        let flood = |n: &Nginx, seconds: u64| {
            let start = Instant::now();
            let mut i = 0u32;
            while start.elapsed() < Duration::from_secs(seconds) {
                for _ in 0..50 {
                    i += 1;
                    let addr = format!("2001:db8:bad:1::{:x}:{:x}", i >> 16, i & 0xffff);
                    get_from(n.port(), "/x", &addr);
                }
            }
            i
        };
        let conf = |params: &str| {
            format!(
                r#"
                authban_zone zone=z:32k maxretry=1 bantime=1h {params};
                server {{
                    listen 127.0.0.1:{{port}};
                    location / {{ authban z; proxy_pass UP; }}
                }}
                "#
            )
        };
        let n = start(&conf("ipv6_prefix=128"));
        let started = Instant::now();
        let sent = flood(&n, 3);
        let secs = started.elapsed().as_secs() + 1;
        let log = n.error_log();
        let lines = log.matches("reason=zone_full (zone too small)").count() as u64;
        assert!(sent > 1000, "only {sent} requests");
        assert!(lines >= 1, "no zone_full line at all");
        assert!(
            lines <= 2 * BURST * (secs + 1),
            "{lines} zone_full lines in {secs}s from 2 workers"
        );
        assert!(
            log.contains("more \"reason=zone_full\" lines in the last"),
            "no summary line:\n{}",
            &log[log.len().saturating_sub(2000)..]
        );
        n.assert_clean();
        drop(n);

        let n = start(&conf("ipv6_prefix=64"));
        fail_until_banned(&n, "/x", "192.0.2.99", 1, 401);
        flood(&n, 1);
        assert_eq!(
            status_from(&n, "/x", "192.0.2.99"),
            Some(403),
            "the old ban was pushed out"
        );
        assert!(!n.error_log().contains("zone_full"), "{}", n.error_log());
        n.assert_clean();
    });
}

/// `widen=K` counts a member once when the API bans it again after its
/// ban ended unnoticed.
#[test]
fn widening_counts_a_manual_reban_once() {
    with_timeout(60, || {
        let n = start(
            r#"
            authban_zone zone=z:1m maxretry=1 bantime=1s widen=3;
            server {
                listen 127.0.0.1:{port};
                location = /authban { authban_api; }
                location / { authban z; proxy_pass UP; }
            }
            "#,
        );
        // Two bans that end first, so that the clean-up the API's ban does
        // (two ended bans a call) leaves the members' ended bans in place.
        fail_until_banned(&n, "/x", "10.8.0.1", 1, 401);
        fail_until_banned(&n, "/x", "10.7.0.1", 1, 401);
        thread::sleep(Duration::from_millis(1000));
        fail_until_banned(&n, "/x", "10.9.0.1", 1, 401);
        fail_until_banned(&n, "/x", "10.9.0.2", 1, 401);
        thread::sleep(Duration::from_millis(2100));
        let api = |query: &str| http(n.port(), "POST", &format!("/authban{query}"), &[], None);
        assert_eq!(api("?zone=z&addr=10.9.0.1").status(), Some(200));
        assert_eq!(
            status_from(&n, "/x", "10.9.0.200"),
            Some(401),
            "a /24 ban from one live member at widen=3\n{}",
            n.error_log()
        );
        assert!(!n.error_log().contains("widened_from"), "{}", n.error_log());
        n.assert_clean();
    });
}

/// `widen` in a zone holding only bans: the ban a client's failures make,
/// and an API ban, hold; the network count they would need is what gives
/// way (`widen_skipped`), never the ban just made.
#[test]
fn a_zone_full_of_bans_keeps_the_ban_widen_has_no_room_to_count() {
    with_timeout(90, || {
        let n = start(
            r#"
            authban_zone zone=c:32k maxretry=3 bantime=60s widen=3;
            server {
                listen 127.0.0.1:{port};
                location = /authban { authban_api; }
                location / { authban c; proxy_pass UP; }
            }
            "#,
        );
        let api = |method: &str, query: &str| {
            http(n.port(), method, &format!("/authban{query}"), &[], None)
        };
        let capacity = Json::parse(&api("GET", "?zone=c").text())
            .unwrap()
            .u64("capacity");
        // Day-long bans in distinct /24s, more than the zone holds: the
        // /24 counts give way to later bans until only bans are left.
        for i in 0..capacity + 40 {
            let addr = format!("10.{}.{}.1", i / 256, i % 256);
            let reply = api("POST", &format!("?zone=c&addr={addr}&time=1d"));
            assert_eq!(reply.status(), Some(200), "{addr}: {}", reply.text());
        }
        let addr = "198.51.100.7";
        let mut statuses = Vec::new();
        for _ in 0..20 {
            statuses.push(status_from(&n, "/x", addr).unwrap_or(0));
        }
        let refused = statuses.iter().filter(|&&s| s == 403).count();
        assert_eq!(statuses[..3], [401, 401, 401], "{statuses:?}");
        assert_eq!(refused, 17, "{statuses:?}\n{}", n.log_tail());
        assert!(!n
            .error_log()
            .contains(&format!("addr={addr} reason=zone_full")));
        // The shortest ban of all, made through the API, holds too.
        let short = "198.51.100.8";
        let reply = api("POST", &format!("?zone=c&addr={short}&time=1h"));
        assert!(reply.text().contains("\"banned\":true"), "{}", reply.text());
        let got = Json::parse(&api("GET", &format!("?zone=c&addr={short}")).text()).unwrap();
        assert!(got.bool("banned"), "{got:?}");
        assert_eq!(status_from(&n, "/x", short), Some(403));
        let zone = Json::parse(&api("GET", "?zone=c").text()).unwrap();
        assert!(zone.get("counters").u64("widen_skipped") >= 2, "{zone:?}");
        n.assert_clean();
    });
}

/// The variable whose per-request slot keeps authban's decision through
/// internal redirects cannot be forged from the configuration (`set` and
/// `map` refuse it) nor read (it is never found, and reading it leaves the
/// decision intact: the client is still banned and refused again after an
/// internal redirect).
#[test]
fn the_decision_slot_cannot_be_forged_or_read_from_the_configuration() {
    with_timeout(60, || {
        for forge in [
            "set $authban_internal_record \"x\";",
            "set $authban_internal_record $uri;",
        ] {
            let (ok, out) = nginx_test_config(&format!(
                "authban_zone zone=c:1m maxretry=2;\nserver {{ listen 127.0.0.1:{{port}}; location / {{ authban c; {forge} }} }}"
            ));
            assert!(!ok, "{forge} accepted:\n{out}");
            assert!(out.contains("authban_internal_record"), "{out}");
        }
        let (ok, out) = nginx_test_config(
            "authban_zone zone=c:1m;\nmap $uri $authban_internal_record { default x; }\nserver { listen 127.0.0.1:{port}; }",
        );
        assert!(!ok, "map accepted:\n{out}");

        let n = start(
            r#"
            authban_zone zone=c:1m maxretry=2 bantime=1h;
            log_format slot 'addr=$remote_addr slot=[$authban_internal_record] status=$status';
            server {
                listen 127.0.0.1:{port};
                access_log {dir}/slot.log slot;
                root {dir}/www;
                location / {
                    authban c;
                    add_header X-Slot "[$authban_internal_record]" always;
                    try_files /nonexistent @app;
                }
                location @app {
                    add_header X-Slot "[$authban_internal_record]" always;
                    proxy_pass UP;
                }
            }
            "#,
        );
        let addr = "198.51.100.99";
        // try_files sends each request to @app (no authban there), whose
        // upstream answers 401: counted by the location that checked it,
        // whatever the slot's readers did.
        for _ in 0..2 {
            let reply = get_from(n.port(), "/x", addr);
            assert_eq!(reply.status(), Some(401), "{}", n.log_tail());
            assert_eq!(reply.header("X-Slot"), Some("[]"));
        }
        let reply = get_from(n.port(), "/x", addr);
        assert_eq!(reply.status(), Some(403), "{}", n.log_tail());
        let log = settled_count(|| {
            fs::read_to_string(n.dir().join("slot.log"))
                .unwrap_or_default()
                .lines()
                .count()
        });
        assert_eq!(log, 3);
        let log = fs::read_to_string(n.dir().join("slot.log")).unwrap_or_default();
        for line in log.lines() {
            assert!(line.contains("slot=[-]"), "the slot was read: {line}");
        }
        n.assert_clean();
    });
}
