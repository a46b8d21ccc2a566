//! Banning end to end: a real nginx (several workers) with the authban
//! module in front of the mock CloudStack upstream or of nginx's own
//! responses. Clients are played with realip (`X-Forwarded-For` from
//! loopback), so one test can be many addresses, IPv6 included.

mod common;

use std::collections::BTreeSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// Realip from loopback, and an access log telling, per request, the client
/// address, the worker, the status and `$authban_status`.
const PREAMBLE: &str = r#"
    set_real_ip_from 127.0.0.1;
    set_real_ip_from ::1;
    real_ip_header X-Forwarded-For;
    log_format ab 'addr=$remote_addr pid=$pid status=$status ab=$authban_status uri=$request_uri';
    access_log {dir}/ab.log ab;
"#;

/// An unsigned CloudStack API call: the mock answers 401.
const API: &str = "/client/api?command=listZones&response=json";

/// Starts nginx with `workers` workers, [`PREAMBLE`] and `conf` in the http
/// block.
fn start(workers: usize, conf: &str) -> Nginx {
    Nginx::options()
        .workers(workers)
        .start(&format!("{PREAMBLE}\n{conf}"))
}

/// Starts the mock, then nginx as [`start`] does with `MOCK` in `conf`
/// replaced by the mock's address.
fn start_with_mock(workers: usize, conf: &str) -> (Mock, Nginx) {
    let mock = Mock::start();
    let nginx = start(workers, &conf.replace("MOCK", &mock.addr()));
    (mock, nginx)
}

/// A test against the mock and nginx, started as [`start_with_mock`] does:
/// bounded by `secs`, and nginx must be clean once `body` is done.
fn with_mock(
    secs: u64,
    workers: usize,
    conf: &str,
    body: impl FnOnce(&Mock, &Nginx) + Send + 'static,
) {
    let conf = conf.to_string();
    with_timeout(secs, move || {
        let (mock, nginx) = start_with_mock(workers, &conf);
        body(&mock, &nginx);
        nginx.assert_clean();
    });
}

