//! The module's management endpoint (`authban_api` at `/authban`), and
//! the nginx configuration pieces every part shares.

use crate::common::{get, http, Json, Nginx, NginxOptions};
use crate::machine::{can_pin, NGINX_CPU};

/// Realip: a loopback client plays any address with `X-Forwarded-For`.
pub const REALIP: &str = "
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
";

/// One nginx worker pinned to [`NGINX_CPU`], logging from `notice` up so
/// that per-connection `info` lines cost nothing during the load.
pub fn pinned_nginx() -> NginxOptions {
    let opts = Nginx::options().workers(1).error_log_level("notice");
    if can_pin() {
        opts.main_line(&format!("worker_cpu_affinity {};", cpu_mask(NGINX_CPU)))
    } else {
        opts
    }
}

/// `worker_cpu_affinity` bit mask for one CPU: CPU 0 is `1`, CPU 1 `10`.
fn cpu_mask(cpu: usize) -> String {
    format!("1{}", "0".repeat(cpu))
}

/// A zone's figures from `GET /authban?zone=NAME`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ZoneStats {
    pub capacity: u64,
    pub tracked: u64,
    /// Active bans.
    pub bans: u64,
    pub failures: u64,
    pub evicted: u64,
    pub bans_dropped: u64,
}

pub fn zone_stats(port: u16, zone: &str) -> ZoneStats {
    let reply = get(port, &format!("/authban?zone={zone}&limit=1"));
    assert_eq!(reply.status(), Some(200), "GET /authban: {reply:?}");
    let json = Json::parse(&reply.text())
        .unwrap_or_else(|e| panic!("GET /authban: {e}: {}", reply.text()));
    let counters = json.get("counters");
    ZoneStats {
        capacity: json.u64("capacity"),
        tracked: json.u64("tracked"),
        bans: json.u64("bans"),
        failures: counters.u64("failures"),
        evicted: counters.u64("evicted"),
        bans_dropped: counters.u64("bans_dropped"),
    }
}

/// `POST /authban?zone=..&addr=..&time=..`: a manual ban.
pub fn ban(port: u16, zone: &str, addr: &str, time: &str) {
    let path = format!("/authban?zone={zone}&addr={addr}&time={time}");
    let reply = http(port, "POST", &path, &[], None);
    assert_eq!(reply.status(), Some(200), "POST {path}: {reply:?}");
}
