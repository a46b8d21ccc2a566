use proptest::prelude::*;

use super::*;

/// The answer indexed `budget` bytes a step, and how many steps it took.
fn stepped(body: &[u8], budget: usize) -> (Result<Entries, NotAStream>, usize) {
    let mut index = StreamIndex::new();
    let mut steps = 0;
    loop {
        steps += 1;
        match index.step(body, budget) {
            Ok(true) => return (Ok(index.entries()), steps),
            Ok(false) => {}
            Err(e) => return (Err(e), steps),
        }
    }
}

fn texts(body: &[u8]) -> Vec<(bool, &str)> {
    index_stream(body)
        .unwrap()
        .into_iter()
        .map(|(new, r)| (new, core::str::from_utf8(&body[r]).unwrap()))
        .collect()
}

#[test]
fn entries_are_found_deleted_first_whatever_the_order_of_the_lists() {
    let body = br#" { "new" : [ {"id": 1, "type": "ban"} , 7 ], "other": {"x": [1, 2]},
        "deleted": [{"id": 2}] } "#;
    assert_eq!(
        texts(body),
        [
            (false, r#"{"id": 2}"#),
            (true, r#"{"id": 1, "type": "ban"}"#),
            (true, "7")
        ]
    );
    assert!(texts(br#"{"new": null, "deleted": null}"#).is_empty());
    assert!(texts(br#"{"new": [], "deleted": []}"#).is_empty());
    assert!(texts(b"{}").is_empty());
    // Names are JSON strings: escapes count.
    assert_eq!(texts(br#"{"n\u0065w": [1]}"#), [(true, "1")]);
}

#[test]
fn what_is_not_an_answer_is_an_error_that_says_where() {
    for (body, what) in [
        (&b""[..], "expected `{` at byte 0"),
        (b"[1]", "expected `{` at byte 0"),
        (br#"{"new": [1, "#, "at byte 12"),
        (br#"{"new": [1,]}"#, "at byte 11"),
        (
            br#"{"new": [1] "deleted": []}"#,
            "expected `,` or `}` at byte 12",
        ),
        (br#"{"new": [1 2]}"#, "expected `,` or `]` at byte 11"),
        (br#"{"new": 1}"#, "`new` is not a list at byte 8"),
        (
            br#"{"new": [], "new": []}"#,
            "duplicate field `new` at byte 12",
        ),
        (br#"{"new": []} x"#, "trailing characters at byte 12"),
        (br#"{1: []}"#, "a member's name is not a string at byte 1"),
        (br#"{"new" []}"#, "expected `:` at byte 7"),
        (br#"{"a": 1,}"#, "at byte 8"),
    ] {
        let err = index_stream(body).expect_err(core::str::from_utf8(body).unwrap());
        assert!(
            err.0.ends_with(what),
            "{:?}: {err}",
            core::str::from_utf8(body)
        );
        assert!(serde_reading(body).is_none());
    }
}

#[test]
fn a_large_answer_is_indexed_in_slices_of_its_budget() {
    let entry = r#"{"duration":"3h59m59s","id":1,"origin":"cscli","scope":"Ip","type":"ban","value":"10.0.0.1"}"#;
    let list = vec![entry; 10_000].join(",");
    let body = format!(r#"{{"deleted":null,"new":[{list}]}}"#);
    let (entries, steps) = stepped(body.as_bytes(), 64 * 1024);
    assert_eq!(entries.unwrap().len(), 10_000);
    // About one step per 64 KiB, never the whole text in one.
    let slices = body.len() / (64 * 1024);
    assert!(
        (slices..=slices + 2).contains(&steps),
        "{steps} steps, {slices} slices"
    );
}

/// JSON-ish text: answers, near-answers and noise.
fn answer_like() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("1".to_string()),
        Just(r#""a\"b""#.to_string()),
        Just(r#"{"id": 3, "type": "ban", "value": "10.0.0.1"}"#.to_string()),
        Just("[1, {\"x\": []}]".to_string()),
        "[ \\[\\]{}:,\"a-z0-9]{0,6}",
    ];
    let list = prop::collection::vec(leaf.clone(), 0..5).prop_map(|v| format!("[{}]", v.join(",")));
    let name = prop_oneof![
        Just("new"),
        Just("deleted"),
        Just("other"),
        Just("n\\u0065w")
    ];
    let value = prop_oneof![list, leaf];
    let member = (name, value).prop_map(|(n, v)| format!("\"{n}\": {v}"));
    let sep = prop_oneof![Just(","), Just(" , "), Just(""), Just(",,")];
    (prop::collection::vec((member, sep), 0..4), "[ x}]{0,2}").prop_map(|(members, tail)| {
        let mut body = String::from("{");
        for (i, (m, sep)) in members.iter().enumerate() {
            if i > 0 {
                body.push_str(sep);
            }
            body.push_str(m);
        }
        body.push('}');
        body.push_str(&tail);
        body
    })
}

proptest! {
    /// In one go or a few bytes a step, the index reads an answer as
    /// serde_json reads it whole, and refuses what serde_json refuses.
    #[test]
    fn the_index_reads_as_serde_json_does(body in answer_like(), budget in 1usize..40) {
        let body = body.as_bytes();
        let whole = index_stream(body).ok();
        prop_assert_eq!(&whole, &serde_reading(body));
        prop_assert_eq!(stepped(body, budget).0.ok(), whole);
    }

    /// Any bytes: what the index reads, serde_json reads the same; what
    /// it refuses, serde_json refuses too, but for what the index refuses
    /// on purpose (an answer as a list, invalid UTF-8 in a member it
    /// would skip).
    #[test]
    fn any_bytes_are_indexed_or_refused(body in prop::collection::vec(any::<u8>(), 0..64), budget in 0usize..16) {
        let whole = index_stream(&body).ok();
        prop_assert_eq!(stepped(&body, budget).0.ok(), whole.clone());
        match whole {
            Some(entries) => prop_assert_eq!(Some(entries), serde_reading(&body)),
            None => {
                let object = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
                if object && core::str::from_utf8(&body).is_ok() {
                    prop_assert_eq!(serde_reading(&body), None);
                }
            }
        }
    }

    #[test]
    fn the_differences_are_the_ones_meant(budget in 0usize..4) {
        // serde_json takes these; the index does not, on purpose.
        for body in [&b"[]"[..], b"[null, [1]]", b"{\"x\": \"\xff\"}"] {
            prop_assert!(serde_reading(body).is_some());
            prop_assert!(stepped(body, budget).0.is_err());
        }
    }
}
