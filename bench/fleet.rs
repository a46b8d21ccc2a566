//! Part 6: a fleet of three nginx nodes sharing one zone through Redis
//! (`authban_zone ... sync=redis://...`, issue 12).
//!
//! One `redis-server` ([`Redis`]: Debian's, a free loopback port, no
//! persistence, killed by PID), the mock CloudStack as the one upstream,
//! and three nginx nodes (2 workers each, own prefix and port) with the
//! same zone and `sync=` to that Redis:
//!
//! - propagation: 100 bans made through node 1's API; two threads poll
//!   nodes 2 and 3 over keep-alive from the banned address, back to back,
//!   from just before the POST until each node answers 403;
//! - brute force: bad-signature API calls from one address spread
//!   round-robin over the three nodes, over 1 and over 16 connections; the
//!   failures that reached the upstream (the mock's own 401 count);
//! - request path: callgrind instructions per passing request with `sync=`
//!   (Redis up, link up) and without, in single-process nginx as in part 1;
//!   and per failing request, which is what `sync=` adds work to.

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crate::api::{pinned_nginx, REALIP};
use crate::callgrind;
use crate::common::{get, http, wait_until, Conn, Json, Mock, Nginx, Redis, Resp};
use crate::report::Section;
use crate::stats::{millis, percent, thousands, Samples};
use crate::wrk::{self, Load};
use crate::Config;

const ZONE: &str = "fleet";
const MAXRETRY: u64 = 25;
const PATH: &str = "/client/api?command=listZones&apiKey=x&signature=bad";
/// Bans of the propagation run.
const BANS: usize = 100;
/// A node that has not refused this long after the ban counts as never.
const PROPAGATION_LIMIT: Duration = Duration::from_secs(2);
/// Idle connections open in the callgrind runs of the "idle" sides.
const IDLE: usize = 32;

/// A node's configuration; without `redis`, the same zone without `sync=`.
fn node_block(mock: &Mock, redis: Option<&Redis>) -> String {
    let sync = redis.map_or(String::new(), |r| format!(" sync={}", r.url()));
    format!(
        "authban_zone zone={ZONE}:1m maxretry={MAXRETRY} findtime=10m bantime=1h{sync};
    {REALIP}
    upstream cloudstack {{
        server {};
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /client/api {{
            authban {ZONE};
            authban_fail_status 401 531;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_pass http://cloudstack;
        }}
        # Probes: 200 while the client is not banned, 403 once it is.
        location = /probe {{ authban {ZONE}; empty_gif; }}
        location = /authban {{ authban_api; }}
    }}",
        mock.addr()
    )
}

/// The zone's `sync` object from `GET /authban?zone=NAME` (panics if the
/// zone has none).
fn sync_state(port: u16, zone: &str) -> Json {
    let reply = get(port, &format!("/authban?zone={zone}&limit=1"));
    assert_eq!(reply.status(), Some(200), "GET /authban: {reply:?}");
    let json = Json::parse(&reply.text())
        .unwrap_or_else(|e| panic!("GET /authban: {e}: {}", reply.text()));
    json.opt("sync")
        .unwrap_or_else(|| panic!("zone {zone} has no \"sync\" field: {}", reply.text()))
        .clone()
}

fn wait_connected(node: &Nginx) {
    let ok = wait_until(Duration::from_secs(10), || {
        sync_state(node.port(), ZONE).bool("connected")
    });
    assert!(
        ok,
        "node on port {} not connected to Redis after 10 s: {:?}\n{}",
        node.port(),
        sync_state(node.port(), ZONE).value(),
        node.diagnostics()
    );
}

/// `sync` counters of a node, for the notes.
fn counters(node: &Nginx) -> String {
    let s = sync_state(node.port(), ZONE);
    let n = |k: &str| s.opt(k).map_or(0, Json::as_u64);
    format!(
        "failures_sent {}, bans_sent {}, bans_received {}, errors {}",
        n("failures_sent"),
        n("bans_sent"),
        n("bans_received"),
        n("errors")
    )
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("6. Fleet (sync through Redis)");
    let redis = Redis::start();
    let mock = Mock::start();
    let start = |block: &str| -> Vec<Nginx> {
        (0..3)
            .map(|_| {
                Nginx::options()
                    .workers(2)
                    .error_log_level("notice")
                    .start(block)
            })
            .collect()
    };
    let nodes = start(&node_block(&mock, Some(&redis)));
    for node in &nodes {
        wait_connected(node);
    }
    let ports: Vec<u16> = nodes.iter().map(Nginx::port).collect();

    propagation(&mut s, &ports);
    let alone = start(&node_block(&mock, None));
    let alone_ports: Vec<u16> = alone.iter().map(Nginx::port).collect();
    brute_force(cfg, &mut s, &ports, &alone_ports, &mock);
    drop(alone);
    let key_count = redis.keys(&format!("authban:{ZONE}:*")).len();
    let links: Vec<String> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| format!("node {}: {}", i + 1, counters(n)))
        .collect();
    s.note(format!(
        "Three nginx nodes (2 workers each, not pinned), one zone `{ZONE}:1m \
         maxretry={MAXRETRY} findtime=10m bantime=1h sync={}` each, one local \
         redis-server ({}, `--save '' --appendonly no`), the mock CloudStack as the one \
         upstream; everything on loopback on the same 2 cores. Link counters after the \
         runs (`sync` in `GET /authban`): {}. Keys in Redis afterwards: {key_count}.",
        redis.url(),
        redis_version(&redis),
        links.join("; ")
    ));
    for (i, node) in nodes.iter().enumerate() {
        let log = node.error_log();
        for bad in [
            "[alert]",
            "[crit]",
            "[emerg]",
            "panicked",
            "exited on signal",
        ] {
            if log.contains(bad) {
                s.note(format!("node {}: its error log has {bad:?}.", i + 1));
            }
        }
    }
    drop(nodes);
    drop(mock);

    store_memory(cfg, &mut s, &redis);
    instructions(cfg, &mut s, &redis);
    s
}

