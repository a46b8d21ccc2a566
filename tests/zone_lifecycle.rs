//! The zone's life beyond single requests: reloads (same and changed size),
//! workers SIGKILLed under load, a zone too small for its traffic, and
//! request storms. Every nginx here runs several workers, so the zone is
//! really shared.
//!
//! Failures are made the way production makes them: the protected location
//! proxies to a second server (`{port2}`) that answers 401, since a `return`
//! in the protected location would run before the access phase and never be
//! refused. Clients are played with realip and `X-Forwarded-For`.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A request that takes longer than this means something is stuck (a
/// wedged zone lock would hang requests until the client gives up).
const PROMPT: Duration = Duration::from_secs(2);

/// The http block: `{zone}` is the `authban_zone` parameters. `/...` is
/// protected and proxied to the second server, whose `/ok...` answers 200
/// and everything else 401; every response says which worker sent it.
fn config(zone: &str) -> String {
    r#"
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    authban_zone {zone};
    server {
        # reuseport: every worker has its own socket and new connections
        # are spread over all of them, so "from every worker" is reachable.
        listen 127.0.0.1:{port} reuseport;
        add_header X-Worker $pid always;
        location / {
            authban z;
            proxy_pass http://127.0.0.1:{port2};
        }
    }
    server {
        listen 127.0.0.1:{port2};
        access_log {dir}/upstream.log;
        location / { return 401 "no\n"; }
        location /ok { return 200 "ok\n"; }
        location = /authban { authban_api; }
    }
    "#
    .replace("{zone}", zone)
}

/// One response, read on a fresh connection until nginx closed it.
#[derive(Debug, Clone)]
struct Hit {
    /// None: closed without a response.
    status: Option<u16>,
    /// The worker that answered (`X-Worker`).
    worker: Option<i32>,
    elapsed: Duration,
}

/// `GET path` from `client` (via X-Forwarded-For) with `Connection: close`,
/// reading until EOF. authban counts a failure when the response header goes
/// out (or, for a response without one, in the log phase), either way
/// before nginx closes the connection: once this returns, the failure is in
/// the zone, whichever worker serves the next request. Errors (reset
/// mid-response, timeout) are returned, not panicked, for load threads.
fn fetch(port: u16, path: &str, client: &str) -> Result<Hit, String> {
    let start = Instant::now();
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let io = |e: io::Error| format!("GET {path} from {client}: {e}");
    let mut stream = TcpStream::connect_timeout(&addr, HTTP_TIMEOUT).map_err(io)?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(HTTP_TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: authban.test\r\nX-Forwarded-For: {client}\r\n\
         Connection: close\r\n\r\n"
    );
    // A failed write means nginx closed first: the read tells the rest.
    let _ = stream.write_all(request.as_bytes());
    let mut buf = Vec::new();
    match stream.read_to_end(&mut buf) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset && buf.is_empty() => {}
        Err(e) => return Err(io(e)),
    }
    let elapsed = start.elapsed();
    if buf.is_empty() {
        return Ok(Hit {
            status: None,
            worker: None,
            elapsed,
        });
    }
    let text = String::from_utf8_lossy(&buf);
    let head = text
        .split("\r\n\r\n")
        .next()
        .ok_or_else(|| format!("GET {path} from {client}: no header end in {text:?}"))?;
    if !text.contains("\r\n\r\n") {
        return Err(format!("GET {path} from {client}: truncated {text:?}"));
    }
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("GET {path} from {client}: bad status line in {text:?}"))?;
    let worker = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case("x-worker"))
        .and_then(|(_, v)| v.trim().parse().ok());
    Ok(Hit {
        status: Some(status),
        worker,
        elapsed,
    })
}

/// [`fetch`] that must succeed promptly; returns the status (0: closed).
fn status(port: u16, path: &str, client: &str) -> u16 {
    let hit = fetch(port, path, client).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        hit.elapsed < PROMPT,
        "GET {path} from {client} took {:?}",
        hit.elapsed
    );
    hit.status.unwrap_or(0)
}

/// `n` failures (upstream 401s) from `client`, each asserted.
fn fail_n(port: u16, client: &str, n: usize, path: &str) {
    for i in 1..=n {
        assert_eq!(
            status(port, path, client),
            401,
            "failure {i} of {n} from {client} on {path}"
        );
    }
}

