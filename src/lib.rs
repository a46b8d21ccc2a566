//! authban: an nginx module that counts failed responses per client address
//! and refuses banned addresses, with its state in nginx shared memory.
//!
//! The engine (`key`, `window`, `table`) and the configuration parsers
//! (`parse`) know nothing of nginx and are unit-tested alone. The FFI side
//! (`module`, `conf`, `zone`, `handlers`, `request_record`, `realip`) is compiled out of `cargo test`,
//! whose binaries cannot link nginx's symbols; it is tested through a real
//! nginx in `tests/`.

pub mod key;
pub mod log_limit;
pub mod mgmt;
pub mod parse;
pub mod state;
pub mod table;
pub mod window;

#[cfg(not(test))]
mod api;
#[cfg(not(test))]
mod conf;
#[cfg(not(test))]
mod handlers;
#[cfg(not(test))]
mod module;
#[cfg(not(test))]
mod persist;
#[cfg(not(test))]
mod realip;
#[cfg(not(test))]
mod request_record;
#[cfg(not(test))]
mod zone;
