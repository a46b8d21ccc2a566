//! The management endpoint on key zones (`authban_zone ... key=EXPR`),
//! against the real nginx (2 workers) and the mock CloudStack: a key is
//! found, banned and unbanned by its value (`key=`, which the zone hashes)
//! or by its hash as listed (`hash=`); answers name it by `key_hash`, never
//! by its value; `addr=` on a key zone and `key=`/`hash=` on an address
//! zone are refused.
//!
//! `{port}` is the front (`/client/api` proxied to the mock, which answers
//! 401 to a call whose signature does not verify), with realip from
//! loopback to play clients; `{port2}` the management endpoint.

mod common;

use common::*;

const TEST_SECS: u64 = 90;

fn status(n: &Nginx, key: &str, client: &str) -> u16 {
    get_from(n.port(), &call(key), client).status().unwrap_or(0)
}

/// Calls with `key` from 6 addresses all answered `want` (403: refused by
/// the ban; 401: served, the mock refusing the signature). Enough calls on
/// enough connections that both workers answer some.
fn expect_calls(n: &Nginx, key: &str, want: u16) {
    for i in 1..=6 {
        let client = format!("203.0.113.{i}");
        assert_eq!(status(n, key, &client), want, "{key} from {client}");
    }
}

/// 32 lowercase hex digits, as the endpoint lists a key.
fn assert_hash(what: &str, hash: &str) {
    assert!(
        hash.len() == 32 && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')),
        "{what}: {hash:?}"
    );
}

/// A key zone's answer for one key: `key_hash` and no `addr`, nothing of
/// the value; its hash.
fn one_key(what: &str, v: &Json, text: &str, value: &str) -> String {
    assert!(v.opt("addr").is_none(), "{what}: {text}");
    assert!(!text.contains(value), "{what}: the value shown: {text}");
    let hash = v.str("key_hash").to_string();
    assert_hash(what, &hash);
    hash
}

/// `METHOD /authban{query}` (once): 200, parsed, with its text.
fn api_text(n: &Nginx, method: &str, query: &str) -> (Json, String) {
    let reply = api(n, method, query);
    let what = format!("{method} /authban{query}");
    (json_ok(&what, &reply), reply.text())
}

#[test]
fn a_key_is_banned_found_and_unbanned_by_its_value_and_by_its_hash() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let n = Nginx::options().workers(2).start(&keyed_conf(&mock, ""));

        // The zones say which is a key zone.
        let keys = api_ok(&n, "GET", "?zone=keys");
        assert!(keys.bool("key"), "{keys:?}");
        assert!(api_ok(&n, "GET", "?zone=addr").opt("key").is_none());
        let list = api_ok(&n, "GET", "");
        let flags: Vec<(&str, bool)> = list
            .arr("zones")
            .iter()
            .map(|z| (z.str("name"), z.opt("key").is_some_and(Json::as_bool)))
            .collect();
        assert_eq!(flags, [("addr", false), ("keys", true)]);

        // Served before: the mock refuses the signature.
        expect_calls(&n, "K-API", 401);

        // Ban by value (URL-decoded: %2D is '-').
        let (made, text) = api_text(&n, "POST", "?zone=keys&key=K%2DAPI&time=1h");
        assert!(made.bool("banned"), "{text}");
        let hash = one_key("POST key=", &made, &text, "K-API");
        assert_eq!(made.u64("until") - made.u64("since"), 3600, "{text}");
        expect_calls(&n, "K-API", 403);
        expect_calls(&n, "K-OTHER", 401);
        let logged = format!("ban zone=keys key=\"K-API\" hash={hash} failures=");
        let log = n.error_log();
        assert!(
            log.lines()
                .any(|l| l.contains(&logged) && l.contains(" by=api,")),
            "{}",
            n.log_tail()
        );

        // Found by value and by hash: the same key, banned.
        let (found, text) = api_text(&n, "GET", "?zone=keys&key=K-API");
        assert_eq!(one_key("GET key=", &found, &text, "K-API"), hash);
        assert!(found.bool("banned"), "{text}");
        assert_eq!(found.u64("until"), made.u64("until"), "{text}");
        let (by_hash, text) = api_text(&n, "GET", &format!("?zone=keys&hash={hash}"));
        assert_eq!(one_key("GET hash=", &by_hash, &text, "K-API"), hash);
        assert!(by_hash.bool("banned"), "{text}");
        let upper = hash.to_uppercase();
        assert!(api_ok(&n, "GET", &format!("?zone=keys&hash={upper}")).bool("banned"));

        // The listing: the hash, never the value.
        let (page, text) = api_text(&n, "GET", "?zone=keys");
        assert!(!text.contains("K-API"), "{text}");
        let bans = page.arr("ban_list");
        assert_eq!(bans.len(), 1, "{text}");
        assert_eq!(bans[0].keys()[0], "key_hash", "{text}");
        assert_eq!(bans[0].str("key_hash"), hash);

        // Unban by value: served again, and forgotten.
        let (gone, text) = api_text(&n, "DELETE", "?zone=keys&key=K-API");
        assert_eq!(one_key("DELETE key=", &gone, &text, "K-API"), hash);
        assert!(gone.bool("was_banned"), "{text}");
        let reason = api_err(&n, "GET", "?zone=keys&key=K-API", 404);
        assert_eq!(
            reason,
            format!("key_hash {hash} is not tracked in zone \"keys\"")
        );
        expect_calls(&n, "K-API", 401);
        assert!(
            n.error_log()
                .contains(&format!("unban zone=keys hash={hash} reason=api")),
            "{}",
            n.log_tail()
        );

        // A ban made by failures, whose value the operator does not know:
        // lifted by the hash the listing gives.
        for i in 0..KEY_MAXRETRY {
            let client = format!("198.51.100.{}", i + 1);
            assert_eq!(status(&n, "K-GUESSED", &client), 401, "{client}");
        }
        expect_calls(&n, "K-GUESSED", 403);
        let (page, text) = api_text(&n, "GET", "?zone=keys");
        assert!(!text.contains("K-GUESSED"), "{text}");
        let listed = page.arr("ban_list")[0].str("key_hash").to_string();
        assert_hash("listed", &listed);
        let (gone, text) = api_text(&n, "DELETE", &format!("?zone=keys&hash={listed}"));
        assert!(gone.bool("was_banned"), "{text}");
        assert_eq!(
            gone.u64("failures_forgotten"),
            KEY_MAXRETRY as u64,
            "{text}"
        );
        assert_eq!(gone.str("key_hash"), listed);
        expect_calls(&n, "K-GUESSED", 401);
        assert_eq!(api_ok(&n, "GET", "?zone=keys").u64("bans"), 0);

        // Nothing the endpoint answered or logged as an address names a key.
        assert_eq!(api_ok(&n, "GET", "?zone=addr").u64("bans"), 0);
        n.assert_clean();
    });
}

