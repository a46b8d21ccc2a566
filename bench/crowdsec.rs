//! Part 7: authban as a CrowdSec bouncer (`authban_crowdsec`), against a
//! real LAPI (Debian's crowdsec 1.4.6 from `scripts/fetch-crowdsec.sh`,
//! started by the test harness, `tests/common/crowdsec.rs`).
//!
//! - Request path: callgrind instructions per passing request in a
//!   location with `authban z;`, the zone with and without
//!   `authban_crowdsec ... interval=1s` (the LAPI holds no decision: the
//!   bouncer's cost alone; what bans cost a request is part 1's). Pulls run
//!   in worker 0's event loop on a timer, not per request: both runs of the
//!   bouncer side last as long ([`callgrind::count_same_length`]), so that
//!   they hold as many pulls and the pulls cancel out like start-up does.
//! - Startup load: 100,000 ban decisions imported into the LAPI with
//!   `cscli decisions import` before nginx starts (2 workers,
//!   `interval=10s`); the time until the zone holds them all, a probe on
//!   fresh connections every 5 ms throughout (latency during the load vs.
//!   the same nginx without the bouncer), the workers' memory, and the
//!   startup answer's size and the LAPI's time to make it.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use crate::api::{pinned_nginx, zone_stats, ZoneStats};
use crate::callgrind;
use crate::common::{get, Json, Lapi, Nginx};
use crate::machine::{memory, tmp_dir, Memory};
use crate::report::Section;
use crate::stats::{millis, percent, thousands};
use crate::Config;

/// Decisions loaded before nginx starts.
fn decisions(cfg: &Config) -> u64 {
    if cfg.quick {
        10_000
    } else {
        100_000
    }
}

/// Decisions per `cscli decisions import` (each bounded by the harness's
/// 20 s per cscli command; 20,000 take about 6 s here).
const IMPORT_CHUNK: u64 = 20_000;
/// The probe's pace: one request on a fresh connection every 5 ms.
const PROBE_EVERY: Duration = Duration::from_millis(5);
/// How long the probe runs on an idle nginx (before and after the load).
const IDLE_PROBE: Duration = Duration::from_secs(3);
/// The longest wait for the zone to hold every decision.
const LOAD_LIMIT: Duration = Duration::from_secs(90);

/// `authban_crowdsec` for zone `zone`, with a new bouncer's key.
fn crowdsec_line(lapi: &Lapi, bouncer: &str, zone: &str, interval: &str) -> String {
    format!(
        "authban_crowdsec zone={zone} url={} bouncer_key_file={} interval={interval};",
        lapi.url(),
        lapi.bouncer_key_file(bouncer).display()
    )
}

/// A zone `name` of `size`, the passing location `/` checking it, the
/// endpoint, and `crowdsec` (a line or nothing).
fn block(name: &str, size: &str, crowdsec: &str) -> String {
    format!(
        "authban_zone zone={name}:{size};
    {crowdsec}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ authban {name}; empty_gif; }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("7. CrowdSec");
    let lapi = Lapi::start();
    instructions(cfg, &lapi, &mut s);
    startup_load(cfg, &lapi, &mut s);
    s
}

