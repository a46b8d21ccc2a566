//! The nginx glue itself: the debug lines that trace a decision, and a
//! module added to a running nginx by a reload (its zone's creation looks
//! at the previous cycle, which never had the module).
//!
//! A caught panic (logged at `alert` by every entry point) is not tested:
//! no input makes the module panic, and a test-only hook would be code
//! that ships for the tests' sake.

mod common;

use std::fs;
use std::time::Duration;

use common::*;

/// Zone `z` (ban at the 2nd failure) in front of a second server that
/// answers 401; a refusal is sent to `@again`, which also checks, so the
/// refusal must be applied again there. Clients are played with realip.
const CONF: &str = r#"
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    authban_zone zone=z:1m maxretry=2 findtime=1m bantime=1m;
    server {
        listen 127.0.0.1:{port};
        location / {
            authban z;
            error_page 403 = @again;
            proxy_pass http://127.0.0.1:{port2};
        }
        location @again {
            authban z;
            proxy_pass http://127.0.0.1:{port2};
        }
    }
    server {
        listen 127.0.0.1:{port2};
        location / { return 401 "no\n"; }
    }
"#;

/// Two failures and a refused request from 192.0.2.7.
fn fail_twice_then_refused(nginx: &Nginx) {
    let port = nginx.port();
    for _ in 0..2 {
        assert_eq!(get_from(port, "/x", "192.0.2.7").status(), Some(401));
    }
    assert_eq!(get_from(port, "/x", "192.0.2.7").status(), Some(403));
    assert!(
        nginx.wait_for_error_log(
            "authban: ban zone=z addr=192.0.2.7 ",
            Duration::from_secs(5)
        ),
        "{}",
        nginx.diagnostics()
    );
}

#[test]
fn debug_lines_trace_a_decision() {
    with_timeout(60, || {
        let nginx = Nginx::options().error_log_level("debug").start(CONF);
        fail_twice_then_refused(&nginx);
        let log = nginx.error_log();
        for line in [
            "[debug]",
            "authban: check zone=z addr=192.0.2.7 key=192.0.2.7 result=PASSED",
            "authban: failure counted zone=z addr=192.0.2.7 status=401 failures=1",
            "authban: failure counted zone=z addr=192.0.2.7 status=401 failures=2",
            "authban: check zone=z addr=192.0.2.7 key=192.0.2.7 result=BANNED",
            "authban: refused again with 403 after an internal redirect",
        ] {
            assert!(log.contains(line), "no {line:?}\n{}", nginx.diagnostics());
        }
        // The documented line, unchanged, at its level (authban_log_level's
        // default).
        let ban = "authban: ban zone=z addr=192.0.2.7 failures=2 bantime=60s offence=1";
        assert!(
            log.lines().any(|l| l.contains("[warn]") && l.contains(ban)),
            "{}",
            nginx.diagnostics()
        );
        nginx.assert_clean();
    });
}

#[test]
fn no_debug_lines_below_debug_level() {
    with_timeout(60, || {
        let nginx = Nginx::options().error_log_level("info").start(CONF);
        fail_twice_then_refused(&nginx);
        let log = nginx.error_log();
        for line in [
            "authban: check ",
            "authban: failure counted",
            "refused again",
        ] {
            assert!(
                !log.contains(line),
                "{line:?} at info\n{}",
                nginx.diagnostics()
            );
        }
        nginx.assert_clean();
    });
}

#[test]
fn module_loaded_by_a_reload_creates_its_zone() {
    with_timeout(60, || {
        // Plain nginx first: its cycle has no authban configuration at all.
        let plain = "server { listen 127.0.0.1:{port}; listen 127.0.0.1:{port2}; \
                     location / { return 401; } }";
        let mut nginx = Nginx::options().without_module().start(plain);
        let conf = fs::read_to_string(nginx.conf_path()).expect("read nginx.conf");
        let (main, _) = conf
            .split_once("# ---- test http block ----\n")
            .expect("http block marker");
        let http = CONF
            .replace("{port2}", &nginx.port2().to_string())
            .replace("{port}", &nginx.port().to_string());
        let with_module = format!(
            "load_module \"{}\";\n{main}# ---- test http block ----\n{http}\n}}\n",
            module_path().display()
        );
        fs::write(nginx.conf_path(), with_module).expect("write nginx.conf");
        nginx.reload();
        fail_twice_then_refused(&nginx);
        nginx.assert_clean();
    });
}
