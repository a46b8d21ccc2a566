//! CrowdSec, without nginx: what its local API (LAPI) says, read into what
//! a zone can hold. Nothing here talks to the network.
//!
//! - `duration`: Go's duration text, as LAPI writes a decision's time left.
//! - `stream_index`: where each decision lies in a stream answer, found a
//!   slice of the answer at a time.
//! - `decision`: the decisions stream's answer, each decision checked on
//!   its own (type, scope, value, duration) and its labels bounded.
//! - `credentials`: the bouncer key and machine credentials files.
//! - `directive`: `authban_crowdsec`'s parameters.
//! - `http`: HTTP/1.1 requests and bounded responses, without I/O.
//! - `alert`: authban as a machine: its login, and a ban as an alert.
//! - `apply`: what a pull does to a zone, and which bans came from which
//!   decision.

pub mod alert;
pub mod apply;
pub mod credentials;
pub mod decision;
pub mod directive;
pub mod duration;
pub mod http;
pub mod stream_index;
