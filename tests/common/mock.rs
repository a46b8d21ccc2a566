//! The mock CloudStack upstream, `build/bin/mock-cloudstack`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use super::client::{http, Reply};
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
    let Json::Obj(top) = Parser::parse(text)? else {
        return Err("not an object".into());
    };
    let get = |k: &str| top.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let total = match get("requests") {
        Some(Json::Num(n)) => n.parse().map_err(|_| format!("bad requests {n}"))?,
        _ => return Err("no numeric \"requests\"".into()),
    };
    let mut by_status = HashMap::new();
    match get("by_status") {
        Some(Json::Obj(entries)) => {
            for (k, v) in entries {
                let code: u16 = k.parse().map_err(|_| format!("bad status key {k:?}"))?;
                let Json::Num(n) = v else {
                    return Err(format!("non-numeric count for {k}"));
                };
                by_status.insert(code, n.parse().map_err(|_| format!("bad count {n}"))?);
            }
        }
        _ => return Err("no object \"by_status\"".into()),
    }
    Ok((total, by_status))
}

/// Just enough JSON (no serde in the harness). Numbers stay text.
#[derive(Debug)]
enum Json {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

struct Parser<'a> {
    s: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn parse(text: &str) -> Result<Json, String> {
        let mut p = Parser {
            s: text.as_bytes(),
            i: 0,
        };
        let v = p.value()?;
        p.ws();
        if p.i != p.s.len() {
            return Err(format!("trailing data at byte {}", p.i));
        }
        Ok(v)
    }

    fn ws(&mut self) {
        while self.s.get(self.i).is_some_and(|c| c.is_ascii_whitespace()) {
            self.i += 1;
        }
    }

    fn eat(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.s.get(self.i) == Some(&c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!("expected '{}' at byte {}", c as char, self.i))
        }
    }

    fn value(&mut self) -> Result<Json, String> {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut entries = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b'}') {
                    self.i += 1;
                    return Ok(Json::Obj(entries));
                }
                loop {
                    self.ws();
                    let key = self.string()?;
                    self.eat(b':')?;
                    entries.push((key, self.value()?));
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b'}') => {
                            self.i += 1;
                            return Ok(Json::Obj(entries));
                        }
                        _ => return Err(format!("expected ',' or '}}' at byte {}", self.i)),
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.s.get(self.i) == Some(&b']') {
                    self.i += 1;
                    return Ok(Json::Arr(items));
                }
                loop {
                    items.push(self.value()?);
                    self.ws();
                    match self.s.get(self.i) {
                        Some(b',') => self.i += 1,
                        Some(b']') => {
                            self.i += 1;
                            return Ok(Json::Arr(items));
                        }
                        _ => return Err(format!("expected ',' or ']' at byte {}", self.i)),
                    }
                }
            }
            Some(b'"') => Ok(Json::Str(self.string()?)),
            Some(b't') => self.word("true", Json::Bool(true)),
            Some(b'f') => self.word("false", Json::Bool(false)),
            Some(b'n') => self.word("null", Json::Null),
            Some(c) if *c == b'-' || c.is_ascii_digit() => {
                let start = self.i;
                while self
                    .s
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || b"+-.eE".contains(c))
                {
                    self.i += 1;
                }
                Ok(Json::Num(
                    String::from_utf8_lossy(&self.s[start..self.i]).into_owned(),
                ))
            }
            _ => Err(format!("unexpected input at byte {}", self.i)),
        }
    }

    fn word(&mut self, w: &str, v: Json) -> Result<Json, String> {
        if self.s[self.i..].starts_with(w.as_bytes()) {
            self.i += w.len();
            Ok(v)
        } else {
            Err(format!("bad literal at byte {}", self.i))
        }
    }

    fn string(&mut self) -> Result<String, String> {
        self.eat(b'"')?;
        let mut out = Vec::new();
        loop {
            match self.s.get(self.i) {
                None => return Err("unterminated string".into()),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(String::from_utf8_lossy(&out).into_owned());
                }
                Some(b'\\') => {
                    let esc = *self.s.get(self.i + 1).ok_or("bad escape")?;
                    self.i += 2;
                    match esc {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = self.s.get(self.i..self.i + 4).ok_or("bad \\u escape")?;
                            let code = u32::from_str_radix(&String::from_utf8_lossy(hex), 16)
                                .map_err(|_| "bad \\u escape")?;
                            let c = char::from_u32(code).unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                            self.i += 4;
                        }
                        other => out.push(other),
                    }
                }
                Some(&c) => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
    }
}