/// Per-request instructions, as part 1 counts them, with and without the
/// bouncer.
fn instructions(cfg: &Config, lapi: &Lapi, s: &mut Section) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let start = |crowdsec: &str| {
        let nginx = pinned_nginx().start(&block("z", "10m", crowdsec));
        assert_eq!(get(nginx.port(), "/").status(), Some(200), "GET /");
        nginx
    };
    let off = callgrind::setup("crowdsec-off", start(""));
    let on = callgrind::setup(
        "crowdsec-on",
        start(&crowdsec_line(lapi, "callgrind", "z", "1s")),
    );
    let plan = callgrind::Plan::get("/", 200, (warm_up, measured), &|_| {});
    let c_off = callgrind::count(&off, &plan);
    let c_on = callgrind::count_same_length(&on, &plan);
    let own = |c: &callgrind::Count| callgrind::module_work(c).unwrap_or(f64::NAN);
    let (own_off, own_on) = (own(&c_off), own(&c_on));
    // Worker 0's pulls: the timer and the LAPI connection's handlers, with
    // all they call (in nginx too), per request of the measured run.
    let pulls: f64 = callgrind::module_functions(&c_on)
        .iter()
        .filter(|c| PULL_ENTRIES.contains(&c.function.as_str()))
        .map(|c| c.inclusive)
        .sum();
    let total = c_on.per_request / c_off.per_request - 1.0;
    let without_pulls = (c_on.per_request - pulls) / c_off.per_request - 1.0;
    s.info(
        "instructions/passing request, bouncer off (zone without `authban_crowdsec`)",
        thousands(c_off.per_request),
    );
    s.info(
        "instructions/passing request, bouncer on (pulling every 1 s from a real LAPI)",
        format!("{} ({})", thousands(c_on.per_request), percent(total)),
    );
    s.info(
        "of which worker 0's pulls (timer and LAPI connection handlers), spread over the run's requests",
        format!(
            "{pulls:.1}; without them {} ({})",
            thousands(c_on.per_request - pulls),
            percent(without_pulls)
        ),
    );
    let (alloc_off, alloc_on) = (allocator(&c_off), allocator(&c_on));
    s.info(
        "the same outside glibc's allocator (malloc's own instructions taken out of both)",
        format!(
            "{} vs {} ({}); malloc and free: {alloc_on:.0} vs {alloc_off:.0}",
            thousands(c_on.per_request - alloc_on),
            thousands(c_off.per_request - alloc_off),
            percent((c_on.per_request - alloc_on) / (c_off.per_request - alloc_off) - 1.0)
        ),
    );
    s.info(
        "authban's own instructions/passing request, off / on",
        format!("{own_off:.1} / {own_on:.1}"),
    );
    let own_equal = (own_on - own_off).abs() < 1.0;
    // Fewer instructions with the bouncer on is not a cost: the verdict
    // asks for no more than noise above off (the allocator row says why a
    // total can come out lower).
    let total_close = total <= NOISE;
    s.check(
        "a passing request costs the same instructions with the bouncer on as off",
        format!(
            "own {own_on:.0} vs {own_off:.0} ({:+.1}); total {} vs {} ({})",
            own_on - own_off,
            thousands(c_on.per_request),
            thousands(c_off.per_request),
            percent(total)
        ),
        "own equal (±1); total within noise (<= +0.5 %)",
        own_equal && total_close,
    );
    s.note(format!(
        "Request path: `valgrind --tool=callgrind` as in part 1 (nginx with \
         `master_process off`, one keep-alive client, {warm_up} then {} requests, \
         per request = (I(N2) - I(N1)) / {measured}), on `location / {{ authban z; \
         empty_gif; }}` with zone `z:10m`, without and with `authban_crowdsec zone=z \
         ... interval=1s` on a real LAPI holding no decision (every pull: a new \
         connection, `GET /v1/decisions/stream`, an empty answer). The bouncer side's \
         two runs last as long (the longer first, the shorter one idling until it has \
         run as long), so they hold as many pulls, give or take one, and the pulls \
         cancel out like start-up does; what is left of them shows in 'of which \
         worker 0's pulls' (their handlers' inclusive instructions, N2 run minus N1 \
         run, per measured request: one pull more or less in a run moves it). 'Own' is \
         authban's work at its per-request entry points (access, precontent, header \
         filter, failure count, log; part 1's figure), which the pulls never enter. \
         Noise: callgrind totals vary by ~0.2 % run to run (part 1), the target \
         allows +{:.1} % (a lower total is no cost). The totals also move with glibc's \
         heap: the bouncer's start-up allocations (its puller and exchange, with a 16 KiB \
         read buffer) leave a heap on which the request pool's malloc finds its chunk \
         sooner, so 'the same outside glibc's allocator' compares what is left; one \
         more timer in nginx's timer tree (the pull's) shows there as a few \
         instructions of `ngx_rbtree_insert_timer_value` and `ngx_rbtree_delete` per \
         request.",
        warm_up + measured,
        NOISE * 100.0
    ));
}

