//! Integration tests of the management endpoint (`authban_api;`) against a
//! real nginx: listing zones, zone detail with paging, one address's state,
//! manual bans (addresses and networks) and unbans, the Prometheus
//! exposition (checked with the reference Python parser), strict rejection
//! of bad requests, and nginx's access rules in front of the endpoint.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;

/// Two zones. The front server (`{port}`, realip, one listening socket per
/// worker so new connections spread over all of them) protects `/` and
/// `/fail` with zone `api` and `/spare` with zone `spare`, proxying to the
/// back server (`{port2}`), which logs what reaches it to upstream.log and
/// serves the endpoint. The back server has no realip, so the endpoint sees
/// the real peer address.
const CONF: &str = r#"
    authban_zone zone=api:1m maxretry=3 findtime=10m bantime=1h;
    authban_zone zone=spare:64k maxretry=5 findtime=1m bantime=10m;
    log_format upstream '$http_x_forwarded_for "$request" $status';

    server {
        listen 127.0.0.1:{port} reuseport;
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        add_header X-Worker $pid always;

        location / {
            authban api;
            proxy_pass http://127.0.0.1:{port2};
        }
        location /spare {
            authban spare;
            proxy_pass http://127.0.0.1:{port2}/fail;
        }
    }

    server {
        listen 127.0.0.1:{port2};

        location / {
            access_log {dir}/upstream.log upstream;
            return 200 "up\n";
        }
        location /fail {
            access_log {dir}/upstream.log upstream;
            return 401;
        }
        location /authban {
            authban_api;
            allow 127.0.0.1;
            deny all;
        }
    }
"#;

const BANTIME: u64 = 3600;

fn start(workers: usize) -> Nginx {
    Nginx::options().workers(workers).start(CONF)
}

// ---- helpers ---------------------------------------------------------------

fn zone<'a>(list: &'a Json, name: &str) -> &'a Json {
    list.arr("zones")
        .iter()
        .find(|z| z.str("name") == name)
        .unwrap_or_else(|| panic!("no zone {name:?} in {list:?}"))
}

/// A zone's counters and gauges.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Counts {
    failures: u64,
    bans: u64,
    refused: u64,
    expired: u64,
    evicted: u64,
    bans_dropped: u64,
    tracked: u64,
    active: u64,
}

impl Counts {
    fn of(z: &Json) -> Counts {
        let c = z.get("counters");
        assert_eq!(
            c.keys(),
            [
                "failures",
                "bans",
                "refused",
                "expired",
                "evicted",
                "bans_dropped",
                "widen_skipped"
            ],
            "{z:?}"
        );
        Counts {
            failures: c.u64("failures"),
            bans: c.u64("bans"),
            refused: c.u64("refused"),
            expired: c.u64("expired"),
            evicted: c.u64("evicted"),
            bans_dropped: c.u64("bans_dropped"),
            tracked: z.u64("tracked"),
            active: z.u64("bans"),
        }
    }

    fn minus(self, o: Counts) -> Counts {
        Counts {
            failures: self.failures - o.failures,
            bans: self.bans - o.bans,
            refused: self.refused - o.refused,
            expired: self.expired - o.expired,
            evicted: self.evicted - o.evicted,
            bans_dropped: self.bans_dropped - o.bans_dropped,
            tracked: self.tracked - o.tracked,
            active: self.active - o.active,
        }
    }
}

fn counts(n: &Nginx, name: &str) -> Counts {
    Counts::of(zone(&api_ok(n, "GET", ""), name))
}

/// One request to the protected front server, playing `addr`.
fn front(n: &Nginx, path: &str, addr: &str) -> Reply {
    get_from(n.port(), path, addr)
}

fn assert_refused(n: &Nginx, path: &str, addr: &str) {
    let reply = front(n, path, addr);
    assert_eq!(
        reply.status(),
        Some(403),
        "{addr} {path} should be refused: {reply:?}"
    );
    assert!(reply.text().contains("403 Forbidden"), "{reply:?}");
}

fn assert_passes(n: &Nginx, addr: &str) {
    let reply = front(n, "/", addr);
    assert_eq!(reply.status(), Some(200), "{addr} should pass: {reply:?}");
    assert_eq!(reply.text(), "up\n");
}

/// Requests that reached the back server's protected locations from `addr`.
fn upstream_hits(n: &Nginx, addr: &str) -> usize {
    let log = std::fs::read_to_string(n.dir().join("upstream.log")).unwrap_or_default();
    log.lines()
        .filter(|l| l.split(' ').next() == Some(addr))
        .count()
}

/// Waits until the upstream has logged `want` requests from `addr` (it
/// logs just after answering), and asserts it is not more.
fn expect_hits(n: &Nginx, addr: &str, want: usize) {
    wait_until(Duration::from_secs(5), || upstream_hits(n, addr) >= want);
    assert_eq!(
        upstream_hits(n, addr),
        want,
        "requests from {addr} upstream"
    );
}

/// Sends `k` failing requests (401 from upstream) from `addr` and waits
/// after each until the zone has counted it (failures are counted in the
/// log phase, which may run just after the client has its response).
fn fail(n: &Nginx, addr: &str, k: u64) {
    let enc = pct(addr);
    for _ in 0..k {
        let before = counts(n, "api").failures;
        let reply = front(n, "/fail", addr);
        assert_eq!(reply.status(), Some(401), "{addr}: {reply:?}");
        assert!(
            wait_until(Duration::from_secs(5), || counts(n, "api").failures
                == before + 1),
            "failure of {addr} never counted: {:?}",
            api(n, "GET", &format!("?zone=api&addr={enc}")).text()
        );
    }
}

/// Percent-encodes everything but unreserved characters.
fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            b => format!("%{b:02X}"),
        })
        .collect()
}

/// Sends requests from `addr` over new connections until every worker has
/// answered at least once (and at least `min` requests), each with
/// `status`. Returns how many were sent.
fn hit_every_worker(n: &Nginx, addr: &str, status: u16, min: usize) -> usize {
    let workers: BTreeSet<String> = n.worker_pids().iter().map(|p| p.to_string()).collect();
    let mut seen = BTreeSet::new();
    let mut sent = 0;
    while sent < min || (seen != workers && sent < 400) {
        let reply = front(n, "/", addr);
        sent += 1;
        assert_eq!(
            reply.status(),
            Some(status),
            "request {sent} from {addr}: {reply:?}"
        );
        if status == 200 {
            assert_eq!(reply.text(), "up\n");
        } else {
            assert!(reply.text().contains("403 Forbidden"), "{reply:?}");
        }
        let pid = reply
            .header("x-worker")
            .unwrap_or_else(|| panic!("no X-Worker header: {reply:?}"));
        seen.insert(pid.to_string());
    }
    assert_eq!(
        seen, workers,
        "after {sent} connections not every worker answered"
    );
    sent
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs()
}

