//! Fleet sync through Redis (`authban_zone ... sync=redis://...`): a real
//! `redis-server` on a free loopback port and three real nginx nodes (each
//! worker_processes 2, own prefix and ports) in front of one shared mock
//! CloudStack upstream. Clients are played with realip (`X-Forwarded-For`
//! from loopback).
//!
//! Each node: `{port}` is the front server (`/client/api` proxied to the
//! mock, which answers 401 to an unsigned call; `/ok` proxied to the node's
//! own back server, which answers 200), `{port2}` the back server with the
//! management endpoint. Zone `fleet` has `sync=`, zone `local` has not.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const MAXRETRY: usize = 10;

/// An unsigned CloudStack API call: the mock answers 401 (a failure).
const ATTACK: &str = "/client/api?command=listZones&response=json";

/// How long a ban may take to reach the other nodes.
const PROPAGATION: Duration = Duration::from_secs(1);

/// One node's http block; `sync` is the `sync=` URL.
fn node_conf(mock: &Mock, sync: &str) -> String {
    format!(
        r#"
    authban_zone zone=fleet:1m maxretry={MAXRETRY} findtime=10m bantime=1h sync={sync};
    authban_zone zone=local:64k maxretry=3;

    server {{
        listen 127.0.0.1:{{port}};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;

        location /client/api {{
            authban fleet;
            proxy_pass http://{mock};
        }}
        location /ok {{
            authban fleet;
            proxy_pass http://127.0.0.1:{{port2}}/up;
        }}
        location /local {{
            authban local;
            proxy_pass http://127.0.0.1:{{port2}}/up;
        }}
    }}

    server {{
        listen 127.0.0.1:{{port2}};
        location = /up {{
            return 200 "up\n";
        }}
        location = /authban {{
            authban_api;
            allow 127.0.0.1;
            deny all;
        }}
    }}
    "#,
        mock = mock.addr()
    )
}

fn start_node(mock: &Mock, sync: &str) -> Nginx {
    Nginx::options().workers(2).start(&node_conf(mock, sync))
}

fn start_nodes(mock: &Mock, sync: &str, n: usize) -> Vec<Nginx> {
    (0..n).map(|_| start_node(mock, sync)).collect()
}

// ---- the management endpoint ------------------------------------------------

/// The `sync` object of zone `fleet`.
fn sync_state(n: &Nginx) -> Json {
    api_ok(n, "GET", "?zone=fleet").get("sync").clone()
}

fn sync_counter(n: &Nginx, name: &str) -> u64 {
    sync_state(n).u64(name)
}

/// Waits (10 s) until every node's link is `connected == want`.
fn wait_connected(nodes: &[Nginx], want: bool) {
    for (i, n) in nodes.iter().enumerate() {
        let ok = wait_until(Duration::from_secs(10), || {
            sync_state(n).bool("connected") == want
        });
        assert!(
            ok,
            "node {} never reported connected={want}: {:?}\n{}",
            i + 1,
            sync_state(n),
            n.log_tail()
        );
    }
}

/// Whether zone `fleet` of node `n` holds a ban covering `addr` (API view).
fn api_banned(n: &Nginx, addr: &str) -> bool {
    let reply = api(n, "GET", &format!("?zone=fleet&addr={addr}"));
    match reply.status() {
        Some(200) => Json::parse(&reply.text()).is_ok_and(|j| j.bool("banned")),
        _ => false,
    }
}

fn ban(n: &Nginx, addr: &str) {
    api_ok(n, "POST", &format!("?zone=fleet&addr={addr}"));
}

fn unban(n: &Nginx, addr: &str) {
    api_ok(n, "DELETE", &format!("?zone=fleet&addr={addr}"));
}

// ---- requests ---------------------------------------------------------------

/// The status of `GET /ok` from `addr` on node `n` (200 passes, 403 refused).
fn ok_status(n: &Nginx, addr: &str) -> Option<u16> {
    get_from(n.port(), "/ok", addr).status()
}

fn refuses(n: &Nginx, addr: &str) -> bool {
    ok_status(n, addr) == Some(403)
}

fn passes(n: &Nginx, addr: &str) -> bool {
    ok_status(n, addr) == Some(200)
}

/// Polls `cond` until it holds or `timeout` elapses; the time it took.
fn within(timeout: Duration, mut cond: impl FnMut() -> bool) -> Option<Duration> {
    let t0 = Instant::now();
    wait_until(timeout, &mut cond).then(|| t0.elapsed())
}

/// Asserts node `i` (1-based, for messages) refuses `addr` within `timeout`.
fn expect_refused(nodes: &[Nginx], i: usize, addr: &str, timeout: Duration, what: &str) {
    let n = &nodes[i - 1];
    match within(timeout, || refuses(n, addr)) {
        Some(d) => eprintln!("{what}: node {i} refuses {addr} after {d:?}"),
        None => panic!(
            "{what}: node {i} does not refuse {addr} within {timeout:?} (GET /ok: {:?}, sync {:?})\n{}",
            ok_status(n, addr),
            sync_state(n),
            n.log_tail()
        ),
    }
}

fn expect_passes(nodes: &[Nginx], i: usize, addr: &str, timeout: Duration, what: &str) {
    let n = &nodes[i - 1];
    match within(timeout, || passes(n, addr)) {
        Some(d) => eprintln!("{what}: node {i} passes {addr} after {d:?}"),
        None => panic!(
            "{what}: node {i} still refuses {addr} after {timeout:?} (sync {:?})\n{}",
            sync_state(n),
            n.log_tail()
        ),
    }
}

/// `count` failing calls (401 from the mock) from `addr` to node `n`.
fn fail(n: &Nginx, addr: &str, count: usize) {
    for k in 1..=count {
        let reply = get_from(n.port(), ATTACK, addr);
        assert_eq!(
            reply.status(),
            Some(401),
            "failure {k} of {count} from {addr}"
        );
    }
}

fn mock_401(mock: &Mock) -> usize {
    mock.stats().1.get(&401).copied().unwrap_or(0) as usize
}

// ---- logs ---------------------------------------------------------------------

/// The lines of `text` holding every one of `needles`.
fn lines_with(text: &str, needles: &[&str]) -> Vec<String> {
    text.lines()
        .filter(|l| needles.iter().all(|w| l.contains(w)))
        .map(str::to_string)
        .collect()
}

fn down_line(redis: &Redis) -> String {
    format!(
        "authban: zone=fleet sync link to {} is down (",
        redis.shown_url()
    )
}

fn up_line(redis: &Redis) -> String {
    format!(
        "authban: zone=fleet sync link to {} is up",
        redis.shown_url()
    )
}

fn assert_all_clean(nodes: &[Nginx]) {
    for n in nodes {
        n.assert_clean();
    }
}

