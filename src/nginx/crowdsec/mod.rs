//! CrowdSec (`authban_crowdsec`), both ways, on nginx's event loop: worker
//! 0 pulls LAPI's decisions into the zone (`pull`), and each worker sends
//! the bans it makes as alerts (`push`), each exchange one HTTP request
//! (`exchange`) over `net`; `conf` holds the directive's settings, and
//! `handle` a zone's CrowdSec for the configuration and the process hooks.

pub mod conf;
mod exchange;
pub mod handle;
mod pull;
mod push;
