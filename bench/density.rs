//! Part 2: how many addresses a 1 MiB zone tracks before it forgets one.
//!
//! Two 1 MiB zones, one fed IPv4 and one IPv6 clients (realip), each
//! address failing once (auth_basic's 401). The endpoint's `capacity` is
//! read first; then distinct addresses are added one at a time until the
//! zone's `evicted` counter leaves 0, and `tracked` is read at that moment.

use crate::api::{pinned_nginx, zone_stats, REALIP};
use crate::common::{Conn, Nginx, Reply};
use crate::report::Section;
use crate::stats::thousands;
use crate::Config;

const MIB: f64 = 1024.0 * 1024.0;
const TARGET: u64 = 20_000;

fn block() -> String {
    format!(
        "authban_zone zone=v4:1m;
    authban_zone zone=v6:1m;
    {REALIP}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /v4 {{ authban v4; auth_basic bench; auth_basic_user_file {{dir}}/htpasswd; }}
        location /v6 {{ authban v6; auth_basic bench; auth_basic_user_file {{dir}}/htpasswd; }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

/// What filling one zone showed.
pub struct Fill {
    pub capacity: u64,
    /// Distinct addresses (or keys) sent when `evicted` first became > 0.
    pub sent: u64,
    /// `tracked` and `evicted` at that moment.
    pub tracked: u64,
    pub evicted: u64,
    /// Whether every step near the capacity was checked, so that `sent` is
    /// exact (else the first eviction happened earlier than expected).
    pub exact: bool,
}

impl Fill {
    /// How many the zone held: the one sent before its first eviction.
    pub fn held(&self) -> u64 {
        self.sent - 1
    }

    /// `N (capacity C; tracked T when `evicted` became E; B bytes/UNIT)`
    /// for a 1 MiB zone.
    pub fn show(&self, unit: &str) -> String {
        format!(
            "{} (capacity {}; tracked {} when `evicted` became {}; {:.1} bytes/{unit})",
            thousands(self.held() as f64),
            thousands(self.capacity as f64),
            thousands(self.tracked as f64),
            self.evicted,
            MIB / self.held() as f64
        )
    }
}

/// Fails once per distinct address (or key) into `zone` until it evicts:
/// `fail(conn, n)` sends the n-th failure (a 401) over keep-alive.
pub fn fill(nginx: &Nginx, zone: &str, fail: &dyn Fn(&mut Conn, u64) -> Reply) -> Fill {
    let port = nginx.port();
    let capacity = zone_stats(port, zone).capacity;
    assert!(capacity > 0, "zone {zone} reports capacity 0");
    let mut conn: Option<Conn> = None;
    // Far below the capacity, look every 1,000 addresses; near it, after
    // every one.
    let near = capacity.saturating_sub(1000);
    for n in 0..capacity * 2 {
        let c = conn.get_or_insert_with(|| Conn::open(port));
        let reply = fail(c, n);
        assert_eq!(reply.status(), Some(401), "failure {n} into zone {zone}");
        if c.is_closed() {
            conn = None;
        }
        let sent = n + 1;
        if sent < near && sent % 1000 != 0 {
            continue;
        }
        let z = zone_stats(port, zone);
        if z.evicted > 0 {
            return Fill {
                capacity,
                sent,
                tracked: z.tracked,
                evicted: z.evicted,
                exact: sent >= near,
            };
        }
        assert_eq!(z.tracked, sent, "zone {zone}: every address tracked once");
    }
    panic!("zone {zone} never evicted after {} addresses", capacity * 2);
}

fn ipv4(n: u64) -> String {
    format!("10.{}.{}.{}", (n >> 16) & 255, (n >> 8) & 255, n & 255)
}

fn ipv6(n: u64) -> String {
    format!("2001:db8:{:x}:{:x}::1", (n >> 16) & 0xffff, n & 0xffff)
}

pub fn run(_cfg: &Config) -> Section {
    let mut s = Section::new("2. Density");
    let nginx = pinned_nginx().start(&block());
    for (family, zone, address) in [
        ("IPv4", "v4", ipv4 as fn(u64) -> String),
        ("IPv6", "v6", ipv6),
    ] {
        let path = format!("/{zone}");
        let f = fill(&nginx, zone, &|c, n| c.get_from(&path, &address(n)));
        s.check(
            &format!("{family} addresses per MiB before forgetting"),
            f.show("address"),
            ">= 20,000 (limit_req ~8,000; HAProxy ~20,000)",
            f.held() >= TARGET && f.exact,
        );
    }
    s.note(
        "Each zone is `authban_zone zone=NAME:1m`; addresses (10.x.y.z, or \
         2001:db8:x:y::1) arrive through realip, one failure each, over keep-alive. \
         'before forgetting' is how many distinct addresses were in the zone when the \
         next one made it evict its first: `evicted` read after every address near the \
         capacity. The count is the same for IPv4 and IPv6 since both use one slot size.",
    );
    s
}
