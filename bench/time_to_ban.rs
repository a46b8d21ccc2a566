//! Part 5: a brute force against the CloudStack API through nginx.
//!
//! 2,000 bad-signature API calls from one address (realip), as fast as
//! possible, over 1 and over 64 keep-alive connections, to the mock
//! CloudStack (`build/bin/mock-cloudstack`, 401 for a bad signature) with
//! `maxretry=25`. Counted: the 401s the mock itself answered (its
//! `/_mock/stats`), i.e. the failures that reached the upstream, and the
//! time from the first request to the first 403.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crate::api::REALIP;
use crate::common::{Conn, Mock, Nginx};
use crate::report::Section;
use crate::stats::{millis, thousands, Samples};
use crate::Config;

const MAXRETRY: u64 = 25;
const REQUESTS: u64 = 2000;
const PATH: &str = "/client/api?command=listZones&apiKey=x&signature=bad";

fn block(mock: &Mock) -> String {
    format!(
        "authban_zone zone=cs:1m maxretry={MAXRETRY} findtime=10m bantime=1h;
    {REALIP}
    upstream cloudstack {{
        server {};
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /client/api {{
            authban cs;
            authban_fail_status 401 531;
            proxy_http_version 1.1;
            proxy_set_header Connection \"\";
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_pass http://cloudstack;
        }}
    }}",
        mock.addr()
    )
}

/// One brute force: what the client saw and when.
struct Attack {
    /// First request sent -> first 403 received (None: never refused).
    first_refusal: Option<Duration>,
    statuses: BTreeMap<u16, u64>,
}

/// `REQUESTS` requests from `addr` over `conns` connections, each thread
/// taking the next request number until all are sent.
fn attack(port: u16, addr: &str, conns: usize) -> Attack {
    let next = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(conns));
    let threads: Vec<_> = (0..conns)
        .map(|_| {
            let (next, barrier, addr) = (Arc::clone(&next), Arc::clone(&barrier), addr.to_string());
            thread::spawn(move || {
                let mut conn = Conn::open(port);
                let mut statuses = BTreeMap::new();
                let mut refused_at = None;
                barrier.wait();
                let start = Instant::now();
                while next.fetch_add(1, Ordering::Relaxed) < REQUESTS {
                    if conn.is_closed() {
                        conn = Conn::open(port);
                    }
                    let status = conn.get_from(PATH, &addr).status().unwrap_or(0);
                    *statuses.entry(status).or_insert(0) += 1;
                    if status == 403 && refused_at.is_none() {
                        refused_at = Some(Instant::now());
                    }
                }
                (start, refused_at, statuses)
            })
        })
        .collect();
    let results: Vec<_> = threads
        .into_iter()
        .map(|t| t.join().expect("attack thread"))
        .collect();
    let start = results.iter().map(|r| r.0).min().expect("a thread");
    let mut statuses = BTreeMap::new();
    for (_, _, s) in &results {
        for (k, v) in s {
            *statuses.entry(*k).or_insert(0) += v;
        }
    }
    Attack {
        first_refusal: results.iter().filter_map(|r| r.1).min().map(|t| t - start),
        statuses,
    }
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("5. Time to ban");
    let mock = Mock::start();
    // Two workers, as in nginx-conf/cloudstack.conf: the ban must hold on
    // the worker that did not count the failure too.
    let nginx = Nginx::options()
        .workers(2)
        .error_log_level("notice")
        .start(&block(&mock));
    let mut notes = Vec::new();
    let mut most_with_64 = 0.0;
    for (conns, net) in [(1usize, 1u32), (64, 2)] {
        let mut upstream = Samples::new();
        let mut time = Samples::new();
        let mut never = 0;
        for rep in 0..cfg.rounds() {
            mock.reset();
            let addr = format!("192.0.{net}.{}", rep + 1);
            let a = attack(nginx.port(), &addr, conns);
            let (_, by_status) = mock.stats();
            upstream.push(*by_status.get(&401).unwrap_or(&0) as f64);
            match a.first_refusal {
                Some(t) => time.push(t.as_secs_f64() * 1000.0),
                None => never += 1,
            }
            let others: u64 = a
                .statuses
                .iter()
                .filter(|(k, _)| **k != 401 && **k != 403)
                .map(|(_, v)| v)
                .sum();
            if others > 0 || never > 0 {
                notes.push(format!(
                    "{conns} conn(s), {addr}: statuses {:?}",
                    a.statuses
                ));
            }
        }
        let what = if conns == 1 {
            "1 connection".to_string()
        } else {
            format!("{conns} connections")
        };
        if conns == 1 {
            s.check(
                &format!("{what}: failures reaching the upstream"),
                upstream.show(thousands),
                "exactly 25",
                upstream.min() == MAXRETRY as f64 && upstream.max() == MAXRETRY as f64,
            );
        } else {
            most_with_64 = upstream.max();
            s.info(
                &format!("{what}: failures reaching the upstream"),
                upstream.show(thousands),
            );
        }
        s.info(
            &format!("{what}: first request -> first 403"),
            if never == 0 {
                time.show(millis)
            } else {
                format!("never refused in {never} run(s)")
            },
        );
    }
    s.note(format!(
        "{REQUESTS} GETs of `{PATH}` from one address (X-Forwarded-For), as fast as the \
         client goes, {} runs per row (a new address each, mock counters reset), nginx \
         with 2 workers (not pinned) proxying to the mock CloudStack API over keep-alive, \
         `maxretry={MAXRETRY}`. Upstream failures = the mock's own count of 401s. With \
         one connection each request waits for the previous answer, so the 25th 401 \
         bans before the 26th request is read: exactly 25 reach the upstream. With 64 \
         connections up to 63 other requests are already past the access check, on \
         their way to or from the upstream, when the 25th failure bans; they complete \
         (and are counted) but nothing sent after the ban reaches the upstream, so at \
         most 25 + 63 = 88 failures get there (highest seen: {}). The time \
         is measured in the bench client from its first request to the first 403 it \
         receives.{}",
        cfg.rounds(),
        thousands(most_with_64),
        if notes.is_empty() {
            String::new()
        } else {
            format!(" Unexpected: {}", notes.join("; "))
        }
    ));
    s
}