// ---- tests ----------------------------------------------------------------------

/// A brute force spread round-robin over three nodes, one request at a
/// time, gets at most maxretry + 2 failures to the upstream, and once it is
/// banned every node refuses it within 1 s.
#[test]
fn round_robin_brute_force_is_counted_once_for_the_fleet() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let nodes = start_nodes(&mock, &redis.url(), 3);
        wait_connected(&nodes, true);
        mock.reset();
        let addr = "198.51.100.66";

        let mut failures = 0;
        let mut banned_at = None;
        let mut refused_in_a_row = 0;
        let mut sent = 0;
        // At most 3 * maxretry requests: without sync every node would let
        // maxretry through (3 * maxretry) and refuse none.
        while refused_in_a_row < nodes.len() {
            assert!(
                sent < 3 * MAXRETRY,
                "{sent} requests round-robin, {failures} failed, not refused by every node\n{}",
                nodes
                    .iter()
                    .map(Nginx::log_tail)
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let n = &nodes[sent % nodes.len()];
            let status = get_from(n.port(), ATTACK, addr).status();
            sent += 1;
            match status {
                Some(401) => {
                    failures += 1;
                    refused_in_a_row = 0;
                    if failures == MAXRETRY {
                        banned_at = Some(Instant::now());
                    }
                }
                Some(403) => refused_in_a_row += 1,
                other => panic!("request {sent} (node :{}): {other:?}", n.port()),
            }
        }
        let banned_at = banned_at.expect("refused before maxretry failures");
        let upstream = settled_count(|| mock_401(&mock));
        eprintln!(
            "round-robin: {sent} requests, {failures} failures answered, {upstream} reached the upstream \
             (maxretry {MAXRETRY}); every node refused {:?} after the maxretry-th failure",
            banned_at.elapsed()
        );
        assert_eq!(upstream, failures, "401s the mock sent vs the client saw");
        assert!(
            (MAXRETRY..=MAXRETRY + 2).contains(&upstream),
            "{upstream} failures reached the upstream, want maxretry {MAXRETRY} to maxretry + 2"
        );
        // Every node refuses the address, on any location of the zone,
        // within 1 s of the maxretry-th failure.
        let deadline = banned_at + PROPAGATION;
        for (i, n) in nodes.iter().enumerate() {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                wait_until(left, || refuses(n, addr)),
                "node {} does not refuse {addr} within {PROPAGATION:?} of the ban\n{}",
                i + 1,
                n.log_tail()
            );
            assert!(api_banned(n, addr), "node {}: API says not banned", i + 1);
        }
        // The node that saw the maxretry-th failure banned it for the fleet.
        let by_fleet: Vec<String> = nodes
            .iter()
            .flat_map(|n| {
                lines_with(
                    &n.error_log(),
                    &[
                        &format!("authban: ban zone=fleet addr={addr} "),
                        " by=fleet",
                    ],
                )
            })
            .collect();
        assert!(
            !by_fleet.is_empty(),
            "no node logged a `by=fleet` ban of {addr}\n{}",
            nodes
                .iter()
                .map(Nginx::log_tail)
                .collect::<Vec<_>>()
                .join("\n")
        );
        let sent_total: u64 = nodes.iter().map(|n| sync_counter(n, "failures_sent")).sum();
        assert!(
            sent_total >= MAXRETRY as u64,
            "failures_sent summed over the nodes: {sent_total}"
        );
        // In Redis: the ban, ending with it; the failures, gone.
        let ttl = match redis.cmd(&["PTTL", &format!("authban:fleet:ban:{addr}")]) {
            Ok(Resp::Int(ms)) => ms,
            other => panic!("PTTL of the ban key: {other:?}"),
        };
        assert!(
            ttl > 3_590_000 && ttl <= 3_601_000,
            "ban key PTTL {ttl} ms, bantime 1h"
        );
        // (A failure that reached another node before the ban did counts
        // again; the ones up to the ban are gone.)
        let left = match redis.cmd(&["ZCARD", &format!("authban:fleet:fail:{addr}")]) {
            Ok(Resp::Int(n)) => n as usize,
            other => panic!("ZCARD of the failures key: {other:?}"),
        };
        assert!(
            left <= upstream - MAXRETRY,
            "{left} failures kept in Redis after the ban ({upstream} reached the upstream): {:?}",
            redis.cmd(&[
                "ZRANGE",
                &format!("authban:fleet:fail:{addr}"),
                "0",
                "-1",
                "WITHSCORES"
            ])
        );
        // Still refused after the attack (no flapping).
        for n in &nodes {
            assert_eq!(get_from(n.port(), ATTACK, addr).status(), Some(403));
        }
        assert_eq!(settled_count(|| mock_401(&mock)), upstream);
        assert_all_clean(&nodes);
    });
}

