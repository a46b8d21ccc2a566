//! The all-ports ban's CrowdSec half (issue 18): in a fresh network
//! namespace, a decision in a real LAPI (Debian's crowdsec 1.4.6) makes
//! Debian's crowdsec-firewall-bouncer (nftables mode) drop that address's
//! packets to another port of the host, whatever the decision's origin
//! (`cscli`, or `authban` as authban's alerts will carry). The authban half
//! (nginx bans by count, its alert reaches the bouncer) builds on the same
//! helpers: [`in_netns`], [`Lapi`], [`FirewallBouncer`], [`AcceptAll`],
//! [`connects_from`]. Root only (the namespace).

mod common;
use common::*;

use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The whole test takes about 10 s; its bound.
const TEST_SECS: u64 = 40;
/// From a change in the LAPI to the firewall: one pull of the bouncer plus
/// margin (each `connects_from` of a dropped address takes its 1 s timeout).
const APPLIED_WITHIN: Duration = Duration::from_secs(6);

fn ip(s: &str) -> IpAddr {
    s.parse().expect("an IP address")
}

/// Waits until connecting from `src` to `port` succeeds (`connects`) or fails
/// (times out: dropped); panics with the bouncer's log and the rule set if
/// it does not happen within [`APPLIED_WITHIN`]. How long it took.
fn await_connects(bouncer: &FirewallBouncer, src: IpAddr, port: u16, connects: bool) -> Duration {
    let start = Instant::now();
    let done = wait_until(APPLIED_WITHIN, || connects_from(src, port) == connects);
    assert!(
        done,
        "a connection from {src} to 127.0.0.1:{port} still {} after {APPLIED_WITHIN:?}\n{}",
        if connects { "fails" } else { "succeeds" },
        bouncer.diagnostics()
    );
    start.elapsed()
}

/// Logs in as machine `authban` and posts one alert whose decision bans
/// `ip` with origin `authban`, as authban's alerts will (the exchange
/// `tests/crowdsec_lapi.rs` checks field by field).
fn post_authban_ban(lapi: &Lapi, ip: &str) {
    let creds = MachineCredentials::read(&lapi.machine_credentials("authban"));
    let body = serde_json::json!({"machine_id": creds.login, "password": creds.password});
    let reply = http(
        lapi.port(),
        "POST",
        "/v1/watchers/login",
        &[
            ("Content-Type", "application/json"),
            ("User-Agent", "authban/0.1.0"),
        ],
        Some(body.to_string().as_bytes()),
    );
    assert_eq!(reply.status(), Some(200), "login: {}", reply.text());
    let token = Json::parse(&reply.text())
        .expect("JSON")
        .str("token")
        .to_string();
    let now = rfc3339_now();
    let decision = serde_json::json!({"origin": "authban", "type": "ban", "scope": "Ip",
        "value": ip, "duration": "10m", "scenario": "authban/firewall"});
    let alert = serde_json::json!([{"scenario": "authban/firewall", "scenario_hash": "",
        "scenario_version": "", "message": format!("authban: {ip} banned by count"),
        "events_count": 1, "start_at": now, "stop_at": now, "capacity": 0, "leakspeed": "0",
        "simulated": false, "events": [], "source": {"scope": "Ip", "value": ip},
        "decisions": [decision]}]);
    let bearer = format!("Bearer {token}");
    let reply = http(
        lapi.port(),
        "POST",
        "/v1/alerts",
        &[
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ],
        Some(alert.to_string().as_bytes()),
    );
    assert_eq!(
        reply.status(),
        Some(201),
        "alert: {}\n{}",
        reply.text(),
        lapi.log_tail()
    );
}

