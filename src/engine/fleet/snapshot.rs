//! The bans a fleet holds, read in one go over a blocking connection: how
//! the master fills a new zone before any worker serves (nginx start), as
//! it does from the state file. Workers never block: they load over their
//! own links ([`super::Session::load_bans`]).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use super::session::{Event, Role, Session};
use super::sign::Signer;
use super::url::SyncUrl;
use crate::engine::table::Ban;

/// What a load read: the bans, the records it could not read, and why it
/// stopped early (an error, or the deadline), if it did. Bans read before
/// an error are good: the node starts with them, and worker 0's link
/// loads the rest.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub bans: Vec<Ban>,
    pub skipped: u64,
    /// Records refused for a bad or missing signature (`sync_key=`).
    pub forged: u64,
    pub error: Option<String>,
}

/// A stream whose reads and writes can be given a timeout.
pub trait Timed: Read + Write {
    fn set_timeout(&mut self, timeout: Duration) -> std::io::Result<()>;
}

/// At most `limit` ban records of `zone` in Redis (what the zone can
/// hold), newest ending first, all within `deadline`: whatever the peer
/// sends or withholds, the load ends by then.
pub fn load(
    stream: &mut impl Timed,
    zone: &str,
    url: &SyncUrl,
    signer: Option<&Signer>,
    limit: u32,
    deadline: Instant,
) -> Snapshot {
    let mut snapshot = Snapshot::default();
    // The node id only marks published messages; a load publishes none.
    let session = Session::new(Role::Commands, zone, 0, url).signed_with(signer.cloned());
    if let Err(e) = read_into(stream, session, limit, deadline, &mut snapshot) {
        snapshot.error = Some(e);
    }
    snapshot
}

fn read_into(
    stream: &mut impl Timed,
    mut session: Session,
    limit: u32,
    deadline: Instant,
    snapshot: &mut Snapshot,
) -> Result<(), String> {
    let mut events = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut loading = false;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(late());
        }
        stream.set_timeout(left).map_err(|e| e.to_string())?;
        if !session.output().is_empty() {
            stream
                .write_all(session.output())
                .map_err(|e| e.to_string())?;
            session.sent(session.output().len());
            continue;
        }
        let n = stream.read(&mut buf).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => late(),
            _ => e.to_string(),
        })?;
        if n == 0 {
            return Err("connection closed by Redis".into());
        }
        session
            .feed(&buf[..n], &mut events)
            .map_err(|broken| broken.0)?;
        for event in events.drain(..) {
            match event {
                Event::Ready => loading = session.load_bans(limit),
                Event::Refused(text) | Event::CommandError(text) => return Err(text),
                Event::Loaded { bans, skipped } => {
                    snapshot.bans.extend(bans);
                    snapshot.skipped += u64::from(skipped);
                }
                Event::Forged(n) => snapshot.forged += u64::from(n),
                Event::LoadDone if loading => return Ok(()),
                _ => {}
            }
        }
    }
}