/// A ban through the API of node 1 is refused by nodes 2 and 3 within 1 s;
/// an unban through node 3 frees the address on nodes 1 and 2 within 1 s.
/// The sync counters say so; a zone without sync= has no `sync` field.
#[test]
fn api_ban_and_unban_reach_every_node() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let nodes = start_nodes(&mock, &redis.url(), 3);
        wait_connected(&nodes, true);
        let addr = "203.0.113.7";
        for (i, n) in nodes.iter().enumerate() {
            assert!(
                passes(n, addr),
                "node {} refuses {addr} before any ban",
                i + 1
            );
        }

        // The sync object, and no sync for zone `local` (no sync=).
        let s = sync_state(&nodes[0]);
        assert_eq!(
            s.keys(),
            [
                "url",
                "connected",
                "failures_sent",
                "bans_sent",
                "bans_received",
                "unbans_sent",
                "unbans_received",
                "errors",
                "failures_dropped",
                "records_refused",
                "records_skipped",
                "last_error"
            ],
            "{s:?}"
        );
        assert_eq!(s.str("url"), redis.shown_url());
        assert!(s.bool("connected"));
        assert_eq!(s.get("last_error").value(), &serde_json::Value::Null);
        for n in &nodes {
            let local = api_ok(n, "GET", "?zone=local");
            assert!(local.opt("sync").is_none(), "zone local: {local:?}");
            let list = api_ok(n, "GET", "");
            for z in list.arr("zones") {
                match z.str("name") {
                    "fleet" => assert!(z.opt("sync").is_some(), "{z:?}"),
                    "local" => assert!(z.opt("sync").is_none(), "{z:?}"),
                    other => panic!("unexpected zone {other}"),
                }
            }
        }
        let prom = api(&nodes[0], "GET", "?format=prometheus").text();
        assert!(
            prom.lines()
                .any(|l| l == "authban_sync_connected{zone=\"fleet\"} 1"),
            "{prom}"
        );
        assert!(
            !prom
                .lines()
                .any(|l| l.starts_with("authban_sync_") && l.contains("zone=\"local\"")),
            "{prom}"
        );

        // Ban on node 1.
        ban(&nodes[0], addr);
        let t0 = Instant::now();
        assert!(refuses(&nodes[0], addr), "node 1 itself");
        for i in [2, 3] {
            let left = PROPAGATION.saturating_sub(t0.elapsed());
            expect_refused(&nodes, i, addr, left, "API ban on node 1");
        }
        eprintln!(
            "API ban on node 1: refused everywhere after {:?}",
            t0.elapsed()
        );
        assert!(
            wait_until(Duration::from_secs(5), || sync_counter(
                &nodes[0],
                "bans_sent"
            ) == 1),
            "node 1 bans_sent: {:?}",
            sync_state(&nodes[0])
        );
        for i in [2, 3] {
            let n = &nodes[i - 1];
            assert!(
                wait_until(Duration::from_secs(5), || sync_counter(n, "bans_received")
                    == 1),
                "node {i} bans_received: {:?}",
                sync_state(n)
            );
            let got = lines_with(
                &n.error_log(),
                &[&format!("authban: ban zone=fleet addr={addr} "), " by=sync"],
            );
            assert_eq!(
                got.len(),
                1,
                "node {i}: ban received logged once\n{}",
                n.log_tail()
            );
            // The zone without sync= knows nothing of it.
            assert_eq!(get_from(n.port(), "/local", addr).status(), Some(200));
        }

        // Unban on node 3.
        unban(&nodes[2], addr);
        let t0 = Instant::now();
        assert!(passes(&nodes[2], addr), "node 3 itself");
        for i in [1, 2] {
            let left = PROPAGATION.saturating_sub(t0.elapsed());
            expect_passes(&nodes, i, addr, left, "API unban on node 3");
        }
        eprintln!(
            "API unban on node 3: free everywhere after {:?}",
            t0.elapsed()
        );
        assert!(
            wait_until(Duration::from_secs(5), || sync_counter(
                &nodes[2],
                "unbans_sent"
            ) == 1),
            "node 3 unbans_sent: {:?}",
            sync_state(&nodes[2])
        );
        for i in [1, 2] {
            let n = &nodes[i - 1];
            assert!(
                wait_until(Duration::from_secs(5), || sync_counter(
                    n,
                    "unbans_received"
                ) == 1),
                "node {i} unbans_received: {:?}",
                sync_state(n)
            );
            let want = format!("authban: unban zone=fleet addr={addr} reason=sync");
            assert_eq!(
                lines_with(&n.error_log(), &[&want]).len(),
                1,
                "node {i}\n{}",
                n.log_tail()
            );
        }
        for n in &nodes {
            assert!(sync_state(n).bool("connected"));
            assert_eq!(sync_counter(n, "errors"), 0, "{:?}", sync_state(n));
        }
        assert_all_clean(&nodes);
    });
}

/// Redis killed while an attack runs: no request fails, every node logs the
/// drop once and keeps banning locally; Redis restarted on the same port:
/// every node logs the recovery, and the bans made during the outage reach
/// the other nodes.
#[test]
fn redis_killed_mid_attack_then_restarted() {
    with_timeout(180, || {
        let mut redis = Redis::start();
        let mock = Mock::start();
        let nodes = start_nodes(&mock, &redis.url(), 3);
        wait_connected(&nodes, true);

        // The attack: round-robin over the nodes, a pool of attackers
        // failing, and a legitimate client that must always pass; about
        // 100 rounds a second.
        let ports: Vec<u16> = nodes.iter().map(Nginx::port).collect();
        let stop = Arc::new(AtomicBool::new(false));
        let attack = {
            let stop = Arc::clone(&stop);
            thread::spawn(move || {
                let mut seen: Vec<(u16, String, String, Option<u16>)> = Vec::new();
                let mut i = 0usize;
                while !stop.load(Ordering::Relaxed) {
                    let port = ports[i % ports.len()];
                    let attacker = format!("198.51.100.{}", 1 + i % 40);
                    let status = get_from(port, ATTACK, &attacker).status();
                    seen.push((port, attacker, ATTACK.to_string(), status));
                    let status = get_from(port, "/ok", "192.0.2.200").status();
                    seen.push((port, "192.0.2.200".into(), "/ok".into(), status));
                    i += 1;
                    // Paced: every request takes a loopback port for 60 s
                    // (TIME_WAIT), twice when proxied; a flood would run
                    // the host out of ephemeral ports.
                    thread::sleep(Duration::from_millis(10));
                }
                seen
            })
        };

        thread::sleep(Duration::from_millis(500));
        let offsets: Vec<usize> = nodes.iter().map(Nginx::error_log_len).collect();
        redis.stop();
        let killed = Instant::now();
        let down = down_line(&redis);
        for (i, n) in nodes.iter().enumerate() {
            assert!(
                n.wait_for_error_log(&down, Duration::from_secs(5)),
                "node {}: no {down:?} within 5 s of the kill\n{}",
                i + 1,
                n.log_tail()
            );
        }
        eprintln!("every node saw the link down after {:?}", killed.elapsed());
        wait_connected(&nodes, false);

        // A local ban by count on node 1, and one through node 2's API.
        let local = "203.0.113.50";
        fail(&nodes[0], local, MAXRETRY);
        assert!(
            refuses(&nodes[0], local),
            "node 1 does not ban locally\n{}",
            nodes[0].log_tail()
        );
        let manual = "203.0.113.60";
        ban(&nodes[1], manual);
        assert!(refuses(&nodes[1], manual));

        // Let the outage last through several reconnect attempts.
        thread::sleep(Duration::from_secs(3));
        stop.store(true, Ordering::Relaxed);
        let seen = attack.join().expect("attack thread");
        let bad: Vec<_> = seen
            .iter()
            .filter(|(_, who, path, status)| match status {
                Some(401 | 403) if path == ATTACK => false,
                Some(200) if who == "192.0.2.200" => false,
                _ => true,
            })
            .collect();
        assert!(
            bad.is_empty(),
            "{} of {} requests failed during the outage: {:?}",
            bad.len(),
            seen.len(),
            &bad[..bad.len().min(20)]
        );
        eprintln!("{} requests during the attack, none failed", seen.len());

        for (i, n) in nodes.iter().enumerate() {
            let s = sync_state(n);
            assert!(!s.bool("connected"), "node {}: {s:?}", i + 1);
            assert!(
                matches!(s.get("last_error").value(), serde_json::Value::String(e) if !e.is_empty()),
                "node {}: {s:?}",
                i + 1
            );
            let drops = lines_with(&n.error_log_since(offsets[i]), &[&down]);
            assert_eq!(
                drops.len(),
                1,
                "node {}: link down logged {drops:#?}",
                i + 1
            );
            assert!(drops[0].contains("[warn]"), "{drops:?}");
        }
        // Nobody else knows the outage's bans yet.
        assert!(passes(&nodes[1], local) && passes(&nodes[2], local));
        assert!(passes(&nodes[0], manual) && passes(&nodes[2], manual));

        // Redis back (empty, on the same port).
        let offsets: Vec<usize> = nodes.iter().map(Nginx::error_log_len).collect();
        redis.restart();
        let back = Instant::now();
        let up = up_line(&redis);
        for (i, n) in nodes.iter().enumerate() {
            assert!(
                wait_until(Duration::from_secs(5), || n
                    .error_log_since(offsets[i])
                    .contains(&up)),
                "node {}: no {up:?} within 5 s of the restart\n{}",
                i + 1,
                n.log_tail()
            );
        }
        let converge = Duration::from_secs(5);
        for i in [2, 3] {
            expect_refused(&nodes, i, local, converge, "local ban during the outage");
        }
        for i in [1, 3] {
            expect_refused(&nodes, i, manual, converge, "API ban during the outage");
        }
        eprintln!("converged {:?} after Redis came back", back.elapsed());
        wait_connected(&nodes, true);
        for (i, n) in nodes.iter().enumerate() {
            let log = n.error_log();
            assert_eq!(
                lines_with(&log, &[&down]).len(),
                1,
                "node {}: one drop, one down line",
                i + 1
            );
            let ups = lines_with(&n.error_log_since(offsets[i]), &[&up]);
            assert_eq!(ups.len(), 1, "node {}: {ups:#?}", i + 1);
            assert!(ups[0].contains("[notice]"), "{ups:?}");
        }
        // The outage's bans are in Redis now.
        let keys = redis.keys("authban:fleet:ban:*");
        for addr in [local, manual] {
            assert!(
                keys.contains(&format!("authban:fleet:ban:{addr}")),
                "{addr} not in Redis: {keys:?}"
            );
        }
        assert_all_clean(&nodes);
    });
}