/// Unix seconds as `YYYY-MM-DDThh:mm:ssZ`, counted the long way.
fn iso(secs: u64) -> String {
    let leap = |y: u64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut days = secs / 86_400;
    let rem = secs % 86_400;
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let feb = if leap(year) { 29 } else { 28 };
    let lens = [31, feb, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut month = 0;
    while days >= lens[month] {
        days -= lens[month];
        month += 1;
    }
    format!(
        "{year:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        month + 1,
        days + 1,
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Checks since/until (and their ISO forms) of a ban made between
/// `t0` and `t1` (wall clock) for `secs`.
fn check_times(what: &str, v: &Json, secs: u64, t0: u64, t1: u64) {
    let since = v.u64("since");
    let until = v.u64("until");
    assert!(
        since + 1 >= t0 && since <= t1 + 1,
        "{what}: since {since} not within [{t0}, {t1}]"
    );
    assert!(
        until - since == secs || until - since == secs + 1,
        "{what}: until {until} - since {since} is not {secs} (or {secs}+1)"
    );
    assert_eq!(v.str("since_iso"), iso(since), "{what}");
    assert_eq!(v.str("until_iso"), iso(until), "{what}");
}

/// The error.log lines holding `needle`.
fn log_lines(n: &Nginx, needle: &str) -> Vec<String> {
    n.error_log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(str::to_string)
        .collect()
}

/// The ban messages logged for `addr` in `zone`, without nginx's
/// `, client: ...` context.
fn ban_messages(n: &Nginx, zone: &str, addr: &str) -> Vec<String> {
    let head = format!("authban: ban zone={zone} addr={addr} ");
    n.error_log()
        .lines()
        .filter_map(|l| {
            let msg = &l[l.find(&head)?..];
            Some(msg.split(", client: ").next().unwrap_or(msg).to_string())
        })
        .collect()
}

/// Waits for the one ban message of `addr`: `authban: ban zone=Z addr=A
/// failures=N bantime=Ss`, ending in ` by=api` exactly when the endpoint
/// made the ban. Fields added between bantime and by=api are tolerated.
fn expect_ban_logged(n: &Nginx, zone: &str, addr: &str, failures: u64, secs: u64, by_api: bool) {
    let logged = wait_until(Duration::from_secs(5), || {
        !ban_messages(n, zone, addr).is_empty()
    });
    assert!(logged, "no ban logged for {addr}\n{}", n.log_tail());
    let msgs = ban_messages(n, zone, addr);
    assert_eq!(msgs.len(), 1, "{msgs:?}");
    let msg = &msgs[0];
    let want = format!("authban: ban zone={zone} addr={addr} failures={failures} bantime={secs}s");
    assert!(
        msg == &want || msg.starts_with(&format!("{want} ")),
        "got {msg:?}, want {want:?}"
    );
    assert_eq!(msg.ends_with(" by=api"), by_api, "{msg:?}");
    if !by_api {
        assert!(!msg.contains("by=api"), "{msg:?}");
    }
}

// ---- tests -------------------------------------------------------------

#[test]
fn zone_list_reports_every_zone() {
    with_timeout(30, || {
        let n = start(2);
        let reply = api(&n, "GET", "");
        let list = Json::parse(&reply.text()).expect("valid JSON");
        assert_eq!(reply.header("content-type"), Some("application/json"));
        assert_eq!(list.keys(), ["zones"]);
        let zones = list.arr("zones");
        let names: Vec<&str> = zones.iter().map(|z| z.str("name")).collect();
        assert_eq!(names, ["api", "spare"]);
        for (z, size, policy) in [
            (&zones[0], 1 << 20, [3, 600, 3600]),
            (&zones[1], 64 << 10, [5, 60, 600]),
        ] {
            assert_eq!(
                z.keys(),
                ["name", "size", "capacity", "policy", "tracked", "bans", "counters"],
                "{z:?}"
            );
            assert_eq!(z.u64("size"), size);
            let p = z.get("policy");
            assert_eq!(p.keys(), ["maxretry", "findtime", "bantime"]);
            assert_eq!(
                [p.u64("maxretry"), p.u64("findtime"), p.u64("bantime")],
                policy
            );
            // 50 bytes per address, less the slab pool's own pages.
            let cap = z.u64("capacity");
            assert!(cap <= size / 50 && cap >= size / 50 / 2, "capacity {cap}");
            assert_eq!(Counts::of(z), Counts::default(), "{z:?}");
        }
        // format=json is the default.
        assert_eq!(api(&n, "GET", "?format=json").text(), reply.text());
        n.assert_clean();
    });
}

#[test]
fn manual_ban_refused_by_every_worker_until_unban() {
    with_timeout(120, || {
        let n = start(4);
        let addr = "198.51.100.20";
        let other = "198.51.100.21";
        assert_passes(&n, addr);
        expect_hits(&n, addr, 1);

        let t0 = unix_now();
        let ban = api_ok(&n, "POST", "?zone=api&addr=198.51.100.20");
        let t1 = unix_now();
        assert_eq!(
            ban.keys(),
            [
                "zone",
                "banned",
                "addr",
                "since",
                "since_iso",
                "until",
                "until_iso",
                "failures"
            ]
        );
        assert_eq!(ban.str("zone"), "api");
        assert!(ban.bool("banned"));
        assert_eq!(ban.str("addr"), addr);
        assert_eq!(ban.u64("failures"), 0);
        check_times("POST ban", &ban, BANTIME, t0, t1);
        expect_ban_logged(&n, "api", addr, 0, BANTIME, true);

        let refused = hit_every_worker(&n, addr, 403, 20);
        // Refused in the access phase: nothing reached the upstream.
        thread::sleep(Duration::from_millis(300));
        assert_eq!(upstream_hits(&n, addr), 1, "a banned request got through");
        assert_passes(&n, other);
        expect_hits(&n, other, 1);

        let c = counts(&n, "api");
        assert_eq!(c.refused, refused as u64);
        assert_eq!((c.bans, c.active, c.tracked), (1, 1, 1));
        let state = api_ok(&n, "GET", "?zone=api&addr=198.51.100.20");
        assert!(state.bool("banned"));
        assert_eq!(state.u64("until"), ban.u64("until"));

        let log_at = n.error_log_len();
        let unban = api_ok(&n, "DELETE", "?zone=api&addr=198.51.100.20");
        assert_eq!(
            unban.keys(),
            ["zone", "addr", "was_banned", "failures_forgotten"]
        );
        assert_eq!(unban.str("zone"), "api");
        assert_eq!(unban.str("addr"), addr);
        assert!(unban.bool("was_banned"));
        assert_eq!(unban.u64("failures_forgotten"), 0);
        let line = "authban: unban zone=api addr=198.51.100.20 reason=api";
        assert!(
            wait_until(Duration::from_secs(5), || n
                .error_log_since(log_at)
                .contains(line)),
            "no {line:?}\n{}",
            n.log_tail()
        );
        let lines = log_lines(&n, line);
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("[notice]"), "{lines:?}");

        let passed = hit_every_worker(&n, addr, 200, 20);
        assert!(
            wait_until(Duration::from_secs(5), || upstream_hits(&n, addr)
                == 1 + passed),
            "upstream saw {} of {} requests after the unban",
            upstream_hits(&n, addr),
            1 + passed
        );
        let c = counts(&n, "api");
        assert_eq!(c.refused, refused as u64, "passing requests were refused");
        assert_eq!((c.bans, c.active, c.tracked, c.expired), (1, 0, 0, 0));
        // Forgotten: no longer tracked, and a second unban finds nothing.
        let reason = api_err(&n, "GET", "?zone=api&addr=198.51.100.20", 404);
        assert_eq!(reason, "198.51.100.20 is not tracked in zone \"api\"");
        api_err(&n, "DELETE", "?zone=api&addr=198.51.100.20", 404);
        assert_eq!(log_lines(&n, "reason=api").len(), 1);
        n.assert_clean();
    });
}

#[test]
fn counters_move_by_exactly_what_happened() {
    with_timeout(90, || {
        let n = start(2);
        // Some history first, so the deltas start from non-zero values.
        fail(&n, "192.0.2.250", 1);
        api_ok(&n, "POST", "?zone=api&addr=192.0.2.251");
        let before = counts(&n, "api");
        let spare_before = counts(&n, "spare");
        assert_eq!(
            before,
            Counts {
                failures: 1,
                bans: 1,
                tracked: 2,
                active: 1,
                ..Counts::default()
            }
        );

        // k = 5 failures over three addresses, none reaching maxretry (3).
        fail(&n, "203.0.113.1", 2);
        fail(&n, "203.0.113.2", 2);
        fail(&n, "2001:db8:77::c", 1);
        // One ban from failures: the third failure of .4 bans it.
        fail(&n, "203.0.113.4", 3);
        let d = api_ok(&n, "GET", "?zone=api&addr=203.0.113.4");
        assert!(d.bool("banned"), "{d:?}");
        assert_eq!(d.u64("failures"), 3);
        // r = 4 refused requests from it (refused ones are not failures).
        for _ in 0..2 {
            assert_refused(&n, "/", "203.0.113.4");
            assert_refused(&n, "/fail", "203.0.113.4");
        }
        // One manual ban of an untracked address.
        api_ok(&n, "POST", "?zone=api&addr=203.0.113.5");
        thread::sleep(Duration::from_millis(200));

        let after = counts(&n, "api");
        assert_eq!(
            after.minus(before),
            Counts {
                failures: 8,
                bans: 2,
                refused: 4,
                expired: 0,
                evicted: 0,
                bans_dropped: 0,
                tracked: 5,
                active: 2,
            },
            "before {before:?}, after {after:?}"
        );
        assert_eq!(counts(&n, "spare"), spare_before, "the other zone moved");
        expect_hits(&n, "203.0.113.4", 3);

        expect_ban_logged(&n, "api", "203.0.113.4", 3, BANTIME, false);
        expect_ban_logged(&n, "api", "203.0.113.5", 0, BANTIME, true);
        n.assert_clean();
    });
}

#[test]
fn zone_detail_lists_bans_in_pages() {
    with_timeout(90, || {
        let n = start(2);
        // Nothing banned yet.
        let empty = api_ok(&n, "GET", "?zone=api");
        assert_eq!(
            empty.keys(),
            [
                "name", "size", "capacity", "policy", "tracked", "bans", "counters", "offset",
                "limit", "ban_list"
            ]
        );
        assert_eq!(empty.u64("offset"), 0);
        assert_eq!(empty.u64("limit"), 100);
        assert!(empty.arr("ban_list").is_empty());

        // 25 bans, each ending later than the one before: 24 for 100+i
        // seconds, the last for the zone's bantime.
        let mut expected = Vec::new();
        let t0 = unix_now();
        for i in 0..25u64 {
            let addr = format!("10.1.0.{i}");
            let (query, secs) = if i < 24 {
                (format!("?zone=api&addr={addr}&time={}s", 100 + i), 100 + i)
            } else {
                (format!("?zone=api&addr={addr}"), BANTIME)
            };
            let ban = api_ok(&n, "POST", &query);
            assert_eq!(ban.str("addr"), addr);
            expected.push((addr, secs));
        }
        let t1 = unix_now();

        let all = api_ok(&n, "GET", "?zone=api");
        assert_eq!(all.u64("bans"), 25);
        assert_eq!(all.u64("tracked"), 25);
        assert_eq!(all.u64("limit"), 100);
        assert!(all.opt("next_offset").is_none(), "{all:?}");
        let list = all.arr("ban_list");
        let order: Vec<&str> = list.iter().map(|b| b.str("addr")).collect();
        let want: Vec<&str> = expected.iter().map(|(a, _)| a.as_str()).collect();
        assert_eq!(order, want, "soonest-ending first");
        for (b, (addr, secs)) in list.iter().zip(&expected) {
            assert_eq!(
                b.keys(),
                [
                    "addr",
                    "since",
                    "since_iso",
                    "until",
                    "until_iso",
                    "failures"
                ]
            );
            assert_eq!(b.u64("failures"), 0);
            check_times(addr, b, *secs, t0, t1);
        }
        let untils: Vec<u64> = list.iter().map(|b| b.u64("until")).collect();
        assert!(untils.windows(2).all(|w| w[0] < w[1]), "{untils:?}");

        // Three pages of 10, 10 and 5.
        let mut union = Vec::new();
        for (offset, len, next) in [(0, 10, Some(10)), (10, 10, Some(20)), (20, 5, None)] {
            let page = api_ok(&n, "GET", &format!("?zone=api&limit=10&offset={offset}"));
            assert_eq!(page.u64("offset"), offset);
            assert_eq!(page.u64("limit"), 10);
            assert_eq!(page.u64("bans"), 25);
            assert_eq!(page.arr("ban_list").len(), len, "offset {offset}");
            assert_eq!(page.opt("next_offset").map(Json::as_u64), next, "{page:?}");
            union.extend(page.arr("ban_list").iter().cloned());
        }
        assert_eq!(&union[..], list, "the pages differ from the full list");
        let distinct: BTreeSet<&str> = union.iter().map(|b| b.str("addr")).collect();
        assert_eq!(distinct.len(), 25);

        // Past the end, and page sizes around the total.
        for query in ["?zone=api&offset=25", "?zone=api&offset=1000&limit=5"] {
            let page = api_ok(&n, "GET", query);
            assert!(page.arr("ban_list").is_empty(), "{query}");
            assert!(page.opt("next_offset").is_none(), "{query}");
        }
        let page = api_ok(&n, "GET", "?zone=api&limit=25");
        assert_eq!(page.arr("ban_list").len(), 25);
        assert!(page.opt("next_offset").is_none());
        let page = api_ok(&n, "GET", "?limit=24&zone=api");
        assert_eq!(page.arr("ban_list").len(), 24);
        assert_eq!(page.u64("next_offset"), 24);
        let page = api_ok(&n, "GET", "?zone=api&limit=1000&offset=24");
        assert_eq!(page.u64("limit"), 1000);
        let last = page.arr("ban_list");
        assert_eq!(last.len(), 1);
        assert_eq!(last[0], list[24]);

        // The other zone is untouched.
        let spare = api_ok(&n, "GET", "?zone=spare");
        assert_eq!(spare.u64("bans"), 0);
        assert!(spare.arr("ban_list").is_empty());
        n.assert_clean();
    });
}

#[test]
fn address_state_reports_failures_and_ban() {
    with_timeout(90, || {
        let n = start(2);
        let a = "192.0.2.10";
        fail(&n, a, 2);
        let s = api_ok(&n, "GET", "?zone=api&addr=192.0.2.10");
        assert_eq!(s.keys(), ["zone", "addr", "failures", "banned"]);
        assert_eq!(s.str("zone"), "api");
        assert_eq!(s.str("addr"), a);
        assert_eq!(s.u64("failures"), 2);
        assert!(!s.bool("banned"));

        let t0 = unix_now();
        fail(&n, a, 1);
        let t1 = unix_now();
        let s = api_ok(&n, "GET", "?zone=api&addr=192.0.2.10");
        assert_eq!(
            s.keys(),
            [
                "zone",
                "addr",
                "failures",
                "banned",
                "since",
                "since_iso",
                "until",
                "until_iso"
            ]
        );
        assert_eq!(s.u64("failures"), 3);
        assert!(s.bool("banned"));
        check_times(a, &s, BANTIME, t0, t1);
        // The ban list says the same.
        let detail = api_ok(&n, "GET", "?zone=api");
        let list = detail.arr("ban_list");
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].str("addr"), a);
        assert_eq!(list[0].u64("failures"), 3);
        assert_eq!(list[0].u64("until"), s.u64("until"));

        // IPv6, looked up percent-encoded and in a non-canonical spelling.
        fail(&n, "2001:db8::1", 1);
        for query in [
            "?zone=api&addr=2001%3Adb8%3A%3A1",
            "?zone=api&addr=2001:0db8:0:0:0::1",
            "?addr=2001%3adb8%3a%3a1&zone=api",
        ] {
            let s = api_ok(&n, "GET", query);
            assert_eq!(s.str("addr"), "2001:db8::1", "{query}");
            assert_eq!(s.u64("failures"), 1, "{query}");
            assert!(!s.bool("banned"), "{query}");
        }

        // A manual ban keeps the failures it found.
        fail(&n, "192.0.2.11", 2);
        let ban = api_ok(&n, "POST", "?zone=api&addr=192.0.2.11");
        assert_eq!(ban.u64("failures"), 2);
        expect_ban_logged(&n, "api", "192.0.2.11", 2, BANTIME, true);
        let s = api_ok(&n, "GET", "?zone=api&addr=192.0.2.11");
        assert!(s.bool("banned"));
        assert_eq!(s.u64("failures"), 2);

        // Unbanning a counted-only address forgets its failures, silently.
        fail(&n, "192.0.2.12", 2);
        let forgot = api_ok(&n, "DELETE", "?zone=api&addr=192.0.2.12");
        assert!(!forgot.bool("was_banned"));
        assert_eq!(forgot.u64("failures_forgotten"), 2);
        assert!(log_lines(&n, "addr=192.0.2.12 reason=api").is_empty());
        api_err(&n, "GET", "?zone=api&addr=192.0.2.12", 404);

        // Untracked: 404, in this zone and in the other.
        let reason = api_err(&n, "GET", "?zone=api&addr=192.0.2.200", 404);
        assert_eq!(reason, "192.0.2.200 is not tracked in zone \"api\"");
        let reason = api_err(&n, "GET", "?zone=spare&addr=192.0.2.10", 404);
        assert_eq!(reason, "192.0.2.10 is not tracked in zone \"spare\"");
        let reason = api_err(&n, "GET", "?zone=nope&addr=192.0.2.10", 404);
        assert_eq!(reason, "unknown zone \"nope\"");
        n.assert_clean();
    });
}

