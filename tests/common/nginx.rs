//! A real nginx (master + workers) in a private temp directory.

use std::collections::HashMap;
use std::fs::{self, File};
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::paths::{fresh_dir, keep_tmp, module_path, nginx_bin};
use super::ports::free_port;
use super::process::{alive, children, cmdline, same_alive, signal, stat, Tracked};
use super::wait_until;

/// Bound for start, reload, stop and worker waits.
const WAIT: Duration = Duration::from_secs(10);

/// How to configure and start nginx. Obtain with [`Nginx::options`] (or
/// `NginxOptions::default()`), then [`start`](Self::start) or
/// [`test_config`](Self::test_config).
#[derive(Debug, Clone)]
pub struct NginxOptions {
    workers: usize,
    load_module: bool,
    error_log_level: String,
    main_lines: Vec<String>,
    start_timeout: Duration,
}

impl Default for NginxOptions {
    fn default() -> Self {
        NginxOptions {
            // At least two workers by default: the module's state must be
            // shared across workers, which one worker would never exercise.
            workers: 2,
            load_module: true,
            error_log_level: "info".to_string(),
            main_lines: Vec::new(),
            start_timeout: WAIT,
        }
    }
}

impl NginxOptions {
    /// `worker_processes n;` (default 2).
    pub fn workers(mut self, n: usize) -> Self {
        assert!(n >= 1, "nginx needs at least one worker");
        self.workers = n;
        self
    }

    /// Whether the first line is `load_module <authban .so>;` (default yes).
    pub fn load_module(mut self, yes: bool) -> Self {
        self.load_module = yes;
        self
    }

    /// Plain nginx, without the authban module.
    pub fn without_module(self) -> Self {
        self.load_module(false)
    }

    /// Level of the main `error_log` (default `info`).
    pub fn error_log_level(mut self, level: &str) -> Self {
        self.error_log_level = level.to_string();
        self
    }

    /// An extra main-context line, e.g. `worker_shutdown_timeout 1s;` or
    /// `env FOO;` (placeholders are substituted as in the http block).
    pub fn main_line(mut self, line: &str) -> Self {
        self.main_lines.push(line.to_string());
        self
    }

    /// How long [`start`](Self::start) waits for nginx (default 10 s).
    pub fn start_timeout(mut self, timeout: Duration) -> Self {
        self.start_timeout = timeout;
        self
    }

    /// Starts nginx with `http_block` inside `http { }`; see [`Nginx`].
    pub fn start(self, http_block: &str) -> Nginx {
        Nginx::launch(self, http_block)
    }

    /// Writes the config as `start` would and runs `nginx -t` on it
    /// (bounded by 10 s). Returns whether it passed and nginx's combined
    /// output (`nginx: [emerg] ... in /path/nginx.conf:LINE`).
    pub fn test_config(&self, http_block: &str) -> (bool, String) {
        let bin = nginx_bin();
        let dir = fresh_dir("conftest");
        let ports = (free_port(), free_port());
        let conf = dir.join("nginx.conf");
        fs::write(&conf, self.render(&dir, ports, http_block)).expect("write nginx.conf");
        let out_path = dir.join("nginx-t.out");
        let out = File::create(&out_path).expect("create nginx -t output file");
        let mut child = Command::new(&bin)
            .arg("-t")
            .args(prefix_args(&dir))
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("dup"))
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait nginx -t") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nginx -t did not finish within {WAIT:?} (dir {})",
                    dir.display()
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let output = read_lossy(&out_path);
        if !keep_tmp() {
            let _ = fs::remove_dir_all(&dir);
        }
        (status.success(), output)
    }

    /// The full nginx.conf text.
    fn render(&self, dir: &Path, ports: (u16, u16), http_block: &str) -> String {
        let d = dir.display();
        let subst = |s: &str| {
            s.replace("{port2}", &ports.1.to_string())
                .replace("{port}", &ports.0.to_string())
                .replace("{dir}", &d.to_string())
        };
        let mut c = String::new();
        if self.load_module {
            c += &format!("load_module \"{}\";\n", module_path().display());
        }
        c += "daemon off;\nmaster_process on;\n";
        c += &format!("worker_processes {};\n", self.workers);
        c += &format!("pid \"{d}/nginx.pid\";\n");
        c += &format!("error_log \"{d}/error.log\" {};\n", self.error_log_level);
        for line in &self.main_lines {
            c += &subst(line);
            c += "\n";
        }
        c += "events {\n    worker_connections 1024;\n}\n";
        c += "http {\n";
        c += &format!("    access_log \"{d}/access.log\";\n");
        for t in ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"] {
            c += &format!("    {t}_temp_path \"{d}/{t}_temp\";\n");
        }
        c += "# ---- test http block ----\n";
        c += &subst(http_block);
        c += "\n}\n";
        c
    }
}

