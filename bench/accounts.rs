//! Part 8: accounts, key zones (`authban_zone ... key=EXPR`) with several
//! zones in one location (`authban addr keys;`) and `authban_read_body`.
//!
//! - Request path: callgrind instructions per passing request (as part 1
//!   counts them) in a location with an address zone and a zone keyed on
//!   `$arg_apikey`, the request carrying an `apiKey`, against the same
//!   location with `authban off`; and the same while the key zone holds
//!   bans of other keys (no longer done at once: the full check hashes the
//!   request's key).
//! - `authban_read_body on`: a 200-byte login form POSTed through to the
//!   mock CloudStack (`proxy_pass`, keep-alive upstream), instructions per
//!   request with it on and off.
//! - The distributed login spray of tests/accounts.rs: 300 real source
//!   addresses (127.1.x.y), 3 bad logins each for one account; the guesses
//!   that reach the mock with the accounts zone beside the address zone,
//!   and with the address zone alone.
//! - Density: what a 1 MiB key zone holds (its `capacity`, then distinct
//!   keys failing once each until it evicts) beside a 1 MiB address zone.

use crate::api::{pinned_nginx, zone_stats};
use crate::callgrind;
use crate::common::{http, http_from_ip, Conn, Mock, Nginx};
use crate::density;
use crate::report::Section;
use crate::stats::{percent, thousands};
use crate::Config;

/// The address zone's maxretry in the spray (the tests' figure).
const ADDR_MAXRETRY: u64 = 5;
/// The accounts zone's maxretry in the spray (the tests' figure).
const KEY_MAXRETRY: u64 = 10;
/// The bench key zone's maxretry for the request path: each ban made
/// before the runs costs that many failures under valgrind.
const BENCH_KEY_MAXRETRY: u64 = 3;
/// Other keys banned for the slow path (part 1 bans 10 addresses).
const KEY_BANS: u64 = 10;
/// The spray: source addresses, and bad logins from each.
const SOURCES: u64 = 300;
const GUESSES_EACH: u64 = 3;
/// The login form's size.
const FORM_BYTES: usize = 200;

/// The passing call of the request path: a signed API call's parameters.
const CALL: &str =
    "/client/api?command=listVirtualMachines&apiKey=K-BENCH&response=json&signature=bench";

/// Part 1's kind of location, with an address zone and a key zone; `/fail`
/// makes failures in the key zone alone (auth_basic's 401), to ban keys.
fn request_block(authban: &str) -> String {
    format!(
        "authban_zone zone=addr:1m maxretry={ADDR_MAXRETRY} findtime=10m bantime=1h;
    authban_zone zone=keys:1m key=$arg_apikey maxretry={BENCH_KEY_MAXRETRY} findtime=1h bantime=1h;
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /client/api {{ {authban} empty_gif; }}
        location /fail {{
            authban keys;
            auth_basic bench;
            auth_basic_user_file {{dir}}/htpasswd;
        }}
        location = /authban {{ authban_api; }}
    }}"
    )
}

/// tests/accounts.rs's login configuration: the accounts zone counts
/// `command=login` by domain and username, read from the POSTed form; the
/// mock behind a keep-alive upstream. `zones`: the location's `authban`.
fn login_block(mock: &Mock, zones: &str, read_body: &str) -> String {
    format!(
        r#"map $authban_param_command $authban_login_account {{
        ~*^login$ "$authban_param_domain/$authban_param_username";
        default "";
    }}
    authban_zone zone=addr:4m maxretry={ADDR_MAXRETRY} findtime=10m bantime=1h;
    authban_zone zone=accounts:1m key=$authban_login_account maxretry={KEY_MAXRETRY} findtime=1h bantime=15m;
    upstream cloudstack {{
        server {mock};
        keepalive 4;
    }}
    server {{
        listen 127.0.0.1:{{port}};
        access_log off;
        location /client/api {{
            authban {zones};
            authban_read_body {read_body};
            authban_fail_status 401 531;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass http://cloudstack;
        }}
        location = /authban {{ authban_api; }}
    }}"#,
        mock = mock.addr()
    )
}

/// A login form of exactly [`FORM_BYTES`] bytes (padded with a parameter
/// CloudStack ignores).
fn login_form(user: &str, password: &str) -> Vec<u8> {
    let mut body =
        format!("command=login&username={user}&password={password}&domain=%2F&response=json&pad=");
    assert!(body.len() < FORM_BYTES, "{body}");
    body += &"x".repeat(FORM_BYTES - body.len());
    body.into_bytes()
}