/// glibc's allocator's own instructions per request: how fast malloc finds
/// a chunk depends on the heap's layout, which the module's start-up
/// allocations change (part 1 saw it too).
fn allocator(c: &callgrind::Count) -> f64 {
    callgrind::functions(c)
        .iter()
        .filter(|f| !f.module)
        .filter(|f| {
            let name = f.function.as_str();
            name.contains("malloc")
                || name.starts_with("_int_")
                || name.starts_with("unlink_chunk")
                || matches!(name, "free" | "cfree" | "calloc" | "realloc")
        })
        .map(|f| f.exclusive)
        .sum()
}

/// Run-to-run noise allowed on a callgrind total.
const NOISE: f64 = 0.005;

/// The event handlers through which worker 0 pulls.
const PULL_ENTRIES: [&str; 4] = [
    "authban::nginx::crowdsec::pull::on_timer",
    "authban::nginx::crowdsec::exchange::on_event",
    "authban::nginx::crowdsec::exchange::on_connected",
    "authban::nginx::crowdsec::exchange::on_deadline",
];

/// Decision `i`'s address: 10.x.y.z, distinct for i < 2^24.
fn address(i: u64) -> String {
    format!("10.{}.{}.{}", (i >> 16) & 255, (i >> 8) & 255, i & 255)
}

/// Imports `n` 4-hour ban decisions with `cscli decisions import`, in
/// chunks; answers how long it took.
fn import(lapi: &Lapi, n: u64) -> Duration {
    let dir = tmp_dir().join("crowdsec");
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create bench/tmp/crowdsec");
    let mut files = Vec::new();
    let mut from = 0;
    while from < n {
        let to = (from + IMPORT_CHUNK).min(n);
        let mut csv = String::from("duration,scope,type,value,reason\n");
        for i in from..to {
            let _ = writeln!(csv, "4h,ip,ban,{},authban-bench", address(i));
        }
        let file = dir.join(format!("decisions-{from}.csv"));
        fs::write(&file, csv).expect("write decisions csv");
        files.push(file);
        from = to;
    }
    let t = Instant::now();
    for file in &files {
        lapi.cscli(&["decisions", "import", "-i", &file.display().to_string()]);
    }
    t.elapsed()
}

/// A plain HTTP GET with its own long timeouts (the harness client's 5 s
/// read timeout is shorter than the LAPI's startup answer takes).
struct Fetched {
    status: u16,
    body_bytes: usize,
    first_byte: Duration,
    total: Duration,
}

fn fetch(port: u16, path: &str, headers: &[(&str, &str)]) -> Fetched {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(60);
    let t = Instant::now();
    let mut conn = TcpStream::connect_timeout(&addr, timeout).expect("connect to LAPI");
    conn.set_read_timeout(Some(timeout)).expect("timeout");
    conn.set_write_timeout(Some(timeout)).expect("timeout");
    let mut req = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (k, v) in headers {
        let _ = write!(req, "{k}: {v}\r\n");
    }
    req += "\r\n";
    conn.write_all(req.as_bytes()).expect("send GET");
    let mut buf = vec![0u8; 64 * 1024];
    let mut all = Vec::new();
    let mut first_byte = None;
    loop {
        let got = conn.read(&mut buf).expect("read answer");
        if got == 0 {
            break;
        }
        first_byte.get_or_insert_with(|| t.elapsed());
        all.extend_from_slice(&buf[..got]);
    }
    let total = t.elapsed();
    let head_end = all
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("an HTTP head");
    let head = String::from_utf8_lossy(&all[..head_end]);
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = &all[head_end + 4..];
    let body_bytes = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunked_len(body)
    } else {
        body.len()
    };
    Fetched {
        status,
        body_bytes,
        first_byte: first_byte.unwrap_or(total),
        total,
    }
}

/// The length of a chunked body once its chunk lines are taken out.
fn dechunked_len(mut body: &[u8]) -> usize {
    let mut len = 0;
    loop {
        let line_end = body
            .windows(2)
            .position(|w| w == b"\r\n")
            .expect("a chunk size line");
        let line = String::from_utf8_lossy(&body[..line_end]);
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16).expect("a chunk size");
        if size == 0 {
            return len;
        }
        len += size;
        body = &body[line_end + 2 + size + 2..];
    }
}

