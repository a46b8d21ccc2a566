//! The configuration: what directives set, per location and for the http
//! block, and the zones they declare.

pub mod accessor;
pub mod declared;
pub mod directives;
pub mod loc;
pub mod main;
pub mod zone_init;