/// The plainest setup: zone `z` (`authban_zone zone=z:1m <zone_params>`)
/// guarding the mock's `/client/api`, the server listening on
/// `127.0.0.1:{port} <listen_params>`.
fn guarded_api(zone_params: &str, listen_params: &str) -> String {
    format!(
        r#"
        authban_zone zone=z:1m {zone_params};
        server {{
            listen 127.0.0.1:{{port}} {listen_params};
            location /client/api {{ authban z; proxy_pass http://MOCK; }}
        }}
        "#
    )
}

/// Sends `count` GETs of `path` from `addr`, each on a new connection, and
/// asserts that every one is answered `status`.
fn assert_gets(port: u16, path: &str, addr: &str, count: usize, status: u16) {
    for i in 1..=count {
        let reply = get_from(port, path, addr);
        assert_eq!(
            reply.status(),
            Some(status),
            "request {i} of {count} from {addr} for {path}"
        );
    }
}

/// `path` with a unique marker appended to its query, to find the request
/// in the access log.
fn tagged(path: &str, tag: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!("{path}{sep}t={tag}")
}

/// The status of a CloudStack login (`POST /client/api`) from `addr`: the
/// mock answers 531 for a wrong password and 200 for `password`.
fn login_status(port: u16, path: &str, addr: &str, password: &str) -> Option<u16> {
    let body = format!("command=login&username=admin&password={password}&response=json");
    http(
        port,
        "POST",
        path,
        &[
            ("X-Forwarded-For", addr),
            ("Content-Type", "application/x-www-form-urlencoded"),
        ],
        Some(body.as_bytes()),
    )
    .status()
}

/// `user:secret` and `user:wrong`, base64.
const GOOD_AUTH: &str = "Basic dXNlcjpzZWNyZXQ=";
const BAD_AUTH: &str = "Basic dXNlcjp3cm9uZw==";

/// The status of a GET of `path` from `addr` with `Authorization: <auth>`.
fn auth_status(port: u16, path: &str, addr: &str, auth: &str) -> Option<u16> {
    http(
        port,
        "GET",
        path,
        &[("X-Forwarded-For", addr), ("Authorization", auth)],
        None,
    )
    .status()
}

/// Writes `{dir}/htpasswd` (user `user`, password `secret`) and
/// `{dir}/www/<file>` for each file given, with content `file\n`.
fn write_files(nginx: &Nginx, files: &[&str]) {
    let dir = nginx.dir();
    std::fs::write(dir.join("htpasswd"), "user:{PLAIN}secret\n").unwrap();
    for f in files {
        let path = dir.join("www").join(f);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "file\n").unwrap();
    }
}

fn mock_count(mock: &Mock, status: u16) -> u64 {
    mock.stats().1.get(&status).copied().unwrap_or(0)
}

/// The `(status, $authban_status)` of the last `want.len()` requests from
/// `addr` are `want`, in order.
fn assert_outcomes(nginx: &Nginx, addr: &str, want: &[(u16, &str)]) {
    let log = entries_of(nginx, addr, want.len());
    assert_eq!(ab_statuses(&log), want, "{log:#?}");
}

/// One line of the `ab` access log.
#[derive(Debug, Clone)]
struct Entry {
    addr: String,
    pid: i32,
    status: u16,
    ab: String,
    uri: String,
}

fn entries(nginx: &Nginx) -> Vec<Entry> {
    let text = std::fs::read_to_string(nginx.dir().join("ab.log")).unwrap_or_default();
    text.lines()
        .map(|line| {
            let field = |name: &str| {
                line.split(' ')
                    .find_map(|w| w.strip_prefix(name)?.strip_prefix('='))
                    .unwrap_or_else(|| panic!("no {name}= in access log line {line:?}"))
                    .to_string()
            };
            Entry {
                addr: field("addr"),
                pid: field("pid").parse().unwrap(),
                status: field("status").parse().unwrap(),
                ab: field("ab"),
                uri: field("uri"),
            }
        })
        .collect()
}

/// The access log entries of `addr`, once there are exactly `n` of them
/// (the log phase runs after the response is sent, so wait for it).
fn entries_of(nginx: &Nginx, addr: &str, n: usize) -> Vec<Entry> {
    let of = || -> Vec<Entry> {
        entries(nginx)
            .into_iter()
            .filter(|e| e.addr == addr)
            .collect()
    };
    wait_until(Duration::from_secs(5), || of().len() >= n);
    // Anything logged late would show up now.
    thread::sleep(Duration::from_millis(100));
    let got = of();
    assert_eq!(
        got.len(),
        n,
        "access log entries of {addr}: {got:#?}\n{}",
        nginx.access_log()
    );
    got
}

/// The access log entry of the request tagged `tag` (see [`tagged`]).
fn entry_tagged(nginx: &Nginx, tag: &str) -> Entry {
    let suffix = format!("t={tag}");
    let find = || {
        entries(nginx)
            .into_iter()
            .filter(|e| e.uri.ends_with(&suffix))
            .collect::<Vec<_>>()
    };
    wait_until(Duration::from_secs(5), || !find().is_empty());
    let found = find();
    assert_eq!(found.len(), 1, "entries tagged {tag}: {found:#?}");
    found[0].clone()
}

/// Error log lines containing `needle`.
fn log_lines(log: &str, needle: &str) -> Vec<String> {
    log.lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The ban messages for `addr` in `zone` (the address followed by a space,
/// so 192.0.2.1 does not match 192.0.2.10).
fn ban_lines(nginx: &Nginx, zone: &str, addr: &str) -> Vec<String> {
    log_lines(
        &nginx.error_log(),
        &format!("authban: ban zone={zone} addr={addr} "),
    )
}

/// Waits (the ban is logged in the log phase, after the response) until
/// `needle` is in the error log, then returns the lines with it.
fn wait_log_lines(nginx: &Nginx, needle: &str) -> Vec<String> {
    wait_until(Duration::from_secs(5), || {
        nginx.error_log().contains(needle)
    });
    thread::sleep(Duration::from_millis(100));
    log_lines(&nginx.error_log(), needle)
}

/// Asserts the one ban message of `addr` in `zone` has the documented shape:
/// `[LEVEL] ... authban: ban zone=Z addr=A failures=N bantime=Ss, client: ...`.
fn assert_one_ban(nginx: &Nginx, zone: &str, addr: &str, failures: u32, bantime: u32, level: &str) {
    assert_one_message(nginx, "ban", zone, addr, failures, bantime, level);
}

/// [`assert_one_ban`] for the message `authban: VERB zone=Z ...`: "ban", or
/// "would ban" in dry run.
fn assert_one_message(
    nginx: &Nginx,
    verb: &str,
    zone: &str,
    addr: &str,
    failures: u32,
    bantime: u32,
    level: &str,
) {
    let needle = format!("authban: {verb} zone={zone} addr={addr} ");
    let lines = wait_log_lines(nginx, &needle);
    assert_eq!(
        lines.len(),
        1,
        "want exactly one {verb} message for {addr} in {zone}:\n{}",
        nginx.error_log()
    );
    let line = &lines[0];
    assert!(line.contains(&format!("[{level}] ")), "{line}");
    let msg = &line[line.find("authban: ").unwrap()..];
    let want = format!("{needle}failures={failures} bantime={bantime}s");
    assert!(
        msg.starts_with(&want),
        "ban message {msg:?} does not start with {want:?}"
    );
    assert!(has_context(&msg[want.len()..], addr), "{msg}");
}

/// Whether `rest`, what follows the documented part of an authban message,
/// is a clean end of it (further ` key=value` fields are allowed, such as
/// `offence=N`) and then nginx's usual context naming `addr` as the client
/// (`[ while <what nginx was doing>], client: ADDR, server: ...`).
fn has_context(rest: &str, addr: &str) -> bool {
    let context = format!(", client: {addr}, server: ");
    let Some(at) = rest.find(&context) else {
        return false;
    };
    let extra = rest[..at]
        .split_once(" while ")
        .map_or(&rest[..at], |(fields, _)| fields);
    extra.is_empty()
        || (extra.starts_with(' ')
            && extra[1..].split(' ').all(|kv| {
                kv.split_once('=')
                    .is_some_and(|(k, v)| !k.is_empty() && !v.is_empty())
            }))
}

fn pids(entries: &[Entry]) -> BTreeSet<i32> {
    entries.iter().map(|e| e.pid).collect()
}

/// The `$authban_status` of each entry.
/// `(status, $authban_status)` of each entry, sorted. Workers write their
/// access log lines after the response has gone out, so two sequential
/// requests served by two workers may be logged in either order: the
/// responses' order is asserted on the client side, the log is compared as
/// a multiset, which still ties each status to its `$authban_status`.
fn ab_statuses(entries: &[Entry]) -> Vec<(u16, &str)> {
    let mut pairs: Vec<(u16, &str)> = entries.iter().map(|e| (e.status, e.ab.as_str())).collect();
    pairs.sort_unstable();
    pairs
}

// 1 ----------------------------------------------------------------------

/// maxretry=5 means exactly five failures reach the upstream, whichever
/// worker and connection they come over; every later request is refused in
/// the access phase, before the upstream.
#[test]
fn exact_count_shared_by_workers_and_connections() {
    with_timeout(120, || {
        // `reuseport` gives each worker its own listening socket and the
        // kernel spreads new connections over them by a hash of the client
        // port. Without it, an idle nginx on Linux (EPOLLEXCLUSIVE) hands
        // long runs of connections to one worker (seen here: 10 of 16).
        let (mock, nginx) = start_with_mock(4, &guarded_api("maxretry=5", "reuseport"));
        assert_eq!(nginx.worker_pids().len(), 4);
        let port = nginx.port();
        let mut spread = None;
        // A fresh address per attempt; retried only if all five failures
        // happened to land on a single worker.
        for attempt in 0..6 {
            let addr = format!("203.0.113.{}", 10 + attempt);
            mock.reset();
            // Failures 1 and 2 on fresh connections, 3 and 4 on one
            // keep-alive connection, 5 and the refused 6th on fresh ones.
            assert_gets(port, API, &addr, 2, 401);
            let mut conn = Conn::open(port);
            for i in 3..=4 {
                let reply = conn.get_from(API, &addr);
                assert_eq!(reply.status(), Some(401), "failure {i} of {addr}");
            }
            assert_eq!(get_from(port, API, &addr).status(), Some(401));
            // Requests 6 to 15.
            assert_gets(port, API, &addr, 10, 403);
            // The keep-alive connection opened before the ban is refused too.
            assert_eq!(conn.get_from(API, &addr).status(), Some(403));
            drop(conn);
            let (total, by_status) = mock.stats();
            assert_eq!(by_status.get(&401), Some(&5), "{by_status:?}");
            assert_eq!(total, 5, "refused requests reached the upstream");

            let log = entries_of(&nginx, &addr, 16);
            let (failed, refused): (Vec<Entry>, Vec<Entry>) =
                log.into_iter().partition(|e| e.status == 401);
            assert_eq!(failed.len(), 5);
            assert!(failed.iter().all(|e| e.ab == "PASSED"), "{failed:#?}");
            assert_eq!(refused.len(), 11);
            assert!(
                refused.iter().all(|e| e.status == 403 && e.ab == "BANNED"),
                "{refused:#?}"
            );
            // The ban is seen by workers other than the one that made it.
            assert!(pids(&refused).len() >= 2, "{refused:#?}");
            assert_one_ban(&nginx, "z", &addr, 5, 600, "warn");
            if pids(&failed).len() >= 2 {
                spread = Some(pids(&failed));
                break;
            }
        }
        assert!(
            spread.is_some(),
            "in 6 attempts the five failures never came from two workers"
        );
        nginx.assert_clean();
    });
}

/// The request right after the maxretry-th failure is refused, even when
/// it comes at once on a new connection that another worker accepts.
#[test]
fn refused_right_after_the_last_failure() {
    with_mock(
        120,
        4,
        &guarded_api("maxretry=2", "reuseport"),
        |mock, nginx| {
            let port = nginx.port();
            let rounds = 100;
            let mut leaked = Vec::new();
            for i in 0..rounds {
                let addr = format!("198.18.0.{i}");
                assert_gets(port, API, &addr, 2, 401);
                let next = get_from(port, API, &addr);
                if next.status() != Some(403) {
                    leaked.push((addr, next.status()));
                }
            }
            assert!(
                leaked.is_empty(),
                "{} of {rounds} addresses had the request right after their 2nd \
             failure let through (to the upstream): {leaked:?}",
                leaked.len()
            );
            assert_eq!(mock_count(mock, 401), 2 * rounds);
        },
    );
}

// 2 ----------------------------------------------------------------------

/// 403 by default, 444 closes; other addresses pass; the ban holds wherever
/// the zone is named (inherited from the server level), not where authban
/// is off or another zone is named.
#[test]
fn refusal_status_and_scope() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=3;
            authban_zone zone=other:1m maxretry=3;
            server {
                listen 127.0.0.1:{port};
                authban z;
                root {dir}/www;
                location /client/api { proxy_pass http://MOCK; }
                location /static/ { }
                location /closing/ { authban_status 444; proxy_pass http://MOCK/client/; }
                location /off/ { authban off; proxy_pass http://MOCK/client/; }
                location /other/ { authban other; proxy_pass http://MOCK/client/; }
            }
            "#,
        |mock, nginx| {
            write_files(nginx, &["static/f.txt"]);
            let port = nginx.port();
            let (a, b) = ("198.51.100.20", "198.51.100.21");
            assert_gets(port, API, a, 3, 401);
            let refused = get_from(port, API, a);
            assert_eq!(refused.status(), Some(403));
            assert!(
                refused.text().contains("403 Forbidden"),
                "{}",
                refused.text()
            );
            assert_eq!(mock_count(mock, 401), 3);
            assert_one_ban(nginx, "z", a, 3, 600, "warn");

            // Another location of the zone, serving static files.
            assert_eq!(get_from(port, "/static/f.txt", a).status(), Some(403));
            let other_client = get_from(port, "/static/f.txt", b);
            assert_eq!(other_client.status(), Some(200));
            assert_eq!(other_client.text(), "file\n");

            // authban_status 444: the connection is closed without a response.
            let closing = "/closing/api?command=listZones";
            assert_eq!(get_from(port, closing, a), Reply::Closed);
            let mut conn = Conn::open(port);
            assert_eq!(conn.get_from(closing, a), Reply::Closed);
            assert!(conn.is_closed());
            assert_eq!(get_from(port, closing, b).status(), Some(401)); // b: 1
            assert_eq!(mock_count(mock, 401), 4);

            // authban off: neither refused nor counted.
            assert_gets(port, "/off/api?command=listZones", a, 5, 401);
            assert_eq!(mock_count(mock, 401), 9);

            // Another zone: a counts from zero there.
            let other = "/other/api?command=listZones";
            assert_gets(port, other, a, 2, 401);
            assert_eq!(mock_count(mock, 401), 11);
            assert!(ban_lines(nginx, "other", a).is_empty());
            assert_eq!(get_from(port, other, a).status(), Some(401));
            assert_one_ban(nginx, "other", a, 3, 600, "warn");
            assert_eq!(get_from(port, other, a).status(), Some(403));

            // b had one failure: still passes in z, never banned.
            assert_eq!(get_from(port, API, b).status(), Some(401)); // b: 2
            assert_eq!(get_from(port, "/static/f.txt", b).status(), Some(200));
            assert_eq!(mock_count(mock, 401), 13);
            assert!(ban_lines(nginx, "z", b).is_empty());
            assert_eq!(ban_lines(nginx, "z", a).len(), 1);

            let log = entries_of(nginx, a, 16);
            let off: Vec<&Entry> = log.iter().filter(|e| e.uri.starts_with("/off/")).collect();
            assert_eq!(off.len(), 5);
            assert!(
                off.iter().all(|e| e.ab == "-" && e.status == 401),
                "{off:#?}"
            );
        },
    );
}

// 3 ----------------------------------------------------------------------

/// `authban_fail_status 401 531` counts both; other statuses (200, 404,
/// 405) never count; where the default (401 only) applies, 531 does not.
#[test]
fn fail_status_list() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=3;
            server {
                listen 127.0.0.1:{port};
                location /client/ {
                    authban z;
                    authban_fail_status 401 531;
                    proxy_pass http://MOCK;
                }
                location /default/ { authban z; proxy_pass http://MOCK/client/; }
            }
            "#,
        |mock, nginx| {
            let port = nginx.port();
            let a = "198.51.100.30";
            for _ in 0..5 {
                assert_eq!(login_status(port, "/client/api", a, "password"), Some(200));
                assert_eq!(get_from(port, "/client/nothing", a).status(), Some(404));
                // GET login: CloudStack wants POST, 405.
                let reply = get_from(port, "/client/api?command=login&username=admin", a);
                assert_eq!(reply.status(), Some(405));
            }
            // Two 531s and a 401: the third failure bans.
            assert_eq!(login_status(port, "/client/api", a, "wrong"), Some(531));
            assert_eq!(login_status(port, "/client/api", a, "wrong"), Some(531));
            assert_eq!(login_status(port, "/client/api", a, "password"), Some(200));
            assert_eq!(get_from(port, API, a).status(), Some(401));
            assert_eq!(login_status(port, "/client/api", a, "password"), Some(403));
            assert_one_ban(nginx, "z", a, 3, 600, "warn");
            let (total, by) = mock.stats();
            assert_eq!(by.get(&200), Some(&6), "{by:?}");
            assert_eq!(by.get(&405), Some(&5), "{by:?}");
            assert_eq!(by.get(&531), Some(&2), "{by:?}");
            assert_eq!(by.get(&401), Some(&1), "{by:?}");
            assert_eq!(total, 14, "{by:?}");

            // Where only 401 counts, 531s are harmless...
            let c = "198.51.100.31";
            for _ in 0..5 {
                assert_eq!(login_status(port, "/default/api", c, "wrong"), Some(531));
            }
            assert_eq!(login_status(port, "/default/api", c, "password"), Some(200));
            // ... and did not count: c starts from zero where they do.
            for _ in 0..2 {
                assert_eq!(login_status(port, "/client/api", c, "wrong"), Some(531));
            }
            assert_eq!(login_status(port, "/client/api", c, "password"), Some(200));
            assert!(ban_lines(nginx, "z", c).is_empty());
            assert_eq!(login_status(port, "/client/api", c, "wrong"), Some(531));
            assert_one_ban(nginx, "z", c, 3, 600, "warn");
            assert_eq!(login_status(port, "/default/api", c, "password"), Some(403));
            assert_eq!(mock_count(mock, 531), 2 + 5 + 3);
        },
    );
}

// 4 ----------------------------------------------------------------------

/// Addresses in `authban_ignore` networks (IPv4 and IPv6) are neither
/// counted nor refused; their neighbours just outside are.
#[test]
fn ignore_networks() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=2;
            server {
                listen 127.0.0.1:{port};
                location /client/api {
                    authban z;
                    authban_ignore 192.0.2.0/24 2001:db8:1::/48;
                    proxy_pass http://MOCK;
                }
            }
            "#,
        |mock, nginx| {
            let port = nginx.port();
            let ignored = [
                "192.0.2.50",
                "192.0.2.255",
                "2001:db8:1::5",
                "2001:db8:1:ffff::1",
            ];
            let counted = ["192.0.3.1", "2001:db8:2::5"];
            for addr in ignored {
                assert_gets(port, API, addr, 6, 401);
            }
            for addr in counted {
                assert_gets(port, API, addr, 2, 401);
                assert_eq!(get_from(port, API, addr).status(), Some(403), "{addr}");
                assert_one_ban(nginx, "z", addr, 2, 600, "warn");
            }
            // Still passing while others are banned.
            for addr in ignored {
                assert_eq!(get_from(port, API, addr).status(), Some(401), "{addr}");
            }
            assert_eq!(mock_count(mock, 401), 4 * 7 + 2 * 2);
            for addr in ignored {
                let log = entries_of(nginx, addr, 7);
                assert!(
                    log.iter().all(|e| e.ab == "IGNORED" && e.status == 401),
                    "{log:#?}"
                );
                assert!(ban_lines(nginx, "z", addr).is_empty());
            }
            for addr in counted {
                assert_outcomes(
                    nginx,
                    addr,
                    &[(401, "PASSED"), (401, "PASSED"), (403, "BANNED")],
                );
            }
        },
    );
}

/// An IPv4-mapped IPv6 client (as a dual-stack listener or realip shows an
/// IPv4 client) is the IPv4 address: it shares its counter, so it must also
/// share its exemption.
#[test]
fn ignore_covers_ipv4_mapped_clients() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=2;
            server {
                listen 127.0.0.1:{port};
                location /client/api {
                    authban z;
                    authban_ignore 192.0.2.0/24;
                    proxy_pass http://MOCK;
                }
            }
            "#,
        |mock, nginx| {
            let port = nginx.port();
            let mapped = "::ffff:192.0.2.60";
            for i in 0..4 {
                assert_eq!(
                    get_from(port, API, mapped).status(),
                    Some(401),
                    "request {i} of {mapped} (in the ignored 192.0.2.0/24)\n{}",
                    nginx.error_log()
                );
            }
            let log = entries_of(nginx, mapped, 4);
            assert!(log.iter().all(|e| e.ab == "IGNORED"), "{log:#?}");
            assert!(ban_lines(nginx, "z", "192.0.2.60").is_empty());
            assert_eq!(mock_count(mock, 401), 4);
        },
    );
}

