//! Key zones (`authban_zone ... key=EXPR`) and several zones in one
//! location (`authban addr keys;`), against the real nginx and the mock
//! CloudStack: an attack spread over many addresses, each under the
//! address zone's maxretry, is stopped by the zone keyed on the API key it
//! guesses at; other keys and addresses are unaffected.
//!
//! `{port}` is the front (`/client/api` proxied to the mock, which answers
//! 401 to a call whose signature does not verify), with realip from
//! loopback to play clients; `{port2}` the management endpoint.

mod common;

use common::*;

const TEST_SECS: u64 = 90;

fn status(n: &Nginx, path: &str, client: &str) -> u16 {
    get_from(n.port(), path, client).status().unwrap_or(0)
}

/// 30 addresses, each guessing twice at one API key, interleaved.
fn spray(n: &Nginx, key: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for _round in 0..2 {
        for i in 0..30 {
            let client = format!("198.51.100.{}", i + 1);
            statuses.push(status(n, &call(key), &client));
        }
    }
    statuses
}

#[test]
fn a_spray_over_many_addresses_is_stopped_by_the_key_it_guesses_at() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let n = Nginx::options().workers(2).start(&keyed_conf(&mock, ""));
        mock.reset();
        let statuses = spray(&n, "K-ATTACKED");
        let failed = statuses.iter().filter(|&&s| s == 401).count();
        let refused = statuses.iter().filter(|&&s| s == 403).count();
        assert_eq!(
            (failed, refused),
            (KEY_MAXRETRY, 60 - KEY_MAXRETRY),
            "{statuses:?}\n{}",
            n.log_tail()
        );
        // Exactly maxretry guesses reached the upstream.
        assert_eq!(mock.stats().0, KEY_MAXRETRY as u64);
        assert!(
            n.error_log()
                .contains("ban zone=keys key=\"K-ATTACKED\" hash="),
            "{}",
            n.log_tail()
        );
        // No address was banned; another key, and a call with no key (not
        // counted in the key zone), still reach the mock.
        let addr = api_ok(&n, "GET", "?zone=addr");
        assert_eq!(addr.u64("bans"), 0, "{addr:?}");
        assert_eq!(status(&n, &call("K-OTHER"), "198.51.100.1"), 401);
        assert_eq!(
            status(&n, "/client/api?command=listZones", "198.51.100.2"),
            401
        );
        // The key stays refused from a fresh address, which the variables
        // tell: the zone, and the key's hash (never its value).
        let refused = get_from(n.port(), &call("K-ATTACKED"), "203.0.113.9");
        assert_eq!(refused.status(), Some(403));
        assert_eq!(refused.header("X-Authban-Zone"), Some("keys"));
        let hash = refused.header("X-Authban-Key").unwrap_or("");
        assert!(
            hash.len() == 32 && hash.bytes().all(|b| b.is_ascii_hexdigit()),
            "{hash:?}"
        );
        assert!(n.error_log().contains(&format!("hash={hash} ")));
        let keys = api_ok(&n, "GET", "?zone=keys");
        assert_eq!(keys.u64("bans"), 1, "{keys:?}");
        // The value is never kept: not in the API's answer.
        assert!(!api(&n, "GET", "?zone=keys").text().contains("K-ATTACKED"));
        n.assert_clean();
    });
}

#[test]
fn any_zone_of_a_location_that_bans_refuses() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let n = Nginx::options().workers(2).start(&keyed_conf(&mock, ""));
        // One address, a new key each time: the address zone bans it.
        let client = "192.0.2.44";
        for i in 0..ADDR_MAXRETRY {
            assert_eq!(status(&n, &call(&format!("K{i}")), client), 401);
        }
        let refused = get_from(n.port(), &call("K-NEW"), client);
        assert_eq!(refused.status(), Some(403));
        assert_eq!(refused.header("X-Authban-Zone"), Some("addr"));
        assert_eq!(refused.header("X-Authban-Key"), Some(client));
        assert_eq!(status(&n, &call("K-NEW"), "192.0.2.45"), 401);
        let keys = api_ok(&n, "GET", "?zone=keys");
        assert_eq!(keys.u64("bans"), 0, "{keys:?}");
    });
}

