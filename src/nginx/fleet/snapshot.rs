//! A new zone of a fleet starts with the fleet's bans: the master reads
//! them from Redis when it creates the zone, before any worker serves, as
//! it reads the state file. A blocking read, bounded by short timeouts;
//! nginx -t never connects.

use std::net::TcpStream;
use std::time::Duration;

use nginx_sys::{ngx_log_t, ngx_test_config};

use super::{apply_loaded, Fleet};
use crate::engine::fleet::snapshot;
use crate::engine::table::Ban;
use crate::nginx::log;
use crate::nginx::zone::Zone;

/// Per connect, read and write: a Redis that is down or black-holed holds
/// nginx's start for about this long.
const TIMEOUT: Duration = Duration::from_secs(1);

pub fn fill_new_zone(zone: &Zone, log: *mut ngx_log_t) {
    let Some(fleet) = &zone.fleet else { return };
    // SAFETY: a process global, set before the configuration is read.
    if unsafe { ngx_test_config } != 0 {
        return;
    }
    let result = load(&zone.name, fleet)
        .map(|bans| zone.with_table(|t| apply_loaded(t, &bans)).unwrap_or(0));
    log::sync_snapshot(log, &zone.name, &fleet.url, result);
}

fn load(zone: &str, fleet: &Fleet) -> Result<Vec<Ban>, String> {
    let mut stream = TcpStream::connect_timeout(&fleet.addr, TIMEOUT).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(TIMEOUT)))
        .map_err(|e| e.to_string())?;
    snapshot::load(&mut stream, zone, &fleet.url)
}
