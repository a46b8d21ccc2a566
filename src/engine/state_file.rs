//! The state file (`authban_zone ... state=PATH`): a zone's bans and offence
//! histories, so they survive a restart, a crash of all of nginx (minus one
//! interval) and a binary upgrade.
//!
//! Format, version 1 (text, one record per line, documented in the README):
//!
//! ```text
//! authban-state 1
//! zone NAME
//! secret HEX                (key zones only: the hash secret, 32 hex digits)
//! ban KEY OFFENCES LAST_BAN_END SINCE UNTIL FAILURES
//! hist KEY OFFENCES LAST_BAN_END
//! fam KEY UNTIL             (key zones with familiar= only)
//! end COUNT
//! ```
//!
//! Times are unix seconds; KEY is an address or CIDR network (a key zone's:
//! a 128-bit hash, written as an IPv6 address). A `fam` line is a familiar
//! (key, client network) pair, KEY its hash, familiar until UNTIL; they
//! follow the `ban` and `hist` lines. The `end` line with the count of
//! every record line (`fam` lines included) makes a truncated file
//! detectable.

use std::collections::hash_map::RandomState;
use std::fs;
use std::hash::{BuildHasher, Hasher};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::engine::key::Key;
use crate::engine::table::{Ban, Record};

const MAGIC: &str = "authban-state 1";

/// Why a state file is not read (and the zone starts empty).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum StateFileError {
    // Its content.
    #[error("not an authban state file of version 1")]
    NotAStateFile,
    #[error("written for zone \"{0}\"")]
    OtherZone(String),
    #[error("no zone line")]
    NoZoneLine,
    #[error("line {0}: record count does not match")]
    CountMismatch(usize),
    #[error("line {0}: bad record")]
    BadRecord(usize),
    #[error("line {0}: bad time")]
    BadTime(usize),
    #[error("line {0}: bad count")]
    BadCount(usize),
    #[error("line {0}: unknown record")]
    UnknownRecord(usize),
    #[error("truncated: no end line")]
    Truncated,
    #[error("not UTF-8")]
    NotUtf8,
    // The file itself.
    #[error("a symbolic link, not followed")]
    Symlink,
    #[error("not a regular file")]
    NotRegular,
    #[error("writable by group or others (mode {0:04o})")]
    Writable(u32),
    #[error("owned by uid {owner}, neither by the user that writes it (uid {writer}) nor by root")]
    Owner { owner: u32, writer: u32 },
    #[error("larger than {0} bytes, more than the zone can hold")]
    TooLarge(u64),
    /// The system's reason, as `std::io::Error` words it.
    #[error("{0}")]
    Io(String),
}

impl From<std::io::Error> for StateFileError {
    fn from(e: std::io::Error) -> Self {
        StateFileError::Io(e.to_string())
    }
}

/// What a state file holds: the records, a key zone's secret (its
/// records' keys are hashes under it) and its familiar pairs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub records: Vec<Record>,
    pub secret: Option<[u64; 2]>,
    pub familiar: Vec<Familiar>,
}

/// A familiar (key, client network) pair of a `familiar=` key zone: the
/// pair's hash, and when it stops being familiar (unix seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Familiar {
    pub key: Key,
    pub until: u32,
}

pub fn render(zone: &str, secret: Option<[u64; 2]>, records: &[Record]) -> String {
    render_with(zone, secret, records, &[])
}

/// [`render`] with a key zone's familiar pairs.
pub fn render_with(
    zone: &str,
    secret: Option<[u64; 2]>,
    records: &[Record],
    familiar: &[Familiar],
) -> String {
    let mut out = format!("{MAGIC}\nzone {zone}\n");
    if let Some([a, b]) = secret {
        out.push_str(&format!("secret {a:016x}{b:016x}\n"));
    }
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
    for f in familiar {
        out.push_str(&format!("fam {} {}\n", f.key, f.until));
    }
    out.push_str(&format!("end {}\n", records.len() + familiar.len()));
    out
}

