//! Whatever a Redis (or something posing as one) answers, a fleet session
//! never panics, never reports a reply nobody asked for as an event, and
//! what it reports parses back: the bytes come from the network. Sessions
//! with and without a `sync_key=` signer; loads bounded by a zone's
//! capacity, whatever pages, sizes or signatures the peer sends.
#![no_main]

use authban::engine::fleet::{Event, Role, Session, Signer, SyncUrl};
use authban::engine::key::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|input: (bool, bool, u8, Vec<Vec<u8>>)| {
    let (subscriber, signed, commands, chunks) = input;
    let role = if subscriber {
        Role::Subscriber
    } else {
        Role::Commands
    };
    let url = SyncUrl::parse("redis://:pw@127.0.0.1:6379/1").unwrap();
    let signer = signed.then(|| Signer::new(b"a fleet key of some length", "cs").unwrap());
    let mut session = Session::new(role, "cs", 7, &url)
        .signed_with(signer)
        .at(1_700_000_000_000);
    let mut loaded = 0usize;
    let key = Key::parse("192.0.2.1").unwrap();
    let mut events = Vec::new();
    for (i, chunk) in chunks.iter().enumerate() {
        // Commands interleave with replies, as on a busy link.
        match (commands >> (i % 8)) & 3 {
            0 => {
                session.count_failure(&key, 600);
            }
            1 => {
                session.load_bans(1000);
            }
            _ => {}
        }
        session.sent(session.output().len());
        if session.feed(chunk, &mut events).is_err() {
            break;
        }
    }
    // Whatever the peer sends, what is owed stays bounded.
    assert!(session.owed() <= authban::engine::fleet::session::MAX_OWED + 8);
    for event in events {
        match event {
            // Only keys this node asked about come back counted.
            Event::FleetCount { key: counted, .. } => assert_eq!(counted, key),
            // Records and messages are checked before they are believed.
            Event::Loaded { bans, .. } => {
                loaded += bans.len();
                assert!(bans.iter().all(|b| b.since <= b.until))
            }
            Event::Ban(remote) => assert!(remote.ban.since <= remote.ban.until),
            // Other nodes' news reach only a subscriber.
            Event::Unban { .. } => assert!(subscriber),
            _ => {}
        }
    }
    // A load never brings more than a zone asked for, per load started.
    assert!(loaded <= 1000 * chunks.len().max(1));
});
