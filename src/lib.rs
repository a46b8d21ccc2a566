//! authban: an nginx module that counts failed responses per client address
//! and refuses banned addresses, with its state in nginx shared memory.
//!
//! Two halves, one folder each:
//!
//! - [`engine`]: plain Rust, no nginx. The counting and banning table over a
//!   byte region and a clock (`table`, `window`, `key`), the state-file
//!   format, the management API's request grammar and answers, directive
//!   value parsing, and log rate limits. Unit- and property-tested alone.
//! - `nginx`: the glue. Module registration, directives and configuration
//!   merge, the shared zone (creation, adoption on reload, locking), the
//!   phase handlers and header filter, the management handler, state-file
//!   I/O, `$authban_status`. Compiled out of `cargo test` (test binaries
//!   cannot link nginx's symbols) and tested through a real nginx in
//!   `tests/`. The fuzz targets (`fuzz/`) build the crate as an rlib
//!   without the default `nginx` feature: the engine alone.

pub mod engine;

#[cfg(all(feature = "nginx", not(test)))]
mod nginx;

#[cfg(test)]
mod fuzz_regressions;