#[test]
fn cidr_ban_covers_the_whole_network() {
    with_timeout(90, || {
        let n = start(2);
        let inside6 = [
            "2001:db8:5:1::9",
            "2001:db8:5::",
            "2001:db8:5:ffff:ffff:ffff:ffff:ffff",
        ];
        let outside6 = ["2001:db8:6::9", "2001:db8:4:ffff::1"];
        let inside4 = ["203.0.113.77", "203.0.113.0", "203.0.113.255"];
        let outside4 = ["203.0.114.1", "203.0.112.255"];
        for a in inside6
            .iter()
            .chain(&outside6)
            .chain(&inside4)
            .chain(&outside4)
        {
            assert_passes(&n, a);
        }

        let ban = api_ok(&n, "POST", "?zone=api&addr=2001:db8:5::/48");
        assert_eq!(ban.str("addr"), "2001:db8:5::/48");
        assert_eq!(ban.u64("failures"), 0);
        // Host bits are masked off; the slash may be percent-encoded.
        let ban4 = api_ok(&n, "POST", "?zone=api&addr=203.0.113.77%2F24");
        assert_eq!(ban4.str("addr"), "203.0.113.0/24");
        expect_ban_logged(&n, "api", "2001:db8:5::/48", 0, BANTIME, true);
        expect_ban_logged(&n, "api", "203.0.113.0/24", 0, BANTIME, true);
        let detail = api_ok(&n, "GET", "?zone=api");
        let listed: BTreeSet<&str> = detail
            .arr("ban_list")
            .iter()
            .map(|b| b.str("addr"))
            .collect();
        assert_eq!(
            listed,
            BTreeSet::from(["2001:db8:5::/48", "203.0.113.0/24"])
        );
        assert_eq!(detail.u64("bans"), 2);
        let net = api_ok(&n, "GET", "?zone=api&addr=2001%3Adb8%3A5%3A%3A%2F48");
        assert!(net.bool("banned"));
        assert_eq!(net.str("addr"), "2001:db8:5::/48");

        let refused_before = counts(&n, "api").refused;
        for a in inside6.iter().chain(&inside4) {
            assert_refused(&n, "/", a);
        }
        for a in outside6.iter().chain(&outside4) {
            assert_passes(&n, a);
        }
        thread::sleep(Duration::from_millis(200));
        for a in inside6.iter().chain(&inside4) {
            assert_eq!(upstream_hits(&n, a), 1, "{a} reached the upstream");
        }
        assert_eq!(counts(&n, "api").refused - refused_before, 6);

        // Unban the IPv6 network (percent-encoded): its addresses pass again,
        // the IPv4 network stays banned.
        let unban = api_ok(&n, "DELETE", "?zone=api&addr=2001%3Adb8%3A5%3A%3A%2F48");
        assert_eq!(unban.str("addr"), "2001:db8:5::/48");
        assert!(unban.bool("was_banned"));
        assert_eq!(
            log_lines(
                &n,
                "authban: unban zone=api addr=2001:db8:5::/48 reason=api"
            )
            .len(),
            1,
            "{}",
            n.log_tail()
        );
        for a in inside6 {
            assert_passes(&n, a);
        }
        assert_refused(&n, "/", "203.0.113.77");

        let unban = api_ok(&n, "DELETE", "?zone=api&addr=203.0.113.0/24");
        assert!(unban.bool("was_banned"));
        for a in inside4 {
            assert_passes(&n, a);
        }
        let c = counts(&n, "api");
        assert_eq!((c.active, c.tracked, c.bans), (0, 0, 2));
        n.assert_clean();
    });
}