#[test]
fn a_key_zones_ban_survives_a_restart_through_its_state_file() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let dir = fresh_dir("accounts-state");
        // Workers run as nobody: they write the state file.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let state = format!("state={}/keys.state", dir.display());
        let n = Nginx::options()
            .workers(2)
            .start(&keyed_conf(&mock, &state));
        spray(&n, "K-ATTACKED");
        assert_eq!(status(&n, &call("K-ATTACKED"), "203.0.113.9"), 403);
        n.stop();
        let text = std::fs::read_to_string(dir.join("keys.state")).unwrap();
        assert!(!text.contains("K-ATTACKED"), "{text}");
        assert!(
            text.lines().nth(2).unwrap().starts_with("secret "),
            "{text}"
        );
        // A new nginx (a new zone, a new secret made at format): the state
        // file's secret hashes the key as before.
        let n = Nginx::options()
            .workers(2)
            .start(&keyed_conf(&mock, &state));
        assert!(
            n.error_log().contains("restored 1 of 1"),
            "{}",
            n.log_tail()
        );
        assert_eq!(status(&n, &call("K-ATTACKED"), "203.0.113.10"), 403);
        assert_eq!(status(&n, &call("K-OTHER"), "203.0.113.10"), 401);
    });
}

/// CloudStack's login keyed on domain and username, as the example
/// configuration does: the accounts zone counts `command=login` only.
fn login_conf(mock: &Mock) -> String {
    format!(
        r#"
    map $authban_param_command $authban_login_account {{
        ~*^login$ "$authban_param_domain/$authban_param_username";
        default "";
    }}
    authban_zone zone=addr:4m maxretry={ADDR_MAXRETRY} findtime=10m bantime=1h;
    authban_zone zone=accounts:1m key=$authban_login_account maxretry={KEY_MAXRETRY} findtime=1h bantime=15m;

    server {{
        listen 127.0.0.1:{{port}};
        location /client/api {{
            authban addr accounts;
            authban_read_body on;
            authban_fail_status 401 531;
            proxy_pass http://{mock};
        }}
    }}
    server {{
        listen 127.0.0.1:{{port2}};
        location = /authban {{ authban_api; }}
    }}
    "#,
        mock = mock.addr()
    )
}

fn post_login(n: &Nginx, src: &str, user: &str, password: &str) -> u16 {
    let body =
        format!("command=login&username={user}&password={password}&domain=%2F&response=json");
    http_from_ip(
        src,
        n.port(),
        "POST",
        "/client/api",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(body.as_bytes()),
    )
    .status()
    .unwrap_or(0)
}

#[test]
fn a_distributed_login_spray_reaches_the_upstream_maxretry_times_only() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let n = Nginx::options().workers(2).start(&login_conf(&mock));
        mock.reset();
        // 300 source addresses, 3 bad logins each for admin, interleaved.
        let sources: Vec<String> = (0..300)
            .map(|i| format!("127.1.{}.{}", i / 200, i % 200 + 1))
            .collect();
        let mut statuses = Vec::new();
        for _round in 0..3 {
            for src in &sources {
                statuses.push(post_login(&n, src, "admin", "guess"));
            }
        }
        let failed = statuses.iter().filter(|&&s| s == 531).count();
        assert_eq!(failed, KEY_MAXRETRY, "{}", n.log_tail());
        assert_eq!(
            statuses.iter().filter(|&&s| s == 403).count(),
            900 - KEY_MAXRETRY
        );
        let (requests, by_status) = mock.stats();
        assert_eq!(requests, KEY_MAXRETRY as u64);
        assert_eq!(by_status.get(&531).copied(), Some(KEY_MAXRETRY as u64));
        assert_eq!(api_ok(&n, "GET", "?zone=addr").u64("bans"), 0);
        assert!(
            n.error_log()
                .contains("ban zone=accounts key=\"//admin\" hash="),
            "{}",
            n.log_tail()
        );
        // Another account, from an address that took part, is unaffected;
        // so are calls that are not logins.
        assert_eq!(post_login(&n, "127.1.0.1", "alice", "guess"), 531);
        assert_eq!(post_login(&n, "127.1.0.2", "admin", "password"), 403);
        let call = http_from_ip(
            "127.1.0.3",
            n.port(),
            "GET",
            "/client/api?command=listZones&response=json",
            &[],
            None,
        );
        assert_eq!(call.status(), Some(401));
        n.assert_clean();
    });
}