/// Requests that reached the upstream server for `path` (exact path).
/// The upstream logs a request after its response left, maybe after the
/// client already got the front's answer, so the count is read once it
/// holds still for 100 ms.
fn upstream_hits(nginx: &Nginx, path: &str) -> usize {
    let needle = format!("\"GET {path} HTTP/");
    settled_count(|| {
        let log = std::fs::read_to_string(nginx.dir().join("upstream.log")).unwrap_or_default();
        log.lines().filter(|l| l.contains(&needle)).count()
    })
}

/// Asks from `client` until a 403 came from every current worker; every
/// answer must be 403. Returns how many requests it took.
fn refused_by_every_worker(nginx: &Nginx, client: &str, path: &str) -> usize {
    let workers: BTreeSet<i32> = nginx.worker_pids().into_iter().collect();
    let mut seen = BTreeSet::new();
    for i in 1..=400 {
        let hit = fetch(nginx.port(), path, client).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hit.status, Some(403), "request {i} from {client}: {hit:?}");
        assert!(hit.elapsed < PROMPT, "{hit:?}");
        seen.insert(hit.worker.expect("X-Worker header on the 403"));
        if seen == workers {
            return i;
        }
    }
    panic!("403s from workers {seen:?}, never from all of {workers:?}");
}

/// Asks `/ok` from `client` until every current worker answered 200.
fn every_worker_answers(nginx: &Nginx, client: &str) {
    let workers: BTreeSet<i32> = nginx.worker_pids().into_iter().collect();
    let mut seen = BTreeSet::new();
    for i in 1..=400 {
        let hit = fetch(nginx.port(), "/ok", client).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(hit.status, Some(200), "request {i} from {client}: {hit:?}");
        assert!(hit.elapsed < PROMPT, "{hit:?}");
        seen.insert(hit.worker.expect("X-Worker header"));
        if seen == workers {
            return;
        }
    }
    panic!("answers from workers {seen:?}, never from all of {workers:?}");
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

/// The N of `authban: zone "NAME" kept across reload with N addresses`.
fn kept_addresses(log: &str, zone: &str) -> Option<u32> {
    let prefix = format!("authban: zone \"{zone}\" kept across reload with ");
    let at = log.find(&prefix)? + prefix.len();
    log[at..].split(' ').next()?.parse().ok()
}

#[test]
fn reload_keeps_bans_and_counts_and_applies_the_new_policy() {
    with_timeout(90, || {
        let mut nginx = Nginx::options()
            .workers(3)
            .start(&config("zone=z:1m maxretry=3 findtime=10m bantime=10m"));
        let port = nginx.port();
        let (a, b, c) = ("203.0.113.5", "198.51.100.7", "198.51.100.8");

        // A: banned at its third failure, refused from then on.
        fail_n(port, a, 3, "/a/before");
        assert_eq!(status(port, "/a/refused", a), 403);
        assert!(nginx.error_log().contains(&format!(
            "authban: ban zone=z addr={a} failures=3 bantime=600s"
        )));
        // B: two failures, one short of the old maxretry.
        fail_n(port, b, 2, "/b/before");
        assert_eq!(status(port, "/ok/b", b), 200);

        let offset = nginx.error_log_len();
        // Same name and size, new maxretry and bantime.
        nginx.reload_with(&config("zone=z:1m maxretry=4 findtime=10m bantime=20m"));
        let log = nginx.error_log_since(offset);
        assert!(
            log.contains("authban: zone \"z\" kept across reload with 2 addresses"),
            "{log}"
        );
        assert!(!log.contains("starting it empty"), "{log}");

        // A's ban survived: refused by every new worker, over new
        // connections, without reaching the upstream.
        refused_by_every_worker(&nginx, a, "/a/after");
        assert_eq!(upstream_hits(&nginx, "/a/before"), 3);
        assert_eq!(upstream_hits(&nginx, "/a/after"), 0);
        assert_eq!(upstream_hits(&nginx, "/a/refused"), 0);

        // B's two failures survived, and the new maxretry=4 applies: the
        // third (banned under the old policy) is only counted, the fourth
        // bans, with the new bantime.
        fail_n(port, b, 1, "/b/after");
        assert_eq!(
            status(port, "/ok/b", b),
            200,
            "B banned at its 3rd failure: the old maxretry=3 still applies"
        );
        fail_n(port, b, 1, "/b/after");
        assert_eq!(
            status(port, "/b/refused", b),
            403,
            "B not banned at its 4th failure: its 2 failures before the reload were lost"
        );
        assert_eq!(upstream_hits(&nginx, "/b/before"), 2);
        assert_eq!(upstream_hits(&nginx, "/b/after"), 2);
        assert_eq!(upstream_hits(&nginx, "/b/refused"), 0);
        let log = nginx.error_log_since(offset);
        assert_eq!(
            count(
                &log,
                &format!("authban: ban zone=z addr={b} failures=4 bantime=1200s")
            ),
            1,
            "{log}"
        );
        assert_eq!(count(&log, &format!("addr={b} failures=3")), 0, "{log}");

        // A fresh address also needs four failures now.
        fail_n(port, c, 3, "/c");
        assert_eq!(status(port, "/ok/c", c), 200);
        fail_n(port, c, 1, "/c");
        assert_eq!(status(port, "/c", c), 403);
        assert!(log_has(
            &nginx,
            &format!("authban: ban zone=z addr={c} failures=4 bantime=1200s")
        ));
        // A stays refused and B with it.
        assert_eq!(status(port, "/a/last", a), 403);
        assert_eq!(status(port, "/b/last", b), 403);
    });
}

fn log_has(nginx: &Nginx, text: &str) -> bool {
    nginx.error_log().contains(text)
}

/// A changed size makes nginx map a new zone: it starts without the old
/// zone's running failure counts. Bans do survive, though: the brief this
/// suite was written from said a resized zone starts empty ("bans then do
/// not survive; a later issue adds a state file"), and that later change
/// (commit e8ebf7c, "a resized zone takes over the previous cycle's bans on
/// reload") has landed: the new zone is filled with the old one's bans and
/// offence histories, and says so. README's "Reload" paragraph still says
/// "A changed size creates a new, empty zone" and is out of date.
#[test]
fn reload_with_another_zone_size_starts_a_new_zone_keeping_only_bans() {
    with_timeout(60, || {
        let mut nginx = Nginx::options()
            .workers(2)
            .start(&config("zone=z:1m maxretry=3 bantime=10m"));
        let port = nginx.port();
        let (a, b) = ("203.0.113.5", "198.51.100.7");
        fail_n(port, a, 3, "/a");
        assert_eq!(status(port, "/a", a), 403);
        fail_n(port, b, 2, "/b");

        let offset = nginx.error_log_len();
        nginx.reload_with(&config("zone=z:2m maxretry=3 bantime=10m"));
        let log = nginx.error_log_since(offset);
        assert!(!log.contains("kept across reload"), "{log}");
        assert!(
            log.contains(
                "authban: zone \"z\": restored 1 of 1 bans and histories from the previous zone"
            ),
            "{log}"
        );
        // A's ban moved to the new zone: refused everywhere, at once.
        refused_by_every_worker(&nginx, a, "/a/after");
        assert_eq!(upstream_hits(&nginx, "/a/after"), 0);
        // B's two failures stayed behind with the old zone: three more are
        // needed (two would have banned it in a kept zone).
        fail_n(port, b, 2, "/b");
        assert_eq!(
            status(port, "/ok/b", b),
            200,
            "B's failures before the resize still count"
        );
        fail_n(port, b, 1, "/b");
        assert_eq!(status(port, "/b", b), 403);
        assert_eq!(upstream_hits(&nginx, "/b"), 5);
        let log = nginx.error_log();
        assert_eq!(
            count(&log, &format!("authban: ban zone=z addr={b} failures=3")),
            1,
            "{log}"
        );
        assert_eq!(
            count(&log, &format!("authban: ban zone=z addr={a} failures=3")),
            1,
            "A banned again: {log}"
        );

        // A size change that restores nothing says so too, and the zone
        // then starts empty.
        let mut nginx = Nginx::options()
            .workers(2)
            .start(&config("zone=z:1m maxretry=3 bantime=10m"));
        let port = nginx.port();
        fail_n(port, b, 2, "/b");
        let offset = nginx.error_log_len();
        nginx.reload_with(&config("zone=z:64k maxretry=3 bantime=10m"));
        let log = nginx.error_log_since(offset);
        assert!(!log.contains("kept across reload"), "{log}");
        assert!(!log.contains("restored 1"), "{log}");
        fail_n(port, b, 2, "/b");
        assert_eq!(status(port, "/ok/b", b), 200);
        fail_n(port, b, 1, "/b");
        assert_eq!(status(port, "/ok/b", b), 403);
    });
}

/// What the load threads saw.
#[derive(Default, Debug)]
struct LoadReport {
    by_status: HashMap<Option<u16>, usize>,
    errors: Vec<String>,
    slowest: Duration,
    /// Statuses of the address that gets banned, in order.
    banned_addr: Vec<Option<u16>>,
}

#[test]
fn sigkilled_workers_under_load_do_not_wedge_the_zone() {
    with_timeout(120, || {
        const WORKERS: usize = 3;
        // The zone's size, by which its mapping is found in /proc.
        const ZONE_BYTES: usize = 1 << 20;
        let nginx = Nginx::options()
            .workers(WORKERS)
            .start(&config("zone=z:1m maxretry=3 findtime=10m bantime=10m"));
        let port = nginx.port();
        let early = "192.0.2.66";
        let stop = Arc::new(AtomicBool::new(false));

        let threads: Vec<_> = (0..6u8)
            .map(|t| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut report = LoadReport::default();
                    let mut i: u32 = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        // Many addresses, each failing twice (never banned),
                        // and one address, from thread 0, that gets banned.
                        let (client, path) = if t == 0 && i % 5 == 0 {
                            (early.to_string(), "/load/early".to_string())
                        } else {
                            let n = i / 2;
                            (
                                format!("10.{t}.{}.{}", n / 250 % 250, n % 250 + 1),
                                "/load".to_string(),
                            )
                        };
                        match fetch(port, &path, &client) {
                            Ok(hit) => {
                                *report.by_status.entry(hit.status).or_default() += 1;
                                report.slowest = report.slowest.max(hit.elapsed);
                                if client == early {
                                    report.banned_addr.push(hit.status);
                                }
                            }
                            Err(e) => report.errors.push(e),
                        }
                    }
                    report
                })
            })
            .collect();

        // SIGKILL a worker five times, each time waiting for the master to
        // start its replacement. Round 0 kills at a random moment; the
        // others kill a worker caught holding the zone's lock (see
        // `stop_holding_lock`), the case the master must clean up after, or
        // a random one if none is caught within 3 s (each try catches one
        // about once in a thousand; the last round tries for 30 s if no
        // round caught one, since all four missing does happen).
        let mut killed = Vec::new();
        let mut killed_holding_lock = Vec::new();
        thread::sleep(Duration::from_millis(300));
        for round in 0..5 {
            let pids = nginx.worker_pids();
            assert_eq!(pids.len(), WORKERS, "{pids:?}");
            // The last round keeps trying longer if none was caught yet: a
            // catch is a matter of luck, and the test must prove the case.
            let patience = if round == 4 && killed_holding_lock.is_empty() {
                Duration::from_secs(30)
            } else {
                Duration::from_secs(3)
            };
            let victim = if round > 0 {
                match stop_holding_lock(&pids, ZONE_BYTES, patience) {
                    Some(pid) => {
                        killed_holding_lock.push(pid);
                        pid
                    }
                    None => pids[round % pids.len()],
                }
            } else {
                pids[round % pids.len()]
            };
            nginx.kill_worker(victim);
            killed.push(victim);
            let now = nginx.wait_for_workers(WORKERS);
            assert!(!now.contains(&victim), "{now:?}");
            thread::sleep(Duration::from_millis(500));
        }
        stop.store(true, Ordering::Relaxed);
        let reports: Vec<LoadReport> = threads
            .into_iter()
            .map(|h| h.join().expect("load thread panicked"))
            .collect();

        let mut by_status: HashMap<Option<u16>, usize> = HashMap::new();
        for r in &reports {
            for (s, n) in &r.by_status {
                *by_status.entry(*s).or_default() += n;
            }
        }
        let total: usize = by_status.values().sum();
        let errors: Vec<&String> = reports.iter().flat_map(|r| &r.errors).collect();
        let slowest = reports.iter().map(|r| r.slowest).max().unwrap_or_default();
        let context = format!(
            "statuses {by_status:?}, {} errors (first: {:?}), slowest {slowest:?}",
            errors.len(),
            errors.first()
        );
        eprintln!("load under kills: {context}");
        assert!(total > 500, "too little load to prove anything: {context}");
        // Requests in flight on a killed worker may be cut; none may hang.
        assert!(
            !errors
                .iter()
                .any(|e| e.contains("timed out") || e.contains("would block")),
            "a request hung: {context}"
        );
        assert!(slowest < PROMPT, "a request was slow: {context}");
        let early_statuses = &reports[0].banned_addr;
        assert!(
            early_statuses.contains(&Some(403)),
            "{early} never refused during the load: {early_statuses:?}"
        );

        // The master noticed every kill.
        for pid in &killed {
            assert!(
                nginx.wait_for_error_log(
                    &format!("worker process {pid} exited on signal 9"),
                    Duration::from_secs(5)
                ),
                "{}",
                nginx.diagnostics()
            );
        }

        // Afterwards: every worker answers, promptly.
        every_worker_answers(&nginx, "198.51.100.200");
        // The address banned under load is still refused, everywhere.
        refused_by_every_worker(&nginx, early, "/after/early");
        let log = nginx.error_log();
        assert_eq!(
            count(
                &log,
                &format!("authban: ban zone=z addr={early} failures=3")
            ),
            1,
            "{early} banned more than once"
        );
        // A new address is banned at exactly maxretry: three failures reach
        // the upstream, the fourth request is refused before it.
        let fresh = "198.51.100.99";
        fail_n(port, fresh, 3, "/after/fresh");
        assert_eq!(status(port, "/after/fresh", fresh), 403);
        assert_eq!(status(port, "/after/fresh", fresh), 403);
        assert_eq!(upstream_hits(&nginx, "/after/fresh"), 3);
        assert!(log_has(
            &nginx,
            &format!("authban: ban zone=z addr={fresh} failures=3 bantime=600s")
        ));
        // Nothing but the kills went wrong. ("was locked by" is nginx's
        // master releasing the zone's mutex of a worker killed inside the
        // critical section: expected after every such kill.)
        let log = nginx.error_log();
        eprintln!(
            "killed {killed:?}, of which {killed_holding_lock:?} holding the zone lock; \
             zone mutex force-released {} times",
            count(&log, "was locked by")
        );
        // A worker killed holding the lock: nginx's master released it.
        for pid in &killed_holding_lock {
            assert!(
                log.contains(&format!("shared memory zone \"z\" was locked by {pid}")),
                "{}",
                nginx.diagnostics()
            );
        }
        assert!(
            !killed_holding_lock.is_empty(),
            "no worker was caught holding the zone lock: the test proved less than it should"
        );
        for line in log.lines() {
            if line.contains("[alert]") || line.contains("[crit]") || line.contains("[emerg]") {
                let explained = killed.iter().any(|pid| {
                    line.contains(&format!("worker process {pid} exited on signal 9"))
                        || line.contains(&format!("was locked by {pid}"))
                });
                assert!(explained, "unexpected: {line}\n{}", nginx.diagnostics());
            }
        }
        assert_eq!(nginx.worker_pids().len(), WORKERS);
    });
}

