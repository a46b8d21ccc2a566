//! The directive value parsers (`authban_zone` and the other directives'
//! arguments). Never panic; what they accept is in range and agrees with a
//! plain re-reading of the text by nginx's own rules (`ngx_parse_size`,
//! `ngx_parse_time` in nginx's src/core/ngx_parse.c), both ways: the parser
//! takes exactly what nginx takes (within 32 bits for times).
#![no_main]

use arbitrary::Arbitrary;
use authban::engine::directive::{
    self as parse, DirectiveError, Expected, MAX_RETRY, MIN_ZONE_PAGES,
};
use libfuzzer_sys::fuzz_target;

/// nginx's largest value (`NGX_MAX_SIZE_T_VALUE`, `NGX_MAX_INT_T_VALUE` on
/// a 64-bit platform).
const NGX_MAX: i128 = i64::MAX as i128;

#[derive(Arbitrary, Debug)]
struct Input<'a> {
    zone_args: Vec<&'a str>,
    /// Picks the page size: 4 KiB, 16 KiB, 64 KiB or 2 KiB.
    page: u8,
    text: &'a str,
    range: (u16, u16),
}

fuzz_target!(|input: Input| {
    let page_size = [4096, 16_384, 65_536, 2048][usize::from(input.page % 4)];
    zone(&input.zone_args, page_size);
    let text = input.text;

    let size = parse::parse_size(text);
    assert_eq!(size.map(|s| s as i128), reference_size(text), "{text:?}");

    let secs = parse::parse_time(text);
    let reference = reference_time(text).filter(|&t| t <= i128::from(u32::MAX));
    assert_eq!(secs.map(i128::from), reference, "{text:?}");
    if let Some(secs) = secs {
        assert_eq!(parse::parse_time(&secs.to_string()), Some(secs));
    }

    let (lo, hi) = input.range;
    match parse::parse_status(text, lo..=hi) {
        Ok(status) => {
            assert!((lo..=hi).contains(&status));
            assert!(text.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
        }
        Err(e) => {
            let expected = Expected::Range(lo.into(), hi.into());
            assert_eq!(
                e,
                DirectiveError::InvalidValue {
                    name: "status",
                    value: text.to_string(),
                    expected
                }
            );
            // An in-range number in plain digits is never refused.
            let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit());
            assert!(!(plain && text.parse::<u16>().is_ok_and(|s| (lo..=hi).contains(&s))));
        }
    }

    match parse::parse_network(text) {
        Ok(net) => {
            assert_eq!(net, net.trunc());
            assert_eq!(parse::parse_network(&net.to_string()), Ok(net));
            // Its table key prints as the same network.
            let key = parse::net_key(net);
            assert_eq!(key.prefix_len(), net.prefix_len(), "{net}");
            assert_eq!(key.ip(), net.addr(), "{net}");
        }
        Err(e) => assert_eq!(e, DirectiveError::InvalidNetwork(text.to_string())),
    }

    if let Ok(level) = parse::parse_log_level(text) {
        assert!((4..=7).contains(&level));
    }
});

fn zone(args: &[&str], page_size: usize) {
    let spec = match parse::parse_zone(args, page_size) {
        Ok(spec) => spec,
        Err(e) => {
            // Every refusal has its message (and the zone-name one shows
            // no raw control character).
            let message = e.to_string();
            assert!(!message.is_empty());
            if let DirectiveError::InvalidZoneName(_) = e {
                assert!(!message.chars().any(char::is_control), "{message:?}");
            }
            if let DirectiveError::ZoneTooSmall { size, min, .. } = e {
                assert!(size < min && min == MIN_ZONE_PAGES * page_size);
            }
            return;
        }
    };
    assert!(!spec.name.is_empty() && !spec.name.contains(':'));
    assert!(parse::is_zone_name(&spec.name), "{:?}", spec.name);
    assert!(spec.size >= MIN_ZONE_PAGES * page_size);
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
    assert_eq!(parse::parse_zone(&reversed, page_size), Ok(spec.clone()));
    // A zone is as large on a machine of smaller pages.
    if page_size > 2048 {
        assert_eq!(parse::parse_zone(args, 2048), Ok(spec));
    }
}

/// `ngx_parse_size`, with `g`/`G` too (as `ngx_parse_offset`): ASCII
/// digits (`ngx_atosz`: at least one, at most nginx's maximum), then an
/// optional unit; the number at most the maximum divided by the unit.
fn reference_size(text: &str) -> Option<i128> {
    let bytes = text.as_bytes();
    let (digits, scale): (&[u8], i128) = match bytes.last()? {
        b'k' | b'K' => (&bytes[..bytes.len() - 1], 1 << 10),
        b'm' | b'M' => (&bytes[..bytes.len() - 1], 1 << 20),
        b'g' | b'G' => (&bytes[..bytes.len() - 1], 1 << 30),
        _ => (bytes, 1),
    };
    if digits.is_empty() {
        return None;
    }
    let mut value: i128 = 0;
    for &d in digits {
        if !d.is_ascii_digit() {
            return None;
        }
        value = value * 10 + i128::from(d - b'0');
        if value > NGX_MAX {
            return None;
        }
    }
    (value <= NGX_MAX / scale).then_some(value * scale)
}

/// `ngx_parse_time(line, is_sec = 1)`, step by step: digits accumulate a
/// value (never past nginx's maximum); each unit must come after the
/// previous one (`y` only first), takes the value times its scale (at most
/// the maximum) into the total, and may be followed by spaces; `ms` is an
/// error in seconds; a space ends a bare number as seconds, and then only
/// a number may follow; the number left at the end counts seconds. At
/// least one digit somewhere.
fn reference_time(text: &str) -> Option<i128> {
    #[derive(Clone, Copy, PartialEq, PartialOrd)]
    enum Step {
        Start,
        Year,
        Month,
        Week,
        Day,
        Hour,
        Min,
        Sec,
        #[allow(dead_code)]
        Msec,
        Last,
    }
    let p = text.as_bytes();
    let mut i = 0;
    let (mut valid, mut value, mut total) = (false, 0i128, 0i128);
    let mut step = Step::Start;
    while i < p.len() {
        let c = p[i];
        i += 1;
        if c.is_ascii_digit() {
            value = value * 10 + i128::from(c - b'0');
            if value > NGX_MAX {
                return None;
            }
            valid = true;
            continue;
        }
        let (next, scale): (Step, i128) = match c {
            b'y' if step == Step::Start => (Step::Year, 365 * 86_400),
            b'M' if step < Step::Month => (Step::Month, 30 * 86_400),
            b'w' if step < Step::Week => (Step::Week, 7 * 86_400),
            b'd' if step < Step::Day => (Step::Day, 86_400),
            b'h' if step < Step::Hour => (Step::Hour, 3_600),
            b'm' if p.get(i) == Some(&b's') => return None,
            b'm' if step < Step::Min => (Step::Min, 60),
            b's' if step < Step::Sec => (Step::Sec, 1),
            b' ' if step < Step::Sec => (Step::Last, 1),
            _ => return None,
        };
        step = next;
        if value > NGX_MAX / scale {
            return None;
        }
        total += value * scale;
        if total > NGX_MAX {
            return None;
        }
        value = 0;
        while p.get(i) == Some(&b' ') {
            i += 1;
        }
    }
    if !valid || total + value > NGX_MAX {
        return None;
    }
    Some(total + value)
}
