//! The nginx side: what nginx calls, and what calls nginx.
//!
//! - `module`: the module table, its directives and phase handler set-up.
//! - `directives`: directive handlers, per-location configuration, merge.
//! - `zone`: a zone's shared memory: creation, adoption on reload, locking.
//! - `handlers`: access and precontent phase handlers, the header filter and
//!   the log phase (counting), `$authban_status`.
//! - `request_record`: a request's decision, kept across internal redirects.
//! - `realip`: which addresses realip trusts (`set_real_ip_from`).
//! - `api_handler`: the management endpoint's content handler.
//! - `state_file`: when state files are read and written (zone creation,
//!   worker 0's timer and exit), and who may write them.

pub mod api_handler;
pub mod directives;
pub mod handlers;
pub mod module;
pub mod realip;
pub mod request_record;
pub mod state_file;
pub mod zone;
