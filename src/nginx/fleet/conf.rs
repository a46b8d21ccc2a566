//! A zone's `sync=` settings, as the configuration read them.

use std::net::{SocketAddr, ToSocketAddrs};

use nginx_sys::ngx_http_core_loc_conf_t;

use crate::engine::fleet::{Signer, SyncUrl};
use crate::nginx::net::tls::Tls;
use crate::nginx::state::zone;

/// Where a zone's Redis is and how to speak to it.
pub struct FleetConf {
    pub url: SyncUrl,
    /// Where Redis was found when the configuration was read; `None` if
    /// its name did not resolve (the zone runs alone until it does).
    pub addr: Option<SocketAddr>,
    /// The http level's core configuration: its `resolver`, if any, finds
    /// the host again while nginx runs.
    pub http_core: *const ngx_http_core_loc_conf_t,
    /// Marks this node's messages, so it skips its own. Made by the master
    /// at configuration, shared by its workers.
    pub node: u64,
    /// `sync_wide=on`: bans of networks wider than the zone's own are
    /// accepted from the fleet.
    pub wide: bool,
    /// `sync_key=`: records and messages are signed and verified.
    pub signer: Option<Signer>,
    /// `rediss://`: the links' TLS context.
    pub tls: Option<Tls>,
}

impl FleetConf {
    /// Its Redis host is resolved now, as nginx resolves upstream servers
    /// when it reads the configuration; a name that does not resolve
    /// leaves `addr` empty (the caller warns).
    pub fn new(
        url: SyncUrl,
        wide: bool,
        signer: Option<Signer>,
        tls: Option<Tls>,
        http_core: *const ngx_http_core_loc_conf_t,
    ) -> FleetConf {
        let addr = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next());
        FleetConf {
            url,
            addr,
            http_core,
            // Two independent random words, of which one is enough here.
            node: zone::random_seed()[0],
            wide,
            signer,
            tls,
        }
    }
}
