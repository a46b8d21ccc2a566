//! Process plumbing: `/proc` inspection, PID-reuse-safe killing, and
//! [`with_timeout`], which kills a hung test's processes.

use std::cell::Cell;
use std::collections::HashMap;
use std::fs::{self, File};
use std::panic;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

/// The fields of `/proc/<pid>/stat` we use.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Stat {
    pub state: char,
    pub ppid: i32,
    /// Clock ticks since boot: with the pid, identifies a process uniquely
    /// (pids get recycled, (pid, starttime) pairs do not).
    pub starttime: u64,
}

pub(crate) fn stat(pid: i32) -> Option<Stat> {
    let s = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // comm (field 2) may contain spaces and parens: split after the last ')'.
    let rest = &s[s.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(Stat {
        state: f.first()?.chars().next()?,
        ppid: f.get(1)?.parse().ok()?,
        starttime: f.get(19)?.parse().ok()?,
    })
}

/// The process title (nginx rewrites it: "nginx: worker process").
pub(crate) fn cmdline(pid: i32) -> Option<String> {
    let raw = fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let s = String::from_utf8_lossy(&raw).replace('\0', " ");
    Some(s.trim().to_string())
}

/// Running (not a zombie, not gone).
pub(crate) fn alive(pid: i32) -> bool {
    stat(pid).is_some_and(|s| s.state != 'Z' && s.state != 'X')
}

/// The very same process (same start time) is still running.
pub(crate) fn same_alive(pid: i32, starttime: u64) -> bool {
    stat(pid).is_some_and(|s| s.starttime == starttime && s.state != 'Z' && s.state != 'X')
}

/// Children of `pid` (zombies included; callers filter).
pub(crate) fn children(pid: i32) -> Vec<i32> {
    // Fast path: needs CONFIG_PROC_CHILDREN. The master is single-threaded,
    // so its main task's list is complete.
    if let Ok(s) = fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")) {
        return s
            .split_whitespace()
            .filter_map(|t| t.parse().ok())
            .collect();
    }
    if !Path::new(&format!("/proc/{pid}")).exists() {
        return Vec::new();
    }
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat(p).is_some_and(|s| s.ppid == pid))
        .collect()
}

pub(crate) fn signal(pid: i32, sig: i32) -> bool {
    // SAFETY: kill(2) has no memory-safety preconditions.
    unsafe { libc::kill(pid, sig) == 0 }
}

/// A process tree we spawned (nginx master + workers, or the mock), with
/// every descendant we ever observed, so that it can be killed from `Drop`
/// or from [`with_timeout`] even if the test's own thread is stuck.
pub(crate) struct Tracked {
    pub label: String,
    pub pid: i32,
    start: Option<u64>,
    seen: Mutex<HashMap<i32, u64>>,
}

impl Tracked {
    /// Call right after spawning (while the child is unreaped, so `pid` is
    /// surely ours), then register it for timeout cleanup.
    pub fn new(label: String, pid: i32) -> Arc<Self> {
        let t = Arc::new(Tracked {
            label,
            pid,
            start: stat(pid).map(|s| s.starttime),
            seen: Mutex::new(HashMap::new()),
        });
        register(&t);
        t
    }

    /// Remembers a descendant so it is killed on cleanup.
    pub fn note(&self, pid: i32, starttime: u64) {
        lock(&self.seen).insert(pid, starttime);
    }

    /// Every descendant noted so far, as (pid, starttime).
    pub fn seen_list(&self) -> Vec<(i32, u64)> {
        lock(&self.seen).iter().map(|(&p, &s)| (p, s)).collect()
    }

    /// SIGKILLs the whole tree: the root is stopped first so that nginx's
    /// master cannot respawn workers while we kill them, then every
    /// descendant ever seen (start time verified, so a recycled pid is never
    /// hit), then the root. Does not reap the root (its `Child` owner does).
    pub fn kill_all(&self) {
        let root_ok = self.start.is_some_and(|st| same_alive(self.pid, st));
        if root_ok {
            signal(self.pid, libc::SIGSTOP);
            for c in children(self.pid) {
                if let Some(s) = stat(c) {
                    self.note(c, s.starttime);
                }
            }
        }
        let mut victims: Vec<(i32, u64)> = self
            .seen_list()
            .into_iter()
            .filter(|&(pid, start)| same_alive(pid, start))
            .collect();
        if let (true, Some(start)) = (root_ok, self.start) {
            victims.push((self.pid, start));
        }
        for &(pid, _) in &victims {
            signal(pid, libc::SIGKILL);
        }
        // SIGKILL is asynchronous: wait until they are really gone (or
        // zombies), so callers can rely on "nothing of ours runs now".
        super::wait_until(Duration::from_secs(5), || {
            victims.iter().all(|&(pid, start)| !same_alive(pid, start))
        });
    }
}

/// Locks ignoring poison: a panicking test must not break cleanup.
pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---- with_timeout -------------------------------------------------------

thread_local! {
    /// Which `with_timeout` call the current thread runs for (0: none).
    static SCOPE: Cell<u64> = const { Cell::new(0) };
}

static REGISTRY: Mutex<Vec<(u64, Weak<Tracked>)>> = Mutex::new(Vec::new());

/// The [`with_timeout`] call the current thread runs for, to hand to a
/// helper thread ([`enter_timeout_scope`]) whose processes that call's
/// timeout must kill too (0: none).
pub(crate) fn timeout_scope() -> u64 {
    SCOPE.with(|s| s.get())
}

