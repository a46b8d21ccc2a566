//! Go's duration text (`time.Duration.String()`), as LAPI writes a
//! decision's time left: `3h59m58.123456789s`, `-5m0.1s` for one already
//! over, `0s`.

/// A duration read to whole milliseconds, or why not: the sign is kept, so
/// a decision whose time is up is told from a malformed one.
pub fn parse_go_duration(text: &str) -> Option<i64> {
    let (negative, mut rest) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    if rest == "0" {
        return Some(0);
    }
    if rest.is_empty() {
        return None;
    }
    // Nanoseconds, in i128: Go's own limit is about 292 years, so no valid
    // text overflows it, and an invalid one is refused below.
    let mut total: i128 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let whole: i128 = if digits == 0 {
            0
        } else {
            rest[..digits].parse().ok()?
        };
        rest = &rest[digits..];
        let (fraction, fraction_digits) = match rest.strip_prefix('.') {
            Some(after) => {
                let n = after.bytes().take_while(u8::is_ascii_digit).count();
                rest = &after[n..];
                // More digits than a nanosecond's share nothing.
                let kept = &after[..n.min(18)];
                (
                    if kept.is_empty() {
                        0
                    } else {
                        kept.parse::<i128>().ok()?
                    },
                    kept.len() as u32,
                )
            }
            None => (0, 0),
        };
        if digits == 0 && fraction_digits == 0 {
            return None;
        }
        let unit_len = rest
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(rest.len(), |(i, _)| i);
        let nanos: i128 = match &rest[..unit_len] {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return None,
        };
        rest = &rest[unit_len..];
        total = total.checked_add(whole.checked_mul(nanos)?)?;
        total = total.checked_add(fraction * nanos / 10i128.pow(fraction_digits))?;
        if total > i128::from(i64::MAX) {
            return None;
        }
    }
    let millis = i64::try_from(total / 1_000_000).ok()?;
    Some(if negative { -millis } else { millis })
}

#[cfg(test)]
mod tests {
    use super::parse_go_duration as p;

    #[test]
    fn reads_what_go_writes() {
        assert_eq!(p("0s"), Some(0));
        assert_eq!(p("0"), Some(0));
        assert_eq!(p("1h"), Some(3_600_000));
        assert_eq!(p("3h59m58.123456789s"), Some(14_398_123));
        assert_eq!(p("1m30s"), Some(90_000));
        assert_eq!(p("1.5h"), Some(5_400_000));
        assert_eq!(p("250ms"), Some(250));
        assert_eq!(p("1500us"), Some(1));
        assert_eq!(p("1500µs"), Some(1));
        assert_eq!(p("-5m0.1s"), Some(-300_100));
        assert_eq!(p("+2s"), Some(2_000));
        assert_eq!(p("167h59m59.999s"), Some(604_799_999));
    }

    #[test]
    fn refuses_what_go_would_not_write() {
        for bad in [
            "",
            "-",
            "h",
            "1",
            "1x",
            "1hh",
            "1h-2m",
            ".s",
            "1.h2",
            "s1",
            "1 h",
            "1e3s",
            "99999999999999999999h",
        ] {
            assert_eq!(p(bad), None, "{bad:?}");
        }
    }
}