/// A node restarted (fresh prefix, no state file) while the others hold
/// bans gets them from Redis on start: refused from its first request.
#[test]
fn restarted_node_loads_the_bans_from_redis() {
    with_timeout(150, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let mut nodes = start_nodes(&mock, &redis.url(), 3);
        wait_connected(&nodes, true);

        // A ban through the API, and one by the fleet's count.
        let manual = "192.0.2.41";
        ban(&nodes[0], manual);
        expect_refused(&nodes, 3, manual, PROPAGATION, "API ban");
        let counted = "192.0.2.42";
        let mut sent = 0;
        while !nodes.iter().all(|n| api_banned(n, counted)) {
            assert!(sent < 3 * MAXRETRY, "{counted} not banned everywhere");
            let n = &nodes[sent % 3];
            let status = get_from(n.port(), ATTACK, counted).status();
            assert!(matches!(status, Some(401 | 403)), "{status:?}");
            sent += 1;
        }

        // Node 3 stops; a ban made while it is away.
        nodes.pop().expect("node 3").stop();
        let while_away = "192.0.2.43";
        ban(&nodes[1], while_away);
        expect_refused(
            &nodes,
            1,
            while_away,
            PROPAGATION,
            "ban while node 3 is away",
        );

        // Node 3 again, in a fresh prefix: it knows every ban at once.
        let restarted = start_node(&mock, &redis.url());
        for addr in [manual, counted, while_away] {
            assert_eq!(
                ok_status(&restarted, addr),
                Some(403),
                "restarted node lets {addr} through\n{}",
                restarted.log_tail()
            );
        }
        for addr in [manual, counted, while_away] {
            assert!(api_banned(&restarted, addr), "{addr}");
        }
        assert!(passes(&restarted, "192.0.2.44"));
        nodes.push(restarted);
        wait_connected(&nodes, true);
        assert_all_clean(&nodes);
    });
}

/// Redis with a password: the right one works; a wrong one is logged as
/// refused with Redis's own error, shown in the API, and the node works
/// alone.
#[test]
fn redis_password_right_and_wrong() {
    with_timeout(120, || {
        let password = "fleet-s3cret";
        let redis = Redis::start_with_password(password);
        let mock = Mock::start();
        let good = redis.url();
        assert!(good.contains(password));
        let bad = good.replace(password, "not-the-password");
        let mut nodes = start_nodes(&mock, &good, 2);
        nodes.push(start_node(&mock, &bad));
        wait_connected(&nodes[..2], true);

        // The right password: a ban propagates.
        let addr = "198.51.100.90";
        ban(&nodes[0], addr);
        expect_refused(&nodes, 2, addr, PROPAGATION, "with the password");

        // The wrong one: refused, logged with Redis's answer, link down.
        let wrong = &nodes[2];
        let refused = format!(
            "authban: zone=fleet sync to {} refused: ",
            redis.shown_url()
        );
        assert!(
            wrong.wait_for_error_log(&refused, Duration::from_secs(5)),
            "no {refused:?}\n{}",
            wrong.log_tail()
        );
        let lines = lines_with(&wrong.error_log(), &[&refused]);
        assert!(
            lines[0].contains("WRONGPASS") || lines[0].contains("NOAUTH"),
            "Redis's error text missing: {lines:?}"
        );
        assert!(lines[0].contains("[error]"), "{lines:?}");
        eprintln!(
            "wrong password: {} refused line(s): {:?}",
            lines.len(),
            lines[0]
        );
        let s = sync_state(wrong);
        assert!(!s.bool("connected"), "{s:?}");
        assert!(
            matches!(s.get("last_error").value(), serde_json::Value::String(e) if !e.is_empty()),
            "{s:?}"
        );
        assert_eq!(s.str("url"), redis.shown_url());
        for n in &nodes {
            assert!(!n.error_log().contains("not-the-password"));
            assert!(!n.error_log().contains(password));
            assert_eq!(sync_state(n).str("url"), redis.shown_url());
        }
        // Reconnect attempts (every second) do not repeat the line.
        thread::sleep(Duration::from_millis(2500));
        let again = lines_with(&wrong.error_log(), &[&refused]);
        assert_eq!(again.len(), 1, "refused logged more than once: {again:#?}");
        assert!(!sync_state(wrong).bool("connected"));
        // Local-only: the fleet's ban is unknown there, its own bans work.
        assert!(
            passes(wrong, addr),
            "the node with the wrong password got a ban"
        );
        let local = "198.51.100.91";
        fail(wrong, local, MAXRETRY);
        assert!(refuses(wrong, local), "no local ban\n{}", wrong.log_tail());
        // ... and stay local.
        thread::sleep(Duration::from_millis(500));
        assert!(passes(&nodes[0], local) && passes(&nodes[1], local));
        assert_all_clean(&nodes);
    });
}