/// Makes the current thread's spawned processes belong to `scope` (from
/// [`timeout_scope`] on the thread that handed it over).
pub(crate) fn enter_timeout_scope(scope: u64) {
    SCOPE.with(|s| s.set(scope));
}

fn register(t: &Arc<Tracked>) {
    let scope = timeout_scope();
    if scope == 0 {
        return;
    }
    let mut reg = lock(&REGISTRY);
    reg.retain(|(_, w)| w.strong_count() > 0);
    reg.push((scope, Arc::downgrade(t)));
}

fn kill_scope(scope: u64) -> Vec<String> {
    let victims: Vec<Arc<Tracked>> = lock(&REGISTRY)
        .iter()
        .filter(|(s, _)| *s == scope)
        .filter_map(|(_, w)| w.upgrade())
        .collect();
    victims
        .iter()
        .map(|t| {
            t.kill_all();
            t.label.clone()
        })
        .collect()
}

/// SIGKILLs a server a test started (a crash, not a shutdown): its tracked
/// tree, then the child, which is reaped.
pub fn kill_server(tracked: &mut Option<Arc<Tracked>>, child: &mut Option<std::process::Child>) {
    if let Some(t) = tracked.take() {
        t.kill_all();
    }
    if let Some(mut child) = child.take() {
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// Starts a server again, up to three tries half a second apart: the old
/// listener is gone with the process, but the kernel may not have released
/// its port yet. The last error if every try failed.
pub fn spawn_again(mut spawn: impl FnMut() -> Result<(), String>) -> Result<(), String> {
    let mut last = String::new();
    for _ in 0..3 {
        match spawn() {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
        thread::sleep(Duration::from_millis(500));
    }
    Err(last)
}

/// Starts a server: `cmd` with stdin from /dev/null and stdout and stderr
/// into the file `log`, tracked (for [`with_timeout`]) as `WHAT pid PID`.
/// Panics when it cannot start.
pub(crate) fn spawn_logged(cmd: &mut Command, log: &Path, what: &str) -> (Child, Arc<Tracked>) {
    let out = File::create(log).unwrap_or_else(|e| panic!("create {}: {e}", log.display()));
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("dup"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {:?}: {e}", cmd.get_program()));
    let tracked = Tracked::new(format!("{what} pid {}", child.id()), child.id() as i32);
    (child, tracked)
}

/// How a server's start-up ended ([`await_ready`]).
pub(crate) enum Startup {
    Ready,
    /// It exited first (and is reaped).
    Exited(ExitStatus),
    TimedOut,
}

/// Polls every 20 ms until `ready()` holds, `child` exits, or `timeout`
/// passes: a freshly spawned server's start-up.
pub(crate) fn await_ready(
    child: &mut Child,
    timeout: Duration,
    mut ready: impl FnMut() -> bool,
) -> Startup {
    let mut exited = None;
    let done = super::wait_until(timeout, || {
        if let Ok(Some(status)) = child.try_wait() {
            exited = Some(status);
            return true;
        }
        ready()
    });
    match (exited, done) {
        (Some(status), _) => Startup::Exited(status),
        (None, true) => Startup::Ready,
        (None, false) => Startup::TimedOut,
    }
}

/// Runs `cmd` (stdin from /dev/null) to its end and returns its output, or
/// an error saying why not: it could not start, or it did not finish within
/// `timeout` and was killed by pid (and reaped).
pub fn run_bounded(cmd: &mut Command, timeout: Duration) -> Result<Output, String> {
    let what = format!("{:?}", cmd.get_program());
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    let tracked = Tracked::new(format!("{what} pid {}", child.id()), child.id() as i32);
    // wait_with_output reads both pipes while waiting: no pipe fills up.
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(timeout) {
        Ok(Ok(output)) => Ok(output),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => {
            // The waiting thread reaps it.
            tracked.kill_all();
            Err(format!("{what} did not finish within {timeout:?} (killed)"))
        }
    }
}

/// Runs `body` on its own thread and panics if it has not finished after
/// `secs` seconds, first SIGKILLing every nginx/mock the body started (from
/// that thread), so a hung test can neither hang CI nor leak processes.
/// Panics inside `body` are propagated unchanged (`#[should_panic]` works).
pub fn with_timeout<F, R>(secs: u64, body: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    static NEXT_SCOPE: AtomicU64 = AtomicU64::new(1);
    let scope = NEXT_SCOPE.fetch_add(1, Ordering::Relaxed);
    // Reuse the test's name so panic messages still say which test failed.
    let name = thread::current().name().unwrap_or("test").to_string();
    let (tx, rx) = mpsc::channel::<()>();
    let handle = thread::Builder::new()
        .name(name.clone())
        .spawn(move || {
            enter_timeout_scope(scope);
            let r = body();
            let _ = tx.send(());
            r
        })
        .expect("cannot spawn test thread");
    match rx.recv_timeout(Duration::from_secs(secs)) {
        // Disconnected: the body panicked (dropping `tx` while unwinding).
        Ok(()) | Err(RecvTimeoutError::Disconnected) => match handle.join() {
            Ok(r) => r,
            Err(payload) => panic::resume_unwind(payload),
        },
        Err(RecvTimeoutError::Timeout) => {
            let killed = kill_scope(scope);
            panic!("test `{name}` did not finish within {secs} s; killed: {killed:?}");
        }
    }
}
