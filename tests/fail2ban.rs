//! The shipped fail2ban filter (nginx-conf/fail2ban) against error-log lines
//! the real module wrote, read by the real `fail2ban-regex`.

mod common;
use common::*;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::Command;

/// `fail2ban-regex` from build/fail2ban (unpacked by `make test`), or the
/// system's.
fn fail2ban_regex() -> Command {
    let unpacked = build_dir().join("fail2ban");
    let script = unpacked.join("usr/bin/fail2ban-regex");
    if script.exists() {
        let mut cmd = Command::new("/usr/bin/python3");
        cmd.arg(script)
            .env("PYTHONPATH", unpacked.join("usr/lib/python3/dist-packages"));
        return cmd;
    }
    assert!(
        PathBuf::from("/usr/bin/fail2ban-regex").exists(),
        "fail2ban-regex not found: run `make test` (scripts/fetch-fail2ban.sh unpacks it)"
    );
    Command::new("/usr/bin/fail2ban-regex")
}

fn filter_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nginx-conf/fail2ban/filter.d/authban.conf")
}

#[test]
fn filter_matches_exactly_the_modules_ban_messages() {
    with_timeout(90, || {
        let nginx = Nginx::start(
            r#"
            authban_zone zone=main:1m maxretry=2;
            authban_zone zone=wide:1m maxretry=1 widen=3;
            authban_zone zone=dry:1m maxretry=1;
            server {
                listen 127.0.0.1:{port};
                set_real_ip_from 127.0.0.1;
                real_ip_header X-Forwarded-For;
                location /main { authban main; proxy_pass http://127.0.0.1:{port2}; }
                location /wide { authban wide; proxy_pass http://127.0.0.1:{port2}; }
                location /dry { authban dry; authban_dry_run on; proxy_pass http://127.0.0.1:{port2}; }
            }
            server {
                listen 127.0.0.1:{port2};
                location / { return 401; }
                location = /authban { authban_api; }
            }
            "#,
        );
        let port = nginx.port();
        for _ in 0..2 {
            assert_eq!(get_from(port, "/main", "198.51.100.1").status(), Some(401));
        }
        assert_eq!(get_from(port, "/main", "198.51.100.1").status(), Some(403));
        for n in 1..=3 {
            let addr = format!("2001:db8:9:9::{n}");
            assert_eq!(get_from(port, "/wide", &addr).status(), Some(401));
        }
        assert_eq!(
            get_from(port, "/wide", "2001:db8:9:9::77").status(),
            Some(403)
        );
        assert_eq!(get_from(port, "/dry", "198.51.100.50").status(), Some(401));
        let api = |method: &str, query: &str| {
            http(
                nginx.port2(),
                method,
                &format!("/authban?{query}"),
                &[],
                None,
            )
            .status()
        };
        assert_eq!(api("POST", "zone=main&addr=203.0.113.9"), Some(200));
        assert_eq!(api("DELETE", "zone=main&addr=203.0.113.9"), Some(200));
        assert!(nginx.wait_for_error_log("reason=api", std::time::Duration::from_secs(5)));

        let log = nginx.error_log();
        let ban_lines = log.lines().filter(|l| l.contains("authban: ban ")).count();
        assert_eq!(ban_lines, 6, "{log}");
        for other in ["authban: would ban ", "authban: unban "] {
            assert!(
                log.contains(other),
                "the log must also hold {other:?} lines: {log}"
            );
        }

        let out = fail2ban_regex()
            .args(["-o", "ip"])
            .arg(nginx.dir().join("error.log"))
            .arg(filter_path())
            .output()
            .expect("run fail2ban-regex");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let matched: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        assert_eq!(
            matched.len(),
            ban_lines,
            "one match per ban message: {matched:?}"
        );
        let expected: BTreeSet<String> = [
            "198.51.100.1",
            "2001:db8:9:9::1",
            "2001:db8:9:9::2",
            "2001:db8:9:9::3",
            "2001:db8:9:9::/64",
            "203.0.113.9",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        assert_eq!(matched.into_iter().collect::<BTreeSet<_>>(), expected);
    });
}