#[test]
fn timed_ban_ends_on_its_own() {
    with_timeout(60, || {
        let n = start(2);
        let addr = "198.51.100.60";
        let t0 = unix_now();
        let ban = api_ok(&n, "POST", "?zone=api&addr=198.51.100.60&time=2s");
        let posted = Instant::now();
        let t1 = unix_now();
        check_times("time=2s", &ban, 2, t0, t1);
        expect_ban_logged(&n, "api", addr, 0, 2, true);
        assert_refused(&n, "/", addr);
        thread::sleep(Duration::from_millis(1000));
        assert_refused(&n, "/", addr);

        let mut status = None;
        let ended = wait_until(Duration::from_secs(6), || {
            thread::sleep(Duration::from_millis(80));
            status = front(&n, "/", addr).status();
            status == Some(200)
        });
        let elapsed = posted.elapsed();
        assert!(ended, "still {status:?} {elapsed:?} after a 2 s ban");
        assert!(
            elapsed >= Duration::from_millis(1800) && elapsed <= Duration::from_millis(3600),
            "a 2 s ban ended after {elapsed:?}"
        );
        assert!(
            n.wait_for_error_log(
                "authban: unban zone=api addr=198.51.100.60 reason=expired",
                Duration::from_secs(5)
            ),
            "{}",
            n.log_tail()
        );
        let c = counts(&n, "api");
        assert_eq!((c.bans, c.expired, c.active), (1, 1, 0));
        // Once expired the address is either forgotten or plainly counted.
        let reply = api(&n, "GET", "?zone=api&addr=198.51.100.60");
        match reply.status() {
            Some(404) => {
                json_error("expired address", &reply, 404);
            }
            _ => {
                let s = api_ok(&n, "GET", "?zone=api&addr=198.51.100.60");
                assert!(!s.bool("banned"), "{s:?}");
                assert_eq!(s.u64("failures"), 0, "{s:?}");
            }
        }
        assert!(api_ok(&n, "GET", "?zone=api").arr("ban_list").is_empty());
        assert_passes(&n, addr);
        n.assert_clean();
    });
}

