//! Instructions per request, counted by `valgrind --tool=callgrind` on
//! nginx in single-process mode.
//!
//! The configuration is the harness's own: nginx is started once through
//! [`NginxOptions::start`](crate::common::NginxOptions) (which renders and
//! proves the config), its nginx.conf is kept, and nginx is stopped. The
//! same file is then run under callgrind with `master_process off;` (and
//! the harness's `daemon off;`), twice: with N1 and with N2 requests over
//! keep-alive. The start-up and shut-down costs are in both runs, so
//! `(I(N2) - I(N1)) / (N2 - N1)` is the cost of one request.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::common::{wait_until, Conn, Nginx};
use crate::machine::{pinned, tmp_dir, NGINX_CPU};

/// A configuration ready to run under callgrind.
pub struct Setup {
    dir: PathBuf,
    port: u16,
}

/// Takes the config of a running harness nginx, stops that nginx, and
/// rewrites the config for single-process mode in `bench/tmp/callgrind/NAME`.
pub fn setup(name: &str, nginx: Nginx) -> Setup {
    let conf = fs::read_to_string(nginx.conf_path()).expect("read nginx.conf");
    let old_dir = nginx.dir().display().to_string();
    let port = nginx.port();
    assert!(nginx.stop().success(), "nginx did not stop cleanly");
    let dir = tmp_dir().join("callgrind").join(name);
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).expect("create callgrind dir");
    let conf = conf
        .replace(&old_dir, &dir.display().to_string())
        .replace("master_process on;", "master_process off;");
    assert!(
        conf.contains("master_process off;"),
        "unexpected nginx.conf"
    );
    fs::write(dir.join("nginx.conf"), conf).expect("write nginx.conf");
    Setup { dir, port }
}

/// The outcome of the two runs.
pub struct Count {
    pub per_request: f64,
    /// Instructions of the N1 run (start-up, N1 requests, shut-down).
    pub base: u64,
    pub requests: u64,
    files: (PathBuf, PathBuf),
}

/// What the client does in each callgrind run.
pub struct Plan<'a> {
    pub path: &'a str,
    /// The status every request must get; 444: nginx closes the connection
    /// without a response (a new connection for every request then).
    pub status: u16,
    /// Requests of the first run (start-up and warm-up)...
    pub warm_up: u64,
    /// ...and how many more the second run sends: the measured ones.
    pub measured: u64,
    /// Runs first in both runs (e.g. bans through the endpoint), so its
    /// cost cancels out too.
    pub prepare: &'a dyn Fn(u16),
    /// The `X-Forwarded-For` of request i, if any (with realip: the client).
    pub client: Option<&'a dyn Fn(u64) -> String>,
    /// A form body: every request is then a `POST` of it
    /// (`application/x-www-form-urlencoded`) instead of a `GET`.
    pub form: Option<&'a [u8]>,
}

impl<'a> Plan<'a> {
    /// `GET path` answered with `status`, `warm_up` then `measured` more
    /// requests ([`Config::callgrind_requests`](crate::Config)), `prepare`
    /// first, from the loopback client itself.
    pub fn get(
        path: &'a str,
        status: u16,
        (warm_up, measured): (u64, u64),
        prepare: &'a dyn Fn(u16),
    ) -> Self {
        Plan {
            path,
            status,
            warm_up,
            measured,
            prepare,
            client: None,
            form: None,
        }
    }
}

/// Runs nginx under callgrind twice, with `warm_up` and with `warm_up +
/// measured` requests.
pub fn count(setup: &Setup, plan: &Plan) -> Count {
    let (i1, f1, _) = run(setup, plan, plan.warm_up, None);
    let (i2, f2, _) = run(setup, plan, plan.warm_up + plan.measured, None);
    Count {
        per_request: (i2 as f64 - i1 as f64) / plan.measured as f64,
        base: i1,
        requests: plan.measured,
        files: (f1, f2),
    }
}

/// As [`count`], for an nginx that also works on a clock of its own (a
/// timer every second, e.g. a `sync=` link that is down): both runs last as long, so
/// that such work cancels out like start-up does. The longer run goes
/// first; the shorter one then waits, its requests sent, until it has run
/// as long before nginx is stopped.
pub fn count_same_length(setup: &Setup, plan: &Plan) -> Count {
    let (i2, f2, length) = run(setup, plan, plan.warm_up + plan.measured, None);
    let (i1, f1, _) = run(setup, plan, plan.warm_up, Some(length));
    Count {
        per_request: (i2 as f64 - i1 as f64) / plan.measured as f64,
        base: i1,
        requests: plan.measured,
        files: (f1, f2),
    }
}

