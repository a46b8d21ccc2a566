//! Whatever a CrowdSec LAPI (or something posing as one) answers, reading
//! it never panics and stays bounded: the HTTP response, fed in pieces of
//! any size, ends in a response no longer than allowed or an error; the
//! decisions stream yields decisions whose keys parse back and whose labels
//! are bounded and printable, and applying it to a zone holds the zone's
//! policy and the bouncer's memory bound; a login answer is read or not.
//! The bytes come from the network.
#![no_main]

use authban::engine::crowdsec::alert::parse_login;
use authban::engine::crowdsec::apply::{Bouncer, Pulled};
use authban::engine::crowdsec::decision::{parse_entry, MAX_LABEL_LEN};
use authban::engine::crowdsec::duration::parse_go_duration;
use authban::engine::crowdsec::http::ResponseReader;
use authban::engine::crowdsec::stream_index::{index_stream, serde_reading, StreamIndex};
use authban::engine::key::Key;
use authban::engine::table::{Events, Now, Policy, Table};
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 4096;
/// Decisions the bouncer may remember here.
const LIMIT: usize = 8;

fuzz_target!(|input: (u8, &[u8])| {
    let (piece, data) = input;
    let mut reader = ResponseReader::new(MAX_BODY);
    for chunk in data.chunks(usize::from(piece).max(1)) {
        match reader.feed(chunk) {
            Ok(None) => continue,
            Ok(Some(response)) => assert!(response.body.len() <= MAX_BODY),
            Err(_) => {}
        }
        break;
    }
    if let Ok(text) = core::str::from_utf8(data) {
        let _ = parse_go_duration(text);
    }
    let _ = parse_login(data);
    // As a pull reads it: the index, a slice at a time (the same as in
    // one go), then each entry on its own, deleted ones first.
    let whole = index_stream(data);
    let mut stepped = StreamIndex::new();
    let budget = usize::from(piece).max(1);
    let stepped = loop {
        match stepped.step(data, budget) {
            Ok(true) => break Ok(stepped.entries()),
            Ok(false) => continue,
            Err(e) => break Err(e),
        }
    };
    assert_eq!(stepped, whole);
    // As serde_json reads the whole answer, but for what the index refuses
    // on purpose (an answer as a list; invalid UTF-8 in members it skips).
    let serde = serde_reading(data);
    match &whole {
        Ok(entries) => assert_eq!(serde.as_ref(), Some(entries)),
        Err(_) => {
            let object = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
            if object && core::str::from_utf8(data).is_ok() {
                assert!(serde.is_none(), "serde_json reads what the index refuses");
            }
        }
    }
    let Ok(index) = whole else {
        return;
    };
    let entries: Vec<_> = index
        .into_iter()
        .map(|(is_new, range)| (is_new, parse_entry(&data[range])))
        .collect();
    let mut region = vec![0u8; 64 * 1024];
    let policy = Policy::default();
    let mut table = Table::format(&mut region, &policy, [1, 2]).expect("format");
    let now = Now::from_ms(1_700_000_000_000);
    let mut bouncer = Bouncer::new("z", piece & 1 == 1, LIMIT);
    let (mut out, mut events) = (Pulled::default(), Events::default());
    for (is_new, entry) in &entries {
        if *is_new {
            bouncer.apply_new(&mut table, entry, now, &mut events, &mut out);
        } else {
            bouncer.apply_deleted(&mut table, entry, piece & 2 == 2, now, &mut events, &mut out);
        }
    }
    assert!(bouncer.len() <= LIMIT);
    for (ban, _) in &out.applied {
        assert!(policy.admits_remote(ban, now, piece & 1 == 1).is_ok());
    }
    for (_, entry) in &entries {
        if let Ok(d) = entry.usable() {
            assert_eq!(Key::parse(&d.key.to_string()), Some(d.key));
            for label in [&d.scenario, &d.origin] {
                assert!(label.len() <= MAX_LABEL_LEN);
                assert!(label.bytes().all(|b| b.is_ascii_graphic()));
            }
        }
        let _ = entry.key();
    }
});