/// `authban_active_bans{zone="ZONE"}` in a Prometheus answer.
fn active_bans_sample(body: &str, zone: &str) -> String {
    let name = format!("authban_active_bans{{zone=\"{zone}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&name))
        .unwrap_or_else(|| panic!("no {name:?} in\n{body}"))
        .to_string()
}

/// Bans that ended while no request came are not counted as bans by any
/// report: the JSON zone list, one zone, and both Prometheus answers. Each
/// round's answer is the first request after its bans ended.
#[test]
fn ended_bans_are_not_reported_without_traffic() {
    with_timeout(60, || {
        let n = start(2);
        let ban_and_wait = |round: u32, k: u32| {
            for i in 0..k {
                api_ok(
                    &n,
                    "POST",
                    &format!("?zone=api&addr=198.51.{round}.{i}&time=1s"),
                );
            }
            assert_eq!(counts(&n, "api").active, u64::from(k));
            thread::sleep(Duration::from_millis(2500));
        };
        // More than one buffer of expiry events at once (8).
        ban_and_wait(1, 10);
        let all = api(&n, "GET", "?format=prometheus");
        assert_eq!(all.status(), Some(200), "{all:?}");
        assert_eq!(active_bans_sample(&all.text(), "api"), "0");

        ban_and_wait(2, 3);
        let one = api(&n, "GET", "?zone=api&format=prometheus");
        assert_eq!(one.status(), Some(200), "{one:?}");
        assert_eq!(active_bans_sample(&one.text(), "api"), "0");

        ban_and_wait(3, 3);
        let detail = api_ok(&n, "GET", "?zone=api");
        assert_eq!(detail.u64("bans"), 0, "{detail:?}");
        assert!(detail.arr("ban_list").is_empty(), "{detail:?}");

        ban_and_wait(4, 2);
        let c = counts(&n, "api");
        assert_eq!((c.active, c.bans, c.expired), (0, 18, 18), "{c:?}");
        // Ended as any ban ends: logged (rate-limited) as expired.
        let expired = n.error_log();
        assert!(
            expired
                .lines()
                .any(|l| l.contains("authban: unban zone=api addr=198.51.1.")
                    && l.contains("reason=expired")),
            "{}",
            n.log_tail()
        );
        // A ban in force is still counted and listed.
        api_ok(&n, "POST", "?zone=api&addr=198.51.5.1&time=1h");
        let detail = api_ok(&n, "GET", "?zone=api");
        assert_eq!(detail.u64("bans"), 1, "{detail:?}");
        assert_eq!(detail.arr("ban_list").len(), 1, "{detail:?}");
        n.assert_clean();
    });
}

/// Parses a Prometheus exposition with the reference client library;
/// returns (family name -> type) and the samples as
/// (family, sample name, labels, value).
type Samples = Vec<(String, String, BTreeMap<String, String>, f64)>;

fn parse_prometheus(body: &str) -> (BTreeMap<String, String>, Samples) {
    const PY: &str = "/usr/bin/python3";
    let probe = Command::new(PY)
        .args(["-c", "import prometheus_client.parser"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run {PY}: {e}; install python3 and python3-prometheus-client")
        });
    assert!(
        probe.status.success(),
        "{PY} cannot import prometheus_client: install the Debian package \
         python3-prometheus-client (apt-get install python3-prometheus-client)\n{}",
        String::from_utf8_lossy(&probe.stderr)
    );
    let script = r#"
import sys
from prometheus_client.parser import text_string_to_metric_families as parse
for f in parse(sys.stdin.read()):
    print("F", f.name, f.type)
    for s in f.samples:
        labels = ",".join("%s=%s" % kv for kv in sorted(s.labels.items()))
        print("S", f.name, s.name, labels or "-", repr(float(s.value)))
"#;
    let mut child = Command::new(PY)
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn python");
    let mut stdin = child.stdin.take().expect("stdin");
    let text = body.to_string();
    let writer = thread::spawn(move || stdin.write_all(text.as_bytes()));
    let out = child.wait_with_output().expect("python output");
    writer.join().unwrap().expect("write to python");
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}\n{body}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut families = BTreeMap::new();
    let mut samples = Vec::new();
    for line in String::from_utf8(out.stdout).unwrap().lines() {
        let f: Vec<&str> = line.split(' ').collect();
        match f[..] {
            ["F", name, kind] => {
                assert!(
                    families
                        .insert(name.to_string(), kind.to_string())
                        .is_none(),
                    "family {name} twice"
                );
            }
            ["S", fam, name, labels, value] => {
                let labels = if labels == "-" {
                    BTreeMap::new()
                } else {
                    labels
                        .split(',')
                        .map(|kv| {
                            let (k, v) = kv.split_once('=').unwrap();
                            (k.to_string(), v.to_string())
                        })
                        .collect()
                };
                samples.push((
                    fam.to_string(),
                    name.to_string(),
                    labels,
                    value.parse().unwrap(),
                ));
            }
            _ => panic!("unexpected parser output line {line:?}"),
        }
    }
    (families, samples)
}

