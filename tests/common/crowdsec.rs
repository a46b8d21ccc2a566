//! A real CrowdSec local API (LAPI) for the CrowdSec tests (issue 18):
//! Debian 12's `crowdsec` 1.4.6, unpacked into `build/crowdsec` by
//! `scripts/fetch-crowdsec.sh` (never installed), run as
//! `crowdsec -c CONFIG -no-cs` (the LAPI alone, no log acquisition) on a
//! free loopback port, with a configuration [`Lapi::start`] writes into a
//! private temp dir: its own sqlite database, no `online_client` section (no
//! Central API, nothing leaves the machine), no Prometheus listener, logs in
//! `log/`. `cscli -c CONFIG` makes the credentials (`machines add`,
//! `bouncers add`) and the decisions. Killed by pid on drop or by
//! [`with_timeout`](super::with_timeout); [`Lapi::stop`] and
//! [`Lapi::restart`] play an outage on the same port and data.
//!
//! What 1.4.6 needs offline, found by trying: `api.server.profiles_path`
//! must name a readable profiles file (else both `crowdsec` and `cscli`
//! exit with "while loading profiles for LAPI", cscli adding a misleading
//! "Local API is disabled"); the hub directory, simulation file and
//! acquisition file may all be missing with `-no-cs` (the hub directory is
//! never created); `prometheus.enabled: false` keeps it off Debian's fixed
//! 127.0.0.1:6060, which parallel LAPIs would fight over. The LAPI answers
//! `GET /health` within about half a second of starting. It starts no child
//! process (plugins only run for notifications, configured nowhere here).
//! SIGTERM takes more than a second to end it, hence SIGKILL.
//!
//! # What LAPI 1.4.6 answers (observed, the module is written from these)
//!
//! Bouncer side, header `X-Api-Key: KEY` (`cscli bouncers add NAME -o raw`
//! prints KEY, 32 hex digits):
//!
//! `GET /v1/decisions/stream?startup=true` → 200,
//! `Content-Type: application/json; charset=utf-8`, with `Content-Length`:
//!
//! ```json
//! {"deleted":null,"new":[{"duration":"59m59.241201068s","id":1,"origin":"cscli",
//!   "scenario":"manual 'ban' from 'harness'","scope":"Ip","type":"ban","value":"192.0.2.7"},
//!  {"duration":"1h59m59.241198955s","id":2,"origin":"cscli","scenario":"...",
//!   "scope":"Range","type":"ban","value":"198.51.100.0/24"}]}
//! ```
//!
//! - an empty list is `null`, not `[]` (both keys always present);
//! - `duration` is the time *left*, a Go duration string (`1h2m3.5s`,
//!   `9m58.85s`, `-10.04ms` for a deleted one: negative), never a number;
//! - `startup=true` also lists in `deleted` the decisions that already
//!   ended or were deleted (negative duration), not only the active ones in
//!   `new`;
//! - the startup answer is not bounded by the active decisions: every
//!   decision that ended and is not yet flushed (`db_config.flush`, 7 days
//!   by default) comes in `deleted`;
//! - scope is `Ip` or `Range`, values `192.0.2.7`, `2001:db8::1`,
//!   `198.51.100.0/24`; `origin` is `cscli`, `crowdsec`, or what an alert's
//!   decision said (`authban`).
//!
//! `GET /v1/decisions/stream` (no startup) → 200 with what changed since this
//! bouncer's last pull: `{"deleted":null,"new":null}` when nothing did; after
//! `cscli decisions delete --ip 192.0.2.7`:
//! `{"deleted":[{"duration":"-10.043396ms","id":1,"origin":"cscli",...,
//! "scope":"Ip","type":"ban","value":"192.0.2.7"}],"new":null}`.
//! **`deleted` is at least once, not exactly once**: each pull lists what
//! ended since its previous pull *minus 2 s*, so pulls less than 2 s apart
//! list the same deletion again (seen here; upstream's stream handler says
//! `LastPull.Add(-2 * time.Second)`). Deletions must be applied
//! idempotently, by decision `id` (a later decision on the same value has a
//! new id). Per upstream's source of that era (not observed here), the last
//! pull is stamped after the queries, so a decision created during a pull
//! may be missed by the following ones until the next startup pull.
//!
//! A wrong key → 403 `{"message":"access forbidden"}`. A bouncer without a
//! `User-Agent` of the form `NAME/VERSION` is served (LAPI logs "bad user
//! agent").
//!
//! Machine side: `POST /v1/watchers/login` with
//! `{"machine_id":"LOGIN","password":"PASSWORD"}` (the `login` and
//! `password` of a `local_api_credentials.yaml`) **and a `User-Agent` of
//! exactly one `/`** (`authban/0.1.0`) → 200
//! `{"code":200,"expire":"2026-12-05T16:43:26Z","token":"eyJhbGciOi..."}`
//! (a JWT valid one hour, `expire` RFC 3339 UTC). A wrong password → 401
//! `{"code":401,"message":"incorrect Username or Password"}`; so is the
//! right password with no User-Agent, `authban` or `a/b/c` (the machine's
//! version is taken from it): only LAPI's log says "bad user agent".
//!
//! `POST /v1/alerts`, header `Authorization: Bearer TOKEN`, body an *array*
//! of alerts. Every field below is required by 1.4.6's validation (a missing
//! one → 500 `{"message":"validation failure list:\n0.capacity in body is
//! required\n..."}`), empty strings and an empty `events` list are accepted:
//!
//! ```json
//! [{"scenario":"authban/test","scenario_hash":"","scenario_version":"",
//!   "message":"authban: 192.0.2.9 banned by count in zone test",
//!   "events_count":1,"start_at":"2026-12-05T15:43:31Z","stop_at":"2026-12-05T15:43:31Z",
//!   "capacity":0,"leakspeed":"0","simulated":false,"events":[],
//!   "source":{"scope":"Ip","value":"192.0.2.9"},
//!   "decisions":[{"origin":"authban","type":"ban","scope":"Ip","value":"192.0.2.9",
//!                 "duration":"10m","scenario":"authban/test"}]}]
//! ```
//!
//! → 201 `["3"]` (the new alerts' ids, as strings). A `Range` decision
//! (`"scope":"Range","value":"203.0.113.0/24"`, same in `source`), an IPv6
//! value and a duration like `"599s"` are accepted. A bad duration or value
//! fails the whole request: 500 `{"message":"unable to create alerts:
//! decision duration 'bogus' : ..."}`. `start_at`/`stop_at` not in RFC 3339
//! are accepted but logged as errors and replaced by now. A missing or bad
//! token → 401 `{"code":401,"message":"..."}`. The decision is then served
//! to every bouncer's stream with `"origin":"authban"` (so authban's own
//! pull sees its ban come back: the echo to ignore).
//!
//! **`cscli decisions list` and `cscli alerts list` without `-a` hide it**:
//! 1.4.6 filters them to decisions of origin `crowdsec` or `cscli` unless
//! `-a` (`include_capi=true`) is given; an alert whose decision has origin
//! `crowdsec` does show without `-a` (tried). [`Lapi::decisions_json`] and
//! [`Lapi::alerts_json`] pass `-a`; their entries are alerts:
//! `{"capacity":0,"created_at":"...","decisions":[{"duration":"9m54.5s","id":3,
//! "origin":"authban","scenario":"authban/test","scope":"Ip","simulated":false,
//! "type":"ban","value":"192.0.2.9"}],"events":null,"events_count":1,"id":3,
//! "labels":null,"leakspeed":"0","machine_id":"authban","message":"...",
//! "scenario":"authban/test","scenario_hash":"","scenario_version":"",
//! "simulated":false,"source":{"scope":"Ip","value":"192.0.2.9"},
//! "start_at":"2026-12-05 15:43:31 +0000 UTC","stop_at":"..."}` (and `null`,
//! not `[]`, when there is none: these helpers return `[]` then).

