use super::*;
use crate::engine::fleet::names::Message;

fn url(text: &str) -> SyncUrl {
    SyncUrl::parse(text).unwrap()
}

fn resp(parts: &[&str]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", parts.len()).into_bytes();
    for p in parts {
        out.extend_from_slice(format!("${}\r\n{p}\r\n", p.len()).as_bytes());
    }
    out
}

fn feed(s: &mut Session, bytes: &[u8]) -> Vec<Event> {
    let mut events = Vec::new();
    s.feed(bytes, &mut events).unwrap();
    events
}

fn ready_commands() -> Session {
    let mut s = Session::new(Role::Commands, "cs", 7, &url("redis://127.0.0.1"));
    assert_eq!(feed(&mut s, b"$3\r\nabc\r\n"), vec![Event::Ready]);
    s.sent(s.output().len());
    s
}

/// 192.0.2.1's ban from `since` to `until`, its first, after 5 failures.
fn ban_of_192_0_2_1(since: u32, until: u32) -> Ban {
    Ban {
        key: Key::parse("192.0.2.1").unwrap(),
        since,
        until,
        failures: 5,
        offence: 1,
    }
}

#[test]
fn handshake_authenticates_selects_and_loads_the_script() {
    let mut s = Session::new(Role::Commands, "cs", 7, &url("redis://:pw@h/3"));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.starts_with("*2\r\n$4\r\nAUTH\r\n$2\r\npw\r\n*2\r\n$6\r\nSELECT\r\n$1\r\n3\r\n"));
    assert!(out.contains("SCRIPT"));
    assert!(!s.is_ready());
    assert_eq!(feed(&mut s, b"+OK\r\n+OK\r\n"), vec![]);
    assert!(s.awaiting_reply());
    assert_eq!(feed(&mut s, b"$3\r\nabc\r\n"), vec![Event::Ready]);
    assert!(s.is_ready() && !s.awaiting_reply());
}

#[test]
fn a_wrong_password_is_a_refusal() {
    let mut s = Session::new(Role::Subscriber, "cs", 7, &url("redis://:bad@h"));
    let mut events = Vec::new();
    let err = s.feed(
        b"-WRONGPASS invalid username-password pair\r\n",
        &mut events,
    );
    assert!(err.is_err());
    assert_eq!(
        events,
        vec![Event::Refused(
            "WRONGPASS invalid username-password pair".into()
        )]
    );
}

#[test]
fn nothing_is_sent_before_the_handshake_is_done() {
    let mut s = Session::new(Role::Commands, "cs", 7, &url("redis://h"));
    let key = Key::parse("192.0.2.1").unwrap();
    assert!(!s.count_failure(&key, 600));
    assert!(!s.load_bans(10));
}

#[test]
fn a_failure_is_counted_in_the_fleet_window() {
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    assert!(s.count_failure(&key, 600));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("EVALSHA") && out.contains("authban:cs:fail:192.0.2.1"));
    assert!(out.contains("600000"));
    assert_eq!(
        feed(&mut s, b":4\r\n"),
        vec![Event::FleetCount { key, count: 4 }]
    );
}

#[test]
fn command_errors_are_reported_and_the_link_goes_on() {
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    s.count_failure(&key, 600);
    s.count_failure(&key, 600);
    assert_eq!(
        feed(&mut s, b"-NOSCRIPT No matching script\r\n:2\r\n"),
        vec![
            Event::CommandError("NOSCRIPT No matching script".into()),
            Event::FleetCount { key, count: 2 }
        ]
    );
    // Redis forgot the script: it is loaded again, quietly.
    assert!(String::from_utf8_lossy(s.output())
        .ends_with(&format!("${}\r\n{COUNT_SCRIPT}\r\n", COUNT_SCRIPT.len())));
    assert_eq!(feed(&mut s, b"$3\r\nnew\r\n"), vec![]);
    s.sent(s.output().len());
    s.count_failure(&key, 600);
    assert!(String::from_utf8_lossy(s.output()).contains("$3\r\nnew\r\n"));
}

#[test]
fn bans_are_stored_and_published() {
    let mut s = ready_commands();
    let ban = ban_of_192_0_2_1(100, 700);
    assert!(s.publish_ban(&ban, 50));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(
        out.contains("authban:cs:ban:192.0.2.1\r\n$11\r\n100 700 5 1\r\n$4\r\nEXAT\r\n$3\r\n750")
    );
    assert!(out.contains("ban 0000000000000007 192.0.2.1 100 700 5 1"));
    assert!(out.contains("ZADD\r\n$16\r\nauthban:cs:index\r\n$3\r\n750\r\n$9\r\n192.0.2.1"));
    assert_eq!(feed(&mut s, b"+OK\r\n:1\r\n:0\r\n:1\r\n:2\r\n"), vec![]);
    assert!(!s.awaiting_reply());
}