/// One request to `/` on a new connection: its latency, or why it failed.
fn probe_once(port: u16) -> Result<Duration, String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let timeout = Duration::from_secs(5);
    let t = Instant::now();
    let mut conn = TcpStream::connect_timeout(&addr, timeout).map_err(|e| e.to_string())?;
    conn.set_read_timeout(Some(timeout))
        .map_err(|e| e.to_string())?;
    conn.write_all(b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    conn.read_to_end(&mut reply).map_err(|e| e.to_string())?;
    if !reply.starts_with(b"HTTP/1.1 200") {
        return Err(String::from_utf8_lossy(&reply[..reply.len().min(40)]).into_owned());
    }
    Ok(t.elapsed())
}

/// A probe thread: a request every [`PROBE_EVERY`] until stopped.
struct Probe {
    stop: Arc<AtomicBool>,
    thread: thread::JoinHandle<Latencies>,
}

/// The probe's latencies, in ms, and its failures.
#[derive(Default)]
struct Latencies {
    ms: Vec<f64>,
    failures: u64,
}

impl Latencies {
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.ms.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return f64::NAN;
        }
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        v[i]
    }

    fn show(&self) -> String {
        format!(
            "p50 {}, p99 {}, max {} ({} requests{})",
            millis(self.percentile(0.5)),
            millis(self.percentile(0.99)),
            millis(self.percentile(1.0)),
            thousands(self.ms.len() as f64),
            if self.failures > 0 {
                format!(", {} failed", self.failures)
            } else {
                String::new()
            }
        )
    }
}

impl Probe {
    fn start(port: u16) -> Probe {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut out = Latencies::default();
            let mut next = Instant::now();
            while !flag.load(Ordering::Relaxed) {
                match probe_once(port) {
                    Ok(d) => out.ms.push(d.as_secs_f64() * 1e3),
                    Err(_) => out.failures += 1,
                }
                next += PROBE_EVERY;
                let now = Instant::now();
                if next > now {
                    thread::sleep(next - now);
                } else {
                    // Late (a slow answer): no burst to catch up.
                    next = now;
                }
            }
            out
        });
        Probe { stop, thread }
    }

    fn stop(self) -> Latencies {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("probe thread")
    }

    /// The probe over `length` of an otherwise idle nginx.
    fn idle(port: u16, length: Duration) -> Latencies {
        let p = Probe::start(port);
        thread::sleep(length);
        p.stop()
    }
}

/// Each worker's memory, in KiB, worker 0 first (by pid: nginx forks
/// them in order).
fn workers_memory(nginx: &Nginx) -> Vec<Memory> {
    let mut pids = nginx.worker_pids();
    pids.sort_unstable();
    pids.into_iter().map(memory).collect()
}

fn show_memory(workers: &[Memory]) -> String {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let each: Vec<String> = workers
        .iter()
        .map(|m| format!("{:.1}/{:.1}/{:.1}", mib(m.rss), mib(m.anon), mib(m.shmem)))
        .collect();
    each.join(" + ")
}

/// The zone's `crowdsec` block from the endpoint.
fn crowdsec_stats(port: u16, zone: &str) -> Json {
    let reply = get(port, &format!("/authban?zone={zone}&limit=1"));
    assert_eq!(reply.status(), Some(200), "GET /authban: {reply:?}");
    let json = Json::parse(&reply.text()).expect("GET /authban: JSON");
    json.get("crowdsec").clone()
}

fn two_workers() -> crate::common::NginxOptions {
    Nginx::options().workers(2).error_log_level("notice")
}

/// The smallest zone (in MiB) whose capacity holds `n` addresses, found on
/// nginx without the bouncer, with that nginx (kept for the idle probe).
fn sized_zone(n: u64) -> (u64, ZoneStats, Nginx) {
    // About 20,600 addresses per MiB (part 2).
    let mut mib = (n / 20_000).max(1);
    loop {
        let nginx = two_workers().start(&block("cs", &format!("{mib}m"), ""));
        let z = zone_stats(nginx.port(), "cs");
        if z.capacity >= n {
            return (mib, z, nginx);
        }
        drop(nginx);
        mib += 1;
        assert!(mib <= 64, "no zone up to 64m holds {n} addresses");
    }
}

