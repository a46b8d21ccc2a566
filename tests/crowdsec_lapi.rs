//! The CrowdSec harness against a real LAPI (Debian's crowdsec 1.4.6,
//! `scripts/fetch-crowdsec.sh`), over loopback, with the harness's plain
//! HTTP client: the exchanges authban's bouncer and alert sender will have
//! (issue 18), as `tests/common/crowdsec.rs` documents them. No nginx here.

mod common;
use common::*;

use serde_json::Value;

/// The whole file stays well under a minute; one test's bound.
const TEST_SECS: u64 = 50;

/// `GET /v1/decisions/stream[?startup=true]` with `X-Api-Key: key`: the
/// status and the body as JSON.
fn stream(lapi: &Lapi, key: &str, startup: bool) -> (u16, Json) {
    let path = if startup {
        "/v1/decisions/stream?startup=true"
    } else {
        "/v1/decisions/stream"
    };
    let reply = http(lapi.port(), "GET", path, &[("X-Api-Key", key)], None);
    let status = reply
        .status()
        .unwrap_or_else(|| panic!("GET {path}: connection closed\n{}", lapi.log_tail()));
    let text = reply.text();
    let json = Json::parse(&text)
        .unwrap_or_else(|e| panic!("GET {path}: {status}, not JSON ({e}): {text:?}"));
    (status, json)
}

/// A stream answer's `new` or `deleted` list (`null` is an empty one).
fn list<'a>(answer: &'a Json, key: &str) -> &'a [Json] {
    let field = answer.get(key);
    match field.value() {
        Value::Null => &[],
        _ => field.as_arr(),
    }
}

/// The decisions of `list` whose value is `value`.
fn with_value<'a>(list: &'a [Json], value: &str) -> Vec<&'a Json> {
    list.iter().filter(|d| d.str("value") == value).collect()
}

#[test]
fn bouncer_stream_sees_decisions_added_and_deleted() {
    with_timeout(TEST_SECS, || {
        let mut lapi = Lapi::start();
        let key = lapi.bouncer_key("authban-test");
        assert_eq!(key.len(), 32, "bouncer key {key:?}");
        lapi.add_decision_ip("192.0.2.7", "1h");
        lapi.add_decision_range("198.51.100.0/24", "2h");

        // The startup pull: every active decision in `new`.
        let (status, first) = stream(&lapi, &key, true);
        assert_eq!(status, 200, "{first:?}");
        assert_eq!(first.keys(), ["deleted", "new"], "{first:?}");
        let new = list(&first, "new");
        assert_eq!(new.len(), 2, "{first:?}");
        let ip = with_value(new, "192.0.2.7");
        assert_eq!(ip.len(), 1, "{first:?}");
        let d = ip[0];
        assert_eq!(d.str("type"), "ban");
        assert_eq!(d.str("scope"), "Ip");
        assert_eq!(d.str("origin"), "cscli");
        assert!(d.u64("id") > 0, "{d:?}");
        let left = go_duration_secs(d.str("duration"))
            .unwrap_or_else(|| panic!("duration not a Go duration: {d:?}"));
        assert!((3500.0..=3600.0).contains(&left), "{d:?}");
        let range = with_value(new, "198.51.100.0/24");
        assert_eq!(range.len(), 1, "{first:?}");
        assert_eq!(range[0].str("scope"), "Range");
        assert_eq!(range[0].str("type"), "ban");
        let left = go_duration_secs(range[0].str("duration")).expect("Go duration");
        assert!((7100.0..=7200.0).contains(&left), "{:?}", range[0]);

        // Nothing changed: nothing new, nothing deleted (`null`, not `[]`).
        let (status, again) = stream(&lapi, &key, false);
        assert_eq!(status, 200);
        assert_eq!(again.get("new").value(), &Value::Null, "{again:?}");
        assert_eq!(again.get("deleted").value(), &Value::Null, "{again:?}");

        // A deletion is listed in `deleted`, with a negative duration...
        lapi.delete_decision_ip("192.0.2.7");
        let (status, after) = stream(&lapi, &key, false);
        assert_eq!(status, 200);
        let deleted = list(&after, "deleted");
        assert_eq!(deleted.len(), 1, "{after:?}");
        let d = &deleted[0];
        assert_eq!(d.str("value"), "192.0.2.7");
        assert_eq!((d.str("type"), d.str("scope")), ("ban", "Ip"));
        assert!(
            go_duration_secs(d.str("duration")).expect("Go duration") <= 0.0,
            "{d:?}"
        );
        assert!(list(&after, "new").is_empty(), "{after:?}");
        let id = d.u64("id");
        // ...and again by every pull within 2 s of the previous one (1.4.6
        // lists what ended since its last pull minus 2 s): at least once.
        let (_, again) = stream(&lapi, &key, false);
        for d in list(&again, "deleted") {
            assert_eq!(
                (d.str("value"), d.u64("id")),
                ("192.0.2.7", id),
                "{again:?}"
            );
        }
        assert!(list(&again, "new").is_empty(), "{again:?}");
        std::thread::sleep(std::time::Duration::from_millis(2100));
        let _ = stream(&lapi, &key, false);
        let (_, quiet) = stream(&lapi, &key, false);
        assert_eq!(quiet.get("deleted").value(), &Value::Null, "{quiet:?}");
        assert_eq!(quiet.get("new").value(), &Value::Null, "{quiet:?}");

        // A wrong key.
        let (status, refused) = stream(&lapi, "0123456789abcdef0123456789abcdef", true);
        assert_eq!(status, 403, "{refused:?}");
        assert_eq!(refused.str("message"), "access forbidden");

        // An outage: nothing answers, then the same port, key and decisions.
        lapi.stop();
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], lapi.port()));
        assert!(
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_secs(1)).is_err(),
            "something still listens on the stopped LAPI's port"
        );
        lapi.restart();
        let (status, later) = stream(&lapi, &key, true);
        assert_eq!(status, 200, "{later:?}");
        let new = list(&later, "new");
        assert_eq!(with_value(new, "198.51.100.0/24").len(), 1, "{later:?}");
        assert!(with_value(new, "192.0.2.7").is_empty(), "{later:?}");
        // A startup pull lists every decision that ended, too.
        let gone = with_value(list(&later, "deleted"), "192.0.2.7");
        assert_eq!(gone.len(), 1, "{later:?}");
        assert_eq!(gone[0].u64("id"), id);
    });
}