/// Zone of the memory runs: large enough that the node forgets none of the
/// flood's addresses.
const FLOOD_ZONE: &str = "flood";
/// Addresses of the run that brings each to maxretry - 1 failures.
const NEAR_BAN: u64 = 2_000;
/// Bans of the per-ban run.
const MEMORY_BANS: u64 = 5_000;

/// `INFO memory` `used_memory` of the store, in bytes.
fn used_memory(redis: &Redis) -> f64 {
    redis
        .info("memory", "used_memory")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("INFO memory: no used_memory"))
}

/// Keys of the flood zone in Redis: (addresses counted, bans).
fn flood_keys(redis: &Redis) -> (u64, u64) {
    let n = |what: &str| redis.keys(&format!("authban:{FLOOD_ZONE}:{what}:*")).len() as u64;
    (n("fail"), n("ban"))
}

/// Waits until the store's key count and used memory hold still for
/// 500 ms (every command the node had sent is done: a failure added to an
/// existing count adds no key), at most 10 s; then 3 s more, by which Redis
/// has freed the query buffers of clients idle for 2 s and finished
/// rehashing a keyspace table that grew (until then it holds the old table
/// and the new one, up to 24 bytes a key more).
fn settle(redis: &Redis) {
    settle_commands(redis);
    thread::sleep(Duration::from_secs(3));
}

fn settle_commands(redis: &Redis) {
    let state = || match redis.cmd(&["DBSIZE"]) {
        Ok(Resp::Int(n)) => (n, used_memory(redis)),
        other => panic!("DBSIZE: {other:?}"),
    };
    let until = Instant::now() + Duration::from_secs(10);
    let mut last = state();
    while Instant::now() < until {
        thread::sleep(Duration::from_millis(500));
        let now = state();
        if now == last {
            return;
        }
        last = now;
    }
}

