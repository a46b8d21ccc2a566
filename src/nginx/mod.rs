//! The nginx side: what nginx calls, and what calls nginx.
//!
//! - `module`: the module table, its directives and phase handler set-up.
//! - `directives`: directive handlers, per-location configuration, merge.
//! - `zone`: a zone's shared memory: creation, adoption on reload, locking.
//! - `zone_init`: nginx's callback for a zone's memory, joining the zone's
//!   table and its state file.
//! - `handlers`: access and precontent phase handlers, the header filter and
//!   the log phase (counting).
//! - `variables`: `$authban_status`.
//! - `request_record`: a request's decision, kept across internal redirects.
//! - `process`: which nginx process this is (worker 0, one that serves).
//! - `realip`: which addresses realip trusts (`set_real_ip_from`).
//! - `api_handler`: the management endpoint's content handler.
//! - `state_file`: when state files are read and written (zone creation,
//!   worker 0's timer and exit), and who may write them.
//! - `fleet`: fleet sync through Redis (`sync=`): each worker's links on
//!   nginx's event loop, what they apply to the zone, and the master's
//!   load of a new zone.
//! - `log`: every line written to the error log, documented and debug.
//! - `guard`: panics caught at every entry point nginx calls, logged.
//! - `clock`: nginx's cached time, as the engine's `Now`.

pub mod api_handler;
pub mod clock;
pub mod directives;
pub mod fleet;
pub mod guard;
pub mod handlers;
pub mod log;
pub mod module;
pub mod process;
pub mod realip;
pub mod request_record;
pub mod state_file;
pub mod variables;
pub mod zone;
pub mod zone_init;
