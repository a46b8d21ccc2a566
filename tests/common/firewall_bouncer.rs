//! Debian 12's `crowdsec-firewall-bouncer` 0.0.25 (issue 18's all-ports
//! ban), unpacked into `build/crowdsec-firewall-bouncer` by
//! `scripts/fetch-crowdsec.sh` (never installed), run in the foreground
//! against a [`Lapi`] with a configuration [`FirewallBouncer::start`] writes
//! into a private temp dir. Only inside [`in_netns`](super::in_netns): it
//! rewrites the firewall of the namespace it runs in.
//!
//! The configuration is Debian's default
//! (`etc/crowdsec/bouncers/crowdsec-firewall-bouncer.yaml`) with: `mode:
//! nftables`, `daemonize: false`, `update_frequency: 1s` (Debian: 10s),
//! logs and pid file in the temp dir, `prometheus.enabled: false` (Debian's
//! listens on the fixed 127.0.0.1:60601), `api_url` the LAPI's 127.0.0.1
//! URL and `api_key` a key of its own. `deny_action: DROP`,
//! `supported_decisions_types: [ban]`, and no filter on the decisions.
//! Debian's file shows none, but the same file is also read by the bouncer
//! library (go-cs-bouncer), which takes `origins`, `scopes`,
//! `scenarios_containing` and `scenarios_not_containing` lists and passes
//! them as query parameters of `GET /v1/decisions/stream` (tried:
//! `origins: [cscli]` makes it pull `?origins=cscli&startup=true`, which
//! would leave authban's decisions out). Without them it pulls with no
//! parameter but `startup=true` at first, and applies every `ban` whatever
//! its origin: `cscli`'s and `authban`'s alike (the test checks both). A
//! site that sets `origins` must list `authban`.
//!
//! What it does, observed: nftables mode talks netlink itself (Go's
//! google/nftables; the binary links only libc, no `nft` needed). At start it
//! creates `table ip crowdsec` with a set `crowdsec-blacklists` (`type
//! ipv4_addr; flags timeout`) and `chain crowdsec-chain { type filter hook
//! input priority filter; policy accept; ip saddr @crowdsec-blacklists
//! counter drop }`, and the same for IPv6 (`table ip6 crowdsec6`,
//! `crowdsec6-blacklists`, `crowdsec6-chain`), within a fraction of a second.
//! A decision becomes a set element with the decision's time left as its
//! timeout, at the first pull after it (at most `update_frequency`, 0.4 s
//! seen at 1 s); a deleted decision leaves the set at the next pull. The
//! hook is `input`, so on `lo` a dropped source's SYNs to any port of any
//! local address go unanswered (connect times out) while the host's other
//! loopback addresses, the LAPI's own 127.0.0.1 included, are untouched.
//! Killed (SIGKILL, by pid) its tables stay: the namespace takes them away.

use std::fs;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::crowdsec::Lapi;
use super::netns::in_private_netns;
use super::paths::{build_dir, fresh_dir, keep_tmp, logs_tail};
use super::process::{await_ready, kill_server, run_bounded, spawn_logged, Startup, Tracked};

/// How often it pulls the LAPI's decision stream (`update_frequency`).
pub const BOUNCER_PULL: Duration = Duration::from_secs(1);
/// How long it may take to create its nftables table and chain.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one `nft` command may take.
const NFT_TIMEOUT: Duration = Duration::from_secs(10);
/// The IPv4 table, chain and set it makes (Debian's defaults, kept).
const TABLE: &str = "crowdsec";
const CHAIN: &str = "crowdsec-chain";
const SET: &str = "crowdsec-blacklists";

/// The unpacked bouncer binary: missing, the test fails (never a skip).
fn bouncer_bin() -> PathBuf {
    let path = build_dir().join("crowdsec-firewall-bouncer/usr/bin/crowdsec-firewall-bouncer");
    if !path.is_file() {
        panic!(
            "crowdsec-firewall-bouncer not found at {}: run scripts/fetch-crowdsec.sh \
             (`make test` does: Debian's package unpacked, not installed)",
            path.display()
        );
    }
    path
}