#[test]
fn full_zone_forgets_the_least_recently_failing_and_drops_bans_last() {
    with_timeout(180, || {
        let mut nginx = Nginx::options()
            .workers(2)
            .start(&config("zone=z:32k maxretry=2 findtime=10m bantime=10m"));
        let port = nginx.port();
        let banned_early = "192.0.2.1";
        let old = "192.0.2.2";
        let recent = "192.0.2.3";
        const FLOOD: u32 = 3000;

        fail_n(port, banned_early, 2, "/early");
        assert_eq!(status(port, "/ok", banned_early), 403);
        fail_n(port, old, 1, "/old");

        // Far more addresses than a 32k zone holds (a few hundred), each
        // failing once: the oldest counted ones are forgotten.
        flood(port, 1, FLOOD);

        fail_n(port, recent, 1, "/recent");
        // OLD was forgotten: its second failure is its first again.
        fail_n(port, old, 1, "/old");
        assert_eq!(
            status(port, "/ok", old),
            200,
            "OLD banned: its failure before the flood was kept, yet the zone was full"
        );
        // RECENT failed just before: its second failure bans it.
        fail_n(port, recent, 1, "/recent");
        assert_eq!(
            status(port, "/ok", recent),
            403,
            "RECENT not banned: a recent failure was forgotten"
        );
        // The ban made before the flood outlived it: bans go last.
        assert_eq!(
            status(port, "/ok", banned_early),
            403,
            "the ban made before the flood was dropped while counted addresses were left"
        );
        let log = nginx.error_log();
        assert_eq!(count(&log, "reason=zone_full"), 0, "a ban was dropped");
        assert!(!log.contains("exited on signal"), "{}", nginx.diagnostics());

        // Now only bans: every new address is banned at its first failure.
        let offset = nginx.error_log_len();
        nginx.reload_with(&config("zone=z:32k maxretry=1 findtime=10m bantime=10m"));
        let capacity = kept_addresses(&nginx.error_log_since(offset), "z")
            .unwrap_or_else(|| panic!("no \"kept across reload\":\n{}", nginx.diagnostics()));
        // The zone is full, so it holds exactly its capacity.
        assert!(
            (100..FLOOD).contains(&capacity),
            "a 32k zone holding {capacity} addresses"
        );
        eprintln!("a 32k zone holds {capacity} addresses");
        flood(port, 2, FLOOD);

        let log = nginx.error_log_since(offset);
        let dropped: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("reason=zone_full (zone too small)"))
            .collect();
        // Full with `capacity` addresses of which 2 bans: the first
        // capacity-2 new bans take the counted addresses' slots, every
        // later one drops the ban ending soonest. The log writes a few of
        // these lines a second and sums up the rest; the zone counts all.
        let stats = http(nginx.port2(), "GET", "/authban?zone=z", &[], None).text();
        assert!(
            stats.contains(&format!("\"bans_dropped\":{}", FLOOD - (capacity - 2))),
            "capacity {capacity}: {stats}"
        );
        let summed: u32 = log
            .lines()
            .filter(|l| l.contains("more \"reason=zone_full\" lines"))
            .filter_map(|l| {
                l.split("zone=z ")
                    .nth(1)?
                    .split(' ')
                    .next()?
                    .parse::<u32>()
                    .ok()
            })
            .sum();
        assert!(!dropped.is_empty());
        assert!(
            dropped.len() as u32 + summed <= FLOOD - (capacity - 2),
            "{} lines and {summed} summed up",
            dropped.len()
        );
        for line in &dropped {
            assert!(line.contains("[warn]"), "{line}");
            assert!(
                line.contains("authban: unban zone=z addr=") && line.contains("(zone too small)"),
                "{line}"
            );
        }
        assert!(
            dropped[0].contains(&format!("addr={banned_early} reason=zone_full")),
            "the ban ending soonest was not dropped first: {}",
            dropped[0]
        );
        assert!(
            dropped[1].contains(&format!("addr={recent} reason=zone_full")),
            "the second ban ending soonest was not dropped second: {}",
            dropped[1]
        );
        assert_eq!(
            count(&log, "authban: ban zone=z addr=10.2."),
            FLOOD as usize
        );
        assert_eq!(count(&log, "reason=expired"), 0, "{log}");
        // The dropped ban no longer refuses.
        assert_eq!(status(port, "/ok", banned_early), 200);
        assert_eq!(status(port, "/ok", recent), 200);
        // The newest bans hold.
        assert_eq!(status(port, "/ok", &flood_addr(2, FLOOD - 1)), 403);
        assert_eq!(status(port, "/ok", &flood_addr(2, FLOOD - 2)), 403);
        let log = nginx.error_log();
        assert!(!log.contains("exited on signal"), "{}", nginx.diagnostics());
        assert!(
            !log.contains("[alert]") && !log.contains("[crit]"),
            "{}",
            nginx.diagnostics()
        );
        assert_eq!(nginx.worker_pids().len(), 2);
    });
}

