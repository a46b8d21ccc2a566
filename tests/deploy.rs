//! Deployment checks that need packages installed on the machine, run by
//! `make test-deploy` (tests/deploy.sh) at the right moment, with
//! `--ignored`; a plain `cargo test` lists them as ignored.
//!
//! `AUTHBAN_NGINX` is the distribution's nginx (e.g. Debian's
//! `/usr/sbin/nginx`); the module comes from where the package put it, via
//! the distribution's `include /etc/nginx/modules-enabled/*.conf;`, not from
//! `load_module` of a path of ours.

mod common;

use common::*;

/// An unsigned CloudStack API call: the mock answers 401.
const API: &str = "/client/api?command=listZones&response=json";

/// Where the installed package enabled the module (`$AUTHBAN_MODULES_ENABLED`
/// to test another layout).
fn modules_enabled() -> String {
    std::env::var("AUTHBAN_MODULES_ENABLED").unwrap_or_else(|_| "/etc/nginx/modules-enabled".into())
}

#[test]
#[ignore = "run by tests/deploy.sh once the package is installed"]
fn package_loads_through_modules_enabled_and_bans() {
    with_timeout(60, || {
        let enabled = modules_enabled();
        let mock = Mock::start();
        let nginx = Nginx::options()
            .without_module()
            .main_line(&format!("include {enabled}/*.conf;"))
            .start(
                &r#"
                authban_zone zone=deb:1m maxretry=3 findtime=1m bantime=1m;
                server {
                    listen 127.0.0.1:{port};
                    location /client/api { authban deb; proxy_pass http://MOCK; }
                }
                "#
                .replace("MOCK", &mock.addr()),
            );
        for i in 1..=3 {
            assert_eq!(get(nginx.port(), API).status(), Some(401), "failure {i}");
        }
        assert_eq!(get(nginx.port(), API).status(), Some(403), "after maxretry");
        let log = nginx.error_log();
        assert!(
            log.contains("authban: ban zone=deb addr=127.0.0.1 failures=3"),
            "no ban line in the error log:\n{log}"
        );
    });
}