/// One run under callgrind: its instructions, its output file, and how
/// long nginx served (from its pid file to the first SIGTERM). With
/// `length`, the first SIGTERM waits until nginx has served that long.
fn run(
    setup: &Setup,
    plan: &Plan,
    requests: u64,
    length: Option<Duration>,
) -> (u64, PathBuf, Duration) {
    let dir = &setup.dir;
    // Several plans may run on one setup: every run gets its own files.
    static RUN: AtomicU64 = AtomicU64::new(0);
    let name = format!("run{}-{requests}", RUN.fetch_add(1, Ordering::Relaxed));
    let out = dir.join(format!("callgrind.{name}.out"));
    let log_path = dir.join(format!("valgrind.{name}.log"));
    let pid_file = dir.join("nginx.pid");
    let _ = fs::remove_file(&pid_file);
    let log = fs::File::create(&log_path).expect("create valgrind log");
    let mut child = pinned(NGINX_CPU, "valgrind")
        .args(["--tool=callgrind", "--quiet"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(crate::common::nginx_bin())
        .arg("-p")
        .arg(format!("{}/", dir.display()))
        .arg("-c")
        .arg(dir.join("nginx.conf"))
        .arg("-e")
        .arg(dir.join("error.log"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("dup"))
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run valgrind: {e}"));
    let pid = child.id() as i32;
    // nginx writes its pid file after opening the listening sockets; probing
    // the port instead would add connections to one run and not the other.
    let started = wait_until(Duration::from_secs(60), || {
        fs::read_to_string(&pid_file).is_ok_and(|s| !s.trim().is_empty())
    });
    let serving = Instant::now();
    let outcome = if started {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            (plan.prepare)(setup.port);
            send(setup.port, plan, requests)
        }))
    } else {
        Ok(())
    };
    if let Some(length) = length {
        thread::sleep(length.saturating_sub(serving.elapsed()));
    }
    let served = serving.elapsed();
    // SIGTERM, again every second: a single-process nginx that takes the
    // signal just before it blocks in epoll_wait (no timers pending) only
    // notices it on the next one. The handler's cost is noise.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut next_signal = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().expect("wait valgrind") {
            break Some(s);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        if Instant::now() >= next_signal {
            // SAFETY: kill(2) on our own child, not yet reaped.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            next_signal += Duration::from_secs(1);
        }
        thread::sleep(Duration::from_millis(20));
    };
    let log = fs::read_to_string(&log_path).unwrap_or_default();
    assert!(started, "nginx under valgrind did not start:\n{log}");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e);
    }
    assert!(
        exit.is_some(),
        "nginx under valgrind did not stop; killed it"
    );
    (total_instructions(&out), out, served)
}

/// `requests` sequential requests over keep-alive, reconnecting when nginx
/// closes the connection (`keepalive_requests`).
fn send(port: u16, plan: &Plan, requests: u64) {
    let mut conn: Option<Conn> = None;
    for i in 0..requests {
        let c = conn.get_or_insert_with(|| Conn::open(port));
        let xff = plan.client.map(|client| client(i));
        let reply = match (plan.form, &xff) {
            (None, Some(xff)) => c.get_from(plan.path, xff),
            (None, None) => c.get(plan.path),
            (Some(body), _) => {
                let mut headers = vec![("Content-Type", "application/x-www-form-urlencoded")];
                if let Some(xff) = &xff {
                    headers.push(("X-Forwarded-For", xff));
                }
                c.request("POST", plan.path, &headers, Some(body))
            }
        };
        let want = (plan.status != 444).then_some(plan.status);
        assert_eq!(
            reply.status(),
            want,
            "{} {} under valgrind",
            if plan.form.is_some() { "POST" } else { "GET" },
            plan.path
        );
        if c.is_closed() {
            conn = None;
        }
    }
}

/// The `summary:` line of a callgrind output file.
fn total_instructions(file: &Path) -> u64 {
    let text =
        fs::read_to_string(file).unwrap_or_else(|e| panic!("cannot read {}: {e}", file.display()));
    text.lines()
        .find_map(|l| l.strip_prefix("summary:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no summary line in {}", file.display()))
}

/// A function's instructions per request.
#[derive(Clone, Debug)]
pub struct Cost {
    pub function: String,
    /// In ngx_http_authban_module.so (else nginx, libc, ...).
    pub module: bool,
    pub inclusive: f64,
    pub exclusive: f64,
}