/// `nginx -t` refuses a bad sync= value and names it; good ones pass.
#[test]
fn bad_sync_values_are_refused_by_nginx_t() {
    with_timeout(60, || {
        for value in [
            "http://127.0.0.1:6379",
            "redis://",
            "redis://127.0.0.1:notaport",
            "redis://127.0.0.1:70000",
            "redis://127.0.0.1:6379/db",
            "127.0.0.1:6379",
            "",
        ] {
            let (ok, out) = nginx_test_config(&format!("authban_zone zone=z:1m sync={value};\n"));
            assert!(!ok, "sync={value:?} accepted:\n{out}");
            for want in [
                "[emerg]",
                "authban_zone",
                &format!("invalid sync \"{value}\""),
                "expected redis://",
            ] {
                assert!(out.contains(want), "sync={value:?}: no {want:?} in\n{out}");
            }
            assert!(!out.contains("panicked"), "{out}");
        }
        for value in [
            "redis://127.0.0.1:6379",
            "redis://127.0.0.1",
            "redis://[::1]:6380/2",
            "redis://:pw@127.0.0.1:6379/1",
            "redis://user:pw@localhost:6379",
        ] {
            let (ok, out) = nginx_test_config(&format!("authban_zone zone=z:1m sync={value};\n"));
            assert!(ok, "sync={value:?} refused:\n{out}");
        }
        // TLS and the key: what each needs, and files that cannot be read.
        let dir = std::env::temp_dir().join(format!("authban-bad-sync-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let short = dir.join("short.key");
        std::fs::write(&short, "too short\n").unwrap();
        for (params, want) in [
            (
                "sync=rediss://127.0.0.1".to_string(),
                "\"sync=rediss://\" needs \"sync_ca=\"".to_string(),
            ),
            (
                "sync=redis://127.0.0.1 sync_ca=/ca.pem".into(),
                "\"sync_ca=\" without \"sync=rediss://\"".into(),
            ),
            (
                "sync=rediss://127.0.0.1 sync_ca=/nonexistent/ca.pem".into(),
                "/nonexistent/ca.pem".into(),
            ),
            (
                "sync=redis://127.0.0.1 sync_key=/nonexistent/fleet.key".into(),
                "invalid sync_key \"/nonexistent/fleet.key\"".into(),
            ),
            (
                format!("sync=redis://127.0.0.1 sync_key={}", short.display()),
                "shorter than 16 bytes".into(),
            ),
            (
                "sync_key=/k".into(),
                "\"sync_key=\" without \"sync=\"".into(),
            ),
        ] {
            let (ok, out) = nginx_test_config(&format!("authban_zone zone=z:1m {params};\n"));
            assert!(!ok, "{params:?} accepted:\n{out}");
            assert!(
                out.contains("[emerg]") && out.contains(&want),
                "{params}: no {want:?} in\n{out}"
            );
            assert!(!out.contains("panicked"), "{out}");
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// The harness's redis-server: answers, stops, comes back on its port, and
/// asks for its password.
#[test]
fn redis_harness_starts_stops_and_restarts() {
    with_timeout(60, || {
        let mut redis = Redis::start();
        let port = redis.port();
        assert_eq!(redis.cmd(&["SET", "k", "v"]), Ok(Resp::Simple("OK".into())));
        assert_eq!(redis.cmd(&["GET", "k"]), Ok(Resp::Bulk(Some("v".into()))));
        assert_eq!(redis.keys("k*"), ["k"]);
        redis.stop();
        assert!(redis.cmd(&["PING"]).is_err());
        redis.restart();
        assert_eq!(redis.port(), port);
        assert_eq!(
            redis.cmd(&["GET", "k"]),
            Ok(Resp::Bulk(None)),
            "no persistence"
        );

        let locked = Redis::start_with_password("pw");
        assert_eq!(locked.cmd(&["PING"]), Ok(Resp::Simple("PONG".into())));
        assert_eq!(
            locked.url(),
            format!("redis://:pw@127.0.0.1:{}", locked.port())
        );
        let mut anon = std::net::TcpStream::connect(("127.0.0.1", locked.port())).unwrap();
        std::io::Write::write_all(&mut anon, b"PING\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = std::io::Read::read(&mut anon, &mut buf).unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("-NOAUTH"),
            "port {}: {:?}",
            locked.port(),
            String::from_utf8_lossy(&buf[..n])
        );
    });
}

/// One node of a fleet whose zone escalates repeat offenders quickly
/// (`bantime=1s increment=on factor=2`, maxretry 3).
fn escalating_conf(mock: &Mock, sync: &str) -> String {
    format!(
        r#"
    authban_zone zone=fleet:1m maxretry=3 findtime=10m bantime=1s increment=on factor=2 sync={sync};

    server {{
        listen 127.0.0.1:{{port}};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        location /client/api {{
            authban fleet;
            proxy_pass http://{mock};
        }}
    }}

    server {{
        listen 127.0.0.1:{{port2}};
        location = /authban {{
            authban_api;
            allow 127.0.0.1;
            deny all;
        }}
    }}
    "#,
        mock = mock.addr()
    )
}

/// The length of the ban zone `fleet` of node `n` holds for `addr`, if any.
fn ban_secs(n: &Nginx, addr: &str) -> Option<u64> {
    let reply = api(n, "GET", &format!("?zone=fleet&addr={addr}"));
    // 404 while the node does not know the address yet.
    if reply.status() != Some(200) {
        return None;
    }
    let j = Json::parse(&reply.text()).ok()?;
    j.bool("banned").then(|| j.u64("until") - j.u64("since"))
}

/// Escalation follows the address across nodes: banned once on node 1, the
/// address's next ban, made on node 2, is its second offence there and
/// lasts bantime * factor.
#[test]
fn escalation_follows_the_address_across_nodes() {
    with_timeout(60, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let conf = escalating_conf(&mock, &redis.url());
        let nodes: Vec<Nginx> = (0..2)
            .map(|_| Nginx::options().workers(2).start(&conf))
            .collect();
        wait_connected(&nodes, true);
        let addr = "198.51.100.77";

        // First offence, on node 1: 1 s, and node 2 holds the same ban.
        for _ in 0..3 {
            assert_eq!(get_from(nodes[0].port(), ATTACK, addr).status(), Some(401));
        }
        assert_eq!(ban_secs(&nodes[0], addr), Some(1));
        assert!(
            wait_until(PROPAGATION, || ban_secs(&nodes[1], addr) == Some(1)),
            "node 2 never held node 1's ban\n{}",
            nodes[1].log_tail()
        );

        // Once it ended, the second offence, on node 2: 2 s, everywhere.
        assert!(
            wait_until(Duration::from_secs(5), || {
                get_from(nodes[1].port(), ATTACK, addr).status() == Some(401)
            }),
            "the first ban never ended on node 2"
        );
        for _ in 0..2 {
            let status = get_from(nodes[1].port(), ATTACK, addr).status();
            assert_eq!(status, Some(401));
        }
        assert_eq!(
            get_from(nodes[1].port(), ATTACK, addr).status(),
            Some(403),
            "the second ban did not start at node 2's third failure\n{}",
            nodes[1].log_tail()
        );
        assert_eq!(
            ban_secs(&nodes[1], addr),
            Some(2),
            "{}",
            nodes[1].log_tail()
        );
        let log = nodes[1].error_log();
        assert_eq!(
            lines_with(
                &log,
                &["authban: ban zone=fleet", addr, "bantime=2s offence=2"]
            )
            .len(),
            1,
            "{}",
            nodes[1].log_tail()
        );
        assert!(
            wait_until(PROPAGATION, || ban_secs(&nodes[0], addr) == Some(2)),
            "node 1 never held the escalated ban\n{}",
            nodes[0].log_tail()
        );
        for n in &nodes {
            n.assert_clean();
        }
    });
}

// ---- what a node takes from Redis ---------------------------------------------
//
// Whoever can write to Redis, or sit between it and the nodes, must not be
// able to lock the fleet out, hang a node's start, or grow its memory; a
// dry-run node must not enforce anywhere.

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A dry-run location counts and logs "would ban", and tells the fleet
/// nothing: no other node bans, Redis holds no record and no count.
#[test]
fn a_dry_run_node_makes_no_other_node_ban() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let dry = node_conf(&mock, &redis.url()).replacen(
            "authban fleet;",
            "authban fleet;\n            authban_dry_run on;",
            1,
        );
        let canary = Nginx::options().workers(2).start(&dry);
        let other = start_node(&mock, &redis.url());
        let nodes = [canary, other];
        wait_connected(&nodes, true);
        let addr = "198.51.100.120";
        fail(&nodes[0], addr, 2 * MAXRETRY);
        assert!(
            nodes[0].wait_for_error_log("authban: would ban zone=fleet", Duration::from_secs(5)),
            "{}",
            nodes[0].log_tail()
        );
        thread::sleep(PROPAGATION);
        assert!(passes(&nodes[1], addr), "the other node bans {addr}");
        assert!(!api_banned(&nodes[1], addr));
        assert_eq!(redis.keys("authban:fleet:*"), Vec::<String>::new());
        assert_eq!(sync_counter(&nodes[0], "bans_sent"), 0);
        assert_eq!(sync_counter(&nodes[0], "failures_sent"), 0);
        assert_all_clean(&nodes);
    });
}

/// Forged bans are checked against the zone's own policy: all of IPv4
/// until 2106 is refused and counted; a flood of acceptable-looking ones
/// writes a few lines a second, not one per message.
#[test]
fn forged_bans_are_held_to_the_zone_policy_and_their_lines_limited() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let nodes = start_nodes(&mock, &redis.url(), 2);
        wait_connected(&nodes, true);
        let channel = "authban:fleet:events";
        for forged in [
            "ban 1 0.0.0.0/0 0 4294967295 1 255".to_string(),
            format!("ban 1 0.0.0.0/0 {0} {1} 1 1", now_secs(), now_secs() + 600),
            format!("ban 1 192.0.2.77 {0} {1} 1 1", now_secs(), u32::MAX),
            format!(
                "ban 1 192.0.2.78 {0} {1} 1 1",
                now_secs() + 3600,
                now_secs() + 7200
            ),
        ] {
            redis.cmd(&["PUBLISH", channel, &forged]).unwrap();
        }
        for (i, n) in nodes.iter().enumerate() {
            assert!(
                wait_until(Duration::from_secs(5), || sync_counter(
                    n,
                    "records_refused"
                ) == 4),
                "node {}: {:?}",
                i + 1,
                sync_state(n)
            );
            for addr in ["203.0.113.9", "192.0.2.77", "192.0.2.78"] {
                assert!(passes(n, addr), "node {} refuses {addr}", i + 1);
            }
            let refused = lines_with(&n.error_log(), &["refused a ban from the fleet"]);
            assert_eq!(refused.len(), 4, "{refused:#?}");
            assert!(refused[0].contains("ends later than"), "{refused:#?}");
            assert!(refused[1].contains("wider than"), "{refused:#?}");
            assert!(refused[3].contains("starts in the future"), "{refused:#?}");
        }

        // 5,000 bans another node could have made, in one burst.
        let before: Vec<usize> = nodes.iter().map(Nginx::error_log_len).collect();
        let script = "for i = 0, 4999 do \
             redis.call('PUBLISH', KEYS[1], string.format('ban 1 10.%d.%d.1 %s %s 1 1', \
             math.floor(i / 256), i % 256, ARGV[1], ARGV[2])) end return 1";
        let (since, until) = (now_secs().to_string(), (now_secs() + 600).to_string());
        redis
            .cmd(&["EVAL", script, "1", channel, &since, &until])
            .unwrap();
        for (i, n) in nodes.iter().enumerate() {
            assert!(
                wait_until(Duration::from_secs(20), || sync_counter(n, "bans_received")
                    >= 5_004),
                "node {}: {:?}",
                i + 1,
                sync_state(n)
            );
            assert!(refuses(n, "10.3.7.1"), "node {}", i + 1);
            // One more line after a quiet second carries the summary.
            thread::sleep(Duration::from_millis(1100));
            redis
                .cmd(&[
                    "PUBLISH",
                    channel,
                    &format!("ban 1 10.99.0.1 {since} {until} 1 1"),
                ])
                .unwrap();
            assert!(
                n.wait_for_error_log("more \"by=sync\" lines in the last", Duration::from_secs(5))
            );
            let log = n.error_log_since(before[i]);
            let lines = lines_with(&log, &["by=sync"]).len();
            assert!(lines < 200, "node {}: {lines} by=sync lines", i + 1);
            assert!(log.len() < 100_000, "node {}: {} bytes", i + 1, log.len());
        }
        assert_all_clean(&nodes);
    });
}

