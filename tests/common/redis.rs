//! A real `redis-server` (Debian's package, `/usr/bin/redis-server`, or
//! `$AUTHBAN_REDIS_SERVER`) on a free loopback port, for the fleet tests.
//!
//! No persistence (`--save '' --appendonly no`), its files in a private temp
//! dir. Killed (by pid) on drop or by [`with_timeout`](super::with_timeout);
//! [`Redis::stop`] and [`Redis::restart`] play an outage, on the same port.
//! [`Redis::cmd`] talks RESP over a plain `TcpStream`, enough for PING and
//! a few reads.

use std::fs::{self, File};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::paths::{fresh_dir, keep_tmp};
use super::ports::free_port;
use super::process::{await_ready, kill_server, spawn_again, spawn_logged, Startup, Tracked};

const READY_TIMEOUT: Duration = Duration::from_secs(10);
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The redis-server binary: `$AUTHBAN_REDIS_SERVER`, else Debian's.
pub fn redis_server_bin() -> PathBuf {
    let path = std::env::var_os("AUTHBAN_REDIS_SERVER")
        .filter(|v| !v.is_empty())
        .map_or_else(|| PathBuf::from("/usr/bin/redis-server"), PathBuf::from);
    if !path.is_file() {
        panic!(
            "redis-server not found at {}: run scripts/deps-redis.sh (Debian's \
             redis-server, its service not started) or set AUTHBAN_REDIS_SERVER",
            path.display()
        );
    }
    path
}

/// A RESP reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resp {
    Simple(String),
    Error(String),
    Int(i64),
    Bulk(Option<String>),
    Array(Option<Vec<Resp>>),
}

/// A running redis-server.
pub struct Redis {
    child: Option<Child>,
    tracked: Option<Arc<Tracked>>,
    port: u16,
    password: Option<String>,
    dir: PathBuf,
    /// A TLS port beside the plain one (which the harness's own commands
    /// use), and redis-server's `--tls-*` arguments.
    tls: Option<(u16, Vec<String>)>,
}

impl Redis {
    /// Starts redis-server without a password.
    pub fn start() -> Redis {
        Redis::launch(None)
    }

    /// Starts redis-server with `--requirepass password`.
    pub fn start_with_password(password: &str) -> Redis {
        Redis::launch(Some(password.to_string()))
    }

    /// Starts redis-server with a TLS port too: `cert` and `key` its
    /// certificate, `ca` what client certificates must verify against
    /// when `client_certs` (`--tls-auth-clients yes`).
    pub fn start_tls(cert: &Path, key: &Path, ca: &Path, client_certs: bool) -> Redis {
        let args = [
            ("--tls-cert-file", cert.display().to_string()),
            ("--tls-key-file", key.display().to_string()),
            ("--tls-ca-cert-file", ca.display().to_string()),
            (
                "--tls-auth-clients",
                if client_certs { "yes" } else { "no" }.to_string(),
            ),
        ];
        let args = args
            .into_iter()
            .flat_map(|(k, v)| [k.to_string(), v])
            .collect();
        Redis::launch_with(None, Some((free_port(), args)))
    }

    fn launch(password: Option<String>) -> Redis {
        Redis::launch_with(password, None)
    }

    fn launch_with(password: Option<String>, tls: Option<(u16, Vec<String>)>) -> Redis {
        let mut redis = Redis {
            child: None,
            tracked: None,
            port: 0,
            password,
            dir: fresh_dir("redis"),
            tls,
        };
        // A port taken by something outside the harness: try another.
        let mut last = String::new();
        for _ in 0..3 {
            redis.port = free_port();
            match redis.spawn() {
                Ok(()) => return redis,
                Err(e) => last = e,
            }
        }
        panic!("redis-server failed to start: {last}");
    }

    /// Spawns redis-server on `self.port` and waits until it answers PING.
    fn spawn(&mut self) -> Result<(), String> {
        let bin = redis_server_bin();
        let dir = self.dir.display().to_string();
        let port = self.port.to_string();
        let logfile = self.dir.join("redis.log").display().to_string();
        let mut args: Vec<&str> = vec![
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
            "--daemonize",
            "no",
            "--logfile",
            &logfile,
        ];
        if let Some(pw) = &self.password {
            args.extend(["--requirepass", pw]);
        }
        let tls_port = self.tls.as_ref().map(|(p, _)| p.to_string());
        if let (Some((_, tls_args)), Some(tls_port)) = (&self.tls, &tls_port) {
            // 127.0.0.2 too: an address its certificate does not name.
            args.insert(4, "127.0.0.2");
            args.extend(["--tls-port", tls_port]);
            args.extend(tls_args.iter().map(String::as_str));
        }
        let (mut child, tracked) = spawn_logged(
            Command::new(&bin).args(&args),
            &self.dir.join("stdout.log"),
            &format!("redis-server port {}", self.port),
        );
        let startup = await_ready(&mut child, READY_TIMEOUT, || {
            self.cmd(&["PING"]) == Ok(Resp::Simple("PONG".into()))
        });
        self.tracked = Some(tracked);
        self.child = Some(child);
        match startup {
            Startup::Ready => Ok(()),
            Startup::Exited(status) => {
                self.child = None;
                Err(format!(
                    "redis-server on port {} exited with {status}\n{}",
                    self.port,
                    self.log()
                ))
            }
            Startup::TimedOut => {
                self.stop();
                Err(format!(
                    "redis-server on port {} does not answer PING within {READY_TIMEOUT:?}\n{}",
                    self.port,
                    self.log()
                ))
            }
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `redis://127.0.0.1:PORT` (with `:PASSWORD@` when it has one), for
    /// `sync=`.
    pub fn url(&self) -> String {
        match &self.password {
            Some(pw) => format!("redis://:{pw}@127.0.0.1:{}", self.port),
            None => format!("redis://127.0.0.1:{}", self.port),
        }
    }

    /// `rediss://HOST:TLS_PORT`, for a Redis started with [`Redis::start_tls`].
    pub fn tls_url(&self, host: &str) -> String {
        let (port, _) = self.tls.as_ref().expect("started with start_tls");
        format!("rediss://{host}:{port}")
    }

    /// The URL as authban shows it (API, logs): no password, DB spelled out.
    pub fn shown_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs redis-server (a crash, not a shutdown) and reaps it.
    pub fn stop(&mut self) {
        kill_server(&mut self.tracked, &mut self.child);
    }

    /// Starts redis-server again on the same port (empty: no persistence).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(last) = spawn_again(|| self.spawn()) {
            panic!("redis-server failed to restart: {last}");
        }
    }

