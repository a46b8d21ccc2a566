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

use crate::api::{ban, pinned_nginx, REALIP};
use crate::common::{get_from, Nginx};
use crate::report::Section;
use crate::stats::{ratio, thousands, Samples};
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
    s.check(
        "authban 403 / return 403",
        r403.show(ratio),
        ">= 0.95",
        r403.median() >= 0.95,
    );
    s.info(
        "closed connections/s, plain `return 444`",
        figures[2].show(thousands),
    );
    s.info(
        "closed connections/s, `authban_status 444`",
        figures[3].show(thousands),
    );
    s.info("authban 444 / return 444", per_round(3, 2).show(ratio));
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
    s
}
