//! The management endpoint's query parser and router, on raw query bytes
//! (the first byte picks the method). Never panics; what it accepts is in
//! range; what it renders from accepted input is well-formed JSON (one
//! line, control characters escaped) that reads back to what was rendered.
#![no_main]

use std::net::IpAddr;

use authban::engine::account::{hash_text, KeyHasher};
use authban::engine::api::{
    self, Action, ApiError, Format, Method, Naming, Subject, Target, MAX_LIMIT, MAX_OFFSET,
};
use authban::engine::key::Key;
use authban::engine::table::{Ban, KeyStatus, Policy, Stats, MAX_BAN_SECS};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

fuzz_target!(|data: &[u8]| {
    let Some((&m, raw)) = data.split_first() else {
        return;
    };
    let method = [Method::Get, Method::Post, Method::Delete][usize::from(m % 3)];
    let query = match api::parse_query(raw) {
        Ok(q) => q,
        Err(e) => {
            assert_eq!(e.status(), 400, "{e:?}");
            check_error(&e);
            return;
        }
    };
    if let Some(zone) = &query.zone {
        assert!(!zone.is_empty());
    }
    if let Some(limit) = query.limit {
        assert!((1..=MAX_LIMIT).contains(&limit));
    }
    if let Some(offset) = query.offset {
        assert!(offset as u64 <= MAX_OFFSET);
    }
    if let Some(time) = query.time {
        assert!(time > 0 && time <= MAX_BAN_SECS, "{time}");
    }
    if let Some(key) = &query.key {
        assert!(!key.is_empty());
    }
    if let Some(hash) = query.hash {
        // What the endpoint lists of a key zone's key names it again.
        assert_eq!(api::parse_hash(&hash_text(&hash)), Some(hash));
    }
    if let Some(addr) = query.addr {
        // What the endpoint prints of an address names the same key again.
        let key = addr_key(addr);
        assert_eq!(Key::parse(&key.to_string()), Some(key), "{key}");
        match addr {
            Target::Addr(ip) => {
                // Mapped IPv6 is folded to IPv4, as client addresses are.
                assert!(!matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some()));
                assert_eq!(api::parse_addr(&ip.to_string()), Ok(addr), "{ip}");
            }
            Target::Net(net) => {
                let again = api::parse_addr(&net.to_string()).expect("a key reads back");
                assert_eq!(addr_key(again), net, "{net}");
            }
        }
    }
    let action = match api::route(method, query) {
        Ok(a) => a,
        Err(e) => {
            assert_eq!(e.status(), 400, "{e:?}");
            check_error(&e);
            return;
        }
    };
    let secs = u32::from_le_bytes(*data.first_chunk().unwrap_or(&[0; 4]));
    match action {
        Action::ListZones(Format::Json | Format::Prometheus) => {
            assert_eq!(method, Method::Get);
            let view = zone_view("cs".to_string());
            let v = json(&api::zones_json(&[view.clone(), view]));
            assert_eq!(v["zones"].as_array().map(Vec::len), Some(2));
        }
        Action::ShowZone {
            zone,
            offset,
            limit,
        } => {
            assert_eq!(method, Method::Get);
            assert!((1..=MAX_LIMIT).contains(&limit));
            let view = zone_view(zone.clone());
            let ban = ban(Key::parse("192.0.2.1").unwrap(), secs);
            let shown = limit
                .min(3)
                .min((view.bans as usize).saturating_sub(offset));
            let v = json(&api::zone_json(&view, &vec![ban; shown], offset, limit));
            assert_eq!(v["name"], zone.as_str());
            assert_eq!(
                (v["offset"].as_u64(), v["limit"].as_u64()),
                (Some(offset as u64), Some(limit as u64))
            );
            assert_eq!(v["ban_list"].as_array().map(Vec::len), Some(shown));
            // `next_offset` only when the page is full and bans follow.
            let next = v.get("next_offset").map(|n| n.as_u64().unwrap() as usize);
            let more = shown == limit && offset + shown < view.bans as usize;
            assert_eq!(next, more.then_some(offset + shown), "{v}");
            let v = json(&api::zones_json(&[view]));
            assert_eq!(v["zones"][0]["name"], zone.as_str());
        }
        Action::ZoneMetrics(zone) => {
            assert_eq!(method, Method::Get);
            let text = api::prometheus(&[zone_view(zone)]);
            let mut samples = 0;
            for line in text.split('\n').filter(|l| !l.is_empty()) {
                // One sample or comment per line: the zone label cannot
                // break out of its quotes or its line.
                if line.starts_with("# ") {
                    continue;
                }
                samples += 1;
                let label = line
                    .split_once("{zone=\"")
                    .and_then(|(_, rest)| rest.rsplit_once("\"} "))
                    .map(|(label, value)| {
                        assert!(value.bytes().all(|b| b.is_ascii_digit()), "{line:?}");
                        label
                    })
                    .unwrap_or_else(|| panic!("{line:?}"));
                // Inside the quotes, only escaped quotes and backslashes.
                let mut escaped = false;
                for c in label.chars() {
                    match (escaped, c) {
                        (true, '\\' | '"' | 'n') => escaped = false,
                        (true, _) => panic!("bad escape in {line:?}"),
                        (false, '\\') => escaped = true,
                        (false, '"' | '\n') => panic!("unescaped in {line:?}"),
                        _ => {}
                    }
                }
                assert!(!escaped, "{line:?}");
            }
            assert_eq!(samples, 10);
        }
        Action::ShowAddress { zone, subject } => {
            assert_eq!(method, Method::Get);
            let (key, naming) = key_of(&subject);
            let state = KeyStatus {
                failures: 3,
                ban: Some(ban(key, secs)),
            };
            let wider = ban(Key::parse("0.0.0.0/0").unwrap(), secs);
            let by = (m & 4 != 0).then_some(&wider);
            let v = json(&api::address_json(&zone, naming, &key, &state, by));
            assert_eq!(v["zone"], zone.as_str());
            assert_eq!(v[name(naming)], shown(naming, &key).as_str());
            assert_eq!(v["banned"], true);
            assert_eq!(
                v["until"].as_u64(),
                Some(u64::from(secs.saturating_add(600)))
            );
            assert_eq!(
                v.get("banned_by").is_some(),
                by.is_some_and(|b| b.key != key)
            );
        }
        Action::Ban {
            zone,
            subject,
            time,
        } => {
            assert_eq!(method, Method::Post);
            assert!(time.is_none_or(|t| t > 0));
            assert!(!matches!(subject, Subject::Hash(_)));
            let (key, naming) = key_of(&subject);
            let v = json(&api::ban_json(&zone, naming, &ban(key, secs)));
            assert_eq!(v["zone"], zone.as_str());
            assert_eq!(v[name(naming)], shown(naming, &key).as_str());
            assert_eq!(v["since"].as_u64(), Some(u64::from(secs)));
            assert_eq!(v["since_iso"], api::iso8601(secs).as_str());
        }
        Action::Unban { zone, subject } => {
            assert_eq!(method, Method::Delete);
            let (key, naming) = key_of(&subject);
            let state = KeyStatus {
                failures: 0,
                ban: None,
            };
            let v = json(&api::unban_json(&zone, naming, &key, &state));
            assert_eq!(v["zone"], zone.as_str());
            assert_eq!(v[name(naming)], shown(naming, &key).as_str());
            assert_eq!(v["was_banned"], false);
        }
    }
    let iso = api::iso8601(secs);
    assert_eq!(iso.len(), 20, "{iso}");
    assert!(
        iso.as_bytes().iter().enumerate().all(|(i, &b)| match i {
            4 | 7 => b == b'-',
            10 => b == b'T',
            13 | 16 => b == b':',
            19 => b == b'Z',
            _ => b.is_ascii_digit(),
        }),
        "{iso}"
    );
});

