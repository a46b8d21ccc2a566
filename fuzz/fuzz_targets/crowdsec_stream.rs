//! Whatever a CrowdSec LAPI (or something posing as one) answers to the
//! decisions stream, reading it never panics, and every decision it calls
//! usable names a key that parses back and bounded, printable labels: the
//! bytes come from the network.
#![no_main]

use authban::engine::crowdsec::decision::{parse_stream, MAX_LABEL_LEN};
use authban::engine::crowdsec::duration::parse_go_duration;
use authban::engine::key::Key;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
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
