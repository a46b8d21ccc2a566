//! What the fuzz targets (`fuzz/`) found, replayed as unit tests so that
//! `cargo test` keeps each fix. The crashing inputs themselves are in
//! `fuzz/regressions/<target>/`, which every `make fuzz` run replays too.

use std::net::IpAddr;

use crate::engine::directive::{parse_time, parse_zone};
use crate::engine::key::Key;
use crate::engine::state_file;
use crate::engine::table::{Events, Now, Policy, Table, Verdict};

/// 4 KiB pages, as on the machines the crashes were found on.
const PAGE: usize = 4096;

/// directives: a bare number past u64 in a time overflowed the addition
/// (a panic with overflow checks, a wrapped value without: "bantime=
/// 18446744073709551617" was 1 second).
#[test]
fn time_digits_past_u64_are_refused() {
    let input = include_bytes!("../fuzz/regressions/directives/time-digits-overflow");
    let text = std::str::from_utf8(&input[..input.len() - 4]).unwrap();
    assert!(text.ends_with("18446744073709551616"));
    assert_eq!(parse_time(text), None);
    assert_eq!(parse_time("18446744073709551616"), None);
    assert_eq!(parse_time("18446744073709551617"), None);
    assert_eq!(parse_time("1h18446744073709551617"), None);
    assert_eq!(parse_time("4294967295"), Some(u32::MAX));
}

/// state_file: a zone name with a newline (possible in a quoted nginx
/// argument) made a state file that never reads back, so the zone lost its
/// bans at every restart. Such names are now refused by the configuration,
/// as is every name beyond letters, digits, `_`, `-` and `.`.
#[test]
fn zone_names_with_control_characters_are_refused() {
    let input = include_bytes!("../fuzz/regressions/state_file/zone-name-with-newline");
    let (n, rest) = input.split_first().unwrap();
    let zone = std::str::from_utf8(&rest[..usize::from(*n)]).unwrap();
    assert_eq!(zone, "\ns");
    let arg = format!("zone={zone}:1m");
    let err = parse_zone(&[&arg], PAGE).unwrap_err().to_string();
    assert!(err.contains("invalid zone name \"\\ns\""), "{err}");
    for bad in [
        "a\rb",
        "tab\t",
        "nul\0",
        "del\u{7f}",
        "my zone",
        "zöne",
        "a\"b",
    ] {
        assert!(
            parse_zone(&[&format!("zone={bad}:1m")], PAGE).is_err(),
            "{bad:?}"
        );
    }
    // The names still allowed round-trip.
    for good in ["my_zone", "zone-2.v4", "Z"] {
        let spec = parse_zone(&[&format!("zone={good}:1m")], PAGE).unwrap();
        let text = state_file::render(&spec.name, None, &[]);
        assert_eq!(
            state_file::parse(&spec.name, &text).map(|s| s.records),
            Ok(vec![])
        );
    }
}

/// table_ops: an address whose own ban had ended, but was not reaped yet
/// (the lazy expiry reaps two per call), was let through although a wider
/// network ban covering it was in force: `check` ended the stale own ban
/// and answered Clear without looking at the networks.
#[test]
fn an_ended_own_ban_does_not_hide_a_network_ban() {
    let _ = include_bytes!("../fuzz/regressions/table_ops/expired-own-ban-hides-network-ban");
    let mut buf = vec![0u64; 64 * 1024 / 8];
    // SAFETY: a Vec<u64> is initialised and 8-byte aligned.
    let region =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
    let policy = Policy {
        maxretry: 1,
        ..Policy::default()
    };
    let mut t = Table::format(region, &policy, [1, 2]).unwrap();
    let mut ev = Events::default();
    let at = |s: u64| Now::from_ms(s * 1000);
    let host = |s: &str| Key::from_ip(s.parse::<IpAddr>().unwrap());
    // Five short bans; the one checked below ends last of them.
    let stale = ["10.0.0.1", "10.0.0.2", "10.0.1.1", "10.0.1.2", "10.0.2.5"];
    for (n, addr) in stale.iter().enumerate() {
        t.ban(&host(addr), at(1000 + n as u64), 10, &mut ev);
    }
    // Long after they ended, the /8 is banned. Each call reaps at most two
    // ended bans: `ban` two, `check` two, and 10.0.2.5's stays behind.
    let net = Key::parse("10.0.0.0/8").unwrap();
    let mut ev = Events::default();
    let long = t.ban(&net, at(5000), 600, &mut ev);
    assert_eq!(
        t.check(&host("10.0.2.5"), at(5001), true, &mut ev),
        Verdict::Banned(long)
    );
    assert_eq!(t.stats().refused, 1);
}
