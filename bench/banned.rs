//! Part 4: how fast a banned address is turned away.
//!
//! One client address (realip header fixed to an address banned through
//! the endpoint) hammers authban's refusal, against plain nginx (module not
//! loaded) answering the same status with `return`:
//!
//! - 403: `authban_status 403` (default) vs `return 403`;
//! - 444: `authban_status 444` vs `return 444`. nginx closes the connection
//!   without a response, so wrk completes no request: it counts a read
//!   error per refusal and reconnects. The figure is closed connections/s
//!   (a new TCP connection each), not requests/s.
//!
//! wrk's ratios on 2 busy cores swing by ±20 % from run to run, so each
//! comparison also gets its instructions per refusal (callgrind, as in
//! part 1), and the target is judged on those.

use crate::api::{ban, pinned_nginx, REALIP};
use crate::callgrind;
use crate::common::{get_from, Nginx};
use crate::report::Section;
use crate::stats::{percent, ratio, thousands, Samples};
use crate::wrk::{self, Load, Totals};
use crate::Config;

const BANNED: &str = "203.0.113.9";

fn authban_block() -> String {
    format!(
        "authban_zone zone=b:1m;
    {REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ authban b; empty_gif; }}
        location /close {{ authban b; authban_status 444; empty_gif; }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

fn plain_block() -> String {
    format!(
        "{REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location / {{ return 403; }}
        location /close {{ return 444; }}
    }}"
    )
}

/// `return` with the module loaded and the same zone declared: the side the
/// refusal targets are judged against (issue 17), as the module's presence
/// alone changes nginx's own per-request work (see part 1).
fn loaded_block() -> String {
    format!("authban_zone zone=b:1m;\n    {}", plain_block())
}

fn check(nginx: &Nginx) {
    let port = nginx.port();
    assert_eq!(get_from(port, "/", BANNED).status(), Some(403));
    assert!(get_from(port, "/close", BANNED).is_closed());
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("4. Banned traffic");
    let authban = pinned_nginx().start(&authban_block());
    ban(authban.port(), "b", BANNED, "1h");
    let plain = pinned_nginx().without_module().start(&plain_block());
    check(&authban);
    check(&plain);

    // Sides: (nginx, path, figure of a run).
    let refusals = |t: &Totals| t.rps();
    let closes = |t: &Totals| t.closes_per_sec();
    type Figure<'a> = &'a dyn Fn(&Totals) -> f64;
    let sides: [(&Nginx, &str, Figure); 4] = [
        (&plain, "/", &refusals),
        (&authban, "/", &refusals),
        (&plain, "/close", &closes),
        (&authban, "/close", &closes),
    ];
    let mut figures: Vec<Samples> = sides.iter().map(|_| Samples::new()).collect();
    let mut odd = Vec::new();
    for round in 0..cfg.rounds() {
        let mut order: Vec<usize> = (0..sides.len()).collect();
        if round % 2 == 1 {
            order.reverse();
        }
        for i in order {
            let (nginx, path, figure) = sides[i];
            let url = format!("http://127.0.0.1:{}{path}", nginx.port());
            let t = wrk::run(&Load::new(url, cfg.secs(3)).header("X-Forwarded-For", BANNED));
            figures[i].push(figure(&t));
            // 403 sides: every response a 403 (wrk's status errors), no
            // socket error. 444 sides: no response at all.
            let clean = if path == "/" {
                t.status_errors == t.requests && t.socket_errors() == 0
            } else {
                t.requests == 0 && t.connect_errors + t.write_errors + t.timeouts == 0
            };
            if !clean {
                odd.push(format!("{path} side {i}: {t:?}"));
            }
        }
    }
    let per_round = |i: usize, base: usize| {
        let mut r = Samples::new();
        for (x, b) in figures[i].values().iter().zip(figures[base].values()) {
            r.push(x / b);
        }
        r
    };
    s.info(
        "403/s, plain nginx `return 403`",
        figures[0].show(thousands),
    );
    s.info(
        "403/s, authban (banned address)",
        figures[1].show(thousands),
    );
    let r403 = per_round(1, 0);
    s.info(
        "authban 403 / return 403 (wrk; judged on instructions below)",
        r403.show(ratio),
    );
    s.info(
        "closed connections/s, plain `return 444`",
        figures[2].show(thousands),
    );
    s.info(
        "closed connections/s, `authban_status 444`",
        figures[3].show(thousands),
    );
    s.info(
        "authban 444 / return 444 (wrk; instructions below)",
        per_round(3, 2).show(ratio),
    );
    s.note(format!(
        "wrk -t1 -c32 with `X-Forwarded-For: {BANNED}` (banned through the endpoint), \
         {} rounds x {} s per side, sides alternated; one worker. A 403 keeps the \
         connection alive, so 403/s are requests/s. With 444 nginx closes the connection \
         without a byte: wrk completes no request, counts one read error per refusal and \
         reconnects, so the figure is closed connections/s (read errors / duration), each \
         a full TCP connect, request, close; it is compared with `return 444` of plain \
         nginx, which does the same work without the module.{}",
        cfg.rounds(),
        cfg.secs(3),
        if odd.is_empty() {
            String::new()
        } else {
            format!(" Unexpected wrk totals: {}", odd.join("; "))
        }
    ));
    drop((authban, plain));
    instructions(cfg, &mut s);
    s
}