#[test]
fn a_key_zone_shares_its_count_and_bans_across_a_fleet() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let redis = Redis::start();
        let dir = fresh_dir("accounts-fleet");
        let key_file = dir.join("fleet.key");
        std::fs::write(&key_file, "correct horse battery staple\n").unwrap();
        let extra = format!("sync={} sync_key={}", redis.url(), key_file.display());
        let block = keyed_conf(&mock, &extra);
        let nodes: Vec<Nginx> = (0..2)
            .map(|_| Nginx::options().workers(2).start(&block))
            .collect();
        for n in &nodes {
            assert!(wait_until(std::time::Duration::from_secs(10), || {
                api_ok(n, "GET", "?zone=keys").get("sync").bool("connected")
            }));
        }
        mock.reset();
        // Round robin over the nodes, a new address each time: maxretry
        // failures in all (half of it at each node) reach the upstream...
        for i in 0..KEY_MAXRETRY {
            let n = &nodes[i % 2];
            let status = status(n, &call("K-FLEET"), &format!("198.51.100.{}", i + 1));
            assert_eq!(status, 401, "failure {}", i + 1);
        }
        assert_eq!(mock.stats().0, KEY_MAXRETRY as u64);
        // ...and the fleet's count bans the key: both nodes refuse it (the
        // one whose count crossed, and the other through Redis), though
        // neither counted maxretry itself. The value is in no record of
        // Redis.
        for n in &nodes {
            assert!(wait_until(std::time::Duration::from_secs(3), || {
                status(n, &call("K-FLEET"), "203.0.113.50") == 403
            }));
        }
        // Every line about the key zone's bans names a hash or the value,
        // never a hash dressed as an address.
        for n in &nodes {
            let log = n.error_log();
            let lines: Vec<&str> = log.lines().filter(|l| l.contains("zone=keys ")).collect();
            assert!(
                lines.iter().any(|l| l.contains("ban zone=keys ")),
                "{}",
                n.log_tail()
            );
            for line in lines {
                assert!(!line.contains(" addr="), "{line}");
            }
        }
        let keys = redis.cmd(&["KEYS", "authban:keys:*"]).unwrap();
        assert!(!format!("{keys:?}").contains("K-FLEET"), "{keys:?}");
    });
}

#[test]
fn a_key_zone_in_dry_run_says_what_it_would_ban_and_refuses_nothing() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let block = keyed_conf(&mock, "").replace(
            "            authban addr keys;\n",
            "            authban addr keys;\n            authban_dry_run on;\n",
        );
        assert!(block.contains("authban_dry_run on;"));
        let n = Nginx::options().workers(2).start(&block);
        let statuses = spray(&n, "K-DRY");
        assert!(statuses.iter().all(|&s| s == 401), "{statuses:?}");
        assert!(
            n.error_log()
                .contains("would ban zone=keys key=\"K-DRY\" hash="),
            "{}",
            n.log_tail()
        );
        let dry = get_from(n.port(), &call("K-DRY"), "203.0.113.9");
        assert_eq!(dry.status(), Some(401));
        assert_eq!(dry.header("X-Authban-Zone"), Some("keys"));
    });
}
