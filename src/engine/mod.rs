//! The engine: everything authban decides, with no nginx in it.
//!
//! - `key`: addresses and networks as table keys.
//! - `account`: key zones' values as table keys (a keyed hash), and as log
//!   lines name them.
//! - `window`: the sliding findtime window of a key's failures.
//! - `table`: the shared table of counted, banned and remembered keys, over
//!   a byte region that nginx maps into every worker.
//! - `state_file`: the state file's format and its safe reading and writing.
//! - `api`: the management endpoint's request grammar and its answers.
//! - `directive`: directive value parsing (`authban_zone` and the rest).
//! - `fleet`: fleet sync through Redis (names, messages, the protocol
//!   conversation of one connection).
//! - `log_limit`: rate limits for log lines an attacker can multiply.
//! - `param`: CloudStack's request parameters in a query string or a form
//!   body (`$authban_param_NAME`).

pub mod account;
pub mod api;
pub mod crowdsec;
pub mod directive;
pub mod fleet;
pub mod key;
pub mod log_limit;
pub mod param;
pub mod state_file;
pub mod table;
pub mod window;
