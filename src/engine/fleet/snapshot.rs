//! The bans a fleet holds, read in one go over a blocking connection: how
//! the master fills a new zone before any worker serves (nginx start), as
//! it does from the state file. Workers never block: they load over their
//! own links ([`super::Session::load_bans`]).

use std::io::{Read, Write};

use super::session::{Event, Role, Session};
use super::url::SyncUrl;
use crate::engine::table::Ban;

/// Every ban record of `zone` in Redis. The stream should have timeouts
/// set: a Redis that does not answer must not hold nginx's start for long.
pub fn load(
    stream: &mut (impl Read + Write),
    zone: &str,
    url: &SyncUrl,
) -> Result<Vec<Ban>, String> {
    // The node id only marks published messages; a load publishes none.
    let mut session = Session::new(Role::Commands, zone, 0, url);
    let mut bans = Vec::new();
    let mut events = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let mut loading = false;
    loop {
        if !session.output().is_empty() {
            stream
                .write_all(session.output())
                .map_err(|e| e.to_string())?;
            session.sent(session.output().len());
        }
        let n = stream.read(&mut buf).map_err(|e| e.to_string())?;
        if n == 0 {
            return Err("connection closed by Redis".into());
        }
        session
            .feed(&buf[..n], &mut events)
            .map_err(|broken| broken.0)?;
        for event in events.drain(..) {
            match event {
                Event::Ready => loading = session.load_bans(),
                Event::Refused(text) | Event::CommandError(text) => return Err(text),
                Event::Loaded(page) => bans.extend(page),
                Event::LoadDone if loading => return Ok(bans),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// Replies scripted in advance; what is written is kept.
    struct Scripted {
        replies: Cursor<Vec<u8>>,
        written: Vec<u8>,
    }

    impl Read for Scripted {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            // One byte at a time: replies split anywhere must still parse.
            let one = buf.len().min(1);
            self.replies.read(&mut buf[..one])
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

    fn run(replies: &str) -> (Result<Vec<Ban>, String>, String) {
        let mut s = Scripted {
            replies: Cursor::new(replies.as_bytes().to_vec()),
            written: Vec::new(),
        };
        let url = SyncUrl::parse("redis://:pw@h").unwrap();
        let result = load(&mut s, "cs", &url);
        (result, String::from_utf8_lossy(&s.written).into_owned())
    }

    #[test]
    fn loads_every_page() {
        let (bans, sent) = run(concat!(
            "+OK\r\n$2\r\nab\r\n",
            "*2\r\n$1\r\n5\r\n*1\r\n$22\r\nauthban:cs:ban:1.2.3.4\r\n",
            "*1\r\n$10\r\n10 20 30 1\r\n",
            "*2\r\n$1\r\n0\r\n*1\r\n$22\r\nauthban:cs:ban:1.2.3.5\r\n",
            "*1\r\n$9\r\n10 20 3 2\r\n",
        ));
        let bans = bans.unwrap();
        assert_eq!(bans.len(), 2);
        assert_eq!((bans[1].failures, bans[1].offence), (3, 2));
        assert!(sent.contains("AUTH") && sent.contains("SCAN") && sent.contains("MGET"));
    }

    #[test]
    fn a_refusal_or_a_closed_connection_is_an_error() {
        assert_eq!(
            run("-WRONGPASS bad\r\n").0,
            Err("WRONGPASS bad".to_string())
        );
        assert!(run("+OK\r\n").0.is_err());
    }
}