/// The key a subject names, in an address zone of the default policy or a
/// key zone, and how that zone's answers name it.
fn key_of(subject: &Subject) -> (Key, Naming) {
    match subject {
        Subject::Addr(target) => (addr_key(*target), Naming::Addr),
        Subject::Key(value) => (
            KeyHasher::from_words([1, 2], "keys").key_of(value),
            Naming::KeyHash,
        ),
        Subject::Hash(key) => (*key, Naming::KeyHash),
    }
}

/// The field an answer names a key in.
fn name(naming: Naming) -> &'static str {
    match naming {
        Naming::Addr => "addr",
        Naming::KeyHash => "key_hash",
    }
}

/// A key as that field gives it.
fn shown(naming: Naming, key: &Key) -> String {
    match naming {
        Naming::Addr => key.to_string(),
        Naming::KeyHash => hash_text(key),
    }
}

/// The key an `addr` names in a zone of the default policy.
fn addr_key(target: Target) -> Key {
    match target {
        Target::Addr(ip) => Policy::default().key_of(ip),
        Target::Net(key) => key,
    }
}

fn check_error(e: &ApiError) {
    let v = json(&api::error_json(e));
    assert_eq!(v["error"], e.reason().as_str());
    assert_eq!(v["status"].as_u64(), Some(u64::from(e.status())));
}

fn zone_view(name: String) -> api::ZoneView {
    api::ZoneView {
        name,
        keyed: false,
        size: 1 << 20,
        policy: Policy::default(),
        capacity: 20_000,
        tracked: 7,
        bans: 5,
        stats: Stats::default(),
        sync: None,
        crowdsec: None,
    }
}

fn ban(key: Key, since: u32) -> Ban {
    Ban {
        key,
        since,
        until: since.saturating_add(600),
        failures: 5,
        offence: 1,
    }
}

/// One JSON document on one line (no raw control character, a final
/// newline), read back.
fn json(text: &str) -> Value {
    let body = text.strip_suffix('\n').expect("ends with a newline");
    assert!(
        !body.chars().any(|c| c < ' '),
        "raw control character in {body:?}"
    );
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {body:?}"))
}