/// Finds one of `workers` inside the zone's critical section: stops a
/// worker (SIGSTOP), reads the zone's lock word from its memory (an
/// `ngx_shmtx_t` holds the holder's pid; the slab pool, and so the lock,
/// starts the zone's shared mapping), and returns that worker still
/// stopped if it holds the lock, else resumes it and tries again.
fn stop_holding_lock(workers: &[i32], zone_bytes: usize, patience: Duration) -> Option<i32> {
    let deadline = Instant::now() + patience;
    let mut tries = 0u32;
    while Instant::now() < deadline {
        let pid = workers[tries as usize % workers.len()];
        tries += 1;
        // SAFETY: plain kill(2) on a worker of our own nginx.
        if unsafe { libc::kill(pid, libc::SIGSTOP) } != 0 {
            continue;
        }
        // Polled finely: the whole point is to try many times.
        let until = Instant::now() + Duration::from_secs(1);
        let mut stopped = false;
        while !stopped && Instant::now() < until {
            stopped = proc_state(pid) == Some('T');
            if !stopped {
                thread::sleep(Duration::from_micros(50));
            }
        }
        let holder = stopped.then(|| zone_lock_word(pid, zone_bytes)).flatten();
        if holder == Some(pid as u64) {
            return Some(pid);
        }
        // SAFETY: as above.
        unsafe { libc::kill(pid, libc::SIGCONT) };
        thread::sleep(Duration::from_millis(1));
    }
    eprintln!("no worker caught holding the lock in {tries} tries");
    None
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit(')').next()?.trim_start().chars().next()
}

