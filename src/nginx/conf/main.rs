//! The http block's settings: the zones declared, the references to them,
//! and the management locations.

use std::rc::Rc;

use nginx_sys::ngx_http_core_loc_conf_t;

use crate::nginx::conf::declared::{DeclaredZone, ZoneSlot};
use crate::nginx::crowdsec::conf::CrowdsecConf;
use crate::nginx::crowdsec::handle::Crowdsec;
use crate::nginx::fleet::node::Fleet;
use crate::nginx::state::zone::Zone;

#[derive(Default)]
pub struct MainConf {
    /// Every `authban NAME` seen, to name the unknown ones once all
    /// `authban_zone` directives are read (they may come later).
    pub references: Vec<ZoneReference>,
    /// The zones `authban_zone` declared, owned by the configuration (its
    /// pool drops the main conf): nginx's shared memory entries point to
    /// them, and `authban NAME` finds them by name.
    pub zones: Vec<Rc<DeclaredZone>>,
    /// The locations given `authban_api`, checked once the http block is
    /// read (`http::api::check_locations`).
    pub api_locations: Vec<ApiLocation>,
    /// The index of the request variable holding authban's record (set in
    /// preconfiguration; per configuration, as variable indexes are).
    pub record_index: Option<usize>,
    /// Every `authban_crowdsec` read, joined to its zone once all
    /// `authban_zone` directives are read (`directives::check_references`).
    pub crowdsec: Vec<CrowdsecReference>,
}

impl MainConf {
    /// The zones `authban_zone` declared, in the order it did.
    pub fn declared_zones(&self) -> impl Iterator<Item = &Zone> {
        self.zones.iter().map(|z| &*z.zone)
    }

    /// The zones' CrowdSec settings and state (`authban_crowdsec`).
    pub fn crowdsecs(&self) -> impl Iterator<Item = &Crowdsec> {
        self.zones
            .iter()
            .filter_map(|z| z.crowdsec.get().map(|c| &**c))
    }

    /// The fleets of the zones with `sync=`.
    pub fn fleets(&self) -> impl Iterator<Item = &Fleet> {
        self.zones.iter().filter_map(|z| z.fleet.as_ref())
    }
}

pub struct ZoneReference {
    pub name: String,
    pub file: String,
    pub line: usize,
    pub slot: Rc<ZoneSlot>,
}

/// An `authban_crowdsec` and where it is, until its zone is found.
pub struct CrowdsecReference {
    pub conf: Option<CrowdsecConf>,
    pub file: String,
    pub line: usize,
}

/// A location given `authban_api`, kept in the http block's main
/// configuration until `http::api::check_locations` has seen that no later
/// directive replaced the handler. The configuration (and so this entry)
/// lives in the pool the location configuration was made in.
pub struct ApiLocation {
    pub clcf: *const ngx_http_core_loc_conf_t,
    pub file: String,
    pub line: usize,
}