#[test]
fn the_first_claim_of_a_bans_alert_sends_it_and_an_unanswered_one_is_kept() {
    let mut s = ready_commands();
    let ban = ban_of_192_0_2_1(100, 700);
    assert!(s.claim_alert(&ban));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains(
        "$3\r\nSET\r\n$26\r\nauthban:cs:alert:192.0.2.1\r\n$1\r\n7\r\n$2\r\nEX\r\n$2\r\n60\r\n$2\r\nNX\r\n"
    ), "{out:?}");
    assert_eq!(s.unanswered_claims().collect::<Vec<_>>(), vec![ban]);
    // Claimed here: this node sends it.
    assert_eq!(feed(&mut s, b"+OK\r\n"), vec![Event::AlertClaimed(ban)]);
    assert_eq!(s.unanswered_claims().count(), 0);
    // Another node's claim holds: nothing.
    assert!(s.claim_alert(&ban));
    assert_eq!(feed(&mut s, b"$-1\r\n"), vec![]);
    // Redis cannot say: sent, better twice than never.
    assert!(s.claim_alert(&ban));
    assert_eq!(
        feed(&mut s, b"-READONLY replica\r\n"),
        vec![
            Event::CommandError("READONLY replica".into()),
            Event::AlertClaimed(ban)
        ]
    );
    // Any other answer is a broken link, and the alert goes anyway.
    assert!(s.claim_alert(&ban));
    let mut events = Vec::new();
    assert!(s.feed(b":1\r\n", &mut events).is_err());
    assert_eq!(events, vec![Event::AlertClaimed(ban)]);
}

#[test]
fn a_claim_holds_a_minute_or_the_ban_if_shorter() {
    let mut s = ready_commands();
    assert!(s.claim_alert(&ban_of_192_0_2_1(100, 130)));
    assert!(s.claim_alert(&ban_of_192_0_2_1(100, 100)));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("$2\r\nEX\r\n$2\r\n30\r\n"), "{out:?}");
    assert!(out.contains("$2\r\nEX\r\n$1\r\n1\r\n"), "{out:?}");
}

#[test]
fn an_unban_forgets_the_alerts_claim() {
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    assert!(s.publish_unban(&key));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("$3\r\nDEL\r\n"), "{out}");
    assert!(out.contains("authban:cs:alert:192.0.2.1"), "{out}");
}

#[test]
fn a_subscriber_reports_other_nodes_messages() {
    let mut s = Session::new(Role::Subscriber, "cs", 7, &url("redis://h"));
    let mut bytes = resp(&["subscribe", "authban:cs:events"]);
    // SUBSCRIBE's confirmation ends in an integer.
    bytes.truncate(bytes.len());
    let confirm = b"*3\r\n$9\r\nsubscribe\r\n$17\r\nauthban:cs:events\r\n:1\r\n";
    assert_eq!(feed(&mut s, confirm), vec![Event::Ready]);
    let key = Key::parse("192.0.2.9").unwrap();
    let events = feed(
        &mut s,
        &[
            resp(&[
                "message",
                "authban:cs:events",
                "unban 00000000000000aa 192.0.2.9",
            ]),
            resp(&["message", "authban:cs:events", "garbage"]),
            resp(&[
                "message",
                "authban:cs:events",
                "ban 00000000000000aa 192.0.2.9 1 2 3 1",
            ]),
        ]
        .concat(),
    );
    assert_eq!(events.len(), 2);
    assert_eq!(events[0], Event::Unban { node: 0xaa, key });
    assert!(matches!(events[1], Event::Ban(RemoteBan { node: 0xaa, ban }) if ban.until == 2));
    // An array that is not a message is a reply nobody asked for.
    let mut events = Vec::new();
    assert!(s.feed(&resp(&["pong", ""]), &mut events).is_err());
}

