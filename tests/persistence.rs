//! Bans beyond one nginx's lifetime, and the policy extensions that decide
//! how long and for what a ban holds:
//!
//! - the state file (`state=PATH state_interval=TIME`): written by worker 0
//!   every interval and at exit, read back by the master when the zone is
//!   created; damaged files are ignored with a warning; two zones cannot
//!   share one;
//! - a zone resized on reload takes over the previous zone's bans and
//!   offence histories;
//! - escalating bans (`increment=on factor= maxtime=`);
//! - network keys (`ipv6_prefix=`, `ipv4_prefix=`) and widening (`widen=`).
//!
//! Failures are made as in production: the protected location proxies to a
//! second server (`{port2}`) whose `/fail` answers 401 (a `return` in the
//! protected location would run before the access phase). Clients are played
//! with realip and `X-Forwarded-For`. Workers run as root (`user root;`):
//! they write the state file, and the default `nobody` could not write into
//! the test's temp dirs.

mod common;

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::*;

/// Waits for things nginx does asynchronously (log lines, file writes).
const SETTLE: Duration = Duration::from_secs(5);

fn opts() -> NginxOptions {
    Nginx::options().workers(2).main_line("user root;")
}

/// The zone name of an `authban_zone` argument list starting `zone=NAME:`.
fn zone_name(args: &str) -> &str {
    args.strip_prefix("zone=")
        .and_then(|s| s.split(':').next())
        .expect("zone arguments start with zone=NAME:SIZE")
}

/// The http block: one `authban_zone` per entry of `zones` (its arguments),
/// each protecting `/NAME/` on the front server (`{port}`, realip), proxied
/// to the back server (`{port2}`): `/NAME/fail` answers 401 (a failure),
/// `/NAME/` answers 200. The back server also serves the management
/// endpoint at `/authban`.
fn config(zones: &[&str]) -> String {
    let mut c =
        String::from("    set_real_ip_from 127.0.0.1;\n    real_ip_header X-Forwarded-For;\n");
    let mut locations = String::new();
    for args in zones {
        let name = zone_name(args);
        c += &format!("    authban_zone {args};\n");
        locations += &format!(
            "        location /{name}/ {{ authban {name}; proxy_pass http://127.0.0.1:{{port2}}/; }}\n"
        );
    }
    c += "    server {\n        listen 127.0.0.1:{port} reuseport;\n";
    c += &locations;
    c += r#"    }
    server {
        listen 127.0.0.1:{port2};
        location / { return 200 "ok\n"; }
        location /fail { return 401; }
        location /authban { authban_api; }
    }
"#;
    c
}

// ---- requests ----------------------------------------------------------------

/// One failure of `addr` in `zone`: the request passes (it is not banned
/// yet) and gets the upstream's 401.
fn fail(n: &Nginx, zone: &str, addr: &str) {
    let reply = get_from(n.port(), &format!("/{zone}/fail"), addr);
    assert_eq!(
        reply.status(),
        Some(401),
        "failure of {addr} in {zone}: {reply:?}\n{}",
        tail(&n.error_log())
    );
}

/// A request of `addr` that does not fail: 200 if it passes, 403 if banned.
fn probe(n: &Nginx, zone: &str, addr: &str) -> Option<u16> {
    get_from(n.port(), &format!("/{zone}/"), addr).status()
}

fn assert_refused(n: &Nginx, zone: &str, addr: &str) {
    assert_eq!(
        probe(n, zone, addr),
        Some(403),
        "{addr} should be refused in zone {zone}\n{}",
        tail(&n.error_log())
    );
}

fn assert_passes(n: &Nginx, zone: &str, addr: &str) {
    assert_eq!(
        probe(n, zone, addr),
        Some(200),
        "{addr} should pass in zone {zone}\n{}",
        tail(&n.error_log())
    );
}

// ---- the management endpoint ------------------------------------------------

/// `GET /authban?QUERY`, which must answer 200 with JSON.
fn api(n: &Nginx, query: &str) -> Json {
    api_call(n, "GET", query)
}

fn api_call(n: &Nginx, method: &str, query: &str) -> Json {
    api_ok(n, method, &format!("?{query}"))
}

/// The zone's bans in force as (addr, since, until).
fn ban_list(n: &Nginx, zone: &str) -> Vec<(String, u64, u64)> {
    api(n, &format!("zone={zone}&limit=1000"))
        .arr("ban_list")
        .iter()
        .map(|b| (b.str("addr").to_string(), b.u64("since"), b.u64("until")))
        .collect()
}

