//! Issue 19: `cs`, CloudStack's Python client from PyPI (installed into
//! build/cs-venv by `scripts/fetch-cs.sh`), logs in and calls through the
//! example configuration, nginx-conf/cloudstack.conf, unchanged: the file
//! is read as it is, and only what the harness must own is replaced (the
//! upstream's and the listen address's ports, the log paths, and the main
//! lines the harness writes itself).

mod common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::*;

/// The example, relative to the crate.
const EXAMPLE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/nginx-conf/cloudstack.conf");

/// `cs` as a user runs it, one step per run, printing one JSON line:
/// `{"status": 200, "result": ...}`, or the status and error of a refusal.
/// `signed KEY SECRET` calls listZones signed with the key; `login USER
/// PASSWORD DOMAIN` logs in with a password: cs has no login of its own,
/// but without a key it sends any command unsigned, and with method="post"
/// as a form, which is how CloudStack's UI logs in.
const CLIENT: &str = r#"
import json, sys
import requests
from cs import CloudStack, CloudStackException

endpoint, step, *args = sys.argv[1:]
session = requests.Session()
session.trust_env = False  # no proxy from the environment for 127.0.0.1
try:
    if step == "signed":
        key, secret = args
        api = CloudStack(endpoint, key=key, secret=secret, session=session)
        out = {"status": 200, "result": api.listZones()}
    elif step == "login":
        username, password, domain = args
        api = CloudStack(endpoint, method="post", session=session)
        result = api.login(username=username, password=password, domain=domain)
        out = {"status": 200, "result": result}
    else:
        sys.exit("unknown step " + step)
except CloudStackException as e:
    r = e.response
    out = {"status": 0 if r is None else r.status_code, "error": str(e)}
print(json.dumps(out))
"#;

/// The venv's python (`scripts/fetch-cs.sh`); missing is a failure, not a
/// skip.
fn cs_python() -> PathBuf {
    let python = build_dir().join("cs-venv/bin/python");
    assert!(
        python.exists(),
        "{} not found: run scripts/fetch-cs.sh (make test does)",
        python.display()
    );
    python
}

