//! wrk over loopback: one thread pinned to the load core, a bounded run,
//! and its totals read from the one line our Lua scripts print.

use std::fs::{self, File};
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::machine::{bench_file, pinned, tmp_dir, LOAD_CPU};

/// Which Lua script drives wrk (both in `bench/wrk/`).
#[derive(Clone, Copy, Debug)]
pub enum Script {
    /// The same request every time (`summary.lua`).
    Fixed,
    /// A new client address per request, counting from `start`, modulo
    /// `count` if given (`addresses.lua`).
    Addresses { start: u64, count: Option<u64> },
}

/// One wrk run: `wrk -t1 -cCONNS -dSECSs` against `url`.
#[derive(Clone, Debug)]
pub struct Load {
    pub url: String,
    pub secs: u64,
    pub conns: u32,
    pub script: Script,
    pub headers: Vec<(String, String)>,
}

impl Load {
    /// 32 connections, fixed requests, no extra header.
    pub fn new(url: String, secs: u64) -> Self {
        Load {
            url,
            secs,
            conns: 32,
            script: Script::Fixed,
            headers: Vec::new(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// Every request from the next address, from address `start` on.
    pub fn addresses(mut self, start: u64) -> Self {
        self.script = Script::Addresses { start, count: None };
        self
    }

    /// Addresses `start % count`, `(start + 1) % count`, ...: the same
    /// `count` addresses over and over.
    pub fn addresses_mod(mut self, start: u64, count: u64) -> Self {
        self.script = Script::Addresses {
            start,
            count: Some(count),
        };
        self
    }
}

/// What wrk counted.
#[derive(Clone, Copy, Debug, Default)]
pub struct Totals {
    /// Complete responses (any status).
    pub requests: u64,
    pub seconds: f64,
    /// Requests `addresses.lua` generated, i.e. distinct addresses sent.
    pub generated: u64,
    pub connect_errors: u64,
    /// Connections closed before a complete response (nginx's 444).
    pub read_errors: u64,
    pub write_errors: u64,
    pub timeouts: u64,
    /// Responses with status >= 400.
    pub status_errors: u64,
}

impl Totals {
    /// Complete responses per second.
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    /// Connections closed without a response, per second.
    pub fn closes_per_sec(&self) -> f64 {
        self.read_errors as f64 / self.seconds
    }

    pub fn socket_errors(&self) -> u64 {
        self.connect_errors + self.read_errors + self.write_errors + self.timeouts
    }
}

/// Runs wrk and returns its totals. wrk is killed (by pid) if it has not
/// finished 20 s after its duration; that, or a run without totals, panics.
pub fn run(load: &Load) -> Totals {
    static RUN: AtomicU64 = AtomicU64::new(0);
    let n = RUN.fetch_add(1, Ordering::Relaxed);
    let out_path = tmp_dir().join(format!("wrk-{n}.out"));
    let out = File::create(&out_path).expect("create wrk output file");
    let script = match load.script {
        Script::Fixed => bench_file("wrk/summary.lua"),
        Script::Addresses { .. } => bench_file("wrk/addresses.lua"),
    };
    let mut cmd = pinned(LOAD_CPU, "wrk");
    cmd.args(["-t1", &format!("-c{}", load.conns)])
        .arg(format!("-d{}s", load.secs))
        .args(["--timeout", "2s", "-s"])
        .arg(&script);
    for (name, value) in &load.headers {
        cmd.arg("-H").arg(format!("{name}: {value}"));
    }
    cmd.arg(&load.url);
    if let Script::Addresses { start, count } = load.script {
        cmd.args(["--", &start.to_string()]);
        cmd.args(count.map(|c| c.to_string()));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run wrk: {e}"));
    let deadline = Instant::now() + Duration::from_secs(load.secs + 20);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for wrk") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("wrk {load:?} did not finish in time; killed it");
        }
        thread::sleep(Duration::from_millis(50));
    };
    let text = fs::read_to_string(&out_path).unwrap_or_default();
    let _ = fs::remove_file(&out_path);
    match parse(&text) {
        Some(totals) if status.success() => totals,
        _ => panic!("wrk {load:?} failed ({status}):\n{text}"),
    }
}

/// The `BENCH requests=.. duration_us=.. ...` line.
fn parse(text: &str) -> Option<Totals> {
    let line = text.lines().find(|l| l.starts_with("BENCH "))?;
    let field = |name: &str| -> Option<u64> {
        line.split_whitespace()
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))?
            .parse()
            .ok()
    };
    Some(Totals {
        requests: field("requests")?,
        seconds: field("duration_us")? as f64 / 1e6,
        generated: field("generated")?,
        connect_errors: field("connect")?,
        read_errors: field("read")?,
        write_errors: field("write")?,
        timeouts: field("timeout")?,
        status_errors: field("status")?,
    })
}
