//! The state-file reader. The input is a byte N, then a zone name of N
//! bytes (any that `authban_zone` accepts), then the file. Never panics; a
//! file it accepts is rendered back to a file that reads the same records (and renders the
//! same text again); a file the module writes for that zone always reads
//! back; the records it accepts restore into a table without harm.
#![no_main]

use authban::engine::directive::parse_zone;
use authban::engine::key::Key;
use authban::engine::state_file::{self as state, StateFileError};
use authban::engine::table::{Events, Now, Policy, Record, Table};
use libfuzzer_sys::fuzz_target;

/// 4 KiB pages: the smallest zone is 32k, so "1m" always fits.
const PAGE: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&n, rest)) = data.split_first() else {
        return;
    };
    let (zone, text) = rest.split_at(usize::from(n).min(rest.len()));
    let (Ok(zone), Ok(text)) = (std::str::from_utf8(zone), std::str::from_utf8(text)) else {
        return;
    };
    // Only names the configuration accepts: persist writes no others.
    let arg = format!("zone={zone}:1m");
    if parse_zone(&[&arg], PAGE).map(|spec| spec.name) != Ok(zone.to_string()) {
        return;
    }

    // Whatever the reader accepts renders to a file that reads the same.
    let parsed = state::parse(zone, text);
    if let Err(e) = &parsed {
        // A reason for the log, which names the line when it is one line's.
        let reason = e.to_string();
        assert!(!reason.is_empty() && !reason.contains('\n'), "{reason:?}");
        let line = match e {
            StateFileError::CountMismatch(n)
            | StateFileError::BadRecord(n)
            | StateFileError::BadTime(n)
            | StateFileError::BadCount(n)
            | StateFileError::UnknownRecord(n) => *n,
            _ => 0,
        };
        assert!(
            line == 0 || (3..=text.lines().count()).contains(&line),
            "{e:?}"
        );
    }
    if let Ok(saved) = parsed {
        let rendered = state::render_with(zone, saved.secret, &saved.records, &saved.familiar);
        let again = state::parse(zone, &rendered).expect("a rendered file reads back");
        assert_eq!(again, saved);
        assert_eq!(
            state::render_with(zone, again.secret, &again.records, &again.familiar),
            rendered
        );
        for r in &saved.records {
            assert_eq!(Key::parse(&r.key.to_string()), Some(r.key));
            if let Some(ban) = r.ban {
                assert_eq!(ban.key, r.key);
                assert_eq!(ban.offence, r.offences);
            }
        }
        for f in &saved.familiar {
            assert_eq!(Key::parse(&f.key.to_string()), Some(f.key));
            assert!(!f.key.is_ipv4() && f.key.raw_prefix() == 128);
        }
        // A file no longer than the largest a zone that holds them reads.
        let lines = saved.records.len() + saved.familiar.len();
        let capacity = u32::try_from(lines).unwrap_or(u32::MAX);
        assert!(rendered.len() as u64 <= state::max_file_len(capacity));
        for line in rendered.lines().skip(2) {
            assert!(line.len() <= state::MAX_RECORD_LINE, "{line:?}");
        }
        restore(&saved.records, text.len() as u64);
    }

    // Whatever the module writes for this zone reads back, whatever the
    // records (here: parsed from the file under the name "cs").
    if let Ok(saved) = state::parse("cs", text) {
        let rendered = state::render_with(zone, saved.secret, &saved.records, &saved.familiar);
        assert_eq!(
            state::parse(zone, &rendered).as_ref(),
            Ok(&saved),
            "zone {zone:?}"
        );
    }
});

/// Restores the records into a small table, as a restart does, and checks
/// the table agrees with them.
fn restore(records: &[Record], seed: u64) {
    let policy = Policy {
        increment: true,
        ..Policy::default()
    };
    let mut buf = vec![0u64; 64 * 1024 / 8];
    // SAFETY: a Vec<u64> is initialised and 8-byte aligned.
    let region =
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), buf.len() * 8) };
    let mut table = Table::format(region, &policy, [seed, !seed]).unwrap();
    let now_secs = records
        .iter()
        .filter_map(|r| r.ban.map(|b| b.since))
        .min()
        .unwrap_or(1_000_000);
    let now = Now::from_ms(u64::from(now_secs) * 1000);
    let mut events = Events::default();
    let mut restored = Vec::new();
    for r in records {
        if table.restore(r, now, &mut events) {
            restored.push(*r);
        }
    }
    assert!(table.tracked() <= table.capacity());
    assert!(!table.damaged());
    for r in &restored {
        let Some(state) = table.lookup(&r.key, now) else {
            // Evicted by a later record: the table was full.
            continue;
        };
        if let Some(ban) = r.ban.filter(|b| b.until > now.secs()) {
            assert_eq!(state.ban, Some(ban), "{r:?}");
        }
    }
    let live: Vec<_> = table.records(now);
    let bans = live.iter().filter(|r| r.ban.is_some()).count();
    assert_eq!(bans, table.bans() as usize);
}