/// Runs one step of [`CLIENT`] against `endpoint` (30 s at most, killed by
/// pid after that) and returns what it printed.
fn cs(endpoint: &str, args: &[&str]) -> Json {
    let out = run_bounded(
        Command::new(cs_python())
            .arg("-c")
            .arg(CLIENT)
            .arg(endpoint)
            .args(args),
        Duration::from_secs(30),
    )
    .unwrap_or_else(|e| panic!("cs {args:?}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "cs {args:?} exited with {}\n{stdout}\n{stderr}",
        out.status
    );
    Json::parse(stdout.trim()).unwrap_or_else(|e| panic!("cs {args:?} printed {stdout:?}: {e}"))
}

/// `text` with `from` replaced by `to`, which must occur exactly once.
fn replace_once(text: &str, from: &str, to: &str) -> String {
    assert_eq!(
        text.matches(from).count(),
        1,
        "{EXAMPLE} should name {from:?} once"
    );
    text.replacen(from, to, 1)
}

/// The example's top-level statements (comments dropped), each whole:
/// `name args;` or `name args { ... }`.
fn top_level(conf: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let (mut depth, mut quote, mut comment) = (0usize, None, false);
    let mut current = String::new();
    for c in conf.chars() {
        if comment {
            comment = c != '\n';
            if depth > 0 {
                current.push(c);
            }
            continue;
        }
        if let Some(q) = quote {
            current.push(c);
            if c == q {
                quote = None;
            }
            continue;
        }
        match c {
            '#' => {
                comment = true;
                if depth > 0 {
                    current.push(c);
                }
                continue;
            }
            '"' | '\'' => quote = Some(c),
            '{' => depth += 1,
            '}' => depth = depth.checked_sub(1).expect("unbalanced } in example"),
            _ => {}
        }
        if current.is_empty() && c.is_whitespace() {
            continue;
        }
        current.push(c);
        if depth == 0 && (c == ';' || c == '}') {
            statements.push(std::mem::take(&mut current));
        }
    }
    assert!(
        current.trim().is_empty() && depth == 0,
        "unterminated statement in example: {current:?}"
    );
    statements
}

/// nginx options and http block for the example in front of `mock`:
/// - the harness's own main lines replace load_module (its module path),
///   pid, error_log (its dir; `debug`, for the lines that show a failure
///   counted) and events; worker_processes is taken from the example;
///   any other main line is kept as is;
/// - in the http block, the upstream `127.0.0.1:8080` becomes the mock,
///   `listen 127.0.0.1:8000` the harness's port, and the relative
///   `logs/` paths the nginx dir.
fn example(mock: &Mock) -> (NginxOptions, String) {
    let conf = fs::read_to_string(EXAMPLE).expect("read the example config");
    let mut opts = Nginx::options().error_log_level("debug");
    let mut http = None;
    for statement in top_level(&conf) {
        let name = statement.split_whitespace().next().unwrap_or_default();
        match name {
            "load_module" | "pid" | "error_log" | "events" => {}
            "worker_processes" => {
                let n = statement
                    .trim_start_matches("worker_processes")
                    .trim_end_matches(';')
                    .trim();
                opts = opts.workers(n.parse().expect("worker_processes N"));
            }
            "http" => {
                let body = &statement[statement.find('{').unwrap() + 1..statement.len() - 1];
                assert!(http.replace(body.to_string()).is_none(), "two http blocks");
            }
            _ => opts = opts.main_line(&statement),
        }
    }
    let http = http.expect("the example has an http block");
    let http = replace_once(
        &http,
        "server 127.0.0.1:8080;",
        &format!("server {};", mock.addr()),
    );
    let http = replace_once(&http, "listen 127.0.0.1:8000;", "listen 127.0.0.1:{port};");
    let http = http.replace(" logs/", " {dir}/example-");
    (opts, http)
}

/// `authban: failure counted zone=Z ...` lines in the debug log, as
/// (key, failures) in order.
fn counted(nginx: &Nginx, zone: &str) -> Vec<(String, u64)> {
    let needle = format!("authban: failure counted zone={zone} addr=");
    nginx
        .error_log()
        .lines()
        .filter_map(|l| {
            let rest = &l[l.find(&needle)? + needle.len()..];
            let key = rest.split(' ').next()?.to_string();
            let n = rest.split(" failures=").nth(1)?.split([',', ' ']).next()?;
            Some((key, n.parse().ok()?))
        })
        .collect()
}

fn assert_login_ok(reply: &Json, nginx: &Nginx) {
    assert_eq!(reply.u64("status"), 200, "{reply:?}\n{}", nginx.log_tail());
    let result = reply.get("result");
    assert_eq!(result.str("username"), "admin");
    assert!(!result.str("sessionkey").is_empty(), "{reply:?}");
}

#[test]
fn the_cs_client_logs_in_and_calls_through_the_example_config() {
    with_timeout(150, || {
        let mock = Mock::start();
        let (opts, http) = example(&mock);
        let nginx = opts.start(&http);
        assert_eq!(nginx.worker_pids().len(), 2, "the example runs 2 workers");
        let endpoint = format!("http://127.0.0.1:{}/client/api", nginx.port());
        let counted_settled = |zone: &str| {
            let mut lines = Vec::new();
            settled_count(|| {
                lines = counted(&nginx, zone);
                lines.len()
            });
            lines
        };

        // (a) A signed call with the mock's demo key: the mock's zones.
        let reply = cs(
            &endpoint,
            &["signed", "authban-demo-key", "authban-demo-secret"],
        );
        assert_eq!(reply.u64("status"), 200, "{reply:?}\n{}", nginx.log_tail());
        let zones = reply.get("result").arr("zone");
        assert_eq!(zones.len(), 1, "{reply:?}");
        assert_eq!(zones[0].str("name"), "authban-demo-zone", "{reply:?}");

        // (b) A password login, a POSTed form that authban_read_body reads
        // (the accounts zone's key comes from it) and the upstream still
        // gets whole.
        assert_login_ok(&cs(&endpoint, &["login", "admin", "password", "/"]), &nginx);
        assert!(
            nginx.error_log().contains("authban: request body read"),
            "{}",
            nginx.log_tail()
        );

        // (c) Wrong logins: 531, each counted in the accounts zone under the
        // account's key (domain/username), alice's apart from admin's, and
        // in the address zone; the API key zone has no key to count.
        for _ in 0..3 {
            let reply = cs(&endpoint, &["login", "admin", "guess", "/"]);
            assert_eq!(reply.u64("status"), 531, "{reply:?}\n{}", nginx.log_tail());
        }
        let reply = cs(&endpoint, &["login", "alice", "guess", "/"]);
        assert_eq!(reply.u64("status"), 531, "{reply:?}");
        let accounts = counted_settled("accounts");
        let failures: Vec<u64> = accounts.iter().map(|(_, n)| *n).collect();
        assert_eq!(failures, [1, 2, 3, 1], "{accounts:?}\n{}", nginx.log_tail());
        assert!(
            accounts[..3].iter().all(|(k, _)| *k == accounts[0].0)
                && accounts[3].0 != accounts[0].0,
            "admin's failures under one key, alice's under another: {accounts:?}"
        );
        let by_address: Vec<u64> = counted_settled("cloudstack")
            .iter()
            .map(|(_, n)| *n)
            .collect();
        assert_eq!(by_address, [1, 2, 3, 4], "{}", nginx.log_tail());
        assert_eq!(counted(&nginx, "apikeys"), []);

        // Below maxretry the right password still logs in, and signed calls
        // still work.
        assert_login_ok(&cs(&endpoint, &["login", "admin", "password", "/"]), &nginx);
        let reply = cs(
            &endpoint,
            &["signed", "authban-user-key", "authban-user-secret"],
        );
        assert_eq!(reply.u64("status"), 200, "{reply:?}");

        // Every request went through the example's server, as its own
        // access log (format `authban`) shows.
        let log = fs::read_to_string(nginx.dir().join("example-access.log")).unwrap_or_default();
        let statuses: Vec<&str> = log
            .lines()
            .filter_map(|l| l.split("HTTP/1.1\" ").nth(1)?.split(' ').next())
            .collect();
        assert_eq!(
            statuses,
            ["200", "200", "531", "531", "531", "531", "200", "200"],
            "{log}"
        );
        assert!(log.lines().all(|l| l.ends_with("authban=PASSED")), "{log}");
        nginx.assert_clean();
    });
}
