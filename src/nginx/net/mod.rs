//! Talking to peers on nginx's event loop, for the fleet's Redis and
//! CrowdSec's LAPI alike: connections (`peer`), name resolution
//! (`resolve`), and TLS through nginx's own SSL (`tls`).

pub mod peer;
pub mod resolve;
#[cfg_attr(not(ngx_feature = "ssl"), path = "tls_none.rs")]
pub mod tls;
