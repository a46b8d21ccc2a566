//! The directive value parsers (`authban_zone` and the other directives'
//! arguments). Never panic; what they accept is in range and agrees with a
//! plain re-reading of the text.
#![no_main]

use arbitrary::Arbitrary;
use authban::engine::directive::{self, MAX_RETRY, MIN_ZONE_SIZE};
use libfuzzer_sys::fuzz_target;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    zone_args: Vec<&'a str>,
    text: &'a str,
    range: (u16, u16),
}

fuzz_target!(|input: Input| {
    zone(&input.zone_args);
    let text = input.text;

    if let Some(size) = parse::parse_size(text) {
        let (digits, unit) = match text.as_bytes()[text.len() - 1] {
            b'k' | b'K' => (&text[..text.len() - 1], 1u128 << 10),
            b'm' | b'M' => (&text[..text.len() - 1], 1 << 20),
            b'g' | b'G' => (&text[..text.len() - 1], 1 << 30),
            _ => (text, 1),
        };
        assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        assert_eq!(digits.parse::<u128>().unwrap() * unit, size as u128);
    }

    if let Some(secs) = parse::parse_time(text) {
        assert_eq!(Some(secs), reference_time(text), "{text:?}");
        assert_eq!(parse::parse_time(&secs.to_string()), Some(secs));
    }

    let (lo, hi) = input.range;
    if let Ok(status) = parse::parse_status(text, lo..=hi) {
        assert!((lo..=hi).contains(&status));
        assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
    }

    if let Ok(net) = parse::parse_network(text) {
        assert_eq!(net, net.trunc());
        assert_eq!(parse::parse_network(&net.to_string()), Ok(net));
    }

    if let Ok(level) = parse::parse_log_level(text) {
        assert!((4..=7).contains(&level));
    }
});

fn zone(args: &[&str]) {
    let Ok(spec) = parse::parse_zone(args) else {
        return;
    };
    assert!(!spec.name.is_empty() && !spec.name.contains(':'));
    assert!(spec.size >= MIN_ZONE_SIZE);
    assert!(spec.state_interval > 0);
    assert!(spec.state.as_ref().is_none_or(|s| !s.is_empty()));
    let p = spec.policy;
    assert!((1..=MAX_RETRY).contains(&p.maxretry));
    assert!(p.findtime > 0 && p.bantime > 0 && p.maxtime > 0 && p.history > 0);
    assert!(p.maxtime >= p.bantime);
    assert!(p.factor.is_finite() && (1.0..=1000.0).contains(&p.factor));
    assert!((1..=32).contains(&p.ipv4_prefix) && (1..=128).contains(&p.ipv6_prefix));
    assert!(p.widen == 0 || (2..=255).contains(&p.widen));
    // Escalation stays between bantime and maxtime, whatever the history.
    for earlier in 0..=u8::MAX {
        let secs = p.ban_secs(earlier);
        assert!(secs >= p.bantime && secs <= p.maxtime, "{p:?} {earlier}");
    }
    // Each argument is read on its own: the same arguments reordered give
    // the same zone.
    let reversed: Vec<&str> = args.iter().rev().copied().collect();
    assert_eq!(parse::parse_zone(&reversed), Ok(spec));
}

/// nginx time syntax read the long way: NUMBER UNIT pairs with units
/// strictly decreasing, a bare trailing number meaning seconds (only after
/// a unit larger than seconds), no "ms".
fn reference_time(text: &str) -> Option<u32> {
    const UNITS: [(char, u64); 7] = [
        ('y', 31_536_000),
        ('M', 2_592_000),
        ('w', 604_800),
        ('d', 86_400),
        ('h', 3_600),
        ('m', 60),
        ('s', 1),
    ];
    if text.contains("ms") {
        return None;
    }
    let mut rest = text;
    let mut total: u128 = 0;
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (number, tail) = rest.split_at(digits);
        if number.is_empty() {
            return None;
        }
        let n: u128 = number.parse().ok()?;
        let Some(unit) = tail.chars().next() else {
            // A bare number: seconds, unless seconds were given already.
            if next_unit == UNITS.len() {
                return None;
            }
            total += n;
            break;
        };
        let at = UNITS[next_unit..].iter().position(|&(u, _)| u == unit)?;
        total += n * u128::from(UNITS[next_unit + at].1);
        next_unit += at + 1;
        rest = &tail[1..];
    }
    u32::try_from(total).ok()
}
