//! A new zone of a fleet starts with the fleet's bans: the master reads
//! them from Redis when it creates the zone, before any worker serves, as
//! it reads the state file. A blocking read, bounded by short timeouts;
//! nginx -t never connects.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nginx_sys::{ngx_log_t, ngx_test_config};

use crate::engine::fleet::snapshot::{self, Snapshot, Timed};
use crate::nginx::base::log;
use crate::nginx::fleet::conf::FleetConf;
use crate::nginx::fleet::node::{apply_loaded, refused_forged, Fleet};
use crate::nginx::net::tls::BlockingTls;

/// The whole load, connection included: a Redis that is down, black-holed,
/// trickling or endless holds nginx's start (or a reload) no longer.
const DEADLINE: Duration = Duration::from_secs(1);

/// The connection a load reads over, its socket's timeouts following what
/// is left of the deadline.
enum Stream {
    Plain(TcpStream),
    Tls(BlockingTls),
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Timed for Stream {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        let socket = match self {
            Stream::Plain(s) => s,
            Stream::Tls(s) => s.socket(),
        };
        socket.set_read_timeout(Some(timeout))?;
        socket.set_write_timeout(Some(timeout))
    }
}

pub fn fill_new_zone(fleet: &Fleet, log: *mut ngx_log_t) {
    let zone = &*fleet.zone;
    // SAFETY: a process global, set before the configuration is read.
    if unsafe { ngx_test_config } != 0 {
        return;
    }
    let limit = zone.with_table(|t| t.capacity()).unwrap_or(0);
    let snapshot = load(&zone.name, fleet, limit);
    let loaded = apply_loaded(fleet, &snapshot.bans, snapshot.skipped);
    if snapshot.forged > 0 {
        refused_forged(zone, snapshot.forged, log);
    }
    log::sync_snapshot(
        log,
        &zone.name,
        &fleet.url,
        loaded,
        snapshot.skipped,
        snapshot.error.as_deref(),
    );
}

fn load(zone: &str, fleet: &FleetConf, limit: u32) -> Snapshot {
    let deadline = Instant::now() + DEADLINE;
    let connected = connect(fleet, deadline);
    match connected {
        Ok(mut stream) => {
            let signer = fleet.signer.as_ref();
            snapshot::load(&mut stream, zone, &fleet.url, signer, limit, deadline)
        }
        Err(e) => Snapshot {
            error: Some(e),
            ..Snapshot::default()
        },
    }
}

/// A connection to the fleet's Redis, TLS verified for `rediss://`.
fn connect(fleet: &FleetConf, deadline: Instant) -> Result<Stream, String> {
    let addr = fleet.addr.ok_or("host not found")?;
    let socket = TcpStream::connect_timeout(&addr, DEADLINE).map_err(|e| e.to_string())?;
    let _ = socket.set_nodelay(true);
    let left = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(1));
    socket
        .set_read_timeout(Some(left))
        .and_then(|()| socket.set_write_timeout(Some(left)))
        .map_err(|e| e.to_string())?;
    match &fleet.tls {
        Some(tls) => Ok(Stream::Tls(tls.connect_blocking(socket, &fleet.url.host)?)),
        None => Ok(Stream::Plain(socket)),
    }
}
