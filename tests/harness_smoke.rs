//! Proves the integration-test harness (tests/common) against plain nginx,
//! without the authban module.

mod common;

use std::collections::HashSet;
use std::panic;
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::*;

const BLOCK: &str = r#"
    server {
        listen 127.0.0.1:{port};
        location / { return 200 "ok\n"; }
        location /close { return 444; }
    }
"#;

fn plain() -> NginxOptions {
    Nginx::options().without_module().workers(2)
}

#[test]
fn serves_200_and_444_as_closed() {
    with_timeout(30, || {
        let nginx = plain().start(BLOCK);
        let reply = get(nginx.port(), "/");
        assert_eq!(reply.status(), Some(200));
        assert_eq!(reply.body(), b"ok\n");
        assert_eq!(reply.header("content-length"), Some("3"));

        assert_eq!(get(nginx.port(), "/close"), Reply::Closed);
        assert_eq!(get(nginx.port(), "/close").status(), None);
        // With an unread request body nginx may reset instead of FIN.
        let big = vec![b'x'; 256 * 1024];
        let reply = http(nginx.port(), "POST", "/close", &[], Some(&big));
        assert!(reply.is_closed(), "{reply:?}");

        // nginx logs a request after sending its response: the line may
        // land a moment after the client has read it.
        assert!(
            wait_until(Duration::from_secs(5), || nginx
                .access_log()
                .contains("\"GET / HTTP/1.1\" 200")),
            "{}",
            nginx.access_log()
        );
        assert!(nginx.wait_for_error_log("start worker process", Duration::from_secs(5)));
        assert!(nginx.stop().success());
    });
}

#[test]
fn workers_reload_and_respawn() {
    with_timeout(60, || {
        let mut nginx = plain().start(BLOCK);
        let first = nginx.worker_pids();
        assert_eq!(first.len(), 2, "{first:?}");
        assert!(!first.contains(&nginx.master_pid()));

        nginx.reload();
        let second = nginx.worker_pids();
        assert_eq!(second.len(), 2);
        assert!(
            second.iter().all(|p| !first.contains(p)),
            "{first:?} -> {second:?}"
        );
        assert_eq!(get(nginx.port(), "/").status(), Some(200));

        nginx.reload_with(&BLOCK.replace("\"ok\\n\"", "\"v2\\n\""));
        let third = nginx.worker_pids();
        assert!(third.iter().all(|p| !second.contains(p)));
        assert_eq!(get(nginx.port(), "/").text(), "v2\n");

        let victim = third[0];
        nginx.kill_worker(victim);
        let fourth = nginx.wait_for_workers(2);
        assert!(!fourth.contains(&victim), "{fourth:?}");
        assert!(fourth.contains(&third[1]));
        assert!(nginx.wait_for_error_log(
            &format!("worker process {victim} exited on signal 9"),
            Duration::from_secs(5)
        ));
        assert_eq!(get(nginx.port(), "/").status(), Some(200));
    });
}

#[test]
fn rejected_reload_keeps_old_workers() {
    with_timeout(30, || {
        let mut nginx = plain().start(BLOCK);
        let before = nginx.worker_pids();
        let err = nginx
            .try_reload_with("server { listen 127.0.0.1:{port}; bogus_directive on; }")
            .unwrap_err();
        assert!(err.contains("bogus_directive"), "{err}");
        assert_eq!(nginx.worker_pids(), before);
        assert_eq!(get(nginx.port(), "/").status(), Some(200));
    });
}

#[test]
fn test_config_reports_broken_directive() {
    with_timeout(30, || {
        let (ok, out) =
            plain().test_config("server { listen 127.0.0.1:{port}; bogus_directive on; }");
        assert!(!ok, "{out}");
        assert!(
            out.contains("[emerg]") && out.contains("bogus_directive"),
            "{out}"
        );
        assert!(out.contains("nginx.conf:"), "{out}");

        let (ok, out) = plain().test_config(BLOCK);
        assert!(ok, "{out}");
        assert!(out.contains("test is successful"), "{out}");
    });
}