/// The first word of the shared mapping of exactly `zone_bytes` bytes in
/// `pid`'s memory: the zone's `ngx_slab_pool_t`, whose mutex comes first.
fn zone_lock_word(pid: i32, zone_bytes: usize) -> Option<u64> {
    use std::os::unix::fs::FileExt;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).ok()?;
    let start = maps.lines().find_map(|line| {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next()?, fields.next()?);
        let (lo, hi) = range.split_once('-')?;
        let lo = u64::from_str_radix(lo, 16).ok()?;
        let hi = u64::from_str_radix(hi, 16).ok()?;
        (perms == "rw-s" && hi - lo == zone_bytes as u64).then_some(lo)
    })?;
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).ok()?;
    let mut word = [0u8; 8];
    mem.read_exact_at(&mut word, start).ok()?;
    Some(u64::from_ne_bytes(word))
}

fn flood_addr(tag: u32, i: u32) -> String {
    format!("10.{tag}.{}.{}", i / 250, i % 250 + 1)
}

/// `n` distinct addresses `10.tag.x.y`, one failure each, in order, over
/// one keep-alive connection (so each failure is counted before the next
/// request is read). Ends with a request on the same connection, so the
/// last failure is counted before the caller goes on.
fn flood(port: u16, tag: u32, n: u32) {
    let mut conn = Conn::open(port);
    for i in 0..n {
        let client = flood_addr(tag, i);
        let reply = conn.get_from("/flood", &client);
        assert_eq!(reply.status(), Some(401), "flood {client}: {reply:?}");
        if conn.is_closed() {
            conn = Conn::open(port);
        }
    }
    assert_eq!(conn.get_from("/ok", "198.51.100.250").status(), Some(200));
}

