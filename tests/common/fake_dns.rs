//! A fake DNS server on loopback UDP for nginx's `resolver`: it answers A
//! queries with 127.0.0.1 once told to, and NXDOMAIN until then.

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::ports::free_port;

pub struct FakeDns {
    port: u16,
    answering: Arc<AtomicBool>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
}

impl FakeDns {
    pub fn start() -> FakeDns {
        let port = free_port();
        let socket = UdpSocket::bind(("127.0.0.1", port)).expect("bind fake dns");
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let answering = Arc::new(AtomicBool::new(false));
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handle = {
            let (answering, queries, stop) = (answering.clone(), queries.clone(), stop.clone());
            thread::spawn(move || {
                let mut buf = [0u8; 512];
                while !stop.load(Ordering::Relaxed) {
                    let Ok((n, from)) = socket.recv_from(&mut buf) else {
                        continue;
                    };
                    queries.fetch_add(1, Ordering::Relaxed);
                    if let Some(reply) = reply(&buf[..n], answering.load(Ordering::Relaxed)) {
                        let _ = socket.send_to(&reply, from);
                    }
                }
            })
        };
        FakeDns {
            port,
            answering,
            queries,
            stop,
            handle: Some(handle),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// From now on, names resolve to 127.0.0.1.
    pub fn answer(&self) {
        self.answering.store(true, Ordering::Relaxed);
    }

    pub fn queries(&self) -> usize {
        self.queries.load(Ordering::Relaxed)
    }
}

impl Drop for FakeDns {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// The answer to one query: its header and question echoed, then one A
/// record (TTL 1 s) when answering an A query, else no record (NXDOMAIN
/// when not answering at all).
fn reply(query: &[u8], answering: bool) -> Option<Vec<u8>> {
    if query.len() < 12 {
        return None;
    }
    // The question: labels up to a zero byte, then type and class.
    let mut end = 12;
    while *query.get(end)? != 0 {
        end += 1 + usize::from(query[end]);
    }
    let qtype = u16::from_be_bytes([*query.get(end + 1)?, *query.get(end + 2)?]);
    let question = &query[12..end + 5];
    let a = answering && qtype == 1;
    let mut out = Vec::with_capacity(64);
    out.extend_from_slice(&query[..2]);
    // Response, recursion desired and available; NXDOMAIN unless answering.
    out.extend_from_slice(&[0x81, if answering { 0x80 } else { 0x83 }]);
    out.extend_from_slice(&[0, 1, 0, u8::from(a), 0, 0, 0, 0]);
    out.extend_from_slice(question);
    if a {
        out.extend_from_slice(&[0xc0, 0x0c, 0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 127, 0, 0, 1]);
    }
    Some(out)
}