use std::fs::{self, File};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::client::http;
use super::json::Json;
use super::paths::{build_dir, fresh_dir, keep_tmp, logs_tail};
use super::ports::free_port;
use super::process::{await_ready, kill_server, spawn_again, spawn_logged, Startup, Tracked};

/// How long the LAPI may take to answer `/health` after starting.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long one `cscli` command may take.
const CSCLI_TIMEOUT: Duration = Duration::from_secs(20);
/// The machine `cscli` logs in as (`decisions add`, `decisions list`...).
const CSCLI_MACHINE: &str = "harness";

/// Debian's profiles.yaml: alerts without decisions of their own get a 4 h
/// ban on their source IP. 1.4.6 refuses to start without a profiles file.
const PROFILES: &str = "\
name: default_ip_remediation
filters:
 - Alert.Remediation == true && Alert.GetScope() == \"Ip\"
decisions:
 - type: ban
   duration: 4h
on_success: break
";

/// `build/crowdsec` (under `$AUTHBAN_BUILD` when set), where
/// `scripts/fetch-crowdsec.sh` unpacks Debian's package.
pub fn crowdsec_dir() -> PathBuf {
    build_dir().join("crowdsec")
}

/// `usr/bin/NAME` of the unpacked package: a missing binary fails the test
/// (never a skip).
fn crowdsec_bin(name: &str) -> PathBuf {
    let path = crowdsec_dir().join("usr/bin").join(name);
    if !path.is_file() {
        panic!(
            "{name} not found at {}: run scripts/fetch-crowdsec.sh (`make test` does: \
             Debian's crowdsec package unpacked, not installed)",
            path.display()
        );
    }
    fs::canonicalize(&path).unwrap_or(path)
}

