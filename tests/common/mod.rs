//! Integration-test harness for authban.
//!
//! The module is a cdylib loaded by nginx, so integration tests are
//! black-box: they start a real nginx (master + workers) from
//! `$AUTHBAN_BUILD/sbin/nginx` (default `<crate>/build`), load
//! `modules/ngx_http_authban_module.so` into it, and talk HTTP to it.
//!
//! Use from a test file with `mod common; use common::*;`. Every test body
//! should be wrapped in [`with_timeout`] so that a hang fails the test instead
//! of CI, and so that its nginx/mock processes are killed on timeout.
//!
//! - [`Nginx`] / [`NginxOptions`]: a running nginx in a private temp dir.
//! - [`nginx_test_config`]: `nginx -t` on a generated config.
//! - [`Mock`]: the mock CloudStack upstream (`build/bin/mock-cloudstack`).
//! - [`http`], [`get`], [`get_from`], [`http_from_ip`], [`Conn`]: a tiny
//!   HTTP/1.1 client with timeouts, which reports a silently closed
//!   connection (nginx `return 444`) as [`Reply::Closed`].
//! - [`api`], [`api_ok`], [`api_err`]: the management endpoint, answers
//!   checked.
//! - [`Json`]: a strict JSON reader (serde_json) with panicking accessors.
//! - [`free_port`]: ports that never collide across threads or processes.
//! - [`Redis`]: a real redis-server; [`FakeRedis`]: a hostile one (slow,
//!   trickling, endless) answering as a test says.
//! - [`Lapi`]: a real CrowdSec local API (Debian's crowdsec, unpacked by
//!   `scripts/fetch-crowdsec.sh`) with `cscli` helpers; its doc records the
//!   JSON LAPI 1.4.6 exchanges.
//! - [`in_netns`]: a piece of a test in a fresh network namespace (root);
//!   [`FirewallBouncer`]: Debian's crowdsec-firewall-bouncer (nftables)
//!   there; [`AcceptAll`], [`connects_from`]: is a source address dropped?

// Each test binary uses a different subset of the harness.
#![allow(dead_code, unused_imports)]

mod accounts;
mod api;
mod certs;
mod client;
mod crowdsec;
mod fake_dns;
mod fake_redis;
mod firewall_bouncer;
mod json;
mod mock;
mod netns;
mod nginx;
mod paths;
mod ports;
mod process;
mod redis;

pub use accounts::{call, keyed_conf, ADDR_MAXRETRY, KEY_MAXRETRY};
pub use api::{api, api_err, api_ok, json_error, json_ok};
pub use certs::Certs;
pub use client::{
    connects_from, get, get_from, http, http_at, http_from_ip, AcceptAll, Conn, Reply, Response,
    HTTP_TIMEOUT,
};
pub use crowdsec::{crowdsec_dir, go_duration_secs, rfc3339_now, Lapi, MachineCredentials};
pub use fake_dns::FakeDns;
pub use fake_redis::{bulk, handshake as redis_handshake, FakeRedis};
pub use firewall_bouncer::{nft, ruleset, FirewallBouncer, BOUNCER_PULL};
pub use json::Json;
pub use mock::Mock;
pub use netns::{in_netns, in_private_netns};
pub use nginx::{nginx_test_config, Nginx, NginxOptions};
pub use paths::{build_dir, fresh_dir, mock_bin, module_path, nginx_bin};
pub use ports::free_port;
pub use process::{run_bounded, with_timeout};
pub use redis::{redis_server_bin, Redis, Resp};

use std::time::{Duration, Instant};

/// Polls `cond` every 20 ms until it holds or `timeout` elapses; returns
/// whether it held. The building block of every bounded wait here.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A count read from something nginx writes asynchronously (a log line
/// written after the response left), read again every 100 ms until it holds
/// still, for at most 5 s.
pub fn settled_count(mut read: impl FnMut() -> usize) -> usize {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut last = read();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = read();
        if now == last || Instant::now() >= deadline {
            return now;
        }
        last = now;
    }
}