/// A record no ban could be (17 MB) is skipped by every load, counted,
/// and breaks nothing: the other records load, the link stays up, no
/// "is down" line.
#[test]
fn an_oversized_record_is_skipped_not_fatal() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let until = now_secs() + 3600;
        let huge = "x".repeat(17 << 20);
        let score = until.to_string();
        redis
            .cmd(&["SET", "authban:fleet:ban:1.2.3.7", &huge])
            .unwrap();
        let good = format!("{} {until} 10 1", now_secs());
        redis
            .cmd(&["SET", "authban:fleet:ban:198.51.100.130", &good])
            .unwrap();
        for key in ["1.2.3.7", "198.51.100.130"] {
            redis
                .cmd(&["ZADD", "authban:fleet:index", &score, key])
                .unwrap();
        }
        let n = start_node(&mock, &redis.url());
        wait_connected(std::slice::from_ref(&n), true);
        assert!(refuses(&n, "198.51.100.130"), "{}", n.log_tail());
        assert!(passes(&n, "1.2.3.7"));
        // The master's load and worker 0's each skipped it.
        assert!(
            sync_counter(&n, "records_skipped") >= 2,
            "{:?}",
            sync_state(&n)
        );
        assert!(
            n.error_log().contains("loaded 1 bans from"),
            "{}",
            n.log_tail()
        );
        thread::sleep(Duration::from_secs(3));
        assert!(sync_state(&n).bool("connected"));
        assert!(!n.error_log().contains("is down"), "{}", n.log_tail());
        n.assert_clean();
    });
}

