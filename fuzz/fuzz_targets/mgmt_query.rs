//! The management endpoint's query parser and router, on raw query bytes
//! (the first byte picks the method). Never panics; what it accepts is in
//! range; what it renders from accepted input is well-formed.
#![no_main]

use authban::engine::key::Key;
use authban::engine::api::{self, Action, Format, Method, MAX_LIMIT};
use authban::engine::table::{AddressState, Ban, Policy, Stats};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&m, raw)) = data.split_first() else {
        return;
    };
    let method = [Method::Get, Method::Post, Method::Delete][usize::from(m % 3)];
    let query = match mgmt::parse_query(raw) {
        Ok(q) => q,
        Err(e) => {
            assert_eq!(e.status, 400);
            assert_clean_json(&mgmt::error_json(&e));
            return;
        }
    };
    if let Some(zone) = &query.zone {
        assert!(!zone.is_empty());
    }
    if let Some(limit) = query.limit {
        assert!((1..=MAX_LIMIT).contains(&limit));
    }
    if let Some(time) = query.time {
        assert!(time > 0);
    }
    if let Some(addr) = query.addr {
        // What the endpoint prints of an address parses back to it.
        assert_eq!(Key::parse(&addr.to_string()), Some(addr), "{addr}");
    }
    let action = match mgmt::route(method, query) {
        Ok(a) => a,
        Err(e) => {
            assert!(e.status == 400 || e.status == 404);
            assert_clean_json(&mgmt::error_json(&e));
            return;
        }
    };
    let secs = u32::from_le_bytes(*data.first_chunk().unwrap_or(&[0; 4]));
    match action {
        Action::ListZones(Format::Json | Format::Prometheus) => {}
        Action::ShowZone {
            zone,
            offset,
            limit,
        } => {
            assert_eq!(method, Method::Get);
            assert!((1..=MAX_LIMIT).contains(&limit));
            let view = zone_view(zone);
            let ban = ban(Key::parse("192.0.2.1").unwrap(), secs);
            let page = mgmt::zone_json(&view, &vec![ban; limit.min(3)], offset, limit);
            assert_clean_json(&page);
            assert_clean_json(&mgmt::zones_json(&[view]));
        }
        Action::ZoneMetrics(zone) => {
            assert_eq!(method, Method::Get);
            let text = mgmt::prometheus(&[zone_view(zone)]);
            for line in text.lines() {
                // One sample or comment per line: the zone label cannot
                // break out of its quotes or its line.
                assert!(
                    line.starts_with("# ") || line.ends_with(|c: char| c.is_ascii_digit()),
                    "{line:?}"
                );
            }
        }
        Action::ShowAddress { zone, addr } => {
            assert_eq!(method, Method::Get);
            let state = AddressState {
                failures: 3,
                ban: Some(ban(addr, secs)),
            };
            assert_clean_json(&mgmt::address_json(&zone, &addr, &state));
        }
        Action::Ban { zone, addr, time } => {
            assert_eq!(method, Method::Post);
            assert!(time.is_none_or(|t| t > 0));
            assert_clean_json(&mgmt::ban_json(&zone, &ban(addr, secs)));
        }
        Action::Unban { zone, addr } => {
            assert_eq!(method, Method::Delete);
            let state = AddressState {
                failures: 0,
                ban: None,
            };
            assert_clean_json(&mgmt::unban_json(&zone, &addr, &state));
        }
    }
    assert_eq!(mgmt::iso8601(secs).len(), 20);
});

fn zone_view(name: String) -> mgmt::ZoneView {
    mgmt::ZoneView {
        name,
        size: 1 << 20,
        policy: Policy::default(),
        capacity: 20_000,
        tracked: 7,
        bans: 5,
        stats: Stats::default(),
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

/// One JSON document on one line: balanced outside strings, no raw control
/// character inside them, and a final newline.
fn assert_clean_json(text: &str) {
    let body = text.strip_suffix('\n').expect("ends with a newline");
    let (mut depth, mut in_str, mut escaped) = (0i32, false, false);
    for c in body.chars() {
        assert!(c >= ' ', "raw control character in {body:?}");
        if in_str {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => depth -= 1,
            _ => {}
        }
        assert!(depth >= 0, "unbalanced: {body:?}");
    }
    assert!(!in_str && depth == 0, "unbalanced: {body:?}");
}
