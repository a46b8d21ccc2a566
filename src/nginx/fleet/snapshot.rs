//! A new zone of a fleet starts with the fleet's bans: the master reads
//! them from Redis when it creates the zone, before any worker serves, as
//! it reads the state file. A blocking read, bounded by short timeouts;
//! nginx -t never connects.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use nginx_sys::{ngx_log_t, ngx_test_config};

use super::{apply_loaded, Fleet};
use crate::engine::fleet::snapshot::{self, Snapshot, Timed};
use crate::nginx::log;
use crate::nginx::zone::Zone;

/// The whole load, connection included: a Redis that is down, black-holed,
/// trickling or endless holds nginx's start (or a reload) no longer.
const DEADLINE: Duration = Duration::from_secs(1);

/// The stream's own timeouts follow what is left of the deadline.
struct Deadlined(TcpStream);

impl Read for Deadlined {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for Deadlined {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

impl Timed for Deadlined {
    fn set_timeout(&mut self, timeout: Duration) -> io::Result<()> {
        self.0.set_read_timeout(Some(timeout))?;
        self.0.set_write_timeout(Some(timeout))
    }
}

pub fn fill_new_zone(zone: &Zone, log: *mut ngx_log_t) {
    let Some(fleet) = &zone.fleet else { return };
    // SAFETY: a process global, set before the configuration is read.
    if unsafe { ngx_test_config } != 0 {
        return;
    }
    let limit = zone.with_table(|t| t.capacity()).unwrap_or(0);
    let snapshot = load(&zone.name, fleet, limit);
    let loaded = apply_loaded(zone, &snapshot.bans, snapshot.skipped);
    if snapshot.forged > 0 {
        zone.with_table(|t| t.sync_stats_mut().records_refused += snapshot.forged);
        log::sync_forged(log, &zone.name, snapshot.forged as u32);
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

fn load(zone: &str, fleet: &Fleet, limit: u32) -> Snapshot {
    let deadline = Instant::now() + DEADLINE;
    let Some(addr) = fleet.addr else {
        return Snapshot {
            error: Some("host not found".into()),
            ..Snapshot::default()
        };
    };
    match TcpStream::connect_timeout(&addr, DEADLINE) {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            let signer = fleet.signer.as_ref();
            let mut stream = Deadlined(stream);
            snapshot::load(&mut stream, zone, &fleet.url, signer, limit, deadline)
        }
        Err(e) => Snapshot {
            error: Some(e.to_string()),
            ..Snapshot::default()
        },
    }
}
