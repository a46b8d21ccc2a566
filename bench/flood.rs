//! Part 3: a flood of 1,000,000 distinct failing clients through a 1 MiB
//! zone (about 20,000 slots), against the same traffic with authban off.
//!
//! One nginx, two locations answering 401 from `auth_basic` (the access
//! check of authban runs before it, then the 401 is counted): `/on` with
//! `authban flood;`, `/off` with `authban off;`. wrk's `addresses.lua`
//! gives every request a new client address (IPv4 and IPv6 in turn) through
//! realip. Ten addresses are banned through the endpoint before the flood;
//! afterwards they must still be refused.

use std::fs;
use std::time::{Duration, Instant};

use crate::api::{ban, pinned_nginx, zone_stats, REALIP};
use crate::callgrind;
use crate::common::{get_from, Nginx};
use crate::machine::{cpu_summary, memory, CpuUse, CpuWatch, Memory};
use crate::report::Section;
use crate::stats::{percent, ratio, thousands, Samples};
use crate::wrk::{self, Load, Totals};
use crate::Config;

const BANNED: u32 = 10;

fn block() -> String {
    format!(
        "authban_zone zone=flood:1m maxretry=5 findtime=10m bantime=1h;
    {REALIP}
    # Only 5xx responses are logged: the log's line count is the 5xx count.
    map $status $server_error {{ ~^5 1; default 0; }}
    log_format status '$remote_addr $status';
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /on {{
            authban flood;
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
            access_log {{dir}}/5xx.log status if=$server_error;
        }}
        location /off {{
            authban off;
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
            access_log {{dir}}/5xx.log status if=$server_error;
        }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

/// Client address i, as `bench/wrk/addresses.lua` makes them: IPv4 and
/// IPv6 in turn.
fn client_address(i: u64) -> String {
    let k = i / 2;
    if i % 2 == 0 {
        format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255)
    } else {
        format!("2001:db8:{:x}:{:x}::1", (k >> 16) & 0xffff, k & 0xffff)
    }
}

fn banned(i: u32) -> String {
    format!("198.51.100.{i}")
}

/// How many of the banned addresses `/on` refuses with 403.
fn still_refused(port: u16) -> u32 {
    (1..=BANNED)
        .filter(|&i| get_from(port, "/on", &banned(i)).status() == Some(403))
        .count() as u32
}

/// One side's wrk runs.
struct Side {
    path: &'static str,
    rps: Samples,
    /// Addresses generated, over all runs.
    sent: u64,
    totals: Vec<Totals>,
    /// The worker's CPU use in measured runs.
    cpu: Vec<CpuUse>,
}

impl Side {
    fn new(path: &'static str) -> Self {
        Side {
            path,
            rps: Samples::new(),
            sent: 0,
            totals: Vec::new(),
            cpu: Vec::new(),
        }
    }

    /// A run of `secs` from address `start` on; `measured` runs count in
    /// the requests/s figures.
    fn run(&mut self, nginx: &Nginx, start: u64, secs: u64, measured: bool) -> Totals {
        let url = format!("http://127.0.0.1:{}{}", nginx.port(), self.path);
        let watch = CpuWatch::start(nginx.worker_pids()[0]);
        let t = wrk::run(&Load::new(url, secs).addresses(start));
        let cpu = watch.stop(t.requests);
        self.sent += t.generated;
        if measured {
            self.rps.push(t.rps());
            self.cpu.push(cpu);
        }
        self.totals.push(t);
        t
    }

    fn ratio_to(&self, base: &Side) -> Samples {
        let mut r = Samples::new();
        for (x, b) in self.rps.values().iter().zip(base.rps.values()) {
            r.push(x / b);
        }
        r
    }
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("3. Flood");
    let nginx = pinned_nginx().start(&block());
    let port = nginx.port();
    let worker = nginx.worker_pids()[0];
    for i in 1..=BANNED {
        ban(port, "flood", &banned(i), "1h");
    }
    assert_eq!(still_refused(port), BANNED, "bans before the flood");

    let target = cfg.flood_addresses();
    let mut on = Side::new("/on");
    let mut off = Side::new("/off");
    off.run(&nginx, 0, 1, false); // warm-up: connections, pools, code
    let before = memory(worker);

    // Rounds alternate the sides (on off, off on, ...), both sending the
    // same addresses, from `next` on; /on never sees an address twice. Each
    // run lasts long enough for the rounds left to send `target` addresses
    // through /on at the rate seen so far.
    let started = Instant::now();
    let mut next = 0;
    let mut rate = 0.0;
    let mut secs = cfg.secs(4);
    for round in 0..cfg.rounds() {
        if rate > 0.0 {
            let left = target.saturating_sub(on.sent) as f64;
            let rounds_left = (cfg.rounds() - round) as f64;
            secs = ((left / rate / rounds_left).ceil() as u64).clamp(cfg.secs(4), 15);
        }
        let start = next;
        if round % 2 == 1 {
            off.run(&nginx, start, secs, true);
        }
        let t = on.run(&nginx, start, secs, true);
        if round % 2 == 0 {
            off.run(&nginx, start, secs, true);
        }
        next = start + t.generated + 1;
        rate = t.generated as f64 / t.seconds;
    }
    // Top up to the target if the machine was slower than planned.
    while on.sent < target && started.elapsed() < Duration::from_secs(150) {
        let left = (target - on.sent) as f64;
        let secs = ((left / rate).ceil() as u64 + 1).clamp(1, 30);
        let t = on.run(&nginx, next, secs, false);
        next += t.generated + 1;
    }
    let after = memory(worker);

    let zone = zone_stats(port, "flood");
    let refused = still_refused(port);
    let log = nginx.error_log();
    let crashes = log.matches("exited on signal").count();
    let same_worker = nginx.worker_pids() == vec![worker];
    let server_errors = fs::read_to_string(nginx.dir().join("5xx.log"))
        .map(|t| t.lines().count())
        .unwrap_or(0);
    let socket_errors: u64 = on
        .totals
        .iter()
        .chain(&off.totals)
        .map(Totals::socket_errors)
        .sum();
    let non_401: u64 = on
        .totals
        .iter()
        .chain(&off.totals)
        .map(|t| t.requests - t.status_errors)
        .sum();

    s.info("requests/s, authban on", on.rps.show(thousands));
    s.info("requests/s, authban off", off.rps.show(thousands));
    let r = on.ratio_to(&off);
    s.check("on/off", r.show(ratio), ">= 0.90", r.median() >= 0.90);
    s.check(
        "distinct addresses through the zone",
        format!(
            "{} sent; zone counted {} failures, evicted {}, tracks {}",
            thousands(on.sent as f64),
            thousands(zone.failures as f64),
            thousands(zone.evicted as f64),
            thousands(zone.tracked as f64)
        ),
        ">= 1,000,000",
        zone.failures >= target,
    );
    let mem = |m: &Memory| {
        format!(
            "{} KiB (private {}, shared {})",
            thousands(m.rss as f64),
            thousands(m.anon as f64),
            thousands(m.shmem as f64)
        )
    };
    // Flat: the worker's private memory does not grow with the addresses
    // seen; VmRSS may grow by the 1 MiB zone's pages it touches.
    let grew = after.anon.saturating_sub(before.anon);
    s.check(
        "worker RSS before -> after",
        format!("{} -> {}", mem(&before), mem(&after)),
        "flat (private memory +< 1 MiB)",
        grew < 1024,
    );
    s.check(
        "5xx responses; crashes",
        format!(
            "{server_errors}; {crashes} (worker pid {})",
            if same_worker { "unchanged" } else { "CHANGED" }
        ),
        "0; 0",
        server_errors == 0 && crashes == 0 && same_worker,
    );
    s.check(
        "bans made before the flood, refused after it",
        format!(
            "{refused}/{BANNED} (zone: {} active bans, {} dropped)",
            zone.bans, zone.bans_dropped
        ),
        "10/10",
        refused == BANNED,
    );
    s.note(format!(
        "Zone `flood:1m` (capacity {}); every request from a new address (IPv4 and IPv6 \
         in turn, `bench/wrk/addresses.lua`), each answered 401 by auth_basic and counted. \
         wrk -t1 -c32, {} rounds alternating /on and /off, both sides of a round sending \
         the same addresses (runs of 4 to 15 s, sized so that /on sees at least {} \
         addresses{}), one worker. Requests/s ratios are per round. \
         Memory is VmRSS of the worker (`/proc/PID/status`), which includes the shared \
         zone's pages as they are touched, and RssAnon (private). wrk socket errors: \
         {socket_errors}; responses other than 401: {non_401}.",
        thousands(zone.capacity as f64),
        cfg.rounds(),
        thousands(target as f64),
        if on.totals.len() > cfg.rounds() {
            ", with unmeasured top-up runs"
        } else {
            ""
        },
    ));
    drop(nginx);
    instructions(cfg, &mut s, &on.cpu, &off.cpu);
    s
}

/// Callgrind: instructions per request of /on and /off in a steady flood:
/// the warm-up fills the zone, so every measured request is a new address
/// that makes the zone forget another.
fn instructions(cfg: &Config, s: &mut Section, on_cpu: &[CpuUse], off_cpu: &[CpuUse]) {
    let nginx = pinned_nginx().start(&block());
    let capacity = zone_stats(nginx.port(), "flood").capacity;
    let setup = callgrind::setup("flood", nginx);
    let (_, measured) = cfg.callgrind_requests();
    let warm_up = capacity + 1000;
    let count = |path| {
        callgrind::count(
            &setup,
            &callgrind::Plan {
                path,
                status: 401,
                warm_up,
                measured,
                prepare: &|_| {},
                client: Some(&client_address),
                form: None,
            },
        )
    };
    let on = count("/on");
    let off = count("/off");
    s.info(
        "instructions/request, /on vs /off (callgrind)",
        format!(
            "{} vs {} ({})",
            thousands(on.per_request),
            thousands(off.per_request),
            percent(on.per_request / off.per_request - 1.0)
        ),
    );
    s.note(format!(
        "The worker during the runs (medians): /on {}; /off {}.",
        cpu_summary(on_cpu),
        cpu_summary(off_cpu)
    ));
    s.note(format!(
        "Instructions (callgrind, as in part 1): {warm_up} requests from distinct addresses \
         fill the zone, then {measured} more are measured, each from a new address that \
         is counted and makes the zone forget one. The requests/s above do not follow \
         the instructions: most of the worker's time goes to the kernel, whose time per \
         request moves with how many requests each epoll_wait returns; and where the \
         worker is busy less than 100 % (see above), wrk, on its own core, set the pace, \
         and wrk gets more done per request when nginx answers in bigger batches. So a \
         costlier path in nginx need not run slower in requests/s here."
    ));
    s.note(callgrind::module_table("/on", &on));
}