#[test]
fn firewall_half_bouncer_drops_a_lapi_ban_on_another_port() {
    with_timeout(TEST_SECS, || {
        in_netns(|| {
            let started = Instant::now();
            // The LAPI listens on, and the bouncer and cscli talk to,
            // 127.0.0.1: dropping 127.0.0.5 and .7 leaves them alone.
            let lapi = Lapi::start();
            let bouncer = FirewallBouncer::start(&lapi);
            eprintln!("LAPI and bouncer up after {:?}", started.elapsed());
            let other_port = AcceptAll::start(free_port());
            let port = other_port.port();
            let (banned, bystander, by_authban) =
                (ip("127.0.0.5"), ip("127.0.0.6"), ip("127.0.0.7"));
            for src in [banned, bystander, by_authban] {
                assert!(
                    connects_from(src, port),
                    "{src} cannot connect before any ban\n{}",
                    bouncer.diagnostics()
                );
            }

            // A ban in the LAPI: dropped on a port nobody banned it from.
            lapi.add_decision_ip("127.0.0.5", "1h");
            let took = await_connects(&bouncer, banned, port, false);
            eprintln!("cscli ban applied within {took:?}");
            assert!(bouncer.blocks(banned), "{}", bouncer.diagnostics());
            assert!(
                connects_from(bystander, port),
                "{bystander} (not banned) cannot connect\n{}",
                bouncer.diagnostics()
            );
            assert!(
                !connects_from(banned, port),
                "{banned} connects again while banned\n{}",
                bouncer.diagnostics()
            );

            // A decision of origin authban, from an alert: applied alike
            // (the bouncer filters on no origin or scenario).
            post_authban_ban(&lapi, "127.0.0.7");
            let took = await_connects(&bouncer, by_authban, port, false);
            eprintln!("authban-origin ban applied within {took:?}");
            assert!(connects_from(bystander, port), "{}", bouncer.diagnostics());

            // The ban deleted: back in.
            lapi.delete_decision_ip("127.0.0.5");
            let took = await_connects(&bouncer, banned, port, true);
            eprintln!("deletion applied within {took:?}");
            assert!(!bouncer.blocks(banned), "{}", bouncer.diagnostics());
            assert!(
                !connects_from(by_authban, port),
                "{by_authban} let in when another ban was deleted\n{}",
                bouncer.diagnostics()
            );
            assert!(bouncer.is_running(), "{}", bouncer.diagnostics());
            eprintln!("test body took {:?}", started.elapsed());
        })
    });
}

/// The seed's all-ports ban, end to end: authban bans an address by count
/// (its real peer address, no realip), its alert reaches the LAPI, and the
/// firewall bouncer drops that address on every port of the host: another
/// listener's and nginx's own.
#[test]
fn authban_bans_by_count_and_the_firewall_drops_it_on_every_port() {
    with_timeout(TEST_SECS + 20, || {
        in_netns(|| {
            let lapi = Lapi::start();
            let bouncer = FirewallBouncer::start(&lapi);
            let key = lapi.bouncer_key_file("authban");
            let machine = lapi.machine_credentials("authban-node");
            let n = Nginx::options().workers(2).start(&format!(
                r#"
    authban_zone zone=api:1m maxretry=3 findtime=10m bantime=1h;
    authban_crowdsec zone=api url={} bouncer_key_file={} machine_credentials_file={} interval=1s;
    server {{
        listen 127.0.0.1:{{port}};
        location /login {{
            authban api;
            proxy_pass http://127.0.0.1:{{port2}}/fail;
        }}
    }}
    server {{
        listen 127.0.0.1:{{port2}};
        location = /fail {{ return 401; }}
    }}
    "#,
                lapi.url(),
                key.display(),
                machine.display()
            ));
            let other_port = AcceptAll::start(free_port());
            let (attacker, bystander) = (ip("127.0.0.5"), ip("127.0.0.6"));
            let login =
                |src: &str| http_from_ip(src, n.port(), "GET", "/login", &[], None).status();
            for _ in 0..3 {
                assert_eq!(login("127.0.0.5"), Some(401));
            }
            assert_eq!(login("127.0.0.5"), Some(403), "{}", n.log_tail());
            // The alert, then the firewall bouncer's next pull.
            await_connects(&bouncer, attacker, other_port.port(), false);
            assert!(bouncer.blocks(attacker), "{}", bouncer.diagnostics());
            assert!(!connects_from(attacker, n.port()), "nginx's own port too");
            assert!(connects_from(bystander, other_port.port()));
            assert_eq!(login("127.0.0.6"), Some(401), "others are served");
            n.assert_clean();
        })
    });
}
