use super::*;

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
    assert!(!s.load_bans());
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
    let ban = Ban {
        key: Key::parse("192.0.2.1").unwrap(),
        since: 100,
        until: 700,
        failures: 5,
        offence: 1,
    };
    assert!(s.publish_ban(&ban, 50));
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(
        out.contains("authban:cs:ban:192.0.2.1\r\n$11\r\n100 700 5 1\r\n$4\r\nEXAT\r\n$3\r\n750")
    );
    assert!(out.contains("ban 0000000000000007 192.0.2.1 100 700 5 1"));
    assert_eq!(feed(&mut s, b"+OK\r\n:1\r\n:2\r\n"), vec![]);
    assert!(!s.awaiting_reply());
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
fn a_load_scans_pages_and_fetches_records() {
    let mut s = ready_commands();
    assert!(s.load_bans());
    let mut events = feed(
        &mut s,
        &[
            b"*2\r\n$2\r\n17\r\n".to_vec(),
            resp(&["authban:cs:ban:192.0.2.1", "authban:cs:ban:bogus"]),
        ]
        .concat(),
    );
    assert_eq!(events, vec![]);
    let out = String::from_utf8_lossy(s.output()).into_owned();
    assert!(out.contains("MGET") && out.contains("$2\r\n17\r\n"));
    events.extend(feed(&mut s, &resp(&["10 20 5 1"])));
    events.extend(feed(&mut s, b"*2\r\n$1\r\n0\r\n*0\r\n"));
    let key = Key::parse("192.0.2.1").unwrap();
    assert_eq!(
        events,
        vec![
            Event::Loaded(vec![Ban {
                key,
                since: 10,
                until: 20,
                failures: 5,
                offence: 1
            }]),
            Event::LoadDone
        ]
    );
}

#[test]
fn a_reply_nobody_asked_for_breaks_the_link() {
    let mut s = ready_commands();
    let mut events = Vec::new();
    assert!(s.feed(b"+OK\r\n", &mut events).is_err());
    let mut s = ready_commands();
    assert!(s.feed(b"?what\r\n", &mut events).is_err());
}