fn banned_addrs(n: &Nginx, zone: &str) -> BTreeSet<String> {
    ban_list(n, zone).into_iter().map(|b| b.0).collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

// ---- the error log -------------------------------------------------------------

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// The authban messages of the error log lines containing `needle`, from
/// `authban: ` up to nginx's context (` while ...`, `, client: ...`).
fn messages(n: &Nginx, needle: &str) -> Vec<String> {
    n.error_log()
        .lines()
        .filter(|l| l.contains(needle))
        .map(|l| {
            let msg = &l[l.find("authban: ").unwrap_or(0)..];
            let msg = msg.split(", client: ").next().unwrap_or(msg);
            msg.split(" while ").next().unwrap_or(msg).to_string()
        })
        .collect()
}

/// Waits until the exact message `want` has been logged (bans are logged
/// as the response goes out, so this is normally immediate).
fn expect_message(n: &Nginx, want: &str) {
    let needle = want.split(" failures=").next().unwrap_or(want);
    let ok = wait_until(SETTLE, || messages(n, needle).iter().any(|m| m == want));
    assert!(
        ok,
        "no message {want:?}; messages with {needle:?}: {:#?}\n{}",
        messages(n, needle),
        tail(&n.error_log())
    );
}

/// `authban: ban zone=Z addr=A failures=N bantime=Ss offence=K`.
fn ban_message(zone: &str, addr: &str, failures: u32, bantime: u32, offence: u32) -> String {
    format!(
        "authban: ban zone={zone} addr={addr} failures={failures} bantime={bantime}s offence={offence}"
    )
}

fn expect_ban(n: &Nginx, zone: &str, addr: &str, failures: u32, bantime: u32, offence: u32) {
    expect_message(n, &ban_message(zone, addr, failures, bantime, offence));
}

/// The ban messages of exactly `addr` in `zone`.
/// `failures` failures of `addr` in zone `z` ban it (its `offence`-th ban,
/// for `bantime` s), and it is refused from then on.
fn ban_by_failures(n: &Nginx, addr: &str, failures: u32, bantime: u32, offence: u32) {
    for _ in 0..failures {
        fail(n, "z", addr);
    }
    expect_ban(n, "z", addr, failures, bantime, offence);
    assert_refused(n, "z", addr);
}

fn bans_logged(n: &Nginx, zone: &str, addr: &str) -> Vec<String> {
    messages(n, &format!("authban: ban zone={zone} addr={addr} "))
}

fn restore_notice(zone: &str, restored: usize, total: usize, from: &str) -> String {
    format!(
        "authban: zone \"{zone}\": restored {restored} of {total} bans and histories from {from}"
    )
}

// ---- state files ---------------------------------------------------------------

/// A temp dir outside any nginx's own dir, so that successive nginx
/// instances (each with its own prefix) share one state file by its
/// absolute path. Removed on drop unless the test failed.
struct StateDir(PathBuf);

impl StateDir {
    fn new() -> StateDir {
        static N: AtomicU64 = AtomicU64::new(0);
        let dir = std::env::temp_dir().join(format!(
            "authban-persist-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        StateDir(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if thread::panicking() {
            eprintln!("kept state dir {}", self.0.display());
        } else {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Zone `z` with `params` and its state file in a fresh [`StateDir`]: the
/// set-up most tests here share.
struct StateZone {
    dir: StateDir,
    path: PathBuf,
    conf: String,
}

impl StateZone {
    fn new(params: &str) -> StateZone {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let conf = config(&[&format!("zone=z:1m {params} state={}", path.display())]);
        StateZone { dir, path, conf }
    }
}

/// One failure of `addr` bans it for `bantime` s (its first offence), then
/// no request at all until the ban is over: the zone notices its end lazily.
fn ban_and_let_it_end_unnoticed(n: &Nginx, addr: &str, bantime: u32) {
    fail(n, "z", addr);
    let t = unix_now();
    expect_ban(n, "z", addr, 1, bantime, 1);
    sleep_until_unix(t + f64::from(bantime) + 1.3);
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct SavedBan {
    key: String,
    offences: u32,
    since: u64,
    until: u64,
    failures: u32,
}

#[derive(Debug, Default)]
struct Saved {
    zone: String,
    bans: Vec<SavedBan>,
    /// (key, offences)
    hists: Vec<(String, u32)>,
}

impl Saved {
    fn records(&self) -> usize {
        self.bans.len() + self.hists.len()
    }

    fn ban(&self, key: &str) -> Option<&SavedBan> {
        self.bans.iter().find(|b| b.key == key)
    }
}

/// Parses a state file strictly by the documented format, version 1:
/// `authban-state 1`, `zone NAME`, `ban KEY OFFENCES LAST_BAN_END SINCE
/// UNTIL FAILURES` and `hist KEY OFFENCES LAST_BAN_END` records, `end COUNT`.
fn parse_state(text: &str) -> Result<Saved, String> {
    if !text.ends_with('\n') {
        return Err("does not end with a newline".into());
    }
    let lines: Vec<&str> = text.lines().collect();
    if lines.first() != Some(&"authban-state 1") {
        return Err("first line is not `authban-state 1`".into());
    }
    let zone = lines
        .get(1)
        .and_then(|l| l.strip_prefix("zone "))
        .ok_or("second line is not `zone NAME`")?;
    let end = lines.last().and_then(|l| l.strip_prefix("end "));
    let body = lines.get(2..lines.len() - 1).unwrap_or_default();
    if end != Some(&body.len().to_string()) {
        return Err(format!("last line is not `end {}`", body.len()));
    }
    let mut saved = Saved {
        zone: zone.to_string(),
        ..Saved::default()
    };
    let num = |s: &str| s.parse::<u64>().map_err(|_| format!("bad number {s:?}"));
    for line in body {
        let f: Vec<&str> = line.split(' ').collect();
        match f.as_slice() {
            ["ban", key, offences, last, since, until, failures] => {
                num(last)?;
                saved.bans.push(SavedBan {
                    key: key.to_string(),
                    offences: num(offences)? as u32,
                    since: num(since)?,
                    until: num(until)?,
                    failures: num(failures)? as u32,
                });
            }
            ["hist", key, offences, last] => {
                num(last)?;
                saved.hists.push((key.to_string(), num(offences)? as u32));
            }
            _ => return Err(format!("bad record {line:?}")),
        }
    }
    Ok(saved)
}

fn read_state(path: &Path) -> Saved {
    let text =
        fs::read_to_string(path).unwrap_or_else(|e| panic!("state file {}: {e}", path.display()));
    parse_state(&text).unwrap_or_else(|e| panic!("state file {}: {e}:\n{text}", path.display()))
}

// ---- time and processes ----------------------------------------------------------

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs_f64()
}

fn sleep_until_unix(t: f64) {
    let now = unix_now();
    if t > now {
        thread::sleep(Duration::from_secs_f64(t - now));
    }
}

/// The process has exited (gone, or a zombie not yet reaped).
fn exited(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(s) => {
            let state = s
                .rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next());
            matches!(state, None | Some("Z" | "X"))
        }
    }
}

fn kill(pid: i32, sig: i32) {
    // SAFETY: kill(2) has no memory-safety preconditions; the pids are of
    // processes this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0, "kill({pid}, {sig})");
}

// ---- 1 -------------------------------------------------------------------------

/// A graceful stop writes the state file; the next nginx reads it and keeps
/// refusing the banned address until the very same end. A fast stop
/// (SIGTERM) writes it too.
#[test]
fn stop_and_start_keep_a_ban_and_its_end() {
    with_timeout(90, || {
        // An interval far beyond the test: only the exit writes the file.
        let StateZone { dir, path, conf } =
            StateZone::new("maxretry=3 bantime=1h state_interval=1h");
        let (a, other) = ("192.0.2.10", "192.0.2.11");

        let n1 = opts().start(&conf);
        assert!(
            !n1.error_log().contains("restored"),
            "first start restored something:\n{}",
            n1.error_log()
        );
        ban_by_failures(&n1, a, 3, 3600, 1);
        let before = api(&n1, &format!("zone=z&addr={a}"));
        assert!(before.bool("banned"), "{before:?}");
        let (since, until) = (before.u64("since"), before.u64("until"));
        assert!((3600..=3601).contains(&(until - since)), "{before:?}");
        n1.assert_clean();
        assert!(n1.stop().success());

        let text = fs::read_to_string(&path).expect("graceful stop wrote no state file");
        assert_eq!(text.lines().next(), Some("authban-state 1"), "{text}");
        let saved = read_state(&path);
        assert_eq!(saved.zone, "z");
        let want = SavedBan {
            key: a.into(),
            offences: 1,
            since,
            until,
            failures: 3,
        };
        assert_eq!(saved.bans, vec![want.clone()], "{text}");
        assert!(saved.hists.is_empty(), "{text}");
        let leftovers: Vec<_> = fs::read_dir(&dir.0).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "temporary files left: {leftovers:?}");

        // Second life: a new nginx (another prefix) on the same file.
        let n2 = opts().start(&conf);
        let notice = restore_notice("z", 1, 1, &path.display().to_string());
        assert_eq!(
            messages(&n2, "restored").as_slice(),
            std::slice::from_ref(&notice),
            "{}",
            n2.error_log()
        );
        assert_refused(&n2, "z", a);
        assert_passes(&n2, "z", other);
        let after = api(&n2, &format!("zone=z&addr={a}"));
        assert!(after.bool("banned"), "{after:?}");
        assert_eq!((after.u64("since"), after.u64("until")), (since, until));
        assert_eq!(ban_list(&n2, "z"), vec![(a.to_string(), since, until)]);
        n2.assert_clean();

        // Fast stop: the file (removed meanwhile) is written at exit too.
        fs::remove_file(&path).unwrap();
        let master = n2.master_pid();
        kill(master, libc::SIGTERM);
        assert!(
            wait_until(Duration::from_secs(10), || exited(master)),
            "nginx ignored SIGTERM"
        );
        assert!(n2.stop().success());
        let saved = read_state(&path);
        assert_eq!(saved.bans, vec![want], "after the fast stop");

        let n3 = opts().start(&conf);
        expect_message(&n3, &notice);
        assert_refused(&n3, "z", a);
        assert_eq!(ban_list(&n3, "z"), vec![(a.to_string(), since, until)]);
        n3.assert_clean();
    });
}

/// Worker 0 of the old generation writes the file as it exits on reload.
#[test]
fn reload_writes_the_state_file() {
    with_timeout(60, || {
        let StateZone {
            dir: _dir,
            path,
            conf,
        } = StateZone::new("maxretry=1 bantime=1h state_interval=1h");
        let a = "192.0.2.15";
        let mut n = opts().start(&conf);
        fail(&n, "z", a);
        expect_ban(&n, "z", a, 1, 3600, 1);
        let until = api(&n, &format!("zone=z&addr={a}")).u64("until");
        n.reload();
        let saved = read_state(&path);
        let ban = saved.ban(a).expect("the reload wrote A's ban");
        assert_eq!((ban.until, ban.offences, ban.failures), (until, 1, 1));
        assert_refused(&n, "z", a);
        n.assert_clean();
    });
}

/// Without `user root;` the workers run as nginx's default user; a
/// world-writable directory is enough for them to write the file.
#[test]
fn workers_as_default_user_write_into_a_world_writable_dir() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    with_timeout(60, || {
        let dir = StateDir::new();
        fs::set_permissions(&dir.0, fs::Permissions::from_mode(0o777)).unwrap();
        let path = dir.file("z.state");
        let conf = config(&[&format!(
            "zone=z:1m maxretry=1 bantime=1h state={} state_interval=1s",
            path.display()
        )]);
        let a = "192.0.2.16";
        let n = Nginx::options().workers(2).start(&conf);
        let worker_uid = |pid: i32| -> u32 {
            let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
            let line = status.lines().find(|l| l.starts_with("Uid:")).unwrap();
            line.split_whitespace().nth(2).unwrap().parse().unwrap()
        };
        let uid = worker_uid(n.worker_pids()[0]);
        assert_ne!(uid, 0, "workers run as root without a user directive?");
        fail(&n, "z", a);
        expect_ban(&n, "z", a, 1, 3600, 1);
        let written = wait_until(SETTLE, || {
            fs::read_to_string(&path)
                .ok()
                .and_then(|t| parse_state(&t).ok())
                .is_some_and(|s| s.ban(a).is_some())
        });
        assert!(
            written,
            "no state file with A's ban\n{}",
            tail(&n.error_log())
        );
        assert_eq!(
            fs::metadata(&path).unwrap().uid(),
            uid,
            "written by a worker"
        );
        assert!(!n.error_log().contains("cannot write"), "{}", n.error_log());
        n.assert_clean();
        assert!(n.stop().success());
        assert!(read_state(&path).ban(a).is_some());
    });
}

// ---- 2 -------------------------------------------------------------------------

/// SIGKILL of the master and every worker (no exit write): what the last
/// periodic write saved survives. A was banned more than an interval before
/// the kill, so it was written; B was banned right before the kill, within
/// the last interval, so whether the file has it depends on whether worker
/// 0's timer fired in between (at most one interval is lost). The test
/// requires consistency: B is refused after the restart exactly if the file
/// holds it.
#[test]
fn sigkill_of_all_nginx_loses_at_most_one_interval() {
    with_timeout(90, || {
        let StateZone {
            dir: _dir,
            path,
            conf,
        } = StateZone::new("maxretry=2 bantime=1h state_interval=1s");
        let (a, b) = ("192.0.2.20", "192.0.2.21");

        let n1 = opts().start(&conf);
        fail(&n1, "z", a);
        fail(&n1, "z", a);
        expect_ban(&n1, "z", a, 2, 3600, 1);
        let until_a = api(&n1, &format!("zone=z&addr={a}")).u64("until");
        thread::sleep(Duration::from_millis(1600));
        let written = wait_until(SETTLE, || {
            fs::read_to_string(&path)
                .ok()
                .and_then(|t| parse_state(&t).ok())
                .is_some_and(|s| s.ban(a).is_some())
        });
        assert!(
            written,
            "1.6 s after A's ban with state_interval=1s the state file does not hold it: {:?}",
            fs::read_to_string(&path)
        );

        fail(&n1, "z", b);
        fail(&n1, "z", b);
        // The ban is in the zone once the 401 went out: kill right now.
        let master = n1.master_pid();
        let workers = n1.worker_pids();
        assert_eq!(workers.len(), 2);
        kill(master, libc::SIGKILL);
        for &w in &workers {
            kill(w, libc::SIGKILL);
        }
        assert!(
            wait_until(Duration::from_secs(10), || exited(master)
                && workers.iter().all(|&w| exited(w))),
            "nginx survived SIGKILL"
        );
        expect_ban(&n1, "z", b, 2, 3600, 1);

        let saved = read_state(&path);
        let ban_a = saved.ban(a).expect("A's ban was written").clone();
        assert_eq!(
            (ban_a.until, ban_a.offences, ban_a.failures),
            (until_a, 1, 2)
        );
        let b_saved = saved.ban(b).is_some();
        eprintln!(
            "B was {}in the last periodic write",
            if b_saved { "" } else { "not " }
        );
        assert_eq!(saved.records(), 1 + usize::from(b_saved), "{saved:?}");

        let n2 = opts().start(&conf);
        let n = saved.records();
        expect_message(&n2, &restore_notice("z", n, n, &path.display().to_string()));
        assert_refused(&n2, "z", a);
        assert_eq!(
            probe(&n2, "z", b),
            Some(if b_saved { 403 } else { 200 }),
            "B is refused exactly if the file held its ban"
        );
        let list = ban_list(&n2, "z");
        assert!(
            list.iter().any(|(k, _, u)| k == a && *u == until_a),
            "{list:?}"
        );
        assert_eq!(list.len(), n, "{list:?}");
        n2.assert_clean();
        drop(n1);
    });
}

// ---- 3 -------------------------------------------------------------------------

/// A new size makes nginx create a new zone on reload; it takes over the
/// previous zone's bans (same end) and offence histories, while running
/// failure counts start again.
#[test]
fn size_change_on_reload_keeps_bans_and_histories() {
    with_timeout(90, || {
        let params = "maxretry=3 bantime=2s increment=on maxtime=1h";
        let conf1 = config(&[&format!("zone=z:1m {params}")]);
        let conf2 = config(&[&format!("zone=z:2m {params}")]);
        let (a, b, c) = ("192.0.2.30", "192.0.2.31", "192.0.2.33");

        let mut n = opts().start(&conf1);
        assert_eq!(api(&n, "zone=z").u64("size"), 1 << 20);
        // A: a long manual ban.
        let ban = api_call(&n, "POST", &format!("zone=z&addr={a}&time=1h"));
        assert!(ban.bool("banned"), "{ban:?}");
        let (since_a, until_a) = (ban.u64("since"), ban.u64("until"));
        assert_refused(&n, "z", a);

        // B: banned 2 s, the end seen by a later request: an offence history.
        for _ in 0..3 {
            fail(&n, "z", b);
        }
        let t_b = unix_now();
        expect_ban(&n, "z", b, 3, 2, 1);
        sleep_until_unix(t_b + 3.3);
        assert_passes(&n, "z", b);
        expect_message(
            &n,
            &format!("authban: unban zone=z addr={b} reason=expired"),
        );

        // C: two failures, one short of a ban.
        fail(&n, "z", c);
        fail(&n, "z", c);
        assert_passes(&n, "z", c);

        let log_at = n.error_log_len();
        n.reload_with(&conf2);
        let since_reload = n.error_log_since(log_at);
        let notice = restore_notice("z", 2, 2, "the previous zone");
        assert!(
            since_reload.contains(&notice),
            "want {notice:?} (A's ban and B's history) after the resize:\n{since_reload}"
        );

        let detail = api(&n, "zone=z");
        assert_eq!(detail.u64("size"), 2 * 1024 * 1024, "{detail:?}");
        assert_eq!(ban_list(&n, "z"), vec![(a.to_string(), since_a, until_a)]);
        assert_refused(&n, "z", a);
        let state = api(&n, &format!("zone=z&addr={a}"));
        assert_eq!((state.u64("since"), state.u64("until")), (since_a, until_a));

        // C's two failures did not carry over: two more do not ban it.
        fail(&n, "z", c);
        fail(&n, "z", c);
        assert_passes(&n, "z", c);
        assert!(
            bans_logged(&n, "z", c).is_empty(),
            "{:?}",
            bans_logged(&n, "z", c)
        );
        fail(&n, "z", c);
        expect_ban(&n, "z", c, 3, 2, 1);
        assert_refused(&n, "z", c);

        // B's history did carry over: a second offence, twice as long.
        ban_by_failures(&n, b, 3, 4, 2);
        n.assert_clean();
    });
}

/// Offence histories are written to the state file and read back: after a
/// restart, an address banned before is on its second offence.
#[test]
fn offence_history_survives_a_restart() {
    with_timeout(90, || {
        let StateZone {
            dir: _dir,
            path,
            conf,
        } = StateZone::new("maxretry=1 bantime=2s increment=on maxtime=1h state_interval=1h");
        let h = "192.0.2.60";

        let n = opts().start(&conf);
        ban_and_let_it_end_unnoticed(&n, h, 2);
        assert_passes(&n, "z", h);
        expect_message(
            &n,
            &format!("authban: unban zone=z addr={h} reason=expired"),
        );
        assert!(n.stop().success());

        let saved = read_state(&path);
        assert!(saved.bans.is_empty(), "{saved:?}");
        assert_eq!(saved.hists, vec![(h.to_string(), 1)]);

        let n = opts().start(&conf);
        expect_message(&n, &restore_notice("z", 1, 1, &path.display().to_string()));
        assert_passes(&n, "z", h);
        ban_by_failures(&n, h, 1, 4, 2);
        n.assert_clean();
    });
}

/// A ban that ran out while no request came (a quiet server) still counts
/// as an offence: its history must survive a resize like any other. (The
/// zone notices the end of a ban lazily, at the next request.)
#[test]
fn resize_keeps_history_of_a_ban_that_ended_unnoticed() {
    with_timeout(60, || {
        let params = "maxretry=1 bantime=2s increment=on maxtime=1h";
        let mut n = opts().start(&config(&[&format!("zone=z:1m {params}")]));
        let q = "192.0.2.61";
        // No request at all until the ban is over and the zone resized.
        ban_and_let_it_end_unnoticed(&n, q, 2);
        let log_at = n.error_log_len();
        n.reload_with(&config(&[&format!("zone=z:2m {params}")]));
        let since_reload = n.error_log_since(log_at);

        assert_passes(&n, "z", q);
        fail(&n, "z", q);
        let second = ban_message("z", q, 1, 4, 2);
        let kept = wait_until(SETTLE, || bans_logged(&n, "z", q).contains(&second));
        let notice = restore_notice("z", 1, 1, "the previous zone");
        assert!(
            kept && since_reload.contains(&notice),
            "history lost across the resize: want {notice:?} and {second:?};\n\
             reload logged:\n{since_reload}\nbans of {q}: {:#?}",
            bans_logged(&n, "z", q)
        );
        n.assert_clean();
    });
}

/// The same through the state file: a ban that ran out unnoticed before a
/// stop is written as a history and counts after the restart.
#[test]
fn restart_keeps_history_of_a_ban_that_ended_unnoticed() {
    with_timeout(60, || {
        let StateZone {
            dir: _dir,
            path,
            conf,
        } = StateZone::new("maxretry=1 bantime=2s increment=on maxtime=1h state_interval=1h");
        let q = "192.0.2.62";
        let n = opts().start(&conf);
        // No request at all until the ban is over and nginx stopped.
        ban_and_let_it_end_unnoticed(&n, q, 2);
        assert!(n.stop().success());
        let text = fs::read_to_string(&path).expect("no state file after stop");
        let saved = read_state(&path);

        let n = opts().start(&conf);
        fail(&n, "z", q);
        let second = ban_message("z", q, 1, 4, 2);
        let kept = wait_until(SETTLE, || bans_logged(&n, "z", q).contains(&second));
        assert!(
            kept && saved.hists == vec![(q.to_string(), 1)],
            "history lost across the restart: want `hist {q} 1 ...` in the file and \
             {second:?}\nstate file:\n{text}bans of {q}: {:#?}",
            bans_logged(&n, "z", q)
        );
        n.assert_clean();
    });
}

/// A hand-written state file (the documented format), zone history=30s:
/// a ban in force is restored; an ended ban is not (the address passes),
/// though its offence is remembered while the history lasts; a ban that
/// ended longer than the history ago is dropped altogether; a live history
/// counts for the next ban.
#[test]
fn expired_bans_in_the_state_file_are_not_restored() {
    with_timeout(60, || {
        let dir = StateDir::new();
        let path = dir.file("z.state");
        let now = unix_now() as u64;
        // Forgotten, remembered, banned, remembered twice.
        let (x, x2, y, h) = ("192.0.2.70", "192.0.2.73", "192.0.2.71", "192.0.2.72");
        fs::write(
            &path,
            format!(
                "authban-state 1\nzone z\n\
                 ban {x} 1 {xu} {xs} {xu} 5\n\
                 ban {x2} 1 {x2u} {x2s} {x2u} 5\n\
                 ban {y} 1 {yu} {ys} {yu} 5\n\
                 hist {h} 2 {hl}\n\
                 end 4\n",
                xs = now - 100,
                xu = now - 40,
                x2s = now - 70,
                x2u = now - 10,
                ys = now - 5,
                yu = now + 3600,
                hl = now - 5,
            ),
        )
        .unwrap();
        let conf = config(&[&format!(
            "zone=z:1m maxretry=1 bantime=10s increment=on maxtime=1h history=30s state={} \
             state_interval=1h",
            path.display()
        )]);
        let n = opts().start(&conf);
        expect_message(&n, &restore_notice("z", 3, 4, &path.display().to_string()));
        assert_refused(&n, "z", y);
        assert_eq!(
            ban_list(&n, "z"),
            vec![(y.to_string(), now - 5, now + 3600)]
        );
        for (addr, bantime, offence) in [(x, 10, 1), (x2, 20, 2), (h, 40, 3)] {
            assert_passes(&n, "z", addr);
            fail(&n, "z", addr);
            expect_ban(&n, "z", addr, 1, bantime, offence);
        }
        n.assert_clean();
    });
}

// ---- 4 -------------------------------------------------------------------------

/// A damaged or foreign state file is ignored with one warning; nginx
/// starts with an empty zone and overwrites the file with a correct one at
/// the next interval. The intact file, put back, is restored (so what was
/// refused above was the damage, not the content).
#[test]
fn damaged_state_file_is_ignored_and_rewritten() {
    with_timeout(120, || {
        let StateZone {
            dir: _dir,
            path,
            conf,
        } = StateZone::new("maxretry=2 bantime=1h state_interval=1s");
        let a = "192.0.2.40";

        // A valid file, written by nginx.
        let n = opts().start(&conf);
        fail(&n, "z", a);
        fail(&n, "z", a);
        expect_ban(&n, "z", a, 2, 3600, 1);
        assert!(n.stop().success());
        let valid = fs::read_to_string(&path).expect("no state file after stop");
        assert!(read_state(&path).ban(a).is_some(), "{valid}");
        let end_line = valid.rfind("end ").expect("end line");
        let ban_line = valid.find("\nban ").expect("ban line") + 1;

        let empty_state = "authban-state 1\nzone z\nend 0\n";
        let cases: Vec<(&str, Vec<u8>, Option<&str>)> = vec![
            (
                "binary garbage",
                b"\x89PNG\r\n\x1a\n\0\xff\xfe garbage".to_vec(),
                Some("UTF-8"),
            ),
            (
                "text garbage",
                b"GIF89a this is not a state file\n".to_vec(),
                Some("not an authban state file"),
            ),
            ("an empty file", Vec::new(), None),
            (
                "a copy without its end line",
                valid.as_bytes()[..end_line].to_vec(),
                Some("truncated"),
            ),
            (
                "a copy cut mid-record",
                valid.as_bytes()[..ban_line + 12].to_vec(),
                None,
            ),
            (
                "another zone's file",
                valid.replace("zone z\n", "zone other\n").into_bytes(),
                Some("zone \"other\""),
            ),
        ];
        for (what, bytes, hint) in cases {
            fs::write(&path, &bytes).unwrap();
            let n = opts().start(&conf);
            let prefix = format!(
                "authban: zone \"z\": state file \"{}\" ignored (",
                path.display()
            );
            assert!(
                wait_until(SETTLE, || !messages(&n, &prefix).is_empty()),
                "{what}: no warning\n{}",
                n.error_log()
            );
            let lines: Vec<String> = n
                .error_log()
                .lines()
                .filter(|l| l.contains(&prefix))
                .map(str::to_string)
                .collect();
            assert_eq!(lines.len(), 1, "{what}: {lines:#?}");
            assert!(lines[0].contains("[warn] "), "{what}: {}", lines[0]);
            let msg = &messages(&n, &prefix)[0];
            let reason = msg
                .strip_prefix(&prefix)
                .and_then(|r| r.strip_suffix("), starting empty"))
                .unwrap_or_else(|| panic!("{what}: malformed warning {msg:?}"));
            assert!(!reason.is_empty(), "{what}: empty reason in {msg:?}");
            if let Some(hint) = hint {
                assert!(
                    reason.contains(hint),
                    "{what}: reason {reason:?} lacks {hint:?}"
                );
            }
            assert!(
                !n.error_log().contains("restored"),
                "{what}: restored something\n{}",
                n.error_log()
            );
            // The zone is empty.
            assert_passes(&n, "z", a);
            assert!(ban_list(&n, "z").is_empty(), "{what}");
            // Rewritten correctly at the next interval.
            let rewritten = wait_until(SETTLE, || {
                fs::read(&path).ok().as_deref() == Some(empty_state.as_bytes())
            });
            assert!(
                rewritten,
                "{what}: file not rewritten within {SETTLE:?}: {:?}",
                String::from_utf8_lossy(&fs::read(&path).unwrap_or_default())
            );
            n.assert_clean();
            assert!(n.stop().success());
            assert_eq!(fs::read_to_string(&path).unwrap(), empty_state, "{what}");
        }

        // Control: the intact file is restored.
        fs::write(&path, &valid).unwrap();
        let n = opts().start(&conf);
        expect_message(&n, &restore_notice("z", 1, 1, &path.display().to_string()));
        assert_refused(&n, "z", a);
        n.assert_clean();
    });
}

// ---- 5 -------------------------------------------------------------------------

/// increment=on factor=2 maxtime=5s: bans of 2 s, then 4 s, then 5 s (the
/// cap), each lasting at least its bantime and less than one second more.
#[test]
fn escalating_bans_double_up_to_maxtime() {
    with_timeout(90, || {
        let conf = config(&["zone=z:1m maxretry=1 bantime=2s increment=on factor=2 maxtime=5s"]);
        let n = opts().start(&conf);
        let a = "192.0.2.50";
        for (offence, bantime) in [(1u32, 2u32), (2, 4), (3, 5)] {
            let t_send = unix_now();
            fail(&n, "z", a);
            let t_recv = unix_now();
            expect_ban(&n, "z", a, 1, bantime, offence);
            assert_refused(&n, "z", a);
            let state = api(&n, &format!("zone=z&addr={a}"));
            assert!(state.bool("banned"), "{state:?}");
            let (since, until) = (state.u64("since") as f64, state.u64("until") as f64);
            let b = f64::from(bantime);
            // nginx's clock has whole milliseconds: the failure was counted
            // at t_send or later, as nginx's clock reads it.
            let t_send_ms = (t_send * 1000.0).floor() / 1000.0;
            assert!(
                since >= t_send.floor() && since <= t_recv.ceil(),
                "offence {offence}: since {since} not within [{t_send}, {t_recv}]"
            );
            assert!(
                until >= (t_send_ms + b).ceil() && until <= (t_recv + b).ceil(),
                "offence {offence}: until {until} is not the ban time {b} s after [{t_send}, {t_recv}]"
            );
            // Just before the end: still refused.
            sleep_until_unix(t_send + b - 0.5);
            assert_refused(&n, "z", a);
            // Just after the latest possible end: passes.
            sleep_until_unix(t_recv + b + 1.0 + 0.3);
            assert_passes(&n, "z", a);
        }
        // Capped from now on.
        ban_by_failures(&n, a, 1, 5, 4);
        let want: Vec<String> = [(2, 1), (4, 2), (5, 3), (5, 4)]
            .iter()
            .map(|&(b, k)| ban_message("z", a, 1, b, k))
            .collect();
        assert_eq!(bans_logged(&n, "z", a), want);
        n.assert_clean();
    });
}

// ---- 6 -------------------------------------------------------------------------

/// ipv6_prefix=64 (and ipv4_prefix=24): failures of different addresses of
/// one network add up and the network is banned. With the defaults (/128,
/// /32) the same traffic bans nobody.
#[test]
fn network_prefixes_count_failures_per_network() {
    with_timeout(60, || {
        let conf = config(&[
            "zone=net:1m maxretry=2 ipv6_prefix=64 ipv4_prefix=24",
            "zone=host:1m maxretry=2",
        ]);
        let n = opts().start(&conf);
        let net6 = "2001:db8:1:2::/64";
        let net4 = "198.51.100.0/24";
        for zone in ["net", "host"] {
            fail(&n, zone, "2001:db8:1:2::a");
            fail(&n, zone, "2001:db8:1:2::b");
            fail(&n, zone, "198.51.100.1");
            fail(&n, zone, "198.51.100.2");
        }

        expect_ban(&n, "net", net6, 2, 600, 1);
        expect_ban(&n, "net", net4, 2, 600, 1);
        for addr in ["2001:db8:1:2::c", "2001:db8:1:2::a", "2001:db8:1:2:ffff::1"] {
            assert_refused(&n, "net", addr);
        }
        for addr in ["198.51.100.200", "198.51.100.1"] {
            assert_refused(&n, "net", addr);
        }
        assert_passes(&n, "net", "2001:db8:1:3::c");
        assert_passes(&n, "net", "198.51.101.1");
        assert_eq!(banned_addrs(&n, "net"), set(&[net6, net4]));
        let state = api(&n, &format!("zone=net&addr={net6}"));
        assert!(state.bool("banned"), "{state:?}");
        assert_eq!(state.u64("failures"), 2, "{state:?}");
        // A single address given to the endpoint is mapped to its network.
        let state = api(&n, "zone=net&addr=2001:db8:1:2::c");
        assert_eq!(state.str("addr"), net6, "{state:?}");
        assert!(state.bool("banned"), "{state:?}");
        let state = api(&n, "zone=net&addr=198.51.100.200");
        assert_eq!(state.str("addr"), net4, "{state:?}");
        assert!(state.bool("banned"), "{state:?}");
        assert_eq!(
            messages(&n, "authban: ban zone=net ").len(),
            2,
            "{:#?}",
            messages(&n, "authban: ban zone=net ")
        );

        // Default prefixes: one failure per address, nobody banned.
        for addr in [
            "2001:db8:1:2::c",
            "2001:db8:1:2::a",
            "2001:db8:1:2::b",
            "198.51.100.200",
            "198.51.100.1",
        ] {
            assert_passes(&n, "host", addr);
        }
        assert!(banned_addrs(&n, "host").is_empty());
        let state = api(&n, "zone=host&addr=2001:db8:1:2::a");
        assert_eq!(
            (state.u64("failures"), state.bool("banned")),
            (1, false),
            "{state:?}"
        );
        assert!(
            messages(&n, "authban: ban zone=host ").is_empty(),
            "{:#?}",
            messages(&n, "authban: ban zone=host ")
        );
        n.assert_clean();
    });
}

// ---- 7 -------------------------------------------------------------------------

/// widen=3: the third banned address of one /64 (IPv6) or /24 (IPv4) bans
/// the network, whose ban replaces the members' bans.
#[test]
fn widening_bans_the_network_of_three_banned_addresses() {
    with_timeout(60, || {
        let conf = config(&["zone=w:1m maxretry=1 widen=3"]);
        let n = opts().start(&conf);
        let widened = |net: &str| format!("{} widened_from=3", ban_message("w", net, 3, 600, 1));

        // IPv6: two bans do not make a network ban.
        fail(&n, "w", "2001:db8:7:7::1");
        fail(&n, "w", "2001:db8:7:7::2");
        expect_ban(&n, "w", "2001:db8:7:7::1", 1, 600, 1);
        expect_ban(&n, "w", "2001:db8:7:7::2", 1, 600, 1);
        assert_passes(&n, "w", "2001:db8:7:7::99");
        assert_eq!(
            banned_addrs(&n, "w"),
            set(&["2001:db8:7:7::1", "2001:db8:7:7::2"])
        );
        assert!(messages(&n, "widened_from").is_empty());

        // The third does.
        fail(&n, "w", "2001:db8:7:7::3");
        expect_ban(&n, "w", "2001:db8:7:7::3", 1, 600, 1);
        expect_message(&n, &widened("2001:db8:7:7::/64"));
        for addr in [
            "2001:db8:7:7::99",
            "2001:db8:7:7::1",
            "2001:db8:7:7:ffff::5",
        ] {
            assert_refused(&n, "w", addr);
        }
        assert_passes(&n, "w", "2001:db8:7:8::1");
        assert_eq!(banned_addrs(&n, "w"), set(&["2001:db8:7:7::/64"]));

        // IPv4: /32s into their /24.
        fail(&n, "w", "203.0.113.1");
        fail(&n, "w", "203.0.113.2");
        assert_passes(&n, "w", "203.0.113.99");
        fail(&n, "w", "203.0.113.3");
        expect_message(&n, &widened("203.0.113.0/24"));
        assert_refused(&n, "w", "203.0.113.99");
        assert_refused(&n, "w", "203.0.113.1");
        assert_passes(&n, "w", "203.0.114.1");
        assert_eq!(
            banned_addrs(&n, "w"),
            set(&["2001:db8:7:7::/64", "203.0.113.0/24"])
        );
        assert_eq!(
            messages(&n, "widened_from").len(),
            2,
            "{:#?}",
            messages(&n, "widened_from")
        );
        n.assert_clean();
    });
}

// ---- 8 -------------------------------------------------------------------------

/// Two zones cannot share a state file, however its path is spelled.
#[test]
fn two_zones_cannot_share_a_state_file() {
    with_timeout(60, || {
        let refused = |a: &str, b: &str, file: &str| {
            let conf = config(&[
                &format!("zone=one:1m state={a}"),
                &format!("zone=two:1m state={b}"),
            ]);
            let (ok, out) = nginx_test_config(&conf);
            assert!(!ok, "nginx -t accepted state={a} and state={b}:\n{out}");
            let line = out
                .lines()
                .find(|l| l.contains("[emerg]"))
                .unwrap_or_else(|| panic!("no [emerg] line:\n{out}"));
            let path = line
                .split("state file \"")
                .nth(1)
                .and_then(|r| r.split_once("\" is used by another zone in "))
                .map(|(p, _)| p)
                .unwrap_or_else(|| panic!("unexpected error: {line}"));
            assert!(
                path.starts_with('/') && path.ends_with(&format!("/{file}")),
                "not the absolute path of {file}: {line}"
            );
        };
        refused("shared.state", "shared.state", "shared.state");
        // Relative to the prefix, or absolute: the same file.
        refused("same.state", "{dir}/same.state", "same.state");

        let conf = config(&["zone=one:1m state=one.state", "zone=two:1m state=two.state"]);
        let (ok, out) = nginx_test_config(&conf);
        assert!(ok, "two state files refused:\n{out}");
    });
}