/// `nft ARGS...` in the current thread's namespace: its stdout, or why not.
pub fn nft(args: &[&str]) -> Result<String, String> {
    let out = run_bounded(Command::new("nft").args(args), NFT_TIMEOUT).map_err(|e| {
        format!(
            "nft {}: {e} (is nftables installed? scripts/deps.sh nftables)",
            args.join(" ")
        )
    })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "nft {} exited with {}: {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// `nft list ruleset`, or the error, for failure messages.
pub fn ruleset() -> String {
    nft(&["list", "ruleset"]).unwrap_or_else(|e| e)
}

/// A running crowdsec-firewall-bouncer (nftables mode).
pub struct FirewallBouncer {
    child: Option<Child>,
    tracked: Option<Arc<Tracked>>,
    dir: PathBuf,
}

impl FirewallBouncer {
    /// Registers a bouncer with `lapi`, writes its configuration, starts it
    /// and waits until its nftables chain exists. Panics outside
    /// [`in_netns`](super::in_netns), rather than firewall the machine.
    pub fn start(lapi: &Lapi) -> FirewallBouncer {
        assert!(
            in_private_netns(),
            "FirewallBouncer::start outside in_netns: it would change this machine's firewall"
        );
        let mut bouncer = FirewallBouncer {
            child: None,
            tracked: None,
            dir: fresh_dir("firewall-bouncer"),
        };
        let key = lapi.bouncer_key("firewall-bouncer");
        let config = bouncer.dir.join("crowdsec-firewall-bouncer.yaml");
        fs::write(&config, bouncer.config(&lapi.url(), &key))
            .expect("write crowdsec-firewall-bouncer.yaml");
        let (mut child, tracked) = spawn_logged(
            Command::new(bouncer_bin())
                .arg("-c")
                .arg(&config)
                .current_dir(&bouncer.dir),
            &bouncer.dir.join("stdout.log"),
            "crowdsec-firewall-bouncer",
        );
        let startup = await_ready(&mut child, READY_TIMEOUT, || {
            nft(&["list", "chain", "ip", TABLE, CHAIN]).is_ok()
        });
        bouncer.tracked = Some(tracked);
        bouncer.child = Some(child);
        match startup {
            Startup::Ready => bouncer,
            Startup::Exited(status) => {
                bouncer.child = None;
                panic!(
                    "crowdsec-firewall-bouncer exited with {status}\n{}",
                    bouncer.diagnostics()
                )
            }
            Startup::TimedOut => panic!(
                "crowdsec-firewall-bouncer made no chain ip {TABLE} {CHAIN} within \
                 {READY_TIMEOUT:?}\n{}",
                bouncer.diagnostics()
            ),
        }
    }

    /// Debian's default configuration, changed as the module doc says.
    fn config(&self, api_url: &str, api_key: &str) -> String {
        let d = self.dir.display();
        format!(
            "\
mode: nftables
pid_dir: {d}/
update_frequency: {pull}s
daemonize: false
log_mode: file
log_dir: {d}/
log_level: info
log_compression: false
api_url: {api_url}/
api_key: {api_key}
insecure_skip_verify: false
disable_ipv6: false
deny_action: DROP
deny_log: false
supported_decisions_types:
  - ban
blacklists_ipv4: {SET}
blacklists_ipv6: crowdsec6-blacklists
nftables:
  ipv4:
    enabled: true
    set-only: false
    table: {TABLE}
    chain: {CHAIN}
  ipv6:
    enabled: true
    set-only: false
    table: crowdsec6
    chain: crowdsec6-chain
prometheus:
  enabled: false
",
            pull = BOUNCER_PULL.as_secs()
        )
    }

    /// Whether `ip` is in its IPv4 set (what it has applied so far).
    pub fn blocks(&self, ip: IpAddr) -> bool {
        nft(&["list", "set", "ip", TABLE, SET])
            .is_ok_and(|set| set.contains(&format!("{ip} ")) || set.contains(&format!("{ip},")))
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// The last lines of its log and of its stdout/stderr.
    pub fn log_tail(&self) -> String {
        logs_tail(
            &self.dir,
            &["crowdsec-firewall-bouncer.log", "stdout.log"],
            "firewall bouncer",
            40,
        )
    }

    /// Its log tail and the namespace's rule set, for failure messages.
    pub fn diagnostics(&self) -> String {
        format!("{}--- nft list ruleset\n{}", self.log_tail(), ruleset())
    }

    /// SIGKILLs it and reaps it (its tables stay until the namespace goes).
    pub fn stop(&mut self) {
        kill_server(&mut self.tracked, &mut self.child);
    }
}

impl Drop for FirewallBouncer {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() || keep_tmp() {
            eprintln!(
                "authban harness: kept firewall bouncer dir {}",
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}
