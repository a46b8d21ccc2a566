//! A zone as the configuration declares it: its table in shared memory and,
//! with `sync=`, its fleet, with `authban_crowdsec`, its CrowdSec. The table knows nothing of the network; the
//! fleet knows its zone; this joins them for the handlers.

use core::cell::OnceCell;
use std::rc::Rc;

use crate::nginx::crowdsec::handle::Crowdsec;
use crate::nginx::fleet::node::Fleet;
use crate::nginx::state::zone::Zone;

pub struct DeclaredZone {
    pub zone: Rc<Zone>,
    /// `sync=`: the fleet the zone is part of.
    pub fleet: Option<Fleet>,
    /// `authban_crowdsec zone=` naming this zone (found once the http
    /// block is read: the directive may come before `authban_zone`).
    pub crowdsec: OnceCell<Rc<Crowdsec>>,
}

/// The zone `authban NAME` names, found once the http block is read (its
/// `authban_zone` may come later).
pub type ZoneSlot = OnceCell<Rc<DeclaredZone>>;