#[test]
fn prometheus_exposition_parses_and_matches_json() {
    with_timeout(90, || {
        let n = start(2);
        // Activity in both zones.
        fail(&n, "192.0.2.1", 2);
        fail(&n, "192.0.2.2", 3);
        assert_refused(&n, "/", "192.0.2.2");
        assert_refused(&n, "/fail", "192.0.2.2");
        api_ok(&n, "POST", "?zone=api&addr=192.0.2.3");
        for _ in 0..3 {
            let before = counts(&n, "spare").failures;
            assert_eq!(front(&n, "/spare", "192.0.2.9").status(), Some(401));
            assert!(wait_until(Duration::from_secs(5), || counts(&n, "spare")
                .failures
                == before + 1));
        }
        api_ok(&n, "POST", "?zone=spare&addr=2001:db8::/32&time=1d");

        let json = api_ok(&n, "GET", "");
        let reply = api(&n, "GET", "?format=prometheus");
        assert_eq!(reply.status(), Some(200));
        let ctype = reply.header("content-type").unwrap_or_default();
        assert!(
            ctype.starts_with("text/plain; version=0.0.4"),
            "content type {ctype:?}"
        );
        let (families, samples) = parse_prometheus(&reply.text());

        // (family as the parser names it, exposed sample name, JSON value)
        type Get = fn(&Json) -> u64;
        let metrics: [(&str, &str, &str, Get); 10] = [
            (
                "authban_failures",
                "authban_failures_total",
                "counter",
                |z| z.get("counters").u64("failures"),
            ),
            ("authban_bans", "authban_bans_total", "counter", |z| {
                z.get("counters").u64("bans")
            }),
            ("authban_refused", "authban_refused_total", "counter", |z| {
                z.get("counters").u64("refused")
            }),
            (
                "authban_bans_expired",
                "authban_bans_expired_total",
                "counter",
                |z| z.get("counters").u64("expired"),
            ),
            ("authban_evicted", "authban_evicted_total", "counter", |z| {
                z.get("counters").u64("evicted")
            }),
            (
                "authban_bans_dropped",
                "authban_bans_dropped_total",
                "counter",
                |z| z.get("counters").u64("bans_dropped"),
            ),
            (
                "authban_widen_skipped",
                "authban_widen_skipped_total",
                "counter",
                |z| z.get("counters").u64("widen_skipped"),
            ),
            (
                "authban_tracked_addresses",
                "authban_tracked_addresses",
                "gauge",
                |z| z.u64("tracked"),
            ),
            ("authban_active_bans", "authban_active_bans", "gauge", |z| {
                z.u64("bans")
            }),
            (
                "authban_capacity_addresses",
                "authban_capacity_addresses",
                "gauge",
                |z| z.u64("capacity"),
            ),
        ];
        let want: BTreeMap<String, String> = metrics
            .iter()
            .map(|(f, _, t, _)| (f.to_string(), t.to_string()))
            .collect();
        assert_eq!(families, want);
        assert_eq!(samples.len(), metrics.len() * 2, "{samples:?}");
        for (family, sample, _, value) in &metrics {
            for name in ["api", "spare"] {
                let z = zone(&json, name);
                let found: Vec<_> = samples
                    .iter()
                    .filter(|(f, _, l, _)| {
                        f == family && l.get("zone").map(String::as_str) == Some(name)
                    })
                    .collect();
                assert_eq!(found.len(), 1, "{family} zone={name}: {samples:?}");
                let (_, sname, labels, v) = found[0];
                assert_eq!(sname, sample);
                assert_eq!(labels.len(), 1, "{labels:?}");
                assert_eq!(*v, value(z) as f64, "{sample}{{zone=\"{name}\"}}");
            }
        }
        // The activity is visible, not just zeros equal to zeros.
        let api_zone = zone(&json, "api");
        assert_eq!(Counts::of(api_zone).failures, 5);
        assert_eq!(Counts::of(api_zone).refused, 2);
        assert_eq!(Counts::of(api_zone).bans, 2);
        assert_eq!(Counts::of(zone(&json, "spare")).failures, 3);
        assert_eq!(Counts::of(zone(&json, "spare")).active, 1);

        // One zone alone.
        let reply = api(&n, "GET", "?zone=spare&format=prometheus");
        assert_eq!(reply.status(), Some(200));
        let (families, samples) = parse_prometheus(&reply.text());
        assert_eq!(families, want);
        assert_eq!(samples.len(), metrics.len());
        assert!(samples
            .iter()
            .all(
                |(_, _, l, _)| l.get("zone").map(String::as_str) == Some("spare") && l.len() == 1
            ));
        api_err(&n, "GET", "?zone=nope&format=prometheus", 404);
        n.assert_clean();
    });
}