/// Per-request costs of every function, from `callgrind_annotate` of both
/// runs: (I(N2) - I(N1)) / (N2 - N1) per function, costliest (inclusive)
/// first.
pub fn functions(count: &Count) -> Vec<Cost> {
    let per_fn = |inclusive: bool| -> HashMap<(String, bool), f64> {
        let a = annotate(&count.files.0, inclusive);
        let b = annotate(&count.files.1, inclusive);
        let keys: HashSet<&(String, bool)> = a.keys().chain(b.keys()).collect();
        keys.into_iter()
            .map(|k| {
                let (x, base) = (
                    b.get(k).copied().unwrap_or(0),
                    a.get(k).copied().unwrap_or(0),
                );
                (k.clone(), (x as f64 - base as f64) / count.requests as f64)
            })
            .collect()
    };
    let inclusive = per_fn(true);
    let exclusive = per_fn(false);
    let mut costs: Vec<Cost> = inclusive
        .into_iter()
        .map(|((function, module), ir)| Cost {
            exclusive: exclusive
                .get(&(function.clone(), module))
                .copied()
                .unwrap_or(0.0),
            inclusive: ir,
            function,
            module,
        })
        .filter(|c| c.inclusive.abs() >= 0.5 || c.exclusive.abs() >= 0.5)
        .collect();
    costs.sort_by(|a, b| b.inclusive.total_cmp(&a.inclusive));
    costs
}

/// The functions of ngx_http_authban_module.so, per request.
pub fn module_functions(count: &Count) -> Vec<Cost> {
    functions(count).into_iter().filter(|c| c.module).collect()
}

/// The functions outside the module whose own (self) instructions per
/// request differ most between two sides: `(function, b - a)`.
pub fn outside_differences(a: &Count, b: &Count, n: usize) -> Vec<(String, f64)> {
    let self_costs = |c: &Count| -> HashMap<String, f64> {
        functions(c)
            .into_iter()
            .filter(|c| !c.module)
            .map(|c| (c.function, c.exclusive))
            .collect()
    };
    let (ca, cb) = (self_costs(a), self_costs(b));
    let mut names: Vec<&String> = ca.keys().chain(cb.keys()).collect();
    names.sort();
    names.dedup();
    let mut diffs: Vec<(String, f64)> = names
        .into_iter()
        .map(|f| {
            let d = cb.get(f).copied().unwrap_or(0.0) - ca.get(f).copied().unwrap_or(0.0);
            (f.clone(), d)
        })
        .filter(|(_, d)| d.abs() >= 0.5)
        .collect();
    diffs.sort_by(|x, y| y.1.abs().total_cmp(&x.1.abs()));
    diffs.truncate(n);
    diffs
}

/// `callgrind_annotate` of one file: Ir by (function, in the module).
fn annotate(file: &Path, inclusive: bool) -> HashMap<(String, bool), u64> {
    let out = Command::new("callgrind_annotate")
        .arg(format!(
            "--inclusive={}",
            if inclusive { "yes" } else { "no" }
        ))
        .arg("--threshold=100")
        .arg(file)
        .output()
        .unwrap_or_else(|e| panic!("cannot run callgrind_annotate: {e}"));
    let text = String::from_utf8_lossy(&out.stdout);
    let mut costs = HashMap::new();
    for line in text.lines() {
        // `  1,234 (0.01%)  /path/file.rs:crate::fn [/path/object.so]`; the
        // source annotation further down has no `[object]`.
        let Some(object_at) = line.rfind(" [") else {
            continue;
        };
        let module = line[object_at..].contains("ngx_http_authban_module.so");
        let line = &line[..object_at];
        let mut parts = line.trim_start().splitn(2, ' ');
        let Some(ir) = parts
            .next()
            .and_then(|n| n.replace(',', "").parse::<u64>().ok())
        else {
            continue;
        };
        let rest = parts.next().unwrap_or("").trim_start();
        let location = rest.split_once(")  ").map_or(rest, |(_, r)| r).trim();
        // `file:function`; Rust paths have `::` in the function, not the file.
        let function = location.split_once(':').map_or(location, |(_, f)| f);
        *costs.entry((function.to_string(), module)).or_insert(0) += ir;
    }
    costs
}

/// The module's whole work per request: its entry points with what they
/// call, but the header filter without the chain of filters after it.
pub fn module_work(count: &Count) -> Option<f64> {
    let costs = module_functions(count);
    let find = |name: &str| costs.iter().find(|c| c.function == name);
    let access = find(ACCESS)?;
    let inclusive = |name: &str| find(name).map_or(0.0, |c| c.inclusive);
    let filter = find(HEADER_FILTER).map_or(0.0, |c| c.exclusive);
    Some(access.inclusive + inclusive(PRECONTENT) + filter + inclusive(COUNT) + inclusive(LOG))
}

