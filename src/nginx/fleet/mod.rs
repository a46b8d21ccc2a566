//! Fleet sync for zones with `sync=`, bottom to top: its configuration
//! (`conf`), each worker's links on nginx's event loop (`link`, over
//! `net`), what the links apply to
//! the zone and what requests send (`node`), and the master's load of a
//! new zone (`snapshot`).

pub mod conf;
mod link;
pub mod node;
pub mod snapshot;