/// A machine's credentials, as in CrowdSec's `local_api_credentials.yaml`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineCredentials {
    pub url: String,
    pub login: String,
    pub password: String,
}

impl MachineCredentials {
    /// Reads the `url:`, `login:` and `password:` lines cscli writes.
    pub fn read(path: &Path) -> MachineCredentials {
        let text = fs::read_to_string(path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let field = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
                .map(|v| v.trim().trim_matches('"').to_string())
                .filter(|v| !v.is_empty())
                .unwrap_or_else(|| panic!("no {key}: in {}:\n{text}", path.display()))
        };
        MachineCredentials {
            url: field("url"),
            login: field("login"),
            password: field("password"),
        }
    }
}

/// A running CrowdSec LAPI.
pub struct Lapi {
    child: Option<Child>,
    tracked: Option<Arc<Tracked>>,
    port: u16,
    dir: PathBuf,
}

impl Lapi {
    /// Writes the configuration, makes the database and `cscli`'s machine,
    /// starts the LAPI and waits until `/health` answers.
    pub fn start() -> Lapi {
        let mut lapi = Lapi {
            child: None,
            tracked: None,
            port: 0,
            dir: fresh_dir("crowdsec"),
        };
        for sub in ["config", "data", "log"] {
            fs::create_dir(lapi.dir.join(sub))
                .unwrap_or_else(|e| panic!("create {}/{sub}: {e}", lapi.dir.display()));
        }
        fs::write(lapi.dir.join("config/profiles.yaml"), PROFILES).expect("write profiles.yaml");
        // A port taken by something outside the harness: try another.
        let mut last = String::new();
        for _ in 0..3 {
            lapi.port = free_port();
            lapi.write_config();
            // The credentials file carries the URL, so it follows the port.
            lapi.cscli(&[
                "machines",
                "add",
                CSCLI_MACHINE,
                "--auto",
                "--force",
                "-f",
                &lapi.path("config/local_api_credentials.yaml"),
            ]);
            match lapi.spawn() {
                Ok(()) => return lapi,
                Err(e) => last = e,
            }
        }
        panic!("crowdsec LAPI failed to start: {last}");
    }

    fn path(&self, rel: &str) -> String {
        self.dir.join(rel).display().to_string()
    }