#[test]
fn a_load_reads_the_index_in_bounded_pages() {
    let mut s = ready_commands();
    assert!(s.load_bans(700));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("EVAL") && out.contains("authban:cs:index"));
    assert!(out.contains("$15\r\nauthban:cs:ban:\r\n$1\r\n0\r\n$3\r\n500\r\n$3\r\n128\r\n"));
    s.sent(s.output().len());
    let key = Key::parse("192.0.2.1").unwrap();
    let mut reply = b"*3\r\n:2\r\n:500\r\n*4\r\n".to_vec();
    reply.extend(resp(&["192.0.2.1", "10 20 5 1"])[4..].iter());
    reply.extend(resp(&["bogus", "1 2 3 4"])[4..].iter());
    let events = feed(&mut s, &reply);
    let ban = Ban {
        key,
        since: 10,
        until: 20,
        failures: 5,
        offence: 1,
    };
    assert_eq!(
        events,
        vec![Event::Loaded {
            bans: vec![ban],
            skipped: 3
        }]
    );
    // A full page: the next one, for the 200 the zone still holds.
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("$3\r\n500\r\n$3\r\n200\r\n"), "{out}");
    s.sent(s.output().len());
    assert_eq!(
        feed(&mut s, b"*3\r\n:0\r\n:200\r\n*0\r\n"),
        vec![
            Event::Loaded {
                bans: vec![],
                skipped: 0
            },
            Event::LoadDone
        ]
    );
    // A page claiming more than it was asked for is not Redis.
    let mut s = ready_commands();
    s.load_bans(10);
    let mut events = Vec::new();
    assert!(s.feed(b"*3\r\n:0\r\n:11\r\n*0\r\n", &mut events).is_err());
    // A script error ends the load; the link goes on.
    let mut s = ready_commands();
    s.load_bans(10);
    assert_eq!(
        feed(&mut s, b"-ERR busy\r\n"),
        vec![Event::CommandError("ERR busy".into()), Event::LoadDone]
    );
}

#[test]
fn what_is_owed_is_bounded_and_stamped() {
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    s.set_now(1_000);
    assert!(s.count_failure(&key, 600));
    s.set_now(2_500);
    for _ in 1..MAX_OWED_FAILURES {
        assert!(s.count_failure(&key, 600));
    }
    assert_eq!(s.owed(), MAX_OWED_FAILURES);
    assert!(!s.count_failure(&key, 600), "failures beyond the cap");
    assert_eq!(s.oldest_owed_ms(), Some(1_000));
    // Bytes that do not complete a reply leave the oldest as it was.
    assert_eq!(feed(&mut s, b":"), vec![]);
    assert_eq!(s.oldest_owed_ms(), Some(1_000));
    assert_eq!(feed(&mut s, b"3\r\n").len(), 1);
    assert_eq!(s.oldest_owed_ms(), Some(2_500));
    // Bans still go, up to the hard cap.
    let ban = Ban {
        key,
        since: 1,
        until: 2,
        failures: 1,
        offence: 1,
    };
    while s.owed() < MAX_OWED {
        assert!(s.publish_ban(&ban, 0));
    }
    assert!(!s.publish_ban(&ban, 0) && !s.publish_unban(&key));
}

#[test]
fn a_reply_nobody_asked_for_breaks_the_link() {
    let mut s = ready_commands();
    let mut events = Vec::new();
    assert!(s.feed(b"+OK\r\n", &mut events).is_err());
    let mut s = ready_commands();
    assert!(s.feed(b"?what\r\n", &mut events).is_err());
}

#[test]
fn a_signing_session_signs_what_it_writes_and_refuses_what_is_not_signed() {
    let signer = Signer::new(b"a fleet key of some length", "cs").unwrap();
    let mut s = Session::new(Role::Subscriber, "cs", 7, &url("redis://h"))
        .signed_with(Some(signer.clone()))
        .at(1_700_000_000_000);
    let confirm = b"*3\r\n$9\r\nsubscribe\r\n$17\r\nauthban:cs:events\r\n:1\r\n";
    assert_eq!(feed(&mut s, confirm), vec![Event::Ready]);
    let key = Key::parse("192.0.2.9").unwrap();
    let unban = Message::Unban { node: 0xaa, key };
    let good = unban.text(Some(&signer), 1_700_000_000);
    let events = feed(
        &mut s,
        &[
            resp(&["message", "authban:cs:events", &good]),
            resp(&[
                "message",
                "authban:cs:events",
                "unban 00000000000000aa 192.0.2.9",
            ]),
            resp(&["message", "authban:cs:events", "garbage"]),
        ]
        .concat(),
    );
    // Where the zone signs, whatever is not signed with its key is refused,
    // noise included.
    assert_eq!(
        events,
        vec![
            Event::Unban { node: 0xaa, key },
            Event::Forged(1),
            Event::Forged(1)
        ]
    );

    // Records: signed ones load, unsigned ones are refused, counted apart
    // from the unreadable (a name that is no key).
    let mut s = Session::new(Role::Commands, "cs", 7, &url("redis://127.0.0.1"))
        .signed_with(Some(signer.clone()));
    assert_eq!(feed(&mut s, b"$3\r\nabc\r\n"), vec![Event::Ready]);
    let ban = Ban {
        key,
        since: 10,
        until: 20,
        failures: 5,
        offence: 1,
    };
    assert!(s.publish_ban(&ban, 0));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    let record = names::ban_record(&ban, Some(&signer));
    assert!(out.contains(&record), "{out}");
    assert!(!out.contains(&(names::ban_record(&ban, None) + "\r\n")));
    feed(&mut s, b"+OK\r\n:1\r\n:0\r\n:1\r\n:2\r\n");
    s.load_bans(10);
    let mut reply = b"*3\r\n:0\r\n:3\r\n*6\r\n".to_vec();
    reply.extend(resp(&["192.0.2.9", &record])[4..].iter());
    reply.extend(resp(&["192.0.2.10", "10 20 5 1"])[4..].iter());
    reply.extend(resp(&["bogus", &record])[4..].iter());
    assert_eq!(
        feed(&mut s, &reply),
        vec![
            Event::Loaded {
                bans: vec![ban],
                skipped: 1
            },
            Event::Forged(1),
            Event::LoadDone
        ]
    );
}