/// Callgrind: instructions per refusal of each side, the banned address
/// sent as `X-Forwarded-For` on every request.
fn instructions(cfg: &Config, s: &mut Section) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let authban = callgrind::setup("banned-authban", pinned_nginx().start(&authban_block()));
    let plain = callgrind::setup(
        "banned-plain",
        pinned_nginx().without_module().start(&plain_block()),
    );
    let loaded = callgrind::setup("banned-loaded", pinned_nginx().start(&loaded_block()));
    let banned = |_: u64| BANNED.to_string();
    let ban_it = |port: u16| ban(port, "b", BANNED, "1h");
    let plan = |path, status, prepare| callgrind::Plan {
        path,
        status,
        warm_up,
        measured,
        prepare,
        client: Some(&banned),
        form: None,
    };
    let p403 = callgrind::count(&plain, &plan("/", 403, &|_| {}));
    let a403 = callgrind::count(&authban, &plan("/", 403, &ban_it));
    let p444 = callgrind::count(&plain, &plan("/close", 444, &|_| {}));
    let a444 = callgrind::count(&authban, &plan("/close", 444, &ban_it));
    let l403 = callgrind::count(&loaded, &plan("/", 403, &|_| {}));
    let l444 = callgrind::count(&loaded, &plan("/close", 444, &|_| {}));
    let over = |a: &callgrind::Count, p: &callgrind::Count| a.per_request / p.per_request - 1.0;
    s.info(
        "instructions/refusal, plain `return 403`",
        thousands(p403.per_request),
    );
    s.info(
        "instructions/refusal, authban 403 vs `return 403`",
        format!(
            "{} ({})",
            thousands(a403.per_request),
            percent(over(&a403, &p403))
        ),
    );
    s.info(
        "instructions/refusal, `return 403` with the module loaded",
        thousands(l403.per_request),
    );
    s.check(
        "instructions/refusal, authban 403 vs `return 403`, module loaded",
        format!(
            "{} ({})",
            thousands(a403.per_request),
            percent(over(&a403, &l403))
        ),
        "<= +5 %",
        over(&a403, &l403) <= 0.05,
    );
    s.info(
        "instructions/closed connection, plain `return 444`",
        thousands(p444.per_request),
    );
    s.info(
        "instructions/closed connection, authban 444 vs `return 444`",
        format!(
            "{} ({})",
            thousands(a444.per_request),
            percent(over(&a444, &p444))
        ),
    );
    s.info(
        "instructions/closed connection, `return 444` with the module loaded",
        thousands(l444.per_request),
    );
    s.check(
        "instructions/closed connection, authban 444 vs `return 444`, module loaded",
        format!(
            "{} ({})",
            thousands(a444.per_request),
            percent(over(&a444, &l444))
        ),
        "<= +5 %",
        over(&a444, &l444) <= 0.05,
    );
    s.note(format!(
        "Instructions: callgrind on nginx with `master_process off` as in part 1: \
         {warm_up} and then, in a second run, {} requests from the banned address \
         (banned through the endpoint at the start of both runs on the authban side), \
         per refusal = (I({}) - I({warm_up})) / {measured}. 403: over keep-alive. 444: \
         nginx closes the connection, so every request is a new connection (accept, \
         read, close) on both sides. The 403 target, `>= 0.95` of plain nginx in \
         requests/s before, is judged on instructions (`<= +5 %`, about 1/0.95): wrk's \
         ratios on these 2 shared cores swing by ±20 % run to run.",
        warm_up + measured,
        warm_up + measured,
    ));
    let costs = callgrind::module_functions(&a403);
    let inclusive = |name: &str| {
        costs
            .iter()
            .find(|c| c.function == name)
            .map_or(0.0, |c| c.inclusive)
    };
    s.note(format!(
        "(authban 403) - (return 403) = {:+.0} instructions per refusal, \
         (authban 444) - (return 444) = {:+.0}. `return` answers in the rewrite phase \
         without looking at the client; authban refuses in the access phase after \
         looking the address up: its own functions take {:.0} instructions per \
         refusal (the access handler's checks, the zone's ban filter, and, guarded, the \
         table lookup under the zone's lock with the ban's expiry check: \
         `authban::nginx::base::guard::catch` {:.0} with what it calls, the lock included), \
         then nginx finalizes the request with the status as for `return`.",
        a403.per_request - p403.per_request,
        a444.per_request - p444.per_request,
        costs.iter().map(|c| c.exclusive).sum::<f64>(),
        inclusive("authban::nginx::base::guard::catch"),
    ));
    s.note(callgrind::module_table("a banned address's 403", &a403));
}