// 5 ----------------------------------------------------------------------

/// Dry run counts and logs "would ban" once, refuses nothing, and reports
/// DRY_RUN for the address from then on.
#[test]
fn dry_run_refuses_nothing() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=3;
            server {
                listen 127.0.0.1:{port};
                location /client/api { authban z; authban_dry_run on; proxy_pass http://MOCK; }
            }
            "#,
        |mock, nginx| {
            let port = nginx.port();
            let (a, b) = ("198.51.100.50", "2001:db8::50");
            assert_gets(port, API, a, 8, 401);
            assert_eq!(get_from(port, API, b).status(), Some(401));
            assert_eq!(mock_count(mock, 401), 9);

            assert_one_message(nginx, "would ban", "z", a, 3, 600, "warn");
            assert!(
                !nginx.error_log().contains("authban: ban "),
                "{}",
                nginx.error_log()
            );

            let log = entries_of(nginx, a, 8);
            let abs = ab_statuses(&log);
            assert_eq!(abs[..5], [(401, "DRY_RUN"); 5], "{log:#?}");
            assert_eq!(abs[5..], [(401, "PASSED"); 3], "{log:#?}");
            assert_eq!(entries_of(nginx, b, 1)[0].ab, "PASSED");
        },
    );
}

// 6 ----------------------------------------------------------------------