pub fn run(cfg: &Config) -> Section {
    let mut s = Section::new("8. Accounts");
    request_path(cfg, &mut s);
    let mock = Mock::start();
    read_body(cfg, &mock, &mut s);
    spray(&mock, &mut s);
    drop(mock);
    density(&mut s);
    s
}

/// Bans [`KEY_BANS`] other keys through `/fail`.
fn ban_keys(port: u16) {
    for k in 0..KEY_BANS {
        for _ in 0..BENCH_KEY_MAXRETRY {
            let reply = http(
                port,
                "GET",
                &format!("/fail?apikey=K-BANNED-{k}"),
                &[],
                None,
            );
            assert_eq!(reply.status(), Some(401), "GET /fail: {reply:?}");
        }
    }
    let z = zone_stats(port, "keys");
    assert_eq!(z.bans, KEY_BANS, "zone keys after the failures: {z:?}");
}

fn start(block: &str, path: &str) -> Nginx {
    let nginx = pinned_nginx().start(block);
    let reply = http(nginx.port(), "GET", path, &[], None);
    assert_eq!(reply.status(), Some(200), "GET {path}: {reply:?}");
    nginx
}

/// Row 1: a passing API call with an address zone and a key zone.
fn request_path(cfg: &Config, s: &mut Section) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let off = callgrind::setup("accounts-off", start(&request_block("authban off;"), CALL));
    let on = callgrind::setup(
        "accounts-on",
        start(&request_block("authban addr keys;"), CALL),
    );
    let bans = callgrind::setup(
        "accounts-key-bans",
        start(&request_block("authban addr keys;"), CALL),
    );
    let plan = |prepare| callgrind::Plan::get(CALL, 200, (warm_up, measured), prepare);
    let c_off = callgrind::count(&off, &plan(&|_| {}));
    let c_on = callgrind::count(&on, &plan(&|_| {}));
    let c_bans = callgrind::count(&bans, &plan(&ban_keys));
    let own = |c: &callgrind::Count| callgrind::module_work(c).unwrap_or(f64::NAN);
    let over = |c: &callgrind::Count| c.per_request / c_off.per_request - 1.0;
    s.info(
        "instructions/passing API call with an `apiKey`, `authban off` in the location",
        thousands(c_off.per_request),
    );
    s.check(
        "instructions/passing API call, `authban addr keys;` (address zone + zone keyed on `$arg_apikey`) vs `authban off`",
        format!(
            "{} ({}, {:+.0} instructions)",
            thousands(c_on.per_request),
            percent(over(&c_on)),
            c_on.per_request - c_off.per_request
        ),
        "<= +2 %",
        over(&c_on) <= 0.02,
    );
    s.info(
        &format!(
            "same, the key zone holding {KEY_BANS} bans of other keys (the full check: the request's key hashed), vs `authban off`"
        ),
        format!(
            "{} ({}, {:+.0} instructions)",
            thousands(c_bans.per_request),
            percent(over(&c_bans)),
            c_bans.per_request - c_off.per_request
        ),
    );
    s.info(
        &format!("authban's own instructions/passing API call, no ban / {KEY_BANS} key bans"),
        format!(
            "{:.0} / {:.0} (outside the module: {:.0} / {:.0})",
            own(&c_on),
            own(&c_bans),
            callgrind::module_calls_out(&c_on),
            callgrind::module_calls_out(&c_bans)
        ),
    );
    s.note(format!(
        "Request path: `valgrind --tool=callgrind` as in part 1 (nginx with \
         `master_process off`, one keep-alive client, {warm_up} then {} requests, per \
         request = (I(N2) - I(N1)) / {measured}), on `location /client/api {{ authban \
         addr keys; empty_gif; }}` with zones `addr:1m` (by address) and `keys:1m \
         key=$arg_apikey maxretry={BENCH_KEY_MAXRETRY}`, every request `GET {CALL}`, \
         against the same nginx with `authban off;` there (the module loaded, the \
         zones declared). While no zone of the location holds a ban, a passing request \
         is done at once, whatever its key: the key is neither evaluated nor hashed. \
         For the slow path, {KEY_BANS} other keys were banned before the requests of \
         both runs ({BENCH_KEY_MAXRETRY} failures each at `location /fail {{ authban \
         keys; auth_basic ...; }}`, cancelling out like start-up): every passing \
         request then takes the full check, which evaluates `$arg_apikey`, hashes it \
         (SipHash-2-4-128, keyed per zone) and looks the hash up in the zone's ban \
         filter, and looks the address up in the address zone (no ban there). 'Own' is \
         authban's work at its per-request entry points (part 1's figure); 'outside \
         the module' what those entry points spend in nginx or libc (part 1: 0 for an \
         address zone alone): here, evaluating `$arg_apikey`.",
        warm_up + measured
    ));
    s.note(callgrind::module_table(
        "a passing API call, address zone + key zone, no ban",
        &c_on,
    ));
    s.note(callgrind::module_table(
        &format!("a passing API call, the key zone holding {KEY_BANS} bans of other keys"),
        &c_bans,
    ));
    s.note(outside_note(
        "the key zone holding bans vs no ban",
        &c_on,
        &c_bans,
    ));
}