#[test]
fn keepalive_connection_and_chunked_bodies() {
    with_timeout(30, || {
        let nginx = plain().start(
            r#"
            gzip on;
            gzip_min_length 1;
            gzip_types text/plain;
            default_type text/plain;
            server {
                listen 127.0.0.1:{port};
                location / { return 200 "ok\n"; }
                location /close { return 444; }
            }
            "#,
        );
        let mut conn = Conn::open(nginx.port());
        for _ in 0..3 {
            assert_eq!(conn.get("/").body(), b"ok\n");
        }
        // gzip turns the response into a chunked one.
        for _ in 0..2 {
            let reply = conn.request("GET", "/", &[("Accept-Encoding", "gzip")], None);
            assert_eq!(reply.header("transfer-encoding"), Some("chunked"));
            assert_eq!(&reply.body()[..2], &[0x1f, 0x8b]);
        }
        assert!(!conn.is_closed());
        assert_eq!(conn.get("/close"), Reply::Closed);
        assert!(conn.is_closed());
        assert_eq!(conn.get("/"), Reply::Closed);
        // One connection: nginx logged five requests from one client port.
        assert_eq!(nginx.access_log().lines().count(), 5 + 1 /* 444 */);
    });
}

#[test]
fn realip_plays_client_addresses() {
    with_timeout(30, || {
        let nginx = plain().start(
            r#"
            set_real_ip_from 127.0.0.1;
            real_ip_header X-Forwarded-For;
            server {
                listen 127.0.0.1:{port};
                location / { return 200 "$remote_addr\n"; }
            }
            "#,
        );
        assert_eq!(get(nginx.port(), "/").text(), "127.0.0.1\n");
        assert_eq!(
            get_from(nginx.port(), "/", "203.0.113.9").text(),
            "203.0.113.9\n"
        );
        assert_eq!(
            get_from(nginx.port(), "/", "2001:db8::1").text(),
            "2001:db8::1\n"
        );
        let mut conn = Conn::open(nginx.port());
        assert_eq!(conn.get_from("/", "198.51.100.1").text(), "198.51.100.1\n");
        assert_eq!(conn.get_from("/", "198.51.100.2").text(), "198.51.100.2\n");
    });
}

#[test]
fn bind_local_address() {
    with_timeout(30, || {
        let nginx = plain().start(
            r#"
            server {
                listen 127.0.0.1:{port};
                listen [::1]:{port};
                location / { return 200 "$remote_addr\n"; }
            }
            "#,
        );
        let reply = http_from_ip("127.0.0.7", nginx.port(), "GET", "/", &[], None);
        assert_eq!(reply.text(), "127.0.0.7\n");
        let reply = http_from_ip("::1", nginx.port(), "GET", "/", &[], None);
        assert_eq!(reply.text(), "::1\n");
        let mut conn = Conn::open_from_ip("127.1.2.3", nginx.port());
        assert_eq!(conn.get("/").text(), "127.1.2.3\n");
        assert_eq!(conn.local_addr().ip().to_string(), "127.1.2.3");
    });
}