/// A Redis that trickles (a byte every 0.4 s), and one whose load never
/// ends: nginx starts within about a second, and a reload too; the link is
/// closed when its oldest owed reply is 2 s late, whatever trickles in;
/// failures not sent are counted.
#[test]
fn a_trickling_or_endless_redis_holds_nothing() {
    with_timeout(120, || {
        let mock = Mock::start();
        let trickle = FakeRedis::start(Duration::from_millis(400), Arc::new(redis_handshake));
        let t0 = Instant::now();
        let n = start_node(&mock, &trickle.url());
        let started = t0.elapsed();
        assert!(started < Duration::from_secs(3), "start took {started:?}");
        assert!(n.wait_for_error_log(
            "authban: zone=fleet could not load bans from",
            Duration::from_secs(1)
        ));
        // The handshake's first reply trickles in, but never completes
        // within 2 s: the link is dropped, once logged, and failures are
        // counted as dropped.
        let down = format!(
            "authban: zone=fleet sync link to {} is down (no answer to the handshake",
            trickle.shown_url()
        );
        assert!(
            n.wait_for_error_log(&down, Duration::from_secs(6)),
            "{}",
            n.log_tail()
        );
        fail(&n, "198.51.100.140", 3);
        assert!(
            sync_counter(&n, "failures_dropped") >= 3,
            "{:?}",
            sync_state(&n)
        );
        assert!(!sync_state(&n).bool("connected"));
        drop(n);

        // A handshake that succeeds, then every reply trickled (a byte
        // every 0.3 s): the bytes do not keep the link alive; it is closed
        // when its oldest owed reply is 2 s late.
        let slow = FakeRedis::start_paced_after(
            1,
            Duration::from_millis(300),
            Arc::new(|args: &[String]| match args[0].as_str() {
                "EVAL" => Some(b"*3\r\n:0\r\n:0\r\n*0\r\n".to_vec()),
                "EVALSHA" => Some(b":1\r\n".to_vec()),
                _ => redis_handshake(args),
            }),
        );
        let n = start_node(&mock, &slow.url());
        let late = format!(
            "authban: zone=fleet sync link to {} is down (no reply from Redis within 2s)",
            slow.shown_url()
        );
        assert!(
            n.wait_for_error_log(&late, Duration::from_secs(6)),
            "{}",
            n.log_tail()
        );
        drop(n);

        // SCAN answered "more" forever; the load's pages full forever.
        let endless = FakeRedis::start(
            Duration::ZERO,
            Arc::new(|args: &[String]| match args[0].as_str() {
                "SCAN" => Some(b"*2\r\n$1\r\n7\r\n*0\r\n".to_vec()),
                "EVAL" => Some(format!("*3\r\n:0\r\n:{}\r\n*0\r\n", args[6]).into_bytes()),
                _ => redis_handshake(args),
            }),
        );
        let t0 = Instant::now();
        let mut n = start_node(&mock, &endless.url());
        let started = t0.elapsed();
        assert!(started < Duration::from_secs(3), "start took {started:?}");
        // A bigger zone is a new zone: the master loads again, as bounded.
        let bigger = node_conf(&mock, &endless.url()).replace("zone=fleet:1m", "zone=fleet:2m");
        let t0 = Instant::now();
        n.reload_with(&bigger);
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "reload took {:?}",
            t0.elapsed()
        );
        // Worker 0's load ends too (no more pages than the zone holds).
        wait_connected(std::slice::from_ref(&n), true);
        n.assert_clean();
    });
}

/// `sync_key=FILE`: nodes sharing the key hear each other; an unsigned
/// message or record (anyone who can write to Redis) is refused and
/// counted, and so is a node signing with another key.
#[test]
fn with_a_sync_key_only_signed_bans_are_believed() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let dir = std::env::temp_dir().join(format!("authban-sync-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (key, other_key) = (dir.join("fleet.key"), dir.join("other.key"));
        std::fs::write(&key, "correct horse battery staple\n").unwrap();
        std::fs::write(&other_key, "another key, as long as that\n").unwrap();
        let conf = |file: &std::path::Path| {
            node_conf(&mock, &redis.url()).replacen(
                &format!("sync={}", redis.url()),
                &format!("sync={} sync_key={}", redis.url(), file.display()),
                1,
            )
        };
        // An unsigned record left in Redis before the nodes start.
        let until = now_secs() + 3600;
        redis
            .cmd(&[
                "SET",
                "authban:fleet:ban:198.51.100.150",
                &format!("{} {until} 9 1", now_secs()),
            ])
            .unwrap();
        redis
            .cmd(&[
                "ZADD",
                "authban:fleet:index",
                &until.to_string(),
                "198.51.100.150",
            ])
            .unwrap();
        let nodes: Vec<Nginx> = [&key, &key, &other_key]
            .iter()
            .map(|k| Nginx::options().workers(2).start(&conf(k)))
            .collect();
        wait_connected(&nodes, true);
        for n in &nodes {
            assert!(passes(n, "198.51.100.150"), "{}", n.log_tail());
            assert!(
                sync_counter(n, "records_refused") >= 1,
                "{:?}",
                sync_state(n)
            );
        }

        // Signed by node 1: node 2 applies it, node 3 (another key) refuses.
        let addr = "198.51.100.151";
        let refused_before = sync_counter(&nodes[2], "records_refused");
        ban(&nodes[0], addr);
        expect_refused(&nodes, 2, addr, PROPAGATION, "signed ban");
        assert!(
            wait_until(Duration::from_secs(5), || sync_counter(
                &nodes[2],
                "records_refused"
            ) > refused_before
                || refuses(&nodes[2], addr)),
            "node 3 neither refused the message nor applied it"
        );
        assert!(
            passes(&nodes[2], addr),
            "node 3 applied a ban signed with another key"
        );

        // Forged on the channel: a ban, and an unban of the signed ban.
        let before = sync_counter(&nodes[1], "records_refused");
        let forged = format!(
            "ban 1 198.51.100.152 {} {} 1 1",
            now_secs(),
            now_secs() + 600
        );
        redis
            .cmd(&["PUBLISH", "authban:fleet:events", &forged])
            .unwrap();
        let unban = format!("unban 0000000000000001 {addr}");
        redis
            .cmd(&["PUBLISH", "authban:fleet:events", &unban])
            .unwrap();
        assert!(
            wait_until(Duration::from_secs(5), || sync_counter(
                &nodes[1],
                "records_refused"
            ) >= before + 2),
            "{:?}",
            sync_state(&nodes[1])
        );
        assert!(passes(&nodes[1], "198.51.100.152"));
        assert!(refuses(&nodes[1], addr), "a forged unban lifted the ban");
        assert!(nodes[1]
            .error_log()
            .contains("bans or unbans from the fleet: bad or missing signature"));
        for n in &nodes {
            n.assert_clean();
        }
        std::fs::remove_dir_all(&dir).unwrap();
    });
}