#[test]
fn machine_login_and_alert_with_a_decision() {
    with_timeout(TEST_SECS, || {
        let lapi = Lapi::start();
        let creds_file = lapi.machine_credentials("authban");
        let creds = MachineCredentials::read(&creds_file);
        assert_eq!(creds.url, lapi.url(), "{creds_file:?}");
        assert_eq!(creds.login, "authban");

        let login = |user_agent: Option<&str>, password: &str| {
            let body =
                serde_json::json!({"machine_id": creds.login, "password": password}).to_string();
            let mut headers = vec![("Content-Type", "application/json")];
            if let Some(ua) = user_agent {
                headers.push(("User-Agent", ua));
            }
            let reply = http(
                lapi.port(),
                "POST",
                "/v1/watchers/login",
                &headers,
                Some(body.as_bytes()),
            );
            let status = reply.status().expect("an answer");
            let text = reply.text();
            let json = Json::parse(&text)
                .unwrap_or_else(|e| panic!("login: {status}, not JSON ({e}): {text:?}"));
            (status, json)
        };

        // A wrong password.
        let (status, refused) = login(Some("authban/0.1.0"), "wrong");
        assert_eq!(status, 401, "{refused:?}");
        assert_eq!(refused.u64("code"), 401);
        assert_eq!(refused.str("message"), "incorrect Username or Password");

        // The right password without a User-Agent of the form NAME/VERSION:
        // refused alike (1.4.6 records the version from it), only the LAPI's
        // log says why.
        for ua in [None, Some("authban"), Some("authban/0.1/x")] {
            let (status, refused) = login(ua, &creds.password);
            assert_eq!(status, 401, "User-Agent {ua:?}: {refused:?}");
            assert_eq!(refused.str("message"), "incorrect Username or Password");
        }
        assert!(
            lapi.log_tail().contains("bad user agent"),
            "{}",
            lapi.log_tail()
        );

        // The login: a JWT and when it expires.
        let (status, login) = login(Some("authban/0.1.0"), &creds.password);
        assert_eq!(status, 200, "{login:?}\n{}", lapi.log_tail());
        assert_eq!(login.u64("code"), 200, "{login:?}");
        let token = login.str("token").to_string();
        assert_eq!(token.split('.').count(), 3, "not a JWT: {login:?}");
        let expire = login.str("expire");
        assert!(expire.ends_with('Z') && expire.len() == 20, "{login:?}");

        // One alert carrying one decision, every field 1.4.6 requires.
        let now = rfc3339_now();
        let alert = serde_json::json!([{
            "scenario": "authban/test",
            "scenario_hash": "",
            "scenario_version": "",
            "message": "authban: 192.0.2.9 banned by count in zone test",
            "events_count": 1,
            "start_at": now,
            "stop_at": now,
            "capacity": 0,
            "leakspeed": "0",
            "simulated": false,
            "events": [],
            "source": {"scope": "Ip", "value": "192.0.2.9"},
            "decisions": [{
                "origin": "authban",
                "type": "ban",
                "scope": "Ip",
                "value": "192.0.2.9",
                "duration": "10m",
                "scenario": "authban/test",
            }],
        }])
        .to_string();
        let bearer = format!("Bearer {token}");
        let headers = [
            ("Authorization", bearer.as_str()),
            ("Content-Type", "application/json"),
        ];
        let reply = http(
            lapi.port(),
            "POST",
            "/v1/alerts",
            &headers,
            Some(alert.as_bytes()),
        );
        assert_eq!(
            reply.status(),
            Some(201),
            "{}\n{}",
            reply.text(),
            lapi.log_tail()
        );
        let ids = Json::parse(&reply.text()).expect("JSON");
        assert_eq!(ids.as_arr().len(), 1, "{ids:?}");
        assert!(ids.as_arr()[0].as_str().parse::<u64>().is_ok(), "{ids:?}");

        // A bad token.
        let reply = http(
            lapi.port(),
            "POST",
            "/v1/alerts",
            &[("Authorization", "Bearer nope")],
            Some(alert.as_bytes()),
        );
        assert_eq!(reply.status(), Some(401), "{}", reply.text());

        // cscli shows it (with -a: 1.4.6 hides other origins than crowdsec
        // and cscli by default).
        let decisions = lapi.decisions_json();
        let ours: Vec<&Json> = decisions
            .as_arr()
            .iter()
            .filter(|a| a.str("scenario") == "authban/test")
            .collect();
        assert_eq!(ours.len(), 1, "{decisions:?}");
        let a = ours[0];
        assert_eq!(a.str("machine_id"), "authban");
        let ds = a.arr("decisions");
        assert_eq!(ds.len(), 1, "{a:?}");
        let d = &ds[0];
        assert_eq!(d.str("value"), "192.0.2.9");
        assert_eq!((d.str("type"), d.str("scope")), ("ban", "Ip"));
        assert_eq!(
            (d.str("origin"), d.str("scenario")),
            ("authban", "authban/test")
        );
        let left = go_duration_secs(d.str("duration")).expect("Go duration");
        assert!((540.0..=600.0).contains(&left), "{d:?}");
        let alerts = lapi.alerts_json();
        assert_eq!(
            alerts
                .as_arr()
                .iter()
                .filter(|a| a.str("scenario") == "authban/test")
                .count(),
            1,
            "{alerts:?}"
        );
        let default = lapi.cscli(&["decisions", "list", "-o", "json"]);
        assert!(
            !default.contains("authban/test"),
            "cscli decisions list without -a now shows origin authban: \
             update the doc of tests/common/crowdsec.rs\n{default}"
        );

        // And every bouncer's stream hands it out, origin authban.
        let key = lapi.bouncer_key("other-bouncer");
        let (status, first) = stream(&lapi, &key, true);
        assert_eq!(status, 200);
        let d = with_value(list(&first, "new"), "192.0.2.9");
        assert_eq!(d.len(), 1, "{first:?}");
        assert_eq!(d[0].str("origin"), "authban");
        assert_eq!(d[0].str("scenario"), "authban/test");
    });
}

#[test]
fn go_durations_as_lapi_writes_them() {
    assert_eq!(go_duration_secs("1h"), Some(3600.0));
    assert_eq!(go_duration_secs("0s"), Some(0.0));
    assert_eq!(go_duration_secs("1h59m59.5s"), Some(7199.5));
    let ms = go_duration_secs("-10.043396ms").expect("negative");
    assert!((ms + 0.010_043_396).abs() < 1e-12, "{ms}");
    assert_eq!(go_duration_secs("10"), None);
    assert_eq!(go_duration_secs(""), None);
    assert_eq!(go_duration_secs("5d"), None);
    let now = rfc3339_now();
    assert_eq!(now.len(), 20, "{now}");
    assert!(now.starts_with("20") && now.ends_with('Z'), "{now}");
}
