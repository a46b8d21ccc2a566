//! `familiar=` on a key zone, against the real nginx: a (key, client
//! network) pair that got a success is familiar for the zone's time; a ban
//! of the key does not refuse a familiar network, and a familiar network's
//! failures do not count toward the key. Networks are IPv4 /24 and IPv6
//! /64.
//!
//! `{port}` is the front (`/api` proxied, with both zones, to the back
//! server on `{port2}`, which answers 200 to `ok=1` and 401 otherwise), with
//! realip from loopback to play clients; `{port2}` also has the management
//! endpoint.

mod common;

use common::*;

const TEST_SECS: u64 = 90;
const ADDR_MAXRETRY: usize = 5;
const KEY_MAXRETRY: usize = 10;

fn conf(keys_extra: &str) -> String {
    format!(
        r#"
    authban_zone zone=addr:1m maxretry={ADDR_MAXRETRY} findtime=10m bantime=1h;
    authban_zone zone=keys:1m key=$arg_apikey maxretry={KEY_MAXRETRY} findtime=1h bantime=15m {keys_extra};

    server {{
        listen 127.0.0.1:{{port}};
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        location /api {{
            authban addr keys;
            proxy_pass http://127.0.0.1:{{port2}};
        }}
    }}

    server {{
        listen 127.0.0.1:{{port2}};
        location = /authban {{
            authban_api;
        }}
        location /api {{
            if ($arg_ok) {{
                return 200 "ok\n";
            }}
            return 401;
        }}
    }}
    "#
    )
}

/// A call with `key` that succeeds.
fn good(key: &str) -> String {
    format!("/api?apikey={key}&ok=1")
}

/// A call with `key` that fails (401).
fn bad(key: &str) -> String {
    format!("/api?apikey={key}")
}

fn status(n: &Nginx, path: &str, client: &str) -> u16 {
    get_from(n.port(), path, client).status().unwrap_or(0)
}

/// 30 addresses (none the owner's networks), each guessing twice at `key`:
/// the key zone bans it at its maxretry-th failure.
fn spray(n: &Nginx, key: &str) {
    let bans = keys_bans(n);
    let mut statuses = Vec::new();
    for _round in 0..2 {
        for i in 0..30 {
            let client = format!("198.51.100.{}", i + 1);
            statuses.push(status(n, &bad(key), &client));
        }
    }
    let failed = statuses.iter().filter(|&&s| s == 401).count();
    assert_eq!(failed, KEY_MAXRETRY, "{statuses:?}\n{}", n.log_tail());
    assert_eq!(keys_bans(n), bans + 1);
}

fn keys_bans(n: &Nginx) -> u64 {
    api_ok(n, "GET", "?zone=keys").u64("bans")
}

const OWNER: &str = "203.0.113.5";
const OWNER_V6: &str = "2001:db8:1:2::5";

#[test]
fn a_familiar_network_passes_a_ban_of_its_key_others_are_refused() {
    with_timeout(TEST_SECS, || {
        let n = Nginx::options().workers(2).start(&conf("familiar=30d"));
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        assert_eq!(status(&n, &good("K"), OWNER_V6), 200);
        spray(&n, "K");
        // The owner's networks still pass, with successes and failures
        // alike (the key is not refused to them); its /24 and /64 are the
        // networks, not only the addresses that succeeded.
        assert_eq!(status(&n, &good("K"), OWNER), 200, "{}", n.log_tail());
        assert_eq!(status(&n, &good("K"), "203.0.113.77"), 200);
        assert_eq!(status(&n, &bad("K"), OWNER), 401);
        assert_eq!(status(&n, &good("K"), "2001:db8:1:2:ffff::9"), 200);
        // Everyone else is refused: other networks, the owner's included.
        assert_eq!(status(&n, &good("K"), "203.0.114.5"), 403);
        assert_eq!(status(&n, &good("K"), "2001:db8:1:3::5"), 403);
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 403);
        // The owner's network is familiar with K only.
        assert_eq!(status(&n, &good("K2"), "192.0.2.9"), 200);
        spray(&n, "K2");
        assert_eq!(status(&n, &good("K2"), OWNER), 403);
        assert_eq!(status(&n, &good("K2"), "192.0.2.9"), 200);
        n.assert_clean();
    });
}

#[test]
fn without_familiar_the_owner_is_refused_with_everyone_else() {
    with_timeout(TEST_SECS, || {
        let n = Nginx::options().workers(2).start(&conf(""));
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        spray(&n, "K");
        // The documented trade-off: whoever knows the key locks its owner
        // out for bantime.
        assert_eq!(status(&n, &good("K"), OWNER), 403);
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 403);
        n.assert_clean();
    });
}