#[test]
fn the_wrong_way_to_name_a_key_is_refused_and_changes_nothing() {
    with_timeout(TEST_SECS, || {
        let mock = Mock::start();
        let n = Nginx::options().workers(2).start(&keyed_conf(&mock, ""));
        let hash = "8123456789abcdef0123456789abcdef";
        let in_keys = "zone \"keys\" is a key zone: name a key with key= or hash=, not addr=";
        let cases: &[(&str, String, u16, String)] = &[
            (
                "GET",
                "?zone=keys&addr=192.0.2.1".into(),
                400,
                in_keys.into(),
            ),
            (
                "POST",
                "?zone=keys&addr=192.0.2.1".into(),
                400,
                in_keys.into(),
            ),
            (
                "DELETE",
                "?zone=keys&addr=192.0.2.0/24".into(),
                400,
                in_keys.into(),
            ),
            (
                "POST",
                "?zone=addr&key=K-API".into(),
                400,
                "zone \"addr\" is an address zone: key= applies only to key zones".into(),
            ),
            (
                "GET",
                "?zone=addr&key=K-API".into(),
                400,
                "zone \"addr\" is an address zone: key= applies only to key zones".into(),
            ),
            (
                "DELETE",
                format!("?zone=addr&hash={hash}"),
                400,
                "zone \"addr\" is an address zone: hash= applies only to key zones".into(),
            ),
            (
                "POST",
                format!("?zone=keys&hash={hash}"),
                400,
                "hash applies only to GET and DELETE: ban a key by its value".into(),
            ),
            (
                "GET",
                "?zone=keys&key=K-API&addr=192.0.2.1".into(),
                400,
                "give only one of addr, key and hash".into(),
            ),
            ("POST", "?key=K-API".into(), 400, "key needs zone".into()),
            ("POST", "?zone=keys&key=".into(), 400, "empty key".into()),
            (
                "GET",
                "?zone=keys&hash=K-API".into(),
                400,
                "invalid hash: expected the 32 hex digits of a listed key_hash".into(),
            ),
            (
                "DELETE",
                format!("?zone=keys&hash={hash}"),
                404,
                format!("key_hash {hash} is not tracked in zone \"keys\""),
            ),
            (
                "POST",
                "?zone=nope&key=K-API".into(),
                404,
                "unknown zone \"nope\"".into(),
            ),
        ];
        for (method, query, status, want) in cases {
            let reason = api_err(&n, method, query, *status);
            assert_eq!(&reason, want, "{method} {query}");
        }
        // An unknown key's 404 names its hash, not its value.
        let reason = api_err(&n, "DELETE", "?zone=keys&key=K-SECRET", 404);
        assert!(!reason.contains("K-SECRET"), "{reason}");
        assert!(reason.starts_with("key_hash "), "{reason}");
        for zone in ["keys", "addr"] {
            let z = api_ok(&n, "GET", &format!("?zone={zone}"));
            assert_eq!((z.u64("bans"), z.u64("tracked")), (0, 0), "{z:?}");
        }
        expect_calls(&n, "K-API", 401);
        n.assert_clean();
    });
}
