//! A fake Redis for the hostile-Redis tests: a loopback listener that reads
//! RESP commands and answers each with what the test's `answer` says, each
//! answer's bytes paced as the test asks (a trickle: one byte per `pace`).
//! Its thread ends when the fake is dropped; connections it holds are shut.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::ports::free_port;

/// What the fake answers to one command (its arguments, upper-cased name
/// first): the bytes to send, or `None` to send nothing.
pub type Answer = dyn Fn(&[String]) -> Option<Vec<u8>> + Send + Sync;

pub struct FakeRedis {
    port: u16,
    stop: Arc<AtomicBool>,
    commands: Arc<AtomicUsize>,
    streams: Arc<Mutex<Vec<TcpStream>>>,
    handle: Option<JoinHandle<()>>,
}

impl FakeRedis {
    /// Listens on a free loopback port; every connection gets its own
    /// thread, answering with `answer`, one byte per `pace` (zero: at once).
    pub fn start(pace: Duration, answer: Arc<Answer>) -> FakeRedis {
        FakeRedis::start_paced_after(0, pace, answer)
    }

    /// As [`FakeRedis::start`], the first `quick` commands of each
    /// connection answered at once (a handshake that succeeds), the rest
    /// paced.
    pub fn start_paced_after(quick: usize, pace: Duration, answer: Arc<Answer>) -> FakeRedis {
        let port = free_port();
        let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind fake redis");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let commands = Arc::new(AtomicUsize::new(0));
        let streams = Arc::new(Mutex::new(Vec::new()));
        let handle = {
            let (stop, commands, streams) = (stop.clone(), commands.clone(), streams.clone());
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            streams
                                .lock()
                                .unwrap()
                                .push(stream.try_clone().expect("clone"));
                            let (stop, commands, answer) =
                                (stop.clone(), commands.clone(), answer.clone());
                            thread::spawn(move || {
                                serve(stream, quick, pace, &*answer, &stop, &commands)
                            });
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        FakeRedis {
            port,
            stop,
            commands,
            streams,
            handle: Some(handle),
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// As the API and the logs show it.
    pub fn shown_url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Commands read so far, over every connection.
    pub fn commands(&self) -> usize {
        self.commands.load(Ordering::Relaxed)
    }
}

impl Drop for FakeRedis {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for s in self.streams.lock().unwrap().drain(..) {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn serve(
    stream: TcpStream,
    quick: usize,
    pace: Duration,
    answer: &Answer,
    stop: &AtomicBool,
    commands: &AtomicUsize,
) {
    let mut writer = stream.try_clone().expect("clone");
    let mut reader = BufReader::new(stream);
    let mut served = 0;
    while !stop.load(Ordering::Relaxed) {
        let Some(args) = read_command(&mut reader) else {
            return;
        };
        commands.fetch_add(1, Ordering::Relaxed);
        served += 1;
        let Some(reply) = answer(&args) else { continue };
        if pace.is_zero() || served <= quick {
            if writer.write_all(&reply).is_err() {
                return;
            }
            continue;
        }
        for byte in reply {
            if stop.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(pace);
        }
    }
}

/// One RESP array of bulk strings, the command name upper-cased.
fn read_command(r: &mut impl BufRead) -> Option<Vec<String>> {
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let n: usize = line.trim_end().strip_prefix('*')?.parse().ok()?;
    let mut args = Vec::with_capacity(n);
    for i in 0..n {
        line.clear();
        r.read_line(&mut line).ok()?;
        let len: usize = line.trim_end().strip_prefix('$')?.parse().ok()?;
        let mut buf = vec![0u8; len + 2];
        r.read_exact(&mut buf).ok()?;
        buf.truncate(len);
        let arg = String::from_utf8_lossy(&buf).into_owned();
        args.push(if i == 0 { arg.to_uppercase() } else { arg });
    }
    Some(args)
}

/// RESP for a bulk string.
pub fn bulk(text: &str) -> Vec<u8> {
    format!("${}\r\n{text}\r\n", text.len()).into_bytes()
}

/// A well-behaved handshake: `+OK` to AUTH/SELECT, a SHA to SCRIPT LOAD,
/// the confirmation to SUBSCRIBE; `None` for anything else.
pub fn handshake(args: &[String]) -> Option<Vec<u8>> {
    match args.first().map(String::as_str) {
        Some("AUTH" | "SELECT") => Some(b"+OK\r\n".to_vec()),
        Some("SCRIPT") => Some(bulk("0123456789abcdef0123456789abcdef01234567")),
        Some("SUBSCRIBE") => {
            let channel = args.get(1).cloned().unwrap_or_default();
            let mut out = b"*3\r\n".to_vec();
            out.extend(bulk("subscribe"));
            out.extend(bulk(&channel));
            out.extend(b":1\r\n");
            Some(out)
        }
        _ => None,
    }
}