#[test]
fn request_storms_leave_no_alert() {
    with_timeout(120, || {
        let block = r#"
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        authban_zone zone=z:32k maxretry=3 findtime=1m bantime=1m;
        server {
            listen 127.0.0.1:{port} reuseport;
            authban z;
            authban_fail_status 401 404 531;
            location / { proxy_pass http://127.0.0.1:{port2}; }
            location /close/ { authban_status 444; proxy_pass http://127.0.0.1:{port2}; }
            location /dry/ { authban_dry_run on; proxy_pass http://127.0.0.1:{port2}; }
            location /ign/ { authban_ignore 10.9.0.0/16; proxy_pass http://127.0.0.1:{port2}; }
            location /v6/ { proxy_pass http://127.0.0.1:{port2}; }
        }
        server {
            listen 127.0.0.1:{port2};
            access_log off;
            location ~ 200$ { return 200 "ok\n"; }
            location ~ 401$ { return 401; }
            location ~ 404$ { return 404; }
            location ~ 500$ { return 500; }
            location ~ 531$ { return 531; }
            location ~ 302$ { return 302 /elsewhere; }
        }
        "#;
        let nginx = Nginx::options().workers(3).start(block);
        let port = nginx.port();
        let workers = nginx.worker_pids();
        let paths = |i: u32| {
            let dir = ["", "close/", "dry/", "ign/", "v6/"][(i % 5) as usize];
            let code = ["200", "401", "404", "500", "531", "302", "401"][(i / 5 % 7) as usize];
            format!("/{dir}{code}")
        };
        let client = |i: u32, salt: u32| {
            if i % 5 == 4 {
                format!("2001:db8:{salt:x}::{:x}", i % 40 + 1)
            } else if i % 5 == 3 {
                format!("10.9.{salt}.{}", i % 40 + 1)
            } else {
                format!("10.{salt}.0.{}", i % 40 + 1)
            }
        };

        // One keep-alive connection: a long sequence of mixed requests,
        // reconnecting when nginx closes (444, or its keepalive limit).
        let mut seen: HashMap<Option<u16>, usize> = HashMap::new();
        let mut conn = Conn::open(port);
        for i in 0..3000u32 {
            let reply = conn.get_from(&paths(i * 7 + i / 11), &client(i, 1));
            *seen.entry(reply.status()).or_default() += 1;
            if conn.is_closed() {
                conn = Conn::open(port);
            }
        }
        drop(conn);

        // Many connections at once.
        let threads: Vec<_> = (0..8u32)
            .map(|t| {
                thread::spawn(move || {
                    let mut seen: HashMap<Option<u16>, usize> = HashMap::new();
                    for i in 0..400u32 {
                        let path = paths(i * 3 + t);
                        let hit = fetch(port, &path, &client(i, 20 + t % 3))
                            .unwrap_or_else(|e| panic!("storm thread {t}: {e}"));
                        assert!(hit.elapsed < PROMPT, "{path}: {hit:?}");
                        *seen.entry(hit.status).or_default() += 1;
                    }
                    seen
                })
            })
            .collect();
        for h in threads {
            for (s, n) in h.join().expect("storm thread panicked") {
                *seen.entry(s).or_default() += n;
            }
        }

        eprintln!("storm statuses: {seen:?}");
        // The storm did what it was meant to: bans, refusals, closes.
        for want in [Some(200), Some(401), Some(404), Some(403), None] {
            assert!(seen.contains_key(&want), "no {want:?} in {seen:?}");
        }
        let log = nginx.error_log();
        assert!(log.contains("authban: ban zone=z addr="), "no ban");
        assert!(
            log.contains("authban: would ban zone=z addr="),
            "no dry-run ban"
        );
        for bad in ["[alert]", "[crit]", "[emerg]", "exited on signal"] {
            assert!(
                !log.contains(bad),
                "{bad} in the error log:\n{}",
                nginx.diagnostics()
            );
        }
        // No worker died and was replaced.
        assert_eq!(nginx.worker_pids(), workers);
        assert!(nginx.stop().success());
    });
}

/// The zone's state for one address, from the management endpoint.
fn address_state(nginx: &Nginx, addr: &str) -> Json {
    let reply = get(nginx.port2(), &format!("/authban?zone=z&addr={addr}"));
    assert_eq!(reply.status(), Some(200), "{}", reply.text());
    Json::parse(&reply.text()).unwrap_or_else(|e| panic!("{e}: {}", reply.text()))
}

/// The reload rules (README "Reload", `engine::table`): the policy is the
/// configuration's, not the zone's. A new maxretry and bantime apply from
/// the next failure to the counts the zone holds (a count already past the
/// lower maxretry is not banned by the reload itself); bans in force keep
/// the end they were given; a new findtime restarts the running counts and
/// keeps the bans.
#[test]
fn reload_applies_maxretry_and_bantime_from_the_next_failure_and_keeps_bans() {
    with_timeout(90, || {
        let mut nginx = Nginx::options()
            .workers(2)
            .start(&config("zone=z:1m maxretry=5 findtime=10m bantime=10m"));
        let port = nginx.port();
        let (a, b, c) = ("203.0.113.21", "198.51.100.22", "198.51.100.23");
        fail_n(port, a, 5, "/a");
        assert_eq!(status(port, "/a", a), 403);
        let a_ban = address_state(&nginx, a);
        assert!(a_ban.bool("banned"));
        assert_eq!(a_ban.u64("until") - a_ban.u64("since"), 600);
        fail_n(port, b, 4, "/b");
        assert_eq!(address_state(&nginx, b).u64("failures"), 4);

        // maxretry 5 -> 3 and bantime 10m -> 1m, findtime unchanged.
        let offset = nginx.error_log_len();
        nginx.reload_with(&config("zone=z:1m maxretry=3 findtime=10m bantime=1m"));
        let log = nginx.error_log_since(offset);
        assert!(
            log.contains("authban: zone \"z\" kept across reload with 2 addresses"),
            "{log}"
        );
        // A's ban is kept with its end: the new bantime does not re-time it.
        refused_by_every_worker(&nginx, a, "/a/after");
        let kept = address_state(&nginx, a);
        assert_eq!(
            (kept.u64("since"), kept.u64("until")),
            (a_ban.u64("since"), a_ban.u64("until"))
        );
        // B's four failures are kept and, past the new maxretry, do not
        // ban it by themselves: the next failure does, for the new bantime.
        let held = address_state(&nginx, b);
        assert_eq!((held.u64("failures"), held.bool("banned")), (4, false));
        assert_eq!(status(port, "/ok/b", b), 200);
        fail_n(port, b, 1, "/b/after");
        assert_eq!(status(port, "/b/refused", b), 403);
        let b_ban = address_state(&nginx, b);
        assert_eq!(b_ban.u64("until") - b_ban.u64("since"), 60);
        assert!(log_has(
            &nginx,
            &format!("authban: ban zone=z addr={b} failures=5 bantime=60s")
        ));
        assert_eq!(upstream_hits(&nginx, "/b/refused"), 0);
        // C counts under the new maxretry.
        fail_n(port, c, 2, "/c");
        assert_eq!(address_state(&nginx, c).u64("failures"), 2);

        // findtime 10m -> 5m: running counts restart, bans stay.
        nginx.reload_with(&config("zone=z:1m maxretry=3 findtime=5m bantime=1m"));
        assert_eq!(address_state(&nginx, c).u64("failures"), 0);
        fail_n(port, c, 2, "/c");
        assert_eq!(status(port, "/ok/c", c), 200, "C's counts restarted");
        fail_n(port, c, 1, "/c");
        assert_eq!(status(port, "/c", c), 403);
        assert_eq!(status(port, "/a/last", a), 403);
        assert_eq!(status(port, "/b/last", b), 403);
        assert_eq!(address_state(&nginx, a).u64("until"), a_ban.u64("until"));
    });
}