fn late() -> String {
    "no complete answer from Redis in time".into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Replies scripted in advance, then `after`, then `x` forever if
    /// `endless`; what is written is kept.
    struct Scripted {
        replies: Cursor<Vec<u8>>,
        after: &'static [u8],
        endless: bool,
        /// Between two bytes read: a Redis that trickles.
        pause: Duration,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            std::thread::sleep(self.pause);
            // One byte at a time: replies split anywhere must still parse.
            let one = buf.len().min(1);
            match self.replies.read(&mut buf[..one])? {
                0 if !self.after.is_empty() => {
                    buf[0] = self.after[0];
                    self.after = &self.after[1..];
                    Ok(1)
                }
                0 if self.endless => {
                    buf[0] = b'x';
                    Ok(1)
                }
                n => Ok(n),
            }
        }
    }

    impl Write for Scripted {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Timed for Scripted {
        fn set_timeout(&mut self, _: Duration) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn scripted(replies: String, pause: Duration) -> Scripted {
        Scripted {
            replies: Cursor::new(replies.into_bytes()),
            after: b"",
            endless: false,
            pause,
            written: Vec::new(),
        }
    }

    fn run_on(s: &mut Scripted, limit: u32, within: Duration) -> Snapshot {
        let url = SyncUrl::parse("redis://:pw@h").unwrap();
        load(s, "cs", &url, None, limit, Instant::now() + within)
    }

    fn run(replies: &str, limit: u32) -> (Snapshot, String) {
        let mut s = scripted(replies.to_string(), Duration::ZERO);
        let snapshot = run_on(&mut s, limit, Duration::from_secs(5));
        (snapshot, String::from_utf8_lossy(&s.written).into_owned())
    }

    /// A load page's reply: `listed` names in the index, these pairs sent.
    fn page(skipped: u32, listed: u32, pairs: &[(&str, &str)]) -> String {
        let mut out = format!("*3\r\n:{skipped}\r\n:{listed}\r\n*{}\r\n", pairs.len() * 2);
        for (k, v) in pairs {
            out += &format!("${}\r\n{k}\r\n${}\r\n{v}\r\n", k.len(), v.len());
        }
        out
    }

    /// A page listing `n` good records and sending them, keys `10.NET.x.y`.
    fn full_page(net: u8, n: u32) -> String {
        let records: Vec<(String, &str)> = (0..n)
            .map(|i| (format!("10.{net}.{}.{}", i / 256, i % 256), "10 20 30 1"))
            .collect();
        let pairs: Vec<(&str, &str)> = records.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        page(0, n, &pairs)
    }

    #[test]
    fn loads_through_the_index_in_pages() {
        let replies = format!(
            "+OK\r\n$2\r\nab\r\n{}{}",
            full_page(0, 500).replacen(":0\r\n", ":1\r\n", 1),
            page(2, 3, &[("1.2.3.5", "10 20 3 2"), ("bogus", "1 2 3 4")]),
        );
        let (snapshot, sent) = run(&replies, 10_000);
        assert_eq!(snapshot.error, None);
        assert_eq!(snapshot.bans.len(), 501);
        assert_eq!(snapshot.skipped, 1 + 2 + 1);
        assert_eq!(
            (snapshot.bans[500].failures, snapshot.bans[500].offence),
            (3, 2)
        );
        assert!(sent.contains("AUTH") && sent.contains("authban:cs:index"));
        assert!(!sent.contains("SCAN"));
    }

    #[test]
    fn a_redis_that_always_has_more_is_read_no_further_than_the_zone_holds() {
        // Three full pages ready; a zone of 600 asks for two (500 + 100).
        let replies = format!(
            "+OK\r\n$2\r\nab\r\n{}{}{}",
            full_page(1, 500),
            full_page(2, 100),
            full_page(3, 500),
        );
        let (snapshot, sent) = run(&replies, 600);
        assert_eq!(snapshot.error, None);
        assert_eq!(snapshot.bans.len(), 600);
        assert_eq!(sent.matches("EVAL").count(), 2, "{sent}");
    }

    #[test]
    fn a_trickling_or_endless_peer_is_cut_at_the_deadline() {
        // A handshake trickled a byte every 20 ms never completes in 200 ms.
        let mut s = scripted("+OK\r\n$2\r\nab\r\n".into(), Duration::from_millis(20));
        let t0 = Instant::now();
        let snapshot = run_on(&mut s, 100, Duration::from_millis(200));
        assert!(snapshot.error.is_some_and(|e| e.contains("in time")));
        assert!(t0.elapsed() < Duration::from_secs(1));
        // Endless bytes that never make a reply: cut too, and the bans read
        // before are kept.
        let mut s = scripted(
            format!(
                "+OK\r\n$2\r\nab\r\n{}",
                page(0, 500, &[("1.2.3.4", "1 2 3 4")])
            ),
            Duration::from_millis(1),
        );
        s.after = b"*3\r\n:0\r\n:1\r\n*2\r\n$999999\r\n";
        s.endless = true;
        let t0 = Instant::now();
        let snapshot = run_on(&mut s, 1000, Duration::from_millis(300));
        assert!(t0.elapsed() < Duration::from_secs(1));
        assert_eq!(snapshot.bans.len(), 1);
        assert!(snapshot.error.is_some_and(|e| e.contains("in time")));
    }

    #[test]
    fn a_refusal_or_a_closed_connection_is_an_error() {
        assert_eq!(
            run("-WRONGPASS bad\r\n", 10).0.error,
            Some("WRONGPASS bad".to_string())
        );
        assert!(run("+OK\r\n", 10).0.error.is_some());
    }
}
