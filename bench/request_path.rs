//! Part 1: what authban costs a request it lets through.
//!
//! Every side serves the same `empty_gif` location (a content handler, so
//! nginx runs the access phase, where authban checks the client; `return`
//! would answer before it):
//!
//! - (a) the module not loaded;
//! - (b) loaded, `authban z;` in the location, the client not banned;
//! - (c) as (b), the zone already tracking 100,000 other addresses (filled
//!   through realip with one failure each, no bans);
//! - (d) as (c) with 10 active bans of other addresses: with no ban at all
//!   the access check returns before looking the client up, so (d) is the
//!   one that pays for the lookup in a full table.
//!
//! Throughput: wrk rounds alternating the sides. Instructions: callgrind
//! on (a), (b) and (b) with 10 bans.

use crate::api::{ban, pinned_nginx, zone_stats, REALIP};
use crate::callgrind;
use crate::common::{get, Nginx};
use crate::machine::{cpu_summary, CpuUse, CpuWatch};
use crate::report::Section;
use crate::stats::{percent, ratio, thousands, Samples};
use crate::wrk::{self, Load};
use crate::Config;

/// Tracked addresses in (c) and (d).
const FILL: u64 = 100_000;
/// Bans in (d) and in the callgrind side "b + bans".
const BANS: u32 = 10;

fn plain_block() -> String {
    format!(
        "{REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ empty_gif; }}
    }}"
    )
}

