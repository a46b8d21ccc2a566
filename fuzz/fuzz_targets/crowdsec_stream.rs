//! Whatever a CrowdSec LAPI (or something posing as one) answers, reading
//! it never panics and stays bounded: the HTTP response, fed in pieces of
//! any size, ends in a response no longer than allowed or an error; the
//! decisions stream yields decisions whose keys parse back and whose labels
//! are bounded and printable. The bytes come from the network.
#![no_main]

use authban::engine::crowdsec::decision::{parse_stream, MAX_LABEL_LEN};
use authban::engine::crowdsec::duration::parse_go_duration;
use authban::engine::crowdsec::http::ResponseReader;
use authban::engine::key::Key;
use libfuzzer_sys::fuzz_target;

const MAX_BODY: usize = 4096;

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
    let Ok(answer) = parse_stream(data) else {
        return;
    };
    for entry in answer.new.iter().chain(answer.deleted.iter()).flatten() {
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