pub fn parse(zone: &str, text: &str) -> Result<Saved, StateFileError> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err(StateFileError::NotAStateFile);
    }
    match lines.next().and_then(|l| l.strip_prefix("zone ")) {
        Some(name) if name == zone => {}
        Some(name) => return Err(StateFileError::OtherZone(name.to_string())),
        None => return Err(StateFileError::NoZoneLine),
    }
    let mut records = Vec::new();
    let mut secret = None;
    let mut familiar = Vec::new();
    for (n, line) in lines.enumerate() {
        let line_no = n + 3;
        let fields: Vec<&str> = line.split(' ').collect();
        match fields.as_slice() {
            ["end", count] => {
                if count.parse::<usize>().ok() != Some(records.len() + familiar.len()) {
                    return Err(StateFileError::CountMismatch(line_no));
                }
                return Ok(Saved {
                    records,
                    secret,
                    familiar,
                });
            }
            // A pair's hash: a host key no address reads as (IPv6, the top
            // bit set, as `KeyHasher` makes them); after every other record.
            ["fam", key, until] => {
                let key = Key::parse(key)
                    .filter(|k| {
                        !k.is_ipv4() && k.raw_prefix() == 128 && k.raw_addr()[0] & 0x80 != 0
                    })
                    .ok_or(StateFileError::BadRecord(line_no))?;
                let until = until
                    .parse()
                    .map_err(|_| StateFileError::BadTime(line_no))?;
                familiar.push(Familiar { key, until });
            }
            _ if !familiar.is_empty() => return Err(StateFileError::UnknownRecord(line_no)),
            ["secret", hex] if line_no == 3 => {
                secret = Some(secret_of(hex).ok_or(StateFileError::BadRecord(line_no))?);
            }
            ["ban", key, offences, last, since, until, failures] => {
                let record =
                    record(key, offences, last).ok_or(StateFileError::BadRecord(line_no))?;
                let ban = Ban {
                    key: record.key,
                    since: since
                        .parse()
                        .map_err(|_| StateFileError::BadTime(line_no))?,
                    until: until
                        .parse()
                        .map_err(|_| StateFileError::BadTime(line_no))?,
                    failures: failures
                        .parse()
                        .map_err(|_| StateFileError::BadCount(line_no))?,
                    offence: record.offences,
                };
                records.push(Record {
                    ban: Some(ban),
                    ..record
                });
            }
            ["hist", key, offences, last] => {
                records.push(record(key, offences, last).ok_or(StateFileError::BadRecord(line_no))?)
            }
            _ => return Err(StateFileError::UnknownRecord(line_no)),
        }
    }
    Err(StateFileError::Truncated)
}

/// 32 hex digits: two words.
fn secret_of(hex: &str) -> Option<[u64; 2]> {
    if hex.len() != 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let word = |t: &str| u64::from_str_radix(t, 16).ok();
    Some([word(&hex[..16])?, word(&hex[16..])?])
}

fn record(key: &str, offences: &str, last: &str) -> Option<Record> {
    Some(Record {
        key: Key::parse(key)?,
        offences: offences.parse().ok()?,
        last_ban_end: last.parse().ok()?,
        ban: None,
    })
}

/// The longest record line `render` writes: `ban`, an IPv6 network of 43
/// characters, an offence count (u8) and four u32 fields, with separators.
pub const MAX_RECORD_LINE: usize = 96;

/// The most bytes a state file for a zone of `capacity` addresses may hold:
/// two record lines per address (so the file of a zone up to twice as large
/// still loads; what does not fit is dropped by the restore) and 4 KiB for
/// the header and end lines. A larger file is refused unread.
pub fn max_file_len(capacity: u32) -> u64 {
    4096 + 2 * u64::from(capacity) * MAX_RECORD_LINE as u64
}

/// Whether a file of `mode` owned by `owner` may be trusted as state:
/// nobody but its owner may write it, and its owner is the user that writes
/// state files (`writer`) or root. Anyone else could plant bans (such as
/// `ban 0.0.0.0/0`) or lift their own.
pub fn check_trusted(mode: u32, owner: u32, writer: u32) -> Result<(), StateFileError> {
    if mode & 0o022 != 0 {
        return Err(StateFileError::Writable(mode & 0o7777));
    }
    if owner != writer && owner != 0 {
        return Err(StateFileError::Owner { owner, writer });
    }
    Ok(())
}

/// Whether a user (`uid`, member of `groups`) is granted all of `want`
/// (rwx bits, e.g. 0o3 for write and search) on a file of `mode`, `owner`
/// and `group`, by its mode bits as the kernel checks them: the owner's
/// bits if the user owns it, else the group's if a member, else the
/// others'. Root is granted everything. ACLs and capabilities are not seen.
pub fn permits(mode: u32, owner: u32, group: u32, uid: u32, groups: &[u32], want: u32) -> bool {
    if uid == 0 {
        return true;
    }
    let granted = if owner == uid {
        mode >> 6
    } else if groups.contains(&group) {
        mode >> 3
    } else {
        mode
    };
    granted & want & 0o7 == want & 0o7
}