fn authban_block() -> String {
    format!(
        "authban_zone zone=z:10m maxretry=65535;
    {REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ authban z; empty_gif; }}
        # Failures to fill the zone with: auth_basic answers 401 to a
        # request without credentials (the file is never read).
        location /fill {{
            authban z;
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
        }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

fn start(module: bool) -> Nginx {
    let nginx = if module {
        pinned_nginx().start(&authban_block())
    } else {
        pinned_nginx().without_module().start(&plain_block())
    };
    let reply = get(nginx.port(), "/");
    assert_eq!(reply.status(), Some(200), "GET / on the bench nginx");
    nginx
}

/// Makes zone `z` track `n` addresses, with wrk and `addresses.lua` in
/// 1-second runs cycling through the same `n` addresses (a zone with
/// `maxretry=65535` never bans them for failing more than once).
fn fill(nginx: &Nginx, n: u64) -> u64 {
    let url = format!("http://127.0.0.1:{}/fill", nginx.port());
    let mut sent = 0;
    for _ in 0..60 {
        if sent >= n && zone_stats(nginx.port(), "z").tracked >= n {
            break;
        }
        sent += wrk::run(&Load::new(url.clone(), 1).addresses_mod(sent, n)).generated;
    }
    let z = zone_stats(nginx.port(), "z");
    assert!(
        z.tracked == n && z.evicted == 0 && z.bans == 0,
        "filling zone z: {z:?}"
    );
    z.tracked
}

fn ban_others(port: u16) {
    for i in 1..=BANS {
        ban(port, "z", &format!("198.51.100.{i}"), "1h");
    }
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("1. Request path");
    let a = start(false);
    let b = start(true);
    let c = start(true);
    let d = start(true);
    let tracked_c = fill(&c, FILL);
    let tracked_d = fill(&d, FILL);
    ban_others(d.port());

    let sides = [("a", &a), ("b", &b), ("c", &c), ("d", &d)];
    let workers: Vec<i32> = sides.iter().map(|(_, n)| n.worker_pids()[0]).collect();
    let mut rps: Vec<Samples> = sides.iter().map(|_| Samples::new()).collect();
    // The worker's CPU use during the runs: busy near 100 % means nginx
    // sets the pace.
    let mut cpu: Vec<Vec<CpuUse>> = sides.iter().map(|_| Vec::new()).collect();
    let mut errors = 0;
    for round in 0..cfg.rounds() {
        // a b c d, then d c b a: drift over time hits every side alike.
        let mut order: Vec<usize> = (0..sides.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let url = format!("http://127.0.0.1:{}/", sides[i].1.port());
            let watch = CpuWatch::start(workers[i]);
            let t = wrk::run(&Load::new(url, cfg.secs(5)));
            cpu[i].push(watch.stop(t.requests));
            errors += t.status_errors + t.socket_errors();
            rps[i].push(t.rps());
        }
    }
    let ratio_to_a = |i: usize| {
        let mut r = Samples::new();
        for (x, base) in rps[i].values().iter().zip(rps[0].values()) {
            r.push(x / base);
        }
        r
    };
    for (i, (name, _)) in sides.iter().enumerate() {
        s.info(&format!("({name}) requests/s"), rps[i].show(thousands));
    }
    let labels = [
        "",
        "b/a: loaded, not banned",
        "c/a: 100,000 tracked",
        "d/a: 100,000 tracked + 10 bans",
    ];
    for (i, label) in labels.iter().enumerate().skip(1) {
        let r = ratio_to_a(i);
        s.check(label, r.show(ratio), ">= 0.97", r.median() >= 0.97);
    }
    let cpu: Vec<String> = sides
        .iter()
        .zip(&cpu)
        .map(|((name, _), runs)| format!("({name}) {}", cpu_summary(runs)))
        .collect();
    s.note(format!(
        "The nginx worker during the runs (medians): {}. Busy near 100 % means nginx \
         set the pace; lower, that wrk or other load on the machine did. Most of the \
         worker's time goes to the kernel (loopback TCP, epoll), which authban does not \
         touch: a difference in user-space work shows diluted in requests/s, and the \
         kernel's time per request also moves with how many requests each epoll_wait \
         returns. The instruction counts below show authban's cost undiluted.",
        cpu.join("; ")
    ));
    s.note(format!(
        "wrk -t1 -c32, {} rounds x {} s per side, sides alternated (a b c d, then d c b a); \
         one nginx worker, `access_log off`, an `empty_gif` location. Ratios are per \
         round (each side against the (a) run of the same round), median (min–max). \
         Zones: (c) tracked {} and (d) {} addresses before the runs, (d) with {BANS} \
         active bans. Non-200 responses and socket errors over all runs: {errors}.",
        cfg.rounds(),
        cfg.secs(5),
        thousands(tracked_c as f64),
        thousands(tracked_d as f64),
    ));
    drop((a, b, c, d));

    instructions(cfg, &mut s);
    s
}

/// (b)'s nginx with `authban off` in the location: the module loaded,
/// the same zones, no check.
fn start_off() -> Nginx {
    let block = authban_block().replacen(
        "location / { authban z; empty_gif; }",
        "location / { authban off; empty_gif; }",
        1,
    );
    assert!(block.contains("authban off;"), "{block}");
    let nginx = pinned_nginx().start(&block);
    assert_eq!(
        get(nginx.port(), "/").status(),
        Some(200),
        "GET / on the bench nginx"
    );
    nginx
}

/// Callgrind: (a), (b) with `authban off`, (b), and (b) with bans, each
/// with N1 and N2 requests.
fn instructions(cfg: &Config, s: &mut Section) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let a = callgrind::setup("a", start(false));
    // (a)'s configuration with `load_module` and nothing else of authban.
    let loaded = callgrind::setup("a-loaded", pinned_nginx().start(&plain_block()));
    let off = callgrind::setup("off", start_off());
    let b = callgrind::setup("b", start(true));
    let b_bans = callgrind::setup("b-bans", start(true));
    let plan = |prepare| callgrind::Plan::get("/", 200, (warm_up, measured), prepare);
    let ca = callgrind::count(&a, &plan(&|_| {}));
    let cl = callgrind::count(&loaded, &plan(&|_| {}));
    let coff = callgrind::count(&off, &plan(&|_| {}));
    let cb = callgrind::count(&b, &plan(&|_| {}));
    let cd = callgrind::count(&b_bans, &plan(&ban_others));
    let over = |x: f64| x / ca.per_request - 1.0;
    s.info("instructions/request (a)", thousands(ca.per_request));
    s.info(
        "instructions/request (a) with `load_module` alone (no authban directive)",
        format!(
            "{} ({} vs (a))",
            thousands(cl.per_request),
            percent(over(cl.per_request))
        ),
    );
    let over_off = cb.per_request / coff.per_request - 1.0;
    s.info(
        "instructions/request (b), `authban off` in the location",
        format!(
            "{} ({} vs (a))",
            thousands(coff.per_request),
            percent(over(coff.per_request))
        ),
    );
    s.check(
        "instructions/request (b) vs the same nginx with `authban off`",
        format!("{} ({})", thousands(cb.per_request), percent(over_off)),
        "<= +1 %",
        over_off <= 0.01,
    );
    s.check(
        "instructions/request (b) vs (a)",
        format!(
            "{} ({})",
            thousands(cb.per_request),
            percent(over(cb.per_request))
        ),
        "<= +3 %",
        over(cb.per_request) <= 0.03,
    );
    s.info(
        "instructions/request (b) + 10 bans vs (a)",
        format!(
            "{} ({})",
            thousands(cd.per_request),
            percent(over(cd.per_request))
        ),
    );
    // Issue 17: bans in the zone (the lookup path), like tracked addresses
    // and a fleet link (part 6), move a passing request by <= 0.3 %.
    let over_b = cd.per_request / cb.per_request - 1.0;
    s.check(
        "instructions/request (b) + 10 bans vs (b)",
        format!(
            "{} ({}, {:+.0} instructions)",
            thousands(cd.per_request),
            percent(over_b),
            cd.per_request - cb.per_request
        ),
        "<= +0.3 %",
        over_b <= 0.003,
    );
    s.note(format!(
        "Instructions: `valgrind --tool=callgrind` on nginx with `master_process off` \
         (the harness's config otherwise), one keep-alive client sending {warm_up} and \
         then, in a second run, {} requests; per request = (I({}) - I({warm_up})) / \
         {measured}, so start-up, shut-down and the first {warm_up} (warm-up) requests \
         cancel out. Callgrind \
         counts hardly vary (by ~0.2 % run to run): one pair of runs per side. Start-up \
         + {warm_up} requests: (a) {}, (b) {} instructions.",
        warm_up + measured,
        warm_up + measured,
        thousands(ca.base as f64),
        thousands(cb.base as f64),
    ));
    s.note(format!(
        "Under callgrind the zone of (b) + 10 bans holds the {BANS} bans but not the \
         100,000 tracked addresses of (c) and (d) (nginx starts anew under valgrind, and \
         filling it there would take 100,000 requests under valgrind): with no ban the \
         access check never reads the table, and with bans it reads the zone's ban \
         filter and its ban count, whose cost does not depend on how many addresses \
         are tracked. A fleet link's cost to a passing request is part 6's."
    ));
    let work = callgrind::module_work(&cb);
    if let Some(work) = work {
        s.info(
            "authban's own work per request in (b)",
            format!(
                "{work:.0} instructions ({:.1} % of (a))",
                work / ca.per_request * 100.0
            ),
        );
    }
    // Before issue 17 (bench/results.md at dc2666b, and the pool cleanup
    // the decision's record then needed, 2 allocations a request).
    let before_pass = [
        ("access phase", Some(410.0)),
        ("precontent phase", Some(6.0)),
        ("header filter", Some(22.0)),
        ("failure count", Some(0.0)),
        ("log phase", Some(21.0)),
    ];
    let before_bans = [
        ("access phase", Some(489.0)),
        ("precontent phase", Some(6.0)),
        ("header filter", Some(22.0)),
        ("failure count", Some(0.0)),
        ("log phase", Some(21.0)),
    ];
    let out = callgrind::module_calls_out(&cb);
    s.check(
        "instructions per request authban's entry points spend outside the module in (b) (allocations, locks, calls into nginx)",
        format!("{out:.0}"),
        "0 (no allocation)",
        out < 0.5,
    );
    for (label, count, before) in [
        ("(b)", &cb, &before_pass[..]),
        ("(b) + 10 bans", &cd, &before_bans[..]),
    ] {
        s.note(callgrind::entry_table(label, count, before));
        s.note(callgrind::module_table(label, count));
    }
    let loaded_outside: Vec<String> = callgrind::outside_differences(&ca, &cl, 5)
        .iter()
        .map(|(f, d)| format!("`{f}` {d:+.0}"))
        .collect();
    s.note(format!(
        "(a) with `load_module` alone - (a) = {:+.0} instructions per request, with no \
         authban directive at all (its header filter and phase handlers run and find \
         nothing to do), mostly in (self instructions per request): {}.",
        cl.per_request - ca.per_request,
        loaded_outside.join(", ")
    ));
    if let Some(work) = work {
        let outside: Vec<String> = callgrind::outside_differences(&ca, &cb, 5)
            .iter()
            .map(|(f, d)| format!("`{f}` {d:+.0}"))
            .collect();
        s.note(format!(
            "(b) - (a) = {:+.0} instructions per request, while authban's own work is \
             {work:.0}: the rest differs by {:+.0}, mostly in (self instructions per \
             request, (b) - (a)): {}. nginx and libc run a little differently with the \
             module loaded (a different heap after the module's start-up allocations, a \
             bigger per-request module context, one more access-phase handler), which \
             the per-request difference includes.",
            cb.per_request - ca.per_request,
            cb.per_request - ca.per_request - work,
            outside.join(", ")
        ));
    }
}
