//! The mock CloudStack upstream, `build/bin/mock-cloudstack`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{http, Reply};
use super::json::Json;
use super::paths::mock_bin;
use super::ports::free_port;
use super::process::{lock, Tracked};

const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `mock-cloudstack serve --listen 127.0.0.1:PORT`. Killed (by
/// pid) on drop, or by [`with_timeout`](super::with_timeout) on timeout.
pub struct Mock {
    child: Child,
    port: u16,
    stderr: Arc<Mutex<String>>,
    _tracked: Arc<Tracked>,
}

impl Mock {
    /// Spawns the mock on a free port and waits (10 s) for its ready line.
    pub fn start() -> Mock {
        let bin = mock_bin();
        let mut last_err = String::new();
        // A port grabbed by something outside the harness makes the mock
        // exit early: retry on a fresh one.
        for _ in 0..3 {
            let port = free_port();
            let mut child = Command::new(&bin)
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let tracked = Tracked::new(
                format!("mock-cloudstack pid {} port {port}", child.id()),
                child.id() as i32,
            );
            // Drain both pipes for the mock's whole life so it never blocks
            // on a full pipe; stdout lines go to the ready check.
            let (tx, rx) = mpsc::channel();
            let stdout = child.stdout.take().expect("piped stdout");
            thread::spawn(move || {
                for line in BufReader::new(stdout).lines() {
                    let Ok(line) = line else { break };
                    let _ = tx.send(line);
                }
            });
            let stderr = Arc::new(Mutex::new(String::new()));
            let mut pipe = child.stderr.take().expect("piped stderr");
            let sink = Arc::clone(&stderr);
            thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = pipe.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    lock(&sink).push_str(&String::from_utf8_lossy(&chunk[..n]));
                }
            });
            let mut mock = Mock {
                child,
                port,
                stderr,
                _tracked: tracked,
            };
            let want = format!("mock-cloudstack listening on 127.0.0.1:{port}");
            let deadline = Instant::now() + READY_TIMEOUT;
            let mut stdout_seen = Vec::new();
            let outcome = loop {
                match rx.recv_timeout(Duration::from_millis(50)) {
                    Ok(line) if line.trim() == want => break Ok(()),
                    Ok(line) => stdout_seen.push(line),
                    Err(RecvTimeoutError::Timeout) | Err(RecvTimeoutError::Disconnected) => {
                        if let Ok(Some(status)) = mock.child.try_wait() {
                            break Err(format!("exited with {status} before ready"));
                        }
                        if Instant::now() >= deadline {
                            break Err(format!("no ready line within {READY_TIMEOUT:?}"));
                        }
                        // Disconnected without exit: keep polling the status.
                        thread::sleep(Duration::from_millis(10));
                    }
                }
            };
            match outcome {
                Ok(()) => return mock,
                Err(e) => {
                    // Give the stderr thread a moment to collect the reason.
                    thread::sleep(Duration::from_millis(50));
                    last_err = format!(
                        "mock-cloudstack on port {port}: {e}\n--- stdout:\n{}\n--- stderr:\n{}",
                        stdout_seen.join("\n"),
                        lock(&mock.stderr)
                    );
                    let retry = last_err.contains("in use");
                    drop(mock);
                    if !retry {
                        break;
                    }
                }
            }
        }
        panic!("mock-cloudstack failed to start: {last_err}");
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`, e.g. for an nginx `proxy_pass http://...`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `GET /_mock/stats`: (total requests, count by status code).
    pub fn stats(&self) -> (u64, HashMap<u16, u64>) {
        let reply = http(self.port, "GET", "/_mock/stats", &[], None);
        let text = match &reply {
            Reply::Response(r) if r.status == 200 => r.text(),
            other => panic!("mock /_mock/stats answered {other:?}"),
        };
        parse_stats(&text).unwrap_or_else(|e| panic!("mock stats {text:?}: {e}"))
    }

    /// `POST /_mock/reset`: zeroes the counters.
    pub fn reset(&self) {
        let reply = http(self.port, "POST", "/_mock/reset", &[], Some(b""));
        let status = reply.status();
        assert!(
            status.is_some_and(|s| (200..300).contains(&s)),
            "mock /_mock/reset answered {reply:?}"
        );
    }

    /// Parses a `/_mock/stats` body (public so the harness's own smoke test
    /// can check the parser without the mock binary).
    pub fn parse_stats(text: &str) -> Result<(u64, HashMap<u16, u64>), String> {
        parse_stats(text)
    }

    /// What the mock wrote to stderr so far.
    pub fn stderr(&self) -> String {
        lock(&self.stderr).clone()
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `{"requests":N,"by_status":{"401":n,...}}`, any key order, other keys
/// ignored.
fn parse_stats(text: &str) -> Result<(u64, HashMap<u16, u64>), String> {
    let top = Json::parse(text)?;
    let Value::Object(top) = top.value() else {
        return Err("not an object".into());
    };
    let total = match top.get("requests") {
        Some(Value::Number(n)) => n.as_u64().ok_or_else(|| format!("bad requests {n}"))?,
        _ => return Err("no numeric \"requests\"".into()),
    };
    let mut by_status = HashMap::new();
    match top.get("by_status") {
        Some(Value::Object(entries)) => {
            for (k, v) in entries {
                let code: u16 = k.parse().map_err(|_| format!("bad status key {k:?}"))?;
                let Value::Number(n) = v else {
                    return Err(format!("non-numeric count for {k}"));
                };
                by_status.insert(code, n.as_u64().ok_or_else(|| format!("bad count {n}"))?);
            }
        }
        _ => return Err("no object \"by_status\"".into()),
    }
    Ok((total, by_status))
}
