//! Fleet sync for zones with `sync=`, bottom to top: its configuration
//! (`conf`), the TLS context (`tls`), name resolution (`resolve`), each
//! worker's links on nginx's event loop (`link`), what the links apply to
//! the zone and what requests send (`node`), and the master's load of a
//! new zone (`snapshot`).

pub mod conf;
mod link;
pub mod node;
mod resolve;
pub mod snapshot;
#[cfg_attr(not(ngx_feature = "ssl"), path = "tls_none.rs")]
pub mod tls;
