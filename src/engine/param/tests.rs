use std::borrow::Cow;

use proptest::prelude::*;

use super::{decode, find, is_form, lookup};

fn value(query: &str, body: Option<&str>, name: &str) -> Option<String> {
    lookup(query.as_bytes(), body.map(str::as_bytes), name.as_bytes())
        .map(|v| String::from_utf8(v.into_owned()).expect("valid UTF-8"))
}

#[test]
fn finds_the_first_pair_of_a_name() {
    let q = "command=login&username=alice&username=bob";
    assert_eq!(value(q, None, "username").as_deref(), Some("alice"));
    assert_eq!(value(q, None, "command").as_deref(), Some("login"));
    assert_eq!(value(q, None, "password"), None);
}

#[test]
fn query_before_body() {
    let body = Some("username=bob&domain=%2F");
    assert_eq!(
        value("username=alice", body, "username").as_deref(),
        Some("alice")
    );
    assert_eq!(
        value("command=login", body, "username").as_deref(),
        Some("bob")
    );
    assert_eq!(value("command=login", body, "domain").as_deref(), Some("/"));
    assert_eq!(value("", None, "username"), None);
}

#[test]
fn names_match_exactly_after_decoding() {
    assert_eq!(
        value("Username=x&username=y", None, "username").as_deref(),
        Some("y")
    );
    assert_eq!(
        value("user%6Eame=x", None, "username").as_deref(),
        Some("x")
    );
    assert_eq!(
        value("user+name=x", None, "user name").as_deref(),
        Some("x")
    );
    assert_eq!(value("usernamex=1&xusername=2", None, "username"), None);
}

#[test]
fn pairs_without_value_or_name() {
    assert_eq!(
        value("a&username&b=1", None, "username").as_deref(),
        Some("")
    );
    assert_eq!(
        value("&&=x&username==y=", None, "username").as_deref(),
        Some("=y=")
    );
    assert_eq!(value("=x", None, ""), Some("x".into()));
    assert_eq!(find(b"a=1&&b=2", b"b"), Some(&b"2"[..]));
}

#[test]
fn decodes_as_cloudstack_does() {
    let d = |s: &str| String::from_utf8(decode(s.as_bytes()).into_owned()).unwrap();
    assert_eq!(d("a+b%20c%2b"), "a b c+");
    assert_eq!(d("100%"), "100%");
    assert_eq!(d("%zz%4"), "%zz%4");
    assert_eq!(d("%%41"), "%A");
    assert_eq!(d("%C3%A9l%C3%A8ve"), "élève");
    assert_eq!(d("%ff"), "\u{fffd}");
    assert_eq!(d("caf\u{e9}"), "caf\u{e9}");
    assert!(matches!(decode(b"plain.name-1"), Cow::Borrowed(_)));
    assert_eq!(&*decode(b"\xff"), "\u{fffd}".as_bytes());
}

#[test]
fn form_content_types() {
    assert!(is_form(b"application/x-www-form-urlencoded"));
    assert!(is_form(b"Application/X-WWW-Form-URLencoded; charset=UTF-8"));
    assert!(is_form(b"  application/x-www-form-urlencoded ;"));
    assert!(!is_form(b"application/json"));
    assert!(!is_form(b"multipart/form-data; boundary=x"));
    assert!(!is_form(b"application/x-www-form-urlencodedx"));
    assert!(!is_form(b""));
}

/// Percent-encodes every byte but unreserved ones, spaces as `+`: what a
/// client (Java's URLEncoder, Python's urlencode) sends.
fn encode(value: &[u8]) -> String {
    value
        .iter()
        .map(|&b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'.' | b'-' | b'*' | b'_' => {
                char::from(b).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

proptest! {
    #[test]
    fn decoding_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..64),
                             name in proptest::collection::vec(any::<u8>(), 0..8)) {
        let decoded = decode(&raw);
        prop_assert!(core::str::from_utf8(&decoded).is_ok());
        let _ = lookup(&raw, Some(&raw), &name);
    }

    #[test]
    fn encode_then_decode_round_trips(text in ".{0,24}", name in "[a-zA-Z_]{1,12}") {
        let encoded = encode(text.as_bytes());
        prop_assert_eq!(&*decode(encoded.as_bytes()), text.as_bytes());
        let form = format!("x=1&{}={}&{name}=second", encode(name.as_bytes()), encode(text.as_bytes()));
        let found = lookup(b"", Some(form.as_bytes()), name.as_bytes());
        let want = if name == "x" { "1" } else { text.as_str() };
        prop_assert_eq!(found.as_deref(), Some(want.as_bytes()));
    }
}