#[test]
fn port2_and_dir_placeholders() {
    with_timeout(30, || {
        let nginx = plain().start(
            r#"
            server {
                listen 127.0.0.1:{port};
                location / { proxy_pass http://127.0.0.1:{port2}; }
            }
            server {
                listen 127.0.0.1:{port2};
                location / { root {dir}/html; }
            }
            "#,
        );
        assert_ne!(nginx.port(), nginx.port2());
        std::fs::create_dir(nginx.dir().join("html")).unwrap();
        std::fs::write(nginx.dir().join("html/f.txt"), "file\n").unwrap();
        assert_eq!(get(nginx.port(), "/f.txt").text(), "file\n");
        assert_eq!(get(nginx.port2(), "/f.txt").text(), "file\n");
        assert_eq!(get(nginx.port(), "/missing").status(), Some(404));
    });
}

#[test]
fn free_ports_never_repeat() {
    with_timeout(30, || {
        let handles: Vec<_> = (0..8)
            .map(|_| thread::spawn(|| (0..50).map(|_| free_port()).collect::<Vec<u16>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for port in h.join().unwrap() {
                assert!(all.insert(port), "port {port} handed out twice");
            }
        }
    });
}

#[test]
fn with_timeout_kills_a_hung_test() {
    let (pids_tx, pids_rx) = mpsc::channel();
    let (done_tx, done_rx) = mpsc::channel();
    let result = panic::catch_unwind(|| {
        with_timeout(2, move || {
            let nginx = plain().start(BLOCK);
            let mut pids = nginx.worker_pids();
            pids.push(nginx.master_pid());
            pids_tx.send(pids).unwrap();
            // Hang past the timeout, then drop normally (reaping the master
            // and removing the dir).
            thread::sleep(Duration::from_secs(4));
            drop(nginx);
            done_tx.send(()).unwrap();
        })
    });
    let msg = panic_message(result.unwrap_err());
    assert!(msg.contains("did not finish within 2 s"), "{msg}");
    assert!(msg.contains("nginx pid"), "{msg}");
    for pid in pids_rx.recv().unwrap() {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let state = stat.rsplit(')').next().unwrap_or("").trim_start();
        assert!(
            stat.is_empty() || state.starts_with('Z'),
            "pid {pid} still running: {stat}"
        );
    }
    // Let the abandoned body finish so its temp dir is cleaned up.
    done_rx.recv_timeout(Duration::from_secs(10)).unwrap();
}

fn panic_message(payload: Box<dyn std::any::Any + Send>) -> String {
    match payload.downcast::<String>() {
        Ok(s) => *s,
        Err(p) => p.downcast_ref::<&str>().unwrap_or(&"?").to_string(),
    }
}

#[test]
fn body_panics_propagate() {
    let result = panic::catch_unwind(|| with_timeout(10, || panic!("boom {}", 42)));
    assert_eq!(panic_message(result.unwrap_err()), "boom 42");
}

#[test]
fn mock_stats_parser() {
    with_timeout(10, || {
        let (total, by) = Mock::parse_stats(
            r#" {"by_status": {"401": 3, "200":1}, "requests": 4, "x": [true, null, "a\"b"]} "#,
        )
        .unwrap();
        assert_eq!(total, 4);
        assert_eq!(by.get(&401), Some(&3));
        assert_eq!(by.get(&200), Some(&1));
        assert!(Mock::parse_stats(r#"{"requests":1}"#).is_err());
        assert!(Mock::parse_stats("{").is_err());
    });
}

// Panics with "run `make build`" when build/bin/mock-cloudstack is missing,
// rather than passing vacuously.
#[test]
fn mock_counts_and_resets() {
    with_timeout(30, || {
        let mock = Mock::start();
        mock.reset();
        // Unsigned API call: 401. Only /client/api requests are counted.
        let reply = get(mock.port(), "/client/api?command=listZones&response=json");
        assert_eq!(reply.status(), Some(401));
        let (total, by_status) = mock.stats();
        assert_eq!(total, 1, "{by_status:?}");
        assert_eq!(by_status.get(&401), Some(&1), "{by_status:?}");
        assert_eq!(by_status.values().sum::<u64>(), 1);
        mock.reset();
        assert_eq!(mock.stats().0, 0);
    });
}

#[test]
fn json_reader_is_strict_and_keeps_field_order() {
    let v = Json::parse(r#"{"b":1,"a":{"x":[true,"s"]},"c":null}"#).unwrap();
    assert_eq!(v.keys(), ["b", "a", "c"]);
    assert_eq!(v.u64("b"), 1);
    assert!(v.get("a").arr("x")[0].as_bool());
    assert_eq!(v.get("a").arr("x")[1].as_str(), "s");
    assert!(v.opt("d").is_none());
    for bad in [
        r#"{"a":1,"a":2}"#,
        r#"{"a":{"b":1,"b":1}}"#,
        r#"[{"a":1,"a":1}]"#,
        "{\"a\":\"\u{1}\"}",
        r#"{"a":1} x"#,
        r#"{"a":01}"#,
        "",
    ] {
        assert!(Json::parse(bad).is_err(), "{bad}");
    }
}
