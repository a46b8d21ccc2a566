//! CloudStack's request parameters, read from a query string or an
//! `application/x-www-form-urlencoded` body the way its servlet container
//! reads them: pairs split at `&`, name and value URL-decoded (`+` a space,
//! `%XX` a byte, a malformed escape kept as it is, then invalid UTF-8
//! replaced by U+FFFD, as Java's decoder does), names matched exactly
//! (case-sensitive, like CloudStack's parameter map and the mock), the
//! first pair of a name winning: the query's before the body's.

use std::borrow::Cow;

#[cfg(test)]
mod tests;

/// The value of the first parameter called `name`, decoded: from `query`,
/// else from `body`. `None` if neither has it.
pub fn lookup<'a>(query: &'a [u8], body: Option<&'a [u8]>, name: &[u8]) -> Option<Cow<'a, [u8]>> {
    find(query, name)
        .or_else(|| body.and_then(|body| find(body, name)))
        .map(decode)
}

/// The raw (still encoded) value of the first pair in `text` whose decoded
/// name is `name`; a pair without `=` has an empty value.
pub fn find<'a>(text: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    text.split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(eq) => (&pair[..eq], &pair[eq + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            decodes_to(key, name).then_some(value)
        })
}

/// Whether `raw` decodes to `want`, without allocating: names are short
/// and compared for every pair.
fn decodes_to(raw: &[u8], want: &[u8]) -> bool {
    // Encoded, a name is at most three times as long; decoded, at most as long.
    if raw.len() < want.len() || raw.len() > want.len().saturating_mul(3) {
        return false;
    }
    let mut decoded = Bytes { raw };
    want.iter().all(|&w| decoded.next() == Some(w)) && decoded.next().is_none()
}

/// `raw` URL-decoded, then made valid UTF-8; borrowed when nothing changes.
pub fn decode(raw: &[u8]) -> Cow<'_, [u8]> {
    if !raw.iter().any(|&b| b == b'+' || b == b'%') && core::str::from_utf8(raw).is_ok() {
        return Cow::Borrowed(raw);
    }
    let bytes: Vec<u8> = Bytes { raw }.collect();
    match String::from_utf8_lossy(&bytes) {
        Cow::Borrowed(_) => Cow::Owned(bytes),
        Cow::Owned(text) => Cow::Owned(text.into_bytes()),
    }
}

/// The decoded bytes of `raw`, one at a time.
struct Bytes<'a> {
    raw: &'a [u8],
}

impl Iterator for Bytes<'_> {
    type Item = u8;

    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.raw.split_first()?;
        let (byte, rest) = match (first, rest) {
            (b'+', _) => (b' ', rest),
            (b'%', [h, l, tail @ ..]) => match (hex_digit(*h), hex_digit(*l)) {
                (Some(h), Some(l)) => (h << 4 | l, tail),
                _ => (b'%', rest),
            },
            (b, _) => (b, rest),
        };
        self.raw = rest;
        Some(byte)
    }
}

/// A hex digit's value, either case.
pub fn hex_digit(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Whether a Content-Type header says `application/x-www-form-urlencoded`
/// (any case, any parameters such as `; charset=UTF-8`).
pub fn is_form(content_type: &[u8]) -> bool {
    let media = content_type
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    media.eq_ignore_ascii_case(b"application/x-www-form-urlencoded")
}