/// Whether a directory of `mode` lets every user create files in it (a
/// sticky bit too: it only keeps them from removing others' files).
pub fn writable_by_others(mode: u32) -> bool {
    mode & 0o002 != 0
}

/// The directory a state file lives in (`.` for a bare name).
pub fn dir_of(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// Whether two state paths name the same file, however spelled: equal as
/// written, the same existing file (hard links, symlinks), or the same name
/// in the same directory once the directories are resolved (`..`,
/// symlinked directories). When a directory cannot be resolved (it does not
/// exist), `.` and `..` are removed from the text instead.
pub fn same_file(a: &Path, b: &Path) -> bool {
    if a == b {
        return true;
    }
    if let (Ok(ma), Ok(mb)) = (fs::metadata(a), fs::metadata(b)) {
        if (ma.dev(), ma.ino()) == (mb.dev(), mb.ino()) {
            return true;
        }
    }
    match (resolved(a), resolved(b)) {
        (Some(ra), Some(rb)) => ra == rb,
        _ => lexical(a) == lexical(b),
    }
}

/// `path` with its directory resolved by the file system.
fn resolved(path: &Path) -> Option<PathBuf> {
    let name = path.file_name()?;
    Some(fs::canonicalize(dir_of(path)).ok()?.join(name))
}

/// `path` without `.` and with each `..` taking away the name before it.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// A name for the temporary file no one can guess ahead of the write:
/// `.<name>.tmp.<pid>.<64 random bits>` (std's `RandomState` is keyed from
/// the OS's random source).
fn temp_name(path: &Path) -> std::ffi::OsString {
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u32(std::process::id());
    if let Ok(t) = SystemTime::now().duration_since(UNIX_EPOCH) {
        hasher.write_u128(t.as_nanos());
    }
    let mut name = std::ffi::OsString::from(".");
    name.push(path.file_name().unwrap_or_default());
    name.push(format!(
        ".tmp.{}.{:016x}",
        std::process::id(),
        hasher.finish()
    ));
    name
}

/// Fails unless `path` is absent or a regular file (not followed if a
/// symlink): only those may be replaced by the new state file.
fn check_replaceable(path: &Path) -> std::io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(()),
        Ok(_) => Err(std::io::Error::other(
            "the path exists and is not a regular file, not replaced",
        )),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Writes `text` to `path` so that a reader sees the old file or the new
/// one, never a mix: a new temporary file in the same directory (created
/// exclusively, never through a symlink, mode 0600, under a name no one can
/// plant ahead), fsync, rename over `path` (only if that is a regular file
/// or absent), fsync of the directory. The file ends up owned by the
/// calling process's user.
pub fn write_atomic(path: &Path, text: &str) -> std::io::Result<()> {
    check_replaceable(path)?;
    let dir = dir_of(path);
    let (tmp, mut file) = create_temp(dir, path)?;
    let result = (|| {
        file.write_all(text.as_bytes())?;
        // The mode asked at creation is cut by the umask; make it exact.
        file.set_permissions(fs::Permissions::from_mode(0o600))?;
        file.sync_all()?;
        check_replaceable(path)?;
        fs::rename(&tmp, path)?;
        fs::File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn create_temp(dir: &Path, path: &Path) -> std::io::Result<(PathBuf, fs::File)> {
    let mut attempt = 0;
    loop {
        let tmp = dir.join(temp_name(path));
        // create_new is O_CREAT|O_EXCL: it fails on any existing name,
        // a symlink included; O_NOFOLLOW says so once more.
        let opened = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp);
        match opened {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The records in `path`: `Ok(None)` if there is no file (a first start).
///
/// The file is refused (`Err` with the reason) unless it is a regular file
/// (a symlink is not followed, a FIFO or device is not opened for reading
/// without O_NONBLOCK), trusted by `check_trusted` for `writer` (the uid
/// that writes state files), and at most `max_len` bytes, which is all that
/// is ever read. Checks are made on the opened file, not the path again.
pub fn load(
    path: &Path,
    zone: &str,
    writer: u32,
    max_len: u64,
) -> Result<Option<Saved>, StateFileError> {
    // Before opening: opening a device may have effects of its own.
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => return Err(StateFileError::Symlink),
        Ok(m) if !m.file_type().is_file() => return Err(StateFileError::NotRegular),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path);
    let file = match file {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(StateFileError::Symlink),
        Err(e) => return Err(e.into()),
    };
    // What was opened, which may differ from what was looked at above.
    let meta = file.metadata()?;
    if !meta.file_type().is_file() {
        return Err(StateFileError::NotRegular);
    }
    check_trusted(meta.mode(), meta.uid(), writer)?;
    if meta.len() > max_len {
        return Err(StateFileError::TooLarge(max_len));
    }
    let mut bytes = Vec::new();
    file.take(max_len + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > max_len {
        return Err(StateFileError::TooLarge(max_len));
    }
    let text = String::from_utf8(bytes).map_err(|_| StateFileError::NotUtf8)?;
    parse(zone, &text).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileTypeExt;

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
        let text = render("cs", None, &sample());
        assert_eq!(
            text,
            "authban-state 1\nzone cs\nban 203.0.113.7 2 100 200 400 25\n\
             hist 2001:db8:1:2::/64 1 150\nend 2\n"
        );
        assert_eq!(parse("cs", &text).unwrap().records, sample());
        let keyed = render("cs", Some([1, u64::MAX]), &sample());
        assert!(keyed.contains("\nsecret 0000000000000001ffffffffffffffff\n"));
        let saved = parse("cs", &keyed).unwrap();
        assert_eq!(
            (saved.records, saved.secret),
            (sample(), Some([1, u64::MAX]))
        );
        assert!(parse("cs", &keyed.replace("secret 0", "secret x")).is_err());
    }

    #[test]
    fn familiar_pairs_round_trip_strictly() {
        let hasher = crate::engine::account::KeyHasher::from_words([3, 4], "keys");
        let pair = hasher.pair_key(
            &hasher.key_of(b"K"),
            &crate::engine::account::familiar_network("192.0.2.1".parse().unwrap()),
        );
        let fam = [Familiar {
            key: pair,
            until: 2_000_000_000,
        }];
        let text = render_with("keys", Some([3, 4]), &sample(), &fam);
        assert!(
            text.ends_with(&format!("fam {pair} 2000000000\nend 3\n")),
            "{text}"
        );
        let saved = parse("keys", &text).unwrap();
        assert_eq!(
            (saved.records, saved.secret, saved.familiar),
            (sample(), Some([3, 4]), fam.to_vec())
        );
        // The count covers the pairs; a pair is a hash, never an address
        // or a network; nothing but pairs follows a pair.
        assert!(parse("keys", &text.replace("end 3", "end 2")).is_err());
        let line = format!("fam {pair} 2000000000");
        for bad in [
            "fam 203.0.113.7 2000000000".to_string(),
            "fam 2001:db8::1 2000000000".to_string(),
            format!("fam {pair}/64 2000000000"),
            format!("fam {pair} -1"),
            format!("fam {pair} 2000000000 1"),
        ] {
            assert!(parse("keys", &text.replace(&line, &bad)).is_err(), "{bad}");
        }
        let hist_after = text.replace(&line, &format!("{line}\nhist 2001:db8::/64 1 150"));
        let hist_after = hist_after.replace("end 3", "end 4");
        assert_eq!(
            parse("keys", &hist_after),
            Err(StateFileError::UnknownRecord(7))
        );
    }

    #[test]
    fn damaged_or_foreign_files_are_refused() {
        let text = render("cs", None, &sample());
        assert!(parse("other", &text)
            .unwrap_err()
            .to_string()
            .contains("zone \"cs\""));
        let cut = &text[..text.len() - 7];
        assert!(parse("cs", cut).is_err(), "truncated before the end line");
        assert!(parse("cs", &text[..40]).is_err(), "truncated mid-record");
        assert!(parse("cs", &text.replace("end 2", "end 3")).is_err());
        assert!(parse("cs", "GIF89a...").is_err());
        assert!(parse("cs", &text.replace("203.0.113.7", "203.0.113.700")).is_err());
        assert!(parse("cs", "").is_err());
    }

    /// A fresh directory for one test, removed by the test when it passes.
    fn test_dir(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("authban-state-test-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn uid() -> u32 {
        rustix::process::geteuid().as_raw()
    }

    /// A named pipe at `path`, mode 0600.
    fn mkfifo(path: &Path) {
        let mode = rustix::fs::Mode::from_raw_mode(0o600);
        rustix::fs::mknodat(rustix::fs::CWD, path, rustix::fs::FileType::Fifo, mode, 0).unwrap();
    }

    const MAX: u64 = 1 << 20;

    #[test]
    fn atomic_write_and_load() {
        let dir = test_dir("atomic");
        let path = dir.join("cs.state");
        assert_eq!(load(&path, "cs", uid(), MAX), Ok(None));
        write_atomic(&path, &render("cs", None, &sample())).unwrap();
        assert_eq!(
            load(&path, "cs", uid(), MAX),
            Ok(Some(Saved {
                records: sample(),
                secret: None,
                familiar: vec![]
            }))
        );
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        fs::write(&path, "garbage").unwrap();
        assert!(load(&path, "cs", uid(), MAX).is_err());
        write_atomic(&path, &render("cs", None, &sample())).unwrap();
        let leftovers: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn longest_record_line_is_max_record_line() {
        let key = Key::parse("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fff0/124").unwrap();
        let worst = Record {
            key,
            offences: u8::MAX,
            last_ban_end: u32::MAX,
            ban: Some(Ban {
                key,
                since: u32::MAX,
                until: u32::MAX,
                failures: u32::MAX,
                offence: u8::MAX,
            }),
        };
        let text = render("z", None, &[worst]);
        let line = text.lines().nth(2).unwrap();
        assert_eq!(line.len() + 1, MAX_RECORD_LINE, "{line}");
        assert!(max_file_len(1) >= text.len() as u64);
        assert_eq!(max_file_len(10_000), 4096 + 2 * 10_000 * 96);
    }

    #[test]
    fn only_files_of_the_writer_or_root_that_no_one_else_can_write_are_trusted() {
        assert_eq!(check_trusted(0o100600, 101, 101), Ok(()));
        assert_eq!(check_trusted(0o100644, 0, 101), Ok(()));
        assert_eq!(check_trusted(0o100400, 101, 101), Ok(()));
        let world = check_trusted(0o100666, 101, 101).unwrap_err().to_string();
        assert!(world.contains("mode 0666"), "{world}");
        assert!(check_trusted(0o100620, 101, 101).is_err(), "group-writable");
        assert!(check_trusted(0o100602, 0, 0).is_err(), "world-writable");
        let other = check_trusted(0o100600, 1000, 101).unwrap_err().to_string();
        assert!(
            other.contains("uid 1000") && other.contains("uid 101"),
            "{other}"
        );
    }

    #[test]
    fn permissions_by_owner_group_and_others() {
        // rwxr-x--- root:adm (4)
        let (mode, owner, group) = (0o40750, 0, 4);
        assert!(!permits(mode, owner, group, 65534, &[65534], 0o1));
        assert!(permits(mode, owner, group, 65534, &[65534, 4], 0o1));
        assert!(!permits(mode, owner, group, 65534, &[4], 0o3));
        assert!(permits(mode, owner, group, 0, &[], 0o7), "root");
        // The owner's bits apply to the owner even if the group's grant more.
        assert!(!permits(0o40570, 7, 7, 7, &[7], 0o2));
        assert!(permits(0o40777, 0, 0, 65534, &[], 0o3));
        assert!(permits(0o41733, 0, 0, 65534, &[], 0o3), "sticky /tmp");
    }

    #[test]
    fn directories_every_user_can_write_into() {
        for mode in [0o40777, 0o41777, 0o1777, 0o0703, 0o0002] {
            assert!(writable_by_others(mode), "{mode:o}");
        }
        for mode in [0o40755, 0o40775, 0o0700, 0o1755, 0o0005] {
            assert!(!writable_by_others(mode), "{mode:o}");
        }
    }

    #[test]
    fn temp_names_are_hidden_and_unpredictable() {
        let path = Path::new("/var/lib/authban/cs.state");
        let a = temp_name(path).into_string().unwrap();
        let b = temp_name(path).into_string().unwrap();
        let prefix = format!(".cs.state.tmp.{}.", std::process::id());
        assert!(a.starts_with(&prefix) && b.starts_with(&prefix), "{a} {b}");
        assert_eq!(a.len(), prefix.len() + 16, "{a}");
        assert_ne!(a, b);
    }

    #[test]
    fn only_a_regular_file_is_replaced() {
        let dir = test_dir("replace");
        let text = render("cs", None, &sample());
        let victim = dir.join("victim");
        fs::write(&victim, "precious").unwrap();

        let link = dir.join("link.state");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        assert!(write_atomic(&link, &text).is_err());
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        let sub = dir.join("dir.state");
        fs::create_dir(&sub).unwrap();
        assert!(write_atomic(&sub, &text).is_err());
        assert!(sub.is_dir());

        let fifo = dir.join("fifo.state");
        mkfifo(&fifo);
        assert!(write_atomic(&fifo, &text).is_err());
        assert!(fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo());

        assert_eq!(fs::read_to_string(&victim).unwrap(), "precious");
        let names: Vec<_> = fs::read_dir(&dir).unwrap().collect();
        assert_eq!(names.len(), 4, "no temporary file left behind");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn load_refuses_what_is_not_a_trusted_regular_file() {
        let dir = test_dir("load");
        let text = render("cs", None, &sample());
        let good = dir.join("good.state");
        write_atomic(&good, &text).unwrap();

        let link = dir.join("link.state");
        std::os::unix::fs::symlink(&good, &link).unwrap();
        let err = load(&link, "cs", uid(), MAX).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");

        let fifo = dir.join("fifo.state");
        mkfifo(&fifo);
        let reason = |path: &Path| load(path, "cs", uid(), MAX).map_err(|e| e.to_string());
        assert_eq!(reason(&fifo), Err("not a regular file".into()));
        assert_eq!(reason(&dir), Err("not a regular file".into()));

        let open = dir.join("open.state");
        fs::write(&open, &text).unwrap();
        fs::set_permissions(&open, fs::Permissions::from_mode(0o666)).unwrap();
        let err = load(&open, "cs", uid(), MAX).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        fs::set_permissions(&open, fs::Permissions::from_mode(0o640)).unwrap();
        assert_eq!(
            load(&open, "cs", uid(), MAX),
            Ok(Some(Saved {
                records: sample(),
                secret: None,
                familiar: vec![]
            }))
        );
        if uid() == 0 {
            std::os::unix::fs::chown(&open, Some(12345), None).unwrap();
            let err = load(&open, "cs", 101, MAX).unwrap_err().to_string();
            assert!(err.contains("owned by uid 12345"), "{err}");
        }

        // Refused by its size, unread: a sparse file of 1 GiB.
        let huge = dir.join("huge.state");
        let f = fs::File::create(&huge).unwrap();
        f.set_len(1 << 30).unwrap();
        let err = load(&huge, "cs", uid(), MAX).unwrap_err().to_string();
        assert!(err.contains(&format!("larger than {MAX} bytes")), "{err}");
        let exact = text.len() as u64;
        assert_eq!(
            load(&good, "cs", uid(), exact),
            Ok(Some(Saved {
                records: sample(),
                secret: None,
                familiar: vec![]
            }))
        );
        assert!(load(&good, "cs", uid(), exact - 1).is_err());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn same_file_however_spelled() {
        let dir = test_dir("same");
        fs::create_dir(dir.join("sub")).unwrap();
        std::os::unix::fs::symlink(&dir, dir.join("alias")).unwrap();
        let x = dir.join("x.state");
        assert!(same_file(&x, &x));
        assert!(same_file(&x, &dir.join("sub/../x.state")));
        assert!(same_file(&x, &dir.join("./x.state")));
        assert!(same_file(&x, &dir.join("alias/x.state")));
        assert!(!same_file(&x, &dir.join("sub/x.state")));
        assert!(!same_file(&x, &dir.join("y.state")));
        // Existing files: a hard link is the same file.
        fs::write(&x, "").unwrap();
        fs::hard_link(&x, dir.join("sub/hard.state")).unwrap();
        assert!(same_file(&x, &dir.join("sub/hard.state")));
        // Directories that do not exist: compared as text.
        assert!(same_file(
            Path::new("/nonexistent/a/../x.state"),
            Path::new("/nonexistent/x.state")
        ));
        assert!(!same_file(
            Path::new("/nonexistent/a/x.state"),
            Path::new("/nonexistent/x.state")
        ));
        fs::remove_dir_all(&dir).unwrap();
    }
}