/// The functions outside the module whose own instructions differ most
/// between `a` and `b`, as a sentence.
fn outside_note(label: &str, a: &callgrind::Count, b: &callgrind::Count) -> String {
    let diffs: Vec<String> = callgrind::outside_differences(a, b, 8)
        .iter()
        .map(|(f, d)| format!("`{f}` {d:+.0}"))
        .collect();
    format!(
        "Outside the module, {label}: {:+.0} instructions per request in all, mostly in \
         (self instructions per request): {}.",
        b.per_request - a.per_request,
        diffs.join(", ")
    )
}

/// Row 2: a login POST with `authban_read_body` on and off.
fn read_body(cfg: &Config, mock: &Mock, s: &mut Section) {
    let (warm_up, measured) = cfg.callgrind_requests();
    let form = login_form("admin", "password");
    let start = |read_body: &str| {
        let nginx = pinned_nginx().start(&login_block(mock, "addr accounts", read_body));
        let reply = http(
            nginx.port(),
            "POST",
            "/client/api",
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(&form),
        );
        assert_eq!(reply.status(), Some(200), "login POST: {reply:?}");
        nginx
    };
    let off = callgrind::setup("read-body-off", start("off"));
    let on = callgrind::setup("read-body-on", start("on"));
    let plan = callgrind::Plan {
        form: Some(&form),
        ..callgrind::Plan::get("/client/api", 200, (warm_up, measured), &|_| {})
    };
    let c_off = callgrind::count(&off, &plan);
    let c_on = callgrind::count(&on, &plan);
    let own = |c: &callgrind::Count| callgrind::module_work(c).unwrap_or(f64::NAN);
    s.info(
        &format!(
            "instructions/login POST ({FORM_BYTES}-byte form, proxied to the mock CloudStack, 200), `authban_read_body off`"
        ),
        thousands(c_off.per_request),
    );
    s.info(
        "same with `authban_read_body on` (authban reads the form in the access phase)",
        format!(
            "{} ({}, {:+.0} instructions)",
            thousands(c_on.per_request),
            percent(c_on.per_request / c_off.per_request - 1.0),
            c_on.per_request - c_off.per_request
        ),
    );
    s.info(
        "authban's own instructions/login POST, read_body off / on (on: with nginx's body reading it starts)",
        format!("{:.0} / {:.0}", own(&c_off), own(&c_on)),
    );
    s.note(format!(
        "authban_read_body: the same callgrind runs ({warm_up} then {} requests over one \
         keep-alive connection), every request a `POST /client/api` of a {FORM_BYTES}-byte \
         `application/x-www-form-urlencoded` login (`command=login&username=admin&\
         password=password&domain=%2F&response=json&pad=x...`, the mock's right \
         password: 200, a passing request) in tests/accounts.rs's login location \
         (`authban addr accounts;`, the accounts zone keyed on \
         `$authban_param_domain/$authban_param_username` through a map on \
         `$authban_param_command`), proxied to the mock CloudStack over a keep-alive \
         upstream (`keepalive 4`, HTTP/1.1), with `authban_read_body off` and `on`. \
         The figure is nginx's whole request (the proxying included); the mock runs \
         outside callgrind. With it off, the proxy module reads the body itself; with it \
         on, authban has nginx read it in the access phase (the request then resumes at \
         the access handler) and the proxy module sends what was read. No zone holds \
         a ban, but a location with `authban_read_body on` never takes the check that \
         is done at once: after the body, the full check evaluates the accounts zone's \
         key (the map on `$authban_param_command`, the parameters parsed from the \
         form) and hashes it, on every request (the tables below).",
        warm_up + measured
    ));
    s.note(callgrind::module_table(
        "a login POST with `authban_read_body on`",
        &c_on,
    ));
    s.note(outside_note(
        "`authban_read_body on` vs `off`",
        &c_off,
        &c_on,
    ));
}

