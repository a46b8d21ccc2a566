//! The machine and the processes under test: CPU, cores, pinning, nginx
//! version, date, and worker memory from `/proc`.

use std::fs;
use std::path::PathBuf;
use std::process::Command;

use crate::common::nginx_bin;

/// The core nginx's worker is pinned to, and the one load generators run on.
pub const NGINX_CPU: usize = 0;
pub const LOAD_CPU: usize = 1;

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// Pinning needs two cores and `taskset` (util-linux).
pub fn can_pin() -> bool {
    cores() >= 2
        && Command::new("taskset")
            .arg("-V")
            .output()
            .is_ok_and(|o| o.status.success())
}

/// `program` run through `taskset -c CPU` when pinning is possible.
pub fn pinned(cpu: usize, program: &str) -> Command {
    if can_pin() {
        let mut cmd = Command::new("taskset");
        cmd.args(["-c", &cpu.to_string(), program]);
        cmd
    } else {
        Command::new(program)
    }
}

pub fn cpu_model() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

pub fn kernel() -> String {
    fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// The 1-minute load average: how busy the machine was besides us.
pub fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_default()
}

/// `nginx/1.28.3`, from `nginx -v`.
pub fn nginx_version() -> String {
    Command::new(nginx_bin())
        .arg("-v")
        .output()
        .map(|o| {
            let text = String::from_utf8_lossy(&o.stderr).into_owned();
            text.trim()
                .trim_start_matches("nginx version: ")
                .to_string()
        })
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

pub fn date_utc() -> String {
    Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

/// Memory of a process, in KiB, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// VmRSS: everything resident, shared memory pages it touched included.
    pub rss: u64,
    /// RssAnon: the process's private heap and stacks.
    pub anon: u64,
    /// RssShmem: resident shared memory (nginx's zones).
    pub shmem: u64,
}

pub fn memory(pid: i32) -> Memory {
    let status = fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/status: {e}"));
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Memory {
        rss: field("VmRSS:"),
        anon: field("RssAnon:"),
        shmem: field("RssShmem:"),
    }
}

/// CPU time a process has used so far, user and kernel, in seconds.
pub fn cpu_times(pid: i32) -> (f64, f64) {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("cannot read /proc/{pid}/stat: {e}"));
    // Fields after the command name (which may hold spaces): utime is the
    // 14th field of the line, stime the 15th.
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 1)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // SAFETY: sysconf has no memory-safety preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    (ticks(11) / hz, ticks(12) / hz)
}

/// A process's CPU use over a stretch of wall time.
pub struct CpuWatch {
    pid: i32,
    start: (f64, f64),
    wall: std::time::Instant,
}

/// What [`CpuWatch::stop`] measured.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    /// CPU time / wall time (1.0: one core fully busy).
    pub busy: f64,
    /// Microseconds of user and of kernel time per request.
    pub user_us: f64,
    pub kernel_us: f64,
}

impl CpuWatch {
    pub fn start(pid: i32) -> Self {
        CpuWatch {
            pid,
            start: cpu_times(pid),
            wall: std::time::Instant::now(),
        }
    }

    pub fn stop(self, requests: u64) -> CpuUse {
        let wall = self.wall.elapsed().as_secs_f64();
        let (user, kernel) = cpu_times(self.pid);
        let (user, kernel) = (user - self.start.0, kernel - self.start.1);
        let per = |t: f64| t * 1e6 / requests.max(1) as f64;
        CpuUse {
            busy: (user + kernel) / wall,
            user_us: per(user),
            kernel_us: per(kernel),
        }
    }
}

/// `busy 97 %, 1.10 µs user + 3.40 µs kernel per request` (medians).
pub fn cpu_summary(runs: &[CpuUse]) -> String {
    let median = |f: fn(&CpuUse) -> f64| {
        let mut s = crate::stats::Samples::new();
        for r in runs {
            s.push(f(r));
        }
        s.median()
    };
    format!(
        "busy {:.0} %, {:.2} µs user + {:.2} µs kernel per request",
        median(|r| r.busy) * 100.0,
        median(|r| r.user_us),
        median(|r| r.kernel_us)
    )
}

/// `bench/tmp` (git-ignored): wrk output, callgrind files, test files.
pub fn tmp_dir() -> PathBuf {
    let dir = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench/tmp"));
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
    dir
}

/// A path in the source tree's `bench/` directory.
pub fn bench_file(rel: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/bench")).join(rel)
}