/// The failure command, written by hand into the output, is the RESP the
/// crate's encoder writes for the same arguments, whatever the zone's
/// name and the key; so is the script's head after Redis forgot it.
#[test]
fn a_failure_is_the_same_command_however_it_is_encoded() {
    for (zone, key) in [
        ("cs".to_string(), "2001:db8::/64"),
        ("z".repeat(400), "2001:db8::/64"),
        ("cs".to_string(), "192.0.2.77"),
        ("cs".to_string(), "::1"),
    ] {
        let key = Key::parse(key).unwrap();
        let mut s = Session::new(Role::Commands, &zone, 7, &url("redis://h"));
        assert_eq!(feed(&mut s, b"$3\r\nabc\r\n"), vec![Event::Ready]);
        s.sent(s.output().len());
        let mut want = Vec::new();
        for (seq, sha, findtime) in [(1, "abc", 600), (2, "abc", 4_294_967)] {
            assert!(s.count_failure(&key, findtime));
            let member = format!("{:016x}:{}:{seq}", 7, std::process::id());
            let window = format!("authban:{zone}:fail:{key}");
            let ms = (u64::from(findtime) * 1000).to_string();
            let args = ["EVALSHA", sha, "1", &window, &ms, &member];
            let frames: Vec<BorrowedFrame<'_>> = args
                .iter()
                .map(|a| BorrowedFrame::BulkString(a.as_bytes()))
                .collect();
            encode_into(&mut want, &frames);
        }
        assert_eq!(
            String::from_utf8_lossy(s.output()),
            String::from_utf8_lossy(&want),
            "zone of {} bytes, key {key}",
            zone.len()
        );
        assert_eq!(
            feed(&mut s, b":1\r\n:2\r\n"),
            vec![
                Event::FleetCount { key, count: 1 },
                Event::FleetCount { key, count: 2 }
            ]
        );
    }
    // A new SHA after SCRIPT FLUSH heads the next commands.
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    s.count_failure(&key, 600);
    feed(&mut s, b"-NOSCRIPT No matching script\r\n");
    let sha = "e".repeat(40);
    feed(&mut s, format!("${}\r\n{sha}\r\n", sha.len()).as_bytes());
    s.sent(s.output().len());
    s.count_failure(&key, 600);
    let head = format!("*6\r\n$7\r\nEVALSHA\r\n$40\r\n{sha}\r\n$1\r\n1\r\n");
    assert!(String::from_utf8_lossy(s.output()).starts_with(&head));
}

/// Counts are read in place only while they are what is owed; the rest,
/// and a count split over two reads, goes through the decoder as before.
#[test]
fn counts_read_in_place_leave_the_rest_to_the_decoder() {
    let mut s = ready_commands();
    let key = Key::parse("192.0.2.1").unwrap();
    let ban = Ban {
        key,
        since: 1,
        until: 2,
        failures: 1,
        offence: 1,
    };
    s.count_failure(&key, 600);
    s.publish_ban(&ban, 0);
    for _ in 0..3 {
        s.count_failure(&key, 600);
    }
    assert_eq!(s.owed(), 9);
    let events = feed(
        &mut s,
        b":7\r\n+OK\r\n:1\r\n:0\r\n:1\r\n:1\r\n:9\r\n:-3\r\n:1",
    );
    assert_eq!(
        events,
        vec![
            Event::FleetCount { key, count: 7 },
            Event::FleetCount { key, count: 9 },
            Event::FleetCount {
                key,
                count: u32::MAX
            },
        ]
    );
    assert_eq!(s.owed(), 1);
    assert_eq!(
        feed(&mut s, b"2\r\n"),
        vec![Event::FleetCount { key, count: 12 }]
    );
    assert!(!s.awaiting_reply());
    // What is not a count where one is owed goes to the decoder, and
    // breaks the link as before.
    let mut events = Vec::new();
    s.count_failure(&key, 600);
    assert!(s.feed(b"$2\r\n:1\r\n", &mut events).is_err());
}