/// Instructions per request the module's entry points spend outside the
/// module (in nginx or libc: an allocation, a lock, a log line...), the
/// header filter's call to the next filter aside: 0 means they allocate
/// nothing.
pub fn module_calls_out(count: &Count) -> f64 {
    let costs = functions(count);
    let module_total: f64 = costs.iter().filter(|c| c.module).map(|c| c.exclusive).sum();
    let find = |name: &str| costs.iter().find(|c| c.function == name);
    let inclusive = |name: &str| find(name).map_or(0.0, |c| c.inclusive);
    let entries = inclusive(ACCESS) + inclusive(PRECONTENT) + inclusive(COUNT) + inclusive(LOG);
    let filter_self = find(HEADER_FILTER).map_or(0.0, |c| c.exclusive);
    (entries + filter_self - module_total).max(0.0)
}

/// The module's entry points: nginx calls these per request.
const ACCESS: &str = "authban::nginx::http::access::access_handler";
const HEADER_FILTER: &str = "authban::nginx::http::access::header_filter";
const LOG: &str = "authban::nginx::http::access::log_handler";
const COUNT: &str = "authban::nginx::http::access::count_failure";
const PRECONTENT: &str = "authban::nginx::http::access::precontent_handler";

/// authban's own instructions per request at each entry point nginx calls
/// (inclusive: with what they call; the header filter without the filters
/// after it, but with the failure count it runs), as a markdown table,
/// beside the figures `before` gives (`None`: not measured then).
pub fn entry_table(label: &str, count: &Count, before: &[(&str, Option<f64>)]) -> String {
    let costs = module_functions(count);
    let find = |name: &str| costs.iter().find(|c| c.function == name);
    let inclusive = |name: &str| find(name).map_or(0.0, |c| c.inclusive);
    let rows = [
        ("access phase", inclusive(ACCESS)),
        ("precontent phase", inclusive(PRECONTENT)),
        (
            "header filter",
            find(HEADER_FILTER).map_or(0.0, |c| c.exclusive),
        ),
        ("failure count", inclusive(COUNT)),
        ("log phase", inclusive(LOG)),
        ("pool cleanup", 0.0),
    ];
    let mut t = format!(
        "authban's own instructions per request in {label}, by entry point (inclusive; \
         the header filter without the filters after it):\n\n\
         | entry point | before issue 17 | now |\n| --- | ---: | ---: |\n"
    );
    for (name, now) in rows {
        let then = before
            .iter()
            .find(|(n, _)| *n == name)
            .and_then(|(_, v)| *v)
            .map_or("-".to_string(), |v| format!("{v:.0}"));
        t += &format!("| {name} | {then} | {now:.0} |\n");
    }
    t
}

/// Where the module's instructions go, per request, as a markdown table.
pub fn module_table(label: &str, count: &Count) -> String {
    let mut costs = module_functions(count);
    // The header filter's inclusive count holds nginx's whole header
    // filter chain after it: rank it by its own instructions.
    let rank = |c: &Cost| {
        if c.function == HEADER_FILTER {
            c.exclusive
        } else {
            c.inclusive
        }
    };
    costs.sort_by(|a, b| rank(b).total_cmp(&rank(a)));
    let mut t = format!(
        "Where authban's instructions go in {label}, per request (`callgrind_annotate` \
         of both runs, functions of ngx_http_authban_module.so; inclusive = with what \
         they call, in nginx too):\n\n| function | self | inclusive |\n| --- | ---: | ---: |\n"
    );
    for c in costs.iter().take(12) {
        let inclusive = if c.function == HEADER_FILTER {
            "(+ filter chain)".to_string()
        } else {
            format!("{:.1}", c.inclusive)
        };
        t += &format!(
            "| `{}` | {:.1} | {inclusive} |\n",
            c.function.replace('|', "\\|"),
            c.exclusive
        );
    }
    let own: f64 = costs.iter().map(|c| c.exclusive).sum();
    t += &format!("\nSelf instructions of all module functions: {own:.1} per request.");
    if let Some(work) = module_work(count) {
        t += &format!(
            " With the nginx functions they call ({ACCESS}, {PRECONTENT}, {COUNT} \
             and {LOG} inclusive, {HEADER_FILTER} self): {work:.0} per request."
        );
    }
    t
}