/// `-p <dir>/ -c <dir>/nginx.conf -e <dir>/error.log`: everything, including
/// the log nginx writes before it has read the config, stays in `dir`.
fn prefix_args(dir: &Path) -> Vec<String> {
    vec![
        "-p".into(),
        format!("{}/", dir.display()),
        "-c".into(),
        dir.join("nginx.conf").display().to_string(),
        "-e".into(),
        dir.join("error.log").display().to_string(),
    ]
}

/// Writes a config like [`Nginx::start`] (module loaded) and runs `nginx -t`
/// on it. See [`NginxOptions::test_config`].
pub fn nginx_test_config(http_block: &str) -> (bool, String) {
    NginxOptions::default().test_config(http_block)
}

/// A running nginx master with its workers, in a fresh temp directory
/// (`$TMPDIR/authban-nginx-<pid>-<n>`) holding nginx.conf, error.log,
/// access.log, stderr.log and the temp paths.
///
/// The config is `load_module` (unless disabled), `daemon off; master_process
/// on; worker_processes N; pid/error_log in the dir`, an `events` block, and
/// `http { access_log, *_temp_path, <http_block> }`. In the http block,
/// `{port}` and `{port2}` become two ports allocated for this instance and
/// `{dir}` the temp dir.
///
/// Dropping it SIGKILLs the master and every worker ever seen, then removes
/// the dir, except when the thread is panicking (or `AUTHBAN_KEEP_TMP=1`),
/// in which case the dir is kept and its path printed.
pub struct Nginx {
    child: Option<Child>,
    dir: PathBuf,
    port: u16,
    port2: u16,
    opts: NginxOptions,
    http_block: String,
    tracked: Arc<Tracked>,
}

/// One child of the master that is a worker.
struct Worker {
    pid: i32,
    start: u64,
    shutting_down: bool,
}

impl Nginx {
    /// Options builder: `Nginx::options().workers(4).without_module().start(..)`.
    pub fn options() -> NginxOptions {
        NginxOptions::default()
    }

    /// Starts nginx with default options (2 workers, module loaded, `info`).
    pub fn start(http_block: &str) -> Nginx {
        NginxOptions::default().start(http_block)
    }

    fn launch(opts: NginxOptions, http_block: &str) -> Nginx {
        let bin = nginx_bin();
        // Ports are claimed so no harness user collides, but anything else
        // on the host may still grab one: retry on EADDRINUSE.
        const ATTEMPTS: u32 = 3;
        for attempt in 1..=ATTEMPTS {
            let dir = fresh_dir("nginx");
            let (port, port2) = (free_port(), free_port());
            fs::write(
                dir.join("nginx.conf"),
                opts.render(&dir, (port, port2), http_block),
            )
            .expect("write nginx.conf");
            let log = |name: &str| File::create(dir.join(name)).expect("create log file");
            let child = Command::new(&bin)
                .args(prefix_args(&dir))
                .stdin(Stdio::null())
                .stdout(log("stdout.log"))
                .stderr(log("stderr.log"))
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
            let tracked = Tracked::new(
                format!("nginx pid {} (dir {})", child.id(), dir.display()),
                child.id() as i32,
            );
            let mut nginx = Nginx {
                child: Some(child),
                dir,
                port,
                port2,
                opts: opts.clone(),
                http_block: http_block.to_string(),
                tracked,
            };
            match nginx.wait_started() {
                Ok(()) => return nginx,
                Err(_) if attempt < ATTEMPTS && nginx.lost_port_race() => {
                    drop(nginx);
                    continue;
                }
                // `nginx` is dropped while panicking: processes are killed
                // and the dir is kept for inspection.
                Err(e) => panic!("nginx failed to start: {e}\n{}", nginx.diagnostics()),
            }
        }
        unreachable!()
    }