    /// redis-server's own log.
    pub fn log(&self) -> String {
        let mut s = read_lossy(&self.dir.join("stdout.log"));
        s += &read_lossy(&self.dir.join("redis.log"));
        s
    }

    /// One command on a fresh connection (AUTH first when it has a
    /// password); `Err` for an I/O or protocol error, not for a Redis error
    /// reply (that is `Ok(Resp::Error)`).
    pub fn cmd(&self, args: &[&str]) -> Result<Resp, String> {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).map_err(|e| e.to_string())?;
        stream
            .set_read_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
        let mut writer = stream;
        if let Some(pw) = &self.password {
            match exchange(&mut writer, &mut reader, &["AUTH", pw])? {
                Resp::Simple(ok) if ok == "OK" => {}
                other => return Err(format!("AUTH: {other:?}")),
            }
        }
        exchange(&mut writer, &mut reader, args)
    }

    /// A field of `INFO SECTION` (`connected_clients`, `redis_version`...).
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        let Ok(Resp::Bulk(Some(text))) = self.cmd(&["INFO", section]) else {
            return None;
        };
        let prefix = format!("{field}:");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .map(|v| v.trim().to_string())
    }

    /// Connections to the server (this query's own included).
    pub fn clients(&self) -> u64 {
        self.info("clients", "connected_clients")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Subscribers of `channel` (`PUBSUB NUMSUB`).
    pub fn subscribers(&self, channel: &str) -> u64 {
        match self.cmd(&["PUBSUB", "NUMSUB", channel]) {
            Ok(Resp::Array(Some(items))) => match items.get(1) {
                Some(Resp::Int(n)) => u64::try_from(*n).unwrap_or(0),
                _ => 0,
            },
            _ => 0,
        }
    }

    /// Keys matching `pattern` (KEYS: fine on a test instance).
    pub fn keys(&self, pattern: &str) -> Vec<String> {
        match self.cmd(&["KEYS", pattern]) {
            Ok(Resp::Array(Some(items))) => items
                .into_iter()
                .map(|r| match r {
                    Resp::Bulk(Some(s)) => s,
                    other => panic!("KEYS {pattern}: item {other:?}"),
                })
                .collect(),
            other => panic!("KEYS {pattern}: {other:?}"),
        }
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() || keep_tmp() {
            eprintln!("authban harness: kept redis dir {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn exchange(w: &mut TcpStream, r: &mut impl BufRead, args: &[&str]) -> Result<Resp, String> {
    let mut req = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        req.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        req.extend_from_slice(a.as_bytes());
        req.extend_from_slice(b"\r\n");
    }
    w.write_all(&req).map_err(|e| e.to_string())?;
    read_resp(r)
}

fn read_resp(r: &mut impl BufRead) -> Result<Resp, String> {
    let mut line = String::new();
    if r.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Err("connection closed".into());
    }
    let line = line
        .strip_suffix("\r\n")
        .ok_or_else(|| format!("bad RESP line {line:?}"))?;
    let (kind, rest) = line.split_at(1.min(line.len()));
    let num = || {
        rest.parse::<i64>()
            .map_err(|_| format!("bad RESP {line:?}"))
    };
    Ok(match kind {
        "+" => Resp::Simple(rest.to_string()),
        "-" => Resp::Error(rest.to_string()),
        ":" => Resp::Int(num()?),
        "$" => match usize::try_from(num()?) {
            Err(_) => Resp::Bulk(None),
            Ok(len) => {
                let mut buf = vec![0u8; len + 2];
                r.read_exact(&mut buf).map_err(|e| e.to_string())?;
                buf.truncate(len);
                Resp::Bulk(Some(String::from_utf8_lossy(&buf).into_owned()))
            }
        },
        "*" => match usize::try_from(num()?) {
            Err(_) => Resp::Array(None),
            Ok(n) => Resp::Array(Some(
                (0..n).map(|_| read_resp(r)).collect::<Result<_, _>>()?,
            )),
        },
        _ => return Err(format!("bad RESP {line:?}")),
    })
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}
