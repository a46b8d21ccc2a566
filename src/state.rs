//! The state file (`authban_zone ... state=PATH`): a zone's bans and offence
//! histories, so they survive a restart, a crash of all of nginx (minus one
//! interval) and a binary upgrade.
//!
//! Format, version 1 (text, one record per line, documented in the README):
//!
//! ```text
//! authban-state 1
//! zone NAME
//! ban KEY OFFENCES LAST_BAN_END SINCE UNTIL FAILURES
//! hist KEY OFFENCES LAST_BAN_END
//! end COUNT
//! ```
//!
//! Times are unix seconds; KEY is an address or CIDR network. The `end` line
//! with the record count makes a truncated file detectable.

use std::fs;
use std::io::Write;
use std::path::Path;

use crate::key::Key;
use crate::table::{Ban, Record};

const MAGIC: &str = "authban-state 1";

pub fn render(zone: &str, records: &[Record]) -> String {
    let mut out = format!("{MAGIC}\nzone {zone}\n");
    for r in records {
        match r.ban {
            Some(b) => out.push_str(&format!(
                "ban {} {} {} {} {} {}\n",
                r.key, r.offences, r.last_ban_end, b.since, b.until, b.failures
            )),
            None => out.push_str(&format!(
                "hist {} {} {}\n",
                r.key, r.offences, r.last_ban_end
            )),
        }
    }
    out.push_str(&format!("end {}\n", records.len()));
    out
}

pub fn parse(zone: &str, text: &str) -> Result<Vec<Record>, String> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err("not an authban state file of version 1".into());
    }
    match lines.next().and_then(|l| l.strip_prefix("zone ")) {
        Some(name) if name == zone => {}
        Some(name) => return Err(format!("written for zone \"{name}\"")),
        None => return Err("no zone line".into()),
    }
    let mut records = Vec::new();
    for (n, line) in lines.enumerate() {
        let line_no = n + 3;
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["end", count] => {
                if count.parse::<usize>().ok() != Some(records.len()) {
                    return Err(format!("line {line_no}: record count does not match"));
                }
                return Ok(records);
            }
            ["ban", key, offences, last, since, until, failures] => {
                let record =
                    record(key, offences, last).ok_or(format!("line {line_no}: bad record"))?;
                let ban = Ban {
                    key: record.key,
                    since: since
                        .parse()
                        .map_err(|_| format!("line {line_no}: bad time"))?,
                    until: until
                        .parse()
                        .map_err(|_| format!("line {line_no}: bad time"))?,
                    failures: failures
                        .parse()
                        .map_err(|_| format!("line {line_no}: bad count"))?,
                    offence: record.offences,
                };
                records.push(Record {
                    ban: Some(ban),
                    ..record
                });
            }
            ["hist", key, offences, last] => records
                .push(record(key, offences, last).ok_or(format!("line {line_no}: bad record"))?),
            _ => return Err(format!("line {line_no}: unknown record")),
        }
    }
    Err("truncated: no end line".into())
}

fn record(key: &str, offences: &str, last: &str) -> Option<Record> {
    Some(Record {
        key: Key::parse(key)?,
        offences: offences.parse().ok()?,
        last_ban_end: last.parse().ok()?,
        ban: None,
    })
}

/// Writes `text` to `path` so that a reader sees the old file or the new
/// one, never a mix: temporary file, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(format!(".tmp.{}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut file = fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// The records in `path`: `Ok(None)` if there is no file (a first start).
pub fn load(path: &Path, zone: &str) -> Result<Option<Vec<Record>>, String> {
    match fs::read(path) {
        Ok(bytes) => {
            let text = String::from_utf8(bytes).map_err(|_| "not UTF-8".to_string())?;
            parse(zone, &text).map(Some)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Record> {
        let key = Key::parse("203.0.113.7").unwrap();
        let net = Key::parse("2001:db8:1:2::/64").unwrap();
        vec![
            Record {
                key,
                offences: 2,
                last_ban_end: 100,
                ban: Some(Ban {
                    key,
                    since: 200,
                    until: 400,
                    failures: 25,
                    offence: 2,
                }),
            },
            Record {
                key: net,
                offences: 1,
                last_ban_end: 150,
                ban: None,
            },
        ]
    }

    #[test]
    fn round_trip() {
        let text = render("cs", &sample());
        assert_eq!(
            text,
            "authban-state 1\nzone cs\nban 203.0.113.7 2 100 200 400 25\n\
             hist 2001:db8:1:2::/64 1 150\nend 2\n"
        );
        assert_eq!(parse("cs", &text).unwrap(), sample());
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let text = render("cs", &sample());
        assert!(parse("other", &text).unwrap_err().contains("zone \"cs\""));
        let cut = &text[..text.len() - 7];
        assert!(parse("cs", cut).is_err(), "truncated before the end line");
        assert!(parse("cs", &text[..40]).is_err(), "truncated mid-record");
        assert!(parse("cs", &text.replace("end 2", "end 3")).is_err());
        assert!(parse("cs", "GIF89a...").is_err());
        assert!(parse("cs", &text.replace("203.0.113.7", "203.0.113.700")).is_err());
        assert!(parse("cs", "").is_err());
    }

    #[test]
    fn atomic_write_and_load() {
        let dir = std::env::temp_dir().join(format!("authban-state-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("cs.state");
        assert_eq!(load(&path, "cs"), Ok(None));
        write_atomic(&path, &render("cs", &sample())).unwrap();
        assert_eq!(load(&path, "cs"), Ok(Some(sample())));
        fs::write(&path, "garbage").unwrap();
        assert!(load(&path, "cs").is_err());
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }
}
