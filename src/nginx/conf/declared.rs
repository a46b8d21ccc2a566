//! A zone as the configuration declares it: its table in shared memory and,
//! with `sync=`, its fleet. The table knows nothing of the network; the
//! fleet knows its zone; this joins them for the handlers.

use core::cell::OnceCell;
use std::rc::Rc;

use crate::nginx::fleet::node::Fleet;
use crate::nginx::state::zone::Zone;

pub struct DeclaredZone {
    pub zone: Rc<Zone>,
    /// `sync=`: the fleet the zone is part of.
    pub fleet: Option<Fleet>,
    /// `authban_crowdsec zone=` naming this zone: its LAPI's URL, for the
    /// API (the directive may come before or after `authban_zone`).
    pub crowdsec_url: OnceCell<String>,
}

/// The zone `authban NAME` names, found once the http block is read (its
/// `authban_zone` may come later).
pub type ZoneSlot = OnceCell<Rc<DeclaredZone>>;
