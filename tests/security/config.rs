//! Configuration that nginx accepted but that meant nothing, or something
//! other than it says: each is now refused, or warned about, or made to
//! mean what it says.

use crate::common::*;

fn server(location_lines: &str) -> String {
    format!(
        r#"
        set_real_ip_from 127.0.0.1;
        real_ip_header X-Forwarded-For;
        authban_zone zone=z:1m maxretry=2 bantime=1h;
        server {{
            listen 127.0.0.1:{{port}};
            location / {{
                authban z;
                {location_lines}
                proxy_pass http://127.0.0.1:{{port2}};
            }}
        }}
        server {{
            listen 127.0.0.1:{{port2}};
            return 401;
        }}
        "#
    )
}

/// A long bantime with no maxtime given is a plain long ban: the default
/// cap on escalation (7 days) follows it instead of refusing it.
#[test]
fn a_long_bantime_needs_no_maxtime() {
    with_timeout(30, || {
        for params in [
            "bantime=30d",
            "bantime=8d increment=off",
            "bantime=8d increment=on",
        ] {
            let (ok, out) = nginx_test_config(&format!(
                "authban_zone zone=z:1m {params};\nserver {{ listen 127.0.0.1:{{port}}; location / {{ authban z; }} }}"
            ));
            assert!(ok, "{params}: {out}");
            assert!(!out.contains("maxtime"), "{params}: {out}");
        }
        let (ok, out) = nginx_test_config(
            "authban_zone zone=z:1m bantime=30d maxtime=1d;\nserver { listen 127.0.0.1:{port}; }",
        );
        assert!(!ok, "a maxtime given shorter than bantime is still refused");
        assert!(
            out.contains("authban_zone: maxtime (86400s) is shorter than bantime (2592000s)"),
            "{out}"
        );
    });
}

/// Clients are folded to IPv4, so an IPv4-mapped ignore network is folded
/// too, and matches the clients it names.
#[test]
fn an_ipv4_mapped_ignore_network_matches_its_clients() {
    with_timeout(30, || {
        let n = Nginx::options()
            .workers(2)
            .start(&server("authban_ignore ::ffff:198.51.100.0/120;"));
        for _ in 0..5 {
            assert_eq!(get_from(n.port(), "/", "198.51.100.5").status(), Some(401));
        }
        for addr in ["198.51.100.6", "::ffff:198.51.100.7"] {
            assert_eq!(get_from(n.port(), "/", addr).status(), Some(401), "{addr}");
        }
        // Outside the network, counting goes on as before.
        for _ in 0..2 {
            get_from(n.port(), "/", "198.51.101.5");
        }
        assert_eq!(get_from(n.port(), "/", "198.51.101.5").status(), Some(403));
        n.assert_clean();
    });
}

/// A success status as a failure would count every success: nginx -t warns,
/// naming the directive and the status.
#[test]
fn a_success_status_as_failure_is_warned_about() {
    with_timeout(30, || {
        for status in ["200", "204", "302"] {
            let (ok, out) =
                nginx_test_config(&server(&format!("authban_fail_status 401 {status};")));
            assert!(ok, "{out}");
            assert!(
                out.contains(&format!(
                    "[warn] authban_fail_status: {status} is not an error status"
                )),
                "{out}"
            );
        }
        let (ok, out) = nginx_test_config(&server("authban_fail_status 401 403 531;"));
        assert!(ok && !out.contains("[warn]"), "{out}");
    });
}