    /// Whether startup failed because one of *our* allocated ports was
    /// taken meanwhile (a literal busy port in the config is not retried).
    fn lost_port_race(&self) -> bool {
        let logs = self.stderr() + &self.error_log();
        [self.port, self.port2]
            .iter()
            .any(|p| logs.contains(&format!(":{p} failed (98")))
    }

    /// Waits until exactly N workers run and every `listen`ed placeholder
    /// port accepts connections.
    fn wait_started(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + self.opts.start_timeout;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!("nginx exited during startup with {status}"));
            }
            // Listening sockets are opened by the master before it forks, and
            // the title "worker process" is set after module init_process:
            // so once N workers show up, nginx is fully up.
            if self.workers().iter().filter(|w| !w.shutting_down).count() == self.opts.workers {
                break;
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {:?} waiting for {} workers (have {:?})",
                    self.opts.start_timeout,
                    self.opts.workers,
                    self.worker_pids()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
        for addr in self.listen_addrs() {
            let ok = wait_until(deadline.saturating_duration_since(Instant::now()), || {
                TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            });
            if !ok {
                return Err(format!("{addr} does not accept connections"));
            }
        }
        Ok(())
    }

    /// Addresses of `listen` lines using a port placeholder ([::1] if the
    /// line mentions an IPv6 address, else 127.0.0.1).
    fn listen_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs = Vec::new();
        for line in self.http_block.lines().map(str::trim) {
            if !line.starts_with("listen") {
                continue;
            }
            for (ph, port) in [("{port2}", self.port2), ("{port}", self.port)] {
                if line.contains(ph) {
                    let addr = if line.contains('[') {
                        SocketAddr::from((Ipv6Addr::LOCALHOST, port))
                    } else {
                        SocketAddr::from((Ipv4Addr::LOCALHOST, port))
                    };
                    if !addrs.contains(&addr) {
                        addrs.push(addr);
                    }
                }
            }
        }
        addrs
    }

    /// The port substituted for `{port}`.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The port substituted for `{port2}`.
    pub fn port2(&self) -> u16 {
        self.port2
    }

    /// The temp dir (nginx prefix), substituted for `{dir}`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn conf_path(&self) -> PathBuf {
        self.dir.join("nginx.conf")
    }

    pub fn master_pid(&self) -> i32 {
        self.tracked.pid
    }

    /// Current workers, excluding old ones still shutting down after a
    /// reload. Sorted.
    pub fn worker_pids(&self) -> Vec<i32> {
        let mut v: Vec<i32> = self
            .workers()
            .into_iter()
            .filter(|w| !w.shutting_down)
            .map(|w| w.pid)
            .collect();
        v.sort_unstable();
        v
    }

    /// All live children of the master titled "worker process", noting
    /// every child seen so that `Drop` can kill it later.
    fn workers(&self) -> Vec<Worker> {
        let mut out = Vec::new();
        for pid in children(self.master_pid()) {
            let Some(st) = stat(pid) else { continue };
            self.tracked.note(pid, st.starttime);
            if st.state == 'Z' || st.state == 'X' {
                continue;
            }
            let Some(title) = cmdline(pid) else { continue };
            if title.contains("worker process") {
                out.push(Worker {
                    pid,
                    start: st.starttime,
                    shutting_down: title.contains("shutting down"),
                });
            }
        }
        out
    }

    pub fn error_log(&self) -> String {
        read_lossy(&self.dir.join("error.log"))
    }

    /// The last 30 lines of error.log, headed with the nginx dir: for
    /// failure messages.
    pub fn log_tail(&self) -> String {
        let log = self.error_log();
        let lines: Vec<&str> = log.lines().collect();
        format!(
            "--- error.log tail ({}):\n{}",
            self.dir.display(),
            lines[lines.len().saturating_sub(30)..].join("\n")
        )
    }

    /// Byte length of error.log; pair with [`error_log_since`](Self::error_log_since)
    /// to look only at what a step of the test logged.
    pub fn error_log_len(&self) -> usize {
        fs::metadata(self.dir.join("error.log")).map_or(0, |m| m.len() as usize)
    }

    pub fn error_log_since(&self, offset: usize) -> String {
        let raw = fs::read(self.dir.join("error.log")).unwrap_or_default();
        String::from_utf8_lossy(raw.get(offset..).unwrap_or_default()).into_owned()
    }

    pub fn access_log(&self) -> String {
        read_lossy(&self.dir.join("access.log"))
    }

    /// nginx's own stderr (startup messages before error_log is open).
    pub fn stderr(&self) -> String {
        read_lossy(&self.dir.join("stderr.log"))
    }

    /// Polls error.log until it contains `pattern` (plain substring).
    pub fn wait_for_error_log(&self, pattern: &str, timeout: Duration) -> bool {
        wait_until(timeout, || self.error_log().contains(pattern))
    }

    /// SIGHUP, then waits until the worker set is entirely new, has N
    /// members, and every old worker has exited. Panics (with the error log)
    /// if nginx rejects the config or does not settle within 10 s.
    pub fn reload(&mut self) {
        if let Err(e) = self.try_reload() {
            panic!("nginx reload failed: {e}\n{}", self.diagnostics());
        }
    }

    /// Rewrites nginx.conf with a new http block (same ports and dir), then
    /// [`reload`](Self::reload)s.
    pub fn reload_with(&mut self, http_block: &str) {
        if let Err(e) = self.try_reload_with(http_block) {
            panic!("nginx reload failed: {e}\n{}", self.diagnostics());
        }
    }

    /// Like [`reload_with`](Self::reload_with), but a rejected config is an
    /// `Err` with what nginx logged (old workers keep running then).
    pub fn try_reload_with(&mut self, http_block: &str) -> Result<(), String> {
        fs::write(
            self.conf_path(),
            self.opts
                .render(&self.dir, (self.port, self.port2), http_block),
        )
        .expect("write nginx.conf");
        self.http_block = http_block.to_string();
        self.try_reload()
    }

    /// Like [`reload`](Self::reload), returning `Err` instead of panicking.
    pub fn try_reload(&mut self) -> Result<(), String> {
        let old: HashMap<i32, u64> = self.workers().iter().map(|w| (w.pid, w.start)).collect();
        let log_offset = self.error_log_len();
        assert!(
            signal(self.master_pid(), libc::SIGHUP),
            "cannot signal nginx master"
        );
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.try_wait() {
                return Err(format!("nginx master exited during reload with {status}"));
            }
            let new_log = self.error_log_since(log_offset);
            if new_log.contains("[emerg]") {
                return Err(format!("nginx rejected the new config:\n{new_log}"));
            }
            let current: Vec<Worker> = self.workers();
            let fresh = current
                .iter()
                .filter(|w| !w.shutting_down && old.get(&w.pid) != Some(&w.start))
                .count();
            let old_gone = old.iter().all(|(&pid, &st)| !same_alive(pid, st));
            if old_gone && fresh == self.opts.workers && current.len() == fresh {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "timed out after {WAIT:?}: old workers {:?}, current {:?}",
                    old.keys().collect::<Vec<_>>(),
                    current.iter().map(|w| w.pid).collect::<Vec<_>>()
                ));
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGKILLs one of our workers and waits until it is dead (the master
    /// will respawn it: see [`wait_for_workers`](Self::wait_for_workers)).
    pub fn kill_worker(&self, pid: i32) {
        assert!(
            self.workers().iter().any(|w| w.pid == pid),
            "{pid} is not a worker of nginx {}",
            self.master_pid()
        );
        signal(pid, libc::SIGKILL);
        assert!(
            wait_until(WAIT, || !alive(pid)),
            "worker {pid} survived SIGKILL"
        );
    }

    /// Waits (10 s) until exactly `n` current workers run; returns their
    /// pids. After [`kill_worker`](Self::kill_worker) the result excludes
    /// the killed pid, since it is dead by then.
    pub fn wait_for_workers(&self, n: usize) -> Vec<i32> {
        let mut pids = Vec::new();
        let ok = wait_until(WAIT, || {
            pids = self.worker_pids();
            pids.len() == n
        });
        if !ok {
            panic!(
                "expected {n} workers, have {pids:?} after {WAIT:?}\n{}",
                self.diagnostics()
            );
        }
        pids
    }

    /// Graceful stop: SIGQUIT (then SIGTERM after 10 s), waits for the
    /// master to exit and returns its status. Panics if it will not stop.
    pub fn stop(mut self) -> ExitStatus {
        for sig in [libc::SIGQUIT, libc::SIGTERM] {
            signal(self.master_pid(), sig);
            let mut status = None;
            wait_until(WAIT, || {
                status = self.try_wait();
                status.is_some()
            });
            if let Some(status) = status {
                let workers_gone = wait_until(WAIT, || self.tracked_seen_alive().is_empty());
                assert!(workers_gone, "nginx workers outlived their master");
                return status;
            }
        }
        panic!(
            "nginx did not stop on SIGQUIT/SIGTERM\n{}",
            self.diagnostics()
        );
    }

    /// Workers ever seen that are still running (after `stop`: none).
    fn tracked_seen_alive(&self) -> Vec<i32> {
        self.tracked
            .seen_list()
            .into_iter()
            .filter(|&(pid, st)| same_alive(pid, st))
            .map(|(pid, _)| pid)
            .collect()
    }

    /// Reaps the master if it has exited; `Some(status)` then.
    fn try_wait(&mut self) -> Option<ExitStatus> {
        let child = self.child.as_mut()?;
        match child.try_wait() {
            Ok(Some(status)) => {
                self.child = None;
                Some(status)
            }
            _ => None,
        }
    }

    /// Everything useful when a test fails: paths, stderr, logs, config.
    /// No crash, no alert, critical or emergency message, no Rust panic:
    /// what every test expects of nginx after its traffic.
    pub fn assert_clean(&self) {
        let log = self.error_log();
        for bad in [
            "exited on signal",
            "[alert]",
            "[crit]",
            "[emerg]",
            "panicked",
        ] {
            assert!(
                !log.contains(bad),
                "error log contains {bad:?}\n{}",
                self.diagnostics()
            );
        }
        assert!(!self.stderr().contains("panicked"), "{}", self.stderr());
    }

    pub fn diagnostics(&self) -> String {
        let conf: String = read_lossy(&self.conf_path())
            .lines()
            .enumerate()
            .map(|(i, l)| format!("{:4} {l}\n", i + 1))
            .collect();
        format!(
            "--- nginx dir: {}\n--- stderr:\n{}\n--- error.log (tail):\n{}\n--- nginx.conf:\n{conf}",
            self.dir.display(),
            self.stderr(),
            tail(&self.error_log(), 80),
        )
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        self.tracked.kill_all();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if thread::panicking() || keep_tmp() {
            eprintln!("authban harness: kept nginx dir {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&fs::read(path).unwrap_or_default()).into_owned()
}

fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