#[test]
fn failures_from_a_familiar_network_do_not_count_toward_the_key() {
    with_timeout(TEST_SECS, || {
        let n = Nginx::options().workers(2).start(&conf("familiar=30d"));
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        // More than the key's maxretry, from four addresses of the owner's
        // /24 (each under the address zone's maxretry): the key is not
        // banned.
        for i in 0..(KEY_MAXRETRY + 2) {
            let client = format!("203.0.113.{}", 10 + i % 4);
            assert_eq!(status(&n, &bad("K"), &client), 401, "failure {i}");
        }
        assert_eq!(keys_bans(&n), 0, "{}", n.log_tail());
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 200);
        // The address zone still counts them: the owner's own address is
        // banned by it at its maxretry.
        for _ in 0..ADDR_MAXRETRY {
            assert_eq!(status(&n, &bad("K"), OWNER), 401);
        }
        assert_eq!(status(&n, &good("K"), OWNER), 403);
        assert_eq!(api_ok(&n, "GET", "?zone=addr").u64("bans"), 1);
        assert_eq!(keys_bans(&n), 0);
        // Failures from elsewhere do count.
        spray(&n, "K");
        assert_eq!(status(&n, &good("K"), "203.0.113.10"), 200);
        n.assert_clean();
    });
}

#[test]
fn familiar_networks_survive_a_reload_and_a_restart() {
    with_timeout(TEST_SECS, || {
        let dir = fresh_dir("familiar-state");
        // Workers run as nobody: they write the state file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let extra = format!("familiar=30d state={}/keys.state", dir.display());
        let mut n = Nginx::options().workers(2).start(&conf(&extra));
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        // A reload keeps the zone, its familiar table with it.
        n.reload();
        spray(&n, "K");
        assert_eq!(status(&n, &good("K"), OWNER), 200, "{}", n.log_tail());
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 403);
        n.stop();
        let text = std::fs::read_to_string(dir.join("keys.state")).unwrap();
        let fam = text.lines().filter(|l| l.starts_with("fam ")).count();
        assert_eq!(fam, 1, "{text}");
        assert!(!text.contains(OWNER), "{text}");
        // A new nginx: the ban and the familiar network are back.
        let n = Nginx::options().workers(2).start(&conf(&extra));
        assert!(
            n.error_log()
                .contains("restored 1 of 1 familiar networks from"),
            "{}",
            n.log_tail()
        );
        assert_eq!(status(&n, &good("K"), OWNER), 200, "{}", n.log_tail());
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 403);
        assert_eq!(keys_bans(&n), 1);
        n.assert_clean();
    });
}

#[test]
fn a_resized_zone_keeps_its_familiar_networks() {
    with_timeout(TEST_SECS, || {
        let mut n = Nginx::options().workers(2).start(&conf("familiar=30d"));
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        spray(&n, "K");
        // A new size (the smallest): a new zone, filled from the previous one.
        n.reload_with(&conf("familiar=30d").replace("zone=keys:1m", "zone=keys:32k"));
        assert!(
            n.error_log()
                .contains("restored 1 of 1 familiar networks from the previous zone"),
            "{}",
            n.log_tail()
        );
        assert_eq!(status(&n, &good("K"), OWNER), 200, "{}", n.log_tail());
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 403);
        n.assert_clean();
    });
}

#[test]
fn familiar_added_by_a_reload_of_the_same_size_waits_for_a_new_zone() {
    with_timeout(TEST_SECS, || {
        let mut n = Nginx::options().workers(2).start(&conf(""));
        assert_eq!(status(&n, &good("K"), "192.0.2.9"), 200);
        // The zone is kept, its memory all its one table's: no familiar
        // networks until the zone is made anew, and the log says so.
        n.reload_with(&conf("familiar=30d"));
        assert!(
            n.error_log()
                .contains("kept across reload without familiar networks"),
            "{}",
            n.log_tail()
        );
        assert_eq!(status(&n, &good("K"), OWNER), 200);
        spray(&n, "K");
        assert_eq!(status(&n, &good("K"), OWNER), 403);
        // A new size makes it anew, with its familiar table; the ban is
        // carried over.
        n.reload_with(&conf("familiar=30d").replace("zone=keys:1m", "zone=keys:2m"));
        assert_eq!(status(&n, &good("K"), OWNER), 403);
        assert_eq!(keys_bans(&n), 1);
        n.assert_clean();
    });
}