/// `requests` GETs of `/fail` per address, `addrs` addresses, over 16
/// keep-alive clients; returns the statuses seen.
fn fail_each(port: u16, addrs: &[String], requests: u64) -> BTreeMap<u16, u64> {
    let chunks: Vec<Vec<String>> = addrs
        .chunks(addrs.len().div_ceil(16))
        .map(<[String]>::to_vec)
        .collect();
    let threads: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            thread::spawn(move || {
                let mut conn = Conn::open(port);
                let mut statuses = BTreeMap::new();
                for _ in 0..requests {
                    for addr in &chunk {
                        if conn.is_closed() {
                            conn = Conn::open(port);
                        }
                        let status = conn.get_from("/fail", addr).status().unwrap_or(0);
                        *statuses.entry(status).or_insert(0) += 1;
                    }
                }
                statuses
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for t in threads {
        for (k, v) in t.join().expect("fail thread") {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    statuses
}

/// What the store holds per address under a flood, per address at
/// maxretry - 1 failures, and per ban; and what the node's link dropped.
fn store_memory(cfg: &Config, s: &mut Section, redis: &Redis) {
    assert_eq!(
        redis.cmd(&["FLUSHALL"]),
        Ok(Resp::Simple("OK".into())),
        "FLUSHALL"
    );
    let block = format!(
        "authban_zone zone={FLOOD_ZONE}:64m maxretry={MAXRETRY} findtime=10m bantime=1h sync={};
    {REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /fail {{
            authban {FLOOD_ZONE};
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
        }}
        location = /authban {{ authban_api; }}
    }}",
        redis.url()
    );
    let node = Nginx::options()
        .workers(2)
        .error_log_level("notice")
        .start(&block);
    let ok = wait_until(Duration::from_secs(10), || {
        sync_state(node.port(), FLOOD_ZONE).bool("connected")
    });
    assert!(
        ok,
        "flood node not connected to Redis: {}",
        node.diagnostics()
    );
    let port = node.port();
    let base = used_memory(redis);

    // 1. The flood: wrk, 32 connections, every request from a new address.
    let secs = if cfg.quick { 2 } else { 5 };
    let t = wrk::run(&Load::new(format!("http://127.0.0.1:{port}/fail"), secs).addresses(0));
    settle(redis);
    let flooded = used_memory(redis);
    let (counted, banned) = flood_keys(redis);
    let sync = sync_state(port, FLOOD_ZONE);
    let n = |k: &str| sync.opt(k).map_or(0, Json::as_u64);
    let (sent, dropped, errors) = (n("failures_sent"), n("failures_dropped"), n("errors"));
    let per_address = (flooded - base) / counted.max(1) as f64;
    s.info(
        "store memory per address counted, flood of distinct addresses (1 failure each)",
        format!(
            "{per_address:.0} bytes ({} addresses, used_memory +{:.1} MB)",
            thousands(counted as f64),
            (flooded - base) / 1e6
        ),
    );
    s.info(
        "same flood: failures sent to Redis / dropped by the link (failures_dropped)",
        format!("{} / {}", thousands(sent as f64), thousands(dropped as f64)),
    );

    // 2. Addresses at maxretry - 1 failures each: the largest a count gets.
    let near: Vec<String> = (0..NEAR_BAN)
        .map(|i| format!("172.16.{}.{}", i / 250, i % 250 + 1))
        .collect();
    let dropped_before = sync_state(port, FLOOD_ZONE)
        .opt("failures_dropped")
        .map_or(0, Json::as_u64);
    let statuses = fail_each(port, &near, MAXRETRY - 1);
    settle(redis);
    let near_after = used_memory(redis);
    let (counted_near, banned_near) = flood_keys(redis);
    let dropped_near = sync_state(port, FLOOD_ZONE)
        .opt("failures_dropped")
        .map_or(0, Json::as_u64)
        - dropped_before;
    // Failures the store holds for these addresses (the link may have
    // dropped some), and their memory as `used_memory` saw it.
    let members = match redis.cmd(&[
        "EVAL",
        "local n = 0 for _, k in ipairs(redis.call('KEYS', ARGV[1])) do \
         n = n + redis.call('ZCARD', k) end return n",
        "0",
        &format!("authban:{FLOOD_ZONE}:fail:172.16.*"),
    ]) {
        Ok(Resp::Int(n)) => n as f64,
        other => panic!("EVAL (failures held): {other:?}"),
    };
    let mean = members / NEAR_BAN as f64;
    let held = (near_after - flooded) / NEAR_BAN as f64;
    // The cost of a failure, from the counts themselves: `MEMORY USAGE` (the
    // key, its value and its entries) of counts of maxretry - 1 failures
    // and of 1 (the flood's), 200 of each, the difference over
    // maxretry - 2; whatever the link dropped, and whatever Redis's tables
    // did meanwhile.
    let usage = |pattern: &str, failures: u64| -> Samples {
        let mut x = Samples::new();
        for key in redis.keys(pattern) {
            if x.len() >= 200 {
                break;
            }
            if redis.cmd(&["ZCARD", &key]) != Ok(Resp::Int(failures as i64)) {
                continue;
            }
            if let Ok(Resp::Int(bytes)) = redis.cmd(&["MEMORY", "USAGE", &key, "SAMPLES", "0"]) {
                x.push(bytes as f64);
            }
        }
        x
    };
    let one = usage(&format!("authban:{FLOOD_ZONE}:fail:10.*"), 1);
    let full = usage(&format!("authban:{FLOOD_ZONE}:fail:172.16.*"), MAXRETRY - 1);
    let per_failure = if one.len() > 0 && full.len() > 0 {
        (full.median() - one.median()) / (MAXRETRY - 2) as f64
    } else if mean > 1.0 {
        (held - per_address) / (mean - 1.0)
    } else {
        0.0
    };
    let per_near = per_address + (MAXRETRY - 2) as f64 * per_failure;
    let usage_shown = |x: &Samples| {
        if x.len() == 0 {
            "none".to_string()
        } else {
            format!("{:.0} bytes ({} keys)", x.median(), x.len())
        }
    };
    s.info(
        &format!(
            "store memory per address at maxretry - 1 = {} failures",
            MAXRETRY - 1
        ),
        format!("{per_near:.0} bytes ({per_failure:.1} bytes a failure beyond the first)",),
    );

    // 3. Bans through the API: a record and an index member each.
    let mut api = Conn::open(port);
    for i in 0..MEMORY_BANS {
        let path = format!(
            "/authban?zone={FLOOD_ZONE}&addr=198.19.{}.{}&time=1h",
            i / 250,
            i % 250 + 1
        );
        if api.is_closed() {
            api = Conn::open(port);
        }
        let reply = api.request("POST", &path, &[], Some(b""));
        assert_eq!(reply.status(), Some(200), "POST {path}: {reply:?}");
    }
    settle(redis);
    let banned_after = used_memory(redis);
    let (_, bans) = flood_keys(redis);
    let index = match redis.cmd(&["ZCARD", &format!("authban:{FLOOD_ZONE}:index")]) {
        Ok(Resp::Int(n)) => n,
        other => panic!("ZCARD: {other:?}"),
    };
    let per_ban = (banned_after - near_after) / MEMORY_BANS as f64;
    s.info(
        "store memory per ban (record + index member)",
        format!(
            "{per_ban:.0} bytes ({} bans)",
            thousands(MEMORY_BANS as f64)
        ),
    );
    let sync = sync_state(port, FLOOD_ZONE);
    let dropped_end = sync.opt("failures_dropped").map_or(0, Json::as_u64);
    // maxmemory for 100,000 addresses at maxretry - 1 and 10,000 bans, doubled.
    let sized = 2.0 * (100_000.0 * per_near + 10_000.0 * per_ban) / (1 << 20) as f64;
    s.note(format!(
        "Store memory: one more node (2 workers) with zone `{FLOOD_ZONE}:64m maxretry={MAXRETRY} \
         findtime=10m bantime=1h sync=` to the same redis-server, emptied first \
         (`FLUSHALL`); `INFO memory` `used_memory` before and after each run, once the \
         store's key count and used memory have held still for 500 ms, and 3 s more \
         (Redis frees idle clients' query buffers and ends a rehash of its keyspace \
         tables by then). Flood: wrk, 32 connections, {secs} s \
         of `GET /fail` (auth_basic's 401) each from a new address (IPv4 and IPv6 in \
         turn, `X-Forwarded-For`), {} answered of {} sent ({:.0}/s, {} statuses >= 400); {} addresses \
         counted in Redis (`authban:{FLOOD_ZONE}:fail:*`, {banned} bans), {per_address:.0} \
         bytes each (everything Redis allocated, its dictionaries and expiry entries \
         included, over the addresses). The node's link: failures_sent {sent}, \
         failures_dropped {dropped}, errors {errors}: a worker's link sends a failure \
         only while it owes Redis fewer than 4,096 replies, so failures that come faster \
         than Redis answers them (one `EVALSHA` each; here Redis, nginx and wrk share the \
         2 cores) are counted by the node alone, and in failures_dropped. Then {} \
         addresses with {} \
         failures each (16 keep-alive clients, one request at a time each; statuses \
         {statuses:?}; failures_dropped +{dropped_near}): the store held {members:.0} of \
         their failures ({mean:.1} an address; {counted_near} counts, {banned_near} bans in \
         Redis), `used_memory` +{held:.0} bytes an address. `MEMORY USAGE KEY SAMPLES 0` \
         of a count (median): {} with 1 failure, {} with {}; so {per_failure:.1} bytes a \
         failure beyond the first, and {per_near:.0} bytes for an address at {} failures \
         (the flood's figure plus {} such failures). Then {} bans through \
         the API (`time=1h`): {per_ban:.0} bytes each (the record \
         `authban:{FLOOD_ZONE}:ban:KEY` and its member of `authban:{FLOOD_ZONE}:index`, \
         {bans} records, {index} members). failures_dropped at the end: {dropped_end}. \
         So 100,000 addresses counted at {} failures and 10,000 bans take {:.0} MiB; \
         `maxmemory` at twice that ({sized:.0} MiB) leaves room for Redis's own buffers.",
        thousands(t.requests as f64),
        thousands(t.generated as f64),
        t.rps(),
        thousands(t.status_errors as f64),
        thousands(counted as f64),
        thousands(NEAR_BAN as f64),
        MAXRETRY - 1,
        usage_shown(&one),
        usage_shown(&full),
        MAXRETRY - 1,
        MAXRETRY - 1,
        MAXRETRY - 2,
        thousands(MEMORY_BANS as f64),
        MAXRETRY - 1,
        sized / 2.0,
    ));
    drop(node);
}

fn redis_version(redis: &Redis) -> String {
    redis
        .info("server", "redis_version")
        .map_or_else(|| "Redis".into(), |v| format!("Redis {v}"))
}

/// What the poller of one node saw after one ban.
struct Poll {
    /// POST sent -> first 403 from the node.
    refused_after: Option<Duration>,
    probes: u64,
    polling: Duration,
}

/// Polls `port` with `addr` from the barrier on until a 403 (or the limit).
fn poller(
    port: u16,
    addr: String,
    start: Arc<Barrier>,
    t0: Arc<std::sync::OnceLock<Instant>>,
) -> Poll {
    let mut conn = Conn::open(port);
    let first = conn.get_from("/probe", &addr).status();
    assert_eq!(first, Some(200), "{addr} on port {port} before its ban");
    start.wait();
    let began = Instant::now();
    let mut probes = 0;
    loop {
        if conn.is_closed() {
            conn = Conn::open(port);
        }
        let status = conn.get_from("/probe", &addr).status();
        probes += 1;
        let now = Instant::now();
        if status == Some(403) {
            let t0 = *t0.get().expect("t0 is set before any 403 can come");
            return Poll {
                refused_after: Some(now.saturating_duration_since(t0)),
                probes,
                polling: now - began,
            };
        }
        assert_eq!(status, Some(200), "{addr} on port {port}");
        if now - began > PROPAGATION_LIMIT {
            return Poll {
                refused_after: None,
                probes,
                polling: now - began,
            };
        }
    }
}

fn propagation(s: &mut Section, ports: &[u16]) {
    let mut both = Samples::new();
    let mut per_node = [Samples::new(), Samples::new()];
    let mut local = Samples::new();
    let mut never = 0;
    let mut probe_us = Samples::new();
    let mut api = Conn::open(ports[0]);
    for i in 0..BANS {
        let addr = format!("198.18.{}.{}", i / 250, i % 250 + 1);
        let start = Arc::new(Barrier::new(3));
        let t0 = Arc::new(std::sync::OnceLock::new());
        let pollers: Vec<_> = [ports[1], ports[2]]
            .into_iter()
            .map(|port| {
                let (addr, start, t0) = (addr.clone(), Arc::clone(&start), Arc::clone(&t0));
                thread::spawn(move || poller(port, addr, start, t0))
            })
            .collect();
        start.wait();
        // Both pollers are sending their first probes: ban now.
        let path = format!("/authban?zone={ZONE}&addr={addr}&time=1h");
        let sent = Instant::now();
        let _ = t0.set(sent);
        if api.is_closed() {
            api = Conn::open(ports[0]);
        }
        let reply = api.request("POST", &path, &[], Some(b""));
        local.push(sent.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(reply.status(), Some(200), "POST {path}: {reply:?}");
        let polls: Vec<Poll> = pollers
            .into_iter()
            .map(|p| p.join().expect("poller thread"))
            .collect();
        let mut slowest = Duration::ZERO;
        let mut missed = false;
        for (n, p) in polls.iter().enumerate() {
            probe_us.push(p.polling.as_secs_f64() * 1e6 / p.probes.max(1) as f64);
            match p.refused_after {
                Some(d) => {
                    per_node[n].push(d.as_secs_f64() * 1000.0);
                    slowest = slowest.max(d);
                }
                None => missed = true,
            }
        }
        if missed {
            never += 1;
        } else {
            both.push(slowest.as_secs_f64() * 1000.0);
        }
    }
    let shown = |x: &Samples| {
        if x.len() == 0 {
            "none".to_string()
        } else {
            format!("median {}, max {}", millis(x.median()), millis(x.max()))
        }
    };
    s.check(
        &format!("API ban on node 1 -> nodes 2 and 3 refuse ({BANS} bans)"),
        if never == 0 {
            shown(&both)
        } else {
            format!("{}; {never} not within {PROPAGATION_LIMIT:?}", shown(&both))
        },
        "max <= 1 s (loopback: ms)",
        never == 0 && both.max() <= 1000.0,
    );
    s.info("propagation: node 2 refuses after", shown(&per_node[0]));
    s.info("propagation: node 3 refuses after", shown(&per_node[1]));
    s.info(
        "propagation: node 1's API answers (its own ban) after",
        shown(&local),
    );
    s.note(format!(
        "Propagation: {BANS} addresses banned one after the other with `POST \
         /authban?zone={ZONE}&addr=ADDR&time=1h` on node 1 (keep-alive). For each, one \
         thread per node (2 and 3) polls `/probe` (an `empty_gif` location with `authban \
         {ZONE};`) from ADDR over keep-alive, back to back, from just before the POST is \
         sent; the delay is POST sent -> first 403 from that node, and the row above is \
         the later of the two nodes, median and max over the {BANS} bans. A probe takes \
         {:.0} µs (median), which bounds the resolution. The path measured: node 1's \
         API publishes the ban, Redis relays it to the subscription of each node's worker \
         0, which applies it to the node's shared zone (both workers refuse).",
        probe_us.median()
    ));
}

/// One brute force: `requests` failing calls from `addr`, request n to node
/// n % 3, over `conns` concurrent clients. Returns the statuses seen.
fn attack(ports: &[u16], addr: &str, conns: usize, requests: u64) -> BTreeMap<u16, u64> {
    let next = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(conns));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (next, barrier) = (Arc::clone(&next), Arc::clone(&barrier));
            let (ports, addr) = (ports.to_vec(), addr.to_string());
            thread::spawn(move || {
                let mut conns: Vec<Conn> = ports.iter().map(|&p| Conn::open(p)).collect();
                let mut statuses = BTreeMap::new();
                barrier.wait();
                loop {
                    let n = next.fetch_add(1, Ordering::Relaxed);
                    if n >= requests {
                        break;
                    }
                    let i = (n % ports.len() as u64) as usize;
                    if conns[i].is_closed() {
                        conns[i] = Conn::open(ports[i]);
                    }
                    let status = conns[i].get_from(PATH, &addr).status().unwrap_or(0);
                    *statuses.entry(status).or_insert(0) += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for t in threads {
        for (k, v) in t.join().expect("attack thread") {
            *statuses.entry(k).or_insert(0) += v;
        }
    }
    statuses
}

/// The brute force of one row: `cfg.rounds()` attacks, a new address
/// each. Returns the failures that reached the upstream per run, and what
/// looked wrong.
fn attacks(
    cfg: &Config,
    ports: &[u16],
    mock: &Mock,
    conns: usize,
    net: u32,
) -> (Samples, Vec<String>) {
    let mut upstream = Samples::new();
    let mut odd = Vec::new();
    for rep in 0..cfg.rounds() {
        mock.reset();
        let addr = format!("192.0.{net}.{}", rep + 1);
        let statuses = attack(ports, &addr, conns, ATTACK);
        let (_, by_status) = mock.stats();
        upstream.push(*by_status.get(&401).unwrap_or(&0) as f64);
        // After the attack every node must refuse the address.
        let all = wait_until(Duration::from_secs(1), || {
            ports.iter().all(|&p| {
                http(p, "GET", "/probe", &[("X-Forwarded-For", &addr)], None).status() == Some(403)
            })
        });
        if statuses.keys().any(|k| *k != 401 && *k != 403) || !all {
            odd.push(format!(
                "{conns} conn(s), {addr}: statuses {statuses:?}, every node refusing \
                 within 1 s after: {all}"
            ));
        }
    }
    (upstream, odd)
}

/// Requests of one brute force.
const ATTACK: u64 = 600;

fn brute_force(cfg: &Config, s: &mut Section, ports: &[u16], local: &[u16], mock: &Mock) {
    let mut odd = Vec::new();
    let mut most_16 = 0.0;
    for (conns, net) in [(1usize, 20u32), (16, 21)] {
        let (fleet, fleet_odd) = attacks(cfg, ports, mock, conns, net);
        let (alone, alone_odd) = attacks(cfg, local, mock, conns, net + 10);
        odd.extend(fleet_odd.into_iter().map(|o| format!("sync: {o}")));
        odd.extend(alone_odd.into_iter().map(|o| format!("without sync: {o}")));
        let what = if conns == 1 {
            "round-robin over 3 nodes, 1 connection".to_string()
        } else {
            format!("round-robin over 3 nodes, {conns} connections")
        };
        if conns == 1 {
            s.check(
                &format!("{what}: failures reaching the upstream"),
                fleet.show(thousands),
                &format!("<= maxretry + 2 = {}", MAXRETRY + 2),
                fleet.max() <= (MAXRETRY + 2) as f64 && odd.is_empty(),
            );
        } else {
            most_16 = fleet.max();
            s.info(
                &format!("{what}: failures reaching the upstream"),
                fleet.show(thousands),
            );
        }
        s.info(
            "same, without sync= (each node counts alone)",
            alone.show(thousands),
        );
    }
    s.note(format!(
        "Brute force: {ATTACK} GETs of `{PATH}` from one address (X-Forwarded-For), \
         request n to node n mod 3, as fast as the client goes, over 1 connection (one \
         request at a time, a keep-alive connection to each node) and over 16 \
         concurrent clients (each with its own keep-alive connections, taking the next \
         request number); {} runs per row, a new address each, the mock's counters reset. \
         Upstream failures = the mock's own count of 401s. `maxretry={MAXRETRY}` is \
         counted over the fleet; the rows 'without sync=' are three more nodes with the \
         same zone but no `sync=`, where each node counts its own ({} failures before \
         all three have banned). With one connection the client sends the next request, \
         to the next node, as soon as the previous answer arrives: the maxretry-th \
         failure is counted in Redis by the node that answered it (the reply comes back \
         on that node's event loop, after the response left), that node bans and \
         publishes, and a request sent meanwhile to the next node may still pass before \
         the ban reaches it. With 16 clients, besides the requests already past the \
         access check when the ban is made (up to 15), failures keep coming on all \
         three nodes during the round trip that makes the ban: the count of the \
         failures in Redis, the reply, the publication and its delivery (highest seen: \
         {}). After each run all three nodes refused the address within 1 s{}.",
        cfg.rounds(),
        3 * MAXRETRY,
        thousands(most_16),
        if odd.is_empty() {
            String::new()
        } else {
            format!(" except: {}", odd.join("; "))
        }
    ));
}

fn plain_block(sync: Option<&str>) -> String {
    let sync = sync.map_or(String::new(), |url| format!(" sync={url}"));
    format!(
        "authban_zone zone=z:10m maxretry=65535{sync};
    {REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ authban z; empty_gif; }}
        location /fail {{
            authban z;
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
        }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

/// Callgrind: zone `z` without and with `sync=`, passing (200) and failing
/// (401) requests.
fn instructions(cfg: &Config, s: &mut Section, redis: &Redis) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let url = redis.url();
    let off = callgrind::setup("fleet-off", pinned_nginx().start(&plain_block(None)));
    let on = callgrind::setup("fleet-on", pinned_nginx().start(&plain_block(Some(&url))));
    // Redis down: `sync=` names a loopback port nothing listens on, so the
    // link fails and is tried again every second through both runs.
    let down_url = format!("redis://127.0.0.1:{}", closed_port());
    let down = callgrind::setup(
        "fleet-down",
        pinned_nginx().start(&plain_block(Some(&down_url))),
    );
    // The link is up when worker 0 (the single process) has subscribed to
    // the zone's channel and holds its command connection too. Read from
    // Redis, not from nginx's API, so that both runs of a side do the same
    // requests whatever the timing.
    let link_up = |_: u16| {
        // Failures of the previous run: every run starts from an empty Redis.
        assert_eq!(
            redis.cmd(&["FLUSHALL"]),
            Ok(Resp::Simple("OK".into())),
            "FLUSHALL"
        );
        let up = wait_until(Duration::from_secs(30), || {
            redis.subscribers("authban:z:events") >= 1 && redis.clients() >= 3
        });
        assert!(up, "single-process nginx did not connect to Redis in 30 s");
    };
    let none = |_: u16| {};
    let fail_from = |i: u64| format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255);
    let plan = |path, status, prepare, client| callgrind::Plan {
        path,
        status,
        warm_up,
        measured,
        prepare,
        client,
        form: None,
    };
    let pass_off = callgrind::count(&off, &plan("/", 200, &none, None));
    let pass_on = callgrind::count_same_length(&on, &plan("/", 200, &link_up, None));
    let pass_down = callgrind::count_same_length(&down, &plan("/", 200, &none, None));
    // The same with IDLE other connections open through each run, as on a
    // server with clients: their timers are in nginx's timer tree too.
    let idle: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());
    let open_idle = |port: u16| {
        let mut conns = idle.lock().unwrap_or_else(|e| e.into_inner());
        conns.clear();
        for _ in 0..IDLE {
            conns.push(TcpStream::connect(("127.0.0.1", port)).expect("idle connection"));
        }
    };
    let open_idle_link_up = |port: u16| {
        link_up(port);
        open_idle(port);
    };
    let busy_off = callgrind::count(&off, &plan("/", 200, &open_idle, None));
    let busy_on = callgrind::count_same_length(&on, &plan("/", 200, &open_idle_link_up, None));
    idle.lock().unwrap_or_else(|e| e.into_inner()).clear();
    let fail_off = callgrind::count(&off, &plan("/fail", 401, &none, Some(&fail_from)));
    let fail_on =
        callgrind::count_same_length(&on, &plan("/fail", 401, &link_up, Some(&fail_from)));
    let over =
        |on: &callgrind::Count, off: &callgrind::Count| on.per_request / off.per_request - 1.0;
    s.info(
        "instructions/passing request, sync off",
        thousands(pass_off.per_request),
    );
    s.check(
        "instructions/passing request, sync on (Redis up) vs off",
        format!(
            "{} ({})",
            thousands(pass_on.per_request),
            percent(over(&pass_on, &pass_off))
        ),
        "<= off",
        pass_on.per_request <= pass_off.per_request,
    );
    s.info(
        "instructions/passing request, sync on with Redis down (link retried every second) vs off",
        format!(
            "{} ({})",
            thousands(pass_down.per_request),
            percent(over(&pass_down, &pass_off))
        ),
    );
    let (work_off, work_on) = (
        callgrind::module_work(&pass_off),
        callgrind::module_work(&pass_on),
    );
    if let (Some(off_w), Some(on_w)) = (work_off, work_on) {
        s.check(
            "authban's own work per passing request, sync on vs off",
            format!("{on_w:.0} vs {off_w:.0}"),
            "<= off",
            on_w <= off_w,
        );
    }
    s.info(
        &format!("instructions/passing request, {IDLE} idle connections open, sync on vs off"),
        format!(
            "{} vs {} ({})",
            thousands(busy_on.per_request),
            thousands(busy_off.per_request),
            percent(over(&busy_on, &busy_off))
        ),
    );
    s.info(
        "instructions/failing request (401, a new address each), sync on vs off",
        format!(
            "{} vs {} ({})",
            thousands(fail_on.per_request),
            thousands(fail_off.per_request),
            percent(over(&fail_on, &fail_off))
        ),
    );
    // Issue 17's target: what `sync=` adds to a failing request.
    let sync_work = fail_on.per_request - fail_off.per_request;
    s.check(
        "sync= work per failing request (sync on - off)",
        thousands(sync_work),
        "<= 3,000",
        sync_work <= 3000.0,
    );
    let fleet_fns: Vec<String> = callgrind::module_functions(&pass_on)
        .into_iter()
        .filter(|c| {
            let f = c.function.to_ascii_lowercase();
            f.contains("fleet") || f.contains("sync") || f.contains("redis")
        })
        .take(6)
        .map(|c| format!("`{}` {:.1}", c.function, c.inclusive))
        .collect();
    s.note(format!(
        "Request path with `sync=`: callgrind on nginx with `master_process off` as in \
         part 1 (one process, which is worker 0: it holds the command connection and the \
         subscription), zone `z:10m maxretry=65535` with and without `sync={url}`, Redis \
         running; each run waits until the link is up (one subscriber on \
         `authban:z:events` and nginx's command connection, read from Redis) before its \
         requests. {warm_up} then {} requests per run, per request = (I({}) - \
         I({warm_up})) / {measured}. Passing: `GET /` (empty_gif), one client address. \
         Failing: `GET /fail` (auth_basic's 401), each from a new address, so with \
         sync each is also sent to Redis (and its reply read) on the event loop. A \
         healthy idle link holds no timer (the kernel's TCP keepalive watches it); a \
         link that is down is tried again every second, on its own clock: the two runs \
         of each sync side are made to last as long (the shorter one waits, its \
         requests sent, before nginx is stopped), so that such work cancels out like \
         start-up does. Redis down: `sync=` names a loopback port nothing listens on, \
         so every run is an outage with its reconnection attempts. The row with idle connections: as the passing row, with \
         {IDLE} more client connections opened at the start of each run and left idle \
         (no request), whose header timers sit in nginx's timer tree like those of a \
         server's other clients.{}",
        warm_up + measured,
        warm_up + measured,
        if fleet_fns.is_empty() {
            String::new()
        } else {
            format!(
                " Module functions of the link in the passing run (inclusive, per \
                 request): {}.",
                fleet_fns.join(", ")
            )
        }
    ));
    let outside: Vec<String> = callgrind::outside_differences(&pass_off, &pass_on, 6)
        .iter()
        .map(|(f, d)| format!("`{f}` {d:+.0}"))
        .collect();
    s.note(format!(
        "Passing request, (sync on) - (sync off) = {:+.0} instructions, of which \
         authban's own request-path work {:+.0}; outside the module, the functions whose \
         own instructions per request differ most (on - off): {}.{}",
        pass_on.per_request - pass_off.per_request,
        work_on.unwrap_or(f64::NAN) - work_off.unwrap_or(f64::NAN),
        if outside.is_empty() {
            "none by more than 0.5".to_string()
        } else {
            outside.join(", ")
        },
        if outside.iter().any(|o| o.contains("ngx_rbtree")) {
            " `ngx_rbtree_*` is nginx's timer tree: every request adds and deletes its \
             own timers (client header, keep-alive) there, and with sync the tree may also \
             hold a link's timer (while a reply is owed, or the link is down), so an \
             insertion or deletion walks a node more than in a tree that holds the \
             request's timers alone: not work on the request path; with many \
             connections open the tree holds their timers anyway (the row with idle \
             connections open)."
        } else {
            ""
        }
    ));
    let fail_costs = callgrind::module_functions(&fail_on);
    let fail_fn = |name: &str| {
        fail_costs
            .iter()
            .find(|c| c.function == name)
            .map(|c| c.inclusive)
    };
    // The link's three parts of the work: the command written into its
    // buffer in the log phase, sent once per pass of the event loop, and
    // the reply read.
    if let (Some(sent), Some(write), Some(read)) = (
        fail_fn("authban::nginx::fleet::node::send_failure"),
        fail_fn("authban::nginx::fleet::link::on_write"),
        fail_fn("authban::nginx::fleet::link::on_read"),
    ) {
        s.note(format!(
            "Failing request, (sync on) - (sync off) = {:+.0} instructions: queuing the \
             failure for Redis (`authban::nginx::fleet::node::send_failure`, the command written \
             into the link's buffer) {sent:.0}, sending what the pass of the event loop \
             queued (`authban::nginx::fleet::link::on_write`) {write:.0}, and reading the \
             replies (`authban::nginx::fleet::link::on_read`, whatever the number of \
             replies each read brings) {read:.0}, per failing request; the rest is \
             nginx's event loop waking once more for the reply. Callgrind counts each \
             byte of a `rep stos` memset as one instruction, so a buffer zeroed per \
             read weighs more here than in time.",
            fail_on.per_request - fail_off.per_request,
        ));
    }
    s.note(callgrind::module_table(
        "a passing request with sync on",
        &pass_on,
    ));
    s.note(callgrind::module_table(
        "a failing request with sync on",
        &fail_on,
    ));
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0)).expect("bind a free port");
    listener.local_addr().expect("local address").port()
}