#[test]
fn bad_requests_are_rejected_and_change_nothing() {
    with_timeout(90, || {
        let n = start(2);
        api_ok(&n, "POST", "?zone=api&addr=192.0.2.1");
        fail(&n, "192.0.2.2", 1);
        let snapshot = || {
            [
                api(&n, "GET", "").text(),
                api(&n, "GET", "?zone=api").text(),
                api(&n, "GET", "?zone=spare").text(),
                api(&n, "GET", "?zone=api&addr=192.0.2.1").text(),
                api(&n, "GET", "?zone=api&addr=192.0.2.2").text(),
            ]
        };
        let before = snapshot();
        let log_at = n.error_log_len();

        let huge_name = "x".repeat(4000);
        let huge_query = format!("?zone=api&{huge_name}=1");
        let junk = format!("?{}", "j".repeat(8 * 1024));
        let chunked: &[u8] = b"1\r\nx\r\n0\r\n\r\n";
        // (method, query, extra headers, body, status, reason: exact, or a
        // prefix when it ends with '*')
        type Case<'a> = (
            &'a str,
            &'a str,
            &'a [(&'a str, &'a str)],
            Option<&'a [u8]>,
            u16,
            &'a str,
        );
        let none: &[(&str, &str)] = &[];
        let cases: Vec<Case> = vec![
            (
                "GET",
                "?zone=nope",
                none,
                None,
                404,
                "unknown zone \"nope\"",
            ),
            (
                "POST",
                "?zone=nope&addr=192.0.2.50",
                none,
                None,
                404,
                "unknown zone \"nope\"",
            ),
            (
                "DELETE",
                "?zone=nope&addr=192.0.2.1",
                none,
                None,
                404,
                "unknown zone \"nope\"",
            ),
            (
                "GET",
                "?zone=a%22b%5Cc%01",
                none,
                None,
                404,
                "unknown zone \"a\"b\\c\u{1}\"",
            ),
            (
                "DELETE",
                "?zone=api&addr=192.0.2.77",
                none,
                None,
                404,
                "192.0.2.77 is not tracked in zone \"api\"",
            ),
            (
                "POST",
                "?zone=api&addr=999.1.1.1",
                none,
                None,
                400,
                "invalid addr \"999.1.1.1\": expected an IP address or CIDR network",
            ),
            (
                "GET",
                "?zone=api&addr=999.1.1.1",
                none,
                None,
                400,
                "invalid addr \"999.1.1.1\"*",
            ),
            (
                "POST",
                "?zone=api&addr=10.0.0.0/33",
                none,
                None,
                400,
                "invalid addr \"10.0.0.0/33\"*",
            ),
            (
                "POST",
                "?zone=api&addr=10.0.0.0%2F33",
                none,
                None,
                400,
                "invalid addr \"10.0.0.0/33\"*",
            ),
            (
                "POST",
                "?zone=api&addr=2001:db8::/129",
                none,
                None,
                400,
                "invalid addr*",
            ),
            ("POST", "?zone=api&addr=", none, None, 400, "invalid addr*"),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=abc",
                none,
                None,
                400,
                "invalid time \"abc\": expected an nginx time such as 30m",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=5ms",
                none,
                None,
                400,
                "invalid time \"5ms\"*",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=0",
                none,
                None,
                400,
                "invalid time \"0\"*",
            ),
            // Longer than a year: refused, not clamped.
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=100y",
                none,
                None,
                400,
                "invalid time \"100y\": at most 1y",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=4294967295",
                none,
                None,
                400,
                "invalid time \"4294967295\": at most 1y",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=31536001",
                none,
                None,
                400,
                "invalid time \"31536001\": at most 1y",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&time=1y1s",
                none,
                None,
                400,
                "invalid time \"1y1s\": at most 1y",
            ),
            (
                "GET",
                "?zone=api&limit=0",
                none,
                None,
                400,
                "invalid limit \"0\": expected 1 to 1000",
            ),
            (
                "GET",
                "?zone=api&limit=5000",
                none,
                None,
                400,
                "invalid limit \"5000\": expected 1 to 1000",
            ),
            (
                "GET",
                "?zone=api&limit=1001",
                none,
                None,
                400,
                "invalid limit \"1001\"*",
            ),
            (
                "GET",
                "?zone=api&offset=-3",
                none,
                None,
                400,
                "invalid offset \"-3\"",
            ),
            (
                "GET",
                "?format=xml",
                none,
                None,
                400,
                "invalid format \"xml\": expected json or prometheus",
            ),
            (
                "GET",
                "?zone=api&colour=red",
                none,
                None,
                400,
                "unknown parameter \"colour\"",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&colour=red",
                none,
                None,
                400,
                "unknown parameter \"colour\"",
            ),
            (
                "GET",
                "?zone=api&zone=api",
                none,
                None,
                400,
                "parameter \"zone\" given twice",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&addr=192.0.2.51",
                none,
                None,
                400,
                "parameter \"addr\" given twice",
            ),
            ("GET", "?zone=", none, None, 400, "empty zone"),
            (
                "GET",
                "?zone=%zz",
                none,
                None,
                400,
                "malformed query string",
            ),
            ("GET", "?addr=192.0.2.1", none, None, 400, "addr needs zone"),
            (
                "POST",
                "?addr=192.0.2.50",
                none,
                None,
                400,
                "addr needs zone",
            ),
            (
                "DELETE",
                "?addr=192.0.2.1",
                none,
                None,
                400,
                "addr needs zone",
            ),
            (
                "POST",
                "?zone=api",
                none,
                None,
                400,
                "zone and addr (or key, hash) are required",
            ),
            (
                "POST",
                "",
                none,
                None,
                400,
                "zone and addr (or key, hash) are required",
            ),
            (
                "DELETE",
                "?zone=api",
                none,
                None,
                400,
                "zone and addr (or key, hash) are required",
            ),
            (
                "GET",
                "?zone=api&time=1h",
                none,
                None,
                400,
                "time applies only to POST",
            ),
            (
                "GET",
                "?zone=api&addr=192.0.2.1&time=1h",
                none,
                None,
                400,
                "time applies only to POST",
            ),
            (
                "DELETE",
                "?zone=api&addr=192.0.2.1&time=1h",
                none,
                None,
                400,
                "time applies only to POST",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50&limit=3",
                none,
                None,
                400,
                "format, limit and offset apply only to GET",
            ),
            (
                "GET",
                "?limit=3",
                none,
                None,
                400,
                "limit and offset need zone",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50",
                none,
                Some(b"addr=192.0.2.51"),
                400,
                "no request body is expected",
            ),
            (
                "POST",
                "?zone=api&addr=192.0.2.50",
                &[("Transfer-Encoding", "chunked")],
                Some(chunked),
                400,
                "no request body is expected",
            ),
            (
                "GET",
                "?zone=api",
                none,
                Some(b"x"),
                400,
                "no request body is expected",
            ),
            (
                "DELETE",
                "?zone=api&addr=192.0.2.1",
                none,
                Some(b"{}"),
                400,
                "no request body is expected",
            ),
            (
                "PUT",
                "?zone=api&addr=192.0.2.50",
                none,
                None,
                405,
                "method not allowed*",
            ),
            (
                "PATCH",
                "?zone=api&addr=192.0.2.1",
                none,
                None,
                405,
                "method not allowed*",
            ),
            (
                "GET",
                &huge_query,
                none,
                None,
                400,
                "unknown parameter \"xxxx*",
            ),
        ];
        for (method, query, headers, body, status, reason) in &cases {
            let what = format!("{method} /authban{query:.80}");
            let reply = http(
                n.port2(),
                method,
                &format!("/authban{query}"),
                headers,
                *body,
            );
            let got = json_error(&what, &reply, *status);
            match reason.strip_suffix('*') {
                Some(prefix) => assert!(got.starts_with(prefix), "{what}: {got:?}"),
                None => assert_eq!(&got, reason, "{what}"),
            }
            if *status == 405 {
                assert_eq!(
                    reply.header("allow"),
                    Some("GET, HEAD, POST, DELETE"),
                    "{what}: {reply:?}"
                );
            } else {
                assert_eq!(reply.header("allow"), None, "{what}");
            }
        }
        // 8 KB of junk: nginx's own 414, or the endpoint's 400.
        let reply = http(n.port2(), "GET", &format!("/authban{junk}"), &[], None);
        let status = reply.status().unwrap_or(0);
        assert!((400..500).contains(&status), "8 KB query: {reply:?}");

        assert_eq!(snapshot(), before, "a rejected request changed the state");
        for addr in ["192.0.2.50", "192.0.2.51"] {
            api_err(&n, "GET", &format!("?zone=api&addr={addr}"), 404);
        }
        let logged = n.error_log_since(log_at);
        assert!(
            !logged.contains("authban: ban ") && !logged.contains("authban: unban "),
            "{logged}"
        );
        // Still serving.
        assert_refused(&n, "/", "192.0.2.1");
        assert_passes(&n, "192.0.2.3");
        n.assert_clean();
    });
}