/// 100,000 decisions at startup.
fn startup_load(cfg: &Config, lapi: &Lapi, s: &mut Section) {
    let n = decisions(cfg);
    let import_time = import(lapi, n);
    s.info(
        &format!(
            "{} ban decisions imported into the LAPI (`cscli decisions import`, CSV)",
            thousands(n as f64)
        ),
        format!(
            "{:.1} s ({} decisions/s)",
            import_time.as_secs_f64(),
            thousands(n as f64 / import_time.as_secs_f64())
        ),
    );
    // The startup answer as a plain bouncer gets it, with a key of its own.
    let key = lapi.bouncer_key("bench-measure");
    let answer = fetch(
        lapi.port(),
        "/v1/decisions/stream?startup=true",
        &[("X-Api-Key", &key)],
    );
    assert_eq!(answer.status, 200, "GET /v1/decisions/stream?startup=true");
    let per = answer.body_bytes as f64 / n as f64;
    s.check(
        "startup answer (`GET /v1/decisions/stream?startup=true`) size",
        format!(
            "{} bytes ({:.1} MiB, {per:.0} bytes/decision)",
            thousands(answer.body_bytes as f64),
            answer.body_bytes as f64 / (1 << 20) as f64
        ),
        "<= 64 MiB (the module's answer cap)",
        answer.body_bytes <= MAX_ANSWER,
    );
    s.check(
        "LAPI's time to answer startup=true (first byte / whole answer)",
        format!(
            "{} / {}",
            millis(answer.first_byte.as_secs_f64() * 1e3),
            millis(answer.total.as_secs_f64() * 1e3)
        ),
        "< 10 s (the module's exchange deadline)",
        answer.total < Duration::from_millis(DEADLINE_MS),
    );

    // Before: the same nginx, zone and location, without the bouncer.
    let (mib, zone, plain) = sized_zone(n);
    let before = Probe::idle(plain.port(), IDLE_PROBE);
    let memory_plain = workers_memory(&plain);
    drop(plain);

    let line = crowdsec_line(lapi, "bench-load", "cs", "10s");
    let t0 = Instant::now();
    let nginx = two_workers().start(&block("cs", &format!("{mib}m"), &line));
    let started = t0.elapsed();
    let probe = Probe::start(nginx.port());
    let memory_start = workers_memory(&nginx);
    let mut first_ban = None;
    let mut polls = 0u64;
    let (loaded, last) = loop {
        let z = zone_stats(nginx.port(), "cs");
        polls += 1;
        if z.bans > 0 && first_ban.is_none() {
            first_ban = Some(t0.elapsed());
        }
        if z.bans >= n {
            break (Some(t0.elapsed()), z);
        }
        if t0.elapsed() > LOAD_LIMIT {
            break (None, z);
        }
        thread::sleep(Duration::from_millis(50));
    };
    let during = probe.stop();
    let memory_loaded = workers_memory(&nginx);
    let after = Probe::idle(nginx.port(), IDLE_PROBE);
    // The next pull (10 s after the first): what changed since, nothing.
    let next_pull = crate::common::wait_until(Duration::from_secs(20), || {
        crowdsec_stats(nginx.port(), "cs").u64("pulls") >= 2
    });
    let memory_next = workers_memory(&nginx);
    let cs = crowdsec_stats(nginx.port(), "cs");
    let z = zone_stats(nginx.port(), "cs");
    drop(nginx);

    let secs = |d: Duration| format!("{:.2} s", d.as_secs_f64());
    s.info(
        "zone for the load",
        format!(
            "`cs:{mib}m`, capacity {} addresses ({:.1} bytes per ban at {} bans)",
            thousands(zone.capacity as f64),
            (mib << 20) as f64 / n as f64,
            thousands(n as f64)
        ),
    );
    match loaded {
        Some(all) => s.info(
            &format!(
                "nginx start -> zone holds all {} bans (2 workers, interval=10s)",
                thousands(n as f64)
            ),
            format!(
                "{} (first ban seen at {}; nginx up at {})",
                secs(all),
                first_ban.map_or("-".into(), secs),
                secs(started)
            ),
        ),
        None => s.check(
            &format!("nginx start -> zone holds all {} bans", thousands(n as f64)),
            format!(
                "not within {} s: {} bans, crowdsec {}",
                LOAD_LIMIT.as_secs(),
                thousands(last.bans as f64),
                compact(&cs)
            ),
            "all",
            false,
        ),
    }
    s.info("probe latency, nginx without the bouncer", before.show());
    let slowed = during.failures > 0
        || during.percentile(1.0)
            > (before.percentile(1.0) * 2.0).max(before.percentile(1.0) + 5.0);
    s.check(
        "probe latency during the load (nginx start -> all bans)",
        during.show(),
        "no request slowed (max <= 2 x idle max or + 5 ms; none failed)",
        !slowed,
    );
    s.info("probe latency after the load (zone full)", after.show());
    s.info(
        "worker memory, MiB RSS/anon/shared of worker 0 + worker 1: no bouncer; bouncer at start; all bans; after the next pull",
        format!(
            "{}; {}; {}; {}",
            show_memory(&memory_plain),
            show_memory(&memory_start),
            show_memory(&memory_loaded),
            show_memory(&memory_next)
        ),
    );
    s.info(
        "the zone and its bouncer at the end",
        format!(
            "bans {}, evicted {}, bans_dropped {}; crowdsec {}{}",
            thousands(z.bans as f64),
            z.evicted,
            z.bans_dropped,
            compact(&cs),
            if next_pull {
                ""
            } else {
                " (no second pull within 20 s)"
            }
        ),
    );
    s.note(format!(
        "Startup load: {} decisions (`4h,ip,ban,10.x.y.z` lines of a CSV, distinct IPv4 \
         addresses) imported with `cscli decisions import -i FILE` in chunks of {} \
         (one cscli run per chunk; `cscli decisions add` would cost a process and a \
         login per decision). The startup answer was fetched once by a plain HTTP client with a \
         bouncer key of its own, before nginx started. nginx: 2 workers, zone \
         `cs:{mib}m` (the smallest whole MiB whose `capacity` holds them), \
         `authban_crowdsec zone=cs ... interval=10s`; time from spawning nginx to \
         `bans` = {} in `GET /authban?zone=cs` (polled every 50 ms: {polls} polls). \
         The probe: `GET /` (`authban cs; empty_gif;`) on a new connection every \
         {} ms from another thread, for {} s on the same configuration without \
         `authban_crowdsec` (before), from nginx's start until the zone held every ban \
         (during: most of it is the LAPI making its answer, during which nginx is \
         idle), and {} s after. Memory (`/proc/PID/status`): VmRSS, RssAnon (private: \
         worker 0 pulls, so its heap holds the answer while it is read and applied, \
         and the bouncer's memory of decision ids after), RssShmem (the zone's pages \
         this worker touched).",
        thousands(n as f64),
        thousands(IMPORT_CHUNK as f64),
        thousands(n as f64),
        PROBE_EVERY.as_millis(),
        IDLE_PROBE.as_secs(),
        IDLE_PROBE.as_secs(),
    ));
}

/// The module's answer cap (`MAX_ANSWER` in src/nginx/crowdsec/pull.rs).
const MAX_ANSWER: usize = 64 << 20;
/// The module's exchange deadline (`DEADLINE_MS` in
/// src/nginx/crowdsec/exchange.rs).
const DEADLINE_MS: u64 = 10_000;

/// The `crowdsec` block's counters on one line.
fn compact(cs: &Json) -> String {
    let mut out = Vec::new();
    for key in [
        "connected",
        "pulls",
        "decisions_applied",
        "decisions_deleted",
        "decisions_ignored",
        "decisions_refused",
        "decisions_malformed",
        "errors",
    ] {
        if let Some(v) = cs.opt(key) {
            out.push(format!("{key} {}", v.value()));
        }
    }
    if let Some(e) = cs.opt("last_error") {
        out.push(format!("last_error {}", e.value()));
    }
    out.join(", ")
}