/// `$authban_status` in the access log: PASSED, BANNED, IGNORED, DRY_RUN,
/// and empty ("-") where authban is off or not configured.
#[test]
fn status_variable_in_access_log() {
    with_timeout(60, || {
        let (_mock, nginx) = start_with_mock(
            2,
            r#"
            authban_zone zone=z:1m maxretry=2;
            authban_zone zone=d:1m maxretry=2;
            server {
                listen 127.0.0.1:{port};
                location /client/api {
                    authban z;
                    authban_ignore 192.0.2.0/24;
                    proxy_pass http://MOCK;
                }
                location /dry/ { authban d; authban_dry_run on; proxy_pass http://MOCK/client/; }
                location /off/ { authban off; proxy_pass http://MOCK/client/; }
                location /none/ { proxy_pass http://MOCK/client/; }
            }
            "#,
        );
        let port = nginx.port();
        let (a, ign) = ("198.51.100.60", "192.0.2.9");
        let dry = "/dry/api?command=listZones";
        let plan: [(&str, &str, &str, u16, &str); 11] = [
            ("p1", API, a, 401, "PASSED"),
            ("p2", API, a, 401, "PASSED"),
            ("b1", API, a, 403, "BANNED"),
            ("i1", API, ign, 401, "IGNORED"),
            ("i2", API, ign, 401, "IGNORED"),
            ("i3", API, ign, 401, "IGNORED"),
            ("d1", dry, a, 401, "PASSED"),
            ("d2", dry, a, 401, "PASSED"),
            ("d3", dry, a, 401, "DRY_RUN"),
            ("o1", "/off/api?command=listZones", a, 401, "-"),
            ("n1", "/none/api?command=listZones", a, 401, "-"),
        ];
        for (tag, path, addr, status, _) in plan {
            let reply = get_from(port, &tagged(path, tag), addr);
            assert_eq!(reply.status(), Some(status), "request {tag}");
        }
        // Every request checked before failing, to show all that differ.
        let mut wrong = Vec::new();
        for (tag, _, addr, status, ab) in plan {
            let e = entry_tagged(&nginx, tag);
            assert_eq!((e.addr.as_str(), e.status), (addr, status), "{e:?}");
            if e.ab != ab {
                wrong.push(format!("{tag}: want ab={ab}, logged ab={}", e.ab));
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}\n{}", nginx.access_log());
        nginx.assert_clean();
    });
}

// 7 ----------------------------------------------------------------------

/// IPv6 clients through realip, and IPv4-mapped IPv6 folding into the IPv4
/// address's counter.
#[test]
fn realip_ipv6_and_mapped_ipv4() {
    with_mock(60, 2, &guarded_api("maxretry=4", ""), |mock, nginx| {
        let port = nginx.port();
        let v6 = "2001:db8::7";
        assert_gets(port, API, v6, 4, 401);
        assert_eq!(get_from(port, API, v6).status(), Some(403));
        assert_eq!(get_from(port, API, "2001:db8::8").status(), Some(401));
        assert_one_ban(nginx, "z", v6, 4, 600, "warn");

        // Two failures each way make four for one address.
        let (mapped, plain) = ("::ffff:198.51.100.9", "198.51.100.9");
        for addr in [mapped, plain, mapped] {
            assert_eq!(get_from(port, API, addr).status(), Some(401), "{addr}");
        }
        assert!(ban_lines(nginx, "z", plain).is_empty());
        assert_eq!(get_from(port, API, plain).status(), Some(401));
        assert_eq!(get_from(port, API, plain).status(), Some(403));
        assert_eq!(get_from(port, API, mapped).status(), Some(403));
        assert_eq!(mock_count(mock, 401), 4 + 1 + 4);
        assert_one_ban(nginx, "z", plain, 4, 600, "warn");
        assert!(
            !nginx.error_log().contains("addr=::ffff:"),
            "{}",
            nginx.error_log()
        );
        assert_outcomes(
            nginx,
            mapped,
            &[(401, "PASSED"), (401, "PASSED"), (403, "BANNED")],
        );
    });
}

// 8 ----------------------------------------------------------------------

/// A ban lasts bantime, ends with an "unban ... reason=expired" message at
/// the next request, and the address then starts from zero.
#[test]
fn ban_expires() {
    with_timeout(60, || {
        let (mock, nginx) =
            start_with_mock(2, &guarded_api("maxretry=2 findtime=10m bantime=2s", ""));
        let port = nginx.port();
        let a = "198.51.100.80";
        let unban = format!("authban: unban zone=z addr={a} reason=expired");
        assert_gets(port, API, a, 2, 401);
        let banned_at = Instant::now();
        assert_eq!(get_from(port, API, a).status(), Some(403));
        assert_one_ban(&nginx, "z", a, 2, 2, "warn");

        thread::sleep(Duration::from_secs(1).saturating_sub(banned_at.elapsed()));
        assert_eq!(get_from(port, API, a).status(), Some(403), "at ~1 s");
        assert!(!nginx.error_log().contains(&unban));
        assert_eq!(mock_count(&mock, 401), 2);

        // The ban ends at the first whole second >= ban + 2 s.
        thread::sleep(Duration::from_millis(3300).saturating_sub(banned_at.elapsed()));
        assert_eq!(get_from(port, API, a).status(), Some(401), "after ~3 s");
        let lines = wait_log_lines(&nginx, &unban);
        assert_eq!(lines.len(), 1, "{}", nginx.error_log());
        assert!(lines[0].contains("[notice] "), "{}", lines[0]);
        // One failure after the ban is not two: the count restarted.
        assert_eq!(get_from(port, API, a).status(), Some(401));
        assert_eq!(get_from(port, API, a).status(), Some(403));
        assert_eq!(mock_count(&mock, 401), 4);
        let bans = wait_until(Duration::from_secs(5), || {
            ban_lines(&nginx, "z", a).len() == 2
        });
        assert!(bans, "{}", nginx.error_log());
        assert_eq!(log_lines(&nginx.error_log(), &unban).len(), 1);
        let log = entries_of(&nginx, a, 7);
        assert_eq!(
            ab_statuses(&log),
            [
                (401, "PASSED"),
                (401, "PASSED"),
                (401, "PASSED"),
                (401, "PASSED"),
                (403, "BANNED"),
                (403, "BANNED"),
                (403, "BANNED")
            ]
        );
        nginx.assert_clean();
    });
}

// 9 ----------------------------------------------------------------------

/// `satisfy any` lets one access module's yes win over another's no, but
/// not over a ban.
#[test]
fn satisfy_any_does_not_lift_a_ban() {
    with_mock(
        60,
        2,
        r#"
            authban_zone zone=z:1m maxretry=3;
            server {
                listen 127.0.0.1:{port};
                root {dir}/www;
                location /client/api {
                    authban z;
                    satisfy any;
                    allow all;
                    proxy_pass http://MOCK;
                }
                location /basic/ {
                    authban z;
                    satisfy any;
                    allow 192.0.2.0/24;
                    deny all;
                    auth_basic "x";
                    auth_basic_user_file {dir}/htpasswd;
                }
            }
            "#,
        |mock, nginx| {
            write_files(nginx, &["basic/f.txt"]);
            let port = nginx.port();
            let (a, b, allowed) = ("198.51.100.90", "198.51.100.91", "192.0.2.90");
            assert_gets(port, API, a, 3, 401);
            assert_eq!(get_from(port, API, a).status(), Some(403));
            assert_eq!(auth_status(port, "/basic/f.txt", a, GOOD_AUTH), Some(403));
            assert_eq!(mock_count(mock, 401), 3);

            // Failures of auth_basic under satisfy any count too...
            assert_eq!(auth_status(port, "/basic/f.txt", b, GOOD_AUTH), Some(200));
            for _ in 0..3 {
                assert_eq!(auth_status(port, "/basic/f.txt", b, BAD_AUTH), Some(401));
            }
            // ... and valid credentials do not lift the ban.
            assert_eq!(auth_status(port, "/basic/f.txt", b, GOOD_AUTH), Some(403));
            assert_eq!(get_from(port, API, b).status(), Some(403));
            assert_one_ban(nginx, "z", b, 3, 600, "warn");

            // An address the `allow` rule lets in without a password.
            assert_eq!(get_from(port, "/basic/f.txt", allowed).status(), Some(200));
            assert_gets(port, API, allowed, 3, 401);
            assert_eq!(get_from(port, "/basic/f.txt", allowed).status(), Some(403));
            assert_eq!(mock_count(mock, 401), 6);
        },
    );
}

// 10 ---------------------------------------------------------------------

/// Many concurrent failures of one address over separate connections and
/// workers still produce exactly one ban message, in the documented shape.
#[test]
fn one_ban_message_under_concurrency() {
    with_mock(
        120,
        4,
        r#"
            authban_zone zone=z:1m maxretry=5 bantime=2m;
            server {
                listen 127.0.0.1:{port} reuseport;
                authban_log_level error;
                location /client/api { authban z; proxy_pass http://MOCK; }
            }
            "#,
        |mock, nginx| {
            let port = nginx.port();
            for addr in ["198.51.100.77", "2001:db8::77"] {
                mock.reset();
                let threads = 8;
                let barrier = Arc::new(Barrier::new(threads));
                let handles: Vec<_> = (0..threads)
                    .map(|_| {
                        let barrier = Arc::clone(&barrier);
                        thread::spawn(move || {
                            barrier.wait();
                            (0..5)
                                .map(|_| get_from(port, API, addr).status())
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                let statuses: Vec<Option<u16>> = handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap())
                    .collect();
                let failed = statuses.iter().filter(|s| **s == Some(401)).count() as u64;
                let refused = statuses.iter().filter(|s| **s == Some(403)).count() as u64;
                assert_eq!(failed + refused, 40, "{statuses:?}");
                assert!(failed >= 5, "{statuses:?}");
                assert_eq!(mock_count(mock, 401), failed);
                assert_gets(port, API, addr, 4, 403);
                assert_eq!(mock_count(mock, 401), failed);
                assert_one_ban(nginx, "z", addr, 5, 120, "error");
                let log = entries_of(nginx, addr, 44);
                assert_eq!(
                    log.iter().filter(|e| e.ab == "BANNED").count() as u64,
                    refused + 4
                );
            }
            // Exactly one ban message per ban in total.
            let all = log_lines(&nginx.error_log(), "authban: ban ");
            assert_eq!(all.len(), 2, "{all:#?}");
        },
    );
}

// 11 ---------------------------------------------------------------------

/// Failures nginx produces itself count: auth_basic's 401, a 401 from
/// another nginx server, a static 404 where 404 is listed.
#[test]
fn nginx_own_responses_count() {
    with_timeout(60, || {
        let nginx = start(
            2,
            r#"
            authban_zone zone=z:1m maxretry=3;
            authban_zone zone=f:1m maxretry=2;
            server {
                listen 127.0.0.1:{port};
                root {dir}/www;
                location /basic/ {
                    authban z;
                    auth_basic "x";
                    auth_basic_user_file {dir}/htpasswd;
                }
                location /inner/ { authban z; proxy_pass http://127.0.0.1:{port2}; }
                location /files/ { authban f; authban_fail_status 404; }
            }
            server {
                listen 127.0.0.1:{port2};
                access_log off;
                return 401;
            }
            "#,
        );
        write_files(&nginx, &["basic/f.txt", "files/f.txt"]);
        let port = nginx.port();
        let (a, b, c, d) = (
            "198.51.100.110",
            "198.51.100.111",
            "198.51.100.112",
            "198.51.100.113",
        );

        assert_eq!(auth_status(port, "/basic/f.txt", a, GOOD_AUTH), Some(200));
        assert_eq!(auth_status(port, "/basic/f.txt", a, BAD_AUTH), Some(401));
        assert_eq!(get_from(port, "/basic/f.txt", a).status(), Some(401));
        assert_eq!(auth_status(port, "/basic/f.txt", a, BAD_AUTH), Some(401));
        assert_eq!(auth_status(port, "/basic/f.txt", a, GOOD_AUTH), Some(403));
        assert_one_ban(&nginx, "z", a, 3, 600, "warn");

        assert_gets(port, "/inner/x", b, 3, 401);
        assert_eq!(get_from(port, "/inner/x", b).status(), Some(403));
        assert_eq!(auth_status(port, "/basic/f.txt", b, GOOD_AUTH), Some(403));
        assert_one_ban(&nginx, "z", b, 3, 600, "warn");

        // 404 is not a failure where 401 is the default...
        for _ in 0..4 {
            assert_eq!(auth_status(port, "/basic/missing", c, GOOD_AUTH), Some(404));
        }
        assert_eq!(auth_status(port, "/basic/f.txt", c, GOOD_AUTH), Some(200));
        assert!(ban_lines(&nginx, "z", c).is_empty());
        // ... and is one where listed.
        assert_eq!(get_from(port, "/files/missing", c).status(), Some(404));
        assert_eq!(get_from(port, "/files/f.txt", c).status(), Some(200));
        assert_eq!(get_from(port, "/files/missing", c).status(), Some(404));
        assert_eq!(get_from(port, "/files/f.txt", c).status(), Some(403));
        assert_one_ban(&nginx, "f", c, 2, 600, "warn");
        assert_eq!(get_from(port, "/files/f.txt", d).status(), Some(200));
        nginx.assert_clean();
    });
}

// 12 ---------------------------------------------------------------------

/// A worker that refused a client under the zone's lock refuses it again
/// from its memory of the ban, without the lock. That memory must never
/// outlive the ban: a client refused again and again on one keep-alive
/// connection (so by one worker, from memory) is served on its very next
/// request after an unban made through another worker; banned again, it
/// is refused at once; a ban shortened through another worker ends at its
/// new end. Every refusal is counted, from memory or not.
#[test]
fn a_ban_remembered_by_a_worker_ends_there_when_lifted_elsewhere() {
    with_timeout(120, || {
        let nginx = start(
            4,
            r#"
            authban_zone zone=z:1m bantime=1h;
            add_header X-Worker $pid always;
            server {
                listen 127.0.0.1:{port} reuseport;
                location / { authban z; empty_gif; }
            }
            server {
                listen 127.0.0.1:{port2} reuseport;
                location = /authban { authban_api; }
            }
            "#,
        );
        let addr = "198.51.100.60";
        let query = format!("/authban?zone=z&addr={addr}");
        let worker = |reply: &Reply| reply.header("x-worker").map(str::to_string);
        let refused_count = || {
            let all = api_ok(&nginx, "GET", "");
            let z = all
                .arr("zones")
                .iter()
                .find(|z| z.str("name") == "z")
                .expect("zone z");
            z.get("counters").u64("refused")
        };
        // An endpoint connection to a worker other than `not`.
        let elsewhere = |not: &Option<String>| {
            for _ in 0..400 {
                let mut conn = Conn::open(nginx.port2());
                let reply = conn.get("/authban");
                assert_eq!(reply.status(), Some(200), "{reply:?}");
                if worker(&reply) != *not {
                    return conn;
                }
            }
            panic!("no other worker answered the endpoint");
        };

        // A network's ban elsewhere sends every IPv4 client past the
        // zone's lock-free filter, which would otherwise clear a client
        // whose own ban was lifted before any memory of it is consulted.
        api_ok(&nginx, "POST", "?zone=z&addr=203.0.113.0/24");
        api_ok(&nginx, "POST", &format!("?zone=z&addr={addr}"));
        let mut front = Conn::open(nginx.port());
        let first = front.get_from("/", addr);
        assert_eq!(first.status(), Some(403), "{first:?}");
        let refuser = worker(&first);
        assert!(refuser.is_some(), "{first:?}");
        for _ in 0..20 {
            let reply = front.get_from("/", addr);
            assert_eq!(reply.status(), Some(403), "{reply:?}");
            assert_eq!(worker(&reply), refuser, "one connection, one worker");
        }
        assert_eq!(refused_count(), 21);

        // Lifted through another worker: served on the next request.
        let mut api = elsewhere(&refuser);
        let unban = api.request("DELETE", &query, &[], None);
        assert_eq!(unban.status(), Some(200), "{unban:?}");
        assert_ne!(worker(&unban), refuser);
        let served = front.get_from("/", addr);
        assert_eq!(
            served.status(),
            Some(200),
            "served after the unban: {served:?}"
        );
        assert_eq!(worker(&served), refuser);
        assert_eq!(refused_count(), 21);

        // Banned again: refused at once, and remembered again.
        let mut api = elsewhere(&refuser);
        let ban = api.request("POST", &query, &[], None);
        assert_eq!(ban.status(), Some(200), "{ban:?}");
        for _ in 0..5 {
            let reply = front.get_from("/", addr);
            assert_eq!(
                reply.status(),
                Some(403),
                "refused after the ban: {reply:?}"
            );
        }
        // Shortened through another worker: refused until its new end,
        // served from then on.
        let mut api = elsewhere(&refuser);
        let short = api.request("POST", &format!("{query}&time=2s"), &[], None);
        assert_eq!(short.status(), Some(200), "{short:?}");
        let until = Json::parse(&short.text()).unwrap().u64("until");
        let reply = front.get_from("/", addr);
        assert_eq!(reply.status(), Some(403), "{reply:?}");
        let mut refusals = 27;
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs();
            let reply = front.get_from("/", addr);
            match reply.status() {
                Some(403) => {
                    // nginx's clock may lag the client's by its timer
                    // resolution, never lead it.
                    assert!(now <= until, "refused at {now}, ban ended at {until}");
                    refusals += 1;
                }
                Some(200) => {
                    assert!(now + 1 >= until, "served at {now}, ban ends at {until}");
                    break;
                }
                other => panic!("{other:?}: {reply:?}"),
            }
            assert!(Instant::now() < deadline, "still refused after its end");
            thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(refused_count(), refusals);
        nginx.assert_clean();
    });
}