/// A sync host whose name does not resolve when nginx starts: a warning,
/// not a failed start; the zone runs alone, and with a `resolver` the link
/// finds Redis once the name resolves.
#[test]
fn a_sync_host_not_found_at_start_is_found_later_by_the_resolver() {
    with_timeout(120, || {
        let redis = Redis::start();
        let mock = Mock::start();
        let dns = FakeDns::start();
        let name = format!("redis-{}.authban.invalid", std::process::id());
        let url = format!("redis://{name}:{}", redis.port());
        let conf = format!(
            "resolver 127.0.0.1:{} valid=1s ipv6=off;\n{}",
            dns.port(),
            node_conf(&mock, &url)
        );
        let (ok, output) = Nginx::options().test_config(&conf);
        assert!(ok, "{output}");
        assert!(
            output.contains("[warn]") && output.contains("host not found in sync"),
            "{output}"
        );
        let found = Nginx::options().workers(2).start(&conf);
        let alone = start_node(&mock, &url);
        let other = start_node(&mock, &redis.url());
        for n in [&found, &alone] {
            assert!(passes(n, "198.51.100.160"), "{}", n.log_tail());
            assert!(!sync_state(n).bool("connected"));
        }
        thread::sleep(Duration::from_secs(2));
        assert!(dns.queries() > 0, "the resolver was never asked");
        assert!(!sync_state(&found).bool("connected"));
        dns.answer();
        wait_connected(std::slice::from_ref(&found), true);
        let addr = "198.51.100.161";
        ban(&other, addr);
        let nodes = [found, other];
        expect_refused(&nodes, 1, addr, PROPAGATION, "after the name resolved");
        // Without a resolver the name is not looked up again: alone, and
        // saying why.
        assert!(!sync_state(&alone).bool("connected"));
        assert!(passes(&alone, addr));
        assert!(
            alone.error_log().contains("no resolver defined"),
            "{}",
            alone.log_tail()
        );
        for n in nodes.iter().chain([&alone]) {
            n.assert_clean();
        }
    });
}

/// `sync=rediss://`: the links and the master's load speak TLS, and accept
/// a Redis only if its certificate verifies against `sync_ca=` and names
/// the host; a client certificate is presented when Redis asks for one.
#[test]
fn rediss_verifies_the_server_and_carries_the_fleet() {
    with_timeout(120, || {
        let certs = Certs::make();
        let redis = Redis::start_tls(
            &certs.path("server.crt"),
            &certs.path("server.key"),
            &certs.path("ca.crt"),
            true,
        );
        let mock = Mock::start();
        let conf = |host: &str, ca: &str, client_cert: bool| {
            let url = redis.tls_url(host);
            let mut params = format!("sync={url} sync_ca={}", certs.path(ca).display());
            if client_cert {
                params += &format!(
                    " sync_cert={} sync_cert_key={}",
                    certs.path("client.crt").display(),
                    certs.path("client.key").display()
                );
            }
            node_conf(&mock, &url).replacen(&format!("sync={url}"), &params, 1)
        };
        // A ban already in Redis: the master's load reads it over TLS.
        let (seeded, until) = ("198.51.100.170", now_secs() + 3600);
        let record = format!("{} {until} 10 1", now_secs());
        redis
            .cmd(&["SET", &format!("authban:fleet:ban:{seeded}"), &record])
            .unwrap();
        redis
            .cmd(&["ZADD", "authban:fleet:index", &until.to_string(), seeded])
            .unwrap();
        let nodes: Vec<Nginx> = (0..2)
            .map(|_| {
                Nginx::options()
                    .workers(2)
                    .start(&conf("127.0.0.1", "ca.crt", true))
            })
            .collect();
        for n in &nodes {
            let loaded = format!("loaded 1 bans from {}/0", redis.tls_url("127.0.0.1"));
            assert!(n.error_log().contains(&loaded), "{}", n.log_tail());
            assert!(refuses(n, seeded));
        }
        wait_connected(&nodes, true);
        let addr = "198.51.100.171";
        ban(&nodes[0], addr);
        expect_refused(&nodes, 2, addr, PROPAGATION, "over TLS");

        // Another CA, an address the certificate does not name, no client
        // certificate: never connected, and the first two say why.
        for (host, ca, client_cert, why) in [
            (
                "127.0.0.1",
                "other-ca.crt",
                true,
                Some("certificate verify failed"),
            ),
            (
                "127.0.0.2",
                "ca.crt",
                true,
                Some("certificate verify failed"),
            ),
            ("127.0.0.1", "ca.crt", false, None),
        ] {
            let n = Nginx::options()
                .workers(2)
                .start(&conf(host, ca, client_cert));
            if let Some(why) = why {
                let refused = format!(
                    "authban: zone=fleet sync to {}/0 refused: {why}",
                    redis.tls_url(host)
                );
                assert!(
                    n.wait_for_error_log(&refused, Duration::from_secs(5)),
                    "{host} {ca}: no {refused:?}\n{}",
                    n.log_tail()
                );
            }
            thread::sleep(Duration::from_secs(2));
            let s = sync_state(&n);
            assert!(!s.bool("connected"), "{host} {ca} {client_cert}: {s:?}");
            assert!(
                passes(&n, addr),
                "{host} {ca} {client_cert}: got the fleet's ban"
            );
            n.assert_clean();
        }
        for n in &nodes {
            n.assert_clean();
        }
    });
}
