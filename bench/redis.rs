//! A `redis-server` for the fleet part: Debian's `/usr/bin/redis-server` on
//! a free loopback port (the harness's [`free_port`]), no persistence
//! (`--save '' --appendonly no`), its files in `bench/tmp/redis-PORT/`, and
//! killed by PID on drop.
//!
//! The harness's timeout cleanup (`with_timeout`) knows only the processes
//! it started itself; a part that times out leaves its thread (and so this
//! value) behind, so every server also goes in a list that
//! [`kill_leftovers`] empties by PID (start time checked) after each part.

use std::fs;
use std::net::{Ipv4Addr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use crate::common::{free_port, wait_until};
use crate::machine::tmp_dir;

pub const SERVER: &str = "/usr/bin/redis-server";
const CLI: &str = "/usr/bin/redis-cli";

/// (pid, start time) of every server not yet dropped.
static LIVE: Mutex<Vec<(i32, u64)>> = Mutex::new(Vec::new());

pub struct Redis {
    child: Child,
    port: u16,
    dir: PathBuf,
    start: u64,
}

impl Redis {
    /// Starts a server and waits (10 s) until it answers PING.
    pub fn start() -> Redis {
        for tool in [SERVER, CLI] {
            assert!(
                fs::metadata(tool).is_ok(),
                "{tool} is missing: run `make bench`, which installs redis-server"
            );
        }
        let mut last = String::new();
        // A port taken by something outside the harness meanwhile: retry.
        for _ in 0..3 {
            let port = free_port();
            let dir = tmp_dir().join(format!("redis-{port}"));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir_all(&dir).expect("create redis dir");
            let log = fs::File::create(dir.join("stdout.log")).expect("create redis log");
            let child = Command::new(SERVER)
                .args(["--bind", "127.0.0.1", "--port", &port.to_string()])
                .args(["--save", "", "--appendonly", "no"])
                .arg("--dir")
                .arg(&dir)
                .arg("--logfile")
                .arg(dir.join("redis.log"))
                .args(["--daemonize", "no", "--protected-mode", "yes"])
                .stdin(Stdio::null())
                .stdout(log.try_clone().expect("dup"))
                .stderr(log)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {SERVER}: {e}"));
            let pid = child.id() as i32;
            let start = starttime(pid).unwrap_or(0);
            LIVE.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push((pid, start));
            let mut redis = Redis {
                child,
                port,
                dir,
                start,
            };
            let ready = wait_until(Duration::from_secs(10), || {
                if matches!(redis.child.try_wait(), Ok(Some(_))) {
                    return true;
                }
                TcpStream::connect((Ipv4Addr::LOCALHOST, port)).is_ok()
                    && redis.try_cli(&["PING"]).is_some_and(|r| r == "PONG")
            });
            if ready && matches!(redis.child.try_wait(), Ok(None)) {
                return redis;
            }
            last = format!(
                "port {port}: {}\n{}",
                fs::read_to_string(redis.dir.join("stdout.log")).unwrap_or_default(),
                fs::read_to_string(redis.dir.join("redis.log")).unwrap_or_default()
            );
            drop(redis);
        }
        panic!("redis-server did not start:\n{last}");
    }

    /// `redis://127.0.0.1:PORT`, for `sync=`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `redis-cli --raw CMD...`: the reply, trimmed; `None` if redis-cli
    /// failed.
    pub fn try_cli(&self, args: &[&str]) -> Option<String> {
        let out: Output = Command::new(CLI)
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "--raw"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    }

    /// As [`try_cli`](Self::try_cli), panicking on failure.
    pub fn cli(&self, args: &[&str]) -> String {
        self.try_cli(args)
            .unwrap_or_else(|| panic!("redis-cli {args:?} on port {} failed", self.port))
    }

    /// `INFO clients`' connected_clients (redis-cli's own included).
    pub fn clients(&self) -> u64 {
        self.cli(&["INFO", "clients"])
            .lines()
            .find_map(|l| l.strip_prefix("connected_clients:"))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &str) -> u64 {
        self.cli(&["PUBSUB", "NUMSUB", channel])
            .lines()
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// Keys matching `pattern` (`SCAN`-free `KEYS`: the bench's instance is
    /// small).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        self.cli(&["KEYS", pattern])
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        let _ = self.child.kill();
        let _ = self.child.wait();
        LIVE.lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|&(p, s)| (p, s) != (pid, self.start));
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Kills (SIGKILL, by PID, start time checked) every server still running:
/// those a timed-out part left behind.
pub fn kill_leftovers() {
    let live: Vec<(i32, u64)> =
        std::mem::take(&mut *LIVE.lock().unwrap_or_else(|e| e.into_inner()));
    for (pid, start) in live {
        if starttime(pid) == Some(start) {
            // SAFETY: kill(2) on a pid whose start time shows it is ours.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Field 22 of `/proc/PID/stat`: with the pid, identifies a process.
fn starttime(pid: i32) -> Option<u64> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 1..];
    rest.split_whitespace().nth(19)?.parse().ok()
}