    /// The configuration file `crowdsec -c` and `cscli -c` read.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config/config.yaml")
    }

    /// Every path under the temp dir; no `online_client`, no `prometheus`.
    fn write_config(&self) {
        let d = self.dir.display();
        let config = format!(
            "\
common:
  daemonize: false
  log_media: file
  log_level: info
  log_dir: {d}/log
  working_dir: {d}
config_paths:
  config_dir: {d}/config
  data_dir: {d}/data
  simulation_path: {d}/config/simulation.yaml
  hub_dir: {d}/hub
  index_path: {d}/hub/.index.json
  notification_dir: {d}/config/notifications
  plugin_dir: {d}/plugins
crowdsec_service:
  acquisition_path: {d}/config/acquis.yaml
  parser_routines: 1
cscli:
  output: human
  color: \"no\"
db_config:
  log_level: info
  type: sqlite
  db_path: {d}/data/crowdsec.db
  use_wal: false
api:
  client:
    insecure_skip_verify: false
    credentials_path: {d}/config/local_api_credentials.yaml
  server:
    log_level: info
    listen_uri: 127.0.0.1:{port}
    profiles_path: {d}/config/profiles.yaml
    trusted_ips:
      - 127.0.0.1
prometheus:
  enabled: false
",
            port = self.port
        );
        fs::write(self.config_path(), config).expect("write crowdsec config.yaml");
    }

    /// Spawns `crowdsec -c CONFIG -no-cs` and waits until `/health` answers.
    fn spawn(&mut self) -> Result<(), String> {
        let bin = crowdsec_bin("crowdsec");
        let (mut child, tracked) = spawn_logged(
            Command::new(&bin)
                .arg("-c")
                .arg(self.config_path())
                .arg("-no-cs")
                .current_dir(&self.dir),
            &self.dir.join("log/stdout.log"),
            &format!("crowdsec port {}", self.port),
        );
        match await_ready(&mut child, READY_TIMEOUT, || self.healthy()) {
            Startup::Ready => {
                self.tracked = Some(tracked);
                self.child = Some(child);
                Ok(())
            }
            Startup::Exited(status) => Err(format!(
                "crowdsec on port {} exited with {status}\n{}",
                self.port,
                self.log_tail()
            )),
            Startup::TimedOut => {
                let tail = self.log_tail();
                kill_server(&mut Some(tracked), &mut Some(child));
                Err(format!(
                    "crowdsec on port {} does not answer GET /health within {READY_TIMEOUT:?}\n{tail}",
                    self.port
                ))
            }
        }
    }

    /// `GET /health` answers 200 (the port is tried first, so that a LAPI
    /// not listening yet is not a panic of the HTTP client).
    fn healthy(&self) -> bool {
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err() {
            return false;
        }
        http(self.port, "GET", "/health", &[], None).status() == Some(200)
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, as in the credentials files.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILLs the LAPI (an outage, not a shutdown) and reaps it.
    pub fn stop(&mut self) {
        kill_server(&mut self.tracked, &mut self.child);
    }

    /// Starts the LAPI again on the same port, with the same database (keys,
    /// machines and decisions kept).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(last) = spawn_again(|| self.spawn()) {
            panic!(
                "crowdsec LAPI failed to restart on port {}: {last}",
                self.port
            );
        }
    }

    /// The last lines of the LAPI's logs (its own, its access log, what it
    /// wrote before opening them), for failure messages.
    pub fn log_tail(&self) -> String {
        logs_tail(
            &self.dir.join("log"),
            &["stdout.log", "crowdsec.log", "crowdsec_api.log"],
            "crowdsec log",
            30,
        )
    }

    /// `cscli -c CONFIG ARGS...`, bounded by [`CSCLI_TIMEOUT`]; its stdout.
    /// Panics (with its output and the LAPI's log tail) when it fails.
    pub fn cscli(&self, args: &[&str]) -> String {
        match self.try_cscli(args) {
            Ok(out) => out,
            Err(e) => panic!("{e}\n{}", self.log_tail()),
        }
    }

    /// [`Lapi::cscli`] that returns a failure (exit status, or no exit within
    /// the time limit: killed) as `Err` with cscli's output.
    pub fn try_cscli(&self, args: &[&str]) -> Result<String, String> {
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let out_path = self.dir.join(format!("log/cscli-{n}.out"));
        let err_path = self.dir.join(format!("log/cscli-{n}.err"));
        let bin = crowdsec_bin("cscli");
        let mut child = Command::new(&bin)
            .arg("-c")
            .arg(self.config_path())
            .args(args)
            .current_dir(&self.dir)
            .stdin(Stdio::null())
            .stdout(File::create(&out_path).expect("create cscli stdout"))
            .stderr(File::create(&err_path).expect("create cscli stderr"))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", bin.display()));
        let tracked = Tracked::new(format!("cscli pid {}", child.id()), child.id() as i32);
        let deadline = Instant::now() + CSCLI_TIMEOUT;
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break Some(status),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
                _ => {
                    tracked.kill_all();
                    let _ = child.kill();
                    let _ = child.wait();
                    break None;
                }
            }
        };
        let stdout = String::from_utf8_lossy(&fs::read(&out_path).unwrap_or_default()).into_owned();
        let stderr = String::from_utf8_lossy(&fs::read(&err_path).unwrap_or_default()).into_owned();
        let _ = fs::remove_file(&out_path);
        let _ = fs::remove_file(&err_path);
        match status {
            Some(s) if s.success() => Ok(stdout),
            Some(s) => Err(format!(
                "cscli {} exited with {s}\nstdout: {stdout}\nstderr: {stderr}",
                args.join(" ")
            )),
            None => Err(format!(
                "cscli {} did not finish within {CSCLI_TIMEOUT:?} (killed)\nstdout: {stdout}\nstderr: {stderr}",
                args.join(" ")
            )),
        }
    }

    /// A new bouncer's API key (`cscli bouncers add NAME -o raw`).
    pub fn bouncer_key(&self, name: &str) -> String {
        let out = self.cscli(&["bouncers", "add", name, "-o", "raw"]);
        let key = out.trim().to_string();
        assert!(
            !key.is_empty() && !key.contains(char::is_whitespace),
            "cscli bouncers add {name} -o raw printed {out:?}"
        );
        key
    }

    /// A new bouncer's key in a file (mode 0600), as `bouncer_key_file=`
    /// reads it.
    pub fn bouncer_key_file(&self, name: &str) -> PathBuf {
        let key = self.bouncer_key(name);
        self.secret_file(&format!("{name}.key"), &format!("{key}\n"))
    }

    /// A file of this LAPI's directory, readable by its owner only.
    pub fn secret_file(&self, name: &str, text: &str) -> PathBuf {
        use std::os::unix::fs::OpenOptionsExt;
        let path = self.dir.join("config").join(name);
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&path)
            .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
        std::io::Write::write_all(&mut f, text.as_bytes()).expect("write secret file");
        path
    }

    /// A second machine (`cscli machines add NAME --auto`, validated), its
    /// credentials in a file of `local_api_credentials.yaml`'s format (url,
    /// login, password), as authban will read it; see
    /// [`MachineCredentials::read`].
    pub fn machine_credentials(&self, name: &str) -> PathBuf {
        let file = self.dir.join(format!("config/{name}-credentials.yaml"));
        self.cscli(&[
            "machines",
            "add",
            name,
            "--auto",
            "-f",
            &file.display().to_string(),
        ]);
        assert!(
            file.is_file(),
            "cscli machines add {name} wrote no {}",
            file.display()
        );
        file
    }

    /// `cscli decisions add --ip IP --duration DURATION` (a ban).
    pub fn add_decision_ip(&self, ip: &str, duration: &str) {
        self.cscli(&["decisions", "add", "--ip", ip, "--duration", duration]);
    }

    /// `cscli decisions add --range CIDR --duration DURATION` (a ban).
    pub fn add_decision_range(&self, cidr: &str, duration: &str) {
        self.cscli(&["decisions", "add", "--range", cidr, "--duration", duration]);
    }

    /// `cscli decisions delete --ip IP`.
    pub fn delete_decision_ip(&self, ip: &str) {
        self.cscli(&["decisions", "delete", "--ip", ip]);
    }

    /// `cscli alerts list -a -l 0 -o json`: every alert, whatever its
    /// decisions' origin (`-a`: see the module doc), `[]` for none.
    pub fn alerts_json(&self) -> Json {
        self.list_json(&["alerts", "list", "-a", "-l", "0", "-o", "json"])
    }

    /// `cscli decisions list -a -l 0 -o json`: alerts with an active decision,
    /// whatever its origin (`-a`), `[]` for none.
    pub fn decisions_json(&self) -> Json {
        self.list_json(&["decisions", "list", "-a", "-l", "0", "-o", "json"])
    }

    fn list_json(&self, args: &[&str]) -> Json {
        let out = self.cscli(args);
        let text = match out.trim() {
            "null" | "" => "[]",
            t => t,
        };
        Json::parse(text)
            .unwrap_or_else(|e| panic!("cscli {}: not JSON ({e}):\n{out}", args.join(" ")))
    }
}

impl Drop for Lapi {
    fn drop(&mut self) {
        self.stop();
        if thread::panicking() || keep_tmp() {
            eprintln!("authban harness: kept crowdsec dir {}", self.dir.display());
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// Seconds in a Go duration string as LAPI writes them (`1h2m3.5s`,
/// `59m59.241201068s`, `-10.043396ms`, `0s`); `None` when it is not one.
pub fn go_duration_secs(s: &str) -> Option<f64> {
    let (neg, mut rest) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    if rest == "0" {
        return Some(0.0);
    }
    if rest.is_empty() {
        return None;
    }
    let mut total = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let value: f64 = rest[..num_len].parse().ok()?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "h" => 3600.0,
            "m" => 60.0,
            "s" => 1.0,
            "ms" => 1e-3,
            "us" | "µs" | "μs" => 1e-6,
            "ns" => 1e-9,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total += value * scale;
    }
    Some(if neg { -total } else { total })
}

/// Now as RFC 3339 UTC (`2026-12-05T15:43:31Z`), as LAPI wants `start_at`.
pub fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock before 1970")
        .as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