#[test]
fn deny_all_guards_the_endpoint() {
    with_timeout(30, || {
        let n = start(2);
        api_ok(&n, "POST", "?zone=api&addr=192.0.2.1");
        let before = api(&n, "GET", "?zone=api").text();
        for (method, query) in [
            ("GET", ""),
            ("GET", "?zone=api"),
            ("GET", "?format=prometheus"),
            ("POST", "?zone=api&addr=192.0.2.50"),
            ("DELETE", "?zone=api&addr=192.0.2.1"),
        ] {
            let reply = http_from_ip(
                "127.0.0.2",
                n.port2(),
                method,
                &format!("/authban{query}"),
                &[],
                None,
            );
            assert_eq!(reply.status(), Some(403), "{method} {query}: {reply:?}");
            let text = reply.text();
            assert!(
                text.contains("403 Forbidden") && !text.contains("\"error\""),
                "{method} {query}: not nginx's page: {text}"
            );
        }
        assert!(
            n.wait_for_error_log(
                "access forbidden by rule, client: 127.0.0.2",
                Duration::from_secs(5)
            ),
            "{}",
            n.log_tail()
        );
        // Nothing changed; the allowed address still gets answers.
        assert_eq!(api(&n, "GET", "?zone=api").text(), before);
        api_err(&n, "GET", "?zone=api&addr=192.0.2.50", 404);
        let reply = http_from_ip("127.0.0.1", n.port2(), "GET", "/authban", &[], None);
        assert_eq!(reply.status(), Some(200));
        n.assert_clean();
    });
}