/// Row 3: tests/accounts.rs's distributed login spray, with and without
/// the accounts zone: guesses that reached the mock.
fn spray(mock: &Mock, s: &mut Section) {
    let form = login_form("admin", "guess");
    let sources: Vec<String> = (0..SOURCES)
        .map(|i| format!("127.1.{}.{}", i / 200, i % 200 + 1))
        .collect();
    let total = SOURCES * GUESSES_EACH;
    let mut reached = Vec::new();
    for zones in ["addr accounts", "addr"] {
        let nginx = Nginx::options()
            .workers(2)
            .error_log_level("notice")
            .start(&login_block(mock, zones, "on"));
        mock.reset();
        let mut refused = 0;
        let mut first_refused = None;
        let mut n = 0;
        for _round in 0..GUESSES_EACH {
            for src in &sources {
                n += 1;
                let reply = http_from_ip(
                    src,
                    nginx.port(),
                    "POST",
                    "/client/api",
                    &[("Content-Type", "application/x-www-form-urlencoded")],
                    Some(&form),
                );
                match reply.status() {
                    Some(531) => {}
                    Some(403) => {
                        refused += 1;
                        first_refused.get_or_insert(n);
                    }
                    other => panic!("spray guess {n} from {src}: {other:?}"),
                }
            }
        }
        let (requests, by_status) = mock.stats();
        let addr_bans = zone_stats(nginx.port(), "addr").bans;
        reached.push((
            zones,
            requests,
            by_status.get(&531).copied().unwrap_or(0),
            refused,
            first_refused,
            addr_bans,
        ));
    }
    let show = |r: &(&str, u64, u64, u64, Option<u64>, u64)| {
        format!(
            "{} of {total} (531 from the mock: {}); refused {}{}; address bans {}",
            r.1,
            r.2,
            r.3,
            r.4.map_or(String::new(), |n| format!(" from guess {n} on")),
            r.5
        )
    };
    let (with, alone) = (&reached[0], &reached[1]);
    s.check(
        &format!(
            "distributed login spray ({SOURCES} source addresses x {GUESSES_EACH} bad logins for admin): guesses reaching CloudStack, `authban addr accounts;`"
        ),
        show(with),
        &format!("exactly the accounts zone's maxretry ({KEY_MAXRETRY})"),
        with.1 == KEY_MAXRETRY && with.2 == KEY_MAXRETRY,
    );
    s.info(
        &format!(
            "same, the address zone alone (`authban addr;`, maxretry {ADDR_MAXRETRY} per address)"
        ),
        show(alone),
    );
    s.note(format!(
        "Spray: tests/accounts.rs's `a_distributed_login_spray...` as a measure. nginx \
         with 2 workers and its login location (`authban_read_body on`, \
         `authban_fail_status 401 531`, the mock CloudStack behind it); {SOURCES} \
         source addresses 127.1.x.y (real peers: each request a new connection bound \
         to its address, no realip), each POSTing {GUESSES_EACH} bad passwords for \
         `admin` in domain `/`, interleaved (every address once, then again): \
         {total} guesses. Counted by the mock (`/_mock/stats`, reset before each side, \
         nothing else sent to it meanwhile). With `authban addr accounts;` the accounts \
         zone (`key=$authban_login_account`, maxretry {KEY_MAXRETRY}) bans `//admin` \
         at its {KEY_MAXRETRY}th failure, whichever address it comes from; with the \
         address zone alone (maxretry {ADDR_MAXRETRY}) no address ever fails more than \
         {GUESSES_EACH} times, so every guess reaches CloudStack."
    ));
}

/// Row 4: what a 1 MiB key zone holds, beside a 1 MiB address zone.
fn density(s: &mut Section) {
    let nginx = pinned_nginx().start(
        "authban_zone zone=addr:1m;
    authban_zone zone=keys:1m key=$arg_apikey;
    server {
        listen 127.0.0.1:{port};
        access_log off;
        location /fail { authban keys; auth_basic bench; auth_basic_user_file {dir}/htpasswd; }
        location = /authban { authban_api; }
    }",
    );
    let addr_capacity = zone_stats(nginx.port(), "addr").capacity;
    let f = density::fill(&nginx, "keys", &|c: &mut Conn, n| {
        c.get(&format!("/fail?apikey=K{n:08}"))
    });
    s.info(
        "keys a 1 MiB key zone holds before forgetting (`capacity` from `GET /authban?zone=keys`); a 1 MiB address zone's capacity",
        format!(
            "{}; address zone: capacity {}{}",
            f.show("key"),
            thousands(addr_capacity as f64),
            if f.exact {
                ""
            } else {
                " (the key zone evicted earlier than its capacity said)"
            }
        ),
    );
    s.note(
        "Density: zones `addr:1m` and `keys:1m key=$arg_apikey` in one nginx; \
         `capacity` from the endpoint for both, then distinct keys (`K00000000`, \
         `K00000001`, ...) fail once each through `location /fail { authban keys; \
         auth_basic ...; }` over keep-alive until the key zone's `evicted` leaves 0 \
         (read after every key near the capacity), as part 2 does for addresses.",
    );
}
